"""The alert state machine, step by step, and what is due to whom."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts.state import AlertRecord, Signal, Timing, due, escalation_level, notified, step

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
TIMING = Timing(for_=timedelta(days=1), repeat=timedelta(days=7),
                escalate_after=[timedelta(days=14), timedelta(days=30)], flap_threshold=4,
                flap_window=timedelta(days=1))
BEHIND = Signal(status="behind", bad=True, clear=False, judged=True)
AT_RISK = Signal(status="at_risk", bad=False, clear=False, judged=True)  # inside the hysteresis band
MET = Signal(status="met", bad=False, clear=True, judged=True)
STALE = Signal(status="stale", bad=False, clear=False, judged=False)


def fresh() -> AlertRecord:
    return AlertRecord(kind="target", rule="r", unit="000.00.31.H99", kpi="k")


def test_pending_then_firing_after_for() -> None:
    record, transition = step(fresh(), BEHIND, TIMING, T0)
    assert (record.state, transition and transition.to_state) == ("pending", "pending")
    record, transition = step(record, BEHIND, TIMING, T0 + timedelta(hours=23))
    assert record.state == "pending" and transition is None
    record, transition = step(record, BEHIND, TIMING, T0 + timedelta(days=1))
    assert record.state == "firing" and transition is not None and transition.from_state == "pending"
    assert record.fired_at == T0 + timedelta(days=1)


def test_pending_that_recovers_never_fires_or_notifies() -> None:
    record, _ = step(fresh(), BEHIND, TIMING, T0)
    record, transition = step(record, AT_RISK, TIMING, T0 + timedelta(hours=2))
    assert record.state == "inactive" and transition is not None
    assert due(record, TIMING, T0 + timedelta(hours=2)) is None


def test_history_that_was_already_bad_fires_at_once() -> None:
    record, transition = step(fresh(), BEHIND, TIMING, T0, bad_since=T0 - timedelta(days=1))
    assert record.state == "firing" and transition is not None and transition.to_state == "firing"
    assert record.pending_since == T0 - timedelta(days=1)


def test_hysteresis_keeps_firing_until_clear() -> None:
    record, _ = step(fresh(), BEHIND, TIMING, T0, bad_since=T0 - timedelta(days=2))
    record, transition = step(record, AT_RISK, TIMING, T0 + timedelta(hours=1))
    assert record.state == "firing" and transition is None
    record, transition = step(record, MET, TIMING, T0 + timedelta(hours=2))
    assert record.state == "resolved" and transition is not None
    assert record.resolved_at == T0 + timedelta(hours=2)


def test_stale_and_inhibited_hold_the_state() -> None:
    firing, _ = step(fresh(), BEHIND, TIMING, T0, bad_since=T0 - timedelta(days=2))
    held, transition = step(firing, STALE, TIMING, T0 + timedelta(hours=1))
    assert held.state == "firing" and transition is None
    inhibited = Signal(status="met", bad=False, clear=True, judged=True, inhibited_by="qlvb")
    held, transition = step(firing, inhibited, TIMING, T0 + timedelta(hours=1))
    assert held.state == "firing" and held.inhibited_by == "qlvb" and transition is None
    fresh_inhibited = Signal(status="behind", bad=True, clear=False, judged=True, inhibited_by="qlvb")
    record, transition = step(fresh(), fresh_inhibited, TIMING, T0)
    assert record.state == "inactive" and transition is None


@pytest.mark.parametrize(("days", "level"), [(0, 0), (13, 0), (14, 1), (29, 1), (30, 2), (400, 2)])
def test_escalation_levels(days: int, level: int) -> None:
    assert escalation_level(T0, TIMING, T0 + timedelta(days=days)) == level


def test_due_firing_reminder_escalation_resolved() -> None:
    firing, _ = step(fresh(), BEHIND, TIMING, T0, bad_since=T0 - timedelta(days=1))
    assert due(firing, TIMING, T0) == "firing"
    told = notified(firing, "firing", T0)
    assert due(told, TIMING, T0 + timedelta(days=6, hours=23)) is None
    assert due(told, TIMING, T0 + timedelta(days=7)) == "reminder"
    later, _ = step(told, BEHIND, TIMING, T0 + timedelta(days=14))
    assert later.escalation_level == 1 and due(later, TIMING, T0 + timedelta(days=14)) == "escalated"
    acked = notified(later, "escalated", T0 + timedelta(days=14))
    from dataclasses import replace
    acked = replace(acked, acked_by="op", acked_at=T0 + timedelta(days=14))
    assert due(acked, TIMING, T0 + timedelta(days=40)) is None  # no reminders while acknowledged
    resolved, _ = step(acked, MET, TIMING, T0 + timedelta(days=41))
    assert resolved.acked_by is None and due(resolved, TIMING, T0 + timedelta(days=41)) == "resolved"
    closed = notified(resolved, "resolved", T0 + timedelta(days=41))
    assert due(closed, TIMING, T0 + timedelta(days=60)) is None


def test_fired_and_resolved_before_anyone_was_told_is_never_mentioned() -> None:
    firing, _ = step(fresh(), BEHIND, TIMING, T0, bad_since=T0 - timedelta(days=1))
    resolved, _ = step(firing, MET, TIMING, T0 + timedelta(hours=1))
    assert due(resolved, TIMING, T0 + timedelta(hours=1)) is None


def test_flapping_gets_one_notice_then_quiet_until_it_settles() -> None:
    record = fresh()
    now = T0
    kinds = []
    for i in range(6):  # fire, resolve, fire, resolve, … an hour apart
        signal = BEHIND if i % 2 == 0 else MET
        record, _ = step(record, signal, TIMING, now, bad_since=now - timedelta(days=1))
        kind = due(record, TIMING, now)
        if kind is not None:
            kinds.append(kind)
            record = notified(record, kind, now)
        now += timedelta(hours=1)
    assert kinds == ["firing", "resolved", "firing", "flapping"]
    assert record.flapping
    # A day later the flips have aged out: the state is told once more.
    record, _ = step(record, BEHIND, TIMING, now + timedelta(days=1), bad_since=now)
    assert not record.flapping
    assert due(record, TIMING, now + timedelta(days=1)) == "firing"


def test_a_flap_that_settles_resolved_gets_its_resolved_notice() -> None:
    record = fresh()
    now = T0
    for i in range(5):  # fire, resolve, fire, resolve, fire: flapping
        record, _ = step(record, BEHIND if i % 2 == 0 else MET, TIMING, now, bad_since=now - timedelta(days=1))
        kind = due(record, TIMING, now)
        if kind is not None:
            record = notified(record, kind, now)
        now += timedelta(hours=1)
    record, _ = step(record, MET, TIMING, now)  # and it stays fixed
    assert record.flapping and record.notified_state == "flapping"
    record, _ = step(record, MET, TIMING, now + timedelta(days=1, hours=1))
    assert not record.flapping
    assert due(record, TIMING, now + timedelta(days=1, hours=1)) == "resolved"
