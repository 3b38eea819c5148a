"""The persistent outbox: every message is stored complete before any attempt
to send it, and every attempt is recorded.

A message moves ``pending → sending → sent | failed`` (or back to ``pending``
after a transient failure). Every move is a compare-and-set on ``status``, so
two senders — two instances, or one restarted after a crash — never both send
the same row. A sender that dies mid-send leaves its row in ``sending`` with a
lease; once the lease runs out, :meth:`Outbox.recover` puts the row back to
``pending`` and records the attempt as ``in_doubt``: the message may or may not
have reached the server, and the retry carries the same Message-ID so the
receiving side can recognise a duplicate. Delivery is therefore at least once.

The message itself is stored once, in ``outbox_bodies``, next to the row whose
status moves: a status move then rewrites a small row instead of the whole message.
"""

from __future__ import annotations

import builtins
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from monitor.alerts.model import OUTBOX_STATUSES, DeliveryOutcome, OutboxStatus
from monitor.config import RetryPolicy
from monitor.storage.models import DeliveryRow, OutboxBodyRow, OutboxRow, sqlite_time

log = logging.getLogger(__name__)

OUTBOX: Table = OutboxRow.__table__  # type: ignore[assignment]
BODIES: Table = OutboxBodyRow.__table__  # type: ignore[assignment]
DELIVERIES: Table = DeliveryRow.__table__  # type: ignore[assignment]
IN_DOUBT_DETAIL = ("the sender stopped while this message was being handed over; "
                   "sending again with the same Message-ID")
LOST_LEASE = ("outbox: message %d was no longer held by this sender (its lease ran out); "
              "its state is left to the sender that holds it now")
DEFAULT_JITTER = 0.1  # up to 10 % added to each backoff, so retries of a batch spread out
# On SQLite mark_sent's two statements (``_move`` to sent and ``_record``, the same guard)
# go straight to the driver: SQLAlchemy's execution layer cost three times the statements
# themselves, on the path of every message sent (benchmarks/email.py).
_SQLITE_SENT = ("UPDATE outbox SET lease_until = NULL, status = 'sent', sent_at = ?, last_error = NULL "
                "WHERE id = ? AND status = 'sending'")
_SQLITE_RECORD = ("INSERT INTO deliveries (outbox_id, attempted_at, outcome, code, detail, duration_seconds) "
                  "VALUES (?, ?, 'sent', ?, ?, ?)")
# claim_due's statements, built once too (it runs once per batch).
_DUE = select(OUTBOX.c.id).where(OUTBOX.c.status == "pending", OUTBOX.c.next_attempt_at <= bindparam("now")).order_by(
    OUTBOX.c.id).limit(bindparam("limit"))
_CLAIM = update(OUTBOX).where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)), OUTBOX.c.status == "pending").values(
    status="sending", lease_until=bindparam("lease_until"), attempts=OUTBOX.c.attempts + 1).returning(
    OUTBOX.c.id, OUTBOX.c.key, OUTBOX.c.recipient, OUTBOX.c.message_id, OUTBOX.c.attempts, OUTBOX.c.created_at)
_CLAIMED_BODIES = select(BODIES.c.outbox_id, BODIES.c.message).where(
    BODIES.c.outbox_id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True)
class ClaimedMessage:
    """A message this sender now holds (status ``sending``) until it marks the outcome."""

    id: int
    key: str
    recipient: str
    message_id: str
    message: bytes = field(repr=False)
    attempts: int  # including the one now under way
    created_at: datetime


@dataclass(frozen=True)
class OutboxEntry:
    """A stored message without its body, for the CLI and the HTTP API."""

    id: int
    key: str
    kind: str
    recipient: str
    subject: str
    message_id: str
    created_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    last_error: str | None
    sent_at: datetime | None


@dataclass(frozen=True)
class DeliveryRecord:
    """One recorded attempt to hand one message to the SMTP server."""

    id: int
    outbox_id: int
    attempted_at: datetime
    outcome: str
    code: int | None
    detail: str | None
    duration_seconds: float | None


@dataclass(frozen=True)
class OutboxStats:
    counts: dict[OutboxStatus, int]  # every status, 0 when none
    oldest_age_seconds: float  # of the oldest message not yet accepted (pending or sending); 0 when none


def backoff(policy: RetryPolicy, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: ``initial`` doubling up to ``max``."""
    # In float seconds with a capped exponent: over days of retries 2**attempts would
    # overflow a timedelta long before the cap applies.
    exponent = min(max(attempts - 1, 0), 60)
    seconds = min(policy.initial.total_seconds() * 2.0 ** exponent, policy.max.total_seconds())
    return timedelta(seconds=seconds)


class Outbox:
    def __init__(self, engine: Engine, *, jitter: float = DEFAULT_JITTER,
                 rng: random.Random | None = None) -> None:
        self.engine = engine
        self.jitter = jitter
        self._rng = rng or random.Random()  # spreads retries; not a security use
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # ------------------------------------------------------------------ enqueue

    def enqueue(self, connection: Connection, *, key: str, kind: str, recipient: str, subject: str,
                message_id: str, message: bytes, now: datetime) -> bool:
        """Store a pending message inside the caller's transaction (so the message
        exists exactly when the state change that caused it is committed). A second
        enqueue with the same ``key`` is ignored; return True when the row is new."""
        statement = self._insert(OUTBOX).values(
            key=key, kind=kind, recipient=recipient, subject=subject, message_id=message_id,
            created_at=now, status="pending", attempts=0, next_attempt_at=now,
        ).on_conflict_do_nothing(index_elements=["key"]).returning(OUTBOX.c.id)
        # RETURNING rather than rowcount: with RETURNING, PostgreSQL drivers report no rowcount.
        row = connection.execute(statement).first()
        if row is None:
            return False
        # The body in the same transaction: the row is never visible without it.
        connection.execute(insert(BODIES).values(outbox_id=row.id, message=message))
        return True

    def enqueue_now(self, *, key: str, kind: str, recipient: str, subject: str, message_id: str,
                    message: bytes, now: datetime) -> bool:
        """:meth:`enqueue` in a transaction of its own."""
        with self.engine.begin() as connection:
            return self.enqueue(connection, key=key, kind=kind, recipient=recipient, subject=subject,
                                message_id=message_id, message=message, now=now)

    # ------------------------------------------------------------------ sending

    def recover(self, now: datetime) -> int:
        """Put back to pending the rows whose sender's lease ran out; return how many."""
        recovered = 0
        with self.engine.begin() as connection:
            ids = connection.execute(select(OUTBOX.c.id).where(
                OUTBOX.c.status == "sending", OUTBOX.c.lease_until < now).order_by(OUTBOX.c.id)).scalars().all()
            for outbox_id in ids:
                # Guarded again: another instance may have recovered (and re-claimed) it meanwhile.
                result = connection.execute(update(OUTBOX).where(
                    OUTBOX.c.id == outbox_id, OUTBOX.c.status == "sending", OUTBOX.c.lease_until < now,
                ).values(status="pending", lease_until=None, next_attempt_at=now, last_error=IN_DOUBT_DETAIL))
                if result.rowcount == 1:
                    self._record(connection, outbox_id, now, "in_doubt", None, IN_DOUBT_DETAIL, None)
                    recovered += 1
        if recovered:
            log.warning("outbox: %d message(s) left mid-send by a stopped sender are queued again", recovered)
        return recovered

    def claim_due(self, now: datetime, *, limit: int, lease: timedelta) -> builtins.list[ClaimedMessage]:
        """Take up to ``limit`` due messages, oldest first. Each is claimed by a
        compare-and-set, so a row another sender took in between is skipped."""
        with self.engine.begin() as connection:
            candidates = connection.execute(_DUE, {"now": now, "limit": limit}).scalars().all()
            if not candidates:
                return []
            # One statement claims the lot (a statement per row cost more than sending the
            # message): the status guard is the compare-and-set, row by row, so a row
            # another sender took in between is skipped.
            rows = connection.execute(_CLAIM, {"ids": candidates, "lease_until": now + lease}).all()
            if not rows:
                return []
            # The bodies of the rows claimed, in the same transaction (an UPDATE … RETURNING
            # cannot join, and the bodies are never updated).
            bodies = dict(connection.execute(_CLAIMED_BODIES, {"ids": [row.id for row in rows]}).all())
        return [ClaimedMessage(id=row.id, key=row.key, recipient=row.recipient, message_id=row.message_id,
                               message=bytes(bodies[row.id]), attempts=row.attempts, created_at=row.created_at)
                for row in sorted(rows, key=lambda row: row.id)]

    def mark_sent(self, outbox_id: int, now: datetime, duration: float, *, code: int | None = 250,
                  detail: str | None = None) -> bool:
        """The server accepted the message. Return False when the row was no longer
        ours (its lease ran out and it was recovered); the attempt is recorded anyway."""
        with self.engine.begin() as connection:
            if self.engine.dialect.name != "sqlite":
                applied = self._move(connection, outbox_id, status="sent", sent_at=now, last_error=None)
                self._record(connection, outbox_id, now, "sent", code, detail, duration)
                return applied
            # In SQLAlchemy's transaction (it commits, or rolls back on an error).
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                at = sqlite_time(now)
                moved: bool = cursor.execute(_SQLITE_SENT, (at, outbox_id)).rowcount == 1
                cursor.execute(_SQLITE_RECORD, (outbox_id, at, code, detail, duration))
            finally:
                cursor.close()
        if not moved:
            log.warning(LOST_LEASE, outbox_id)
        return moved

    def mark_transient(self, outbox_id: int, now: datetime, error: str, code: int | None, retry: RetryPolicy,
                       duration: float | None) -> Literal["transient", "expired"]:
        """A failure worth retrying: back to pending after a backoff — unless the message
        has waited ``give_up_after`` already, then it fails as ``expired``. Return the
        outcome recorded."""
        with self.engine.begin() as connection:
            row = connection.execute(select(OUTBOX.c.attempts, OUTBOX.c.created_at).where(
                OUTBOX.c.id == outbox_id)).first()
            if row is None:
                raise KeyError(f"no outbox message {outbox_id}")
            if now - row.created_at >= retry.give_up_after:
                detail = f"gave up after {retry.give_up_after} and {row.attempts} attempt(s); last error: {error}"
                self._move(connection, outbox_id, status="failed", last_error=detail)
                self._record(connection, outbox_id, now, "expired", code, detail, duration)
                return "expired"
            delay = backoff(retry, row.attempts)
            delay += delay * (self._rng.random() * self.jitter)
            self._move(connection, outbox_id, status="pending", next_attempt_at=now + delay, last_error=error)
            self._record(connection, outbox_id, now, "transient", code, error, duration)
            return "transient"

    def mark_permanent(self, outbox_id: int, now: datetime, error: str, code: int | None,
                       duration: float | None) -> bool:
        """The server refused the message for good: failed, never retried."""
        with self.engine.begin() as connection:
            applied = self._move(connection, outbox_id, status="failed", last_error=error)
            self._record(connection, outbox_id, now, "permanent", code, error, duration)
        return applied

    def _move(self, connection: Connection, outbox_id: int, **values: Any) -> bool:
        """Leave ``sending``; guarded so a row recovered by another sender is not overwritten."""
        result = connection.execute(update(OUTBOX).where(
            OUTBOX.c.id == outbox_id, OUTBOX.c.status == "sending").values(lease_until=None, **values))
        if result.rowcount != 1:
            log.warning(LOST_LEASE, outbox_id)
            return False
        return True

    @staticmethod
    def _record(connection: Connection, outbox_id: int, now: datetime, outcome: DeliveryOutcome,
                code: int | None, detail: str | None, duration: float | None) -> None:
        connection.execute(insert(DELIVERIES).values(
            outbox_id=outbox_id, attempted_at=now, outcome=outcome, code=code, detail=detail,
            duration_seconds=duration))

    # ------------------------------------------------------------------ reading

    def stats(self, now: datetime) -> OutboxStats:
        with self.engine.connect() as connection:
            counted: dict[str, int] = {status: count for status, count in connection.execute(
                select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status))}
            oldest = connection.execute(select(func.min(OUTBOX.c.created_at)).where(
                OUTBOX.c.status.in_(("pending", "sending")))).scalar()
        counts: dict[OutboxStatus, int] = {status: int(counted.get(status, 0)) for status in OUTBOX_STATUSES}
        age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        return OutboxStats(counts=counts, oldest_age_seconds=age)

    def get(self, outbox_id: int) -> OutboxEntry | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(*_ENTRY_COLUMNS).where(OUTBOX.c.id == outbox_id)).first()
        return OutboxEntry(**row._asdict()) if row is not None else None

    def message(self, outbox_id: int) -> bytes | None:
        """The stored RFC 5322 message, exactly as it is (or was) sent."""
        with self.engine.connect() as connection:
            value = connection.execute(select(BODIES.c.message).where(BODIES.c.outbox_id == outbox_id)).scalar()
        return bytes(value) if value is not None else None

    def list(self, status: str | None = None, limit: int = 100) -> builtins.list[OutboxEntry]:
        """The newest messages first, optionally of one status."""
        query = select(*_ENTRY_COLUMNS).order_by(OUTBOX.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(OUTBOX.c.status == status)
        with self.engine.connect() as connection:
            return [OutboxEntry(**row._asdict()) for row in connection.execute(query)]

    def deliveries(self, outbox_id: int) -> builtins.list[DeliveryRecord]:
        """Every attempt for one message, in order."""
        query = select(DELIVERIES).where(DELIVERIES.c.outbox_id == outbox_id).order_by(DELIVERIES.c.id)
        with self.engine.connect() as connection:
            return [DeliveryRecord(**row._asdict()) for row in connection.execute(query)]


_ENTRY_COLUMNS = [OUTBOX.c[name] for name in OutboxEntry.__dataclass_fields__]
