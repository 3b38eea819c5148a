"""One process's worth of egov-kpi-monitor, assembled from a Config.

Collaborators come in through the constructor with production defaults (the
clock, the HTTP session factory, the metrics registry), which is what lets the
tests run the real thing against simulators without patching.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import date, datetime

import aiohttp

from collectors.http import new_session
from monitor.catalog import Catalog, load_catalog
from monitor.collection import CollectionRunner, Progress, RunSummary
from monitor.config import Config
from monitor.exporter import Exposition, render_kpi_families
from monitor.kpi import KpiEngine, KpiValue
from monitor.metrics import ServiceMetrics
from monitor.storage import Store, create_engine_for, upgrade_database
from monitor.timeutil import Clock, SystemClock
from monitor.units import UnitTree, load_units
from monitor.windows import Window

log = logging.getLogger(__name__)


class MonitorService:
    def __init__(self, config: Config, *, clock: Clock | None = None,
                 metrics: ServiceMetrics | None = None,
                 session_factory: Callable[[int], aiohttp.ClientSession] = new_session) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.units: UnitTree = load_units(config.units.file)
        self.catalog: Catalog = load_catalog(config.catalog.file)
        self.engine = create_engine_for(config.database.url, echo=config.database.echo)
        self.store = Store(self.engine)
        self.metrics = metrics or ServiceMetrics()
        self.exposition = Exposition(self.metrics)
        self.runner = CollectionRunner(config, self.store, self.catalog, self.units, self.metrics,
                                       self.clock, session_factory)
        self.kpis = KpiEngine(self.catalog, self.units, self.store, config.tz)
        self.windows = [Window.parse(w) for w in config.exporter.windows]
        self.snapshot: list[KpiValue] = []
        self.ready = False
        # Refreshes follow each source's collection and a timer; one at a time, so an
        # older computation can never publish over a newer one.
        self._refreshing = asyncio.Lock()

    def prepare(self) -> None:
        """Schema up to date; runs a killed process left open are closed; health
        gauges restored from the database so a restart does not report sources as
        never seen."""
        revision = upgrade_database(self.engine)
        log.info("database %s at schema revision %s", self.engine.url.render_as_string(), revision)
        abandoned = self.store.abandon_running(self.clock.now())
        if abandoned:
            log.warning("%d collection run(s) were interrupted by the last stop", abandoned)
        kinds = {s.id: s.kind for s in self.config.sources}
        for health in self.store.health():
            if health.source in kinds:
                self.metrics.source_up.labels(health.source, kinds[health.source]).set(int(health.up))
                if health.last_success_at:
                    self.metrics.source_last_success.labels(health.source).set(
                        health.last_success_at.timestamp())

    async def refresh_kpis(self, as_of: datetime | None = None) -> list[KpiValue]:
        """Recompute the KPI snapshot and publish it for /metrics."""
        async with self._refreshing:
            return await self._refresh(as_of)

    async def _refresh(self, as_of: datetime | None) -> list[KpiValue]:
        started = time.perf_counter()
        as_of = as_of or self.clock.now()
        values = await asyncio.to_thread(self.kpis.compute, as_of, self.windows)
        text = await asyncio.to_thread(render_kpi_families, values, self.catalog, self.units)
        self.exposition.publish(text)
        self.snapshot = values
        self.metrics.kpi_computation_duration.set(time.perf_counter() - started)
        self.metrics.kpi_computed_at.set(self.clock.now().timestamp())
        self.ready = True
        return values

    async def cycle(self, *, progress: Progress | None = None,
                    backfill: tuple[date, date] | None = None) -> list[RunSummary]:
        """One complete cycle: collect every source, then recompute the KPIs."""
        summaries = await self.runner.collect_all(progress=progress, backfill=backfill)
        await self.refresh_kpis()
        return summaries

    def database_ok(self) -> bool:
        try:
            self.store.ping()
        except Exception:  # readiness reports it; the log says why
            log.exception("database check failed")
            return False
        return True

    def close(self) -> None:
        self.engine.dispose()
