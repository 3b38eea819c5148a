"""Retention: day observations rolled up into months without changing a KPI, operational
tables pruned past their horizons, idempotent, and atomic when the database fails mid-way.

The history is generated here (integer counts, so sums are exact), the expected month
values and KPIs are recomputed from the generated numbers, not read back from the code
under test.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import Engine, event, func, select

from collectors.base import Observation
from monitor.alerts.outbox import BODIES
from monitor.catalog import Catalog, load_catalog
from monitor.config import RetentionConfig, load_config
from monitor.kpi import KpiEngine, Scope
from monitor.retention import RetentionSummary, apply_retention
from monitor.scheduler import ServiceScheduler
from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from monitor.storage import Store, create_engine_for, upgrade_database
from monitor.storage.store import DELIVERIES, OBS, OUTBOX, REJECTIONS, RUNS, TRANSITIONS
from monitor.timeutil import Period, local_midnight
from monitor.units import UnitTree, load_units
from monitor.windows import Window

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FIRST_DAY, LAST_DAY = date(2026, 1, 1), date(2026, 3, 20)
NOW = local_midnight(date(2026, 3, 21), TZ) + timedelta(hours=10)
FLOWS = ("docs_outgoing_total", "docs_outgoing_electronic", "docs_outgoing_signed")
STOCKS = ("docmgmt_accounts_total", "docmgmt_accounts_active")
WINDOWS = [Window.parse(w) for w in ("month", "previous_month", "quarter", "ytd", "latest")]


@dataclass
class History:
    store: Store
    engine: Engine
    catalog: Catalog
    units: UnitTree
    leaves: list[str]
    # (measure, unit, day) → value, exactly what was stored
    values: dict[tuple[str, str, date], int]


@dataclass(frozen=True)
class Template:
    directory: Path
    units: UnitTree
    catalog: Catalog
    leaves: list[str]
    values: dict[tuple[str, str, date], int]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, province: ProvinceModel) -> Template:
    """The generated history, written once; each test works on its own copy of the database."""
    directory = tmp_path_factory.mktemp("retention")
    province.write_units(directory / "units.yaml")
    units = load_units(directory / "units.yaml")
    engine = create_engine_for(f"sqlite:///{directory}/egovmon.db")
    upgrade_database(engine)
    rng = random.Random(8)
    # Units valid all quarter with no children: their own data only, plus their parents' roll-ups.
    valid = [u for u in units.valid_on(FIRST_DAY) if u.valid_on(LAST_DAY)]
    parents = {u.parent for u in valid}
    leaves = sorted(u.code for u in valid if u.code not in parents)[:15]
    values: dict[tuple[str, str, date], int] = {}
    observations: list[Observation] = []
    day = FIRST_DAY
    while day <= LAST_DAY:
        period = Period.containing(local_midnight(day, TZ), "day", TZ)
        for index, unit in enumerate(leaves):
            if rng.random() < 0.15:  # a unit that sent nothing that day (all its measures missing)
                continue
            total = rng.randint(0, 40)
            electronic = rng.randint(0, total)
            day_values = {"docs_outgoing_total": total, "docs_outgoing_electronic": electronic,
                          "docs_outgoing_signed": rng.randint(0, electronic)}
            if not (index == 0 and day.day > 25):  # one unit stops reporting its stocks late each month
                accounts = 50 + index + day.toordinal() % 7
                day_values |= {"docmgmt_accounts_total": accounts, "docmgmt_accounts_active": rng.randint(0, accounts)}
            for measure, value in day_values.items():
                values[(measure, unit, day)] = value
                observations.append(Observation(measure=measure, unit=unit, period=period, value=value))
        day += timedelta(days=1)
    Store(engine).upsert_observations(observations, "qlvb", datetime(2026, 3, 21, tzinfo=UTC))
    engine.dispose()
    return Template(directory, units, load_catalog(), leaves, values)


@pytest.fixture
def history(template: Template, tmp_path: Path) -> Iterator[History]:
    shutil.copy(template.directory / "egovmon.db", tmp_path / "egovmon.db")
    engine = create_engine_for(f"sqlite:///{tmp_path}/egovmon.db")
    yield History(Store(engine), engine, template.catalog, template.units, template.leaves, template.values)
    engine.dispose()


def kpis(history: History, as_of: datetime) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    engine = KpiEngine(history.catalog, history.units, history.store, TZ)
    wanted = ["outgoing_docs_electronic_rate", "outgoing_docs_signed_rate", "doc_mgmt_user_adoption_rate"]
    out: dict[tuple[str, str, str], tuple[float, float, int]] = {}
    scopes: tuple[Scope, ...] = ("self", "subtree")
    for scope in scopes:
        for value in engine.compute(as_of, WINDOWS, kpis=wanted, scope=scope):
            out[(scope + ":" + value.kpi, value.unit, value.window)] = (value.numerator, value.denominator,
                                                                          value.units_reporting)
    return out


def all_observations(history: History) -> list[tuple[Any, ...]]:
    with history.engine.connect() as connection:
        return sorted(connection.execute(select(OBS.c.measure, OBS.c.unit, OBS.c.period_start, OBS.c.period_end,
                                                OBS.c.source, OBS.c.value)).all())


def apply(history: History, **settings: Any) -> RetentionSummary:
    config = RetentionConfig(enabled=True, raw_days=7, **settings)
    return apply_retention(history.store, history.catalog, config, NOW, TZ,
                           ["qlvb"])


# Instants at or after the end of the rolled-up months: a month row stands for the
# whole month, so "as of" an instant inside a rolled-up month is known only to the month (see docs).
INSTANTS = [local_midnight(date(2026, 2, 1), TZ), local_midnight(date(2026, 3, 1), TZ),
            *(datetime(2026, 3, d, 3, tzinfo=UTC) for d in (1, 2, 20))]


def test_months_rolled_up_keep_every_kpi_and_match_the_raw_days(history: History) -> None:
    before = {at: kpis(history, at) for at in INSTANTS}
    assert sum(len(v) for v in before.values()) > 500  # the comparison covers many values

    summary = apply(history)

    # Horizon 2026-03-14: January and February are whole months before it, March is not.
    assert summary.months_rolled_up == 2
    rows = all_observations(history)
    tz = TZ
    january, february, march = (local_midnight(date(2026, m, 1), tz) for m in (1, 2, 3))
    day_rows_left = [r for r in rows if r[3] - r[2] == timedelta(days=1)]
    assert day_rows_left and min(r[2] for r in day_rows_left) == march
    reported = {k for k in history.values if k[2] < date(2026, 3, 1)}
    assert summary.observations_removed == len(reported)
    month_rows = {(r[0], r[1], r[2]): r[5] for r in rows if r[3] - r[2] > timedelta(days=1)}
    assert summary.observations_written == len(month_rows) == len({(m, u, d.month) for m, u, d in reported})
    # The stored months, recomputed from the generated days: flows summed, stocks the last day reported.
    for (measure, unit, start), value in month_rows.items():
        month = 1 if start == january else 2
        assert start in (january, february)
        days = sorted((d, v) for (m, u, d), v in history.values.items() if m == measure and u == unit
                      and d.month == month and d < date(2026, 3, 1))
        expected = sum(v for _, v in days) if measure in FLOWS else days[-1][1]
        assert value == expected, (measure, unit, start)

    # Every KPI at every instant and window is what it was from the days.
    # The one documented exception: "latest" of a flow is its most recent period, which as of an
    # instant in the rolled-up past is now the month, not the last day.
    after = {at: kpis(history, at) for at in INSTANTS}
    in_rolled_past = {INSTANTS[0], INSTANTS[1]}

    def comparable(values: dict[tuple[str, str, str], Any], at: datetime) -> dict[tuple[str, str, str], Any]:
        return {k: v for k, v in values.items()
                if not (at in in_rolled_past and k[2] == "latest" and "adoption" not in k[0])}
    assert {at: comparable(v, at) for at, v in after.items()} == {at: comparable(v, at) for at, v in before.items()}
    assert after[INSTANTS[-1]] == before[INSTANTS[-1]]  # today's view, "latest" included, is untouched

    # And one recomputed by hand: a unit's own electronic rate for February.
    unit = history.leaves[3]
    feb = [d for (m, u, d) in history.values if m == "docs_outgoing_total" and u == unit and d.month == 2]
    numerator = sum(history.values[("docs_outgoing_electronic", unit, d)] for d in feb)
    denominator = sum(history.values[("docs_outgoing_total", unit, d)] for d in feb)
    assert after[INSTANTS[2]][("self:outgoing_docs_electronic_rate", unit, "previous_month")][:2] == (
        numerator, denominator)


def test_second_pass_changes_nothing(history: History) -> None:
    apply(history)
    once = all_observations(history)
    again = apply(history)
    assert again == RetentionSummary()
    assert all_observations(history) == once


def test_a_failure_mid_month_leaves_the_days_and_the_next_pass_finishes(history: History) -> None:
    before_rows = all_observations(history)
    before_kpis = kpis(history, INSTANTS[2])
    inserts = 0

    def fail_second_month(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal inserts
        if statement.startswith("INSERT INTO observations"):
            inserts += 1
            if inserts == 2:  # January committed; February's transaction breaks after its deletes
                raise RuntimeError("injected: disk full")

    event.listen(history.engine, "before_cursor_execute", fail_second_month)
    with pytest.raises(Exception, match="disk full"):
        apply(history)
    event.remove(history.engine, "before_cursor_execute", fail_second_month)

    rows = all_observations(history)
    tz = TZ
    february = local_midnight(date(2026, 2, 1), tz)
    # February is still all days (its deletes rolled back), January is one month per key.
    assert [r for r in rows if r[2] >= february] == [r for r in before_rows if r[2] >= february]
    assert kpis(history, INSTANTS[2]) == before_kpis
    summary = apply(history)
    assert summary.months_rolled_up == 1
    assert kpis(history, INSTANTS[2]) == before_kpis


def test_days_after_a_source_watermark_are_never_rolled_up(history: History) -> None:
    tz = TZ
    history.store.set_watermark("qlvb", local_midnight(date(2026, 2, 20), tz), NOW)
    summary = apply(history)
    assert summary.months_rolled_up == 1  # January only: February may still be collected again


def test_operational_tables_pruned_past_their_horizons(history: History) -> None:
    old, recent = NOW - timedelta(days=100), NOW - timedelta(days=5)
    counts = {"rejections": 0, "runs": 0, "transitions": 0, "outbox": 0, "deliveries": 0}
    with history.engine.begin() as connection:
        for i in range(250):  # more than two batches of 100
            at = old if i % 5 else recent
            connection.execute(REJECTIONS.insert().values(source="qlvb", rejected_at=at, reason="negative",
                                                          detail="x"))
            connection.execute(TRANSITIONS.insert().values(alert_id=1, at=at, from_state="pending",
                                                           to_state="firing", status="behind"))
            counts["rejections"] += at == old
            counts["transitions"] += at == old
        for i, status in enumerate(("ok", "failed", "running", "ok")):
            connection.execute(RUNS.insert().values(source="qlvb", started_at=old if i < 3 else recent, status=status,
                                                    observations=0, rejections=0))
        counts["runs"] = 2  # the old finished ones; the old "running" one is the live run
        for i, status in enumerate(("sent", "sent", "pending", "failed", "sent")):
            at = recent if i == 4 else old
            result = connection.execute(OUTBOX.insert().values(
                key=f"k{i}", kind="digest", recipient="a@b.vn", subject="s", message_id=f"<m{i}@x>",
                created_at=at, status=status, attempts=1, next_attempt_at=at, sent_at=at if status == "sent" else None))
            outbox_id = result.inserted_primary_key[0]  # type: ignore[index]
            connection.execute(BODIES.insert().values(outbox_id=outbox_id, message=f"body {i}".encode()))
            connection.execute(DELIVERIES.insert().values(outbox_id=outbox_id, attempted_at=at, outcome="sent"))
        counts["outbox"] = counts["deliveries"] = 2  # old and sent; pending and failed stay whatever their age

    summary = apply(history, rejections_days=90, collection_runs_days=90, alert_transitions_days=90, outbox_days=90,
                    batch_size=100)

    assert (summary.rejections, summary.collection_runs, summary.alert_transitions, summary.outbox) == (
        counts["rejections"], counts["runs"], counts["transitions"], counts["outbox"])
    with history.engine.connect() as connection:
        def count(table: Any) -> int:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())
        assert count(REJECTIONS) == 250 - counts["rejections"] == 50
        assert count(TRANSITIONS) == 50
        assert sorted(connection.execute(select(RUNS.c.status)).scalars()) == ["ok", "running"]
        assert sorted(connection.execute(select(OUTBOX.c.key)).scalars()) == ["k2", "k3", "k4"]
        assert count(DELIVERIES) == 3
        # A pruned message's body goes with it (SQLite does not enforce the foreign key's
        # cascade); the bodies of the messages kept stay, byte for byte.
        assert sorted(connection.execute(select(BODIES.c.message)).scalars()) == [b"body 2", b"body 3", b"body 4"]
        assert set(connection.execute(select(BODIES.c.outbox_id)).scalars()) == set(
            connection.execute(select(OUTBOX.c.id)).scalars())


async def test_daily_job_scheduled_only_when_enabled(template: Template, tmp_path: Path) -> None:
    data: dict[str, Any] = {"version": 1, "province": {"name": "Tỉnh Sơn Hà"},
                            "database": {"url": f"sqlite:///{tmp_path}/egovmon.db"},
                            "units": {"file": str(template.directory / "units.yaml")}, "alerts": {"enabled": False}}
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    fresh = load_config(tmp_path / "monitor.yaml")
    # A fresh install (no retention section) keeps everything; switched on, the horizon is generous.
    assert fresh.retention.enabled is False
    enabled = fresh.model_copy(update={"retention": RetentionConfig(enabled=True)})
    assert enabled.retention.raw_days >= 366
    service = MonitorService(fresh)
    try:
        for config, expected in ((fresh, False), (enabled, True)):
            service.config = config
            scheduler = ServiceScheduler(service)
            scheduler._add_jobs(None)
            assert ("retention" in {job.id for job in scheduler.scheduler.get_jobs()}) is expected
        service.prepare()
        assert await service.apply_retention() == RetentionSummary()  # an empty database: nothing to do
    finally:
        service.close()
