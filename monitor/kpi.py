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

from collections import defaultdict
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
        results: list[KpiValue] = []
        for window in windows:
            results.extend(self.compute_from(observations, as_of, window, kpi_ids, wanted, scope))
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
        return {instant: [value for window in windows
                          for value in self.compute_from(observations, instant, window, kpi_ids, wanted, scope)]
                for instant in instants}

    def compute_from(self, observations: Iterable[StoredObservation], as_of: datetime,
                     window: Window, kpi_ids: Sequence[str],
                     wanted: set[str] | None = None, scope: Scope = "subtree") -> list[KpiValue]:
        """The arithmetic, separated from loading so it can be measured and tested alone."""
        start, end = window.bounds(as_of, self.tz)
        effective_day = local_date(min(as_of, end - timedelta(microseconds=1)), self.tz)
        flows, stocks = self._select(observations, start, end, as_of, window)
        report_on = [u.code for u in self.units.valid_on(effective_day)
                     if wanted is None or u.code in wanted]
        results = []
        for kpi_id in kpi_ids:
            kpi = self.catalog.kpis[kpi_id]
            if self._is_flow(kpi):
                totals = self._roll_up_flows(kpi, flows, scope)
            else:
                totals = self._roll_up_stocks(kpi, stocks, effective_day, scope)
            for code in report_on:
                acc = totals.get(code)
                if acc is not None:
                    results.append(KpiValue(kpi_id, code, window.spec, acc.numerator,
                                            acc.denominator, len(acc.reporting)))
        return results

    # ------------------------------------------------------------------ selection

    def _is_flow(self, kpi: Kpi) -> bool:
        kinds = {self.catalog.measures[m].kind for m in kpi.measures}
        return kinds == {"flow"}

    def _select(self, observations: Iterable[StoredObservation], start: datetime, end: datetime,
                as_of: datetime, window: Window
                ) -> tuple[dict[tuple[str, datetime], dict[str, float]],
                           dict[str, dict[str, tuple[datetime, float]]]]:
        """Flows grouped by (unit, period start) → {measure: value}; stocks as
        unit → {measure: (period end, latest value)}."""
        newest: dict[tuple[str, str, datetime, datetime], StoredObservation] = {}
        for obs in observations:
            if obs.period_start < start or obs.period_end > end or obs.period_start >= as_of:
                continue
            key = (obs.measure, obs.unit, obs.period_start, obs.period_end)
            kept = newest.get(key)
            if kept is None or obs.collected_at > kept.collected_at:
                newest[key] = obs
        flows: dict[tuple[str, datetime], dict[str, float]] = defaultdict(dict)
        stocks: dict[str, dict[str, tuple[datetime, float]]] = defaultdict(dict)
        latest_flow_start: datetime | None = None
        for (measure, unit, period_start, period_end), obs in newest.items():
            if self.catalog.measures[measure].kind == "flow":
                flows[(unit, period_start)][measure] = obs.value
                if latest_flow_start is None or period_start > latest_flow_start:
                    latest_flow_start = period_start
            else:
                current = stocks[unit].get(measure)
                if current is None or period_end > current[0]:
                    stocks[unit][measure] = (period_end, obs.value)
        if window.is_latest and latest_flow_start is not None:
            # "latest" for a flow: the most recent period only.
            flows = defaultdict(dict, {k: v for k, v in flows.items() if k[1] == latest_flow_start})
        return flows, stocks

    # ------------------------------------------------------------------ roll-ups

    def _targets(self, unit: str, day: date, scope: Scope) -> tuple[str, ...]:
        """The units whose value ``unit``'s data counts towards on ``day``."""
        if scope == "self":
            return (unit,)
        return (unit, *self.units.ancestors(unit, day))

    def _roll_up_flows(self, kpi: Kpi, flows: dict[tuple[str, datetime], dict[str, float]],
                       scope: Scope) -> dict[str, _Accumulator]:
        totals: dict[str, _Accumulator] = defaultdict(_Accumulator)
        needed = kpi.measures
        for (unit, period_start), values in flows.items():
            if not all(m in values for m in needed):
                continue
            numerator = sum(values[m] for m in kpi.numerator)
            denominator = sum(values[m] for m in kpi.denominator)
            for target in self._targets(unit, local_date(period_start, self.tz), scope):
                totals[target].add(numerator, denominator, unit)
        return totals

    def _roll_up_stocks(self, kpi: Kpi, stocks: dict[str, dict[str, tuple[datetime, float]]],
                        day: date, scope: Scope) -> dict[str, _Accumulator]:
        totals: dict[str, _Accumulator] = defaultdict(_Accumulator)
        needed = kpi.measures
        valid_today = self.units.ancestor_table(day)
        for unit, values in stocks.items():
            if unit not in valid_today or not all(m in values for m in needed):
                continue
            numerator = sum(values[m][1] for m in kpi.numerator)
            denominator = sum(values[m][1] for m in kpi.denominator)
            for target in self._targets(unit, day, scope):
                totals[target].add(numerator, denominator, unit)
        return totals
