"""Alert records, their transitions and silences in the database.

Every write to an alert is a compare-and-set on its ``version``: the caller
says which version it read, and a row another instance (or an earlier run)
changed since is left alone and reported as a conflict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, or_, select, update

from monitor.alerts.state import AlertRecord, Transition
from monitor.storage.models import AlertRow, AlertTransitionRow, SilenceRow

ALERTS: Table = AlertRow.__table__  # type: ignore[assignment]
TRANSITIONS: Table = AlertTransitionRow.__table__  # type: ignore[assignment]
SILENCES: Table = SilenceRow.__table__  # type: ignore[assignment]
_RECORD_COLUMNS = ("kind", "rule", "unit", "kpi", "state", "status", "severity", "pending_since", "fired_at",
                   "resolved_at", "escalation_level", "notified_state", "notified_at", "notified_level",
                   "notify_count", "acked_by", "acked_at", "ack_reason", "ack_until", "flapping", "inhibited_by")


class Conflict(Exception):
    """Another writer changed the alert first."""


def _record(row: Any) -> AlertRecord:
    values = {name: getattr(row, name) for name in _RECORD_COLUMNS}
    flips = tuple(datetime.fromisoformat(t) for t in json.loads(row.flips or "[]"))
    return AlertRecord(**values, flips=flips, snapshot=json.loads(row.snapshot or "{}"), id=row.id,
                       version=row.version)


def _values(record: AlertRecord, now: datetime) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in _RECORD_COLUMNS}
    values["flips"] = json.dumps([t.isoformat() for t in record.flips])
    values["snapshot"] = json.dumps(record.snapshot, ensure_ascii=False, default=str)
    values["updated_at"] = now
    return values


class AlertStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, *, kind: str | None = None, states: Iterable[str] | None = None) -> list[AlertRecord]:
        query = select(ALERTS).order_by(ALERTS.c.id)
        if kind:
            query = query.where(ALERTS.c.kind == kind)
        if states is not None:
            query = query.where(ALERTS.c.state.in_(list(states)))
        with self.engine.connect() as connection:
            return [_record(row) for row in connection.execute(query)]

    def get(self, alert_id: int) -> AlertRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(ALERTS).where(ALERTS.c.id == alert_id)).first()
        return _record(row) if row else None

    def save(self, connection: Connection, record: AlertRecord, now: datetime,
             transition: Transition | None = None) -> AlertRecord:
        """Insert a new record or compare-and-set an existing one; raise Conflict
        when another writer got there first."""
        values = _values(record, now)
        if record.id is None:
            existing = connection.execute(select(ALERTS.c.id).where(
                ALERTS.c.kind == record.kind, ALERTS.c.rule == record.rule, ALERTS.c.unit == record.unit)).first()
            if existing is not None:
                raise Conflict(f"alert {record.key} was created by another writer")
            alert_id = _new_id(connection.execute(insert(ALERTS).values(**values, version=1)).inserted_primary_key)
            saved = AlertRecord(**{**_as_fields(record), "id": int(alert_id), "version": 1})
        else:
            result = connection.execute(update(ALERTS).where(
                ALERTS.c.id == record.id, ALERTS.c.version == record.version).values(
                **values, version=record.version + 1))
            if result.rowcount != 1:
                raise Conflict(f"alert {record.key} was changed by another writer")
            saved = AlertRecord(**{**_as_fields(record), "version": record.version + 1})
        if transition is not None:
            connection.execute(insert(TRANSITIONS).values(
                alert_id=saved.id, at=now, from_state=transition.from_state, to_state=transition.to_state,
                status=record.status, detail=transition.detail))
        return saved

    def transitions(self, alert_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(TRANSITIONS).where(TRANSITIONS.c.alert_id == alert_id)
                                      .order_by(TRANSITIONS.c.id))
            return [dict(row._mapping) for row in rows]


def _new_id(key: Any) -> int:
    assert key is not None
    return int(key[0])


def _as_fields(record: AlertRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in AlertRecord.__dataclass_fields__}


@dataclass(frozen=True)
class Silence:
    """Mutes the alerts that match every matcher given; an empty matcher matches all."""

    id: int
    rule: str | None
    unit: str | None
    kpi: str | None
    source: str | None
    subtree: bool
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    expired_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at and (self.expired_at is None or now < self.expired_at)

    def matches(self, record: AlertRecord, ancestors: Sequence[str] = (), sources: Iterable[str] = ()) -> bool:
        """``ancestors``: the unit's ancestors (for a subtree silence); ``sources``:
        the sources the alert depends on (its own id for a source alert)."""
        if self.rule is not None and record.rule != self.rule:
            return False
        if self.kpi is not None and record.kpi != self.kpi:
            return False
        if self.unit is not None and record.unit != self.unit and not (self.subtree and self.unit in ancestors):
            return False
        return self.source is None or self.source in set(sources)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class SilenceStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, *, rule: str | None, unit: str | None, kpi: str | None, source: str | None, subtree: bool,
            starts_at: datetime, ends_at: datetime, reason: str, created_by: str, now: datetime) -> Silence:
        if not any((rule, unit, kpi, source)):
            raise ValueError("a silence needs at least one of rule, unit, kpi, source")
        if ends_at <= starts_at:
            raise ValueError(f"the silence ends ({ends_at.isoformat()}) before it starts ({starts_at.isoformat()})")
        values = {"rule": rule, "unit": unit, "kpi": kpi, "source": source, "subtree": subtree,
                  "starts_at": starts_at, "ends_at": ends_at, "reason": reason, "created_by": created_by,
                  "created_at": now, "expired_at": None}
        with self.engine.begin() as connection:
            silence_id = _new_id(connection.execute(insert(SILENCES).values(**values)).inserted_primary_key)
        return Silence(id=int(silence_id), **values)  # type: ignore[arg-type]

    def expire(self, silence_id: int, now: datetime) -> Silence | None:
        with self.engine.begin() as connection:
            connection.execute(update(SILENCES).where(SILENCES.c.id == silence_id, SILENCES.c.expired_at.is_(None))
                               .values(expired_at=now))
            row = connection.execute(select(SILENCES).where(SILENCES.c.id == silence_id)).first()
        return Silence(**row._mapping) if row else None

    def list(self, now: datetime, *, include_ended: bool = False) -> list[Silence]:
        query = select(SILENCES).order_by(SILENCES.c.id)
        if not include_ended:
            query = query.where(SILENCES.c.ends_at > now,
                                or_(SILENCES.c.expired_at.is_(None), SILENCES.c.expired_at > now))
        with self.engine.connect() as connection:
            return [Silence(**row._mapping) for row in connection.execute(query)]
