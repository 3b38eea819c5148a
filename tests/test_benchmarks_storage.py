"""The ingest, evaluation and memory benchmarks' parts, at a tiny scale: the synthetic
national dataset is what it says, the KPI engine's indexed roll-ups agree with sums
computed by SQL, and each suite's core runs and checks its own counts. No timings."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks import _national, evaluation, ingest, memory
from benchmarks._national import ROOT, TZ, Scale, national_sqlite, national_tree, sqlite_text
from collectors.base import Observation
from monitor.catalog import load_catalog
from monitor.kpi import KpiEngine
from monitor.storage import Store, create_engine_for, upgrade_database
from monitor.storage.store import StoredObservation
from monitor.timeutil import Period
from monitor.units import Level
from monitor.windows import Window
from tests.support.components import require_postgres

TINY = Scale(provinces=2, units_per_province=30, months=18)
AS_OF = evaluation.AS_OF


@pytest.fixture(scope="module")
def tiny_db() -> Path:
    return national_sqlite(TINY, set(load_catalog().measures))


def test_the_tree_has_the_promised_shape() -> None:
    tree = national_tree(TINY)
    assert len(tree.versions) == TINY.units == 61
    day = AS_OF.date()
    provinces = [u for u in tree.valid_on(day) if u.level == Level.province]
    assert [u.parent for u in provinces] == [ROOT, ROOT]
    assert len(tree.subtree("000.00.00.H01", day)) == 30
    assert tree.ancestors("002.00.00.H02", day) == ("001.00.00.H02", "000.00.00.H02", ROOT)  # an agency


def test_the_database_holds_every_unit_measure_and_month_once(tiny_db: Path) -> None:
    catalog = load_catalog()
    with sqlite3.connect(tiny_db) as connection:
        count, units, measures, months = connection.execute(
            "SELECT count(*), count(DISTINCT unit), count(DISTINCT measure), count(DISTINCT period_start) "
            "FROM observations").fetchone()
    assert (units, measures, months) == (61, len(catalog.measures), 18)
    assert count == 61 * len(catalog.measures) * 18
    # the SQLite rows and the Observation objects the ingest suite writes are the same data
    generated = {(o.measure, o.unit, sqlite_text(o.period.start), o.value)
                 for _, o in _national.observations(TINY, catalog)}
    with sqlite3.connect(tiny_db) as connection:
        stored = set(connection.execute("SELECT measure, unit, period_start, value FROM observations"))
    assert stored == generated


def _sql_sum(db: Path, measures: tuple[str, ...], province: str | None, start: datetime, end: datetime) -> float:
    where = "unit LIKE ?" if province else "1 = 1"
    args: list[object] = [f"%.{province}"] if province else []
    marks = ",".join("?" * len(measures))
    with sqlite3.connect(db) as connection:
        (total,) = connection.execute(
            f"SELECT coalesce(sum(value), 0) FROM observations WHERE {where} AND measure IN ({marks}) "
            "AND period_start >= ? AND period_start < ?", [*args, *measures, sqlite_text(start), sqlite_text(end)]
        ).fetchone()
    return float(total)


@pytest.mark.parametrize("kpi_id", ["work_records_online_rate", "full_online_service_rate"])
def test_kpis_over_the_dataset_equal_sums_computed_by_sql(tiny_db: Path, kpi_id: str) -> None:
    """Every unit reports every measure every month here, so a flow's year to date is the
    SQL sum over the months of the year (June month to date included), a stock's latest
    value the sum over May (the last month that ends inside the ``latest`` window)."""
    catalog = load_catalog()
    kpi = catalog.kpis[kpi_id]
    engine = create_engine_for(f"sqlite:///{tiny_db}")
    try:
        kpis = KpiEngine(catalog, national_tree(TINY), Store(engine), TZ)
        window = Window.parse("ytd" if kpi_id == "work_records_online_rate" else "latest")
        values = {v.unit: v for v in kpis.compute(AS_OF, [window], kpis=[kpi_id])}
    finally:
        engine.dispose()
    if window.spec == "ytd":
        start, end = Period.of_month(2026, 1, TZ).start, AS_OF
    else:
        start, end = Period.of_month(2026, 5, TZ).start, Period.of_month(2026, 6, TZ).start
    for unit, province, reporting in ((ROOT, None, 61), ("000.00.00.H02", "H02", 30)):
        value = values[unit]
        assert value.numerator == _sql_sum(tiny_db, kpi.numerator, province, start, end) > 0
        assert value.denominator == _sql_sum(tiny_db, kpi.denominator, province, start, end) > 0
        assert value.units_reporting == reporting


def test_a_day_and_a_month_starting_together_merge_with_the_later_record_winning(tmp_path: Path) -> None:
    """Two sources, one monthly and one daily, both starting on the 1st: the engine
    treats them as one period's records and the one read later wins per measure — the
    behaviour from before the index was introduced."""
    catalog = load_catalog()
    db = create_engine_for(f"sqlite:///{tmp_path}/k.db")
    upgrade_database(db)
    tree = national_tree(Scale(1, 2, 1))
    kpis = KpiEngine(catalog, tree, Store(db), TZ)
    month = Period.of_month(2026, 6, TZ)
    day = Period.of_day(month.start.astimezone(TZ).date(), TZ)
    at = datetime(2026, 6, 10, tzinfo=UTC)
    unit = "001.00.00.H01"

    def obs(measure: str, period: Period, value: float, source: str) -> StoredObservation:
        return StoredObservation(measure, unit, period.start, period.end, source, value, at)

    rows = [obs("docs_outgoing_total", month, 100, "monthly"), obs("docs_outgoing_electronic", month, 60, "monthly"),
            obs("docs_outgoing_total", day, 10, "daily")]
    (value,) = [v for v in kpis.compute_from(rows, AS_OF, Window.parse("month"), ["outgoing_docs_electronic_rate"])
                if v.unit == unit]
    assert (value.numerator, value.denominator) == (60, 10)
    (value,) = [v for v in kpis.compute_from(rows[::-1], AS_OF, Window.parse("month"),
                                             ["outgoing_docs_electronic_rate"]) if v.unit == unit]
    assert (value.numerator, value.denominator) == (60, 100)
    db.dispose()


def test_the_ingest_core_stores_exactly_the_rows_given() -> None:
    batches = ingest.month_batches(Scale(1, 20, 1))
    total = sum(len(b) for b in batches.values())
    assert total == 21 * len(load_catalog().measures)
    result = ingest.sqlite_figure(batches, total, 1, "tiny")  # raises if a row went missing
    assert result.name == "ingest_sqlite" and result.value > 0 and result.baseline_value > 0


def test_the_postgresql_ingest_stores_exactly_the_rows_given() -> None:
    require_postgres()  # the figure itself only warns when the server is missing; CI must not
    batches = ingest.month_batches(Scale(1, 20, 1))
    total = sum(len(b) for b in batches.values())
    result = ingest.postgres_figure(batches, total, 1, "tiny")  # raises if a row went missing
    assert result is not None and result.name == "ingest_postgresql"
    assert result.value > 0 and result.baseline_value > 0


def test_the_evaluation_core_reads_what_the_evaluator_reads(tiny_db: Path) -> None:
    catalog = load_catalog()
    units = national_tree(TINY)
    rules = evaluation.national_rules(catalog, units)
    measures, start, end = evaluation.needed_reads(rules, catalog, units)
    assert measures <= evaluation.rule_measures(catalog)
    assert start <= AS_OF - timedelta(days=400) and end > AS_OF


def test_the_memory_child_computes_the_whole_snapshot(tiny_db: Path) -> None:
    catalog = load_catalog()
    snapshot = memory.child("snapshot", str(tiny_db), TINY.provinces, TINY.units_per_province, TINY.months)
    loaded = memory.child("load", str(tiny_db), TINY.provinces, TINY.units_per_province, TINY.months)
    units = national_tree(TINY)
    rules = evaluation.national_rules(catalog, units)
    engine = create_engine_for(f"sqlite:///{tiny_db}")
    try:
        from monitor.targets.evaluate import Evaluator

        expected = len(Evaluator(catalog, units, Store(engine), TZ).evaluate(rules, AS_OF))
    finally:
        engine.dispose()
    assert snapshot["evaluations"] == expected > 0
    assert int(str(snapshot["kpi_values"])) > 0 and int(str(snapshot["metrics_bytes"])) > 1000
    assert int(str(loaded["rows"])) > 0 and int(str(loaded["peak_kib"])) > 0


def test_observations_generator_matches_the_ingest_shape() -> None:
    (source, first), *_ = _national.observations(Scale(1, 1, 1), load_catalog())
    assert isinstance(first, Observation) and source in _national.SOURCE_OF_KIND.values()
