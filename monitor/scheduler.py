"""In-process scheduling with APScheduler 3.11 (pinned < 4: v4 is a pre-release).

One job per source on its own interval or cron (in the province's timezone),
never overlapping itself (``max_instances=1``), missed runs coalesced into one
and run if no later than ``misfire_grace``, with jitter so sources are not
polled in lockstep. A KPI refresh job keeps calendar windows current even when
no data arrives (the month rolls over at local midnight); an alerts tick sends
mail that was deferred or is due for a retry.

With high availability (``ha.enabled``) only the leader runs collection, the
alerts tick, reports, retention and the registry; every instance runs the KPI
refresh, so a follower's /metrics and API follow the shared database. The
leader election (monitor.leader) calls :meth:`ServiceScheduler.become_leader`
and :meth:`ServiceScheduler.step_down`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import ReportSchedule, Schedule
from monitor.service import MonitorService

log = logging.getLogger(__name__)
SHARED_JOBS = frozenset({"refresh-kpis"})  # every other job is the leader's


def trigger_for(schedule: Schedule, timezone: str) -> BaseTrigger:
    jitter = int(schedule.jitter.total_seconds()) or None
    if schedule.cron is not None:
        minute, hour, day, month, day_of_week = schedule.cron.split()
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
                           timezone=timezone, jitter=jitter)
    assert schedule.interval is not None
    return IntervalTrigger(seconds=schedule.interval.total_seconds(), timezone=timezone,
                           jitter=jitter)


def _first_run(at: datetime | None) -> dict[str, datetime]:
    """``next_run_time`` for add_job: ``at``, or left out so the trigger decides
    (APScheduler 3 adds a job given ``next_run_time=None`` paused, never to run)."""
    return {"next_run_time": at} if at is not None else {}


class ServiceScheduler:
    """Owns the APScheduler instance and the tasks it started, for a clean stop."""

    def __init__(self, service: MonitorService) -> None:
        self.service = service
        self.scheduler = AsyncIOScheduler(timezone=service.config.timezone)
        self._running: set[asyncio.Task[None]] = set()

    def _tracked(self, name: str, work: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.set_name(name)  # which jobs are still running (step_down, become_leader)
            self._running.add(task)
            try:
                await work()
            except Exception:  # a job failure is logged, the scheduler goes on
                log.exception("scheduled job %s failed", name)
            finally:
                self._running.discard(task)
        job.__name__ = name
        return job

    def start(self, *, run_now: bool = True) -> None:
        self._add_jobs(self.service.clock.now() if run_now else None)
        self.service.reload_hooks.append(self.reschedule)
        self.scheduler.start()

    def reschedule(self) -> None:
        """After a configuration reload: every job again from the new configuration.
        Sources that were not scheduled before are collected at once; running jobs finish."""
        scheduled = {job.id for job in self.scheduler.get_jobs()}
        self.scheduler.remove_all_jobs()
        self._add_jobs(None, run_now_unless=scheduled)
        log.info("scheduler: %d jobs after the reload", len(self.scheduler.get_jobs()))

    def become_leader(self) -> None:
        """Elected: the leader's jobs from now on, every source collected at once (it picks up
        from the watermarks the previous leader left)."""
        self.service.set_leading(True)
        self._remove_leader_jobs()
        if not any(task.get_name().startswith("collect:") for task in self._running):
            # Runs left 'running' were the previous leader's (this instance ran none). One quick
            # UPDATE, before the collections below open runs of their own.
            try:
                self.service.close_abandoned_runs()
            except Exception:  # bookkeeping only: the collections go on regardless
                log.exception("could not close the collection runs the previous leader left open")
        self._add_leader_jobs(self.service.clock.now())
        log.info("scheduler: leader, %d jobs", len(self.scheduler.get_jobs()))

    def step_down(self) -> None:
        """Deposed: no leader job starts any more. Running ones finish (their writes are
        upserts, and mail already claimed is this instance's until its lease runs out);
        the outbox drain claims nothing new once ``service.leading`` is False."""
        self.service.set_leading(False)
        self._remove_leader_jobs()
        log.info("scheduler: follower, %d jobs (%d leader job(s) still finishing)",
                 len(self.scheduler.get_jobs()), len(self._running))

    def _remove_leader_jobs(self) -> None:
        for job in self.scheduler.get_jobs():
            if job.id not in SHARED_JOBS:
                job.remove()

    def _add_jobs(self, first_run: datetime | None, *, run_now_unless: set[str] | None = None) -> None:
        """Every job of the configuration for this instance's role; with ``run_now_unless``,
        a source job not in it runs at once."""
        config = self.service.config
        self.scheduler.add_job(
            self._tracked("refresh-kpis", self._refresh), IntervalTrigger(
                seconds=config.exporter.evaluate_interval.total_seconds(), timezone=config.timezone),
            id="refresh-kpis", max_instances=1, coalesce=True, misfire_grace_time=60)
        if self.service.leading:
            self._add_leader_jobs(first_run, run_now_unless=run_now_unless)

    def _add_leader_jobs(self, first_run: datetime | None, *, run_now_unless: set[str] | None = None) -> None:
        config = self.service.config
        for source in config.sources:
            if not source.enabled:
                continue
            job_id = f"collect:{source.id}"
            first = first_run
            if run_now_unless is not None and job_id not in run_now_unless:
                first = self.service.clock.now()
            trigger = trigger_for(source.schedule, config.timezone)
            self.scheduler.add_job(
                self._tracked(job_id, self._collector(source.id)), trigger,
                id=job_id, max_instances=1, coalesce=True,
                misfire_grace_time=int(source.schedule.misfire_grace.total_seconds()),
                **_first_run(first))
        if config.alerts.enabled:
            # Deferred digests go out when the sending window opens; retries come due.
            self.scheduler.add_job(
                self._tracked("alerts", self._alerts), IntervalTrigger(
                    seconds=config.alerts.tick.total_seconds(), timezone=config.timezone),
                id="alerts", max_instances=1, coalesce=True, misfire_grace_time=60)
        for report in config.reports.schedules:
            self.scheduler.add_job(
                self._tracked(f"report:{report.name}", self._reporter(report)),
                trigger_for(report.schedule, config.timezone), id=f"report:{report.name}", max_instances=1,
                coalesce=True, misfire_grace_time=int(report.schedule.misfire_grace.total_seconds()))
        if config.retention.enabled:
            self.scheduler.add_job(
                self._tracked("retention", self._retention), trigger_for(config.retention.schedule, config.timezone),
                id="retention", max_instances=1, coalesce=True,
                misfire_grace_time=int(config.retention.schedule.misfire_grace.total_seconds()))
        self.scheduler.add_job(
            self._tracked("registry", self._registry), CronTrigger(hour=0, minute=5,
                                                                   timezone=config.timezone),
            id="registry", max_instances=1, coalesce=True, misfire_grace_time=3600,
            **_first_run(first_run))

    def _collector(self, source_id: str) -> Callable[[], Awaitable[None]]:
        async def collect() -> None:
            await self.service.runner.collect(source_id)
            await self.service.refresh_kpis()
        return collect

    async def _refresh(self) -> None:
        await self.service.refresh_kpis()

    def _reporter(self, schedule: ReportSchedule) -> Callable[[], Awaitable[None]]:
        async def report() -> None:
            await self.service.send_scheduled_report(schedule)
        return report

    async def _alerts(self) -> None:
        await self.service.alert_cycle()

    async def _retention(self) -> None:
        await self.service.apply_retention()

    async def _registry(self) -> None:
        await asyncio.to_thread(self.service.runner.write_registry)

    async def stop(self, grace: timedelta = timedelta(seconds=20)) -> None:
        """Stop taking new work, let running jobs finish within ``grace``, cancel the rest
        (a cancelled collection loses at most its current chunk, which was not stored)."""
        self.scheduler.shutdown(wait=False)
        pending = set(self._running)
        if not pending:
            return
        log.info("waiting up to %ds for %d running job(s)", grace.total_seconds(), len(pending))
        _, still = await asyncio.wait(pending, timeout=grace.total_seconds())
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=5)
