"""The alert cycle: move every alert's state from the latest evaluations, then
tell each recipient what changed in one digest.

``update`` runs after each evaluation; ``notify`` runs after it and on a short
tick (so mail deferred overnight goes out when the sending window opens). Both
are synchronous database work, run in a worker thread by the service.

Exactly once: the digests of a cycle are put in the outbox in the same
transaction that records, by compare-and-set, what each alert's recipients
were told. A crash before the commit leaves nothing half-done (the next tick
composes the same digests again); a second instance that read the same alerts
fails its compare-and-set and sends nothing.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any, Literal

from sqlalchemy import Engine

from monitor.alerts.compose import compose, subject_of
from monitor.alerts.model import Digest, ItemKind, Recipient, SourceItem, TargetItem
from monitor.alerts.outbox import Outbox
from monitor.alerts.routing import Routed, Router
from monitor.alerts.state import AlertRecord, Signal, Timing, Transition, due, notified, step
from monitor.alerts.store import AlertStore, Conflict, Silence, SilenceStore
from monitor.alerts.windows import SendingPolicy
from monitor.catalog import Catalog
from monitor.config import Config
from monitor.metrics import ServiceMetrics
from monitor.storage.store import SourceHealth, Store
from monitor.targets.evaluate import JUDGED, Evaluation
from monitor.targets.loader import RuleSet
from monitor.targets.model import TargetRule
from monitor.targets.present import evaluation_json
from monitor.timeutil import local_date
from monitor.units import UnitTree

log = logging.getLogger(__name__)
# Re-evaluates rules at an earlier instant for some units (how long a status has been bad).
EvaluateAt = Callable[[Sequence[TargetRule], datetime, set[str]], list[Evaluation]]
_MEASURES_TTL = timedelta(hours=1)
HELD_REASONS = ("inhibited", "silenced", "unroutable")


@dataclass(frozen=True)
class SourceStatus:
    source: str
    kind: str
    status: str  # up, down, stale, unknown
    detail: str
    last_success_at: datetime | None


@dataclass
class UpdateSummary:
    transitions: Counter[str]
    inhibited: int
    conflicts: int


@dataclass
class NotifySummary:
    digests: int = 0
    items: int = 0
    deferred_until: datetime | None = None
    held: Counter[str] | None = None
    conflict: bool = False


class AlertEngine:
    def __init__(self, config: Config, *, units: UnitTree, catalog: Catalog, store: Store, engine: Engine,
                 metrics: ServiceMetrics, evaluate_at: EvaluateAt) -> None:
        self.config = config
        self.settings = config.alerts
        self.units = units
        self.catalog = catalog
        self.store = store
        self.engine = engine
        self.metrics = metrics
        self.evaluate_at = evaluate_at
        self.alerts = AlertStore(engine)
        self.silences = SilenceStore(engine)
        self.outbox = Outbox(engine)
        self.router = Router(units, config.alerts, config.language)
        self.policy = SendingPolicy(config.alerts.sending_windows, config.alerts.holidays, config.tz)
        self._measures: dict[str, set[str]] = {}
        self._measures_read: datetime | None = None
        self._inhibited: Counter[str] = Counter()  # target alerts held back, per broken source
        self._unroutable_warned: set[tuple[str, str, str]] = set()

    # ------------------------------------------------------------------ timing

    def timing(self, record: AlertRecord, rules: RuleSet) -> Timing | None:
        if record.kind == "source":
            return Timing(for_=self.settings.source_for, repeat=self.settings.source_repeat,
                          flap_threshold=self.settings.flap_threshold, flap_window=self.settings.flap_window)
        rule = rules.get(record.rule)
        if rule is None:
            return None
        return self._rule_timing(rule)

    def _rule_timing(self, rule: TargetRule) -> Timing:
        return Timing(for_=rule.notify.for_, repeat=rule.notify.repeat,
                      escalate_after=[e.after for e in rule.escalate],
                      flap_threshold=self.settings.flap_threshold, flap_window=self.settings.flap_window)

    # ------------------------------------------------------------------ sources

    def source_statuses(self, now: datetime) -> list[SourceStatus]:
        health: dict[str, SourceHealth] = {h.source: h for h in self.store.health()}
        out = []
        for source in self.config.sources:
            if not source.enabled:
                continue
            h = health.get(source.id)
            if h is None or h.last_attempt_at is None:
                out.append(SourceStatus(source.id, source.kind, "unknown", "not collected yet", None))
            elif h.consecutive_failures > 0:
                detail = f"{h.consecutive_failures} failed collection(s) in a row: {h.last_error_message or '?'}"
                out.append(SourceStatus(source.id, source.kind, "down", detail, h.last_success_at))
            elif h.last_success_at is None or now - h.last_success_at > self.settings.source_stale_after:
                detail = (f"no successful collection since {h.last_success_at.isoformat()}"
                          if h.last_success_at else "never collected successfully")
                out.append(SourceStatus(source.id, source.kind, "stale", detail, h.last_success_at))
            else:
                out.append(SourceStatus(source.id, source.kind, "up", "", h.last_success_at))
        return out

    def source_measures(self, now: datetime) -> dict[str, set[str]]:
        if self._measures_read is None or now - self._measures_read > _MEASURES_TTL:
            self._measures = self.store.source_measures()
            self._measures_read = now
        return self._measures

    def _kpi_sources(self, kpi: str, now: datetime) -> list[str]:
        wanted = set(self.catalog.kpis[kpi].measures) if kpi in self.catalog.kpis else set()
        return sorted(s for s, measures in self.source_measures(now).items() if measures & wanted)

    # ------------------------------------------------------------------ update

    def update(self, rules: RuleSet, evaluations: Sequence[Evaluation], now: datetime) -> UpdateSummary:
        """Move every alert one step from this cycle's evaluations and the sources' health."""
        summary = UpdateSummary(Counter(), 0, 0)
        existing = {r.key: r for r in self.alerts.load()}
        changes: list[tuple[AlertRecord, AlertRecord, Transition | None]] = []

        statuses = self.source_statuses(now)
        broken = {s.source for s in statuses if s.status in ("down", "stale")}
        for status in statuses:
            if status.status == "unknown":
                continue
            record = existing.get(("source", status.source, "")) or AlertRecord(
                kind="source", rule=status.source, unit="", kpi=None, severity="critical")
            bad = status.source in broken
            if record.id is None and not bad:
                continue
            timing = self.timing(record, rules)
            assert timing is not None
            signal = Signal(status=status.status, bad=bad, clear=not bad, judged=True)
            new, transition = step(record, signal, timing, now)
            new = replace(new, snapshot={"kind": status.kind, "detail": status.detail,
                                         "last_success_at": status.last_success_at.isoformat()
                                         if status.last_success_at else None})
            changes.append((record, new, transition))

        kpi_broken: dict[str, str | None] = {}
        inhibited: Counter[str] = Counter()
        fresh: list[tuple[AlertRecord, Signal, Evaluation]] = []
        seen: set[tuple[str, str, str]] = set()
        for ev in evaluations:
            rule = rules.get(ev.rule)
            if rule is None:
                continue
            key = ("target", ev.rule, ev.unit)
            seen.add(key)
            if ev.kpi not in kpi_broken:
                kpi_broken[ev.kpi] = next((s for s in self._kpi_sources(ev.kpi, now) if s in broken), None)
            signal = Signal(status=ev.status, bad=ev.status in self.settings.fire_on, clear=ev.clear,
                            judged=ev.status in JUDGED, inhibited_by=kpi_broken[ev.kpi])
            found = existing.get(key)
            if found is None and not signal.bad:
                continue
            record = found or AlertRecord(kind="target", rule=ev.rule, unit=ev.unit, kpi=ev.kpi,
                                          severity=rule.severity)
            if signal.inhibited_by and signal.bad:
                summary.inhibited += 1
                inhibited[signal.inhibited_by] += 1
            if record.state in ("inactive", "resolved") and signal.bad and not signal.inhibited_by:
                fresh.append((record, signal, ev))
                continue
            new, transition = step(record, signal, self._rule_timing(rule), now)
            if transition is not None or new.state in ("pending", "firing") or new != record:
                changes.append((record, replace(new, snapshot=evaluation_json(ev), severity=rule.severity),
                                transition))

        for record, signal, ev, bad_since in self._bad_since(rules, fresh, now):
            rule = rules.get(record.rule)
            assert rule is not None
            new, transition = step(record, signal, self._rule_timing(rule), now, bad_since=bad_since)
            changes.append((record, replace(new, snapshot=evaluation_json(ev)), transition))

        for key, record in existing.items():
            if key[0] == "target" and key not in seen and record.state in ("pending", "firing"):
                # The rule was removed or no longer covers the unit: close quietly.
                new = replace(record, state="inactive", pending_since=None, notified_state=None)
                changes.append((record, new, Transition(record.state, "inactive", "no longer evaluated")))

        with self.engine.begin() as connection:
            for old, new, transition in changes:
                if transition is None and new == old:
                    continue
                try:
                    with connection.begin_nested():
                        self.alerts.save(connection, new, now, transition)
                except Conflict as exc:
                    summary.conflicts += 1
                    log.info("alert not updated: %s", exc)
                    continue
                if transition is not None:
                    summary.transitions[transition.to_state] += 1
        self._inhibited = inhibited
        self._publish_states(summary.inhibited)
        return summary

    def _bad_since(self, rules: RuleSet, fresh: list[tuple[AlertRecord, Signal, Evaluation]],
                   now: datetime) -> Iterable[tuple[AlertRecord, Signal, Evaluation, datetime | None]]:
        """For alerts about to go pending: was the status already bad ``for`` ago?
        Evaluation is deterministic for any as-of, so the history answers."""
        by_for: dict[timedelta, list[tuple[AlertRecord, Signal, Evaluation]]] = defaultdict(list)
        for item in fresh:
            rule = rules.get(item[0].rule)
            assert rule is not None
            resolved_at = item[0].resolved_at
            if resolved_at is not None and now - resolved_at < rule.notify.for_:
                # Resolved within `for`: history would only show the old firing; wait in real time.
                yield item[0], item[1], item[2], None
                continue
            by_for[rule.notify.for_].append(item)
        for for_, items in by_for.items():
            earlier: dict[tuple[str, str], str] = {}
            if for_ > timedelta(0):
                wanted_rules = [r for r in (rules.get(i[0].rule) for i in items) if r is not None]
                unique = list({r.id: r for r in wanted_rules}.values())
                for ev in self.evaluate_at(unique, now - for_, {i[0].unit for i in items}):
                    earlier[(ev.rule, ev.unit)] = ev.status
            for record, signal, ev in items:
                was_bad = earlier.get((record.rule, record.unit)) in self.settings.fire_on
                yield record, signal, ev, (now - for_) if was_bad else None

    def _publish_states(self, inhibited: int) -> None:
        counts = Counter((r.kind, r.state) for r in self.alerts.load(states=("pending", "firing")))
        for kind in ("target", "source"):
            for state in ("pending", "firing"):
                self.metrics.alerts.labels(kind, state).set(counts[(kind, state)])
        self.metrics.alerts_inhibited.set(inhibited)

    # ------------------------------------------------------------------ notify

    def notify(self, rules: RuleSet, now: datetime) -> NotifySummary:
        """Compose and enqueue one digest per recipient with everything due now.
        Outside every sending window nothing is composed: it waits, whole, for the next."""
        summary = NotifySummary(held=Counter())
        assert summary.held is not None
        silences = self.silences.list(now)
        self.metrics.silences_active.set(sum(1 for s in silences if s.active(now)))
        if not self.policy.is_open(now):
            summary.deferred_until = self.policy.next_open(now)
            return summary
        day = local_date(now, self.config.tz)
        per_recipient: dict[str, list[tuple[Routed, AlertRecord, ItemKind]]] = defaultdict(list)
        told: list[tuple[AlertRecord, ItemKind]] = []
        for record in self.alerts.load():
            timing = self.timing(record, rules)
            if timing is None:
                continue
            kind = due(record, timing, now)
            if kind is None:
                continue
            if record.inhibited_by:  # figures from incomplete data are not sent, reminders neither
                summary.held["inhibited"] += 1
                continue
            silence = self._silenced(record, silences, now, day)
            if silence is not None:
                summary.held["silenced"] += 1
                continue
            routes = self._routes(record, rules, kind, day)
            if not routes:
                # Kept due (not marked told): it goes out once someone can be told.
                if record.key not in self._unroutable_warned:
                    log.warning("alert %s/%s has nobody to tell: no head on the unit tree and no alerts.operators",
                                record.rule, record.unit or "-")
                    self._unroutable_warned.add(record.key)
                summary.held["unroutable"] += 1
                continue
            for routed in routes:
                per_recipient[routed.recipient.email].append((routed, record, kind))
            told.append((record, kind))
        for reason in HELD_REASONS:
            self.metrics.alerts_held.labels(reason).set(summary.held[reason])
        if not told:
            return summary
        digests = [self._digest(entries, rules, now, day) for entries in per_recipient.values()]
        messages = []
        for digest in digests:
            try:
                messages.append(self._message(digest, now))
            except ValueError as exc:  # one bad address must not hold back everyone else's mail
                log.error("no digest for %s: %s (fix the address in the unit tree or alerts config)",
                          digest.recipient.email, exc)
                summary.held["unroutable"] += 1
        try:
            with self.engine.begin() as connection:
                for key, digest, message in messages:
                    self.outbox.enqueue(connection, key=key, kind="digest", recipient=digest.recipient.email,
                                        subject=subject_of(digest), message_id=str(message["Message-ID"]),
                                        message=message.as_bytes(), now=now)
                for record, kind in told:
                    self.alerts.save(connection, notified(record, kind, now), now)
        except Conflict as exc:
            log.info("digests not sent by this instance (%s); another one is notifying", exc)
            summary.conflict = True
            return summary
        for _, kind in told:
            self.metrics.notifications.labels(kind).inc()
        summary.digests = len(messages)
        summary.items = len(told)
        return summary

    def _silenced(self, record: AlertRecord, silences: Sequence[Silence], now: datetime, day: date) -> Silence | None:
        if not silences:
            return None
        ancestors = self.units.ancestors(record.unit, day) if record.unit else ()
        sources = [record.rule] if record.kind == "source" else self._kpi_sources(record.kpi or "", now)
        return next((s for s in silences if s.active(now) and s.matches(record, ancestors, sources)), None)

    def _routes(self, record: AlertRecord, rules: RuleSet, kind: ItemKind, day: date) -> list[Routed]:
        if record.kind == "source":
            return self.router.operators()
        rule = rules.get(record.rule)
        assert rule is not None
        # A resolved notice goes to everyone who heard of the alert.
        level = record.notified_level if kind == "resolved" else record.escalation_level
        return self.router.for_target(rule, record.unit, max(level, record.escalation_level), day)

    def _digest(self, entries: list[tuple[Routed, AlertRecord, ItemKind]], rules: RuleSet, now: datetime,
                day: date) -> Digest:
        recipient = entries[0][0].recipient
        targets = tuple(self._target_item(record, kind, rules, recipient, day)
                        for _, record, kind in entries if record.kind == "target")
        sources = tuple(self._source_item(record, kind) for _, record, kind in entries if record.kind == "source")
        units = {item.unit for item in targets}
        if len(units) == 1 and not sources:
            thread = f"unit:{units.pop()}"
        elif sources and not targets:
            thread = "sources"
        else:
            thread = f"recipient:{recipient.email}"
        roles = tuple(sorted({routed.role for routed, _, _ in entries}))
        return Digest(recipient=recipient, province=self.config.province.name, created_at=now,
                      timezone=self.config.timezone, items=targets, sources=sources, thread_key=thread, roles=roles)

    def _target_item(self, record: AlertRecord, kind: ItemKind, rules: RuleSet, recipient: Recipient,
                     day: date) -> TargetItem:
        rule = rules.get(record.rule)
        assert rule is not None
        snap: dict[str, Any] = record.snapshot
        english = recipient.language == "en"
        kpi = self.catalog.kpis[rule.kpi]
        versions = self.units.versions_of(record.unit)
        unit = self.units.get(record.unit, day) or (versions[-1] if versions else None)
        unit_name = (unit.name_en if english and unit is not None and unit.name_en else
                     unit.name if unit is not None else record.unit)
        title = rule.title.en if english and rule.title and rule.title.en else (
            rule.title.vi if rule.title else (kpi.en if english else kpi.vi))
        citation = rule.citation
        return TargetItem(
            kind=kind, rule=rule.id, rule_title=title, kpi=rule.kpi, kpi_name=kpi.en if english else kpi.vi,
            unit=record.unit, unit_name=unit_name, status=str(snap.get("status", record.status)),
            severity=rule.severity, actual=_float(snap.get("actual")), expected=float(snap.get("expected", 0.0)),
            target=float(snap.get("target", rule.target)), comparator=str(snap.get("comparator", ">=")),
            gap=_float(snap.get("gap")), gap_to_target=_float(snap.get("gap_to_target")),
            deadline=_date(snap.get("deadline")) or rule.deadline,
            forecast_value=_float(snap.get("forecast_value")),
            forecast_reached_on=_date(snap.get("forecast_reached_on")),
            forecast_reachable=_bool(snap.get("forecast_reachable")),
            trend_per_year=_float(snap.get("trend_per_year")),
            citation=f"{citation.instrument} ({citation.date:%d/%m/%Y}): {citation.title}",
            citation_url=citation.url, since=record.fired_at, escalation_level=record.escalation_level,
            data_through=_datetime(snap.get("data_through")), report_url=self.config.http.report_url(record.unit))

    def _source_item(self, record: AlertRecord, kind: ItemKind) -> SourceItem:
        snap: dict[str, Any] = record.snapshot
        item_kind: Literal["firing", "reminder", "resolved"] = (
            "resolved" if kind == "resolved" else "reminder" if kind == "reminder" else "firing")
        return SourceItem(kind=item_kind, source=record.rule, source_kind=str(snap.get("kind", "")),
                          problem="stale" if record.status == "stale" else "down",
                          detail=str(snap.get("detail", "")), since=record.fired_at,
                          last_success_at=_datetime(snap.get("last_success_at")),
                          inhibited=self._inhibited[record.rule])

    def _message(self, digest: Digest, now: datetime) -> tuple[str, Digest, EmailMessage]:
        """The digest as a message, keyed so that composing it again cannot queue it twice."""
        key = f"digest:{now.isoformat()}:{digest.recipient.email}"
        sender = self.config.smtp.sender
        domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        return key, digest, compose(digest, sender=sender, domain=domain, message_key=key)

    # ------------------------------------------------------------------ operators' actions

    def acknowledge(self, rule: str, unit: str, *, by: str, reason: str, until: datetime | None,
                    now: datetime) -> AlertRecord:
        """Stop reminders and escalation of a firing alert until it resolves (or ``until``)."""
        records = [r for r in self.alerts.load(kind="target") if r.rule == rule and r.unit == unit]
        if not records:
            raise LookupError(f"no alert for rule {rule!r} and unit {unit!r} (see `egovmon alerts list`)")
        record = records[0]
        if record.state != "firing":
            raise LookupError(f"the alert for rule {rule!r} and unit {unit!r} is {record.state}, not firing")
        acked = replace(record, acked_by=by, acked_at=now, ack_reason=reason, ack_until=until)
        with self.engine.begin() as connection:
            return self.alerts.save(connection, acked, now, Transition("firing", "firing", f"acknowledged by {by}"))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else None


def _datetime(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None

