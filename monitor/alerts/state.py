"""The life of one alert, as pure functions over its record.

    inactive ──bad──▶ pending ──bad for `for`──▶ firing ──clear──▶ resolved
        ▲                │ not bad                  │ (hysteresis: met, or on track
        └────────────────┘                          │  by the rule's resolve_margin)
                                                    └─ escalation level grows with time firing

"Bad" is an evaluation status the configuration fires on (behind, missed by
default). A firing alert resolves only when the evaluation says ``clear``, so a
unit hovering at the line does not flap. Statuses that do not judge the unit
(stale, no_data) and inhibition by a broken source hold the alert where it is:
the service never raises or resolves an alert from data it knows is incomplete.

What the recipients were last told (``notified_state``, ``notified_at``,
``notified_level``) is kept beside the state, so what is due is derived from
the record at any time — after a restart, a silence ending or a night outside
the sending window — and nothing depends on catching a transition in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from monitor.alerts.model import AlertState, ItemKind


@dataclass(frozen=True)
class AlertRecord:
    kind: Literal["target", "source"]
    rule: str  # the rule id, or the source id for a source alert
    unit: str  # "" for a source alert
    kpi: str | None
    state: AlertState = "inactive"
    status: str = ""
    severity: str = "warning"
    pending_since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    escalation_level: int = 0
    notified_state: str | None = None  # firing | resolved | flapping
    notified_at: datetime | None = None
    notified_level: int = 0
    notify_count: int = 0
    acked_by: str | None = None
    acked_at: datetime | None = None
    ack_reason: str | None = None
    ack_until: datetime | None = None
    flips: tuple[datetime, ...] = ()
    flapping: bool = False
    inhibited_by: str | None = None
    snapshot: dict[str, object] = field(default_factory=dict)
    id: int | None = None
    version: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.rule, self.unit)

    def acknowledged(self, now: datetime) -> bool:
        return self.acked_at is not None and (self.ack_until is None or now < self.ack_until)


@dataclass(frozen=True)
class Signal:
    """What this cycle says about the alert."""

    status: str
    bad: bool  # a status the configuration fires on
    clear: bool  # good enough to resolve (with the rule's hysteresis)
    judged: bool  # False for stale / no_data: hold the state
    inhibited_by: str | None = None  # a source down or stale that the alert depends on


@dataclass(frozen=True)
class Timing:
    for_: timedelta  # bad this long before firing
    repeat: timedelta  # reminder interval while firing
    escalate_after: Sequence[timedelta] = ()  # time firing before each escalation step
    flap_threshold: int = 4
    flap_window: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class Transition:
    from_state: AlertState
    to_state: AlertState
    detail: str | None = None


def step(record: AlertRecord, signal: Signal, timing: Timing, now: datetime,
         *, bad_since: datetime | None = None) -> tuple[AlertRecord, Transition | None]:
    """The record after this cycle, and the state change if there was one.

    ``bad_since`` lets the caller say how long the status has already been bad
    (from re-evaluating history) so a fresh install with backfilled data does not
    wait ``for`` in wall-clock time to learn what the data already shows.
    """
    held = signal.inhibited_by is not None or not signal.judged
    updated = replace(record, status=signal.status, inhibited_by=signal.inhibited_by)
    if held:
        return updated, None
    state = record.state
    if state in ("inactive", "resolved"):
        if not signal.bad:
            # Flips age out while resolved too, so a flap that settles resolved is told so.
            flips = _recent(record.flips, timing, now)
            return replace(updated, flips=flips, flapping=len(flips) >= timing.flap_threshold), None
        since = min(bad_since, now) if bad_since else now
        updated = replace(updated, state="pending", pending_since=since)
        if now - since < timing.for_:
            return updated, Transition(state, "pending")
        return _fire(updated, timing, now), Transition(state, "firing")
    if state == "pending":
        if not signal.bad:
            return replace(updated, state="inactive", pending_since=None), Transition("pending", "inactive")
        assert record.pending_since is not None
        if now - record.pending_since >= timing.for_:
            return _fire(updated, timing, now), Transition("pending", "firing")
        return updated, None
    # firing
    if signal.clear:
        flips = _recent((*record.flips, now), timing, now)
        resolved = replace(updated, state="resolved", resolved_at=now, pending_since=None, flips=flips,
                           flapping=len(flips) >= timing.flap_threshold, acked_at=None, acked_by=None,
                           ack_reason=None, ack_until=None)
        return resolved, Transition("firing", "resolved")
    level = escalation_level(record.fired_at or now, timing, now)
    flips = _recent(record.flips, timing, now)
    return replace(updated, escalation_level=level, flips=flips,
                   flapping=len(flips) >= timing.flap_threshold), None


def _fire(record: AlertRecord, timing: Timing, now: datetime) -> AlertRecord:
    flips = _recent((*record.flips, now), timing, now)
    return replace(record, state="firing", fired_at=now, resolved_at=None, escalation_level=0, flips=flips,
                   flapping=len(flips) >= timing.flap_threshold)


def _recent(flips: tuple[datetime, ...], timing: Timing, now: datetime) -> tuple[datetime, ...]:
    return tuple(t for t in flips if now - t < timing.flap_window)


def escalation_level(fired_at: datetime, timing: Timing, now: datetime) -> int:
    """How many escalation steps the time spent firing has reached."""
    return sum(1 for after in timing.escalate_after if now - fired_at >= after)


def due(record: AlertRecord, timing: Timing, now: datetime) -> ItemKind | None:
    """What the recipients should hear about this alert now, if anything.

    A flapping alert gets one notice and then nothing until it settles; an
    alert that fired and resolved before anyone was told is never mentioned
    (free flap suppression, as Alertmanager's group_wait gives).
    """
    told = record.notified_state
    if record.flapping and record.state in ("firing", "resolved"):
        return "flapping" if told != "flapping" else None
    if record.state == "firing":
        if told != "firing":
            return "escalated" if record.escalation_level > 0 else "firing"
        if record.acknowledged(now):
            return None
        if record.escalation_level > record.notified_level:
            return "escalated"
        if record.notified_at is not None and now - record.notified_at >= timing.repeat:
            return "reminder"
        return None
    if told in ("firing", "flapping"):
        return "resolved"
    return None


def notified(record: AlertRecord, kind: ItemKind, now: datetime) -> AlertRecord:
    """The record once a notice of ``kind`` has been put in the outbox."""
    told = {"firing": "firing", "reminder": "firing", "escalated": "firing", "resolved": "resolved",
            "flapping": "flapping"}[kind]
    return replace(record, notified_state=told, notified_at=now, notified_level=record.escalation_level,
                   notify_count=record.notify_count + 1)
