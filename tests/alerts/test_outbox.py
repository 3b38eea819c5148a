"""The outbox on a migrated database (SQLite, and PostgreSQL when available):
idempotent enqueue, compare-and-set claims, lease recovery, backoff, giving up."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select

from monitor.alerts.outbox import BODIES, DELIVERIES, IN_DOUBT_DETAIL, OUTBOX, Outbox, backoff
from monitor.config import RetryPolicy
from monitor.storage import create_engine_for, upgrade_database
from monitor.storage.store import Store

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
RETRY = RetryPolicy(initial=timedelta(seconds=30), max=timedelta(minutes=5), give_up_after=timedelta(days=3))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine_for(database_url)
    upgrade_database(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def outbox(engine: Engine) -> Outbox:
    return Outbox(engine, jitter=0)  # exact backoffs; jitter has a test of its own


def enqueue(outbox: Outbox, key: str, *, now: datetime = NOW, recipient: str = "head@soyte.example.vn") -> bool:
    return outbox.enqueue_now(key=key, kind="digest", recipient=recipient, subject=f"Subject {key}",
                              message_id=f"<{key}@egovmon.test>", message=f"Message {key}\r\n".encode(), now=now)


def status_of(outbox: Outbox, outbox_id: int) -> str:
    entry = outbox.get(outbox_id)
    assert entry is not None
    return entry.status


def test_enqueue_is_idempotent_by_key(outbox: Outbox, engine: Engine) -> None:
    assert enqueue(outbox, "digest:a:2026-11-23") is True
    assert enqueue(outbox, "digest:a:2026-11-23", now=NOW + timedelta(hours=1)) is False
    assert enqueue(outbox, "digest:b:2026-11-23") is True
    entries = outbox.list()
    assert [e.key for e in entries] == ["digest:b:2026-11-23", "digest:a:2026-11-23"]  # newest first
    first = entries[1]
    assert (first.status, first.attempts, first.created_at, first.next_attempt_at) == ("pending", 0, NOW, NOW)
    assert outbox.message(first.id) == b"Message digest:a:2026-11-23\r\n"


def test_enqueue_belongs_to_the_callers_transaction(outbox: Outbox, engine: Engine) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), engine.begin() as connection:
        assert outbox.enqueue(connection, key="k1", kind="digest", recipient="a@b.vn", subject="s",
                              message_id="<k1@x>", message=b"m", now=NOW)
        raise Abort
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(OUTBOX)).scalar() == 0
        assert connection.execute(select(func.count()).select_from(BODIES)).scalar() == 0
    with engine.begin() as connection:
        assert outbox.enqueue(connection, key="k1", kind="digest", recipient="a@b.vn", subject="s",
                              message_id="<k1@x>", message=b"m", now=NOW)
    assert len(outbox.list()) == 1


def test_claim_takes_due_rows_once(outbox: Outbox) -> None:
    for key in ("a", "b", "c"):
        enqueue(outbox, key)
    enqueue(outbox, "later", now=NOW + timedelta(minutes=10))  # not due yet
    claimed = outbox.claim_due(NOW, limit=10, lease=LEASE)
    assert [m.key for m in claimed] == ["a", "b", "c"]
    assert [m.attempts for m in claimed] == [1, 1, 1]
    assert claimed[0].message == b"Message a\r\n" and claimed[0].message_id == "<a@egovmon.test>"
    assert claimed[0].created_at == NOW
    assert outbox.claim_due(NOW, limit=10, lease=LEASE) == []  # the compare-and-set refuses a second claim
    entry = outbox.get(claimed[0].id)
    assert entry is not None and entry.status == "sending" and entry.lease_until == NOW + LEASE
    assert [m.key for m in outbox.claim_due(NOW + timedelta(minutes=10), limit=10, lease=LEASE)] == ["later"]


def test_concurrent_claims_never_share_a_row(outbox: Outbox, engine: Engine) -> None:
    for index in range(60):
        enqueue(outbox, f"m{index:02d}")
    senders = [Outbox(engine) for _ in range(4)]

    def claim_all(sender: Outbox) -> list[int]:
        taken: list[int] = []
        for _ in range(100):  # bounded: 60 rows in batches of 3 need at most 20 rounds
            batch = sender.claim_due(NOW, limit=3, lease=LEASE)
            if not batch:
                break
            taken.extend(m.id for m in batch)
        return taken

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(claim_all, senders))
    every = [outbox_id for taken in results for outbox_id in taken]
    assert len(every) == 60
    assert len(set(every)) == 60


def test_expired_lease_is_recovered_in_doubt(outbox: Outbox) -> None:
    enqueue(outbox, "a")
    enqueue(outbox, "b")
    (a, b) = outbox.claim_due(NOW, limit=10, lease=LEASE)
    assert outbox.recover(NOW + LEASE - timedelta(seconds=1)) == 0  # the sender may still be at work
    assert outbox.mark_sent(b.id, NOW + timedelta(minutes=1), 0.2)
    later = NOW + LEASE + timedelta(seconds=1)
    assert outbox.recover(later) == 1  # only the row still in "sending"
    entry = outbox.get(a.id)
    assert entry is not None
    assert (entry.status, entry.lease_until, entry.next_attempt_at) == ("pending", None, later)
    (delivery,) = outbox.deliveries(a.id)
    assert (delivery.outcome, delivery.detail, delivery.attempted_at) == ("in_doubt", IN_DOUBT_DETAIL, later)
    assert outbox.recover(later) == 0
    (again,) = outbox.claim_due(later, limit=10, lease=LEASE)
    assert (again.id, again.attempts, again.message_id) == (a.id, 2, "<a@egovmon.test>")
    assert status_of(outbox, b.id) == "sent"


def test_backoff_doubles_then_caps(outbox: Outbox) -> None:
    enqueue(outbox, "a")
    expected_seconds = [30, 60, 120, 240, 300, 300, 300]  # initial 30s doubling, max 5 min
    now = NOW
    for attempt, seconds in enumerate(expected_seconds, start=1):
        (message,) = outbox.claim_due(now, limit=1, lease=LEASE)
        assert message.attempts == attempt
        assert outbox.mark_transient(message.id, now, "451 4.3.0 try later", 451, RETRY, 0.1) == "transient"
        entry = outbox.get(message.id)
        assert entry is not None
        assert (entry.status, entry.last_error) == ("pending", "451 4.3.0 try later")
        assert entry.next_attempt_at == now + timedelta(seconds=seconds)
        assert outbox.claim_due(entry.next_attempt_at - timedelta(seconds=1), limit=1, lease=LEASE) == []
        now = entry.next_attempt_at
    outcomes = [(d.outcome, d.code) for d in outbox.deliveries(message.id)]
    assert outcomes == [("transient", 451)] * len(expected_seconds)
    assert backoff(RETRY, 10_000) == RETRY.max  # no overflow after days of retries


def test_jitter_adds_at_most_ten_percent(engine: Engine) -> None:
    outbox = Outbox(engine, rng=random.Random(7))
    delays = []
    for index in range(20):
        enqueue(outbox, f"j{index}")
    for message in outbox.claim_due(NOW, limit=20, lease=LEASE):
        outbox.mark_transient(message.id, NOW, "timeout", None, RETRY, None)
        entry = outbox.get(message.id)
        assert entry is not None
        delays.append((entry.next_attempt_at - NOW).total_seconds())
    assert all(30 <= delay <= 33 for delay in delays)
    assert len(set(delays)) > 1  # spread out, not all equal


def test_gives_up_after_the_configured_time(outbox: Outbox) -> None:
    retry = RetryPolicy(initial=timedelta(minutes=10), max=timedelta(minutes=40), give_up_after=timedelta(hours=1))
    enqueue(outbox, "a")
    (message,) = outbox.claim_due(NOW + timedelta(minutes=59), limit=1, lease=LEASE)
    assert outbox.mark_transient(message.id, NOW + timedelta(minutes=59), "timed out", None, retry, 30.0) \
        == "transient"
    (message,) = outbox.claim_due(NOW + timedelta(minutes=69), limit=1, lease=LEASE)
    assert outbox.mark_transient(message.id, NOW + timedelta(minutes=69), "timed out", None, retry, 30.0) \
        == "expired"
    entry = outbox.get(message.id)
    assert entry is not None and entry.status == "failed"
    assert entry.last_error is not None and "gave up after 1:00:00 and 2 attempt(s)" in entry.last_error
    assert [d.outcome for d in outbox.deliveries(message.id)] == ["transient", "expired"]
    assert outbox.claim_due(NOW + timedelta(days=30), limit=10, lease=LEASE) == []


def test_permanent_failure_is_never_retried(outbox: Outbox) -> None:
    enqueue(outbox, "a")
    (message,) = outbox.claim_due(NOW, limit=1, lease=LEASE)
    assert outbox.mark_permanent(message.id, NOW, "550 5.1.1 mailbox unknown", 550, 0.05)
    assert status_of(outbox, message.id) == "failed"
    assert outbox.recover(NOW + timedelta(days=1)) == 0
    assert outbox.claim_due(NOW + timedelta(days=30), limit=10, lease=LEASE) == []
    (delivery,) = outbox.deliveries(message.id)
    assert (delivery.outcome, delivery.code, delivery.detail, delivery.duration_seconds) == \
        ("permanent", 550, "550 5.1.1 mailbox unknown", 0.05)
    assert [e.key for e in outbox.list(status="failed")] == ["a"]
    assert outbox.list(status="pending") == []


def test_marks_only_move_a_row_this_sender_holds(outbox: Outbox) -> None:
    enqueue(outbox, "a")
    (message,) = outbox.claim_due(NOW, limit=1, lease=LEASE)
    assert outbox.recover(NOW + LEASE + timedelta(seconds=1)) == 1  # another instance took it back
    assert outbox.mark_sent(message.id, NOW + LEASE + timedelta(seconds=2), 1.0) is False
    assert outbox.mark_permanent(message.id, NOW + LEASE + timedelta(seconds=2), "550", 550, 1.0) is False
    assert status_of(outbox, message.id) == "pending"
    # The attempts happened, so they are on record even though the row was not ours.
    assert [d.outcome for d in outbox.deliveries(message.id)] == ["in_doubt", "sent", "permanent"]


def test_stats_count_statuses_and_age_the_oldest_unsent(outbox: Outbox) -> None:
    empty = outbox.stats(NOW)
    assert empty.counts == {"pending": 0, "sending": 0, "sent": 0, "failed": 0}
    assert empty.oldest_age_seconds == 0
    enqueue(outbox, "a", now=NOW - timedelta(hours=2))
    enqueue(outbox, "b", now=NOW - timedelta(hours=1))
    enqueue(outbox, "c", now=NOW - timedelta(minutes=30))
    enqueue(outbox, "d", now=NOW - timedelta(minutes=10))
    a, b, c = outbox.claim_due(NOW - timedelta(minutes=20), limit=3, lease=LEASE)
    outbox.mark_sent(a.id, NOW, 0.1)
    outbox.mark_permanent(b.id, NOW, "554 rejected", 554, 0.1)
    stats = outbox.stats(NOW)
    assert stats.counts == {"pending": 1, "sending": 1, "sent": 1, "failed": 1}
    assert stats.oldest_age_seconds == 30 * 60  # c, still sending
    outbox.mark_sent(c.id, NOW, 0.1)
    assert outbox.stats(NOW).oldest_age_seconds == 10 * 60  # d, pending


def test_the_body_is_stored_once_and_never_replaced(outbox: Outbox, engine: Engine) -> None:
    body = "Tỷ lệ hồ sơ\r\n".encode() * 2000  # ~40 KB, as large as a big digest
    assert outbox.enqueue_now(key="k", kind="digest", recipient="a@b.vn", subject="s", message_id="<k@x>",
                              message=body, now=NOW)
    assert not outbox.enqueue_now(key="k", kind="digest", recipient="a@b.vn", subject="s", message_id="<k2@x>",
                                  message=b"another", now=NOW)  # same key: ignored, body and all
    (claimed,) = outbox.claim_due(NOW, limit=10, lease=LEASE)
    assert claimed.message == body and claimed.message_id == "<k@x>"
    outbox.mark_transient(claimed.id, NOW, "421 busy", 421, RETRY, 0.1)
    (again,) = outbox.claim_due(NOW + timedelta(hours=1), limit=10, lease=LEASE)
    assert (again.id, again.message, again.message_id, again.attempts) == (claimed.id, body, "<k@x>", 2)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(BODIES)).scalar() == 1


def test_pruning_removes_old_sent_messages_with_their_bodies_and_attempts(outbox: Outbox, engine: Engine) -> None:
    old, recent = NOW - timedelta(days=100), NOW - timedelta(days=5)
    ids = {}
    for key in ("sent-old-1", "sent-old-2", "sent-old-3", "sent-recent", "pending-old", "failed-old"):
        enqueue(outbox, key, now=old)
    for message in outbox.claim_due(old, limit=10, lease=LEASE):
        ids[message.key] = message.id
        if message.key.startswith("sent"):
            outbox.mark_sent(message.id, recent if message.key == "sent-recent" else old, 0.1)
        elif message.key.startswith("failed"):
            outbox.mark_permanent(message.id, old, "550 no such user", 550, 0.1)
        else:
            outbox.mark_transient(message.id, old, "421 busy", 421, RETRY, 0.1)

    assert Store(outbox.engine).prune_outbox(NOW - timedelta(days=90), batch=2) == 3  # two batches

    kept = {"sent-recent", "pending-old", "failed-old"}
    with engine.connect() as connection:
        assert set(connection.execute(select(OUTBOX.c.key)).scalars()) == kept
        assert set(connection.execute(select(BODIES.c.outbox_id)).scalars()) == {ids[key] for key in kept}
        assert set(connection.execute(select(DELIVERIES.c.outbox_id)).scalars()) == {ids[key] for key in kept}
    for key in kept:
        assert outbox.message(ids[key]) == f"Message {key}\r\n".encode()
    assert outbox.message(ids["sent-old-1"]) is None
    assert Store(outbox.engine).prune_outbox(NOW - timedelta(days=90), batch=2) == 0


def test_mark_sent_stores_the_moment_as_every_other_write_does(outbox: Outbox) -> None:
    # mark_sent writes through the driver on SQLite: the moment must come back, and compare,
    # exactly as the moments SQLAlchemy writes (aware UTC, microseconds kept).
    hanoi = timezone(timedelta(hours=7))
    enqueue(outbox, "a")
    (message,) = outbox.claim_due(NOW, limit=1, lease=LEASE)
    at = datetime(2026, 11, 23, 9, 0, 5, 123456, tzinfo=hanoi)  # 02:00:05.123456 UTC
    assert outbox.mark_sent(message.id, at, 0.25, detail="accepted, except for x@y: 550 no")
    entry = outbox.get(message.id)
    assert entry is not None and (entry.status, entry.sent_at, entry.lease_until) == ("sent", at, None)
    assert entry.sent_at.utcoffset() == timedelta(0)
    (record,) = outbox.deliveries(message.id)
    assert (record.outcome, record.attempted_at, record.code, record.detail, record.duration_seconds) == (
        "sent", at, 250, "accepted, except for x@y: 550 no", 0.25)
    assert Store(outbox.engine).prune_outbox(at, batch=10) == 0  # sent_at < at is false: compared as moments
    assert Store(outbox.engine).prune_outbox(at + timedelta(microseconds=1), batch=10) == 1
