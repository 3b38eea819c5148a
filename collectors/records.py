"""Reading wire records: schema models, per-record checks, and the paged-statistics collector.

A wire record is validated by a pydantic model that allows extra fields (real
systems add fields) but requires the ones we read. A record that does not
validate becomes ``Rejection("schema")``; if no record of a non-empty answer
validates, the source changed its format and the whole answer is refused with
``MalformedPayload``, naming the fields expected.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence, Set
from datetime import date, timedelta, tzinfo
from functools import lru_cache
from typing import Annotated, Any, ClassVar, NamedTuple, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError

from collectors.base import (
    CollectionResult,
    Collector,
    MalformedPayload,
    Observation,
    Rejection,
)
from monitor.timeutil import Period, add_months, local_date

Count = StrictInt  # a JSON integer: "12" or 12.5 is schema drift, not a count
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_ERRORS = 3


def _local_date_text(value: Any) -> Any:
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("expected a local date YYYY-MM-DD")
    return value


WireDate = Annotated[date, BeforeValidator(_local_date_text)]


class WireModel(BaseModel):
    """A part of a record as a source sends it; unknown fields are kept, not refused."""

    model_config = ConfigDict(extra="allow", frozen=True)


W = TypeVar("W", bound=WireModel)


# ----------------------------------------------------------------------------- schema

def expected_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted wire names of the required fields, e.g. ``SoVanBanDi.TongSo``."""
    names: list[str] = []
    for name, info in model.model_fields.items():
        wire = f"{prefix}{info.alias or name}"
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.extend(expected_fields(annotation, f"{wire}."))
        elif info.is_required():
            names.append(wire)
    return names


def describe_errors(error: ValidationError) -> str:
    """``field SoVanBanDi.TongSo missing (schema drift?)``, and up to two more problems."""
    parts = []
    for item in error.errors()[:_MAX_ERRORS]:
        where = ".".join(str(p) for p in item["loc"] if p != "[key]")
        if item["type"] == "missing":
            parts.append(f"field {where} missing (schema drift?)")
        elif not where:
            parts.append(f"expected an object, got {_short(item['input'])}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            parts.append(f"field {where}: {message}, got {_short(item['input'])}")
    hidden = error.error_count() - _MAX_ERRORS
    return "; ".join(parts) + (f"; and {hidden} more" if hidden > 0 else "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


class Checked(NamedTuple):
    """A record validated as its page arrived: the model and what ``then`` made of it, or
    why it did not fit."""

    record: BaseModel | None
    error: ValidationError | None
    derived: Any = None


def checker(model: type[W], then: Callable[[str, W], Any] | None = None) -> Callable[[str, Any], Checked]:
    """A ``convert`` for :meth:`SourceHttp.get_pages`: validates each record into ``model``
    while the other pages are still on their way, and applies ``then(raw_ref, record)`` to a
    record that fits (work that needs no other record); :func:`validate_records` judges
    the result."""
    def check(ref: str, raw: Any) -> Checked:
        try:
            record = model.model_validate(raw)
        except ValidationError as exc:
            return Checked(None, exc)
        return Checked(record, None, None if then is None else then(ref, record))
    return check


def validate_records(
    source: str,
    model: type[W],
    items: Sequence[tuple[str, Any]],
    result: CollectionResult,
    *,
    what: str = "record",
) -> list[tuple[int, str, W]]:
    """``(index, raw_ref, record)`` for the items that fit ``model`` (raw, or already
    :class:`Checked` by ``checker(model)`` as their page arrived).

    The others become ``Rejection("schema")`` in ``result``.
    """
    valid: list[tuple[int, str, W]] = []
    first_problem = ""
    for index, (ref, raw) in enumerate(items):
        if isinstance(raw, Checked):
            record, error = raw.record, raw.error
        else:
            try:
                record, error = model.model_validate(raw), None
            except ValidationError as exc:
                record, error = None, exc
        if error is None:
            valid.append((index, ref, record))  # type: ignore[arg-type]  # fits model: checked above
        else:
            problem = f"{what} {index}: {describe_errors(error)}"
            first_problem = first_problem or problem
            result.rejections.append(Rejection("schema", problem, raw_ref=ref))
    if items and not valid:
        raise MalformedPayload(
            source,
            f"none of the {len(items)} {what}s has the expected format, so the source has "
            f"probably changed it; first problem: {first_problem}; expected fields: "
            f"{', '.join(expected_fields(model))}",
        )
    return valid


def count_fields(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, int]]:
    """Every integer count in ``model`` (declared fields only), with its dotted wire name."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        wire = f"{prefix}{info.alias or name}"
        if isinstance(value, BaseModel):
            yield from count_fields(value, f"{wire}.")
        elif isinstance(value, dict):
            yield from ((f"{wire}.{k}", v) for k, v in value.items() if isinstance(v, int))
        elif isinstance(value, int) and not isinstance(value, bool):
            yield wire, value


def _any_negative(model: BaseModel) -> bool:
    """Whether any count ``count_fields`` would list is negative, without naming them."""
    # A model's __dict__ holds its declared fields (extra ones live in __pydantic_extra__):
    # the same values as model_fields + getattr, at a third of the cost.
    for value in model.__dict__.values():
        if isinstance(value, BaseModel):
            if _any_negative(value):
                return True
        elif isinstance(value, dict):
            if any(isinstance(v, int) and v < 0 for v in value.values()):
                return True
        elif isinstance(value, int) and value < 0:
            return True
    return False


def exceeds(part: str, part_value: int, whole: str, whole_value: int) -> list[str]:
    """The invariant ``part ≤ whole`` as a problem list (empty when it holds)."""
    if part_value <= whole_value:
        return []
    return [f"{part} = {part_value} exceeds {whole} = {whole_value}"]


def differs(left: str, left_value: int, right: str, right_value: int) -> list[str]:
    """The invariant ``left = right`` as a problem list (empty when it holds)."""
    if left_value == right_value:
        return []
    return [f"{left} = {left_value} differs from {right} = {right_value}"]


def code_in(known: range, name: str) -> BeforeValidator:
    """A dict key that must be one of the numeric codes ``known`` (as JSON object keys are text)."""

    def check(value: Any) -> Any:
        if not isinstance(value, str) or not value.isdigit() or int(value) not in known:
            raise ValueError(f"unknown {name} code (known: {known.start}–{known.stop - 1})")
        return value

    return BeforeValidator(check)


# ----------------------------------------------------------------------------- statistics

class RecordKey(NamedTuple):
    """Who and when a statistics record is about, with the wire names of those fields."""

    unit: str
    label: str
    first: date
    last: date
    names: tuple[str, str, str, str]  # e.g. ("OrganId", "Period", "From", "To")


class StatisticsRecord(WireModel):
    """One (unit, period) record of a paged statistics answer."""

    @abstractmethod
    def key(self) -> RecordKey: ...

    @abstractmethod
    def measures(self) -> dict[str, int]:
        """Measure id → value, exactly per docs/sources.md."""

    @abstractmethod
    def inconsistencies(self) -> list[str]:
        """The record's broken invariants, each naming both fields and their values."""


class StatisticsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    page_size: Annotated[int, Field(ge=1, le=1000)] = 500
    # Pages fetched at once; None: the source's ``concurrency`` (which also sizes its pool).
    page_concurrency: Annotated[int | None, Field(ge=1, le=1000)] = None


@lru_cache(maxsize=1024)  # records share a few periods; working each out is the costly part
def period_of(first: date, last: date, tz: tzinfo) -> Period | None:
    """The local day or month ``first``..``last`` (inclusive) covers, or None if neither."""
    if first == last:
        return Period.of_day(first, tz)
    if first.day == 1 and last == add_months(first, 1) - timedelta(days=1):
        return Period.of_month(first.year, first.month, tz)
    return None


@lru_cache(maxsize=1024)  # as period_of: a label costs a time-zone conversion and a strftime
def label_of(period: Period, tz: tzinfo) -> str:
    """``period.label(tz)``, remembered."""
    return period.label(tz)


class _Accepted(NamedTuple):
    """A statistics record that may be stored, unless it repeats a unit and period."""

    period: Period
    observations: list[Observation]


class _Refused(NamedTuple):
    """Why a statistics record may not be stored (its detail without the record's position)."""

    reason: str
    detail: str
    period: Period | None = None


class StatisticsCollector(Collector):
    """A source answering ``GET path?from=&to=&grain=&page=``, a record per (unit, period).

    Subclasses name the ``path`` and the ``record_model``; the record model
    maps itself to measures and states its invariants.
    """

    path: ClassVar[str]
    record_model: ClassVar[type[StatisticsRecord]]
    Options: ClassVar[type[BaseModel]] = StatisticsOptions
    options: StatisticsOptions

    async def collect(self, periods: Sequence[Period], units: Set[str]) -> CollectionResult:
        result = CollectionResult()
        if not periods:
            return result
        first = local_date(min(p.start for p in periods), self.tz)
        last = local_date(max(p.end for p in periods), self.tz) - timedelta(days=1)
        params = {"from": first.isoformat(), "to": last.isoformat(), "grain": self.settings.grain}
        wanted = set(periods)

        def assess(ref: str, record: StatisticsRecord) -> _Accepted | _Refused:
            return self._assess(ref, record, wanted, units)

        items = await self.http.get_pages(
            self.path, params, page_size=self.options.page_size,
            concurrency=self.options.page_concurrency, convert=checker(self.record_model, assess))
        records = validate_records(self.source_id, self.record_model, items, result)
        # Pages arrive in any order; a repeated unit and period is judged in page order, here.
        seen = set[tuple[str, Period]]()
        for index, ref, record in records:
            verdict = items[index][1].derived  # items[index] is (raw_ref, Checked) of this record
            key = record.key()
            if isinstance(verdict, _Accepted) and (key.unit, verdict.period) in seen:
                verdict = _Refused("duplicate", "a second record for the same unit and period; the "
                                   "first one was kept", verdict.period)
            if isinstance(verdict, _Refused):
                result.rejections.append(Rejection(
                    verdict.reason, f"record {index} ({key.unit} {key.label}): {verdict.detail}",
                    unit=key.unit, period=verdict.period, raw_ref=ref))
                continue
            seen.add((key.unit, verdict.period))
            result.observations += verdict.observations
        return result

    def _assess(self, ref: str, record: StatisticsRecord, wanted: set[Period],
                units: Set[str]) -> _Accepted | _Refused:
        """The record's period and observations if it may be stored (as far as the record
        alone tells), else why not."""
        key = record.key()
        unit_f, label_f, first_f, last_f = key.names
        if key.unit not in units:
            return _Refused("unknown_unit", f"{unit_f} = {key.unit!r} is not a unit of the tree "
                            "(add it to the units, or fix the source)")
        period = period_of(key.first, key.last, self.tz)
        if period is None:
            return _Refused("inconsistent", f"{first_f} = {key.first} and {last_f} = {key.last} "
                            "are not one local day or month")
        label = label_of(period, self.tz)
        if label != key.label:
            return _Refused("inconsistent", f"{label_f} = {key.label!r} but {first_f}..{last_f} = "
                            f"{key.first}..{key.last} is {label}", period)
        if period not in wanted:
            return _Refused("unexpected_period", f"period {key.label} was not requested "
                            f"(grain {self.settings.grain})", period)
        if _any_negative(record):  # named only when there is one: most records have none
            negative = [f"{name} = {value}" for name, value in count_fields(record) if value < 0]
            return _Refused("negative", f"{', '.join(negative)}: counts are never negative", period)
        broken = record.inconsistencies()
        if broken:
            return _Refused("inconsistent", "; ".join(broken), period)
        return _Accepted(period, [Observation(measure, key.unit, period, float(value), ref)
                                  for measure, value in record.measures().items()])
