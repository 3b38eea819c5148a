"""Leader election between instances sharing one PostgreSQL database.

The leader is whoever holds a session-level PostgreSQL advisory lock
(``pg_try_advisory_lock``) on a connection of its own — not one from the pool,
which could hand it to other work or recycle it and so drop the lock. PostgreSQL
releases the lock when that session ends: at once when the leader's process
dies (its socket is closed by the kernel), after the server's TCP keepalive
gives up when the leader's machine or network is gone.

Every ``poll_interval`` a follower tries to take the lock and the leader checks
(in ``pg_locks``) that its session still holds it. A leader that cannot confirm
it — the connection broke, the check timed out — steps down at once and then
competes again like any follower. The keepalive settings of the lock's
connection are derived from ``poll_interval`` so that a leader cut off from the
database steps down well before the server lets the lock go
(docs/high-availability.md works out the bounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger(__name__)

# Server-side keepalive, in multiples of poll_interval: the server drops a silent session
# (and its lock) only after idle + interval × count = 6 polls, while a cut-off leader steps
# down within 3 (see Leadership._connect and docs/high-availability.md).
SERVER_KEEPALIVE_IDLE_POLLS = 3
SERVER_KEEPALIVE_COUNT = 3


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (every instance computes the same)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def _lock_ids(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory key: (classid, objid) = its high and low 32 bits."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class Leadership:
    """Holds, or competes for, the advisory lock named ``name`` on one dedicated connection.

    Blocking (psycopg) calls: the async :class:`LeaderElection` runs them in a thread,
    one at a time. Each of :meth:`try_acquire` and :meth:`still_held` answers the same
    question — does this instance hold the lock now? — and closes the connection on any
    error, so the next call starts from a fresh session.
    """

    def __init__(self, engine: Engine, *, name: str, poll_interval: timedelta) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(f"leader election needs PostgreSQL, not {engine.dialect.name}")
        self.engine = engine
        self.name = name
        self.key = lock_key(name)
        self.poll_interval = poll_interval
        self._connection: Any = None
        self._held = False
        self._mutex = threading.Lock()  # one call at a time on the connection

    @property
    def held(self) -> bool:
        return self._held

    def _connect(self) -> Any:
        """A connection outside the pool, with keepalives and timeouts tied to the poll interval."""
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        poll = max(self.poll_interval.total_seconds(), 0.2)
        seconds = max(math.ceil(poll), 1)  # keepalive settings are whole seconds
        server = {
            # The server side drops a silent session (and releases the lock) after
            # idle + interval × count seconds: never before the leader has stepped down.
            "tcp_keepalives_idle": SERVER_KEEPALIVE_IDLE_POLLS * seconds,
            "tcp_keepalives_interval": seconds,
            "tcp_keepalives_count": SERVER_KEEPALIVE_COUNT,
            "statement_timeout": f"{int(poll * 1000)}ms",
            # (libpq splits options at spaces: the name is reduced to safe characters)
            "application_name": re.sub(r"[^A-Za-z0-9_.:-]", "_", f"egovmon-leader-lock:{self.name}")[:63],
        }
        options = " ".join(f"-c {name}={value}" for name, value in server.items())
        params = dict(cparams)
        params["options"] = f"{params['options']} {options}" if params.get("options") else options
        params.update(
            # The client side: a dead path is noticed by the leader's next check within
            # poll (tcp_user_timeout: unacknowledged data) rather than the OS's 2 hours.
            keepalives=1, keepalives_idle=seconds, keepalives_interval=seconds, keepalives_count=2,
            tcp_user_timeout=int(poll * 1000), connect_timeout=max(seconds, 2),
        )
        connection = self.engine.dialect.loaded_dbapi.connect(*cargs, **params)
        connection.autocommit = True  # a session lock, never inside a transaction left open
        return connection

    def _query(self, sql: str, *args: Any) -> Any:
        cursor = self._connection.cursor()
        try:
            cursor.execute(sql, args)
            row = cursor.fetchone()
        finally:
            cursor.close()
        return row[0] if row is not None else None

    def try_acquire(self) -> bool:
        """Take the lock if it is free (or already ours); return whether this instance holds it."""
        with self._mutex:
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = self._connect()
                    self._held = False
                if not self._held:
                    self._held = bool(self._query("SELECT pg_try_advisory_lock(%s)", self.key))
                else:
                    self._held = self._check()
            except Exception as exc:
                self._drop(f"could not compete for the leader lock: {exc}")
            return self._held

    def still_held(self) -> bool:
        """The leader's check: the session is alive and still holds the lock."""
        with self._mutex:
            if self._connection is None or not self._held:
                return False
            try:
                self._held = self._check()
            except Exception as exc:
                self._drop(f"lost the connection that holds the leader lock: {exc}")
            if not self._held:
                self._drop_quietly()
            return self._held

    def _check(self) -> bool:
        classid, objid = _lock_ids(self.key)
        return bool(self._query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
            "AND granted AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            classid, objid))

    def release(self) -> None:
        """Give the lock up (a clean stop), before the session closes: a follower can take it
        at its next poll, without waiting for the server to notice the closed socket."""
        with self._mutex:
            if self._held and self._connection is not None:
                try:
                    self._query("SELECT pg_advisory_unlock(%s)", self.key)
                except Exception:  # the session is going anyway, and the lock with it
                    log.debug("unlocking the leader lock failed", exc_info=True)
            self._drop_quietly()

    def _drop(self, why: str) -> None:
        log.warning("%s", why)
        self._drop_quietly()

    def _drop_quietly(self) -> None:
        self._held = False
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken; nothing to release on our side
                log.debug("closing the leader lock connection failed", exc_info=True)


class LeaderElection:
    """Polls a :class:`Leadership` and tells the scheduler when this instance is elected or deposed.

    ``on_elected`` and ``on_deposed`` run on the event loop, in order, never twice in a row
    for the same role. A check that does not answer within ``2 × poll_interval`` counts as
    a lost lock: stepping down on doubt is what keeps two leaders from working at once.
    """

    def __init__(self, leadership: Leadership, *, on_elected: Callable[[], None],
                 on_deposed: Callable[[], None]) -> None:
        self.leadership = leadership
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.leading = False
        self._poll = leadership.poll_interval.total_seconds()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending: asyncio.Future[bool] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="leader-election")

    async def _run(self) -> None:
        log.info("high availability: competing for the leader lock %r every %.1fs",
                 self.leadership.name, self._poll)
        while not self._stop.is_set():
            try:
                await self.poll()
            except Exception:  # a failing callback must not end the election: the next round retries
                log.exception("high availability: changing this instance's role failed")
            with contextlib.suppress(TimeoutError):  # the next round, or stop() now
                await asyncio.wait_for(self._stop.wait(), self._poll)

    async def poll(self) -> bool:
        """One round: the leader checks its lock, a follower tries to take it. Returns ``leading``."""
        holds = await self._ask(self.leadership.still_held if self.leading else self.leadership.try_acquire)
        if holds and not self.leading:
            log.warning("high availability: this instance is now the LEADER (lock %r)", self.leadership.name)
            self.on_elected()
            self.leading = True  # only once the leader's work is set up: a failure is retried next round
        elif not holds and self.leading:
            self.leading = False
            log.warning("high availability: this instance stepped down and is now a FOLLOWER: it could not "
                        "confirm it holds the leader lock %r", self.leadership.name)
            self.on_deposed()
        return self.leading

    async def _ask(self, call: Callable[[], bool]) -> bool:
        # A call still running from an earlier round (a hung connection) is waited for
        # again rather than doubled: both calls answer "do we hold the lock now?".
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(asyncio.to_thread(call))
        try:
            return await asyncio.wait_for(asyncio.shield(self._pending), 2 * self._poll)
        except TimeoutError:
            log.warning("high availability: the leader lock's database did not answer within %.1fs",
                        2 * self._poll)
            return False
        except Exception:
            log.exception("high availability: the leader lock check failed")
            return False

    async def stop(self) -> None:
        """Stop competing; the caller releases the lock once leader-only work has stopped."""
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._pending is not None and not self._pending.done():
            await asyncio.wait([self._pending], timeout=2 * self._poll)
