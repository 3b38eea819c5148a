"""Reloading the configuration (SIGHUP, ``POST /api/v1/reload``): a broken file is refused
with every problem and a metric, and the service runs on with what it had; a valid one is
applied, sources rescheduled. The SIGHUP path through a real process is in test_run.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from monitor.scheduler import ServiceScheduler
from monitor.simulators.province import ProvinceModel
from monitor.timeutil import SystemClock
from tests.api.conftest import AUTH, live_api
from tests.support.province import simulated_service


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def reload_ok(service: Any) -> float | None:
    return service.metrics.registry.get_sample_value("egov_config_last_reload_success")  # type: ignore[no-any-return]


async def test_a_broken_configuration_is_refused_and_the_running_one_kept(
        tmp_path: Path, province: ProvinceModel) -> None:
    async with simulated_service(tmp_path, province) as (service, _, _):
        path = service.config_path
        before_config, before_rules, before_runner = service.config, service.rules, service.runner

        def break_it(data: dict[str, Any]) -> None:
            data["sources"][0]["kind"] = "document_managment"
            data["sources"][1]["schedule"] = {"interval": "soon"}

        edit(path, break_it)
        outcome = await service.reload()
        assert not outcome.applied and outcome.error is not None
        fields = {p.field: p for p in outcome.error.problems}
        assert "document_managment" in fields["sources[0].kind"].message
        assert "did you mean" in fields["sources[0].kind"].message or "document_management" in str(outcome.error)
        assert fields["sources[1].schedule.interval"].line is not None
        assert reload_ok(service) == 0
        assert service.config is before_config and service.rules is before_rules and service.runner is before_runner

        # a rule file with a mistake is refused the same way
        (tmp_path / "bad-rules.yaml").write_text("rules:\n  - id: x\n    kpi: no_such_kpi\n", encoding="utf-8")
        path.write_text(config_text_with_rules(path, ["bad-rules.yaml"]), encoding="utf-8")
        outcome = await service.reload()
        assert not outcome.applied and outcome.error is not None
        assert "bad-rules.yaml" in str(outcome.error)
        assert service.rules is before_rules

        summary = await service.runner.collect("qlvb")  # still working on the old configuration
        assert summary.ok and summary.observations > 0


def config_text_with_rules(path: Path, files: list[str]) -> str:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["sources"][0]["kind"] = "document_management"
    data["sources"][1]["schedule"] = {"interval": "1h"}
    data["rules"] = {"files": files}
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


async def test_a_valid_configuration_is_applied_and_sources_rescheduled(
        tmp_path: Path, province: ProvinceModel) -> None:
    # A real clock: APScheduler fires on wall time.
    async with simulated_service(tmp_path, province, clock=SystemClock()) as (service, _, _):
        scheduler = ServiceScheduler(service)
        scheduler.start(run_now=False)
        try:
            jobs = {job.id for job in scheduler.scheduler.get_jobs()}
            assert {"collect:qlvb", "collect:thu-cong-vu", "collect:mot-cua"} <= jobs
            rules_before = len(service.rules)

            def change(data: dict[str, Any]) -> None:
                mail = next(s for s in data["sources"] if s["id"] == "thu-cong-vu")
                data["sources"] = [s for s in data["sources"] if s["id"] != "thu-cong-vu"]
                data["sources"].append({**mail, "id": "thu-cong-vu-2"})
                data["rules"] = {"shipped": []}
                data["database"] = {"url": "sqlite:///elsewhere.db"}
                data["alerts"] = {"operators": [{"name": "Phòng CNTT", "email": "cntt@sonha.gov.vn"}]}

            edit(service.config_path, change)
            outcome = await service.reload()
            assert outcome.applied, outcome.error
            assert outcome.sources == 3 and outcome.rules == len(service.rules) == 0 < rules_before
            assert outcome.restart_needed == ("database.url",)
            assert reload_ok(service) == 1
            assert [s.id for s in service.runner.config.sources] == ["qlvb", "mot-cua", "thu-cong-vu-2"]
            assert service.alerting.config.alerts.operators[0].email == "cntt@sonha.gov.vn"
            assert str(service.engine.url).endswith("egovmon.db")  # the database stays until a restart

            jobs_after = {job.id: job for job in scheduler.scheduler.get_jobs()}
            assert "collect:thu-cong-vu" not in jobs_after
            assert all(job.next_run_time is not None for job in jobs_after.values())  # none left paused
            qlvb_next = jobs_after["collect:qlvb"].next_run_time
            assert qlvb_next > datetime.now(UTC) + timedelta(minutes=50)  # the others keep their hourly rhythm
            for _ in range(300):  # the new source is collected at once (bounded: 60 s)
                if any(h.source == "thu-cong-vu-2" for h in service.store.health()):
                    break
                await asyncio.sleep(0.2)
            assert any(h.source == "thu-cong-vu-2" and h.up for h in service.store.health())
        finally:
            await scheduler.stop()


async def test_reload_through_the_api_needs_a_token_and_reports_problems(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    async with live_api(tmp_path, province, database) as live:
        url = f"{live.base}/api/v1/reload"
        async with live.session.post(url) as response:
            assert response.status == 401
        path = live.service.config_path
        good = path.read_text(encoding="utf-8")
        path.write_text(good.replace("kind: one_stop", "kind: one-stop"), encoding="utf-8")
        async with live.session.post(url, headers=AUTH) as response:
            assert response.status == 422
            body = await response.json()
        assert body["error"].startswith("the new configuration was refused")
        problem = next(p for p in body["problems"] if p["field"].endswith(".kind"))
        assert problem["file"].endswith("monitor.yaml") and problem["line"] > 0 and "one-stop" in problem["message"]
        path.write_text(good, encoding="utf-8")
        async with live.session.post(url, headers=AUTH) as response:
            assert response.status == 200
            body = await response.json()
        assert body == {"applied": True, "sources": 3, "rules": len(live.service.rules), "restart_needed": []}
