"""Evaluate target rules for (rule, unit, as-of): actual, expected, gap, status, forecast.

Statuses, for a rule "KPI ≥ target by deadline" (``<=`` rules mirror them):

- ``stale`` — the newest data the unit's value rests on ends more than
  ``stale_after`` before the as-of instant (the source or the unit stopped
  reporting; for a subtree, also when the unit's own data stopped while units
  below it still report). The value may still be shown, but it is not judged.
- ``no_data`` — nothing to compute the value from in the window, and nothing
  stale either: the unit has not reported yet. Never a fabricated 0 %.
- ``met`` — the actual value reaches the target.
- ``missed`` — the deadline (end of that day, province's time) has passed and
  the target is not reached.
- ``on_track`` — at or better than the expected value on the trajectory today.
- ``at_risk`` — behind the expected value by no more than ``at_risk_margin``.
- ``behind`` — behind the expected value by more than ``at_risk_margin``.

``gap`` is the shortfall against the expected value (positive: behind);
``gap_to_target`` the shortfall against the target itself. ``clear`` says the
unit is met, or on track by at least ``resolve_margin``: an alert raised for it
resolves only then, so a unit hovering at the line does not flap.

Evaluation reads only stored observations, the rules and the unit tree, so it is
deterministic for a given as-of: history can be re-evaluated at any date.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Literal

from monitor.catalog import Catalog, Kpi
from monitor.kpi import KpiEngine, KpiValue, Prepared, Scope
from monitor.storage.store import Store, StoredObservation
from monitor.targets.forecast import forecast
from monitor.targets.model import TargetRule, UnitSelector
from monitor.targets.trajectory import expected_on, path_points
from monitor.timeutil import add_months, local_date, local_midnight
from monitor.units import UnitTree
from monitor.windows import Window

Status = Literal["met", "on_track", "at_risk", "behind", "missed", "no_data", "stale"]
STATUSES: tuple[Status, ...] = ("met", "on_track", "at_risk", "behind", "missed", "no_data", "stale")
# Statuses that judge the unit (the others say the data cannot).
JUDGED: frozenset[Status] = frozenset({"met", "on_track", "at_risk", "behind", "missed"})
EPSILON = 1e-9  # 0.9 computed as 9/10 must meet a 0.9 target
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Evaluation:
    rule: str
    kpi: str
    unit: str
    as_of: datetime
    as_of_day: date
    window: str
    window_start: datetime
    window_end: datetime
    status: Status
    actual: float | None
    numerator: float
    denominator: float
    units_reporting: int
    comparator: str
    target: float
    expected: float
    gap: float | None
    gap_to_target: float | None
    deadline: date
    baseline_value: float | None
    baseline_date: date | None
    data_through: datetime | None
    forecast_value: float | None
    forecast_reached_on: date | None
    forecast_reachable: bool | None
    forecast_points: int
    trend_per_year: float | None
    clear: bool


def covered_units(selector: UnitSelector, units: UnitTree, day: date) -> list[str]:
    """Codes of the units valid on ``day`` that the selector covers."""
    codes = set(selector.codes)
    excluded = set(selector.exclude)
    out = []
    for unit in units.valid_on(day):
        if unit.code in excluded:
            continue
        if selector.levels and unit.level not in selector.levels:
            continue
        if selector.groups and unit.group not in selector.groups:
            continue
        if codes and unit.code not in codes and not (
                selector.descendants and codes.intersection(units.ancestors(unit.code, day))):
            continue
        out.append(unit.code)
    return out


def trend_instants(as_of: datetime, points: int, tz: tzinfo) -> list[datetime]:
    """``as_of`` and the last instant of each of the ``points - 1`` months before it."""
    first_of_month = local_date(as_of, tz).replace(day=1)
    return [as_of] + [local_midnight(add_months(first_of_month, -k), tz) - _TICK for k in range(points - 1)]


def classify(*, actual: float | None, expected: float, target: float, higher_is_better: bool,
             at_risk_margin: float, past_deadline: bool, stale: bool, ever_reported: bool) -> Status:
    """The status, from numbers alone (see the module docstring)."""
    if stale:
        return "stale"
    if actual is None:
        return "stale" if ever_reported else "no_data"
    sign = 1.0 if higher_is_better else -1.0
    if sign * (actual - target) >= -EPSILON:
        return "met"
    if past_deadline:
        return "missed"
    shortfall = sign * (expected - actual)
    if shortfall <= EPSILON:
        return "on_track"
    return "at_risk" if shortfall <= at_risk_margin + EPSILON else "behind"


@dataclass(frozen=True)
class _Loaded:
    """The main read, indexed, and the span ``[start, end)`` it covers."""

    prepared: Prepared
    start: datetime
    end: datetime


@dataclass
class _Plan:
    rule: TargetRule
    kpi: Kpi
    window: Window
    units: list[str]
    instants: list[datetime]
    instant_days: list[date]  # each instant's day, province's time
    bounds: tuple[datetime, datetime]  # the window at the as-of instant
    deadline_end: datetime  # the end of the deadline's day, province's time

    @property
    def higher_is_better(self) -> bool:
        if self.rule.comparator is not None:
            return self.rule.comparator == ">="
        return self.kpi.direction == "up"


class Evaluator:
    def __init__(self, catalog: Catalog, units: UnitTree, store: Store, tz: tzinfo) -> None:
        self.catalog = catalog
        self.units = units
        self.store = store
        self.tz = tz
        self.kpis = KpiEngine(catalog, units, store, tz)

    def evaluate(self, rules: Iterable[TargetRule], as_of: datetime, *,
                 units: Iterable[str] | None = None) -> list[Evaluation]:
        """Every rule valid on the as-of day, for every unit it covers (or only ``units``)."""
        day = local_date(as_of, self.tz)
        wanted = set(units) if units is not None else None
        plans = []
        for rule in rules:
            if not rule.valid_on(day):
                continue
            kpi = self.catalog.kpis[rule.kpi]
            covered = [u for u in covered_units(rule.units, self.units, day) if wanted is None or u in wanted]
            if covered:
                window = Window.parse(rule.window or kpi.window)
                instants = trend_instants(as_of, rule.forecast.points, self.tz)
                # worked out once per rule, not once per unit
                plans.append(_Plan(rule, kpi, window, covered, instants,
                                   [local_date(i, self.tz) for i in instants], window.bounds(as_of, self.tz),
                                   local_midnight(rule.deadline + timedelta(days=1), self.tz)))
        if not plans:
            return []
        loaded = self._load(plans)
        values = self._values(plans, loaded.prepared)
        through = _DataThrough(self.store, {m for p in plans for m in p.kpi.measures}, self.units, self.tz, as_of)
        results = []
        for plan in plans:
            baselines = self._baselines(plan, as_of, loaded)
            for unit in plan.units:
                results.append(self._judge(plan, unit, as_of, day, values, through, baselines.get(unit)))
        return results

    # ------------------------------------------------------------------ data

    def _load(self, plans: Sequence[_Plan]) -> _Loaded:
        """One read covering every window at every trend instant."""
        measures = {m for p in plans for m in p.kpi.measures}
        spans = [p.window.bounds(i, self.tz) for p in plans for i in p.instants]
        start, end = min(s for s, _ in spans), max(e for _, e in spans)
        observations = self.store.load_observations(measures, start, end)
        return _Loaded(self.kpis.prepare(observations), start, end)

    def _values(self, plans: Sequence[_Plan], prepared: Prepared
                ) -> dict[tuple[datetime, str, Scope, str, str], KpiValue]:
        """KPI values keyed by (instant, window, scope, kpi, unit), each (instant,
        window, scope) computed once for all the KPIs and units that need it."""
        groups: dict[tuple[datetime, str, Scope], tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
        for plan in plans:
            for instant in plan.instants:
                kpis, units = groups[(instant, plan.window.spec, plan.rule.units.scope)]
                kpis.add(plan.rule.kpi)
                units.update(plan.units)
        table = {}
        for (instant, spec, scope), (kpis, units) in groups.items():
            for value in self.kpis.compute_from(prepared, instant, Window.parse(spec), sorted(kpis),
                                                units, scope):
                table[(instant, spec, scope, value.kpi, value.unit)] = value
        return table

    def _baselines(self, plan: _Plan, as_of: datetime, loaded: _Loaded) -> dict[str, tuple[date, float]]:
        rule = plan.rule
        if rule.baseline is None:
            return {}
        if not rule.baseline.first_observation:
            assert rule.baseline.date is not None and rule.baseline.value is not None
            return dict.fromkeys(plan.units, (rule.baseline.date, rule.baseline.value))
        # Each unit's own start: its value over the rule's window at the end of the
        # first month that has data for it (its subtree, for subtree scope).
        since = local_midnight(rule.baseline.since, self.tz) if rule.baseline.since else None
        firsts = self.store.first_periods(plan.kpi.measures, since, as_of)
        scope = rule.units.scope
        first_of: dict[str, datetime] = {}
        for unit, start in firsts.items():
            targets = (unit,) if scope == "self" else (unit, *self.units.ancestors(unit, local_date(start, self.tz)))
            for target in targets:
                if target not in first_of or start < first_of[target]:
                    first_of[target] = start
        by_instant: dict[datetime, list[str]] = defaultdict(list)
        for unit in plan.units:
            if unit in first_of:
                month = local_date(first_of[unit], self.tz).replace(day=1)
                by_instant[min(as_of, local_midnight(add_months(month, 1), self.tz) - _TICK)].append(unit)
        out = {}
        for instant, units in by_instant.items():
            start, end = plan.window.bounds(instant, self.tz)
            # the main read holds every row of a window inside its span (the measures too):
            # read again only for a window reaching further back
            observations: Prepared | list[StoredObservation] = (
                loaded.prepared if loaded.start <= start and end <= loaded.end
                else self.store.load_observations(plan.kpi.measures, start, end, units=None))
            for value in self.kpis.compute_from(observations, instant, plan.window, [rule.kpi], set(units), scope):
                if value.value is not None:
                    out[value.unit] = (local_date(instant, self.tz), value.value)
        return out

    # ------------------------------------------------------------------ judgement

    def _judge(self, plan: _Plan, unit: str, as_of: datetime, day: date,
               values: dict[tuple[datetime, str, Scope, str, str], KpiValue],
               through: _DataThrough, baseline: tuple[date, float] | None) -> Evaluation:
        rule, scope, spec = plan.rule, plan.rule.units.scope, plan.window.spec
        current = values.get((as_of, spec, scope, rule.kpi, unit))
        actual = current.value if current else None
        data_through = through.of(plan.kpi, unit, scope)
        stale = data_through is not None and as_of - data_through > rule.stale_after
        expected = expected_on(day, path_points(rule, baseline))
        higher = plan.higher_is_better
        status = classify(actual=actual, expected=expected, target=rule.target, higher_is_better=higher,
                          at_risk_margin=rule.at_risk_margin, past_deadline=as_of >= plan.deadline_end,
                          stale=stale, ever_reported=data_through is not None)
        sign = 1.0 if higher else -1.0
        gap = sign * (expected - actual) if actual is not None else None
        gap_to_target = sign * (rule.target - actual) if actual is not None else None
        points = []
        for instant, instant_day in zip(plan.instants, plan.instant_days, strict=True):
            past = values.get((instant, spec, scope, rule.kpi, unit))
            if past is not None and past.value is not None:
                points.append((instant_day, past.value))
        outlook = forecast(points, today=day, target=rule.target, deadline=rule.deadline,
                           higher_is_better=higher, already_met=status == "met",
                           min_points=rule.forecast.min_points)
        clear = status == "met" or (status == "on_track" and gap is not None and -gap >= rule.resolve_margin - EPSILON)
        start, end = plan.bounds
        return Evaluation(
            rule=rule.id, kpi=rule.kpi, unit=unit, as_of=as_of, as_of_day=day, window=spec,
            window_start=start, window_end=end, status=status, actual=actual,
            numerator=current.numerator if current else 0.0, denominator=current.denominator if current else 0.0,
            units_reporting=current.units_reporting if current else 0, comparator=">=" if higher else "<=",
            target=rule.target, expected=expected, gap=gap, gap_to_target=gap_to_target, deadline=rule.deadline,
            baseline_value=baseline[1] if baseline else None, baseline_date=baseline[0] if baseline else None,
            data_through=data_through, forecast_value=outlook.value_at_deadline,
            forecast_reached_on=outlook.reached_on, forecast_reachable=outlook.reachable,
            forecast_points=outlook.points, trend_per_year=outlook.trend_per_year, clear=clear)


class _DataThrough:
    """How far each unit's data reaches, per KPI: the end of the newest period
    holding any of the KPI's measures (capped at the as-of instant), over all
    stored history — so the answer does not depend on which other rules are
    evaluated alongside. For a subtree it is the newest data anywhere below, but
    never newer than the unit's own data when the unit reports itself: a
    department that stopped reporting is stale even while its agencies report."""

    def __init__(self, store: Store, measures: Iterable[str], units: UnitTree, tz: tzinfo, as_of: datetime) -> None:
        self.units = units
        self.tz = tz
        self._by_unit: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
        for measure, unit, start, end in store.latest_periods(measures, as_of):
            self._by_unit[unit].append((measure, min(end, as_of), start))
        self._cache: dict[tuple[tuple[str, ...], Scope], dict[str, datetime]] = {}

    def of(self, kpi: Kpi, unit: str, scope: Scope) -> datetime | None:
        own = self._table(kpi.measures, "self").get(unit)
        if scope == "self":
            return own
        below = self._table(kpi.measures, "subtree").get(unit)
        return min(below, own) if below is not None and own is not None else below

    def _table(self, measures: tuple[str, ...], scope: Scope) -> dict[str, datetime]:
        key = (measures, scope)
        table = self._cache.get(key)
        if table is None:
            table = self._cache[key] = self._build(set(measures), scope)
        return table

    def _build(self, measures: set[str], scope: Scope) -> dict[str, datetime]:
        table: dict[str, datetime] = {}
        for unit, entries in self._by_unit.items():
            relevant = [(reach, start) for measure, reach, start in entries if measure in measures]
            if not relevant:
                continue
            reach, start = max(relevant)
            targets = (unit,) if scope == "self" else (unit, *self.units.ancestors(unit, local_date(start, self.tz)))
            for target in targets:
                if target not in table or reach > table[target]:
                    table[target] = reach
        return table
