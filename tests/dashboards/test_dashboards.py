"""The generated Grafana dashboards: reproducible files, valid models, and every query
run against a real Prometheus scraping the simulated province."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.catalog import load_catalog
from monitor.dashboards import build_dashboards, write_dashboards
from monitor.dashboards.builder import FOLDERS, generated_files
from monitor.http import HttpServer
from monitor.simulators.province import ProvinceModel
from tests.support.components import PrometheusServer
from tests.support.province import simulated_service

REPO_DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"

# Exported families every dashboard set must show somewhere.
IMPORTANT_FAMILIES = {
    "egov_kpi_value", "egov_kpi_numerator", "egov_kpi_denominator", "egov_kpi_units_reporting",
    "egov_kpi_info", "egov_unit_info", "egov_kpi_computed_timestamp_seconds",
    "egov_target_actual", "egov_target_value", "egov_target_expected", "egov_target_gap",
    "egov_target_gap_to_target", "egov_target_status", "egov_target_deadline_timestamp_seconds",
    "egov_target_forecast_value", "egov_target_forecast_reached_timestamp_seconds", "egov_target_info",
    "egov_score_scaled", "egov_score_rank", "egov_score_rank_size",
    "egov_source_up", "egov_source_last_success_timestamp_seconds", "egov_collection_duration_seconds",
    "egov_observations_rejected_total", "egov_outbox_messages", "egov_outbox_oldest_pending_age_seconds",
    "egov_email_deliveries_total", "egov_alerts",
}

# Values for Grafana's built-in variables.
BUILTINS = {"__range": "1h", "__rate_interval": "1m", "__interval": "30s"}
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")
METRIC_NAME = re.compile(r"\begov_[a-z_]+")


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target


def variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v["name"], v["query"]["query"]) for v in dashboard["templating"]["list"] if v["type"] == "query"]


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {expr!r}")
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return build_dashboards(load_catalog())


# --------------------------------------------------------------------------- files


def test_files_in_repository_are_reproducible(tmp_path: Path) -> None:
    written = write_dashboards(load_catalog(), tmp_path)
    assert written
    for path in written:
        relative = path.relative_to(tmp_path)
        committed = REPO_DASHBOARDS / relative
        assert committed.exists(), f"{relative} missing: run `egovmon dashboards build`"
        assert committed.read_bytes() == path.read_bytes(), f"{relative} is stale: run `egovmon dashboards build`"
        assert path.read_bytes().endswith(b"\n")
    # Nothing stale left over beside them.
    generated = {p.relative_to(REPO_DASHBOARDS).as_posix() for p in REPO_DASHBOARDS.rglob("*")
                 if p.is_file() and p.name != "README.md"}
    assert generated == set(generated_files(load_catalog()))
    # Twice in a row gives the same bytes.
    assert generated_files(load_catalog()) == generated_files(load_catalog())


def test_provisioning_points_at_each_folder() -> None:
    files = generated_files(load_catalog())
    providers = files["provisioning/dashboards/egovmon.yaml"]
    for folder in FOLDERS:
        assert f"/{folder}\n" in providers
    datasource = files["provisioning/datasources/egovmon.yaml"]
    assert "uid: egovmon-prometheus" in datasource and "url: http://127.0.0.1:9090" in datasource


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("language", ["vi", "en"])
def test_models_are_valid(language: str) -> None:
    built = build_dashboards(load_catalog(), language)
    assert set(built) == {"egovmon-overview", "egovmon-unit", "egovmon-target", "egovmon-health"}
    assert {uid for uids in FOLDERS.values() for uid in uids} == set(built)
    for uid, dashboard in built.items():
        assert dashboard["uid"] == uid and dashboard["schemaVersion"] == 39 and dashboard["title"]
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{uid}: duplicate panel ids"
        variables = dashboard["templating"]["list"]
        assert variables[0]["name"] == "datasource" and variables[0]["type"] == "datasource"
        assert variables[0]["query"] == "prometheus"
        for panel in panels(dashboard):
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
            assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], f"{uid}: panel {panel['title']!r} has no query"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids))
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert target["expr"].strip()
        for variable in variables[1:]:
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    titles = {d["title"] for d in built.values()}
    assert ("Tổng quan tỉnh" in titles) == (language == "vi")


def test_unit_detail_has_a_row_per_kpi(dashboards: dict[str, dict[str, Any]]) -> None:
    catalog = load_catalog()
    exprs = [t["expr"] for _, t in targets(dashboards["egovmon-unit"])]
    for kpi_id in catalog.kpis:
        assert any(f'kpi="{kpi_id}"' in expr for expr in exprs), kpi_id


# --------------------------------------------------------------------------- against Prometheus


async def test_every_query_returns_data_from_a_real_prometheus(
        tmp_path: Path, province: ProvinceModel, database: str,
        prometheus_factory: Callable[..., PrometheusServer], dashboards: dict[str, dict[str, Any]]) -> None:
    async with simulated_service(tmp_path, province, database_url=database) as (service, _, _):
        await service.cycle()  # collects (source metrics), computes KPIs, targets and scores
        exposition = service.exposition.render()
        text = exposition.decode() if isinstance(exposition, bytes) else exposition
        http = HttpServer(service, "127.0.0.1", 0)
        await http.start()
        try:
            prometheus = prometheus_factory([f"127.0.0.1:{http.port}"], scrape_interval="5s")
            await asyncio.to_thread(prometheus.wait_until_scraped, 60)
            assert await asyncio.to_thread(prometheus.wait_for_data, "egov_target_status", 30), \
                f"nothing scraped; log: {prometheus.log_tail()}"
            problems = await asyncio.to_thread(_run_every_query, prometheus, dashboards)
        finally:
            await http.stop()
    assert not problems, "\n".join(problems)

    # Every metric a dashboard names exists in the exposition; every important one is shown.
    families = {f.name for f in text_string_to_metric_families(text)}
    exposed = families | {f"{name}_total" for name in families} | {
        f"{name}{suffix}" for name in families for suffix in ("_bucket", "_sum", "_count")}
    used: set[str] = set()
    for dashboard in dashboards.values():
        for _, target in targets(dashboard):
            used |= metric_names(target["expr"])
        for _, query in variable_queries(dashboard):
            used |= metric_names(query)
    assert used - exposed == set(), f"unknown metrics on dashboards: {sorted(used - exposed)}"
    shown = used | {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert IMPORTANT_FAMILIES - shown == set(), f"not on any dashboard: {sorted(IMPORTANT_FAMILIES - shown)}"
    assert exposed >= IMPORTANT_FAMILIES


def _variable_values(prometheus: PrometheusServer, query: str) -> list[str]:
    match = LABEL_VALUES.match(query)
    assert match, f"unsupported variable query {query!r}"
    params = {"match[]": match.group("selector")} if match.group("selector") else {}
    return sorted(prometheus.api(f"label/{match.group('label')}/values", params))


def _run_every_query(prometheus: PrometheusServer, dashboards: dict[str, dict[str, Any]]) -> list[str]:
    # Preferred choices where there is one (the province has every KPI, a rank and targets);
    # otherwise the first value the variable query returns.
    preferred = {"level": "province"}
    problems: list[str] = []
    for uid, dashboard in dashboards.items():
        values = dict(BUILTINS)
        for name, query in variable_queries(dashboard):
            options = _variable_values(prometheus, substitute(query, values))
            if not options:
                problems.append(f"{uid}: variable {name} ({query}) has no values")
                break
            values[name] = preferred[name] if preferred.get(name) in options else options[0]
        else:
            for title, target in targets(dashboard):
                expr = substitute(target["expr"], values)
                try:
                    result = prometheus.query(expr)
                except Exception as exc:
                    problems.append(f"{uid} / {title}: {expr}: {exc}")
                    continue
                if not result:
                    problems.append(f"{uid} / {title}: no data for {expr} (variables {values})")
    return problems


def test_cli_builds_both_languages(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from monitor.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path / "vi")])
    assert result.exit_code == 0, result.output
    for relative, text in generated_files(load_catalog()).items():
        assert (tmp_path / "vi" / relative).read_text(encoding="utf-8") == text
    result = runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path / "en"), "--lang", "en"])
    assert result.exit_code == 0, result.output
    overview = (tmp_path / "en" / "lanh-dao" / "egovmon-overview.json").read_text(encoding="utf-8")
    assert '"title": "Province overview"' in overview
    result = runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path / "x"), "--lang", "fr"])
    assert result.exit_code == 2 and not (tmp_path / "x").exists()
