"""KPI arithmetic: roll-ups sum numerators and denominators; flows sum, stocks take
the latest; the tree of each period is used across the 2025 reform."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from collectors.base import Observation
from monitor.catalog import load_catalog
from monitor.kpi import KpiEngine, KpiValue
from monitor.storage import Store, create_engine_for, upgrade_database
from monitor.timeutil import Period, zone
from monitor.units import load_units
from monitor.windows import Window
from tests.test_units import TREE

VN = zone("Asia/Ho_Chi_Minh")
PROVINCE, DEPT, DISTRICT, OLD_A, OLD_B, NEW = (
    "000.00.00.H99", "000.00.01.H99", "000.00.41.H99", "000.01.41.H99", "000.02.41.H99", "000.01.70.H99")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> KpiEngine:
    units_file = tmp_path / "units.yaml"
    units_file.write_text(TREE, encoding="utf-8")
    db = create_engine_for(f"sqlite:///{tmp_path}/kpi.db")
    upgrade_database(db)
    return KpiEngine(load_catalog(), load_units(units_file), Store(db), VN)


def docs(unit: str, year: int, month: int, electronic: float, total: float) -> list[Observation]:
    period = Period.of_month(year, month, VN)
    return [Observation("docs_outgoing_electronic", unit, period, electronic),
            Observation("docs_outgoing_total", unit, period, total)]


def store(engine: KpiEngine, observations: list[Observation], source: str = "qlvb",
          at: datetime = T0) -> None:
    engine.store.upsert_observations(observations, source, at)


def by_unit(values: list[KpiValue], kpi: str) -> dict[str, KpiValue]:
    return {v.unit: v for v in values if v.kpi == kpi}


def end_of(year: int, month: int) -> datetime:
    return Period.of_month(year, month, VN).end - timedelta(seconds=1)


def test_roll_up_sums_numerators_and_denominators_never_averages(engine: KpiEngine) -> None:
    # A big unit at 90 % and a small one at 10 %: the province is 910/1010, not 50 %.
    store(engine, docs(DEPT, 2026, 3, 900, 1000) + docs(NEW, 2026, 3, 10, 100))
    values = by_unit(engine.compute(end_of(2026, 3), [Window.parse("month")]),
                     "outgoing_docs_electronic_rate")
    assert values[PROVINCE].value == pytest.approx(910 / 1100)
    assert values[PROVINCE].units_reporting == 2
    assert values[DEPT].value == pytest.approx(0.9)
    assert values[NEW].value == pytest.approx(0.1)


def test_flows_sum_over_the_window(engine: KpiEngine) -> None:
    store(engine, docs(DEPT, 2026, 1, 10, 100) + docs(DEPT, 2026, 2, 60, 100)
          + docs(DEPT, 2026, 3, 90, 100) + docs(DEPT, 2025, 12, 100, 100))
    as_of = end_of(2026, 3)
    ytd = by_unit(engine.compute(as_of, [Window.parse("ytd")]), "outgoing_docs_electronic_rate")
    quarter = by_unit(engine.compute(as_of, [Window.parse("quarter")]), "outgoing_docs_electronic_rate")
    month = by_unit(engine.compute(as_of, [Window.parse("month")]), "outgoing_docs_electronic_rate")
    latest = by_unit(engine.compute(as_of, [Window.parse("latest")]), "outgoing_docs_electronic_rate")
    assert (ytd[DEPT].numerator, ytd[DEPT].denominator) == (160, 300)  # December 2025 excluded
    assert quarter[DEPT].value == pytest.approx(160 / 300)
    assert month[DEPT].value == pytest.approx(0.9)
    assert latest[DEPT].value == pytest.approx(0.9)


def test_later_periods_are_not_counted_as_of_an_earlier_date(engine: KpiEngine) -> None:
    store(engine, docs(DEPT, 2026, 1, 10, 100) + docs(DEPT, 2026, 2, 60, 100))
    ytd = by_unit(engine.compute(end_of(2026, 1), [Window.parse("ytd")]), "outgoing_docs_electronic_rate")
    assert ytd[DEPT].value == pytest.approx(0.1)


def test_half_a_record_does_not_count(engine: KpiEngine) -> None:
    period = Period.of_month(2026, 3, VN)
    # NEW reports its total but no electronic count.
    store(engine, [*docs(DEPT, 2026, 3, 50, 100), Observation("docs_outgoing_total", NEW, period, 400)])
    values = by_unit(engine.compute(end_of(2026, 3), [Window.parse("month")]),
                     "outgoing_docs_electronic_rate")
    assert values[PROVINCE].value == pytest.approx(0.5)
    assert NEW not in values


def test_stocks_take_the_latest_value_in_the_window(engine: KpiEngine) -> None:
    def mail(unit: str, day: date, active: float, regular: float) -> list[Observation]:
        period = Period.of_day(day, VN)
        return [Observation("email_accounts_total", unit, period, active),
                Observation("email_accounts_regular_use", unit, period, regular)]

    store(engine, mail(DEPT, date(2026, 3, 1), 80, 10) + mail(DEPT, date(2026, 3, 20), 80, 60)
          + mail(NEW, date(2026, 3, 5), 40, 20))
    values = by_unit(engine.compute(end_of(2026, 3), [Window.parse("latest")]),
                     "official_email_regular_use_rate")
    assert values[DEPT].value == pytest.approx(60 / 80)  # 20 March wins over 1 March
    assert values[PROVINCE].value == pytest.approx((60 + 20) / (80 + 40))  # stocks sum across units


def test_year_to_date_across_the_reform_uses_each_periods_tree(engine: KpiEngine) -> None:
    store(engine, docs(OLD_A, 2025, 6, 5, 50) + docs(OLD_B, 2025, 6, 10, 40)
          + docs(NEW, 2025, 7, 70, 100))
    june = by_unit(engine.compute(end_of(2025, 6), [Window.parse("ytd")]), "outgoing_docs_electronic_rate")
    assert june[DISTRICT].value == pytest.approx(15 / 90)  # the district rolls up its communes
    july = by_unit(engine.compute(end_of(2025, 7), [Window.parse("ytd")]), "outgoing_docs_electronic_rate")
    assert DISTRICT not in july and OLD_A not in july  # gone from the tree in July
    assert (july[PROVINCE].numerator, july[PROVINCE].denominator) == (85, 190)
    assert july[NEW].value == pytest.approx(0.7)


def test_the_most_recently_collected_source_wins(engine: KpiEngine) -> None:
    store(engine, docs(DEPT, 2026, 3, 10, 100), source="export", at=T0)
    store(engine, docs(DEPT, 2026, 3, 30, 100), source="api", at=T0 + timedelta(days=1))
    values = by_unit(engine.compute(end_of(2026, 3), [Window.parse("month")]),
                     "outgoing_docs_electronic_rate")
    assert (values[DEPT].numerator, values[DEPT].denominator) == (30, 100)


def test_zero_denominator_is_no_data_not_zero(engine: KpiEngine) -> None:
    store(engine, docs(DEPT, 2026, 3, 0, 0))
    values = by_unit(engine.compute(end_of(2026, 3), [Window.parse("month")]),
                     "outgoing_docs_electronic_rate")
    assert values[DEPT].value is None


def test_rolling_window_sums_daily_periods(engine: KpiEngine) -> None:
    observations = []
    for offset in range(10):  # 1..10 March, e-documents rising by day
        period = Period.of_day(date(2026, 3, 1) + timedelta(days=offset), VN)
        observations += [Observation("docs_outgoing_electronic", DEPT, period, offset),
                         Observation("docs_outgoing_total", DEPT, period, 10)]
    store(engine, observations)
    as_of = Period.of_day(date(2026, 3, 10), VN).start + timedelta(hours=12)
    values = engine.compute(as_of, [Window.parse("rolling_3d"), Window.parse("month")], units=[DEPT])
    got = {v.window: (v.numerator, v.denominator) for v in values if v.kpi == "outgoing_docs_electronic_rate"}
    # 8, 9, 10 March (the days 7, 8, 9 e-documents); the month holds all ten days.
    assert got == {"rolling_3d": (7 + 8 + 9, 30), "month": (sum(range(10)), 100)}


def test_scope_self_counts_only_the_units_own_data(engine: KpiEngine) -> None:
    # The district's own office, and its two communes below it.
    store(engine, docs(DISTRICT, 2025, 6, 40, 50) + docs(OLD_A, 2025, 6, 5, 50) + docs(OLD_B, 2025, 6, 10, 40))
    as_of = end_of(2025, 6)
    own = by_unit(engine.compute(as_of, [Window.parse("month")], scope="self"), "outgoing_docs_electronic_rate")
    below = by_unit(engine.compute(as_of, [Window.parse("month")]), "outgoing_docs_electronic_rate")
    assert (own[DISTRICT].numerator, own[DISTRICT].denominator) == (40, 50)
    assert (below[DISTRICT].numerator, below[DISTRICT].denominator) == (40 + 5 + 10, 50 + 50 + 40)
    assert PROVINCE not in own  # the province has no data of its own
    assert own[OLD_A].value == below[OLD_A].value  # a leaf is the same either way
