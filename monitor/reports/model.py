"""A target-gap report: which units are behind which targets, by how much, since
when, and whether they will make it — as plain data that every format renders.

Texts (unit, KPI and rule names) are already in the report's language, so a
renderer only lays out what it is given. Ratios are in [0, 1]; gaps are in ratio
units (0.05 = 5 percentage points), positive when behind. Times are aware UTC;
``timezone`` says how to show them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

Language = Literal["vi", "en"]
REPORT_STATUSES = ("met", "on_track", "at_risk", "behind", "missed", "no_data", "stale")


@dataclass(frozen=True)
class GapRow:
    """One unit on one target, as evaluated at the report's as-of instant."""

    rule: str
    kpi: str
    unit: str
    unit_name: str
    level: str
    group: str
    group_name: str
    status: str
    actual: float | None
    expected: float
    target: float
    comparator: str  # ">=" or "<="
    gap: float | None  # shortfall against the expected value today (positive: behind)
    gap_to_target: float | None  # shortfall against the target itself
    deadline: date
    numerator: float
    denominator: float
    units_reporting: int
    forecast_value: float | None  # at the deadline, on the current trend
    forecast_reached_on: date | None
    forecast_reachable: bool | None
    trend_per_year: float | None
    data_through: datetime | None
    behind_since: datetime | None  # when its alert went pending, while it is pending or firing
    rank: int | None  # by actual value among the target's units of the same group (1 = best)
    rank_size: int | None


@dataclass(frozen=True)
class Point:
    day: date
    value: float | None


@dataclass(frozen=True)
class TargetSection:
    rule: str
    title: str
    kpi: str
    kpi_name: str
    window: str
    target: float
    comparator: str
    deadline: date
    severity: str
    citation: str  # "QĐ 942/QĐ-TTg (15/06/2021): …"
    citation_url: str | None
    citation_verified: bool
    status_counts: dict[str, int]
    rows: tuple[GapRow, ...]  # worst first: behind before on track, larger gaps first
    # The report's scope unit on this target (the province when no scope is given):
    # its value at past month ends, and the glide path it is judged against.
    headline_unit: str | None = None
    history: tuple[Point, ...] = ()
    trajectory: tuple[Point, ...] = ()


@dataclass(frozen=True)
class ScoreRow:
    index: str
    index_name: str
    unit: str
    unit_name: str
    group: str
    group_name: str
    score: float
    max_score: float
    scaled: float  # 0–100
    rank: int
    rank_size: int
    complete: bool


@dataclass(frozen=True)
class UnitRef:
    code: str
    name: str
    level: str
    group: str


@dataclass(frozen=True)
class GapReport:
    province: str
    language: Language
    timezone: str
    as_of: datetime
    as_of_day: date
    generated_at: datetime
    scope: str | None  # a unit code, or None for the whole province
    scope_name: str
    status_counts: dict[str, int]
    targets: tuple[TargetSection, ...]
    scores: tuple[ScoreRow, ...] = ()
    units: tuple[UnitRef, ...] = field(default=())  # every unit in the scope, in tree order

    @property
    def rows(self) -> list[GapRow]:
        return [row for section in self.targets for row in section.rows]
