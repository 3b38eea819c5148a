"""The ``sql`` collector against real databases: SQLite files and a real PostgreSQL.

Vendor-shaped tables (a document register ``van_ban`` aggregated by the
query, a pre-aggregated monthly statistics table) are filled with seeded
random rows; every expected number is counted here in Python from the rows
inserted, never copied from the collector's output.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from collectors import (
    CollectionResult,
    Credentials,
    SourceAuthError,
    SourceRequestError,
    SourceSettings,
    SourceTimeout,
    SourceUnavailable,
)
from collectors.sql import SqlCollector, SqlOptions
from monitor.catalog import load_catalog
from monitor.collection import CollectionRunner
from monitor.config import Config, load_config
from monitor.errors import ConfigError
from monitor.kpi import KpiEngine
from monitor.metrics import ServiceMetrics
from monitor.storage import Store, create_engine_for, upgrade_database
from monitor.timeutil import FrozenClock, Period, zone
from monitor.units import load_units
from monitor.windows import Window
from tests.support.components import PostgresServer

TZ = zone("Asia/Ho_Chi_Minh")
PROVINCE = "000.00.00.H99"
UNITS = ("000.00.01.H99", "000.00.02.H99", "000.00.03.H99")
STRANGER = "000.00.77.H99"  # in the vendor's table, not in the unit tree
MARCH, APRIL = Period.of_month(2025, 3, TZ), Period.of_month(2025, 4, TZ)
NOW = datetime(2025, 5, 10, 3, 0, tzinfo=UTC)
PASSWORD = "mật-khẩu-bí-mật-42"

Register = list[tuple[str, date, bool, bool]]
MEASURES = {"docs_outgoing_total": "tong", "docs_outgoing_electronic": "dien_tu", "docs_outgoing_signed": "ky_so"}


def register_rows(seed: int = 7, count: int = 500) -> Register:
    """Outgoing documents (unit, issue date, electronic?, signed?), February to April 2025."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        unit = rng.choice([*UNITS, STRANGER])
        day = date(2025, 2, 1) + timedelta(days=rng.randrange(89))
        electronic = rng.random() < 0.8
        rows.append((unit, day, electronic, electronic and rng.random() < 0.7))
    return rows


def month_of(day: date) -> Period:
    return Period.of_month(day.year, day.month, TZ)


def expected_register(rows: Register, periods: Sequence[Period]) -> dict[tuple[str, Period, str], float]:
    counts: Counter[tuple[str, Period, str]] = Counter()
    for unit, day, electronic, signed in rows:
        period = month_of(day)
        if unit == STRANGER or period not in periods:
            continue
        counts[(unit, period, "docs_outgoing_total")] += 1
        counts[(unit, period, "docs_outgoing_electronic")] += electronic
        counts[(unit, period, "docs_outgoing_signed")] += signed
    return {k: float(v) for k, v in counts.items()}


def observed(result: CollectionResult) -> dict[tuple[str, Period, str], float]:
    table = {(o.unit, o.period, o.measure): o.value for o in result.observations}
    assert len(table) == len(result.observations), "one observation per (unit, period, measure)"
    return table


# ----------------------------------------------------------------------------- databases

class Database:
    """A vendor database, written through the owner's own connection (the collector only reads)."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend = backend
        self.url = url

    def _connect(self) -> Any:
        if self.backend == "sqlite":
            return sqlite3.connect(self.url.removeprefix("sqlite:///"))
        return psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)

    def run(self, sql: str, rows: Sequence[Sequence[Any]] = ()) -> None:
        if self.backend == "postgresql":
            sql = sql.replace("?", "%s")
        connection = self._connect()
        try:
            if rows:
                connection.cursor().executemany(sql, rows)
            else:
                connection.execute(sql)
            connection.commit()
        finally:
            connection.close()

    def scalar(self, sql: str) -> Any:
        connection = self._connect()
        try:
            row = connection.execute(sql).fetchone()
            return None if row is None else row[0]
        finally:
            connection.close()

    def add_register(self, rows: Register) -> None:
        flag = "BOOLEAN" if self.backend == "postgresql" else "INTEGER"
        self.run(f"CREATE TABLE van_ban (so_ky_hieu TEXT, ma_don_vi TEXT, ngay_ban_hanh DATE, "
                 f"dien_tu {flag}, ky_so {flag})")
        self.run("INSERT INTO van_ban VALUES (?, ?, ?, ?, ?)",
                 [(f"{n}/QĐ", u, d.isoformat() if self.backend == "sqlite" else d, e, s)
                  for n, (u, d, e, s) in enumerate(rows)])

    @property
    def register_sql(self) -> str:
        if self.backend == "sqlite":
            return ("SELECT ma_don_vi, strftime('%Y-%m', ngay_ban_hanh) AS thang, COUNT(*) AS tong, "
                    "SUM(dien_tu) AS dien_tu, SUM(ky_so) AS ky_so FROM van_ban "
                    "WHERE ngay_ban_hanh >= :start AND ngay_ban_hanh < :end GROUP BY 1, 2")
        return ("SELECT ma_don_vi, to_char(ngay_ban_hanh, 'YYYY-MM') AS thang, COUNT(*) AS tong, "
                "COUNT(*) FILTER (WHERE dien_tu) AS dien_tu, COUNT(*) FILTER (WHERE ky_so) AS ky_so "
                "FROM van_ban WHERE ngay_ban_hanh >= :start AND ngay_ban_hanh < :end GROUP BY 1, 2")


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database("sqlite", f"sqlite:///{tmp_path / 'vendor.db'}")
    return Database("postgresql", str(request.getfixturevalue("postgres_url")))


def register_query(db: Database, **overrides: Any) -> dict[str, Any]:
    return {"name": "van_ban_di", "sql": db.register_sql, "unit_column": "ma_don_vi",
            "period": {"column": "thang", "format": "month"}, "values": MEASURES, **overrides}


def collector(url: str, queries: list[dict[str, Any]], *, grain: str = "month",
              credentials: Credentials | None = None, **options: Any) -> SqlCollector:
    settings = SourceSettings("kho-du-lieu", "sql", url, grain,  # type: ignore[arg-type]
                              {"queries": queries, **options}, credentials or Credentials(), timeout=5.0)
    return SqlCollector(settings, None, TZ, FrozenClock(NOW))  # type: ignore[arg-type]  # no HTTP


async def collect(source: SqlCollector, periods: Sequence[Period] = (MARCH, APRIL),
                  units: Sequence[str] = (PROVINCE, *UNITS)) -> CollectionResult:
    try:
        return await source.collect(list(periods), set(units))
    finally:
        await source.aclose()


# ----------------------------------------------------------------------------- numbers

async def test_register_aggregated_by_the_query_equals_a_count_of_the_rows(database: Database) -> None:
    rows = register_rows()
    database.add_register(rows)
    result = await collect(collector(database.url, [register_query(database)]))
    assert observed(result) == expected_register(rows, [MARCH, APRIL])
    strangers = {month_of(d) for u, d, _, _ in rows if u == STRANGER and month_of(d) in (MARCH, APRIL)}
    assert [r.reason for r in result.rejections] == ["unknown_unit"] * len(strangers)
    assert all(STRANGER in r.detail and "van_ban_di" in r.detail for r in result.rejections)
    # February is outside the bound :start/:end: not read at all, so not rejected either.
    assert {o.period for o in result.observations} == {MARCH, APRIL}


async def test_pre_aggregated_monthly_table(database: Database) -> None:
    rng = random.Random(11)
    totals = [(u, 202500 + month, rng.randrange(50, 400)) for u in UNITS for month in (2, 3, 4)]
    stats = [(u, ky, total, rng.randrange(0, total + 1)) for u, ky, total in totals]
    database.run("CREATE TABLE thong_ke_thang (ma_dv TEXT, ky INTEGER, tong_den INTEGER, xu_ly_tren_pm INTEGER)")
    database.run("INSERT INTO thong_ke_thang VALUES (?, ?, ?, ?)", stats)
    query = {"name": "thong_ke", "unit_column": "MA_DV", "period": {"column": "ky", "format": "month"},
             "sql": "SELECT * FROM thong_ke_thang WHERE ky >= 202503",
             "values": {"docs_incoming_total": "tong_den", "docs_incoming_electronic": "xu_ly_tren_pm"}}
    result = await collect(collector(database.url, [query]), periods=[MARCH, APRIL])
    expected = {}
    for unit, ky, total, electronic in stats:
        if ky >= 202503:
            period = Period.of_month(2025, ky % 100, TZ)
            expected[(unit, period, "docs_incoming_total")] = float(total)
            expected[(unit, period, "docs_incoming_electronic")] = float(electronic)
    assert observed(result) == expected and result.rejections == []


async def test_from_request_runs_once_per_period_for_stocks(tmp_path: Path) -> None:
    """Accounts that exist at the end of each month: a stock, asked per period."""
    db = Database("sqlite", f"sqlite:///{tmp_path / 'vendor.db'}")
    rng = random.Random(5)
    accounts = [(f"cb{n}", rng.choice(UNITS), (date(2025, 1, 1) + timedelta(days=rng.randrange(120))).isoformat())
                for n in range(200)]
    db.run("CREATE TABLE tai_khoan (ten TEXT, don_vi TEXT, ngay_tao TEXT)")
    db.run("INSERT INTO tai_khoan VALUES (?, ?, ?)", accounts)
    query = {"name": "tai_khoan", "unit_column": "don_vi", "period": "from_request",
             "sql": "SELECT don_vi, COUNT(*) AS so FROM tai_khoan WHERE ngay_tao < :end GROUP BY don_vi",
             "values": {"docmgmt_accounts_total": "so"}}
    result = await collect(collector(db.url, [query]))
    expected = {(unit, period, "docmgmt_accounts_total"): float(sum(
        1 for _, u, created in accounts if u == unit and created < ends))
        for unit in UNITS for period, ends in ((MARCH, "2025-04-01"), (APRIL, "2025-05-01"))}
    assert observed(result) == expected
    assert {o.raw_ref for o in result.observations if o.period == MARCH} == {
        f"sql tai_khoan[2025-03]#{n}" for n in (1, 2, 3)}


@pytest.mark.postgresql
async def test_timestamps_fall_on_local_days(postgres_url: str) -> None:
    """The session runs in the province's time zone: 23:30 in Hanoi is that day, not the UTC one."""
    db = Database("postgresql", postgres_url)
    db.run("CREATE TABLE ho_so (ma_don_vi TEXT, thoi_diem TIMESTAMPTZ)")
    rng = random.Random(3)
    start = datetime(2025, 3, 1, tzinfo=TZ).astimezone(UTC)
    instants = [(rng.choice(UNITS), start + timedelta(minutes=rng.randrange(3 * 24 * 60))) for _ in range(300)]
    instants += [(UNITS[0], datetime(2025, 3, 1, 16, 30, tzinfo=UTC))]  # 23:30 on 1 March in Hanoi
    db.run("INSERT INTO ho_so VALUES (?, ?)", instants)
    query = {"name": "ho_so_ngay", "unit_column": "ma_don_vi", "period": {"column": "ngay", "format": "datetime"},
             "sql": ("SELECT ma_don_vi, date_trunc('day', thoi_diem) AS ngay, COUNT(*) AS so FROM ho_so "
                     "WHERE thoi_diem >= :start AND thoi_diem < :end GROUP BY 1, 2"),
             "values": {"dossiers_received_total": "so"}}
    days = [Period.of_day(date(2025, 3, d), TZ) for d in (1, 2, 3)]
    result = await collect(collector(postgres_url, [query], grain="day"), periods=days)
    counts = Counter((u, Period.containing(t, "day", TZ), "dossiers_received_total") for u, t in instants)
    assert observed(result) == {k: float(v) for k, v in counts.items()} and result.rejections == []


# ----------------------------------------------------------------------------- bad rows

async def test_each_bad_row_is_rejected_precisely_and_the_rest_lands(tmp_path: Path) -> None:
    db = Database("sqlite", f"sqlite:///{tmp_path / 'vendor.db'}")
    db.run("CREATE TABLE bao_cao (stt INTEGER, don_vi TEXT, thang TEXT, tong, dien_tu)")
    rows = [
        (1, UNITS[0], "2025-03", 10, 7),       # fine
        (2, UNITS[1], "2025-03", None, 3),     # NULL total: the electronic count still lands
        (3, UNITS[2], "2025-03", "mười", 2),   # not a number
        (4, UNITS[0], "tháng 4", 5, 1),        # unreadable period
        (5, None, "2025-04", 5, 1),            # no unit
        (6, UNITS[1], "2025-04", " 8 ", "6"),  # numbers as text are fine
        (7, UNITS[0], "2025-03", 99, 98),      # a second March for unit 0
    ]
    db.run("INSERT INTO bao_cao VALUES (?, ?, ?, ?, ?)", rows)
    query = {"name": "bao_cao", "unit_column": "don_vi", "period": {"column": "thang", "format": "month"},
             "sql": "SELECT * FROM bao_cao ORDER BY stt",
             "values": {"docs_outgoing_total": "tong", "docs_outgoing_electronic": "dien_tu"}}
    result = await collect(collector(db.url, [query]))
    reasons = Counter(r.reason for r in result.rejections)
    assert reasons == {"duplicate": 2, "null_value": 1, "not_a_number": 1, "bad_period": 1, "unit_missing": 1}
    details = {r.reason: r.detail for r in result.rejections}
    assert "column tong is NULL" in details["null_value"] and "row 2" in details["null_value"]
    assert "column tong is 'mười', not a number" in details["not_a_number"]
    assert "column thang = 'tháng 4' is not" in details["bad_period"] and "YYYY-MM" in details["bad_period"]
    assert "column don_vi is None" in details["unit_missing"]
    assert "first from sql bao_cao#1" in details["duplicate"] and "GROUP BY" in details["duplicate"]
    assert {r.raw_ref for r in result.rejections} == {f"sql bao_cao#{n}" for n in (2, 3, 4, 5, 7)}
    assert observed(result) == {
        (UNITS[0], MARCH, "docs_outgoing_total"): 10.0, (UNITS[0], MARCH, "docs_outgoing_electronic"): 7.0,
        (UNITS[1], MARCH, "docs_outgoing_electronic"): 3.0, (UNITS[2], MARCH, "docs_outgoing_electronic"): 2.0,
        (UNITS[1], APRIL, "docs_outgoing_total"): 8.0, (UNITS[1], APRIL, "docs_outgoing_electronic"): 6.0,
    }


async def test_a_missing_column_names_what_the_query_returns(database: Database) -> None:
    database.add_register(register_rows(count=20))
    query = register_query(database, values={"docs_outgoing_total": "so_luong"})
    with pytest.raises(SourceRequestError, match=r"returns no column\(s\) so_luong; it returns ma_don_vi, thang"):
        await collect(collector(database.url, [query]))


async def test_too_many_rows_asks_for_grouping(tmp_path: Path) -> None:
    db = Database("sqlite", f"sqlite:///{tmp_path / 'vendor.db'}")
    db.add_register(register_rows(count=50))
    query = {"name": "tung_dong", "unit_column": "ma_don_vi", "period": {"column": "ngay_ban_hanh", "format": "date"},
             "sql": "SELECT ma_don_vi, ngay_ban_hanh, 1 AS mot FROM van_ban", "values": {"docs_outgoing_total": "mot"}}
    with pytest.raises(SourceRequestError, match="more than max_rows = 10 rows; aggregate"):
        await collect(collector(db.url, [query], max_rows=10))


# ----------------------------------------------------------------------------- safety

def test_several_statements_or_a_write_are_refused_at_config_load(tmp_path: Path) -> None:
    def options(sql: str) -> dict[str, Any]:
        return {"queries": [{"name": "q", "sql": sql, "unit_column": "u", "period": "from_request",
                             "values": {"docs_outgoing_total": "n"}}]}

    SqlOptions.model_validate(options("SELECT 'a;b' AS u, 1 AS n -- ; DELETE\n;"))  # quoted, commented, trailing
    refused = {
        "SELECT 1 AS u, 1 AS n; DELETE FROM van_ban": "exactly one statement, got 2",
        "DELETE FROM van_ban": "must be a SELECT (or WITH … SELECT) statement, got one starting with 'delete'",
        "SELECT :unit AS u, 1 AS n": "unknown parameter(s) :unit",
    }
    for sql, message in refused.items():
        (tmp_path / "units.yaml").write_text(f"version: 1\nunits:\n  - {{code: {PROVINCE}, name: T, level: province, "
                                             "group: tinh}\n", encoding="utf-8")
        source = {"id": "kho", "kind": "sql", "url": f"sqlite:///{tmp_path}/v.db", **{"options": options(sql)}}
        config = {"version": 1, "province": {"name": "T"}, "units": {"file": "units.yaml"}, "sources": [source]}
        (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path / "monitor.yaml", {})
        assert message in str(caught.value) and "options.queries[0].sql" in str(caught.value), str(caught.value)


async def test_sqlite_is_opened_read_only(tmp_path: Path) -> None:
    db = Database("sqlite", f"sqlite:///{tmp_path / 'vendor.db'}")
    rows = register_rows(count=60)
    db.add_register(rows)
    # Passes the cheap check (it starts with WITH), so only the read-only file stops it.
    query = {"name": "xoa", "unit_column": "ma_don_vi", "period": "from_request",
             "sql": "WITH x AS (SELECT 1) DELETE FROM van_ban RETURNING ma_don_vi, 1 AS n",
             "values": {"docs_outgoing_total": "n"}}
    with pytest.raises(SourceRequestError, match=r"tried to write.*readonly database") as caught:
        await collect(collector(db.url, [query]))
    assert caught.value.permanent
    assert db.scalar("SELECT COUNT(*) FROM van_ban") == len(rows)


@pytest.mark.postgresql
async def test_postgresql_sessions_are_read_only(postgres_url: str) -> None:
    db = Database("postgresql", postgres_url)
    rows = register_rows(count=60)
    db.add_register(rows)
    before = db.scalar("SELECT md5(string_agg(so_ky_hieu || ma_don_vi || dien_tu::text, ',' ORDER BY so_ky_hieu)) "
                       "FROM van_ban")
    attempts = {
        "delete": "WITH x AS (DELETE FROM van_ban RETURNING ma_don_vi) SELECT ma_don_vi, 1 AS n FROM x",
        "update": "WITH x AS (UPDATE van_ban SET dien_tu = true RETURNING ma_don_vi) SELECT ma_don_vi, 1 AS n FROM x",
    }
    # A first query turning the session's default off must not open the door for the next one.
    reopen = {"name": "mo_khoa", "unit_column": "ma_don_vi", "period": "from_request",
              "values": {"docs_outgoing_total": "n"},
              "sql": "SELECT set_config('default_transaction_read_only', 'off', false) AS ma_don_vi, 1 AS n"}
    for name, sql in attempts.items():
        query = {"name": name, "unit_column": "ma_don_vi", "period": "from_request", "sql": sql,
                 "values": {"docs_outgoing_total": "n"}}
        with pytest.raises(SourceRequestError, match=r"tried to write.*read-only transaction") as caught:
            await collect(collector(postgres_url, [reopen, query]))
        assert caught.value.permanent
    after = db.scalar("SELECT md5(string_agg(so_ky_hieu || ma_don_vi || dien_tu::text, ',' ORDER BY so_ky_hieu)) "
                      "FROM van_ban")
    assert after == before and db.scalar("SELECT COUNT(*) FROM van_ban") == len(rows)


@pytest.mark.postgresql
async def test_postgresql_statement_timeout(postgres_url: str) -> None:
    query = {"name": "cham", "unit_column": "u", "period": "from_request", "values": {"docs_outgoing_total": "n"},
             "sql": f"SELECT '{UNITS[0]}' AS u, 1 AS n FROM pg_sleep(5)"}
    source = collector(postgres_url, [query], statement_timeout="0.5s")
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match="statement_timeout"):
        await collect(source, periods=[MARCH])
    assert time.monotonic() - started < 3.0


async def test_sqlite_statement_timeout_and_the_connection_survives(tmp_path: Path) -> None:
    db = Database("sqlite", f"sqlite:///{tmp_path / 'vendor.db'}")
    db.run("CREATE TABLE t (x INTEGER)")
    endless = {"name": "dem", "unit_column": "u", "period": "from_request", "values": {"docs_outgoing_total": "n"},
               "sql": ("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) "
                       f"SELECT '{UNITS[0]}' AS u, COUNT(*) AS n FROM c")}
    quick = {**endless, "name": "nhanh", "sql": f"SELECT '{UNITS[0]}' AS u, 4 AS n"}
    source = collector(db.url, [endless], statement_timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(SourceTimeout):
            await source.collect([MARCH], set(UNITS))
        assert time.monotonic() - started < 3.0
    finally:
        await source.aclose()
    result = await collect(collector(db.url, [quick], statement_timeout=0.3), periods=[MARCH])
    assert observed(result) == {(UNITS[0], MARCH, "docs_outgoing_total"): 4.0}


async def test_injection_through_data_or_unit_map_is_inert(database: Database) -> None:
    rows = register_rows(count=80)
    database.add_register(rows)
    evil = "x'); DROP TABLE van_ban; --"
    database.run("INSERT INTO van_ban VALUES (?, ?, ?, ?, ?)",
                 [("999/QĐ", evil, date(2025, 3, 5).isoformat() if database.backend == "sqlite" else date(2025, 3, 5),
                   True, False)])
    query = register_query(database, unit_map={UNITS[0]: f"{UNITS[0]}'; DELETE FROM van_ban; --"})
    first = await collect(collector(database.url, [query]))
    second = await collect(collector(database.url, [query]))  # the statement runs again, unchanged
    assert database.scalar("SELECT COUNT(*) FROM van_ban") == len(rows) + 1
    for result in (first, second):
        unknown = [r for r in result.rejections if r.reason == "unknown_unit"]
        assert any(evil in r.detail for r in unknown)
        assert any("DELETE FROM van_ban" in r.detail and "mapped by unit_map" in r.detail for r in unknown)
        assert not any(o.unit == UNITS[0] for o in result.observations)
        expected = {k: v for k, v in expected_register(rows, [MARCH, APRIL]).items() if k[0] != UNITS[0]}
        assert observed(result) == expected


# ----------------------------------------------------------------------------- connections and credentials

@pytest.fixture
def reader(postgres_server: PostgresServer, postgres_url: str) -> Iterator[str]:
    """A login role that needs a password over TCP (the test cluster otherwise trusts everyone)."""
    name = postgres_url.rsplit("/", 1)[1]
    role = f"doc_{name[-12:]}"
    with postgres_server.connect(name) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    hba = postgres_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{original}")
    with postgres_server.connect() as conn:
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield role
    finally:
        hba.write_text(original)
        with postgres_server.connect() as conn:
            conn.execute("SELECT pg_reload_conf()")


@pytest.mark.postgresql
async def test_password_from_auth_block_and_never_shown(postgres_url: str, reader: str) -> None:
    db = Database("postgresql", postgres_url)
    rows = register_rows(count=120)
    db.add_register(rows)
    db.run(f"GRANT SELECT ON van_ban TO {reader}")
    url = postgres_url.replace("postgres@", f"{reader}@")
    query = register_query(db)
    good = await collect(collector(url, [query], credentials=Credentials("basic", reader, PASSWORD)))
    assert observed(good) == expected_register(rows, [MARCH, APRIL])

    with pytest.raises(SourceAuthError) as caught:
        await collect(collector(url, [query], credentials=Credentials("basic", reader, PASSWORD[::-1])))
    assert caught.value.permanent and "password authentication failed" in str(caught.value)
    assert PASSWORD[::-1] not in str(caught.value) and "***" in str(caught.value)

    closed = f"postgresql+psycopg://{reader}@127.0.0.1:1/kho"  # nothing listens on port 1
    with pytest.raises(SourceUnavailable) as down:
        await collect(collector(closed, [query], credentials=Credentials("basic", reader, PASSWORD)))
    assert not down.value.permanent and PASSWORD not in str(down.value)


async def test_a_missing_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    query = {"name": "q", "unit_column": "u", "period": "from_request", "sql": "SELECT 1 AS u, 1 AS n",
             "values": {"docs_outgoing_total": "n"}}
    with pytest.raises(SourceUnavailable, match="no such file"):
        await collect(collector(f"sqlite:///{tmp_path}/chua-co.db", [query]))
    assert not (tmp_path / "chua-co.db").exists()  # read-only: never created either


# ----------------------------------------------------------------------------- end to end

UNITS_YAML = {"version": 1, "units": [
    {"code": PROVINCE, "name": "UBND tỉnh Sơn Hà", "level": "province", "group": "tinh"},
    *({"code": code, "name": f"Sở {n}", "level": "department", "group": "so", "parent": PROVINCE}
      for n, code in enumerate(UNITS, start=1)),
]}


def write_monitor_config(directory: Path, url: str, query: dict[str, Any], username: str | None = None) -> Path:
    (directory / "units.yaml").write_text(yaml.safe_dump(UNITS_YAML, allow_unicode=True), encoding="utf-8")
    source: dict[str, Any] = {"id": "qlvb-sql", "kind": "sql", "url": url, "backfill_from": "2025-03-01",
              "options": {"statement_timeout": "10s", "queries": [query]}}
    if username is not None:
        (directory / "db-password").write_text(PASSWORD + "\n", encoding="utf-8")
        source["auth"] = {"type": "basic", "username": username, "password_file": "db-password"}
    config = {"version": 1, "province": {"name": "Tỉnh Sơn Hà", "code": PROVINCE},
              "database": {"url": "sqlite:///egovmon.db"}, "units": {"file": "units.yaml"},
              "sources": [source], "alerts": {"enabled": False}}
    path = directory / "monitor.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class Monitor:
    """The parts of the service this test needs, as MonitorService wires them (without rules and
    scoring indices, which expect the groups of a full province)."""

    def __init__(self, config: Config) -> None:
        engine = create_engine_for(config.database.url)
        upgrade_database(engine)
        self.engine = engine
        self.store = Store(engine)
        self.metrics = ServiceMetrics()
        units, catalog = load_units(config.units.file), load_catalog(config.catalog.file)
        self.runner = CollectionRunner(config, self.store, catalog, units, self.metrics, FrozenClock(NOW))
        self.kpis = KpiEngine(catalog, units, self.store, config.tz)

    def close(self) -> None:
        self.engine.dispose()


def test_end_to_end_config_to_kpi(tmp_path: Path) -> None:
    vendor = Database("sqlite", f"sqlite:///{tmp_path / 'vendor.db'}")
    rows = register_rows(seed=21, count=700)
    vendor.add_register(rows)
    config = load_config(write_monitor_config(tmp_path, vendor.url, register_query(vendor)), {})

    async def scenario() -> tuple[Any, Any, list[Any], list[dict[str, Any]]]:
        service = Monitor(config)
        try:
            summary = await service.runner.collect("qlvb-sql")
            as_of = MARCH.end - timedelta(seconds=1)
            values = service.kpis.compute(as_of, [Window.parse("month")], kpis=["outgoing_docs_electronic_rate",
                                                                              "outgoing_docs_signed_rate"])
            return summary, service.metrics.registry, values, service.store.recent_rejections("qlvb-sql")
        finally:
            service.close()

    summary, registry, values, stored_rejections = asyncio.run(scenario())
    march = [(u, e, s) for u, d, e, s in rows if month_of(d) == MARCH and u != STRANGER]
    assert summary.ok, summary.error
    kpis = {(v.kpi, v.unit): v for v in values}
    province = kpis[("outgoing_docs_electronic_rate", PROVINCE)]
    assert (province.numerator, province.denominator) == (sum(e for _, e, _ in march), len(march))
    signed = kpis[("outgoing_docs_signed_rate", UNITS[1])]
    unit_rows = [(e, s) for u, e, s in march if u == UNITS[1]]
    assert (signed.numerator, signed.denominator) == (sum(s for _, s in unit_rows), sum(e for e, _ in unit_rows))
    # Strangers are refused with a reason, counted in the metrics and kept for the API.
    stranger_months = {month_of(d) for u, d, _, _ in rows if u == STRANGER and d >= date(2025, 3, 1)}
    assert summary.rejected_by_reason == {"unknown_unit": len(stranger_months)}
    assert len(stored_rejections) == len(stranger_months)
    assert registry.get_sample_value("egov_observations_rejected_total",
                                     {"source": "qlvb-sql", "reason": "unknown_unit"}) == len(stranger_months)


@pytest.mark.postgresql
def test_end_to_end_postgresql_with_a_password_file(tmp_path: Path, postgres_url: str, reader: str) -> None:
    vendor = Database("postgresql", postgres_url)
    rows = register_rows(seed=8, count=300)
    vendor.add_register(rows)
    vendor.run(f"GRANT SELECT ON van_ban TO {reader}")
    url = postgres_url.replace("postgres@", f"{reader}@")  # the password comes from the file only
    config = load_config(write_monitor_config(tmp_path, url, register_query(vendor), username=reader), {})
    assert PASSWORD not in repr(config)

    async def scenario() -> tuple[Any, list[Any]]:
        service = Monitor(config)
        try:
            summary = await service.runner.collect("qlvb-sql")
            values = service.kpis.compute(APRIL.end - timedelta(seconds=1), [Window.parse("month")],
                                          kpis=["outgoing_docs_electronic_rate"], units=[PROVINCE])
            return summary, values
        finally:
            service.close()

    summary, values = asyncio.run(scenario())
    assert summary.ok, summary.error
    april = [e for u, d, e, _ in rows if month_of(d) == APRIL and u != STRANGER]
    (province,) = values
    assert (province.numerator, province.denominator) == (sum(april), len(april))


def test_dry_run_previews_and_stores_nothing(tmp_path: Path) -> None:
    vendor = Database("sqlite", f"sqlite:///{tmp_path / 'vendor.db'}")
    rows = register_rows(seed=4, count=200)
    vendor.add_register(rows)
    config = load_config(write_monitor_config(tmp_path, vendor.url, register_query(vendor)), {})

    async def scenario() -> tuple[Any, int, Any]:
        service = Monitor(config)
        try:
            summary = await service.runner.collect("qlvb-sql", dry_run=True)
            return summary, service.store.count_observations(), service.store.watermark("qlvb-sql")
        finally:
            service.close()

    summary, count, watermark = asyncio.run(scenario())
    assert count == 0 and watermark is None
    requested = [MARCH, APRIL, Period.of_month(2025, 5, TZ)]
    assert {(o.unit, o.period, o.measure): o.value for o in summary.preview} == expected_register(rows, requested)
    assert {r.reason for r in summary.rejected} == {"unknown_unit"}
