"""The HTTP listener, scraped by a real Prometheus; promtool checks the exposition."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from monitor.http import HttpServer
from monitor.simulators.province import ProvinceModel
from monitor.storage import Store, create_engine_for
from tests.support.components import PrometheusServer, free_port, promtool_check_metrics
from tests.support.province import simulated_service

PROVINCE = "000.00.00.H99"


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_readiness_follows_the_first_snapshot(tmp_path: Path, province: ProvinceModel) -> None:
    async with simulated_service(tmp_path, province) as (service, _, _):
        http = HttpServer(service, "127.0.0.1", 0)
        await http.start()
        base = f"http://127.0.0.1:{http.port}"
        try:
            async with aiohttp.ClientSession() as session:
                assert (await get(session, base + "/healthz"))[0] == 200
                status, _, body = await get(session, base + "/readyz")
                assert status == 503 and "no KPI snapshot" in body
                await service.refresh_kpis()
                assert (await get(session, base + "/readyz"))[0] == 200
                status, _, body = await get(session, base + "/nowhere")
                assert status == 404 and body.startswith("{")  # JSON error, no stack trace
                # The one seam: the store now points at a database nobody serves.
                service.store = Store(create_engine_for(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x"))
                status, _, body = await get(session, base + "/readyz")
                assert status == 503 and "database not reachable" in body
        finally:
            await http.stop()


async def test_prometheus_scrapes_kpis_for_every_unit(tmp_path: Path, province: ProvinceModel,
                                                      prometheus_factory: Callable[..., PrometheusServer]) -> None:
    async with simulated_service(tmp_path, province) as (service, _, _):
        await service.cycle()
        http = HttpServer(service, "127.0.0.1", 0)
        await http.start()
        try:
            async with aiohttp.ClientSession() as session:
                status, content_type, text = await get(session, f"http://127.0.0.1:{http.port}/metrics")
            assert status == 200 and content_type.startswith("text/plain")
            ok, output = await asyncio.to_thread(promtool_check_metrics, text)
            assert ok, output
            exported_units = {s.labels["unit"] for f in text_string_to_metric_families(text)
                              if f.name == "egov_kpi_value" for s in f.samples}
            assert len(exported_units) >= 200

            # A few MB per scrape: give it a realistic interval (the timeout equals it).
            prometheus = prometheus_factory([f"127.0.0.1:{http.port}"], scrape_interval="5s")
            targets = await asyncio.to_thread(prometheus.wait_until_scraped, 60)
            assert all(t["health"] == "up" for t in targets)
            result = await asyncio.to_thread(prometheus.wait_for_data, "count(count by (unit) (egov_kpi_value))")
            if not result:  # say what Prometheus saw
                scraped = await asyncio.to_thread(prometheus.query, "scrape_samples_scraped")
                raise AssertionError(f"no egov_kpi_value in Prometheus; targets={targets}; "
                                     f"scrape_samples_scraped={scraped}; log: {prometheus.log_tail()}")
            assert int(float(result[0]["value"][1])) == len(exported_units)

            wanted = {"kpi": "online_dossier_rate", "window": "ytd", "unit": PROVINCE}
            (expected,) = [s.value for f in text_string_to_metric_families(text) if f.name == "egov_kpi_value"
                           for s in f.samples if wanted.items() <= s.labels.items()]
            query = f'egov_kpi_value{{kpi="online_dossier_rate",window="ytd",unit="{PROVINCE}"}}'
            (sample,) = await asyncio.to_thread(prometheus.query, query)
            assert float(sample["value"][1]) == expected
            # A correct roll-up in PromQL: Σ numerators / Σ denominators of the top-level units.
            top_level = f'kpi="online_dossier_rate",window="ytd",unit!="{PROVINCE}",level!="agency"'
            rolled = await asyncio.to_thread(prometheus.query, (
                f"sum(egov_kpi_numerator{{{top_level}}}) / sum(egov_kpi_denominator{{{top_level}}})"))
            assert abs(float(rolled[0]["value"][1]) - expected) < 1e-9
            # Vietnamese label values survive the trip through Prometheus.
            names = await asyncio.to_thread(prometheus.query, f'egov_unit_info{{unit="{PROVINCE}"}}')
            assert names[0]["metric"]["name"] == province.unit_tree().get(PROVINCE).name  # type: ignore[union-attr]
        finally:
            await http.stop()


def metric_names(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


def test_health_families_are_present_before_any_kpi_computation(tmp_path: Path, province: ProvinceModel) -> None:
    async def scenario() -> Any:
        async with simulated_service(tmp_path, province) as (service, _, _):
            await service.runner.collect("thu-cong-vu")
            return service.exposition.render().decode()

    names = metric_names(asyncio.run(scenario()))
    assert {"egov_source_up", "egov_source_last_success_timestamp_seconds", "egov_collection_duration_seconds",
            "egov_observations_stored", "egov_build_info"} <= names
