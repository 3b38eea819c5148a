"""The bulk write path of ``Store.upsert_observations`` (COPY + INSERT … SELECT on
PostgreSQL, the driver's executemany on SQLite), on both databases, checked against
the rows read back with the bare driver (sqlite3 / psycopg), not through the store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import insert

from collectors.base import Observation, Rejection
from monitor.storage import Store, create_engine_for, upgrade_database
from monitor.storage.models import ObservationRow
from monitor.timeutil import Period, zone

VN = zone("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
UNITS = [f"{i:03d}.00.00.H{p:02d}" for p in (1, 2) for i in range(40)]
MEASURES = ["docs_outgoing_total", "docs_outgoing_electronic", "staff_total"]
MONTHS = [Period.of_month(2026, m, VN) for m in (1, 2, 3)] + [Period.of_day(datetime(2026, 4, 2).date(), VN)]


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = create_engine_for(database_url)
    upgrade_database(engine)
    yield Store(engine)
    engine.dispose()


def raw_rows(store: Store) -> list[tuple[Any, ...]]:
    """(measure, unit, period_start, period_end, source, value, collected_at, raw_ref), by the bare driver,
    times as aware UTC."""
    url = store.engine.url
    query = ("SELECT measure, unit, period_start, period_end, source, value, collected_at, raw_ref "
             "FROM observations ORDER BY measure, unit, period_start, period_end, source")
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(str(url.database)) as connection:
            rows = connection.execute(query).fetchall()
        return [(m, u, _text_utc(s), _text_utc(e), src, v, _text_utc(c), r) for m, u, s, e, src, v, c, r in rows]
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as connection:
        return [tuple(row) for row in connection.execute(query).fetchall()]


def _text_utc(text: str) -> datetime:
    # SQLAlchemy's own format on SQLite: naive UTC, microseconds always written
    assert len(text) == len("2026-01-01 00:00:00.000000"), text
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def batch(value_of: Any, raw: str) -> list[Observation]:
    return [Observation(m, u, p, float(value_of(m, u, p)), None if i % 7 == 0 else f"{raw}#{i}")
            for i, (m, u, p) in enumerate((m, u, p) for m in MEASURES for u in UNITS for p in MONTHS)]


def expected(observations: list[Observation], source: str, at: datetime) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {(o.measure, o.unit, o.period.start, o.period.end, source): (float(o.value), at, o.raw_ref)
            for o in observations}


def as_table(rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {tuple(r[:5]): tuple(r[5:]) for r in rows}


def test_every_row_is_stored_exactly_as_given(store: Store) -> None:
    first = batch(lambda m, u, p: len(m) * 1000 + UNITS.index(u) + p.start.month / 4, "GET /a")
    assert store.upsert_observations(first, "qlvb", NOW) == len(first) == 3 * 80 * 4
    rows = raw_rows(store)
    assert len(rows) == len(first)
    assert as_table(rows) == expected(first, "qlvb", NOW)
    assert sum(r[5] for r in rows) == pytest.approx(sum(o.value for o in first))


def test_a_second_batch_replaces_values_and_provenance_and_adds_new_keys(store: Store) -> None:
    first = batch(lambda m, u, p: 1, "GET /a")
    store.upsert_observations(first, "qlvb", NOW)
    later = NOW + timedelta(hours=2)
    second = batch(lambda m, u, p: 2, "GET /b")[::2]  # half the keys again, new values
    extra = [Observation("docs_outgoing_total", "999.00.00.H09", MONTHS[0], 5.5, "GET /c")]
    store.upsert_observations(second + extra, "qlvb", later)
    store.upsert_observations(first[:10], "export", NOW)  # another source: rows of its own
    table = as_table(raw_rows(store))
    want = expected(first, "qlvb", NOW) | expected(second + extra, "qlvb", later) | expected(first[:10], "export", NOW)
    assert table == want
    assert len(table) == len(first) + 1 + 10


def test_a_key_given_twice_in_one_batch_ends_with_the_later_value(store: Store) -> None:
    period = MONTHS[0]
    twice = [Observation("staff_total", "000.00.00.H01", period, 3, "first"),
             Observation("staff_total", "000.00.00.H02", period, 4, "other"),
             Observation("staff_total", "000.00.00.H01", period, 7, "second")]
    assert store.upsert_observations(twice, "registry", NOW) == 3
    assert as_table(raw_rows(store)) == {
        ("staff_total", "000.00.00.H01", period.start, period.end, "registry"): (7.0, NOW, "second"),
        ("staff_total", "000.00.00.H02", period.start, period.end, "registry"): (4.0, NOW, "other")}


def test_a_failing_rejection_rolls_the_observations_back(store: Store) -> None:
    kept = batch(lambda m, u, p: 1, "GET /a")[:5]
    store.upsert_observations(kept, "qlvb", NOW)
    bad = Rejection("schema", None, "000.00.00.H01")  # type: ignore[arg-type]  # detail is NOT NULL
    with pytest.raises(Exception, match=r"(?i)null"):
        store.upsert_observations(batch(lambda m, u, p: 9, "GET /b"), "qlvb", NOW + timedelta(hours=1), [bad])
    assert as_table(raw_rows(store)) == expected(kept, "qlvb", NOW)
    assert store.recent_rejections() == []
    good = Rejection("schema", "value missing", "000.00.00.H01")
    assert store.upsert_observations(kept[:1], "qlvb", NOW, [good]) == 1
    assert [r["detail"] for r in store.recent_rejections()] == ["value missing"]


def test_rows_written_by_sqlalchemy_and_by_the_bulk_path_are_found_by_the_same_queries(store: Store) -> None:
    """On SQLite the times are text: the bulk path must write exactly SQLAlchemy's format, or
    range queries would miss rows."""
    period = MONTHS[1]
    with store.engine.begin() as connection:
        connection.execute(insert(ObservationRow), [{
            "measure": "staff_total", "unit": "a", "period_start": period.start, "period_end": period.end,
            "source": "s", "value": 1.0, "collected_at": NOW, "raw_ref": None}])
    store.upsert_observations([Observation("staff_total", "b", period, 2)], "s", NOW)
    found = store.load_observations(["staff_total"], period.start, period.end)
    assert sorted((o.unit, o.period_start, o.collected_at) for o in found) == [
        ("a", period.start, NOW), ("b", period.start, NOW)]
    assert store.load_observations(["staff_total"], period.end, period.end + timedelta(days=1)) == []
    assert store.first_periods(["staff_total"], None, NOW) == {"a": period.start, "b": period.start}


def test_postgresql_engines_have_a_bounded_pool_that_pings(postgres_url: str) -> None:
    from sqlalchemy.pool import QueuePool

    from monitor.storage.db import POOL_MAX_OVERFLOW, POOL_RECYCLE_SECONDS, POOL_SIZE

    engine = create_engine_for(postgres_url)
    try:
        pool = engine.pool
        assert isinstance(pool, QueuePool)
        assert (pool.size(), pool._max_overflow, pool._recycle, pool._pre_ping) == (
            POOL_SIZE, POOL_MAX_OVERFLOW, POOL_RECYCLE_SECONDS, True)
        connections = [engine.connect() for _ in range(POOL_SIZE + POOL_MAX_OVERFLOW)]
        assert pool.checkedout() == POOL_SIZE + POOL_MAX_OVERFLOW
        for connection in connections:
            connection.close()
        assert pool.checkedin() == POOL_SIZE  # the overflow is closed again, the core stays open
    finally:
        engine.dispose()
