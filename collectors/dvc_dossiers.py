"""Dossier records in the national public service portal's sync shape: kind ``dvc_dossiers``.

``GET <path>?from=YYYY-MM-DD&to=YYYY-MM-DD&page=N&page_size=M`` answers
``{"data": [hoSo, …], "total_pages": K}``: one object per dossier, with the
field names of the portal's ``SyncDataToDVCQG`` record (../shared/DOMAIN.md
(d)). The source must return at least every dossier that was open at some
time in ``[from, to]`` or received or ended in it; more is harmless, since
every count below is decided by the dossier's own dates. The collector counts
the dossiers itself, per unit and local period, so any system that can list
its dossiers can be connected (docs/connect/dvc_dossiers.md).

Mappings, and why (DOMAIN.md (d) status table, (a) KPI formulas, and the
one-stop report's definitions in docs/sources.md, so both kinds agree):

- ``dossiers_received_total``: ``NgayTiepNhan`` in the period and
  ``TrangThaiHoSo`` not in {1 new, 3 not received}, the vendor rule "received =
  status NOT IN (1, 3)".
- ``dossiers_received_online`` / ``dossiers_received_postal``: of those,
  ``KenhThucHien`` = 2 (online) / 3 (public postal service).
- ``dossiers_resolved_total``: ``TrangThaiHoSo`` in {9 resolved, 10 result
  returned} with ``NgayKetThucXuLy`` in the period: the table maps exactly
  those two to "resolved"; 7 (withdrawn) is "ended, not counted as resolved",
  although one vendor's 766 grouping puts it with the finished ones.
- ``dossiers_resolved_ontime``: of those, ``NgayKetThucXuLy ≤ NgayHenTra``
  (766 indicator 2.1). The 766 refinements (time waiting for a supplement
  subtracted, more than one supplement request counts late) need the process
  history, which this record does not carry; they are not applied.
- ``dossiers_with_fee``: received dossiers with a ``DanhSachLePhi`` entry of
  ``Gia > 0``, or paid online (a payment proves a fee). Produced only when the
  answer carries ``DanhSachLePhi`` at all: an absent list is "unknown", not 0.
- ``dossiers_paid_online``: received dossiers with ``DuocThanhToanTrucTuyen``
  in {1 national portal, 2 provincial gateway}; 0 or null is "not paid
  online". Produced only when the answer carries the field.
- ``dossiers_digitized``: received dossiers with ``HoSoCoThanhPhanSoHoa`` = 1.
  766 indicator 4.2 also wants an e-result; the sync flag is the closest the
  record states. Produced only when the answer carries the flag.
- ``dossiers_in_progress`` (stock): received before the instant, not ended by
  it. A dossier now 2, 4 (in progress) or 5, 6, 8 (paused: still the agency's
  open case, per the vendor grouping) has not ended; one now 7, 9 or 10 ended
  at ``NgayKetThucXuLy``, so it still counts for the instants before that
  (a 7 without that date cannot be placed in time and is left out:
  "not cancelled"). The instant is the period's end, or now for the current
  period: a stock for a moment that has not come yet would be a guess.
- ``dossiers_overdue`` (stock): of those, ``NgayHenTra`` before the instant.

Record handling: a dossier may appear several times (successive updates);
the version with the latest update time (``updated_field``) wins, older ones
are superseded silently. An identical copy is rejected ``duplicate`` (one copy
is kept); two different versions at the latest update time are rejected
``conflict`` and neither is counted. Times without an offset are local time
in the province's timezone.

A unit with accepted dossiers gets every produced measure, zeros included,
for each requested period from its first receipt until its last dossier
ended (to the end if one is still open): a commune abolished or created in
the 2025 reform then gets no zeros for the months it did not exist.
"""

from __future__ import annotations

import json
import logging
import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from collectors.base import CollectionResult, Collector, Observation, Rejection
from collectors.http import describe_request
from collectors.records import WireModel, validate_records
from monitor.timeutil import Period, local_date

log = logging.getLogger(__name__)

STATUS = {1: "new", 2: "received", 3: "not received", 4: "processing", 5: "supplement requested",
          6: "financial obligation requested", 7: "withdrawn", 8: "stopped", 9: "resolved",
          10: "result returned"}
CHANNEL = {1: "in person", 2: "online", 3: "public postal service"}
PAYMENT = {0: "not paid online", 1: "national portal", 2: "provincial payment gateway"}
NOT_RECEIVED = frozenset({1, 3})
RESOLVED = frozenset({9, 10})
ENDED = frozenset({7, 9, 10})
ONLINE, POSTAL = 2, 3
PAID_ONLINE = frozenset({1, 2})

FLOWS = ("dossiers_received_total", "dossiers_received_online", "dossiers_received_postal",
         "dossiers_resolved_total", "dossiers_resolved_ontime")
OPTIONAL_FLOWS = {"dossiers_with_fee": "DanhSachLePhi", "dossiers_paid_online": "DuocThanhToanTrucTuyen",
                  "dossiers_digitized": "HoSoCoThanhPhanSoHoa"}
STOCKS = ("dossiers_in_progress", "dossiers_overdue")

_COMPACT_TIME = re.compile(r"^\d{14}$")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$")
TIME_FORMATS = "ISO 8601 date-time (2025-03-14T08:30:00+07:00; no offset = local time) or YYYYMMDDHHMMSS"


# ----------------------------------------------------------------------------- wire

def parse_time(value: Any) -> datetime | None:
    """A portal date-time: aware if it states an offset, else naive local time; "" or null is None."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and _COMPACT_TIME.match(value):
        # naive on purpose: local time, placed in the province's timezone by the collector
        return datetime.strptime(value, "%Y%m%d%H%M%S")  # noqa: DTZ007
    if isinstance(value, str) and _ISO_TIME.match(value):
        return datetime.fromisoformat(value)
    raise ValueError(f"expected an {TIME_FORMATS}")


def _code(value: Any) -> Any:
    """A numeric code as the portal sends it: 4 or "4"."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise ValueError("expected a numeric code")
    return int(value)


def _flag(value: Any) -> Any:
    if value in (0, 1, "0", "1") and not isinstance(value, float):
        return bool(int(value))
    if isinstance(value, bool) or value is None:
        return value
    raise ValueError("expected 0 or 1")


WireTime = Annotated[datetime | None, BeforeValidator(parse_time)]
WireCode = Annotated[int, BeforeValidator(_code)]
OptionalCode = Annotated[int | None, BeforeValidator(_code)]


class Fee(WireModel):
    Gia: Annotated[float, Field(ge=0)] = 0.0


class Dossier(WireModel):
    """A ``hoSo`` of the portal's sync data; only the fields counted are declared."""

    MaHoSo: Annotated[str, Field(min_length=1)]
    TrangThaiHoSo: WireCode
    KenhThucHien: WireCode
    NgayTiepNhan: WireTime = None
    NgayHenTra: WireTime = None
    NgayKetThucXuLy: WireTime = None
    DuocThanhToanTrucTuyen: OptionalCode = None
    HoSoCoThanhPhanSoHoa: Annotated[bool | None, BeforeValidator(_flag)] = None
    DanhSachLePhi: list[Fee] | None = None


class DvcDossiersOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: Annotated[str, Field(min_length=1)] = "/api/v1/dong-bo/ho-so"
    records_key: Annotated[str, Field(min_length=1)] = "data"
    from_param: Annotated[str, Field(min_length=1)] = "from"
    to_param: Annotated[str, Field(min_length=1)] = "to"
    unit_field: Annotated[str, Field(min_length=1)] = "DonViXuLy"
    updated_field: Annotated[str, Field(min_length=1)] = "NgayCapNhat"
    page_size: Annotated[int, Field(ge=1, le=1000)] = 500
    page_concurrency: Annotated[int, Field(ge=1, le=64)] = 8

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path must start with '/', got: {value!r} (write '/{value}')")
        return value


# ----------------------------------------------------------------------------- one dossier

@dataclass(frozen=True, slots=True)
class Accepted:
    """A dossier that passed every check, its times aware UTC."""

    unit: str
    status: int
    channel: int
    received: datetime | None  # None: never received (status 1 or 3)
    due: datetime | None
    ended: datetime | None  # None: still open, or withdrawn at a time not stated
    in_stock: bool  # False for a withdrawn dossier without NgayKetThucXuLy: it cannot be placed in time
    fee: bool
    paid_online: bool
    digitized: bool


@dataclass(frozen=True, slots=True)
class Version:
    index: int
    ref: str
    dossier: Dossier
    updated: datetime | None
    canonical: str  # the record as sent, to tell an identical copy from a different version


class DvcDossiersCollector(Collector):
    kind: ClassVar[str] = "dvc_dossiers"
    Options: ClassVar[type[BaseModel]] = DvcDossiersOptions
    options: DvcDossiersOptions

    async def collect(self, periods: Sequence[Period], units: Set[str]) -> CollectionResult:
        result = CollectionResult()
        if not periods:
            return result
        periods = sorted(periods)
        first = local_date(periods[0].start, self.tz)
        last = local_date(periods[-1].end, self.tz) - timedelta(days=1)
        params = {self.options.from_param: first.isoformat(), self.options.to_param: last.isoformat()}
        items = await self.http.get_pages(
            self.options.path, params, records_key=self.options.records_key,
            page_size=self.options.page_size, concurrency=self.options.page_concurrency)
        records = validate_records(self.source_id, Dossier, items, result, what="dossier")
        raw = [record for _, record in items]
        accepted = [a for version in self._latest_versions(records, raw, result)
                    if (a := self._accept(version, units, result)) is not None]
        present = {m for m, wire in OPTIONAL_FLOWS.items()
                   if any(wire in record.model_fields_set for _, _, record in records)}
        ref = describe_request(self.options.path, params)
        result.observations.extend(self._observations(accepted, periods, present, ref))
        return result

    # ------------------------------------------------------------------ versions

    def _latest_versions(self, records: Iterable[tuple[int, str, Dossier]], raw: Sequence[Any],
                         result: CollectionResult) -> list[Version]:
        """The latest version of each dossier; copies and conflicts become rejections."""
        by_id: dict[str, list[Version]] = defaultdict(list)
        for index, ref, record in records:
            version = self._version(index, ref, record, raw[index], result)
            if version is not None:
                by_id[record.MaHoSo].append(version)
        latest: list[Version] = []
        for dossier_id, versions in by_id.items():
            kept = self._drop_copies(dossier_id, versions, result)
            if any(v.updated is None for v in kept) and len(kept) > 1:
                self._reject_conflict(dossier_id, kept, result, f"{self.options.updated_field} is "
                                      "missing, so the versions cannot be ordered")
                continue
            newest = max(v.updated for v in kept if v.updated is not None) if len(kept) > 1 else None
            top = [v for v in kept if v.updated == newest] if newest is not None else kept
            if len(top) > 1:
                self._reject_conflict(dossier_id, top, result, "different contents at the same "
                                      f"{self.options.updated_field} = {_show(newest)}")
                continue
            if len(kept) > 1:
                log.debug("%s: dossier %s: %d older versions superseded", self.source_id, dossier_id,
                          len(kept) - 1)
            latest.append(top[0])
        return latest

    def _version(self, index: int, ref: str, record: Dossier, raw: Any,
                 result: CollectionResult) -> Version | None:
        field = self.options.updated_field
        try:
            updated = self._utc(parse_time(getattr(record, field, None)))
        except ValueError as exc:
            result.rejections.append(Rejection(
                "schema", f"dossier {index} ({record.MaHoSo}): field {field}: {exc}, got "
                f"{getattr(record, field)!r}", raw_ref=ref))
            return None
        canonical = json.dumps(raw, sort_keys=True, ensure_ascii=False)
        return Version(index, ref, record, updated, canonical)

    def _drop_copies(self, dossier_id: str, versions: list[Version], result: CollectionResult) -> list[Version]:
        first_of: dict[str, Version] = {}
        for version in versions:
            original = first_of.setdefault(version.canonical, version)
            if original is not version:
                result.rejections.append(Rejection(
                    "duplicate", f"dossier {version.index} (MaHoSo {dossier_id}): an identical copy of "
                    f"dossier {original.index} ({original.ref}); one copy was kept. Overlapping pages "
                    "send this: keep the source's order stable while paging", raw_ref=version.ref))
        return list(first_of.values())

    def _reject_conflict(self, dossier_id: str, versions: list[Version], result: CollectionResult,
                         why: str) -> None:
        indexes = ", ".join(str(v.index) for v in versions)
        for version in versions:
            result.rejections.append(Rejection(
                "conflict", f"dossier {version.index} (MaHoSo {dossier_id}): {len(versions)} versions "
                f"(dossiers {indexes}) with {why}; none was counted. Fix the source so each update "
                f"carries a later {self.options.updated_field}", raw_ref=version.ref))

    # ------------------------------------------------------------------ checks

    def _accept(self, version: Version, units: Set[str], result: CollectionResult) -> Accepted | None:
        record, field = version.dossier, self.options.unit_field
        unit = getattr(record, field, None)
        unit = unit.strip() if isinstance(unit, str) else unit

        def reject(reason: str, detail: str) -> None:
            result.rejections.append(Rejection(
                reason, f"dossier {version.index} (MaHoSo {record.MaHoSo}): {detail}",
                unit=unit if isinstance(unit, str) and unit else None, raw_ref=version.ref))

        if not isinstance(unit, str) or not unit:
            reject("missing_unit", f"{field} is {unit!r}: every dossier needs the QCVN 102 code of "
                   "its unit (or set options.unit_field to the field that holds it)")
            return None
        if unit not in units:
            reject("unknown_unit", f"{field} = {unit!r} is not a unit of the tree (add it to the units, "
                   "or fix the source)")
            return None
        problem = self._code_problem(record)
        if problem:
            reject("unknown_code", problem)
            return None
        received, due, ended = (self._utc(t) for t in (record.NgayTiepNhan, record.NgayHenTra,
                                                         record.NgayKetThucXuLy))
        status = record.TrangThaiHoSo
        missing = self._missing_dates(status, received, due, ended)
        if missing:
            reject("missing_date", missing)
            return None
        if received is not None and due is not None and due < received:
            reject("inconsistent", f"NgayHenTra = {_show(record.NgayHenTra)} is before NgayTiepNhan = "
                   f"{_show(record.NgayTiepNhan)}: the due date cannot precede receipt")
            return None
        if received is not None and ended is not None and ended < received:
            reject("inconsistent", f"NgayKetThucXuLy = {_show(record.NgayKetThucXuLy)} is before "
                   f"NgayTiepNhan = {_show(record.NgayTiepNhan)}: a dossier cannot end before receipt")
            return None
        paid = record.DuocThanhToanTrucTuyen in PAID_ONLINE
        return Accepted(
            unit=unit, status=status, channel=record.KenhThucHien,
            received=None if status in NOT_RECEIVED else received, due=due,
            ended=ended if status in ENDED else None, in_stock=status not in ENDED or ended is not None,
            fee=paid or any(fee.Gia > 0 for fee in record.DanhSachLePhi or ()),
            paid_online=paid, digitized=bool(record.HoSoCoThanhPhanSoHoa))

    @staticmethod
    def _code_problem(record: Dossier) -> str | None:
        for name, value, known in (("TrangThaiHoSo", record.TrangThaiHoSo, STATUS),
                                   ("KenhThucHien", record.KenhThucHien, CHANNEL),
                                   ("DuocThanhToanTrucTuyen", record.DuocThanhToanTrucTuyen, PAYMENT)):
            if value is not None and value not in known:
                listed = ", ".join(f"{code} {label}" for code, label in known.items())
                return f"{name} = {value} is not a code of the portal ({listed}): map it in the source"
        return None

    @staticmethod
    def _missing_dates(status: int, received: datetime | None, due: datetime | None,
                       ended: datetime | None) -> str | None:
        label = f"TrangThaiHoSo = {status} ({STATUS[status]})"
        if status not in NOT_RECEIVED and received is None:
            return f"{label} but NgayTiepNhan is missing: a received dossier needs its receipt time"
        if status not in NOT_RECEIVED and due is None:
            return f"{label} but NgayHenTra is missing: a received dossier needs its appointment date"
        if status in RESOLVED and ended is None:
            return f"{label} but NgayKetThucXuLy is missing: a resolved dossier needs its end time"
        return None

    def _utc(self, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=self.tz).astimezone(UTC)
        return value.astimezone(UTC)

    # ------------------------------------------------------------------ counting

    def _observations(self, accepted: Sequence[Accepted], periods: Sequence[Period], present: set[str],
                      ref: str) -> list[Observation]:
        measures = [*FLOWS, *(m for m in OPTIONAL_FLOWS if m in present), *STOCKS]
        starts = [p.start for p in periods]
        now = self.now()
        instants = [min(p.end, now) for p in periods]
        counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: dict.fromkeys(measures, 0))
        spans: dict[str, tuple[int, int]] = {}
        for dossier in accepted:
            received = dossier.received
            if received is None:
                continue
            for measure, at in _flows(dossier, received, present):
                slot = bisect_right(starts, at) - 1
                if 0 <= slot < len(periods) and at < periods[slot].end:
                    counts[(dossier.unit, slot)][measure] += 1
            if dossier.in_stock:
                self._add_stocks(dossier, received, instants, counts)
            span = _span(received, dossier.ended if dossier.in_stock else received, periods, starts)
            if span is not None:
                low, high = spans.get(dossier.unit, span)
                spans[dossier.unit] = (min(low, span[0]), max(high, span[1]))
        return [
            Observation(measure, unit, periods[slot], float(counts[(unit, slot)][measure]), ref)
            for unit, (low, high) in sorted(spans.items())
            for slot in range(low, high + 1)
            for measure in measures
        ]

    @staticmethod
    def _add_stocks(dossier: Accepted, received: datetime, instants: Sequence[datetime],
                    counts: dict[tuple[str, int], dict[str, int]]) -> None:
        """Open at instant s: received < s and not ended before s; overdue: also due < s."""
        first = bisect_right(instants, received)
        stop = len(instants) if dossier.ended is None else bisect_right(instants, dossier.ended)
        late = len(instants) if dossier.due is None else bisect_right(instants, dossier.due)
        for slot in range(first, stop):
            counts[(dossier.unit, slot)]["dossiers_in_progress"] += 1
            if slot >= late:
                counts[(dossier.unit, slot)]["dossiers_overdue"] += 1


def _flows(dossier: Accepted, received: datetime, present: set[str]) -> Iterable[tuple[str, datetime]]:
    """(measure, instant) for each flow this dossier adds one to."""
    yield "dossiers_received_total", received
    if dossier.channel == ONLINE:
        yield "dossiers_received_online", received
    if dossier.channel == POSTAL:
        yield "dossiers_received_postal", received
    if dossier.fee and "dossiers_with_fee" in present:
        yield "dossiers_with_fee", received
    if dossier.paid_online and "dossiers_paid_online" in present:
        yield "dossiers_paid_online", received
    if dossier.digitized and "dossiers_digitized" in present:
        yield "dossiers_digitized", received
    if dossier.status in RESOLVED and dossier.ended is not None:
        yield "dossiers_resolved_total", dossier.ended
        if dossier.due is not None and dossier.ended <= dossier.due:
            yield "dossiers_resolved_ontime", dossier.ended


def _span(received: datetime, ended: datetime | None, periods: Sequence[Period],
          starts: Sequence[datetime]) -> tuple[int, int] | None:
    """The requested periods from the one of receipt to the one the dossier ended in (or the last)."""
    if received >= periods[-1].end or (ended is not None and ended < periods[0].start):
        return None
    first = max(bisect_right(starts, received) - 1, 0)
    last = len(periods) - 1 if ended is None else min(bisect_right(starts, ended) - 1, len(periods) - 1)
    return first, last


def _show(value: datetime | None) -> str:
    return "null" if value is None else value.isoformat()

