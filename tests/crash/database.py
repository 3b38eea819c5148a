"""Reading what a killed process left in its SQLite file, independently of the service's
own code (plain sqlite3), so a bug in the store cannot hide itself."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

LOCAL_OFFSET = timedelta(hours=7)  # Asia/Ho_Chi_Minh, no daylight saving
ObservationKey = tuple[str, str, str, str, str]  # measure, unit, period start, period end, source


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, timeout=30)) as connection:
        yield connection


def observations(path: Path) -> dict[ObservationKey, float]:
    with connect(path) as db:
        rows = db.execute("SELECT measure, unit, period_start, period_end, source, value FROM observations")
        return {(m, u, ps, pe, s): v for m, u, ps, pe, s, v in rows}


def runs(path: Path) -> list[dict[str, Any]]:
    with connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM collection_runs ORDER BY id")]


def watermarks(path: Path) -> dict[str, str]:
    with connect(path) as db:
        return dict(db.execute("SELECT source, resume_from FROM watermarks").fetchall())


def evaluations(path: Path, day: str) -> list[dict[str, Any]]:
    with connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM evaluations WHERE as_of_day = ? ORDER BY rule, unit",
                                            (day,))]


def chunk_of(period_start: str, first_year: int, size: int = 6) -> int:
    """Which chunk of ``size`` monthly periods (counted from January of ``first_year``) a
    stored period start (UTC text) falls in — the runner's chunking, recomputed."""
    local = datetime.fromisoformat(period_start) + LOCAL_OFFSET
    return ((local.year - first_year) * 12 + local.month - 1) // size


def chunk_start(chunk: int, first_year: int, size: int = 6) -> str:
    """The UTC text the database stores for the local midnight starting ``chunk``."""
    months = chunk * size
    local = datetime(first_year + months // 12, months % 12 + 1, 1)
    return (local - LOCAL_OFFSET).strftime("%Y-%m-%d %H:%M:%S.%f")
