"""One process's worth of egov-kpi-monitor, assembled from a Config.

Collaborators come in through the constructor with production defaults (the
clock, the HTTP session factory, the metrics registry), which is what lets the
tests run the real thing against simulators without patching.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import aiohttp

from collectors.http import new_session
from monitor.alerts.alertmanager import AlertmanagerForwarder
from monitor.alerts.delivery import Deliverer
from monitor.alerts.engine import AlertEngine
from monitor.alerts.forwarding import forwarded_alerts
from monitor.alerts.model import Recipient
from monitor.catalog import Catalog, load_catalog
from monitor.collection import CollectionRunner, Progress, RunSummary
from monitor.config import Config, ReportSchedule, load_config
from monitor.errors import ConfigError
from monitor.exporter import Exposition, render_kpi_families
from monitor.kpi import KpiEngine, KpiValue, Scope
from monitor.metrics import ServiceMetrics
from monitor.retention import RetentionSummary, apply_retention
from monitor.scoring import (
    SHIPPED_INDICES_DIR,
    ScoringIndex,
    UnitScore,
    compute_scores,
    load_indices,
    render_score_families,
    scored_units,
)
from monitor.storage import Store, create_engine_for, upgrade_database
from monitor.storage.results import ResultStore
from monitor.targets.evaluate import Evaluation, Evaluator
from monitor.targets.export import render_target_families
from monitor.targets.loader import RuleSet, configured_rule_paths, load_rules
from monitor.targets.model import TargetRule
from monitor.timeutil import Clock, SystemClock, local_date
from monitor.units import UnitTree, load_units
from monitor.windows import Window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotSize:
    """How large the last KPI snapshot was: KPI values, and the units they cover."""

    values: int
    units: int


@dataclass(frozen=True)
class Reloaded:
    """What a configuration reload did: applied, or refused with every problem."""

    applied: bool
    error: ConfigError | None = None
    rules: int = 0
    sources: int = 0
    # settings that changed in the file but take effect only at the next start
    restart_needed: tuple[str, ...] = ()


class MonitorService:
    def __init__(self, config: Config, *, clock: Clock | None = None,
                 metrics: ServiceMetrics | None = None,
                 session_factory: Callable[[int], aiohttp.ClientSession] = new_session,
                 config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path  # what a reload re-reads; None: reload refused
        self.clock = clock or SystemClock()
        self.session_factory = session_factory
        self.engine = create_engine_for(config.database.url, echo=config.database.echo)
        self.store = Store(self.engine)
        self.metrics = metrics or ServiceMetrics()
        self.exposition = Exposition(self.metrics)
        self.results = ResultStore(self.engine)
        units = load_units(config.units.file)
        catalog = load_catalog(config.catalog.file)
        rules = self._read_rules(config, catalog, units)
        self._assemble(config, units, catalog, rules, self._read_indices(config, catalog, units))
        self.scores: list[UnitScore] = []
        self.metrics.rules_reload_success.set(1)
        self.metrics.config_reload_success.set(1)
        # Only the snapshot's size is kept: its values live on as the published /metrics
        # parts (a million series would otherwise also be held as Python objects).
        self.snapshot_size = SnapshotSize(values=0, units=0)
        self.evaluations: list[Evaluation] = []
        self.reload_hooks: list[Callable[[], None]] = []  # told after a reload was applied (the scheduler)
        self._alerting = asyncio.Lock()
        self.reporting_lock = asyncio.Lock()  # one report at a time: each evaluates and stores every rule
        self.ready = False
        # Leader-only work (collection, alerts and mail, reports, retention; storing the
        # evaluations) happens where this is True: always with one instance, only on the
        # elected one with ha.enabled (monitor.leader); ``role_elected`` says an election
        # decides it, and then mail stops being claimed the moment leadership is lost.
        self.leading = not config.ha.enabled
        self.role_elected = False
        self.metrics.leader.set(int(self.leading))
        # Refreshes follow each source's collection and a timer; one at a time, so an
        # older computation can never publish over a newer one.
        self._refreshing = asyncio.Lock()

    def _assemble(self, config: Config, units: UnitTree, catalog: Catalog, rules: RuleSet,
                  indices: tuple[ScoringIndex, ...]) -> None:
        """Everything built from the configuration, the units, the catalog and the rules."""
        self.config = config
        self.units: UnitTree = units
        self.catalog: Catalog = catalog
        self.rules: RuleSet = rules
        self.indices: tuple[ScoringIndex, ...] = indices
        self.metrics.rules_loaded.set(len(rules))
        self.runner = CollectionRunner(config, self.store, catalog, units, self.metrics,
                                       self.clock, self.session_factory)
        self.kpis = KpiEngine(catalog, units, self.store, config.tz)
        self.windows = [Window.parse(w) for w in config.exporter.windows]
        self.evaluator = Evaluator(catalog, units, self.store, config.tz)
        self.alerting = AlertEngine(config, units=units, catalog=catalog, store=self.store,
                                    engine=self.engine, metrics=self.metrics, evaluate_at=self._evaluate_at)
        self.deliverer = Deliverer(self.alerting.outbox, config.smtp, config.alerts.retry, self.metrics, self.clock)
        self.forwarder = (AlertmanagerForwarder(config.alerts.alertmanager, self.metrics)
                          if config.alerts.alertmanager else None)

    @staticmethod
    def _read_rules(config: Config, catalog: Catalog, units: UnitTree) -> RuleSet:
        paths = configured_rule_paths(config.rules.shipped, config.rules.files)
        return load_rules(paths, catalog, units)

    @staticmethod
    def _read_indices(config: Config, catalog: Catalog, units: UnitTree) -> tuple[ScoringIndex, ...]:
        if config.rules.indices is None:
            return load_indices([SHIPPED_INDICES_DIR], catalog, units, shipped=True)
        return load_indices(config.rules.indices, catalog, units)

    async def reload(self) -> Reloaded:
        """Re-read the configuration file with its units, catalog, rules and indices, and
        switch to them — or, when anything is wrong, keep running on what is loaded and
        return every problem. SIGHUP and ``POST /api/v1/reload`` land here.

        The database and the listen address stay as they were until a restart (the
        result names them when they changed). Running collections finish with the old
        settings; the scheduler is rebuilt through ``reload_hooks``.
        """
        if self.config_path is None:
            return self._refused(ConfigError.single("(none)", "this service was not started from a configuration file"))
        try:
            config, units, catalog, rules, indices = await asyncio.to_thread(self._read_all, self.config_path)
        except ConfigError as exc:
            return self._refused(exc)
        restart = tuple(name for name, old, new in (
            ("database.url", self.config.database.url, config.database.url),
            ("http.listen", self.config.http.listen, config.http.listen),
            ("ha", self.config.ha, config.ha),
        ) if old != new)
        async with self._refreshing, self._alerting:
            old_forwarder = self.forwarder
            self._assemble(config, units, catalog, rules, indices)
        if old_forwarder is not None:
            await old_forwarder.close()
        for hook in self.reload_hooks:
            hook()
        now = self.clock.now().timestamp()
        for success, at in ((self.metrics.config_reload_success, self.metrics.config_reloaded_at),
                            (self.metrics.rules_reload_success, self.metrics.rules_reloaded_at)):
            success.set(1)
            at.set(now)
        log.info("configuration reloaded from %s: %d sources, %d rules%s", self.config_path, len(config.sources),
                 len(rules), f"; needs a restart to change: {', '.join(restart)}" if restart else "")
        return Reloaded(True, rules=len(rules), sources=len(config.sources), restart_needed=restart)

    @classmethod
    def _read_all(cls, path: Path) -> tuple[Config, UnitTree, Catalog, RuleSet, tuple[ScoringIndex, ...]]:
        config = load_config(path)
        units = load_units(config.units.file)
        catalog = load_catalog(config.catalog.file)
        rules = cls._read_rules(config, catalog, units)
        return config, units, catalog, rules, cls._read_indices(config, catalog, units)

    def _refused(self, error: ConfigError) -> Reloaded:
        self.metrics.config_reload_success.set(0)
        log.error("configuration not reloaded, still running on the one loaded before:\n%s", error)
        return Reloaded(False, error)

    def prepare(self) -> None:
        """Schema up to date; runs a killed process left open are closed; health
        gauges restored from the database so a restart does not report sources as
        never seen."""
        revision = upgrade_database(self.engine)
        log.info("database %s at schema revision %s", self.engine.url.render_as_string(), revision)
        if not self.config.ha.enabled:  # with ha the runs may be the live leader's: see close_abandoned_runs
            self.close_abandoned_runs()
        self.restore_source_gauges()

    def close_abandoned_runs(self) -> None:
        """Mark collection runs left 'running' as failed: at start when this is the only
        instance, on election with ha.enabled (they were the previous leader's)."""
        abandoned = self.store.abandon_running(self.clock.now())
        if abandoned:
            log.warning("%d collection run(s) were interrupted by the last stop", abandoned)

    def set_leading(self, leading: bool) -> None:
        """Told by the leader election (through the scheduler) when this instance's role changes."""
        self.role_elected = True
        self.leading = leading
        self.metrics.leader.set(int(leading))

    def may_send(self) -> bool:
        """Whether mail may be claimed from the outbox now: not by a follower of an election
        (a one-off command such as ``egovmon alerts send`` is not part of one)."""
        return self.leading or not self.role_elected

    def restore_source_gauges(self) -> None:
        """Source health gauges from the database (at start; on a follower at each refresh,
        since the leader's collections update the database, not this process)."""
        kinds = {s.id: s.kind for s in self.config.sources}
        for health in self.store.health():
            if health.source in kinds:
                self.metrics.source_up.labels(health.source, kinds[health.source]).set(int(health.up))
                if health.last_success_at:
                    self.metrics.source_last_success.labels(health.source).set(
                        health.last_success_at.timestamp())

    def load_rules(self) -> RuleSet:
        """Read the configured rule files; raise ConfigError listing every problem."""
        return self._read_rules(self.config, self.catalog, self.units)

    def reload_rules(self) -> ConfigError | None:
        """Swap in the rule files as they are now — or, when they have mistakes,
        keep running on the last valid rules and return what is wrong."""
        try:
            rules = self.load_rules()
        except ConfigError as exc:
            self.metrics.rules_reload_success.set(0)
            log.error("rule files not reloaded, still running on the %d rules loaded before:\n%s",
                      len(self.rules), exc)
            return exc
        self.rules = rules
        self.metrics.rules_loaded.set(len(rules))
        self.metrics.rules_reload_success.set(1)
        self.metrics.rules_reloaded_at.set(self.clock.now().timestamp())
        log.info("rules reloaded: %d rules from %d files", len(rules), len(rules.files))
        return None

    async def refresh_kpis(self, as_of: datetime | None = None) -> list[KpiValue]:
        """Recompute the KPI snapshot and publish it for /metrics; when live (no
        ``as_of``) and leading, move the alerts and send what is due."""
        async with self._refreshing:
            values = await self._refresh(as_of)
            rules, evaluations = self.rules, self.evaluations
        if as_of is None and self.config.alerts.enabled and self.leading:
            await self.alert_cycle(rules, evaluations)
        return values

    def _evaluate_at(self, rules: Sequence[TargetRule], as_of: datetime, units: set[str]) -> list[Evaluation]:
        return self.evaluator.evaluate(rules, as_of, units=units)

    async def alert_cycle(self, rules: RuleSet | None = None, evaluations: list[Evaluation] | None = None) -> None:
        """Alert states from the evaluations (when given), then digests for what is
        due, delivery of the outbox, and forwarding to Alertmanager. Also run on
        the alerts tick with no evaluations, to send deferred and retried mail."""
        if not self.config.alerts.enabled:
            return
        async with self._alerting:
            now = self.clock.now()
            rules = rules or self.rules
            if evaluations is not None:
                update = await asyncio.to_thread(self.alerting.update, rules, evaluations, now)
                if update.transitions:
                    log.info("alerts: %s", ", ".join(f"{n} → {s}" for s, n in sorted(update.transitions.items())))
            notice = await asyncio.to_thread(self.alerting.notify, rules, now)
            if notice.digests:
                log.info("alerts: %d digest(s) with %d notice(s) put in the outbox", notice.digests, notice.items)
            if self.alerting.policy.is_open(now):
                await self.deliverer.drain(lease=self.delivery_lease, keep_going=self.may_send)
            else:
                await self.deliverer.update_gauges()
            if self.forwarder is not None:
                await self.forward_alerts(now)

    async def send_scheduled_report(self, schedule: ReportSchedule) -> int:
        """Build the schedule's report now and put one message per recipient in the
        outbox (keyed by schedule, day and recipient: a re-run adds nothing), then
        deliver what the sending window allows. Returns the messages queued."""
        from monitor.reports.build import build_gap_report
        from monitor.reports.formats import format_named
        from monitor.reports.mail import report_message

        language = schedule.language or self.config.language
        async with self.reporting_lock:
            report = await asyncio.to_thread(build_gap_report, self, scope=schedule.unit, language=language)
        attachments = [(fmt, await asyncio.to_thread(fmt.render, report))
                       for fmt in (format_named(name) for name in schedule.attach)]
        sender = self.config.smtp.sender
        domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        queued = 0
        for person in schedule.to:
            recipient = Recipient(email=person.email, name=person.name, language=language)
            key = f"report:{schedule.name}:{report.as_of_day.isoformat()}:{person.email}"
            message = report_message(report, schedule=schedule.name, recipient=recipient, sender=sender,
                                     domain=domain, message_key=key, attachments=attachments)
            queued += await asyncio.to_thread(
                self.alerting.outbox.enqueue_now, key=key, kind="report", recipient=person.email,
                subject=str(message["Subject"]), message_id=str(message["Message-ID"]),
                message=message.as_bytes(), now=self.clock.now())
        log.info("report %s: %d message(s) queued for %d recipient(s)", schedule.name, queued, len(schedule.to))
        if self.alerting.policy.is_open(self.clock.now()):
            async with self._alerting:
                await self.deliverer.drain(lease=self.delivery_lease, keep_going=self.may_send)
        return queued

    @property
    def delivery_lease(self) -> timedelta:
        """How long a claimed message is held: a whole batch at the SMTP timeout, plus
        a margin. A sender killed mid-batch releases its messages after this."""
        return self.deliverer.batch_size * self.config.smtp.timeout + timedelta(seconds=10)

    async def forward_alerts(self, now: datetime) -> None:
        assert self.forwarder is not None
        records = await asyncio.to_thread(self.alerting.alerts.load)
        try:
            alerts = forwarded_alerts(records, self.rules, self.catalog, self.units, self.config, now)
            await self.forwarder.forward(alerts, now=now, resend_interval=self.config.alerts.tick)
        except Exception as exc:  # Alertmanager is optional: its outage must not stop the cycle
            log.warning("alerts not forwarded to Alertmanager: %s", exc)

    async def _refresh(self, as_of: datetime | None) -> list[KpiValue]:
        started = time.perf_counter()
        as_of = as_of or self.clock.now()
        values = await asyncio.to_thread(self.kpis.compute, as_of, self.windows)
        self.metrics.kpi_computation_duration.set(time.perf_counter() - started)
        started = time.perf_counter()
        rules = self.rules
        # A follower computes for its own /metrics and API but leaves storing to the leader.
        store = self.leading
        evaluations = await asyncio.to_thread(self.evaluate_and_store, rules, as_of, store=store)
        scores = await asyncio.to_thread(self.score_and_store, as_of, store=store)
        if not store:
            await asyncio.to_thread(self.restore_source_gauges)
            await self.deliverer.update_gauges()
        self.metrics.evaluation_duration.set(time.perf_counter() - started)
        # Published as the families' parts, never joined: no copy of the whole text is made.
        parts = await asyncio.to_thread(render_kpi_families, values, self.catalog, self.units)
        parts += await asyncio.to_thread(render_target_families, evaluations, rules, self.catalog, self.units,
                                         self.config.tz)
        parts.append(render_score_families(scores, self.indices).encode("utf-8"))
        self.exposition.publish(parts)
        self.snapshot_size = SnapshotSize(values=len(values), units=len({v.unit for v in values}))
        self.evaluations = evaluations
        self.scores = scores
        self.metrics.kpi_computed_at.set(self.clock.now().timestamp())
        self.ready = True
        return values

    def evaluate_and_store(self, rules: RuleSet, as_of: datetime, *, store: bool = True) -> list[Evaluation]:
        """Evaluate every rule at ``as_of`` and store the results (replacing that day's)."""
        evaluations = self.evaluator.evaluate(rules, as_of)
        if store:
            self.results.save_evaluations(evaluations, self.clock.now())
        return evaluations

    def score_and_store(self, as_of: datetime, *, store: bool = True) -> list[UnitScore]:
        """Every composite index for its units at ``as_of``, ranked and stored.
        Indices over the same window and scope share one KPI computation (one read)."""
        day = local_date(as_of, self.config.tz)
        groups: dict[tuple[str, Scope], list[ScoringIndex]] = defaultdict(list)
        for index in self.indices:
            groups[(index.window, index.scope)].append(index)
        scores: list[UnitScore] = []
        for (window, scope), indices in groups.items():
            kpis = {k for index in indices for k in index.kpis}
            units = {u.code for index in indices for u in scored_units(index, self.units, day)}
            values = self.kpis.compute(as_of, [Window.parse(window)], kpis=sorted(kpis), units=units, scope=scope)
            for index in indices:
                scores.extend(compute_scores(index, values, self.units, day))
        if store:
            self.results.save_scores(scores, day, self.clock.now())
        return scores

    async def cycle(self, *, progress: Progress | None = None,
                    backfill: tuple[date, date] | None = None) -> list[RunSummary]:
        """One complete cycle: collect every source, then recompute the KPIs."""
        summaries = await self.runner.collect_all(progress=progress, backfill=backfill)
        await self.refresh_kpis()
        return summaries

    async def apply_retention(self) -> RetentionSummary:
        """Roll up and prune old history (the daily retention job). Each month is atomic on its
        own; the refresh lock keeps a long roll-up from contending with a KPI computation."""
        async with self._refreshing:
            sources = [s.id for s in self.config.sources if s.enabled]
            return await asyncio.to_thread(apply_retention, self.store, self.catalog, self.config.retention,
                                           self.clock.now(), self.config.tz, sources)

    def database_ok(self) -> bool:
        try:
            self.store.ping()
        except Exception:  # readiness reports it; the log says why
            log.exception("database check failed")
            return False
        return True

    async def aclose(self) -> None:
        if self.forwarder is not None:
            await self.forwarder.close()
        self.close()

    def close(self) -> None:
        self.engine.dispose()
