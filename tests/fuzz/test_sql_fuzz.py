"""Property: the ``sql`` collector, reading a real SQLite table of arbitrary typed
values, keeps the collector contract and accounts for every row it was given."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from collectors import Credentials, SourceSettings
from collectors.sql import SqlCollector
from monitor.timeutil import FrozenClock, Period, zone
from tests.fuzz.checks import fuzz
from tests.fuzz.rig import Rig, check_result, collected

TZ = zone("Asia/Ho_Chi_Minh")
UNITS = {"000.00.00.H99", "000.00.01.H99", "000.00.02.H99"}
PERIODS = [Period.of_month(2025, 3, TZ), Period.of_month(2025, 4, TZ)]
NOW = datetime(2025, 5, 10, 3, 0, tzinfo=UTC)
MEASURES = {"docs_outgoing_total": "tong", "docs_outgoing_electronic": "dien_tu", "docs_outgoing_signed": "ky_so"}
QUERY = {"name": "thong_ke", "sql": "SELECT ma_don_vi, thang, tong, dien_tu, ky_so FROM thong_ke",
         "unit_column": "ma_don_vi", "period": {"column": "thang", "format": "month"}, "values": MEASURES}

# What SQLite can hold, with the values a vendor's table gets wrong.
CELL = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=12),
    st.binary(max_size=6), st.sampled_from(["12", " 7 ", "1e400", "-5", "NaN", "inf", "1,5", "0x10", "١٢"]))
UNIT = st.sampled_from([*sorted(UNITS), "000.00.77.H99", "", " 000.00.01.H99"]) | st.text(max_size=14) | st.none()
MONTH = st.sampled_from(["2025-03", "2025-04", "2025-13", "2025-3", "2024-12", "", "03/2025"]) | CELL
ROWS = st.lists(st.tuples(UNIT, MONTH, CELL, CELL, CELL), max_size=12)


@fuzz(60)
@given(rows=ROWS)
@example(rows=[("000.00.01.H99", "2025-03", 10, 5, 4), ("000.00.01.H99", "2025-03", 10, 5, 4)])  # a duplicate
@example(rows=[("000.00.01.H99", "2025-03", float("inf"), -1, "1e400")])
@example(rows=[("000.00.01.H99", "2025-03", 2**63 - 1, b"\x00", "  ")])
def test_arbitrary_rows_keep_the_contract(rig: Rig, tmp_path_factory: Any, rows: list[tuple[Any, ...]]) -> None:
    folder: Path = tmp_path_factory.mktemp("sql")
    database = folder / "vendor.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE thong_ke (ma_don_vi, thang, tong, dien_tu, ky_so)")  # no types: any value
        connection.executemany("INSERT INTO thong_ke VALUES (?, ?, ?, ?, ?)", rows)
    connection.close()
    settings = SourceSettings("kho-du-lieu", "sql", f"sqlite:///{database}", "month", {"queries": [QUERY]},
                              Credentials(), timeout=5.0)
    source = SqlCollector(settings, None, TZ, FrozenClock(NOW))  # type: ignore[arg-type]  # reads no HTTP

    async def run() -> Any:
        try:
            return await collected(source.collect(PERIODS, UNITS))
        finally:
            await source.aclose()

    # sql leaves negative and non-finite values to the runner's checks (collection.py).
    outcome = check_result(rig.run(run()), UNITS, runner_checks_values=True)
    if outcome is None:
        return
    # Accounting: a row stored without complaint gives one observation per measure; so
    # observations can never outnumber what the rows could give.
    assert len(outcome.observations) <= len(rows) * len(MEASURES)
    if rows and not outcome.observations:
        assert outcome.rejections, "rows read, nothing stored, and no reason given"
