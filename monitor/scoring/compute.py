"""Composite scores per unit, and ranks within groups.

The arithmetic, for one index and one day:

- a component's share of its criterion is ``points × weight / Σ weights`` (the
  weights of that criterion's components);
- it earns ``share × fraction``, where for an "up" KPI
  ``fraction = min(value / full_at, 1)`` (linear below the threshold, capped
  at full points, as QĐ 766 scores its indicators) and for a "down" KPI
  ``fraction = min(1, (1 − value) / (1 − full_at))`` (full at or below
  ``full_at``, 0 at 1); the fraction is kept within [0, 1], so a KPI value
  outside 0–1 (bad source data) neither costs nor earns beyond the share;
- a component without data (no value for the unit in the index's window, or a
  denominator of 0) earns 0 and makes the score incomplete: a missing report
  costs points, as in the government rankings, and ``complete: false`` with
  ``missing`` tells the reader why;
- a unit with no data for any component gets no score (not 0) and no rank;
- the score is the sum over measured criteria; ``max_score`` is the sum of
  their points and ``scaled`` is ``score / max_score × 100``;
- only units valid on the day that match the index's levels/groups are
  scored; ranks are "1224" style (ties share a rank, the next rank skips),
  1 = best, among the scored units of the same group (``rank_within: group``)
  or among all scored units (``rank_within: all``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from monitor.kpi import KpiValue
from monitor.scoring.model import Component, Criterion, ScoringIndex
from monitor.units import Level, Unit, UnitTree

# Scores that differ by less than this are a tie: two ways to the same points
# must not be told apart by floating-point noise.
TIE_DECIMALS = 6


@dataclass(frozen=True, slots=True)
class UnitScore:
    index: str
    unit: str
    group: str
    level: Level
    score: float  # points earned, out of max_score
    max_score: float  # the points of the index's measured criteria
    scaled: float  # score / max_score × 100
    rank: int  # 1 = best, within the unit's group (or all units, for rank_within: all)
    rank_size: int  # how many units were ranked alongside it
    criteria: Mapping[str, float]  # measured criterion id → points earned
    complete: bool  # every component had data
    missing: tuple[str, ...]  # KPIs without data for the unit, in index order


def component_fraction(component: Component, value: float) -> float:
    """The part (0–1) of the component's share that ``value`` earns."""
    if component.direction is None:
        raise ValueError(f"component {component.kpi!r} has no direction: load index files through "
                         "monitor.scoring.load_indices, which takes it from the catalog")
    if component.direction == "up":
        fraction = 1.0 if component.full_at <= 0 else value / component.full_at
    else:
        fraction = 1.0 if component.full_at >= 1 or value <= component.full_at \
            else (1 - value) / (1 - component.full_at)
    return min(max(fraction, 0.0), 1.0)


def scored_units(index: ScoringIndex, units: UnitTree, day: date) -> list[Unit]:
    """The units the index scores on ``day`` (for ``KpiEngine.compute(units=...)``)."""
    return [u for u in units.valid_on(day) if index.units.matches(u)]


def compute_scores(index: ScoringIndex, kpi_values: Iterable[KpiValue], units: UnitTree,
                   day: date) -> list[UnitScore]:
    """Score and rank every unit the index covers on ``day`` that has some data.

    ``kpi_values`` may hold other windows, KPIs and units: only the index's
    window and KPIs, for the scored units, are read. If a (KPI, unit) appears
    twice, the last one wins.
    """
    covered = scored_units(index, units, day)
    wanted_kpis = set(index.kpis)
    codes = {u.code for u in covered}
    values: dict[tuple[str, str], float | None] = {}
    for kv in kpi_values:
        if kv.window == index.window and kv.kpi in wanted_kpis and kv.unit in codes:
            values[(kv.kpi, kv.unit)] = kv.value
    unranked = []
    for unit in covered:
        scored = _score_unit(index, unit, values)
        if scored is not None:
            unranked.append((unit, *scored))
    pools: dict[str, list[float]] = defaultdict(list)
    for unit, points, _, _ in unranked:
        pools[_pool(index, unit)].append(round(sum(points.values()), TIE_DECIMALS))
    max_score = index.max_score
    out = []
    for unit, points, complete, missing in unranked:
        score = sum(points.values())
        pool = pools[_pool(index, unit)]
        mine = round(score, TIE_DECIMALS)
        out.append(UnitScore(
            index=index.id, unit=unit.code, group=unit.group, level=unit.level, score=score,
            max_score=max_score, scaled=score / max_score * 100,
            rank=1 + sum(1 for other in pool if other > mine), rank_size=len(pool),
            criteria=points, complete=complete, missing=missing))
    out.sort(key=lambda s: (s.group if index.rank_within == "group" else "", s.rank, s.unit))
    return out


def _pool(index: ScoringIndex, unit: Unit) -> str:
    return unit.group if index.rank_within == "group" else ""


def _score_unit(index: ScoringIndex, unit: Unit, values: Mapping[tuple[str, str], float | None]
                ) -> tuple[dict[str, float], bool, tuple[str, ...]] | None:
    """(criterion → points, complete, missing KPIs), or None when the unit has
    no data for any component."""
    points: dict[str, float] = {}
    missing: dict[str, None] = {}  # ordered set
    any_data = False
    for criterion in index.measured:
        earned = 0.0
        for component, share in _shares(criterion):
            value = values.get((component.kpi, unit.code))
            if value is None:
                missing[component.kpi] = None
                continue
            any_data = True
            earned += share * component_fraction(component, value)
        points[criterion.id] = earned
    if not any_data:
        return None
    return points, not missing, tuple(missing)


def _shares(criterion: Criterion) -> list[tuple[Component, float]]:
    total = sum(c.weight for c in criterion.components)
    return [(c, criterion.points * c.weight / total) for c in criterion.components]
