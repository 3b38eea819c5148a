"""The scheduler: triggers in the province's timezone, runs collections, stops cleanly."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import Schedule
from monitor.scheduler import ServiceScheduler, trigger_for
from monitor.simulators.province import ProvinceModel
from monitor.timeutil import SystemClock
from tests.support.province import simulated_service


def test_cron_is_read_in_the_provinces_timezone() -> None:
    trigger = trigger_for(Schedule(cron="30 6 * * *"), "Asia/Ho_Chi_Minh")
    assert isinstance(trigger, CronTrigger)
    fire = trigger.get_next_fire_time(None, datetime(2026, 11, 22, 0, 0, tzinfo=UTC))
    assert fire is not None and fire.astimezone(UTC) == datetime(2026, 11, 22, 23, 30, tzinfo=UTC)


def test_cron_carries_jitter_too() -> None:
    trigger = trigger_for(Schedule(cron="0 * * * *", jitter=timedelta(seconds=45)), "Asia/Ho_Chi_Minh")
    assert isinstance(trigger, CronTrigger) and trigger.jitter == 45


def test_interval_carries_jitter() -> None:
    trigger = trigger_for(Schedule(interval=timedelta(minutes=15), jitter=timedelta(seconds=20)),
                          "Asia/Ho_Chi_Minh")
    assert isinstance(trigger, IntervalTrigger) and trigger.jitter == 20
    assert trigger.interval == timedelta(minutes=15)


async def test_jobs_run_at_start_and_the_stop_is_clean(tmp_path: Path, province: ProvinceModel) -> None:
    # A real clock: APScheduler fires on wall time.
    async with simulated_service(tmp_path, province, clock=SystemClock()) as (service, _, config):
        scheduler = ServiceScheduler(service)
        scheduler.start(run_now=True)
        jobs = {job.id: job for job in scheduler.scheduler.get_jobs()}
        assert {f"collect:{s.id}" for s in config.sources} | {"refresh-kpis", "registry", "alerts"} == set(jobs)
        assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())
        for _ in range(300):  # bounded: at most 30 s
            if len(service.store.health()) == len(config.sources) and service.ready:
                break
            await asyncio.sleep(0.1)
        await scheduler.stop(grace=timedelta(seconds=30))
        assert not scheduler.scheduler.running
        assert {h.source for h in service.store.health() if h.up} == {s.id for s in config.sources}
        assert service.ready and service.snapshot_size.values > 0
