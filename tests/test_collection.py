"""The collection runner against the simulators over real HTTP: watermarks, backfill,
dry runs, and faults that must not stop the other sources or lose stored data."""

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import Fault
from monitor.timeutil import FrozenClock, Period, iter_periods, local_midnight, zone
from monitor.windows import Window
from tests.support.province import BACKFILL_FROM, NOW, simulated_service

VN = zone("Asia/Ho_Chi_Minh")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_watermark_resumes_at_the_first_unsettled_period(tmp_path: Path, province: ProvinceModel) -> None:
    clock = FrozenClock(NOW)

    async def scenario() -> dict[str, Any]:
        async with simulated_service(tmp_path, province, clock=clock) as (service, _, config):
            first = await service.runner.collect("qlvb")
            watermark = service.store.watermark("qlvb")
            clock.advance(timedelta(days=20))  # 12 December: November has settled (7 days)
            second = await service.runner.collect("qlvb")
            return {"first": first, "second": second, "watermark": watermark,
                    "after": service.store.watermark("qlvb"), "settle": config.source("qlvb").settle}

    out = run(scenario())
    months = list(iter_periods(local_midnight(BACKFILL_FROM, VN), NOW, "month", VN))
    assert [months[0].label(VN), months[-1].label(VN)] == ["2025-01", "2026-11"]
    assert out["first"].ok and out["first"].periods == len(months)
    # On 22 Nov, October ended 22 days ago (settled) and November is open.
    assert out["watermark"] == Period.of_month(2026, 11, VN).start
    assert out["second"].periods == 2  # November again (late corrections) and December so far
    assert out["after"] == Period.of_month(2026, 12, VN).start


def test_unreachable_and_malformed_sources_do_not_stop_the_others(tmp_path: Path,
                                                                  province: ProvinceModel) -> None:
    async def scenario() -> dict[str, Any]:
        async with simulated_service(tmp_path, province) as (service, simulators, _):
            await service.cycle()
            stored = service.store.count_observations()
            simulators.set_fault("document_management", Fault("http_503"))
            simulators.set_fault("one_stop", Fault("malformed"))
            summaries = {s.source: s for s in await service.runner.collect_all(
                backfill=(date(2026, 1, 1), date(2026, 11, 22)))}
            text = service.exposition.metrics.registry
            return {"summaries": summaries, "before": stored, "after": service.store.count_observations(),
                    "health": {h.source: h for h in service.store.health()}, "registry": text}

    out = run(scenario())
    qlvb, motcua, mail = (out["summaries"][k] for k in ("qlvb", "mot-cua", "thu-cong-vu"))
    assert not qlvb.ok and qlvb.reason == "unavailable" and "503" in (qlvb.error or "")
    assert not motcua.ok and motcua.reason == "malformed"
    assert mail.ok and mail.observations > 0
    assert out["after"] == out["before"]  # nothing stored was lost or half-replaced
    assert out["health"]["qlvb"].consecutive_failures == 1 and not out["health"]["qlvb"].up
    assert out["health"]["qlvb"].last_success_at is not None  # the earlier success stays visible
    registry = out["registry"]
    assert registry.get_sample_value("egov_source_up", {"source": "qlvb", "kind": "document_management"}) == 0
    assert registry.get_sample_value("egov_collection_errors_total",
                                     {"source": "mot-cua", "reason": "malformed"}) == 1
    assert registry.get_sample_value("egov_collection_retries_total",
                                     {"source": "qlvb", "reason": "unavailable"}) == 1


def test_bad_records_are_rejected_with_reasons_the_rest_stored(tmp_path: Path, province: ProvinceModel) -> None:
    async def scenario() -> dict[str, Any]:
        async with simulated_service(tmp_path, province) as (service, simulators, _):
            simulators.set_fault("one_stop", Fault("part_exceeds_whole"))
            summary = await service.runner.collect("mot-cua")
            return {"summary": summary, "rejections": service.store.recent_rejections("mot-cua", limit=100_000),
                    "registry": service.metrics.registry}

    out = run(scenario())
    summary = out["summary"]
    assert summary.ok and summary.observations > 0 and summary.rejections > 0
    assert set(summary.rejected_by_reason) == {"inconsistent"}
    assert len(out["rejections"]) == summary.rejections
    assert all(r["detail"] and r["unit"] for r in out["rejections"])
    assert out["registry"].get_sample_value("egov_observations_rejected_total",
                                            {"source": "mot-cua", "reason": "inconsistent"}) == summary.rejections


def test_dry_run_reads_everything_and_stores_nothing(tmp_path: Path, province: ProvinceModel) -> None:
    async def scenario() -> tuple[Any, int, Any]:
        async with simulated_service(tmp_path, province) as (service, _, _):
            summary = await service.runner.collect("qlvb", dry_run=True)
            return summary, service.store.count_observations(), service.store.watermark("qlvb")

    summary, count, watermark = run(scenario())
    assert summary.ok and summary.observations > 1000
    assert count == 0 and watermark is None
    assert len(summary.preview) == summary.observations


def test_dry_run_preview_is_what_a_real_run_stores(tmp_path: Path, province: ProvinceModel) -> None:
    """The preview and its printed per-measure sums are exactly what the real run then stores."""
    from monitor.dry_run import dry_run_lines

    async def scenario() -> tuple[Any, Any, list[Any]]:
        async with simulated_service(tmp_path, province) as (service, simulators, _):
            simulators.set_fault("one_stop", Fault("part_exceeds_whole"))
            dry = await service.runner.collect("mot-cua", dry_run=True)
            real = await service.runner.collect("mot-cua")
            measures = sorted({o.measure for o in dry.preview})
            return dry, real, service.store.load_observations(measures, datetime.min.replace(tzinfo=UTC),
                                                              datetime.max.replace(tzinfo=UTC))

    dry, real, stored = run(scenario())
    assert dry.observations == real.observations and dry.rejections == real.rejections > 0
    assert {(o.measure, o.unit, o.period.start, o.value) for o in dry.preview} == {
        (o.measure, o.unit, o.period_start.replace(tzinfo=UTC), o.value) for o in stored}
    lines = list(dry_run_lines(dry, VN, show=5))
    total = sum(o.value for o in stored if o.measure == "dossiers_received_total")
    assert any(line.split()[0] == "dossiers_received_total" and line.endswith(f"sum {total:g}") for line in lines)
    assert sum(1 for line in lines if line.startswith("    ") and "←" in line) == 10  # 5 observations, 5 rejections
    assert any(f"5 of {dry.rejections}" in line for line in lines)


def test_backfill_rereads_a_span_without_moving_the_watermark(tmp_path: Path, province: ProvinceModel) -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        async with simulated_service(tmp_path, province) as (service, _, _):
            await service.runner.collect("qlvb")
            before = service.store.watermark("qlvb")
            summary = await service.runner.collect("qlvb", backfill=(date(2025, 3, 1), date(2025, 5, 31)))
            return summary, before, service.store.watermark("qlvb")

    summary, before, after = run(scenario())
    assert summary.ok and summary.periods == 3  # March, April, May
    assert after == before


def test_progress_is_reported_per_chunk(tmp_path: Path, province: ProvinceModel) -> None:
    seen: list[tuple[str, int, int]] = []

    async def scenario() -> None:
        async with simulated_service(tmp_path, province) as (service, _, _):
            await service.runner.collect("mot-cua", progress=lambda *args: seen.append(args))

    run(scenario())
    total = seen[-1][2]
    assert [done for _, done, _ in seen] == [*range(6, total, 6), total]


@pytest.mark.parametrize("fault", ["http_401"])
def test_permanent_errors_are_not_retried(tmp_path: Path, province: ProvinceModel, fault: str) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with simulated_service(tmp_path, province) as (service, simulators, _):
            simulators.set_fault("email_directory", Fault(fault))  # type: ignore[arg-type]
            summary = await service.runner.collect("thu-cong-vu")
            return summary, service.metrics.registry

    summary, registry = run(scenario())
    assert not summary.ok and summary.reason == "auth"
    assert registry.get_sample_value("egov_collection_retries_total",
                                     {"source": "thu-cong-vu", "reason": "auth"}) is None


def test_registry_writes_staff_for_units_valid_today(tmp_path: Path, province: ProvinceModel) -> None:
    async def scenario() -> int:
        async with simulated_service(tmp_path, province) as (service, _, _):
            return service.runner.write_registry()

    expected = sum(1 for u in province.unit_tree().valid_on(date(2026, 11, 22)) if u.staff_count > 0)
    assert run(scenario()) == expected


def test_postgresql_computes_what_sqlite_computes(tmp_path: Path, province: ProvinceModel,
                                                  postgres_url: str) -> None:
    """The same collection over both databases yields the same observations and KPIs."""

    async def on(database_url: str | None, directory: Path) -> tuple[int, list[Any]]:
        async with simulated_service(directory, province, database_url=database_url,
                                     **{"thu-cong-vu": {"enabled": False}}) as (service, _, _):
            summaries = await service.runner.collect_all(backfill=(date(2025, 5, 1), date(2025, 8, 31)))
            assert all(s.ok for s in summaries)
            as_of = Period.of_month(2025, 8, VN).end - timedelta(seconds=1)
            windows = [Window.parse(w) for w in ("month", "quarter", "ytd", "latest")]
            values = service.kpis.compute(as_of, windows)
            return service.store.count_observations(), sorted(values, key=repr)

    (tmp_path / "sqlite").mkdir()
    (tmp_path / "pg").mkdir()
    sqlite_count, sqlite_values = run(on(None, tmp_path / "sqlite"))
    pg_count, pg_values = run(on(postgres_url, tmp_path / "pg"))
    assert pg_count == sqlite_count > 0
    assert pg_values == sqlite_values and len(pg_values) > 100
