"""Evaluation: every shipped national rule × every unit it covers × its window (and
the trend instants its forecast needs) over the synthetic national dataset, against
merely reading the observations it needs from the database.

Data (benchmarks/_national.py, SQLite with the service's schema): the measures the
shipped national rule packs (rules/national) need, for every unit, monthly, over
the 18 months that the rules' windows reach back to from the as-of instant (the
``latest`` window looks 400 days back; ``ytd`` at six month ends).

Figure: seconds of ``Evaluator.evaluate(rules, as_of)`` — the reads (the window's
rows, how far each unit's data reaches, the first-observation baselines), the KPI
roll-ups at every trend instant, the judgement and the forecasts. Baseline, in
the same run: seconds of ``Store.load_observations`` of the same measures over the
span the evaluator reads (the rows as the service's ``StoredObservation``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from benchmarks._national import TZ, Scale, national_sqlite, national_tree
from benchmarks.common import Result, best_of
from monitor.catalog import Catalog, load_catalog
from monitor.targets.evaluate import covered_units, trend_instants
from monitor.targets.loader import RuleSet, configured_rule_paths, load_rules
from monitor.targets.model import TargetRule
from monitor.timeutil import local_date
from monitor.units import UnitTree
from monitor.windows import Window

# Full scale: the 34 provinces of 1,000 units (34,001 units), about 3.5 minutes for
# this suite and 3 for the memory suite on two cores; EGOVMON_BENCH_UNITS_PER_PROVINCE=300
# runs a third of it in a third of the time.
UNITS_VARIABLE = "EGOVMON_BENCH_UNITS_PER_PROVINCE"
MONTHS = 18


def full_scale() -> Scale:
    return Scale(provinces=34, units_per_province=int(os.environ.get(UNITS_VARIABLE, "1000")), months=MONTHS)


def quick_scale() -> Scale:
    return Scale(provinces=1, units_per_province=500, months=MONTHS)

AS_OF = datetime(2026, 6, 15, 6, 0, tzinfo=UTC)
GOAL = "ratio <= 2 (issue 9: at most twice the time of reading the observations it needs)"


def national_rules(catalog: Catalog, units: UnitTree) -> RuleSet:
    return load_rules(configured_rule_paths(["national"], []), catalog, units)


def needed_reads(rules: Iterable[TargetRule], catalog: Catalog, units: UnitTree) -> tuple[set[str], datetime, datetime]:
    """The measures and the span the evaluator reads at ``AS_OF`` (as ``Evaluator._load``)."""
    day = local_date(AS_OF, TZ)
    measures: set[str] = set()
    spans = []
    for rule in rules:
        if not rule.valid_on(day) or not covered_units(rule.units, units, day):
            continue
        kpi = catalog.kpis[rule.kpi]
        measures.update(kpi.measures)
        window = Window.parse(rule.window or kpi.window)
        spans += [window.bounds(i, TZ) for i in trend_instants(AS_OF, rule.forecast.points, TZ)]
    return measures, min(s for s, _ in spans), max(e for _, e in spans)


def rule_measures(catalog: Catalog) -> set[str]:
    """Every measure the national rule packs can need (what the dataset stores)."""
    rules = load_rules(configured_rule_paths(["national"], []), catalog, None)
    return {m for rule in rules for m in catalog.kpis[rule.kpi].measures}


def run(quick: bool) -> Iterator[Result]:
    from monitor.storage.db import create_engine_for
    from monitor.storage.store import Store
    from monitor.targets.evaluate import Evaluator

    scale = quick_scale() if quick else full_scale()
    repeats = 1
    catalog = load_catalog()
    units = national_tree(scale)
    stored = rule_measures(catalog)
    path = national_sqlite(scale, stored)
    rules = national_rules(catalog, units)
    measures, start, end = needed_reads(rules, catalog, units)
    engine = create_engine_for(f"sqlite:///{path}")
    try:
        store = Store(engine)
        evaluator = Evaluator(catalog, units, store, TZ)
        evaluations: list[object] = []
        seconds = best_of(lambda: evaluations.__setitem__(slice(None), evaluator.evaluate(rules, AS_OF)), repeats)
        rows: list[object] = []
        read = best_of(lambda: rows.__setitem__(slice(None), store.load_observations(measures, start, end)), repeats)
    finally:
        engine.dispose()
    yield Result("evaluation_national", seconds, "s",
                 f"Store.load_observations of the {len(rows)} rows it needs", read,
                 f"{scale.describe(len(stored))}; {len(rules)} rules → {len(evaluations)} evaluations "
                 f"at {AS_OF:%Y-%m-%d}", GOAL)
