"""The exposition: parseable, promtool-clean, Vietnamese intact, correct numbers."""

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.catalog import load_catalog
from monitor.exporter import Exposition, escape_label, render_kpi_families
from monitor.kpi import KpiValue
from monitor.metrics import ServiceMetrics
from monitor.simulators.province import ProvinceModel
from monitor.units import load_units
from tests.support.components import promtool_check_metrics
from tests.support.province import simulated_service
from tests.test_units import TREE

DEPT, NEW = "000.00.01.H99", "000.01.70.H99"


def exposition(tmp_path: Path) -> bytes:
    # A unit name with every character the text format must escape.
    tree_text = TREE.replace('"Sở Tư pháp"', '"Sở Tư pháp \\"mới\\" \\\\ A\\nB"')
    (tmp_path / "units.yaml").write_text(tree_text, encoding="utf-8")
    units = load_units(tmp_path / "units.yaml")
    values = [KpiValue("outgoing_docs_electronic_rate", DEPT, "month", 900, 1000, 1),
              KpiValue("outgoing_docs_electronic_rate", NEW, "month", 0, 0, 1),
              KpiValue("dossier_ontime_rate", NEW, "ytd", 99, 100, 1)]
    metrics = ServiceMetrics()
    metrics.source_up.labels("mot-cua", "one_stop").set(1)
    metrics.collection_errors.labels("qlvb", "timeout").inc()
    metrics.collection_duration.labels("qlvb").observe(0.3)
    out = Exposition(metrics)
    out.publish(render_kpi_families(values, load_catalog(), units))
    return out.render()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_values_and_labels(tmp_path: Path) -> None:
    parsed = samples(exposition(tmp_path).decode("utf-8"))
    key = frozenset({"kpi": "outgoing_docs_electronic_rate", "unit": DEPT, "level": "department",
                     "group": "so_nganh", "window": "month"}.items())
    assert parsed[("egov_kpi_value", key)] == 0.9
    assert parsed[("egov_kpi_numerator", key)] == 900
    assert parsed[("egov_kpi_denominator", key)] == 1000
    # No data (0/0) is absent from the value family, but its denominator says why.
    new_key = frozenset({"kpi": "outgoing_docs_electronic_rate", "unit": NEW, "level": "commune",
                         "group": "xa", "window": "month"}.items())
    assert ("egov_kpi_value", new_key) not in parsed
    assert parsed[("egov_kpi_denominator", new_key)] == 0
    names = {dict(labels).get("name") for (metric, labels) in parsed if metric == "egov_unit_info"}
    assert 'Sở Tư pháp "mới" \\ A\nB' in names
    kpi_names = {dict(labels)["name"] for (metric, labels) in parsed if metric == "egov_kpi_info"}
    assert "Tỷ lệ văn bản đi phát hành dạng điện tử" in kpi_names
    assert parsed[("egov_source_up", frozenset({"source": "mot-cua", "kind": "one_stop"}.items()))] == 1


def test_promtool_check_metrics_is_clean(tmp_path: Path) -> None:
    ok, output = promtool_check_metrics(exposition(tmp_path).decode("utf-8"))
    assert ok, output


def test_escape_label() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_a_scrape_never_recomputes_kpis(tmp_path: Path, province: ProvinceModel,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """/metrics serves what the last snapshot published: after one computation, scrapes
    neither compute KPIs nor render them again, and serve the published text whole."""
    from aiohttp.test_utils import TestClient, TestServer

    from monitor.http import build_app

    async def scenario() -> tuple[list[str], bytes, list[bytes]]:
        async with simulated_service(tmp_path, province) as (service, _, _):
            await service.runner.collect("qlvb")
            await service.refresh_kpis()
            published = service.exposition.published()
            calls: list[str] = []

            def computing(*args: object, **kwargs: object) -> None:
                calls.append("compute")
                raise AssertionError("a scrape computed KPIs")

            monkeypatch.setattr(service.kpis, "compute", computing)
            monkeypatch.setattr("monitor.service.render_kpi_families", lambda *a, **k: calls.append("render"))
            async with TestClient(TestServer(build_app(service, loopback=True))) as client:
                bodies = []
                for _ in range(3):
                    response = await client.get("/metrics")
                    assert response.status == 200
                    bodies.append(await response.read())
            return calls, published, bodies

    calls, published, bodies = asyncio.run(scenario())
    assert calls == []
    assert published.count(b"\negov_kpi_value{") > 100  # the snapshot has data to serve
    for body in bodies:
        assert body.endswith(published)  # the service's own families, then the snapshot as published
        assert body.index(b"egov_build_info") < body.index(b"egov_kpi_value")
