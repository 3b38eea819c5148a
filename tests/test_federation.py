"""National roll-up (issue 9 item 4): two simulated provinces, each scraped by its own
real Prometheus started from deploy/federation/provincial-prometheus.yml, federated by a
real national Prometheus started from deploy/federation/national-prometheus.yml. Only
ports, paths and intervals are substituted into the shipped files.

The national ratio must equal Σ numerators / Σ denominators of the two provinces, computed
here from the provinces' own /metrics text, and differ from the average of their ratios."""

from __future__ import annotations

import asyncio
import hashlib
import math
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from monitor.http import build_app
from monitor.simulators.province import ProvinceModel
from tests.support.components import (
    PrometheusServer,
    promtool_binary,
    promtool_check_rules,
    promtool_test_rules,
    require_prometheus,
    require_promtool,
)
from tests.support.province import SOURCE_IDS, simulated_service

pytestmark = pytest.mark.prometheus

FEDERATION = Path(__file__).resolve().parents[1] / "deploy" / "federation"
PROVINCIAL = FEDERATION / "provincial-prometheus.yml"
NATIONAL = FEDERATION / "national-prometheus.yml"
# Two provinces of different seeds: different unit trees, sizes and figures.
PROVINCES = {"tinh-a": 2025, "tinh-b": 7}
TOKEN = "federation-test-token"
Key = tuple[str, str]  # (kpi, window)


# --------------------------------------------------------------------------- the shipped files


def test_rules_pass_promtool_check_and_unit_tests() -> None:
    for name in ("provincial-rules.yml", "national-rules.yml"):
        ok, output = promtool_check_rules(FEDERATION / name)
        assert ok, output
    for name in ("provincial-rules.test.yml", "national-rules.test.yml"):
        ok, output = promtool_test_rules(FEDERATION / name)
        assert ok and "SUCCESS" in output, output


def test_configs_pass_promtool_check_config(tmp_path: Path) -> None:
    require_promtool()
    promtool = promtool_binary()
    assert promtool is not None
    # promtool checks that credentials_file exists: the copy names a tmp token file.
    token = tmp_path / "egovmon.token"
    token.write_text(TOKEN, encoding="utf-8")
    for rules in FEDERATION.glob("*-rules.yml"):
        shutil.copy(rules, tmp_path / rules.name)
    for source in (PROVINCIAL, NATIONAL):
        text = source.read_text(encoding="utf-8").replace("/etc/prometheus/egovmon.token", str(token))
        (tmp_path / source.name).write_text(text, encoding="utf-8")
        result = subprocess.run([promtool, "check", "config", str(tmp_path / source.name)],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_national_federates_only_the_headline_series() -> None:
    (job,) = yaml.safe_load(NATIONAL.read_text(encoding="utf-8"))["scrape_configs"]
    assert job["metrics_path"] == "/federate" and job["honor_labels"] is True
    matchers = job["params"]["match[]"]
    # Named egov families only, never a catch-all; the test against real servers below
    # checks that no unit-level series reaches the national server.
    assert matchers and all("egov" in m and ".*" not in m for m in matchers), matchers


# --------------------------------------------------------------------------- against real servers


class ShippedPrometheus(PrometheusServer):
    """A PrometheusServer whose configuration is a (templated) shipped file."""

    def __init__(self, targets: list[str], config: dict[str, Any]) -> None:
        super().__init__(targets)
        self._config = config

    def config(self) -> dict[str, Any]:
        return self._config


def provincial_config(province: str, target: str, token_file: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PROVINCIAL.read_text(encoding="utf-8"))
    # A few MB per scrape: a realistic interval; rules every second.
    data["global"].update(scrape_interval="5s", scrape_timeout="5s", evaluation_interval="1s")
    assert set(data["global"]["external_labels"]) == {"province"}
    data["global"]["external_labels"]["province"] = province
    data["rule_files"] = [str(FEDERATION / name) for name in data["rule_files"]]
    (job,) = data["scrape_configs"]
    assert job["authorization"]["type"] == "Bearer"
    job["authorization"]["credentials_file"] = str(token_file)
    job["static_configs"] = [{"targets": [target]}]
    return data


def national_config(targets: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(NATIONAL.read_text(encoding="utf-8"))
    data["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    data["rule_files"] = [str(FEDERATION / name) for name in data["rule_files"]]
    (job,) = data["scrape_configs"]
    job["static_configs"] = [{"targets": targets}]
    return data


@contextmanager
def started(servers: list[PrometheusServer]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in reversed(servers):
            server.stop()


@asynccontextmanager
async def province_listener(directory: Path, seed: int) -> AsyncIterator[tuple[int, str]]:
    """A simulated province's service, collected once, serving /metrics as if off loopback
    (a bearer token is required) on 127.0.0.1; yields (port, the /metrics text)."""
    token_hash = "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()
    # History from January is all the month and ytd windows need ("now" is 2026-11-22).
    short: dict[str, Any] = {source_id: {"backfill_from": "2026-01-01"} for source_id in SOURCE_IDS.values()}
    extra = {"alerts": {"enabled": False}, "http": {"listen": "127.0.0.1:0", "token_hashes": [token_hash]}}
    async with simulated_service(directory, ProvinceModel(seed=seed), extra=extra, **short) as (service, _, _):
        summaries = await service.cycle()
        assert all(s.ok for s in summaries), summaries
        runner = web.AppRunner(build_app(service, loopback=False), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = int(runner.addresses[0][1])
            url = f"http://127.0.0.1:{port}/metrics"
            async with aiohttp.ClientSession() as session:
                async with session.get(url) as response:
                    # The token is required, so targets "up" prove the shipped authorization works.
                    assert response.status in (401, 403), response.status
                async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                    assert response.status == 200
                    text = await response.text()
            yield port, text
        finally:
            await runner.cleanup()


FAMILIES = ("egov_kpi_numerator", "egov_kpi_denominator", "egov_kpi_units_reporting")


def headline(text: str) -> dict[Key, tuple[float, float, float]]:
    """(numerator, denominator, units reporting) of the province-level unit per (kpi,
    window), read from the province's own /metrics text."""
    out: dict[Key, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in FAMILIES:
            continue
        column = FAMILIES.index(family.name)
        for sample in family.samples:
            if sample.labels["level"] == "province":
                row = out.setdefault((sample.labels["kpi"], sample.labels["window"]), [math.nan] * 3)
                assert math.isnan(row[column]), f"two province-level units in one exposition: {sample}"
                row[column] = sample.value
    return {key: (num, den, units) for key, (num, den, units) in out.items()}


def by_key(result: list[dict[str, Any]]) -> dict[Key, float]:
    return {(r["metric"]["kpi"], r["metric"]["window"]): float(r["value"][1]) for r in result}


def wait_for_provinces(national: PrometheusServer, expected: dict[Key, int], timeout: float = 60.0) -> float:
    """An evaluation time at which every national figure includes every province that
    reports it (``expected``: provinces with a non-zero denominator per (kpi, window))."""
    deadline = time.monotonic() + timeout
    seen: dict[Key, float] = {}
    while time.monotonic() < deadline:
        now = time.time()
        seen = by_key(national.api("query", {"query": "national:egov_kpi_provinces_reporting:count",
                                             "time": f"{now:.3f}"})["result"])
        if seen == {k: float(v) for k, v in expected.items()}:
            return now
        time.sleep(0.5)
    raise AssertionError(f"national view never held every province: saw {seen}, expected {expected}; "
                         f"log: {national.log_tail()}")


async def test_national_ratio_is_sum_of_numerators_over_sum_of_denominators(tmp_path: Path) -> None:
    require_prometheus()
    token_file = tmp_path / "egovmon.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    for name in PROVINCES:
        (tmp_path / name).mkdir()
    servers: list[PrometheusServer] = []
    async with AsyncExitStack() as stack:
        listeners = {name: await stack.enter_async_context(province_listener(tmp_path / name, seed))
                     for name, seed in PROVINCES.items()}
        with started(servers):
            for name, (port, _) in listeners.items():
                target = f"127.0.0.1:{port}"
                servers.append(ShippedPrometheus([target], provincial_config(name, target, token_file)))
                await asyncio.to_thread(servers[-1].start)
            provincial = servers[:]
            national = ShippedPrometheus([f"127.0.0.1:{p.port}" for p in provincial],
                                         national_config([f"127.0.0.1:{p.port}" for p in provincial]))
            servers.append(national)
            await asyncio.to_thread(national.start)
            await asyncio.to_thread(check_national, national, provincial,
                                    {name: text for name, (_, text) in listeners.items()})


def check_national(national: PrometheusServer, provincial: list[PrometheusServer], texts: dict[str, str]) -> None:
    for server in provincial:
        server.wait_until_scraped(60)
    national.wait_until_scraped(60)
    figures = {name: headline(text) for name, text in texts.items()}
    keys = set().union(*figures.values())
    assert len(keys) >= 20 and all(set(f) == keys for f in figures.values()), "both provinces export every KPI"
    sums = {k: tuple(sum(f[k][i] for f in figures.values()) for i in range(3)) for k in keys}
    reporting = {k: sum(1 for f in figures.values() if f[k][1] > 0) for k in keys}
    at = wait_for_provinces(national, {k: n for k, n in reporting.items() if n})

    def query(expr: str) -> list[dict[str, Any]]:
        return list(national.api("query", {"query": expr, "time": f"{at:.3f}"})["result"])

    # Both provinces are visible, told apart by the label their own servers attached.
    per_province = query("count by (province) (province:egov_kpi_denominator:sum)")
    assert {r["metric"]["province"]: int(r["value"][1]) for r in per_province} == {p: len(keys) for p in PROVINCES}
    assert {r["metric"]["province"] for r in query("egov_kpi_info")} == set(PROVINCES)
    assert float(query("national:egov_provinces_up:count")[0]["value"][1]) == len(PROVINCES)
    # Only the federated families arrived: no unit-level series crossed to the nation.
    assert query('count({__name__=~"egov_kpi_(value|numerator|denominator|units_reporting)"})') == []

    numerators = by_key(query("national:egov_kpi_numerator:sum"))
    denominators = by_key(query("national:egov_kpi_denominator:sum"))
    units = by_key(query("national:egov_kpi_units_reporting:sum"))
    ratios = by_key(query("national:egov_kpi_value:ratio"))
    assert numerators == {k: s[0] for k, s in sums.items()}  # sums of integer counts: exact
    assert denominators == {k: s[1] for k, s in sums.items()}
    assert units == {k: s[2] for k, s in sums.items()}
    assert set(ratios) == {k for k, s in sums.items() if s[1] > 0}
    averaged = by_key(query("avg by (kpi, window) (province:egov_kpi_value:ratio)"))
    gaps = {}
    for key, value in ratios.items():
        num, den, _ = sums[key]
        assert math.isclose(value, num / den, rel_tol=1e-12), (key, value, num / den)
        provinces = [n / d for n, d, _ in (f[key] for f in figures.values()) if d > 0]
        assert math.isclose(averaged[key], sum(provinces) / len(provinces), rel_tol=1e-12), key
        gaps[key] = abs(averaged[key] - value)
    # Averaging the provinces' ratios gives other numbers (the provinces differ in size):
    # the comparison above would catch a national rule written as avg(egov_kpi_value).
    assert max(gaps.values()) > 1e-6, gaps
