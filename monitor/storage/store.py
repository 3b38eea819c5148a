"""The service's access to its database. Synchronous (SQLAlchemy Core); the
async parts of the service call it through ``asyncio.to_thread``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    func,
    literal_column,
    not_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from collectors.base import Observation, Rejection
from monitor.storage.models import (
    AlertTransitionRow,
    CollectionRunRow,
    DeliveryRow,
    ObservationRow,
    OutboxBodyRow,
    OutboxRow,
    RejectionRow,
    SourceHealthRow,
    WatermarkRow,
    sqlite_time,
)
from monitor.timeutil import Period

UPSERT_CHUNK = 5000
# The time columns without their type: load_observations converts each distinct value once.
_RAW_PERIOD_START: ColumnElement[Any] = literal_column("observations.period_start")
_RAW_PERIOD_END: ColumnElement[Any] = literal_column("observations.period_end")
_RAW_COLLECTED_AT: ColumnElement[Any] = literal_column("observations.collected_at")
OBS: Table = ObservationRow.__table__  # type: ignore[assignment]
WATERMARKS: Table = WatermarkRow.__table__  # type: ignore[assignment]
HEALTH: Table = SourceHealthRow.__table__  # type: ignore[assignment]
REJECTIONS: Table = RejectionRow.__table__  # type: ignore[assignment]
RUNS: Table = CollectionRunRow.__table__  # type: ignore[assignment]
TRANSITIONS: Table = AlertTransitionRow.__table__  # type: ignore[assignment]
OUTBOX: Table = OutboxRow.__table__  # type: ignore[assignment]
DELIVERIES: Table = DeliveryRow.__table__  # type: ignore[assignment]
BODIES: Table = OutboxBodyRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class StoredObservation:
    measure: str
    unit: str
    period_start: datetime
    period_end: datetime
    source: str
    value: float
    collected_at: datetime


@dataclass(frozen=True)
class SourceHealth:
    source: str
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error_reason: str | None
    last_error_message: str | None
    consecutive_failures: int
    last_duration_seconds: float | None
    last_observations: int
    last_rejections: int

    @property
    def up(self) -> bool:
        """Up when the last attempt succeeded."""
        return self.last_success_at is not None and self.consecutive_failures == 0


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # ------------------------------------------------------------------ observations

    def upsert_observations(self, observations: Sequence[Observation], source: str,
                            collected_at: datetime, rejections: Sequence[Rejection] = ()) -> int:
        """Insert or replace on (measure, unit, period, source), and record ``rejections``, in
        one transaction: either the whole batch is stored, with why its refused records were
        refused, or none of it. Returns how many observations were given.

        The rows go to the driver as plain tuples, not through SQLAlchemy's per-value
        type processing, which cost four times the insert itself (benchmarks/ingest.py):
        on PostgreSQL by COPY into a temporary table and one INSERT … SELECT … ON
        CONFLICT, on SQLite by the driver's own executemany."""
        if not observations and not rejections:
            return 0
        with self.engine.begin() as connection:
            if observations:
                if self.engine.dialect.name == "postgresql":
                    _copy_upsert(connection, observations, source, collected_at)
                else:
                    _executemany_upsert(connection, observations, source, collected_at)
            if rejections:
                connection.execute(REJECTIONS.insert(), _rejection_rows(source, rejections, collected_at))
        return len(observations)

    def load_observations(self, measures: Iterable[str], start: datetime, end: datetime,
                          units: Iterable[str] | None = None) -> list[StoredObservation]:
        """Observations of ``measures`` whose period overlaps ``[start, end)``.

        A national read is millions of rows with few distinct periods, units and
        sources: each distinct timestamp is converted once and each distinct text kept
        once, shared by the rows that repeat it (a third of the memory, and the
        conversion no longer dominates the read)."""
        query = (select(OBS.c.measure, OBS.c.unit, _RAW_PERIOD_START, _RAW_PERIOD_END, OBS.c.source, OBS.c.value,
                        _RAW_COLLECTED_AT)
                 .where(OBS.c.measure.in_(list(measures)))
                 .where(OBS.c.period_start < end).where(OBS.c.period_end > start))
        if units is not None:
            query = query.where(OBS.c.unit.in_(list(units)))
        moments: dict[object, datetime] = {}
        texts: dict[str, str] = {}
        shared_text = texts.setdefault
        out = []
        with self.engine.connect() as connection:
            for measure, unit, period_start, period_end, source, value, collected_at in connection.execute(query):
                first = moments.get(period_start)
                if first is None:
                    first = moments[period_start] = _as_utc(period_start)
                last = moments.get(period_end)
                if last is None:
                    last = moments[period_end] = _as_utc(period_end)
                at = moments.get(collected_at)
                if at is None:
                    at = moments[collected_at] = _as_utc(collected_at)
                out.append(StoredObservation(shared_text(measure, measure), shared_text(unit, unit), first, last,
                                             shared_text(source, source), value, at))
        return out

    def first_periods(self, measures: Iterable[str], since: datetime | None,
                      until: datetime) -> dict[str, datetime]:
        """Per unit, the start of its first period holding any of ``measures``
        (from ``since``, before ``until``)."""
        query = (select(OBS.c.unit, func.min(OBS.c.period_start))
                 .where(OBS.c.measure.in_(list(measures))).where(OBS.c.period_start < until)
                 .group_by(OBS.c.unit))
        if since is not None:
            query = query.where(OBS.c.period_start >= since)
        with self.engine.connect() as connection:
            return {unit: _as_utc(start) for unit, start in connection.execute(query)}

    def latest_periods(self, measures: Iterable[str], until: datetime) -> list[tuple[str, str, datetime, datetime]]:
        """Per (measure, unit): the start and end of its newest period that began
        before ``until`` — how far each unit's reporting reaches, over all history."""
        query = (select(OBS.c.measure, OBS.c.unit, func.max(OBS.c.period_start), func.max(OBS.c.period_end))
                 .where(OBS.c.measure.in_(list(measures))).where(OBS.c.period_start < until)
                 .group_by(OBS.c.measure, OBS.c.unit))
        with self.engine.connect() as connection:
            return [(measure, unit, _as_utc(start), _as_utc(end))
                    for measure, unit, start, end in connection.execute(query)]

    def ping(self) -> None:
        """Raise if the database cannot be reached (a cheap query, for readiness)."""
        with self.engine.connect() as connection:
            connection.execute(select(1))

    def source_measures(self) -> dict[str, set[str]]:
        """Which measures each source has delivered: what a source's outage can make incomplete."""
        out: dict[str, set[str]] = {}
        with self.engine.connect() as connection:
            for source, measure in connection.execute(select(OBS.c.source, OBS.c.measure).distinct()):
                out.setdefault(source, set()).add(measure)
        return out

    def count_observations(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(OBS)).scalar_one())

    # ------------------------------------------------------------------ watermarks

    def watermark(self, source: str) -> datetime | None:
        with self.engine.connect() as connection:
            return connection.execute(
                select(WatermarkRow.resume_from).where(WatermarkRow.source == source)
            ).scalar_one_or_none()

    def set_watermark(self, source: str, resume_from: datetime, now: datetime) -> None:
        """Move the watermark forward only: a late re-run never rewinds it."""
        with self.engine.begin() as connection:
            current = connection.execute(
                select(WatermarkRow.resume_from).where(WatermarkRow.source == source)
            ).scalar_one_or_none()
            if current is None:
                connection.execute(self._insert(WATERMARKS).values(
                    source=source, resume_from=resume_from, updated_at=now))
            elif resume_from > current:
                connection.execute(update(WatermarkRow).where(WatermarkRow.source == source)
                                   .values(resume_from=resume_from, updated_at=now))

    # ------------------------------------------------------------------ health, runs, rejections

    def record_attempt(self, source: str, *, at: datetime, duration: float, ok: bool,
                       observations: int = 0, rejections: int = 0, reason: str | None = None,
                       message: str | None = None) -> None:
        values: dict[str, Any] = {"last_attempt_at": at, "last_duration_seconds": duration}
        if ok:
            values |= {"last_success_at": at, "consecutive_failures": 0,
                       "last_observations": observations, "last_rejections": rejections}
        else:
            values |= {"last_error_at": at, "last_error_reason": reason,
                       "last_error_message": message}
        with self.engine.begin() as connection:
            exists = connection.execute(select(SourceHealthRow.source)
                                        .where(SourceHealthRow.source == source)).first()
            if exists is None:
                first = {"source": source, "consecutive_failures": 0 if ok else 1,
                         "last_observations": 0, "last_rejections": 0}
                connection.execute(self._insert(HEALTH).values(**(first | values)))
            else:
                if not ok:
                    values["consecutive_failures"] = SourceHealthRow.consecutive_failures + 1
                connection.execute(update(SourceHealthRow)
                                   .where(SourceHealthRow.source == source).values(**values))

    def health(self) -> list[SourceHealth]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(HEALTH)).mappings()
            return [SourceHealth(**row) for row in rows]

    def add_rejections(self, source: str, rejections: Sequence[Rejection], at: datetime) -> None:
        if not rejections:
            return
        with self.engine.begin() as connection:
            connection.execute(REJECTIONS.insert(), _rejection_rows(source, rejections, at))

    def recent_rejections(self, source: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(REJECTIONS).order_by(RejectionRow.id.desc()).limit(limit)
        if source:
            query = query.where(RejectionRow.source == source)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def start_run(self, source: str, at: datetime, periods_from: datetime | None,
                  periods_to: datetime | None) -> int:
        with self.engine.begin() as connection:
            result = connection.execute(RUNS.insert().values(
                source=source, started_at=at, status="running", periods_from=periods_from,
                periods_to=periods_to, observations=0, rejections=0))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def finish_run(self, run_id: int, at: datetime, *, status: str, observations: int,
                   rejections: int, error: str | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(CollectionRunRow).where(CollectionRunRow.id == run_id).values(
                finished_at=at, status=status, observations=observations, rejections=rejections,
                error=error))

    def abandon_running(self, at: datetime) -> int:
        """Mark runs left 'running' by a killed process as failed; their data was
        committed per chunk or not at all, so nothing half-written remains."""
        with self.engine.begin() as connection:
            result = connection.execute(update(CollectionRunRow)
                                        .where(CollectionRunRow.status == "running")
                                        .values(status="failed", finished_at=at,
                                                error="interrupted (process stopped)"))
            return result.rowcount

    # ------------------------------------------------------------------ retention

    def observation_periods(self, ending_by: datetime) -> list[tuple[datetime, datetime]]:
        """The distinct periods stored that end by ``ending_by`` (few: one per day or month)."""
        query = select(OBS.c.period_start, OBS.c.period_end).where(OBS.c.period_end <= ending_by).distinct()
        with self.engine.connect() as connection:
            return [(_as_utc(start), _as_utc(end)) for start, end in connection.execute(query)]

    def roll_up(self, start: datetime, end: datetime, kinds: Mapping[str, str]) -> tuple[int, int]:
        """Replace every observation of a period inside ``[start, end)`` (but not the whole
        of it) by one observation of ``[start, end)`` per measure, unit and source: flows
        summed, stocks the value of the latest period. One transaction: a kill leaves the
        days or the month, never both, never neither. Returns (rows removed, rows written).

        A month row already there (an earlier roll-up) is replaced by the days found now:
        they can only be there because the source was collected again for that month.
        Measures not in ``kinds`` (no longer in the catalog) are left alone."""
        inside = and_(OBS.c.period_start >= start, OBS.c.period_end <= end,
                      not_(and_(OBS.c.period_start == start, OBS.c.period_end == end)),
                      OBS.c.measure.in_(list(kinds)))
        query = select(OBS.c.id, OBS.c.measure, OBS.c.unit, OBS.c.source, OBS.c.period_end, OBS.c.value,
                       OBS.c.collected_at).where(inside)
        with self.engine.begin() as connection:
            groups: dict[tuple[str, str, str], list[tuple[datetime, datetime, float]]] = {}
            ids: list[int] = []
            for row_id, measure, unit, source, period_end, value, collected_at in connection.execute(query):
                ids.append(row_id)
                groups.setdefault((measure, unit, source), []).append(
                    (_as_utc(period_end), _as_utc(collected_at), float(value)))
            if not ids:
                return 0, 0
            rows = []
            for (measure, unit, source), values in groups.items():
                # a stock: the level at the end of the latest period (then the newest collection)
                total = sum(value for _, _, value in values) if kinds[measure] == "flow" else max(values)[2]
                rows.append({"measure": measure, "unit": unit, "period_start": start, "period_end": end,
                             "source": source, "value": total, "collected_at": max(c for _, c, _ in values),
                             "raw_ref": f"rollup:{len(values)} rows"})
            statement = self._insert(OBS)
            statement = statement.on_conflict_do_update(
                index_elements=["measure", "unit", "period_start", "period_end", "source"],
                set_={"value": statement.excluded.value, "collected_at": statement.excluded.collected_at,
                      "raw_ref": statement.excluded.raw_ref})
            for first in range(0, len(ids), UPSERT_CHUNK):
                connection.execute(delete(OBS).where(OBS.c.id.in_(ids[first:first + UPSERT_CHUNK])))
            for first in range(0, len(rows), UPSERT_CHUNK):
                connection.execute(statement, rows[first:first + UPSERT_CHUNK])
            return len(ids), len(rows)

    def prune_rejections(self, before: datetime, batch: int) -> int:
        return self._delete_batches(REJECTIONS, REJECTIONS.c.rejected_at < before, batch)

    def prune_collection_runs(self, before: datetime, batch: int) -> int:
        """Finished runs only: a run still marked running is the live one (or closed at the next start)."""
        return self._delete_batches(RUNS, and_(RUNS.c.started_at < before, RUNS.c.status != "running"), batch)

    def prune_alert_transitions(self, before: datetime, batch: int) -> int:
        return self._delete_batches(TRANSITIONS, TRANSITIONS.c.at < before, batch)

    def prune_outbox(self, before: datetime, batch: int) -> int:
        """Sent messages (with their delivery attempts); pending, sending and failed ones stay.
        Their keys are built from the moment they were composed, so none is enqueued again."""
        return self._delete_batches(OUTBOX, and_(OUTBOX.c.status == "sent", OUTBOX.c.sent_at < before), batch,
                                    also=_delete_outbox_dependents)

    def _delete_batches(self, table: Table, condition: ColumnElement[bool], batch: int,
                        also: Callable[[Connection, list[int]], object] | None = None) -> int:
        """Delete matching rows ``batch`` at a time, each batch its own short transaction
        (the service keeps writing meanwhile; a kill loses no more than the batch's work)."""
        removed = 0
        while True:
            with self.engine.begin() as connection:
                ids = [row_id for (row_id,) in connection.execute(
                    select(table.c.id).where(condition).order_by(table.c.id).limit(batch))]
                if not ids:
                    return removed
                if also is not None:
                    also(connection, ids)
                connection.execute(delete(table).where(table.c.id.in_(ids)))
            removed += len(ids)


def _delete_outbox_dependents(connection: Connection, ids: list[int]) -> None:
    """A message's body and delivery attempts, deleted with it (explicitly: SQLite does
    not enforce the foreign keys' cascade here)."""
    connection.execute(delete(BODIES).where(BODIES.c.outbox_id.in_(ids)))
    connection.execute(delete(DELIVERIES).where(DELIVERIES.c.outbox_id.in_(ids)))


OBSERVATION_COLUMNS = ("measure", "unit", "period_start", "period_end", "source", "value", "collected_at", "raw_ref")
_KEY = "measure, unit, period_start, period_end, source"
_REPLACED = "value = excluded.value, collected_at = excluded.collected_at, raw_ref = excluded.raw_ref"
_SQLITE_UPSERT = (f"INSERT INTO observations ({', '.join(OBSERVATION_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                  f"ON CONFLICT ({_KEY}) DO UPDATE SET {_REPLACED}")
# ON COMMIT DROP: the staging table lives exactly as long as the batch's transaction.
_PG_STAGING = ("CREATE TEMPORARY TABLE observations_staging (measure text, unit text, period_start timestamptz, "
               "period_end timestamptz, source text, value double precision, collected_at timestamptz, "
               "raw_ref text) ON COMMIT DROP")
# Binary COPY: psycopg packs timestamps and floats in C, no text formatting (1.7× the text COPY).
_PG_COPY = f"COPY observations_staging ({', '.join(OBSERVATION_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_PG_COPY_TYPES = ("text", "text", "timestamptz", "timestamptz", "text", "float8", "timestamptz", "text")
_PG_MERGE = (f"INSERT INTO observations ({', '.join(OBSERVATION_COLUMNS)}) "
             f"SELECT {', '.join(OBSERVATION_COLUMNS)} FROM observations_staging "
             f"ON CONFLICT ({_KEY}) DO UPDATE SET {_REPLACED}")


def _executemany_upsert(connection: Connection, observations: Sequence[Observation], source: str,
                        collected_at: datetime) -> None:
    """SQLite: the driver's executemany of the upsert, in the caller's transaction. Rows
    of one batch share few periods, so each period's text is formatted once; a key given
    twice ends with the later value, as row-by-row upserts do."""
    at = sqlite_time(collected_at)
    periods: dict[Period, tuple[str, str]] = {}
    rows = []
    for o in observations:
        bounds = periods.get(o.period)
        if bounds is None:
            bounds = periods[o.period] = (sqlite_time(o.period.start), sqlite_time(o.period.end))
        rows.append((o.measure, o.unit, bounds[0], bounds[1], source, float(o.value), at, o.raw_ref))
    # exec_driver_sql hands the tuples to the driver's executemany untouched, and still goes
    # through SQLAlchemy's execution: database.echo logs each batch (tests/crash aims by it).
    for start in range(0, len(rows), UPSERT_CHUNK):
        connection.exec_driver_sql(_SQLITE_UPSERT, rows[start:start + UPSERT_CHUNK])


def _copy_upsert(connection: Connection, observations: Sequence[Observation], source: str,
                 collected_at: datetime) -> None:
    """PostgreSQL: COPY the batch into a temporary table, then one INSERT … SELECT … ON
    CONFLICT DO UPDATE — all in the caller's transaction. One statement cannot update a
    row twice, so a key given twice keeps only its later value first (as a row-by-row
    upsert would end)."""
    latest: dict[tuple[str, str, datetime, datetime], Observation] = {}
    for o in observations:
        latest[(o.measure, o.unit, o.period.start, o.period.end)] = o
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(_PG_STAGING)
        with cursor.copy(_PG_COPY) as copy:
            copy.set_types(_PG_COPY_TYPES)
            for o in latest.values():
                copy.write_row((o.measure, o.unit, o.period.start, o.period.end, source, float(o.value),
                                collected_at, o.raw_ref))
        cursor.execute(_PG_MERGE)


def _as_utc(value: datetime | str) -> datetime:
    """Aggregates bypass the column type, so SQLite hands back naive text."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _rejection_rows(source: str, rejections: Sequence[Rejection], at: datetime) -> list[dict[str, Any]]:
    return [{"source": source, "rejected_at": at, "reason": r.reason, "detail": r.detail,
             "unit": r.unit, "measure": r.measure,
             "period_start": r.period.start if r.period else None, "raw_ref": r.raw_ref}
            for r in rejections]
