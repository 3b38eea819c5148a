"""The index-file schema (``version: 1``): a weighted composite score over KPIs.

An index file defines one index: which units are scored, over which window,
and its criteria (the "groups" of an official methodology), each worth a
number of points earned through KPI components. The arithmetic is in
``monitor.scoring.compute``; checks that need the catalog or the unit tree
(unknown KPIs, unknown groups, duplicate ids across files) are in
``monitor.scoring.loader``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.targets.model import Citation as TargetCitation
from monitor.targets.model import Ratio
from monitor.units import Level, Unit
from monitor.windows import Window

IndexId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
CriterionId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Direction = Literal["up", "down"]
# Points are compared after rounding: 33.33 + 33.33 + 33.34 must equal 100.
POINTS_TOLERANCE = 1e-6


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Citation(TargetCitation):
    """Where the methodology comes from. Unlike a target's citation the date is
    optional: provincial rankings are often known only from news items that do
    not give the date of the decision behind them."""

    date: dt.date | None = None  # type: ignore[assignment]


class Component(_Frozen):
    """One KPI's part of a criterion.

    ``full_at`` is the KPI value at which the component earns its whole share:
    for an "up" KPI the share is earned linearly from 0 up to ``full_at``; for a
    "down" KPI it is full at or below ``full_at`` and falls linearly to 0 at 1.
    ``direction`` is the catalog's: the loader fills it in (and refuses a file
    that states the opposite), so the arithmetic never needs the catalog.
    """

    kpi: Annotated[str, Field(min_length=1)]
    weight: Annotated[float, Field(gt=0)] = 1.0
    full_at: Ratio
    direction: Direction | None = None


class Criterion(_Frozen):
    """A criterion (a "group" in QĐ 766) worth ``points``. ``measured: false``
    marks one the service has no data for: it has no components, counts towards
    the index's stated ``max`` but not towards the score's ``max_score``, and
    says why in ``note``."""

    id: CriterionId
    vi: Annotated[str, Field(min_length=1)]
    en: str | None = None
    points: Annotated[float, Field(gt=0)]
    measured: bool = True
    components: tuple[Component, ...] = ()
    note: str | None = None

    @model_validator(mode="after")
    def _measured_or_explained(self) -> Criterion:
        if self.measured and not self.components:
            raise ValueError("a measured criterion needs at least one component (kpi, full_at); "
                             "if the service has no data for it, write 'measured: false' and a note")
        if not self.measured:
            if self.components:
                raise ValueError("a criterion with 'measured: false' earns nothing, so it cannot have components")
            if not self.note:
                raise ValueError("a criterion with 'measured: false' needs a 'note' saying why it is not measured")
        return self


class ScoredUnits(_Frozen):
    """Which units get a score on a day: a unit must be valid on that day and
    match every list given (its level is one of ``levels``, its group one of
    ``groups``)."""

    levels: tuple[Level, ...] = ()
    groups: tuple[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")], ...] = ()

    @model_validator(mode="after")
    def _something(self) -> ScoredUnits:
        if not (self.levels or self.groups):
            raise ValueError("say which units are scored: give levels, groups or both")
        return self

    def matches(self, unit: Unit) -> bool:
        return ((not self.levels or unit.level in self.levels)
                and (not self.groups or unit.group in self.groups))


class ScoringIndex(_Frozen):
    """One index file. ``max`` is the methodology's total (including criteria
    that are not measured); when given, the criteria's points must add up to it.

    ``scope`` tells the caller which KPI values to compute for the index
    (``KpiEngine.compute(..., scope=index.scope)``): a department over its
    subtree (with its agencies) or its own data only.
    """

    version: Literal[1]
    id: IndexId
    vi: Annotated[str, Field(min_length=1)]
    en: str | None = None
    description: str | None = None
    citation: Citation
    window: str = "ytd"
    scope: Literal["subtree", "self"] = "subtree"
    units: ScoredUnits
    rank_within: Literal["group", "all"] = "group"
    max: Annotated[float, Field(gt=0)] | None = None
    criteria: Annotated[tuple[Criterion, ...], Field(min_length=1)]

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        Window.parse(value)
        return value

    @property
    def measured(self) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if c.measured)

    @property
    def max_score(self) -> float:
        """The most a unit can score here: the points of the measured criteria."""
        return sum(c.points for c in self.measured)

    @property
    def kpis(self) -> tuple[str, ...]:
        """The KPIs the index reads, each once, in the order written."""
        return tuple(dict.fromkeys(comp.kpi for c in self.measured for comp in c.components))


def consistency_problems(index: ScoringIndex) -> list[tuple[str, str]]:
    """Checks across fields, as (field, message): unique criterion ids, no KPI
    twice in a criterion, points adding up to ``max``, at least one criterion
    measured."""
    found: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, criterion in enumerate(index.criteria):
        if criterion.id in seen:
            found.append((f"criteria.{i}.id", f"criterion {criterion.id!r} is defined twice "
                                              f"(first as criteria[{seen[criterion.id]}]); ids must be unique"))
        seen.setdefault(criterion.id, i)
        kpis: set[str] = set()
        for j, component in enumerate(criterion.components):
            if component.kpi in kpis:
                found.append((f"criteria.{i}.components.{j}.kpi",
                               f"{component.kpi!r} appears twice in criterion {criterion.id!r}; "
                               "give it one component with a larger weight instead"))
            kpis.add(component.kpi)
    total = sum(c.points for c in index.criteria)
    if index.max is not None and abs(total - index.max) > POINTS_TOLERANCE:
        listed = " + ".join(f"{c.points:g}" for c in index.criteria)
        found.append(("max", f"the criteria's points add up to {total:g} ({listed}), not the stated max "
                             f"{index.max:g}; correct the points or the max"))
    if not index.measured:
        found.append(("criteria", "no criterion is measured, so no unit could ever get a score"))
    return found
