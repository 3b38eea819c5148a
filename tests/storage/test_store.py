"""The store, run over SQLite and a real PostgreSQL."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from collectors.base import Observation, Rejection
from monitor.storage import Store, create_engine_for, upgrade_database
from monitor.storage.db import head_revision
from monitor.storage.models import Base
from monitor.timeutil import Period, zone

VN = zone("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Store:
    engine = create_engine_for(database_url)
    assert upgrade_database(engine) == head_revision()
    yield Store(engine)
    engine.dispose()


def test_migrations_match_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(store: Store) -> None:
    assert upgrade_database(store.engine) == head_revision()


def test_upsert_is_idempotent_and_keeps_provenance(store: Store) -> None:
    period = Period.of_month(2025, 7, VN)
    first = [Observation("docs_outgoing_total", "000.00.01.H99", period, 10, "GET /x#1")]
    store.upsert_observations(first, "qlvb", NOW)
    store.upsert_observations(first, "qlvb", NOW)
    store.upsert_observations([Observation("docs_outgoing_total", "000.00.01.H99", period, 12, "GET /x#2")],
                              "qlvb", NOW + timedelta(hours=1))
    store.upsert_observations(first, "export", NOW)  # another source: its own row
    assert store.count_observations() == 2
    rows = {r.source: r for r in store.load_observations(["docs_outgoing_total"], period.start, period.end)}
    assert rows["qlvb"].value == 12 and rows["qlvb"].collected_at == NOW + timedelta(hours=1)
    assert rows["export"].value == 10


def test_timestamps_come_back_aware_utc(store: Store) -> None:
    period = Period.of_month(2025, 1, VN)
    at = datetime(2025, 2, 1, 9, 30, tzinfo=timezone(timedelta(hours=7)))
    store.upsert_observations([Observation("staff_total", "000.00.01.H99", period, 5)], "registry", at)
    (row,) = store.load_observations(["staff_total"], period.start, period.end)
    assert row.period_start == period.start and row.period_start.tzinfo is not None
    assert row.period_start.utcoffset() == timedelta(0)
    assert row.collected_at == at


def test_vietnamese_text_round_trips(store: Store) -> None:
    detail = "Mã đơn vị 000.99.99.H99 không có trong danh mục (Sở Thông tin và Truyền thông)"
    store.add_rejections("mot-cua", [Rejection("unknown_unit", detail, "000.99.99.H99")], NOW)
    assert store.recent_rejections("mot-cua")[0]["detail"] == detail


def test_load_selects_by_overlap(store: Store) -> None:
    months = [Period.of_month(2025, m, VN) for m in (1, 2, 3)]
    store.upsert_observations([Observation("docs_outgoing_total", "u", p, i) for i, p in enumerate(months)],
                              "qlvb", NOW)
    got = store.load_observations(["docs_outgoing_total"], months[1].start, months[1].end)
    assert [r.value for r in got] == [1]


def test_watermark_only_moves_forward(store: Store) -> None:
    early, late = Period.of_month(2025, 1, VN).start, Period.of_month(2025, 6, VN).start
    assert store.watermark("qlvb") is None
    store.set_watermark("qlvb", late, NOW)
    store.set_watermark("qlvb", early, NOW)
    assert store.watermark("qlvb") == late


def test_health_counts_consecutive_failures(store: Store) -> None:
    store.record_attempt("qlvb", at=NOW, duration=0.5, ok=False, reason="timeout", message="m")
    store.record_attempt("qlvb", at=NOW, duration=0.5, ok=False, reason="timeout", message="m")
    (health,) = store.health()
    assert health.consecutive_failures == 2 and not health.up
    store.record_attempt("qlvb", at=NOW, duration=0.5, ok=True, observations=7)
    (health,) = store.health()
    assert health.up and health.consecutive_failures == 0 and health.last_observations == 7
    assert health.last_error_reason == "timeout"  # the last error stays visible


def test_runs_left_running_are_closed_at_start(store: Store) -> None:
    run = store.start_run("qlvb", NOW, None, None)
    assert store.abandon_running(NOW) == 1
    store.finish_run(run, NOW, status="ok", observations=1, rejections=0)
    assert store.abandon_running(NOW) == 0


def test_first_attempt_can_succeed(store: Store) -> None:
    store.record_attempt("mot-cua", at=NOW, duration=0.1, ok=True, observations=3, rejections=1)
    (health,) = store.health()
    assert health.up and health.last_success_at == NOW
    assert (health.last_observations, health.last_rejections) == (3, 1)
