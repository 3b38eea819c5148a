"""Tables. Every timestamp is aware UTC in Python; ``UTCDateTime`` keeps it so
on SQLite, which would otherwise hand back naive values."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime given to the database: {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sqlite_time(moment: datetime) -> str:
    """What :class:`UTCDateTime` stores on SQLite, for statements sent to the driver
    directly: naive UTC text with microseconds. Queries compare these strings, so the
    format must be exactly SQLAlchemy's (tests/storage/test_upsert_write_path.py checks it)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime given to the database: {moment!r}")
    utc = moment.astimezone(UTC)
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} {utc.hour:02d}:{utc.minute:02d}:"
            f"{utc.second:02d}.{utc.microsecond:06d}")


Id = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ObservationRow(Base):
    """A measure's value for one unit and period, from one source (upserted)."""

    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("measure", "unit", "period_start", "period_end", "source",
                         name="uq_observations_key"),
        Index("ix_observations_window", "measure", "period_start"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    measure: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(35))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    raw_ref: Mapped[str | None] = mapped_column(Text)


class WatermarkRow(Base):
    """Where a source's next collection resumes: the start of the first period
    not yet final (periods stay open for re-collection until they settle)."""

    __tablename__ = "watermarks"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    resume_from: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SourceHealthRow(Base):
    __tablename__ = "source_health"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_reason: Mapped[str | None] = mapped_column(String(32))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_duration_seconds: Mapped[float | None] = mapped_column(Float)
    last_observations: Mapped[int] = mapped_column(Integer, default=0)
    last_rejections: Mapped[int] = mapped_column(Integer, default=0)


class RejectionRow(Base):
    """A record a source sent that was not stored, with the reason, for the operator."""

    __tablename__ = "rejections"
    __table_args__ = (Index("ix_rejections_source_time", "source", "rejected_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    rejected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(String(35))
    measure: Mapped[str | None] = mapped_column(String(64))
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    raw_ref: Mapped[str | None] = mapped_column(Text)


class CollectionRunRow(Base):
    """One collection of one source: what was asked, what came back."""

    __tablename__ = "collection_runs"
    __table_args__ = (Index("ix_collection_runs_source_time", "source", "started_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # running, ok, failed
    periods_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    periods_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    observations: Mapped[int] = mapped_column(Integer, default=0)
    rejections: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class EvaluationRow(Base):
    """One target rule evaluated for one unit, as of one day (the province's
    calendar). Re-evaluating the same day replaces the row, so the table keeps one
    evaluation per rule, unit and day: a history that can be re-derived."""

    __tablename__ = "evaluations"
    __table_args__ = (
        UniqueConstraint("rule", "unit", "as_of_day", name="uq_evaluations_key"),
        Index("ix_evaluations_day", "as_of_day"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(100))
    kpi: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(35))
    as_of_day: Mapped[date] = mapped_column(Date)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    window: Mapped[str] = mapped_column(String(32))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    actual: Mapped[float | None] = mapped_column(Float)
    numerator: Mapped[float] = mapped_column(Float)
    denominator: Mapped[float] = mapped_column(Float)
    units_reporting: Mapped[int] = mapped_column(Integer)
    comparator: Mapped[str] = mapped_column(String(2))
    target: Mapped[float] = mapped_column(Float)
    expected: Mapped[float] = mapped_column(Float)
    gap: Mapped[float | None] = mapped_column(Float)
    gap_to_target: Mapped[float | None] = mapped_column(Float)
    deadline: Mapped[date] = mapped_column(Date)
    baseline_value: Mapped[float | None] = mapped_column(Float)
    baseline_date: Mapped[date | None] = mapped_column(Date)
    data_through: Mapped[datetime | None] = mapped_column(UTCDateTime)
    forecast_value: Mapped[float | None] = mapped_column(Float)
    forecast_reached_on: Mapped[date | None] = mapped_column(Date)
    forecast_reachable: Mapped[bool | None] = mapped_column(Boolean)
    forecast_points: Mapped[int] = mapped_column(Integer)
    trend_per_year: Mapped[float | None] = mapped_column(Float)
    clear: Mapped[bool] = mapped_column(Boolean)
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ScoreRow(Base):
    """A unit's composite index score and rank within its group, as of one day."""

    __tablename__ = "scores"
    __table_args__ = (
        UniqueConstraint("index_id", "unit", "as_of_day", name="uq_scores_key"),
        Index("ix_scores_day", "as_of_day"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    index_id: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(35))
    as_of_day: Mapped[date] = mapped_column(Date)
    unit_group: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(32))
    score: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)
    scaled: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    rank_size: Mapped[int] = mapped_column(Integer)
    complete: Mapped[bool] = mapped_column(Boolean)
    criteria: Mapped[str] = mapped_column(Text)  # JSON: criterion id → points
    missing: Mapped[str] = mapped_column(Text)  # JSON list of KPI ids without data
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertRow(Base):
    """The alert state of one (rule, unit) — or of one source (``kind`` "source",
    ``rule`` the source id, ``unit`` empty) — and what its recipients were last told.

    Every change is a compare-and-set on ``version``: two instances, or a re-run after
    a crash, can never both move the same alert or both notify it.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("kind", "rule", "unit", name="uq_alerts_key"),
        Index("ix_alerts_state", "state"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # target | source
    rule: Mapped[str] = mapped_column(String(100))
    unit: Mapped[str] = mapped_column(String(35))
    kpi: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # inactive | pending | firing | resolved
    status: Mapped[str] = mapped_column(String(16))  # the evaluation status (or down/stale/up)
    severity: Mapped[str] = mapped_column(String(16))
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    notified_state: Mapped[str | None] = mapped_column(String(16))  # firing | resolved
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notified_level: Mapped[int] = mapped_column(Integer, default=0)
    notify_count: Mapped[int] = mapped_column(Integer, default=0)
    acked_by: Mapped[str | None] = mapped_column(String(200))
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ack_reason: Mapped[str | None] = mapped_column(Text)
    ack_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    flips: Mapped[str] = mapped_column(Text, default="[]")  # JSON: recent firing/resolved times
    flapping: Mapped[bool] = mapped_column(Boolean, default=False)
    inhibited_by: Mapped[str | None] = mapped_column(String(64))
    snapshot: Mapped[str] = mapped_column(Text, default="{}")  # JSON: the latest evaluation
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertTransitionRow(Base):
    """Audit trail: every state change of every alert."""

    __tablename__ = "alert_transitions"
    __table_args__ = (Index("ix_alert_transitions_alert", "alert_id", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(Id)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)


class SilenceRow(Base):
    """Mutes the alerts it matches (every given matcher must match) from
    ``starts_at`` to ``ends_at``; ``expired_at`` is set when lifted early."""

    __tablename__ = "silences"
    __table_args__ = (Index("ix_silences_ends", "ends_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    rule: Mapped[str | None] = mapped_column(String(100))
    unit: Mapped[str | None] = mapped_column(String(35))
    kpi: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(64))
    subtree: Mapped[bool] = mapped_column(Boolean, default=False)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxRow(Base):
    """A message, stored complete before any attempt to send it (its body in
    :class:`OutboxBodyRow`, written in the same transaction).

    ``key`` makes enqueueing idempotent. The sender claims a row by moving it
    from pending to sending with a lease (compare-and-set); a lease that runs out
    (the sender died) puts the row back to pending, and the retry carries the same
    Message-ID so a receiving system can recognise it.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("key", name="uq_outbox_key"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # digest | source | report
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # pending | sending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxBodyRow(Base):
    """The whole RFC 5322 message of an outbox row, written once and never updated.

    Kept apart from the row's status because every move (claim, sent, retry) rewrites
    the row: with a ~20 KB body inline, SQLite rewrote the body and its overflow pages
    each time, which doubled the database's share of sending a message. Deleted with
    its row: by ON DELETE CASCADE on PostgreSQL, explicitly in the same transaction
    on SQLite (which does not enforce foreign keys here).
    """

    __tablename__ = "outbox_bodies"

    outbox_id: Mapped[int] = mapped_column(
        Id, ForeignKey("outbox.id", name="fk_outbox_bodies_outbox", ondelete="CASCADE"), primary_key=True,
        autoincrement=False)
    message: Mapped[bytes] = mapped_column(LargeBinary)


class DeliveryRow(Base):
    """One attempt to hand one outbox message to the SMTP server."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_outbox", "outbox_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(Id)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16))  # sent | transient | permanent | in_doubt | expired
    code: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
