"""Run collectors: plan the periods, validate what comes back, store it, advance
the watermark, record the source's health.

Work is done in chunks of periods; each chunk is stored in one transaction and
the watermark moves after it, so a process killed mid-backfill resumes at the
first chunk it had not finished and nothing half-written remains. A period
stays open for re-collection until ``settle`` has passed after its end
(sources correct late data); re-collecting is an idempotent upsert.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import aiohttp

from collectors import collector_class
from collectors.base import (
    CollectionResult,
    Collector,
    CollectorError,
    Observation,
    Rejection,
    SourceSettings,
)
from collectors.http import SourceHttp, new_session
from monitor.catalog import Catalog
from monitor.config import Config, SourceConfig
from monitor.metrics import ServiceMetrics
from monitor.storage.store import Store
from monitor.timeutil import Clock, Period, iter_periods, local_date, local_midnight
from monitor.units import UnitTree

log = logging.getLogger(__name__)
CHUNK_PERIODS = {"month": 6, "day": 31}
REGISTRY_SOURCE = "registry"

Progress = Callable[[str, int, int], None]  # (source id, periods done, periods planned)


@dataclass
class RunSummary:
    source: str
    ok: bool
    periods: int = 0
    observations: int = 0
    rejections: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None
    duration: float = 0.0
    first_period: Period | None = None
    last_period: Period | None = None
    # In a dry run, what would have been stored and what was refused, for the operator to read.
    preview: list[Observation] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def _value_problem(obs: Observation) -> tuple[str, str] | None:
    if not math.isfinite(obs.value):
        return "not_a_number", f"{obs.measure} is {obs.value!r}"
    if obs.value < 0:
        return "negative", f"{obs.measure} is negative: {obs.value:g}"
    return None


class CollectionRunner:
    def __init__(self, config: Config, store: Store, catalog: Catalog, units: UnitTree,
                 metrics: ServiceMetrics, clock: Clock,
                 session_factory: Callable[[int], aiohttp.ClientSession] = new_session) -> None:
        self.config = config
        self.store = store
        self.catalog = catalog
        self.units = units
        self.metrics = metrics
        self.clock = clock
        self.session_factory = session_factory
        self.tz = config.tz
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # ------------------------------------------------------------------ planning

    def default_start(self, source: SourceConfig) -> datetime:
        if source.backfill_from is not None:
            return local_midnight(source.backfill_from, self.tz)
        today = local_date(self.clock.now(), self.tz)
        return local_midnight(date(today.year - 1, 1, 1), self.tz)

    def plan(self, source: SourceConfig, collector: type[Collector],
             backfill: tuple[date, date] | None = None) -> list[Period]:
        now = self.clock.now()
        if not collector.supports_history:
            return [Period.containing(now, "day", self.tz)]
        if backfill is not None:
            start = local_midnight(backfill[0], self.tz)
            end = min(local_midnight(backfill[1], self.tz), now)
            periods = list(iter_periods(start, end, source.grain, self.tz))
            return periods or [Period.containing(start, source.grain, self.tz)]
        resume = self.store.watermark(source.id) or self.default_start(source)
        return list(iter_periods(min(resume, now), now, source.grain, self.tz))

    # ------------------------------------------------------------------ running

    async def collect_all(self, *, progress: Progress | None = None,
                          backfill: tuple[date, date] | None = None) -> list[RunSummary]:
        """Every enabled source, concurrently; one failing source never stops the others."""
        sources = [s for s in self.config.sources if s.enabled]
        summaries = await asyncio.gather(
            *(self.collect(s.id, progress=progress, backfill=backfill) for s in sources))
        await asyncio.to_thread(self.write_registry)
        return list(summaries)

    async def collect(self, source_id: str, *, backfill: tuple[date, date] | None = None,
                      dry_run: bool = False, progress: Progress | None = None) -> RunSummary:
        source = self.config.source(source_id)
        async with self._locks[source_id]:  # no overlapping runs of one source
            return await self._collect(source, backfill, dry_run, progress)

    async def _collect(self, source: SourceConfig, backfill: tuple[date, date] | None,
                       dry_run: bool, progress: Progress | None) -> RunSummary:
        cls = collector_class(source.kind)
        periods = await asyncio.to_thread(self.plan, source, cls, backfill)  # reads the watermark
        summary = RunSummary(source.id, ok=True, periods=len(periods),
                             first_period=periods[0] if periods else None,
                             last_period=periods[-1] if periods else None)
        started = time.perf_counter()
        started_at = self.clock.now()
        run_id = None
        if not dry_run:
            run_id = await asyncio.to_thread(
                self.store.start_run, source.id, started_at,
                periods[0].start if periods else None, periods[-1].end if periods else None)
        async with self.session_factory(source.concurrency) as session:
            try:
                collector = self._build(source, cls, session)
                try:
                    await self._collect_chunks(collector, source, periods, summary, dry_run, progress,
                                               track_watermark=backfill is None and cls.supports_history)
                finally:
                    await collector.aclose()
            except CollectorError as exc:
                summary.ok, summary.error, summary.reason = False, str(exc), exc.reason
            except Exception as exc:  # a bug must not stop the other sources
                log.exception("source %s: unexpected error while collecting", source.id)
                summary.ok, summary.error, summary.reason = False, f"internal error: {exc!r}", "internal"
        summary.duration = time.perf_counter() - started
        self._record_metrics(source, summary)
        if not dry_run:
            await asyncio.to_thread(self._record_run, source, summary, started_at, run_id)
        if summary.ok:
            log.info("source %s: %d periods, %d observations %s, %d rejected in %.2fs",
                     source.id, summary.periods, summary.observations,
                     "read (dry run: nothing stored)" if dry_run else "stored", summary.rejections,
                     summary.duration)
        else:
            log.warning("source %s failed (%s): %s", source.id, summary.reason, summary.error)
        return summary

    def _build(self, source: SourceConfig, cls: type[Collector],
               session: aiohttp.ClientSession) -> Collector:
        def on_retry(reason: str) -> None:
            self.metrics.collection_retries.labels(source.id, reason).inc()

        # Kinds that read a database, a directory or files get a client they never use; a
        # reserved .invalid host makes any stray use fail loudly instead of reaching something.
        base_url = source.url if source.url.lower().startswith(("http://", "https://")) else "http://unused.invalid"
        http = SourceHttp(source.id, base_url, session, timeout=source.timeout.total_seconds(),
                          retries=source.retries, headers=source.auth.headers(), on_retry=on_retry,
                          concurrency=source.concurrency)
        settings = SourceSettings(source.id, source.kind, source.url, source.grain, dict(source.options),
                                  source.auth.credentials(), source.timeout.total_seconds())
        return cls(settings, http, self.tz, self.clock)

    async def _collect_chunks(self, collector: Collector, source: SourceConfig,
                              periods: Sequence[Period], summary: RunSummary, dry_run: bool,
                              progress: Progress | None, track_watermark: bool) -> None:
        size = CHUNK_PERIODS[source.grain]
        known = set(self.units.codes)
        done = 0
        unsettled_seen = False
        for index in range(0, len(periods), size):
            chunk = periods[index:index + size]
            result = await collector.collect(chunk, known)
            # In a worker thread: checking tens of thousands of observations would otherwise hold
            # the event loop, and with it the other sources' requests in flight.
            observations, rejections = await asyncio.to_thread(
                self.validate, result, set(chunk) if collector.supports_history else None)
            summary.observations += len(observations)
            summary.rejections += len(rejections)
            for rejection in rejections:
                summary.rejected_by_reason[rejection.reason] = summary.rejected_by_reason.get(rejection.reason, 0) + 1
            if dry_run:
                summary.preview.extend(observations)
                summary.rejected.extend(rejections)
            else:
                now = self.clock.now()
                await asyncio.to_thread(self._store_chunk, source.id, observations, rejections, now)
                await collector.stored()
                if track_watermark and not unsettled_seen:
                    resume, unsettled_seen = self._resume_point(chunk, source, now)
                    await asyncio.to_thread(self.store.set_watermark, source.id, resume, now)
            done += len(chunk)
            if progress:
                progress(source.id, done, len(periods))

    def _resume_point(self, chunk: Sequence[Period], source: SourceConfig,
                      now: datetime) -> tuple[datetime, bool]:
        """Start of the first period of ``chunk`` that has not settled yet, or the end of the chunk."""
        for period in chunk:
            if period.end + source.settle > now:
                return period.start, True
        return chunk[-1].end, False

    def _store_chunk(self, source: str, observations: list[Observation],
                     rejections: list[Rejection], now: datetime) -> None:
        self.store.upsert_observations(observations, source, now, rejections)

    # ------------------------------------------------------------------ validation

    def validate(self, result: CollectionResult, periods: set[Period] | None
                 ) -> tuple[list[Observation], list[Rejection]]:
        """The catalog's checks, applied to every collector's output: known measure
        and unit, the unit exists in that period, a finite non-negative value, and a
        part never larger than its whole (then the unit's whole period is refused)."""
        rejections = list(result.rejections)
        kept: list[Observation] = []
        measures = self.catalog.measures
        # A collection brings many observations per (unit, period): whether the unit is known
        # and existed then, and whether the period was asked for, are worked out once per pair.
        pair_problems: dict[tuple[str, Period], tuple[str, str] | None] = {}
        by_key: dict[tuple[str, Period], dict[str, Observation]] = defaultdict(dict)
        for obs in result.observations:
            key = (obs.unit, obs.period)
            if obs.measure not in measures:
                problem: tuple[str, str] | None = (
                    "unknown_measure", f"measure {obs.measure!r} is not in the KPI catalog")
            else:
                if key not in pair_problems:
                    pair_problems[key] = self._pair_problem(obs.unit, obs.period, periods)
                problem = pair_problems[key] or _value_problem(obs)
            if problem is None:
                kept.append(obs)
                by_key[key][obs.measure] = obs
            else:
                reason, detail = problem
                rejections.append(Rejection(reason, detail, obs.unit, obs.measure, obs.period, obs.raw_ref))
        refused: set[tuple[str, Period]] = set()
        pairs = self.catalog.ratio_pairs()
        for key, group in by_key.items():
            for part, whole in pairs:
                if part in group and whole in group and group[part].value > group[whole].value:
                    refused.add(key)
                    rejections.append(Rejection(
                        "inconsistent",
                        f"{part}={group[part].value:g} exceeds {whole}={group[whole].value:g} "
                        f"for unit {key[0]}; the unit's record for this period was not stored",
                        key[0], part, key[1], group[part].raw_ref))
        if refused:
            kept = [o for o in kept if (o.unit, o.period) not in refused]
        return kept, rejections

    def _pair_problem(self, unit: str, period: Period, periods: set[Period] | None) -> tuple[str, str] | None:
        """Why no measure of ``unit`` over ``period`` may be stored (an unknown unit, a period
        not asked for, a unit that did not exist then), or None."""
        if unit not in self.units:
            return "unknown_unit", f"unit code {unit!r} is not in the unit registry"
        if periods is not None and period not in periods:
            return "unexpected_period", f"period {period.label(self.tz)} was not requested"
        first_day, last_day = local_date(period.start, self.tz), local_date(period.end, self.tz)
        versions = self.units.versions_of(unit)
        if not any(u.overlaps(first_day, last_day) for u in versions):
            return "unit_not_valid", (f"unit {unit} did not exist in {period.label(self.tz)} "
                                      f"(valid {versions[0].start}..{versions[-1].end})")
        return None

    # ------------------------------------------------------------------ bookkeeping

    def _record_metrics(self, source: SourceConfig, summary: RunSummary) -> None:
        m = self.metrics
        m.collection_duration.labels(source.id).observe(summary.duration)
        m.observations_stored.labels(source.id).inc(summary.observations)
        for reason, count in summary.rejected_by_reason.items():
            m.observations_rejected.labels(source.id, reason).inc(count)
        m.source_up.labels(source.id, source.kind).set(1 if summary.ok else 0)
        if summary.ok:
            m.source_last_success.labels(source.id).set(self.clock.now().timestamp())
        else:
            m.collection_errors.labels(source.id, summary.reason or "error").inc()

    def _record_run(self, source: SourceConfig, summary: RunSummary, started_at: datetime,
                    run_id: int | None) -> None:
        now = self.clock.now()
        self.store.record_attempt(source.id, at=now, duration=summary.duration, ok=summary.ok,
                                  observations=summary.observations, rejections=summary.rejections,
                                  reason=summary.reason, message=summary.error)
        if run_id is not None:
            self.store.finish_run(run_id, now, status="ok" if summary.ok else "failed",
                                  observations=summary.observations, rejections=summary.rejections,
                                  error=summary.error)
        watermark = self.store.watermark(source.id)
        if watermark is not None:
            self.metrics.source_watermark.labels(source.id).set(watermark.timestamp())

    def write_registry(self) -> int:
        """``staff_total`` for every unit valid today, from the unit registry."""
        now = self.clock.now()
        period = Period.containing(now, "day", self.tz)
        today = local_date(now, self.tz)
        observations = [Observation("staff_total", u.code, period, float(u.staff_count), "units file")
                        for u in self.units.valid_on(today) if u.staff_count > 0]
        return self.store.upsert_observations(observations, REGISTRY_SOURCE, now)
