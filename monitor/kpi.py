"""Compute KPIs for units and their subtrees over windows.

The arithmetic the whole product rests on:

- a roll-up sums numerators and denominators over the units below; it never
  averages ratios;
- a flow sums over the periods inside the window; a stock takes, per unit and
  measure, its latest value inside the window, and only units that exist at the
  window's effective day contribute (a merged commune's last staff count is
  not still standing);
- a unit contributes a flow KPI for a period only when every measure of the
  KPI is present for it in that period (half a record would bias the ratio);
- the tree is the one valid at each period: 2025's year-to-date rolls the old
  communes up through their districts until June and the new communes straight
  to the province from July.

When two sources report the same measure for the same unit and period, the one
collected last wins.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Literal

from monitor.catalog import Catalog, Kpi
from monitor.storage.store import Store, StoredObservation
from monitor.timeutil import local_date
from monitor.units import UnitTree
from monitor.windows import Window

Scope = Literal["subtree", "self"]


@dataclass(frozen=True, slots=True)
class KpiValue:
    kpi: str
    unit: str
    window: str
    numerator: float
    denominator: float
    units_reporting: int

    @property
    def value(self) -> float | None:
        """The ratio, or None when there is nothing to divide by (no data)."""
        return self.numerator / self.denominator if self.denominator > 0 else None


@dataclass
class _Accumulator:
    numerator: float = 0.0
    denominator: float = 0.0
    reporting: set[str] = field(default_factory=set)  # units that contributed

    def add(self, numerator: float, denominator: float, leaf: str) -> None:
        self.numerator += numerator
        self.denominator += denominator
        self.reporting.add(leaf)


class KpiEngine:
    def __init__(self, catalog: Catalog, units: UnitTree, store: Store, tz: tzinfo) -> None:
        self.catalog = catalog
        self.units = units
        self.store = store
        self.tz = tz

    def compute(self, as_of: datetime, windows: Sequence[Window], *,
                kpis: Iterable[str] | None = None,
                units: Iterable[str] | None = None, scope: Scope = "subtree") -> list[KpiValue]:
        """Every requested KPI × window for every unit valid at the window's
        effective day (or only ``units``), each over its subtree — or, with
        ``scope="self"``, over the unit's own data only (a department without its
        agencies)."""
        kpi_ids = list(kpis) if kpis is not None else list(self.catalog.kpis)
        wanted = set(units) if units is not None else None
        if not windows:
            return []
        # One read for all windows: they overlap (month ⊂ quarter ⊂ ytd), and each
        # window picks its own periods from the same rows.
        spans = [window.bounds(as_of, self.tz) for window in windows]
        measures = {m for k in kpi_ids for m in self.catalog.kpis[k].measures}
        observations = self.store.load_observations(
            measures, min(s for s, _ in spans), max(e for _, e in spans))
        prepared = self.prepare(observations)
        results: list[KpiValue] = []
        for window in windows:
            results.extend(self.compute_from(prepared, as_of, window, kpi_ids, wanted, scope))
        return results

    def compute_series(self, instants: Sequence[datetime], windows: Sequence[Window], *,
                       kpis: Iterable[str], units: Iterable[str],
                       scope: Scope = "subtree") -> dict[datetime, list[KpiValue]]:
        """``compute`` at several instants (a chart's points) from one read of the
        observations that all of their windows span."""
        kpi_ids, wanted = list(kpis), set(units)
        if not instants or not windows or not kpi_ids:
            return {}
        spans = [window.bounds(instant, self.tz) for instant in instants for window in windows]
        measures = {m for k in kpi_ids for m in self.catalog.kpis[k].measures}
        observations = self.store.load_observations(
            measures, min(s for s, _ in spans), max(e for _, e in spans))
        prepared = self.prepare(observations)
        return {instant: [value for window in windows
                          for value in self.compute_from(prepared, instant, window, kpi_ids, wanted, scope)]
                for instant in instants}

    def compute_from(self, observations: Iterable[StoredObservation] | Prepared, as_of: datetime,
                     window: Window, kpi_ids: Sequence[str],
                     wanted: set[str] | None = None, scope: Scope = "subtree") -> list[KpiValue]:
        """The arithmetic, separated from loading so it can be measured and tested alone.
        Computing several windows or instants from the same rows, pass ``prepare(rows)``
        once instead of the rows each time."""
        prepared = observations if isinstance(observations, Prepared) else self.prepare(observations)
        start, end = window.bounds(as_of, self.tz)
        effective_day = local_date(min(as_of, end - timedelta(microseconds=1)), self.tz)
        chosen = [p for p in prepared.periods if p[0] >= start and p[1] <= end and p[0] < as_of]
        report_on = [u.code for u in self.units.valid_on(effective_day)
                     if wanted is None or u.code in wanted]
        results = []
        for kpi_id in kpi_ids:
            kpi = self.catalog.kpis[kpi_id]
            if self._is_flow(kpi):
                flow_periods = chosen
                if window.is_latest:
                    # "latest" for a flow: the most recent period (of any flow measure) only.
                    latest = max((p[0] for p in chosen if prepared.flows[p]), default=None)
                    flow_periods = [p for p in chosen if p[0] == latest]
                totals = self._roll_up_flows(kpi, prepared, flow_periods, scope)
            else:
                totals = self._roll_up_stocks(kpi, prepared, chosen, effective_day, scope)
            for code in report_on:
                acc = totals.get(code)
                if acc is not None:
                    results.append(KpiValue(kpi_id, code, window.spec, acc.numerator,
                                            acc.denominator, len(acc.reporting)))
        return results

    def prepare(self, observations: Iterable[StoredObservation]) -> Prepared:
        return Prepared(observations, self.catalog)

    # ------------------------------------------------------------------ selection

    def _is_flow(self, kpi: Kpi) -> bool:
        kinds = {self.catalog.measures[m].kind for m in kpi.measures}
        return kinds == {"flow"}

    # ------------------------------------------------------------------ roll-ups

    def _roll_up_flows(self, kpi: Kpi, prepared: Prepared, periods: Sequence[_PeriodKey],
                       scope: Scope) -> dict[str, _Accumulator]:
        """Per (unit, period start) with every measure of the KPI: its numerator and
        denominator, summed per unit and tree (the tree of each period's first day),
        then added to the unit and its ancestors."""
        by_start: dict[datetime, list[_PeriodKey]] = defaultdict(list)
        for period in periods:
            by_start[period[0]].append(period)
        partial: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        for start, same_start in by_start.items():
            chains = {} if scope == "self" else self.units.ancestor_table(local_date(start, self.tz))
            for unit, (numerator, denominator) in prepared.flow_terms(kpi, same_start).items():
                key = (unit, chains.get(unit, ()))
                sums = partial.get(key)
                if sums is None:
                    partial[key] = [numerator, denominator]
                else:
                    sums[0] += numerator
                    sums[1] += denominator
        totals: dict[str, _Accumulator] = defaultdict(_Accumulator)
        for (unit, chain), (numerator, denominator) in partial.items():
            totals[unit].add(numerator, denominator, unit)
            for target in chain:
                totals[target].add(numerator, denominator, unit)
        return totals

    def _roll_up_stocks(self, kpi: Kpi, prepared: Prepared, periods: Sequence[_PeriodKey],
                        day: date, scope: Scope) -> dict[str, _Accumulator]:
        totals: dict[str, _Accumulator] = defaultdict(_Accumulator)
        needed = kpi.measures
        latest = prepared.latest_stocks(needed, periods)
        valid_today = self.units.ancestor_table(day)
        for unit, values in latest.items():
            if unit not in valid_today or not all(m in values for m in needed):
                continue
            numerator = sum(values[m] for m in kpi.numerator)
            denominator = sum(values[m] for m in kpi.denominator)
            totals[unit].add(numerator, denominator, unit)
            if scope == "subtree":
                for target in valid_today[unit]:
                    totals[target].add(numerator, denominator, unit)
        return totals


_PeriodKey = tuple[datetime, datetime]


class Prepared:
    """Observations indexed once for many windows and instants: the newest value of
    each (measure, unit, period) — the source collected last wins — grouped by
    period, flows apart from stocks. Only the periods a window holds are visited,
    and a flow KPI's per-unit terms of a period are worked out once."""

    def __init__(self, observations: Iterable[StoredObservation], catalog: Catalog) -> None:
        rows = observations if isinstance(observations, list) else list(observations)
        is_flow = {m: spec.kind == "flow" for m, spec in catalog.measures.items()}
        # period → unit → measure → the newest record, periods in the order they first appear
        flows: dict[_PeriodKey, dict[str, dict[str, StoredObservation]]] = {}
        stocks: dict[_PeriodKey, dict[str, dict[str, StoredObservation]]] = {}
        for obs in rows:
            period = (obs.period_start, obs.period_end)
            table = flows if is_flow[obs.measure] else stocks
            units = table.get(period)
            if units is None:
                flows.setdefault(period, {})
                stocks.setdefault(period, {})
                units = table[period]
            measures = units.get(obs.unit)
            if measures is None:
                measures = units[obs.unit] = {}
            kept = measures.get(obs.measure)
            if kept is None or obs.collected_at > kept.collected_at:
                measures[obs.measure] = obs
        self.periods: list[_PeriodKey] = list(flows)
        # … then only the values are kept: the records can go (most of a national read's memory)
        self.flows = _values_only(flows)
        self.stocks = _values_only(stocks)
        # Periods sharing a start (a day and a month) are merged as one period's records,
        # the later record of a measure winning: keep where each of their records first came.
        starts = Counter(start for start, _ in self.periods)
        self._order: dict[tuple[str, str, datetime, datetime], int] = {}
        if any(count > 1 for count in starts.values()):
            for index, obs in enumerate(rows):
                if starts[obs.period_start] > 1:
                    self._order.setdefault((obs.measure, obs.unit, obs.period_start, obs.period_end), index)
        self._terms: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[_PeriodKey, ...]],
                          dict[str, tuple[float, float]]] = {}
        self._latest: dict[tuple[tuple[str, ...], tuple[_PeriodKey, ...]], dict[str, dict[str, float]]] = {}

    def flow_terms(self, kpi: Kpi, periods: Sequence[_PeriodKey]) -> dict[str, tuple[float, float]]:
        """unit → (numerator, denominator) of ``kpi`` over ``periods`` (which share their
        start: one reporting period), for the units that reported every measure of it."""
        key = (kpi.numerator, kpi.denominator, tuple(periods))
        terms = self._terms.get(key)
        if terms is None:
            if len(periods) == 1:
                values = self.flows[periods[0]]
            else:  # a day and a month both starting that day: merged, the later record winning
                records = sorted((self._order[(measure, unit, *period)], unit, measure, value)
                                 for period in periods for unit, measures in self.flows[period].items()
                                 for measure, value in measures.items())
                values = defaultdict(dict)
                for _, unit, measure, value in records:
                    values[unit][measure] = value
            needed, numerator, denominator = kpi.measures, kpi.numerator, kpi.denominator
            terms = self._terms[key] = {
                unit: (sum(measures[m] for m in numerator), sum(measures[m] for m in denominator))
                for unit, measures in values.items() if all(m in measures for m in needed)}
        return terms

    def latest_stocks(self, measures: Sequence[str], periods: Sequence[_PeriodKey]) -> dict[str, dict[str, float]]:
        """unit → measure → its value in the latest-ending of ``periods`` that holds it
        (kept: a subtree and a self-scoped rule over one window ask the same)."""
        key = (tuple(measures), tuple(periods))
        cached = self._latest.get(key)
        if cached is not None:
            return cached
        latest: dict[str, dict[str, float]] = {}
        self._latest[key] = latest
        for period in sorted(periods, key=lambda p: p[1], reverse=True):
            for unit, values in self.stocks[period].items():
                found = latest.get(unit)
                if found is None:
                    found = latest[unit] = {}
                for measure in measures:
                    if measure not in found and measure in values:
                        found[measure] = values[measure]
        return latest


def _values_only(table: dict[_PeriodKey, dict[str, dict[str, StoredObservation]]]
                 ) -> dict[_PeriodKey, dict[str, dict[str, float]]]:
    return {period: {unit: {measure: obs.value for measure, obs in measures.items()}
                     for unit, measures in units.items()} for period, units in table.items()}
