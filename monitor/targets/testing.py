"""``egovmon rules test``: unit tests for rule files, in the manner of ``promtool test rules``.

A test file gives input series per unit and measure, evaluation dates, and the
status / gap / forecast expected for (rule, unit) at each date. The runner
stores the series in a scratch SQLite database and evaluates the rules with the
real evaluator, so a test exercises exactly what the service runs.

Series use promtool's expanding notation, one value per period from ``start``:
``"0.5 0.6 0.7"``, ``"100x11"`` (100 repeated, 12 values), ``"40+5x10"`` (40,
45, …, 90: 11 values), ``"90-2x3"``, and ``_`` for a period with no value.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from collectors.base import Observation
from monitor.catalog import Catalog
from monitor.errors import ConfigError, Problem
from monitor.storage import Store, create_engine_for
from monitor.storage.models import Base
from monitor.targets.evaluate import Evaluation, Evaluator, Status
from monitor.targets.loader import load_rules
from monitor.timeutil import Period, add_months, local_midnight
from monitor.units import Unit, UnitTree, build_tree, load_units
from monitor.yamlsource import load_yaml_file

_TERM = re.compile(r"^(-?\d+(?:\.\d+)?)(?:([+-])(\d+(?:\.\d+)?))?x(\d+)$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")

# The tree a test gets when it names none: a province with two departments (one
# with an agency), a district with a commune until the 2025 reform, and the
# merged commune after it.
DEFAULT_GROUPS = {"tinh": {"vi": "Tỉnh", "en": "Province"}, "so_nganh": {"vi": "Sở, ban, ngành", "en": "Departments"},
                  "don_vi_truc_thuoc": {"vi": "Đơn vị trực thuộc", "en": "Agencies"},
                  "huyen": {"vi": "UBND cấp huyện", "en": "Districts"}, "xa": {"vi": "UBND cấp xã", "en": "Communes"}}
DEFAULT_UNITS: tuple[dict[str, Any], ...] = (
    {"code": "000.00.00.H99", "name": "Tỉnh Mẫu", "level": "province", "group": "tinh"},
    {"code": "000.00.01.H99", "name": "Sở Nội vụ", "level": "department", "group": "so_nganh",
     "parent": "000.00.00.H99"},
    {"code": "000.00.02.H99", "name": "Sở Tài chính", "level": "department", "group": "so_nganh",
     "parent": "000.00.00.H99"},
    {"code": "000.01.01.H99", "name": "Trung tâm Phục vụ hành chính công", "level": "agency",
     "group": "don_vi_truc_thuoc", "parent": "000.00.01.H99"},
    {"code": "000.10.00.H99", "name": "Huyện Mẫu", "level": "district", "group": "huyen",
     "parent": "000.00.00.H99", "valid_to": "2025-06-30"},
    {"code": "000.10.01.H99", "name": "Xã Cũ", "level": "commune", "group": "xa", "parent": "000.10.00.H99",
     "valid_to": "2025-06-30", "successors": ["000.20.01.H99"]},
    {"code": "000.20.01.H99", "name": "Xã Mới", "level": "commune", "group": "xa", "parent": "000.00.00.H99",
     "valid_from": "2025-07-01"},
)


def expand_series(text: str) -> list[float | None]:
    """promtool's notation, see the module docstring."""
    values: list[float | None] = []
    for term in str(text).split():
        if term == "_":
            values.append(None)
        elif _NUMBER.match(term):
            values.append(float(term))
        elif match := _TERM.match(term):
            start, sign, step, count = match.groups()
            delta = float(step or 0) * (-1 if sign == "-" else 1)
            values.extend(float(start) + delta * i for i in range(int(count) + 1))
        else:
            raise ValueError(f"cannot read series term {term!r} (write e.g. 10 or 100x11 or 40+5x10 or _)")
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSeries(_Strict):
    unit: str
    start: str  # YYYY-MM for monthly series, YYYY-MM-DD for daily ones
    grain: Literal["month", "day"] = "month"
    series: dict[str, str | float]

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        try:
            dt.date.fromisoformat(value if len(value) > 7 else value + "-01")
        except ValueError:
            raise ValueError(f"start is YYYY-MM (monthly) or YYYY-MM-DD (daily), got: {value!r}") from None
        return value

    @field_validator("series")
    @classmethod
    def _series(cls, value: dict[str, str | float]) -> dict[str, str | float]:
        for text in value.values():
            expand_series(str(text))
        return value


class Expectation(_Strict):
    rule: str
    unit: str
    absent: bool = False  # the rule must not evaluate this unit (not covered, or not valid that day)
    status: Status | None = None
    actual: float | None = None
    expected: float | None = None
    gap: float | None = None
    gap_to_target: float | None = None
    forecast_value: float | None = None
    forecast_reached_on: dt.date | Literal["unreachable"] | None = None
    forecast_points: int | None = None
    clear: bool | None = None
    tolerance: Annotated[float, Field(ge=0)] = 1e-6


class EvaluationStep(_Strict):
    at: dt.date | dt.datetime  # a date means the end of that day, province's time
    expect: list[Expectation]


class RuleTestCase(_Strict):
    name: str
    input: list[InputSeries] = Field(default_factory=list)
    evaluate: list[EvaluationStep]


class RuleTestFile(_Strict):
    version: Literal[1]
    rule_files: Annotated[list[str], Field(min_length=1)]
    units: str | list[dict[str, Any]] | None = None  # a units file, inline units, or the default tree
    timezone: str = "Asia/Ho_Chi_Minh"
    tests: list[RuleTestCase]


@dataclass(frozen=True)
class Failure:
    file: str
    test: str
    at: str
    rule: str
    unit: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.test!r} at {self.at}: {self.rule} / {self.unit}: {self.message}"


@dataclass
class RuleTestReport:
    files: int = 0
    tests: int = 0
    checks: int = 0
    failures: list[Failure] | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


def run_test_files(paths: Iterable[Path], catalog: Catalog,
                   on_test: Callable[[str, str, bool], None] | None = None) -> RuleTestReport:
    """Run every test in ``paths``; raise ConfigError for files that cannot be read."""
    report = RuleTestReport(failures=[])
    for path in paths:
        report.files += 1
        _run_file(path, catalog, report, on_test)
    return report


def _run_file(path: Path, catalog: Catalog, report: RuleTestReport,
              on_test: Callable[[str, str, bool], None] | None) -> None:
    from zoneinfo import ZoneInfo

    doc = load_yaml_file(path)
    try:
        spec = RuleTestFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(doc.problems_from(exc)) from None
    tz = ZoneInfo(spec.timezone)
    base = path.parent
    units = _units_of(spec, base, str(path))
    rules = load_rules([base / f for f in spec.rule_files], catalog, units)
    problems = []
    for i, case in enumerate(spec.tests):
        for j, series in enumerate(case.input):
            for measure in series.series:
                if measure not in catalog.measures:
                    problems.append(Problem(str(path), doc.line_of(("tests", i, "input", j, "series", measure)),
                                            f"tests[{i}].input[{j}].series.{measure}", "unknown measure"))
            if series.unit not in units:
                problems.append(Problem(str(path), doc.line_of(("tests", i, "input", j, "unit")),
                                        f"tests[{i}].input[{j}].unit", f"unknown unit {series.unit!r}"))
        for j, step in enumerate(case.evaluate):
            for k, expectation in enumerate(step.expect):
                if rules.get(expectation.rule) is None:
                    problems.append(Problem(str(path), doc.line_of(("tests", i, "evaluate", j, "expect", k, "rule")),
                                            f"tests[{i}].evaluate[{j}].expect[{k}].rule",
                                            f"no rule {expectation.rule!r} in {', '.join(spec.rule_files)}"))
    if problems:
        raise ConfigError(problems)
    assert report.failures is not None
    for case in spec.tests:
        report.tests += 1
        before = len(report.failures)
        with tempfile.TemporaryDirectory(prefix="egovmon-rules-test-") as scratch:
            engine = create_engine_for(f"sqlite:///{scratch}/test.db")
            try:
                Base.metadata.create_all(engine)
                store = Store(engine)
                store.upsert_observations(_observations(case, tz), "rules-test",
                                          dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
                evaluator = Evaluator(catalog, units, store, tz)
                for step in case.evaluate:
                    as_of = _instant(step.at, tz)
                    results = {(e.rule, e.unit): e for e in evaluator.evaluate(list(rules), as_of)}
                    for expectation in step.expect:
                        report.checks += 1
                        for message in _compare(expectation, results.get((expectation.rule, expectation.unit))):
                            report.failures.append(Failure(str(path), case.name, str(step.at), expectation.rule,
                                                           expectation.unit, message))
            finally:
                engine.dispose()
        if on_test:
            on_test(str(path), case.name, len(report.failures) == before)


def _units_of(spec: RuleTestFile, base: Path, file: str) -> UnitTree:
    if isinstance(spec.units, str):
        return load_units(base / spec.units)
    raw = spec.units if spec.units is not None else list(DEFAULT_UNITS)
    try:
        return build_tree([Unit.model_validate(u) for u in raw], DEFAULT_GROUPS, file)
    except ValidationError as exc:
        raise ConfigError.single(file, f"units: {exc.errors()[0]['msg']}") from None


def _instant(at: dt.date | dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    if isinstance(at, dt.datetime):
        return at if at.tzinfo else at.replace(tzinfo=tz)
    return local_midnight(at + dt.timedelta(days=1), tz) - dt.timedelta(seconds=1)


def _observations(case: RuleTestCase, tz: dt.tzinfo) -> list[Observation]:
    out = []
    for series in case.input:
        for measure, text in series.series.items():
            for i, value in enumerate(expand_series(str(text))):
                if value is None:
                    continue
                if series.grain == "month":
                    first = add_months(dt.date.fromisoformat(series.start + "-01"), i)
                    period = Period.of_month(first.year, first.month, tz)
                else:
                    period = Period.of_day(dt.date.fromisoformat(series.start) + dt.timedelta(days=i), tz)
                out.append(Observation(measure, series.unit, period, value))
    return out


def _compare(want: Expectation, got: Evaluation | None) -> list[str]:
    if want.absent:
        return [] if got is None else [f"expected no evaluation, got status {got.status}"]
    if got is None:
        return ["expected an evaluation, got none (unit not covered, or rule not valid that day)"]
    messages = []
    if want.status is not None and want.status != got.status:
        messages.append(f"status: expected {want.status}, got {got.status} "
                        f"(actual {_fmt(got.actual)}, expected value {_fmt(got.expected)})")
    for name in ("actual", "expected", "gap", "gap_to_target", "forecast_value"):
        wanted = getattr(want, name)
        value = getattr(got, name)
        if wanted is not None and (value is None or not math.isclose(value, wanted, abs_tol=want.tolerance)):
            messages.append(f"{name}: expected {wanted:g}, got {_fmt(value)}")
    if want.forecast_reached_on is not None:
        got_day = "unreachable" if got.forecast_reachable is False else got.forecast_reached_on
        if want.forecast_reached_on != got_day:
            messages.append(f"forecast_reached_on: expected {want.forecast_reached_on}, got {got_day}")
    if want.forecast_points is not None and want.forecast_points != got.forecast_points:
        messages.append(f"forecast_points: expected {want.forecast_points}, got {got.forecast_points}")
    if want.clear is not None and want.clear != got.clear:
        messages.append(f"clear: expected {want.clear}, got {got.clear}")
    return messages


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"
