"""The test components are real: PostgreSQL, Prometheus and promtool do what the tests need."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from tests.support.components import (
    PostgresServer,
    PrometheusQueryError,
    PrometheusServer,
    free_port,
    promtool_check_metrics,
    promtool_check_rules,
    require_component,
)

UNIT_NAME = "Sở Thông tin và Truyền thông"
PROBE_LABEL = "Sở Tư pháp"
PROBE_EXPOSITION = (
    "# HELP egov_fixture_probe A probe metric served to the test Prometheus.\n"
    "# TYPE egov_fixture_probe gauge\n"
    f'egov_fixture_probe{{unit="{PROBE_LABEL}"}} 42\n'
)


# --------------------------------------------------------------------------- helpers


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_missing_component_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    require_component("thing", True, "never shown")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install thing"):
        require_component("thing", False, "apt-get install thing")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install thing"):
        require_component("thing", False, "apt-get install thing")


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_round_trips_vietnamese_text_and_timestamptz(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    moment = datetime(2024, 3, 1, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=7)))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE unit (name text NOT NULL, seen timestamptz)"))
            conn.execute(
                sa.text("INSERT INTO unit (name, seen) VALUES (:name, :seen)"),
                {"name": UNIT_NAME, "seen": moment},
            )
        with engine.connect() as conn:
            name, seen = conn.execute(sa.text("SELECT name, seen FROM unit")).one()
            encoding = conn.execute(sa.text("SHOW server_encoding")).scalar_one()
    finally:
        engine.dispose()
    assert name == UNIT_NAME
    assert seen.tzinfo is not None
    assert seen == moment
    assert encoding == "UTF8"


def test_postgres_url_databases_are_distinct(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    dbname = postgres_url.rsplit("/", 1)[1]
    with postgres_server.connect(dbname) as conn:
        conn.execute("CREATE TABLE only_here (x int)")
    other_url = postgres_server.create_database("egovmon_other_probe")
    try:
        assert other_url != postgres_url
        with (
            postgres_server.connect("egovmon_other_probe") as conn,
            pytest.raises(psycopg.errors.UndefinedTable),
        ):
            conn.execute("SELECT * FROM only_here")
    finally:
        postgres_server.drop_database("egovmon_other_probe")


def test_database_url_works_with_sqlalchemy(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (name varchar(200))"))
            conn.execute(sa.text("INSERT INTO probe VALUES (:n)"), {"n": UNIT_NAME})
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT name FROM probe")).scalar_one() == UNIT_NAME
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- Prometheus


@pytest.fixture
def metrics_endpoint() -> Iterator[str]:
    """A tiny HTTP server on 127.0.0.1 serving PROBE_EXPOSITION at /metrics; yields host:port."""
    body = PROBE_EXPOSITION.encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_prometheus_scrapes_and_queries(
    prometheus_factory: Callable[..., PrometheusServer], metrics_endpoint: str
) -> None:
    prometheus = prometheus_factory([metrics_endpoint])
    targets = prometheus.wait_until_scraped(timeout=60)
    assert [t["labels"]["instance"] for t in targets] == [metrics_endpoint]

    result = prometheus.query("egov_fixture_probe")
    assert len(result) == 1
    assert result[0]["metric"]["unit"] == PROBE_LABEL
    assert float(result[0]["value"][1]) == 42

    by_label = prometheus.query(f'egov_fixture_probe{{unit="{PROBE_LABEL}"}}')
    assert [float(r["value"][1]) for r in by_label] == [42]


def test_prometheus_invalid_query_raises_with_its_message(
    prometheus_factory: Callable[..., PrometheusServer], metrics_endpoint: str
) -> None:
    prometheus = prometheus_factory([metrics_endpoint])
    with pytest.raises(PrometheusQueryError, match="parse error"):
        prometheus.query("sum(egov_fixture_probe")


# --------------------------------------------------------------------------- promtool


def test_promtool_accepts_clean_exposition() -> None:
    ok, output = promtool_check_metrics(
        "# HELP egov_fixture_checks_total Checks done.\n"
        "# TYPE egov_fixture_checks_total counter\n"
        f'egov_fixture_checks_total{{unit="{PROBE_LABEL}"}} 42\n' + PROBE_EXPOSITION
    )
    assert ok, output


def test_promtool_rejects_counter_without_total_suffix() -> None:
    ok, output = promtool_check_metrics(
        "# HELP egov_fixture_checks Checks done.\n"
        "# TYPE egov_fixture_checks counter\n"
        "egov_fixture_checks 1\n"
    )
    assert not ok
    assert '"_total" suffix' in output


def test_promtool_rejects_unparsable_exposition() -> None:
    ok, output = promtool_check_metrics('egov_fixture_probe{unit="x" 1\n')
    assert not ok
    assert "parsing error" in output


def test_promtool_check_rules(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(
        "groups:\n"
        "  - name: probe\n"
        "    rules:\n"
        "      - record: egov:fixture_probe:max\n"
        "        expr: max(egov_fixture_probe)\n",
        encoding="utf-8",
    )
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n  - name: probe\n    rules:\n      - record: x\n        expr: sum(\n",
        encoding="utf-8",
    )
    ok, output = promtool_check_rules(good)
    assert ok, output
    ok, output = promtool_check_rules(bad)
    assert not ok
    assert "bad.yml" in output
