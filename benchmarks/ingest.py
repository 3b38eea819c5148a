"""Ingest: observations stored per second by the service's write path,
``Store.upsert_observations`` (insert-or-replace, atomic with the rejections),
against the fastest plain write of the same rows into the same table.

Data: one month of the synthetic national dataset (benchmarks/_national.py):
every unit × every catalog measure, split by source as the collectors deliver it
(one call per source). Each repeat writes into an empty ``observations`` table of
a database built by the Alembic migrations, so the unique key and the window
index are maintained in both the write path and its baseline.

Baselines, in the same run, over the same rows already converted to what the
driver takes (so they are the floor, not a rival implementation):

- SQLite: ``sqlite3`` ``executemany`` of a plain INSERT, one transaction;
- PostgreSQL: psycopg 3 ``cursor.copy()`` (binary COPY FROM STDIN, the fastest form) into the table, one
  transaction, on a throw-away server started here (skipped, with a warning on
  stderr, when the PostgreSQL binaries are missing).

The write path's time includes turning ``Observation`` objects into rows; the
baselines' does not.
"""

from __future__ import annotations

import gc
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks._national import (
    COLLECTED_AT,
    INSERT_SQL,
    Scale,
    month_periods,
    new_schema_sqlite,
    observations,
    row_tuple,
)
from benchmarks.common import Result
from collectors.base import Observation
from monitor.catalog import load_catalog

FULL = Scale(provinces=34, units_per_province=1000, months=1)
QUICK = Scale(provinces=3, units_per_province=1000, months=1)
COLUMNS = "measure, unit, period_start, period_end, source, value, collected_at, raw_ref"
COPY_TYPES = ("text", "text", "timestamptz", "timestamptz", "text", "float8", "timestamptz", "text")
GOAL = "ratio >= 0.5 (issue 9: at least half the plain bulk write's throughput)"

Batches = dict[str, list[Observation]]


def month_batches(scale: Scale) -> Batches:
    """The newest month of the dataset, one batch per source."""
    batches: Batches = {}
    for source, obs in observations(scale, load_catalog(), month_periods(scale)[-1:]):
        batches.setdefault(source, []).append(obs)
    return batches


def timed_fastest(prepare: Callable[[], None], work: Callable[[], None], repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``work``, each after an untimed ``prepare``."""
    best = float("inf")
    for _ in range(repeats):
        prepare()
        gc.collect()
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def store_write(url: str, batches: Batches) -> None:
    from monitor.storage.db import create_engine_for
    from monitor.storage.store import Store

    engine = create_engine_for(url)
    try:
        store = Store(engine)
        for source, batch in batches.items():
            store.upsert_observations(batch, source, COLLECTED_AT)
    finally:
        engine.dispose()


def sqlite_baseline(path: Path, rows: list[tuple[object, ...]]) -> None:
    connection = sqlite3.connect(path)
    try:
        # the service's own connection settings (monitor/storage/db.py)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executemany(INSERT_SQL, rows)
        connection.commit()
    finally:
        connection.close()


def sqlite_figure(batches: Batches, total: int, repeats: int, scale_text: str) -> Result:
    folder = Path(tempfile.mkdtemp(prefix="egovmon-bench-ingest-"))
    try:
        path = folder / "ingest.db"
        rows = [row_tuple(source, o, COLLECTED_AT) for source, batch in batches.items() for o in batch]

        def fresh() -> None:
            for leftover in folder.iterdir():
                leftover.unlink()
            new_schema_sqlite(path)

        url = f"sqlite:///{path}"
        store_seconds = timed_fastest(fresh, lambda: store_write(url, batches), repeats)
        _check_count(url, total)
        plain_seconds = timed_fastest(fresh, lambda: sqlite_baseline(path, rows), repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Result("ingest_sqlite", total / store_seconds, "observations/s",
                  "sqlite3 executemany of a plain INSERT into the same schema", total / plain_seconds,
                  scale_text, GOAL)


def postgres_figure(batches: Batches, total: int, repeats: int, scale_text: str) -> Result | None:
    # The tests' throw-away server (fsync off, as for both sides here): the ratio compares the
    # code paths, not the disk.
    from tests.support.components import PostgresServer

    try:
        server = PostgresServer().start()
    except RuntimeError as exc:
        print(f"benchmarks: ingest_postgresql skipped: {exc} (./scripts/bootstrap --test-deps)", file=sys.stderr)
        return None
    try:
        import psycopg

        from monitor.storage.db import create_engine_for, upgrade_database

        url = server.create_database("ingest")
        engine = create_engine_for(url)
        upgrade_database(engine)
        engine.dispose()
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        rows = [(o.measure, o.unit, o.period.start, o.period.end, source, float(o.value), COLLECTED_AT, o.raw_ref)
                for source, batch in batches.items() for o in batch]

        def empty() -> None:
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute("TRUNCATE observations")
                connection.execute("VACUUM ANALYZE observations")

        def copy() -> None:
            with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
                with cursor.copy(f"COPY observations ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as stream:
                    stream.set_types(COPY_TYPES)
                    for row in rows:
                        stream.write_row(row)
                connection.commit()

        store_seconds = timed_fastest(empty, lambda: store_write(url, batches), repeats)
        _check_count(url, total)
        copy_seconds = timed_fastest(empty, copy, repeats)
    finally:
        server.stop()
    return Result("ingest_postgresql", total / store_seconds, "observations/s",
                  "psycopg 3 binary COPY FROM STDIN into the same table", total / copy_seconds, scale_text, GOAL)


def _check_count(url: str, expected: int) -> None:
    """A benchmark of a write that lost rows would be meaningless: stop loudly."""
    from monitor.storage.db import create_engine_for
    from monitor.storage.store import Store

    engine = create_engine_for(url)
    try:
        stored = Store(engine).count_observations()
    finally:
        engine.dispose()
    if stored != expected:
        raise RuntimeError(f"the write path stored {stored} observations, {expected} were given")


def run(quick: bool) -> Iterator[Result]:
    scale = QUICK if quick else FULL
    repeats = 1 if quick else 2
    batches = month_batches(scale)
    total = sum(len(b) for b in batches.values())
    measures = len(load_catalog().measures)
    scale_text = (f"one month of {scale.provinces} provinces × {scale.units_per_province} units (+ national root) × "
                  f"{measures} measures = {total} observations, {len(batches)} sources")
    yield sqlite_figure(batches, total, repeats, scale_text)
    figure = postgres_figure(batches, total, repeats, scale_text)
    if figure is not None:
        yield figure
