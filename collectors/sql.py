"""Any database SQLAlchemy reaches, read with named queries: kind ``sql``.

Each query returns rows whose columns map to a unit, a period and measures
(the vocabulary of sql_exporter: key columns and value columns). Queries are
written by the operator against the vendor's own tables, so the adapter
trusts nothing in them:

- Only one SELECT (or WITH … SELECT) statement per query is accepted at
  config load. That check is cheap and can be fooled; the real guard is the
  database session: SQLite is opened read-only (``mode=ro``) and interrupted
  by a progress handler after ``statement_timeout``; PostgreSQL sessions
  start with ``default_transaction_read_only`` and ``statement_timeout`` and
  every transaction is set READ ONLY again (a query could have changed the
  session's defaults). The database account should still only hold SELECT
  rights.
- ``:start`` and ``:end`` are bound parameters, never text pasted into SQL:
  the local dates (province's calendar) of the first day asked for and of
  the day after the last one, so ``col >= :start AND col < :end`` selects
  exactly the requested span.
- A row that cannot be stored (no unit, unreadable period, NULL or
  non-numeric value, a second row for the same unit, period and measure)
  becomes a ``Rejection`` naming the query, the row number, the column and
  the value; the other rows still land.

SQLAlchemy is synchronous: it runs in ``asyncio.to_thread`` on one engine per
collector (pool of one connection plus one overflow), disposed in
``aclose``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import quote

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Connection, Date, Engine, bindparam, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.sql.elements import TextClause

from collectors.base import (
    CollectionResult,
    Collector,
    CollectorError,
    Observation,
    Rejection,
    SourceAuthError,
    SourceRequestError,
    SourceTimeout,
    SourceUnavailable,
)
from monitor.timeutil import Period, local_date, local_midnight, parse_duration

PARAMETERS = frozenset({"start", "end"})
_SQLITE_CHECK_EVERY = 1000  # SQLite VM instructions between two looks at the clock
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YYYYMM = re.compile(r"^(\d{4})(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_SHOWN = 60


# ----------------------------------------------------------------------------- options

def _seconds(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value).total_seconds()
    return value


def _statements(sql: str) -> list[str]:
    """``sql`` split at top-level semicolons, comments and string literals skipped.

    A cheap guard that reports mistakes at config load; the database session
    is what really refuses writes (dollar-quoted text may be split wrongly,
    which only ever refuses more).
    """
    parts, current, i = [], [], 0
    while i < len(sql):
        char = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
            current.append(" ")
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = len(sql) if end < 0 else end + 2
            current.append(" ")
            continue
        if char in "'\"`":
            end = i + 1
            while end < len(sql) and sql[end] != char:
                end += 1
            current.append(sql[i:end + 1])
            i = end + 1
            continue
        if char == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


class PeriodColumn(BaseModel):
    """The column that says which period a row is about, and how it is written."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: Annotated[str, Field(min_length=1)]
    format: Literal["date", "month", "datetime"]


class SqlQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    sql: Annotated[str, Field(min_length=1)]
    unit_column: Annotated[str, Field(min_length=1)]
    # ``from_request``: the query is run once per requested period and every row is about it.
    period: PeriodColumn | Literal["from_request"]
    values: Annotated[dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], str], Field(min_length=1)]
    unit_map: dict[str, str] = {}  # value of unit_column → unit code; unmapped values are codes

    @field_validator("sql")
    @classmethod
    def _one_select(cls, sql: str) -> str:
        statements = _statements(sql)
        if len(statements) != 1:
            raise ValueError(
                f"must be exactly one statement, got {len(statements)} (separated by ';'); "
                "write one SELECT per query")
        first = statements[0].split(None, 1)[0].lower() if statements[0] else ""
        if first not in ("select", "with"):
            raise ValueError(f"must be a SELECT (or WITH … SELECT) statement, got one starting with {first!r}")
        unknown = sorted(set(text(sql).compile().params) - PARAMETERS)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(':' + p for p in unknown)}; only :start and :end are "
                r"bound (escape a literal colon as \:)")
        return sql

    @property
    def columns(self) -> list[str]:
        period = [] if self.period == "from_request" else [self.period.column]
        return [self.unit_column, *period, *self.values.values()]


class SqlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    queries: Annotated[list[SqlQuery], Field(min_length=1)]
    # Seconds, or a duration like 30s or 2m: the longest one query may run.
    statement_timeout: Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=3600)] = 30.0
    # A query returning more rows than this was probably meant to GROUP BY.
    max_rows: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [q.name for q in self.queries]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"query name(s) used twice: {', '.join(twice)}")
        return self


# ----------------------------------------------------------------------------- rows

@dataclass(frozen=True)
class Problem:
    reason: str
    detail: str


def _shown(value: Any) -> str:
    text_ = repr(value)
    return text_ if len(text_) <= _MAX_SHOWN else text_[:_MAX_SHOWN] + "…"


def parse_value(value: Any) -> float | Problem:
    """A row's measure value as a float, or why it cannot be one."""
    if value is None:
        return Problem("null_value", "is NULL (write COALESCE(…, 0) if no rows means zero)")
    if isinstance(value, bool):
        return Problem("not_a_number", f"is a boolean {value!r}, not a count "
                       "(count it: SUM(CASE WHEN … THEN 1 ELSE 0 END))")
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value.strip())
    return Problem("not_a_number", f"is {_shown(value)}, not a number (CAST it in the query)")


def _local_day(value: Any, fmt: str, tz: Any) -> date | None:
    """The local calendar day ``value`` falls on, or None if ``fmt`` cannot read it."""
    if isinstance(value, datetime):
        return value.astimezone(tz).date() if value.tzinfo is not None else value.date()
    if isinstance(value, date):
        return value
    if fmt == "month":
        match = None
        if isinstance(value, int) and not isinstance(value, bool):
            match = _YYYYMM.match(str(value))
        elif isinstance(value, str):
            match = _MONTH.match(value.strip()) or _YYYYMM.match(value.strip())
        if match is not None and 1 <= int(match.group(2)) <= 12:
            return date(int(match.group(1)), int(match.group(2)), 1)
        return None
    if not isinstance(value, str):
        return None
    text_ = value.strip()
    try:
        if fmt == "date":
            return date.fromisoformat(text_) if _DATE.match(text_) else None
        moment = datetime.fromisoformat(text_)
    except ValueError:
        return None
    return moment.astimezone(tz).date() if moment.tzinfo is not None else moment.date()


FORMAT_HINTS = {
    "date": "a date or the text YYYY-MM-DD",
    "month": "a date, the text YYYY-MM or the number YYYYMM",
    "datetime": "a timestamp or ISO text YYYY-MM-DD HH:MM[:SS][+07:00]; without an offset it is local time",
}


# ----------------------------------------------------------------------------- database errors

_PG_TRANSIENT_CLASSES = ("08", "53", "57P", "58")  # connection, resources, shutdown, system
_SQLITE_TRANSIENT = ("database is locked", "unable to open database file", "disk i/o error")


def classify(source: str, exc: BaseException, message: str, *, connecting: bool) -> CollectorError:
    """The CollectorError for a database exception (``message`` already scrubbed)."""
    orig = getattr(exc, "orig", exc)
    sqlstate = str(getattr(orig, "sqlstate", None) or "")
    lowered = message.lower()
    if isinstance(orig, sqlite3.Error):
        if "interrupted" in lowered:
            return SourceTimeout(source, f"the query ran longer than statement_timeout: {message}")
        if "readonly" in lowered or "read-only" in lowered:
            return SourceRequestError(source, f"the query tried to write, which is refused: {message}")
        if any(t in lowered for t in _SQLITE_TRANSIENT):
            return SourceUnavailable(source, message)
        return SourceRequestError(source, message)
    if sqlstate == "57014" or "statement timeout" in lowered:
        return SourceTimeout(source, f"the query ran longer than statement_timeout: {message}")
    if sqlstate == "25006" or "read-only transaction" in lowered or "read only transaction" in lowered:
        return SourceRequestError(source, f"the query tried to write, which is refused: {message}")
    if sqlstate.startswith("28") or "authentication failed" in lowered:
        return SourceAuthError(source, f"the database refused the credentials: {message}")
    if connecting and "does not exist" in lowered:  # a misspelt database or role name
        return SourceRequestError(source, message)
    transient = not sqlstate or sqlstate.startswith(_PG_TRANSIENT_CLASSES)
    if transient and (connecting or (isinstance(exc, DBAPIError) and exc.connection_invalidated)):
        return SourceUnavailable(source, message)
    # Anything else the database answered (no such table, syntax, a missing database) is the
    # configuration's to fix: retrying cannot help.
    return SourceRequestError(source, message)


# ----------------------------------------------------------------------------- collector

class SqlCollector(Collector):
    kind: ClassVar[str] = "sql"
    Options: ClassVar[type[BaseModel]] = SqlOptions
    options: SqlOptions
    # Only the databases whose read-only session and statement timeout are enforced (and tested):
    # another dialect needs its own guard in ``_create_engine`` before it is listed here.
    url_schemes: ClassVar[tuple[str, ...]] = ("sqlite+", "postgresql+")

    _engine: Engine | None = None
    _deadline: float = math.inf  # monotonic instant the running SQLite query must end by

    # -- the engine

    def database_url(self) -> URL:
        """The configured URL with the password from the ``auth:`` block merged in."""
        try:
            url = make_url(self.settings.url)
        except ArgumentError:
            raise SourceRequestError(self.source_id, "url is not a SQLAlchemy database URL "
                                     "(e.g. postgresql+psycopg://user@host:5432/db)") from None
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver installed
        creds = self.settings.credentials
        if creds.username is not None:
            url = url.set(username=creds.username)
        if creds.password is not None:
            url = url.set(password=creds.password)
        return url

    def shown_url(self) -> str:
        return self.database_url().render_as_string(hide_password=True)

    def _create_engine(self) -> Engine:
        url = self.database_url()
        backend = url.get_backend_name()
        timeout = self.settings.timeout
        limit_ms = int(self.options.statement_timeout * 1000)
        kwargs: dict[str, Any] = {"pool_size": 1, "max_overflow": 1, "pool_timeout": timeout}
        if backend == "sqlite":
            kwargs["creator"] = self._sqlite_creator(url)
        elif backend == "postgresql":
            kwargs["connect_args"] = {
                "connect_timeout": max(1, round(timeout)),
                "options": (f"-c default_transaction_read_only=on -c statement_timeout={limit_ms} "
                            f"-c TimeZone={getattr(self.tz, 'key', 'UTC')}"),
                "application_name": "egovmon",
            }
        try:
            engine = create_engine(url, **kwargs)
        except NoSuchModuleError:
            raise SourceRequestError(self.source_id, f"no database driver installed for "
                                     f"{url.drivername!r} (url {self.shown_url()})") from None
        except (ArgumentError, ImportError) as exc:
            raise SourceRequestError(self.source_id, f"cannot use url {self.shown_url()}: "
                                     f"{self._scrub(str(exc))}") from None
        if backend == "sqlite":
            event.listen(engine, "connect", self._sqlite_connected)
        return engine

    def _sqlite_creator(self, url: URL) -> Callable[[], sqlite3.Connection]:
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise SourceRequestError(self.source_id, "a sqlite source needs a file path: sqlite:////abs/path.db")
        path = Path(database)
        # mode=ro: the file itself refuses writes, whatever the query does.
        uri = f"file:{quote(str(path.absolute()))}?mode=ro"
        timeout = self.settings.timeout

        def connect() -> sqlite3.Connection:
            if not path.is_file():
                raise sqlite3.OperationalError(f"unable to open database file {path} (no such file)")
            return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)

        return connect

    def _sqlite_connected(self, dbapi_connection: Any, _record: Any) -> None:
        # Interrupting from the progress handler is SQLite's own way to bound a statement.
        dbapi_connection.set_progress_handler(
            lambda: 1 if time.monotonic() > self._deadline else 0, _SQLITE_CHECK_EVERY)

    def engine(self) -> Engine:
        with _ENGINE_LOCK:
            if self._engine is None:
                self._engine = self._create_engine()
            return self._engine

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.to_thread(engine.dispose)

    # -- reading

    async def collect(self, periods: Sequence[Period], units: Set[str]) -> CollectionResult:
        result = CollectionResult()
        if not periods:
            return result
        for query in self.options.queries:
            if query.period != "from_request" and query.period.format == "month" and self.settings.grain == "day":
                raise SourceRequestError(self.source_id, f"query {query.name!r}: period format 'month' "
                                         "cannot fill a source of grain 'day' (use grain: month)")
        batches = await asyncio.to_thread(self._read_all, list(periods))
        seen: dict[tuple[str, Period, str], str] = {}
        for query, period, rows in batches:
            self._rows_to_result(query, period, rows, units, seen, result)
        return result

    def _read_all(self, periods: list[Period]) -> list[tuple[SqlQuery, Period | None, list[dict[str, Any]]]]:
        """Every query's rows: once over the whole span, or once per period (``from_request``)."""
        batches: list[tuple[SqlQuery, Period | None, list[dict[str, Any]]]] = []
        with self._connection() as conn:
            for query in self.options.queries:
                spans: list[tuple[Period | None, list[Period]]] = (
                    [(p, [p]) for p in periods] if query.period == "from_request" else [(None, periods)])
                for period, span in spans:
                    start = local_date(span[0].start, self.tz)
                    end = local_date(span[-1].end, self.tz)
                    batches.append((query, period, self._run(conn, query, start, end)))
        return batches

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        engine = self.engine()
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise self._error(exc, connecting=True) from None
        try:
            yield conn
        finally:
            with contextlib.suppress(SQLAlchemyError):  # a broken connection is dropped by the pool anyway
                conn.close()

    def _run(self, conn: Connection, query: SqlQuery, start: date, end: date) -> list[dict[str, Any]]:
        statement = _bound(query.sql)
        backend = conn.dialect.name
        try:
            with conn.begin():
                if backend == "postgresql":
                    # Per transaction as well: a query could have changed the session defaults.
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    conn.execute(text("SELECT set_config('statement_timeout', :ms, true)"),
                                 {"ms": str(int(self.options.statement_timeout * 1000))})
                self._deadline = time.monotonic() + self.options.statement_timeout
                try:
                    cursor = conn.execute(statement, {"start": start, "end": end})
                    names = list(cursor.keys())
                    self._check_columns(query, names)
                    rows = cursor.fetchmany(self.options.max_rows + 1)
                finally:
                    self._deadline = math.inf  # the commit and the pool's reset must not be interrupted
                if len(rows) > self.options.max_rows:
                    raise SourceRequestError(self.source_id, (
                        f"query {query.name!r} returned more than max_rows = {self.options.max_rows} rows; "
                        "aggregate in the query (GROUP BY unit and period) or raise max_rows"))
                return [dict(zip(names, row, strict=True)) for row in rows]
        except SQLAlchemyError as exc:
            raise self._error(exc, connecting=False, query=query.name) from None

    def _check_columns(self, query: SqlQuery, names: list[str]) -> None:
        missing = [c for c in query.columns if _column(names, c) is None]
        if missing:
            raise SourceRequestError(self.source_id, (
                f"query {query.name!r} returns no column(s) {', '.join(missing)}; it returns "
                f"{', '.join(names) or 'none'} (name them with AS, or fix the options)"))

    def _error(self, exc: SQLAlchemyError, *, connecting: bool, query: str | None = None) -> CollectorError:
        orig = getattr(exc, "orig", None) or exc
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        where = f"query {query!r}: " if query else f"cannot connect to {self.shown_url()}: "
        return classify(self.source_id, exc, self._scrub(where + first), connecting=connecting)

    def _scrub(self, message: str) -> str:
        for secret in self.settings.credentials.secrets():
            message = message.replace(secret, "***")
            message = message.replace(quote(secret, safe=""), "***")
        return message

    # -- rows to observations

    def _rows_to_result(
        self, query: SqlQuery, requested: Period | None, rows: list[dict[str, Any]], units: Set[str],
        seen: dict[tuple[str, Period, str], str], result: CollectionResult,
    ) -> None:
        where = f"{query.name}[{requested.label(self.tz)}]" if requested else query.name
        for number, row in enumerate(rows, start=1):
            ref = f"sql {where}#{number}"
            prefix = f"query {query.name!r} row {number}"
            unit = self._unit(query, row, prefix, units)
            if isinstance(unit, Rejection):
                result.rejections.append(_with_ref(unit, ref, requested))
                continue
            period = requested or self._period(query, row)
            if isinstance(period, Problem):
                result.rejections.append(Rejection(period.reason, f"{prefix} ({unit}): {period.detail}",
                                                   unit=unit, raw_ref=ref))
                continue
            for measure, column in query.values.items():
                value = parse_value(row[_column(list(row), column) or column])
                key = (unit, period, measure)
                if isinstance(value, Problem):
                    detail = f"{prefix} ({unit} {period.label(self.tz)}): column {column} {value.detail}"
                    result.rejections.append(Rejection(value.reason, detail, unit, measure, period, ref))
                elif key in seen:
                    result.rejections.append(Rejection("duplicate", (
                        f"{prefix}: a second {measure} for {unit} {period.label(self.tz)}, first from "
                        f"{seen[key]}; the first was kept (GROUP BY unit and period in the query)"),
                        unit, measure, period, ref))
                else:
                    seen[key] = ref
                    result.observations.append(Observation(measure, unit, period, value, ref))

    def _unit(self, query: SqlQuery, row: dict[str, Any], prefix: str, units: Set[str]) -> str | Rejection:
        column = query.unit_column
        raw = row[_column(list(row), column) or column]
        code = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else None
        if not code:
            return Rejection("unit_missing", f"{prefix}: column {column} is {_shown(raw)}, not a unit code "
                             "(filter such rows out, or map them in unit_map)")
        unit = query.unit_map.get(code, code)
        if unit not in units:
            mapped = f" (mapped by unit_map from {code!r})" if unit != code else ""
            return Rejection("unknown_unit", f"{prefix}: column {column} = {unit!r}{mapped} is not a unit of "
                             "the tree (add it to the units, or map it in unit_map)", unit=unit)
        return unit

    def _period(self, query: SqlQuery, row: dict[str, Any]) -> Period | Problem:
        spec = query.period
        assert spec != "from_request"
        raw = row[_column(list(row), spec.column) or spec.column]
        day = _local_day(raw, spec.format, self.tz)
        if day is None:
            return Problem("bad_period", f"column {spec.column} = {_shown(raw)} is not {FORMAT_HINTS[spec.format]}")
        return Period.containing(local_midnight(day, self.tz), self.settings.grain, self.tz)


_ENGINE_LOCK = threading.Lock()


def _bound(sql: str) -> TextClause:
    """The query with ``:start`` / ``:end`` typed as dates, so every dialect binds them natively."""
    statement = text(sql)
    used = set(statement.compile().params) & PARAMETERS
    return statement.bindparams(*(bindparam(name, type_=Date) for name in sorted(used)))


def _column(names: list[str], wanted: str) -> str | None:
    """The result column named ``wanted``; case-insensitively if only the case differs
    (PostgreSQL folds unquoted names to lower case, Oracle to upper)."""
    if wanted in names:
        return wanted
    folded = [n for n in names if n.lower() == wanted.lower()]
    return folded[0] if len(folded) == 1 else None


def _with_ref(rejection: Rejection, ref: str, period: Period | None) -> Rejection:
    return Rejection(rejection.reason, rejection.detail, rejection.unit, rejection.measure, period, ref)
