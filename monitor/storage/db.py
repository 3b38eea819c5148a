"""Engines and schema upgrades (Alembic)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
POOL_SIZE = 5
POOL_MAX_OVERFLOW = 10
POOL_RECYCLE_SECONDS = 1800


def create_engine_for(url: str, *, echo: bool = False) -> Engine:
    """An engine with production settings: SQLite in WAL mode with a busy timeout,
    so the scheduler, the HTTP API and a CLI command can share the file."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # PostgreSQL: a bounded pool. The service's threads that reach the database at once
    # are the scheduler's jobs (a collection run or a refresh at a time per lock), the
    # HTTP API's handlers (asyncio.to_thread: at most the default executor's threads,
    # but few at once in practice) and one long-lived connection held for the HA lock:
    # 5 kept open plus 10 on demand covers them without letting a burst of API calls
    # open dozens of server processes. Connections are recycled after 30 minutes
    # (below the idle timeouts of common poolers and firewalls) and pinged on checkout,
    # so a database restart or failover costs one retry, not an error.
    kwargs |= {"pool_size": POOL_SIZE, "max_overflow": POOL_MAX_OVERFLOW, "pool_recycle": POOL_RECYCLE_SECONDS,
               "pool_pre_ping": True, "pool_timeout": 30}
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


# Advisory-lock key serialising schema upgrades on PostgreSQL (any fixed 64-bit number
# that the leader lock, monitor.leader.lock_key, is unlikely to hit).
UPGRADE_LOCK_KEY = 0x6567_6F76_6D6F_6E01  # "egovmon" + 1


def upgrade_database(engine: Engine) -> str:
    """Bring the schema to the newest revision; return it. On PostgreSQL the upgrade holds
    an advisory lock, so instances started together upgrade one after the other (the
    second finds the schema at head) instead of racing on the same DDL."""
    cfg = _alembic_config(engine)
    if engine.dialect.name != "postgresql":
        command.upgrade(cfg, "head")
        return current_revision(engine) or ""
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": UPGRADE_LOCK_KEY})
        try:
            command.upgrade(cfg, "head")
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": UPGRADE_LOCK_KEY})
            lock.commit()
    return current_revision(engine) or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    script = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://")))
    return script.get_current_head() or ""
