"""High availability: two instances on one real PostgreSQL, one leader (an advisory lock).

The unit tests drive :class:`monitor.leader.Leadership` and :class:`LeaderElection`
directly against the server; the end-to-end test runs two real ``egovmon run``
processes against the simulators and a real SMTP server, kills the leader with
SIGKILL in the middle of handing a message over, and checks that the other one
takes over, collection goes on, and no message arrives twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from monitor.alerts.delivery import Deliverer
from monitor.alerts.outbox import Outbox
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.leader import LeaderElection, Leadership, lock_key
from monitor.metrics import ServiceMetrics
from monitor.scheduler import ServiceScheduler
from monitor.simulators.province import ProvinceModel
from monitor.storage import create_engine_for, upgrade_database
from monitor.storage.db import current_revision, head_revision
from monitor.storage.models import CollectionRunRow
from monitor.timeutil import FrozenClock
from tests.alerts.test_alert_cycle import alert_settings
from tests.alerts.test_smtp_delivery import NOW, RETRY, config_for, enqueue
from tests.support.process import REPO, read_until, spawn, stop
from tests.support.province import SOURCE_IDS, simulated_service, write_config
from tests.support.smtp import SmtpServer

POLL = timedelta(seconds=1)


def _terminate(engine: Engine, leadership: Leadership) -> None:
    """End the lock's session from the server side, as PostgreSQL does when the process dies."""
    unsigned = leadership.key % 2 ** 64  # pg_locks shows a bigint key as its high and low 32 bits
    with engine.connect() as connection:
        pid = connection.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = :high AND objid::bigint = :low"),
            {"high": unsigned >> 32, "low": unsigned % 2 ** 32}).scalar_one()
        # With a timeout it returns once the session has ended (and its locks are released).
        assert connection.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar_one()
    assert leadership.held  # it does not know yet


def test_exactly_one_holds_the_lock_and_the_other_takes_it_when_the_holders_session_ends(
        postgres_url: str) -> None:
    engine = create_engine_for(postgres_url)
    first = Leadership(engine, name="province-a", poll_interval=POLL)
    second = Leadership(engine, name="province-a", poll_interval=POLL)
    other = Leadership(engine, name="province-b", poll_interval=POLL)
    try:
        assert first.try_acquire() is True
        # The bounds in docs/high-availability.md rest on these settings of the lock's session.
        settings = {name: first._query(f"SHOW {name}") for name in (
            "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "statement_timeout")}
        assert settings == {"tcp_keepalives_idle": "3", "tcp_keepalives_interval": "1",
                            "tcp_keepalives_count": "3", "statement_timeout": "1s"}
        for _ in range(3):  # the loser keeps losing, the winner keeps winning
            assert second.try_acquire() is False
            assert first.still_held() is True
        assert other.try_acquire() is True  # another name is another lock
        assert second.still_held() is False  # a follower never claims to hold it

        _terminate(engine, first)
        assert first.still_held() is False  # the check notices the session is gone
        assert second.try_acquire() is True
        assert first.try_acquire() is False  # it competes again, and loses
        assert not (first.held and second.held)

        second.release()  # a clean stop hands over at once
        assert first.try_acquire() is True and second.try_acquire() is False
    finally:
        for leadership in (first, second, other):
            leadership.release()
        engine.dispose()


def test_the_lock_key_is_fixed_by_the_name() -> None:
    assert lock_key("egovmon-leader") == lock_key("egovmon-leader")
    assert lock_key("egovmon-leader") != lock_key("egovmon-leader-2")
    assert -(2 ** 63) <= lock_key("x") < 2 ** 63


async def test_an_election_elects_one_and_deposes_it_when_its_lock_is_gone(postgres_url: str) -> None:
    engine = create_engine_for(postgres_url)
    events: list[tuple[str, str]] = []

    def election(name: str) -> LeaderElection:
        return LeaderElection(Leadership(engine, name="egovmon-leader", poll_interval=POLL),
                              on_elected=lambda: events.append((name, "elected")),
                              on_deposed=lambda: events.append((name, "deposed")))

    a, b = election("a"), election("b")
    try:
        assert [await a.poll(), await b.poll()] == [True, False]
        assert [await a.poll(), await b.poll()] == [True, False]  # no flapping
        assert events == [("a", "elected")]
        await asyncio.to_thread(_terminate, engine, a.leadership)
        assert await a.poll() is False  # a steps down before b can take over …
        assert await b.poll() is True  # … and b is elected at its next round
        assert await a.poll() is False
        assert events == [("a", "elected"), ("a", "deposed"), ("b", "elected")]
    finally:
        for e in (a, b):
            await e.stop()
            e.leadership.release()
        engine.dispose()


def test_ha_on_sqlite_is_refused_with_what_to_do(tmp_path: Path, province: ProvinceModel) -> None:
    path = write_config(tmp_path, province, {kind: "http://127.0.0.1:1" for kind in SOURCE_IDS},
                        extra={"ha": {"enabled": True}})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "ha" in message and "PostgreSQL" in message and "sqlite" in message
    assert load_config(write_config(tmp_path, province, {k: "http://127.0.0.1:1" for k in SOURCE_IDS},
                                    extra={"ha": {"enabled": False}})).ha.enabled is False


def test_two_instances_upgrading_at_once_take_turns(postgres_url: str) -> None:
    engines = [create_engine_for(postgres_url) for _ in range(2)]
    results: list[str] = []
    errors: list[BaseException] = []

    def upgrade(engine: Engine) -> None:
        try:
            results.append(upgrade_database(engine))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert results == [head_revision()] * 2
        assert current_revision(engines[0]) == head_revision()
    finally:
        for engine in engines:
            engine.dispose()


async def test_a_follower_schedules_only_the_refresh_and_gets_the_leaders_jobs_when_elected(
        tmp_path: Path, province: ProvinceModel) -> None:
    async with simulated_service(tmp_path, province) as (service, _, config):
        service.set_leading(False)
        scheduler = ServiceScheduler(service)
        scheduler._add_jobs(None)
        assert {job.id for job in scheduler.scheduler.get_jobs()} == {"refresh-kpis"}
        scheduler.become_leader()
        collect = {f"collect:{s.id}" for s in config.sources}
        assert {job.id for job in scheduler.scheduler.get_jobs()} == collect | {"refresh-kpis", "alerts", "registry"}
        assert service.leading and service.may_send()
        scheduler.reschedule()  # a reload keeps the role
        assert {job.id for job in scheduler.scheduler.get_jobs()} == collect | {"refresh-kpis", "alerts", "registry"}
        scheduler.step_down()
        assert {job.id for job in scheduler.scheduler.get_jobs()} == {"refresh-kpis"}
        assert not service.leading and not service.may_send()
        scheduler.reschedule()
        assert {job.id for job in scheduler.scheduler.get_jobs()} == {"refresh-kpis"}


async def test_a_deposed_leader_claims_no_new_batch_of_mail(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path}/egovmon.db")
    upgrade_database(engine)
    outbox = Outbox(engine, jitter=0)
    for n in range(5):
        enqueue(outbox, f"m{n}", f"head{n}@sonha.gov.vn")
    leading = iter([True, False])  # deposed after the first batch
    async with SmtpServer() as smtp:
        deliverer = Deliverer(outbox, config_for(smtp), RETRY, ServiceMetrics(), FrozenClock(NOW), batch_size=2)
        summary = await deliverer.drain(keep_going=lambda: next(leading))
    assert summary.sent == 2 and len(smtp.received) == 2
    assert outbox.stats(NOW).counts["pending"] == 3  # left, unclaimed, for the new leader
    engine.dispose()


# ---------------------------------------------------------------------- two real processes


class Gate(asyncio.Event):
    """The SMTP server's DATA hold: lets the first ``free`` messages through, then holds
    each one until :meth:`set` (``held`` tells when one is waiting)."""

    def __init__(self, free: int) -> None:
        super().__init__()
        self.free = free
        self.held = asyncio.Event()

    async def wait(self) -> bool:  # type: ignore[override]
        if self.free > 0:
            self.free -= 1
            return True
        self.held.set()
        return await super().wait()


def _instance(config: Path, log: Path) -> subprocess.Popen[str]:
    """``egovmon run`` with its log (stderr) in ``log``, shown when the test fails."""
    with log.open("w", encoding="utf-8") as stderr:
        return subprocess.Popen([sys.executable, "-m", "monitor", "-c", str(config), "run"],
                                stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _get(port: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def _role(port: str) -> str | None:
    try:
        return str(json.loads(_get(port, "/readyz")[1]).get("role"))
    except (OSError, ValueError):
        return None


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _sample(text_: str, name: str, **labels: str) -> float | None:
    """The first sample of ``name`` with ``labels``, found line by line: parsing the whole
    exposition (a few MB) would take longer than the test may wait between the held send
    and the kill."""
    for line in text_.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name):]
        if rest.startswith("{"):
            label_text, _, value = rest[1:].rpartition("} ")
        elif rest.startswith(" "):
            label_text, value = "", rest[1:]
        else:
            continue  # a longer name with this prefix
        found = dict(_LABEL.findall(label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value.split()[0])
    return None


async def _until(condition: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_killing_the_leader_the_follower_takes_over_collects_and_no_mail_is_sent_twice(
        tmp_path: Path, province: ProvinceModel, postgres_url: str) -> None:
    smtp = SmtpServer()
    gate = Gate(free=3)  # three digests arrive, the fourth is cut off by the kill
    smtp.hold_data = gate
    await smtp.start()
    simulators = spawn("monitor.simulators", "--seed", "2025")
    processes: dict[str, subprocess.Popen[str]] = {}
    engine = create_engine_for(postgres_url)
    t0 = time.monotonic()

    def phase(what: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {what}")

    try:
        urls = {}
        for _ in SOURCE_IDS:
            match = await asyncio.to_thread(read_until, simulators, r"^(\w+) (http://127\.0\.0\.1:\d+)",
                                            time.monotonic() + 60)
            urls[match.group(1)] = match.group(2)
        settings = alert_settings(smtp, tick="2s", retry={"initial": "1s", "max": "2s"})
        # The held send must still be open when the leader is killed (a few tenths of a second
        # later); the delivery lease, 10 × timeout + 10 s, is what the test waits out after it.
        settings["smtp"]["timeout"] = "2s"
        # A short history (quick to collect) on a short schedule (collection visibly goes on).
        fast = {"schedule": {"interval": "3s"}, "backfill_from": "2026-09-01"}
        config = write_config(tmp_path, province, urls, database_url=postgres_url, extra={
            **settings, "ha": {"enabled": True, "poll_interval": f"{POLL.total_seconds()}s"},
            "exporter": {"windows": ["month", "ytd"], "evaluate_interval": "5s"}},
            **{source: fast for source in SOURCE_IDS.values()})

        ports: dict[str, str] = {}
        for name in ("a", "b"):  # started together: both upgrade the schema, one after the other
            processes[name] = _instance(config, tmp_path / f"{name}.log")
        for name, process in processes.items():
            ports[name] = (await asyncio.to_thread(
                read_until, process, r"serving http://127\.0\.0\.1:(\d+)/metrics", time.monotonic() + 60)).group(1)

        roles = await _until(lambda: (r := {n: _role(p) for n, p in ports.items()}) and
                             sorted(r.values()) == ["follower", "leader"] and r, 30, "one leader, one follower")
        leader = next(n for n, role in roles.items() if role == "leader")
        phase(f"roles {roles}")
        follower = next(n for n in ports if n != leader)

        await asyncio.wait_for(gate.held.wait(), 120)  # the leader collected, alerted, and is mid-send
        phase("a message held in DATA")
        status, before = await asyncio.to_thread(_get, ports[follower], "/metrics")
        assert status == 200 and _sample(before, "egov_leader") == 0.0
        assert not _sample(before, "egov_email_deliveries_total", outcome="sent")  # the follower sent nothing
        assert len(smtp.received) == 3

        killed_at = datetime.now(UTC)
        started = time.monotonic()
        processes[leader].kill()
        await asyncio.to_thread(processes[leader].wait, 10)
        status, during = await asyncio.to_thread(_get, ports[follower], "/metrics")
        assert status == 200 and "egov_kpi_value{" in during  # served while there is no leader

        await _until(lambda: _role(ports[follower]) == "leader", 20, "the follower to take over")
        takeover = time.monotonic() - started
        print(f"takeover after the kill: {takeover:.2f}s (poll interval {POLL.total_seconds():.1f}s)")
        await asyncio.sleep(0.2)  # the cut-off session is gone: what the server held is discarded
        gate.set()

        def collected_after_the_kill() -> bool:
            with engine.connect() as connection:
                runs = connection.execute(select(CollectionRunRow.source).where(
                    CollectionRunRow.started_at > killed_at, CollectionRunRow.status == "ok")).scalars().all()
            return set(runs) == set(SOURCE_IDS.values())

        await _until(collected_after_the_kill, 60, "a collection of every source after the kill")
        phase("collected after the kill")
        with engine.connect() as connection:  # what the dead leader left 'running' was closed on takeover
            assert connection.execute(select(CollectionRunRow.id).where(
                CollectionRunRow.status == "running", CollectionRunRow.started_at < killed_at)).all() == []

        outbox = Outbox(engine)

        def drained() -> bool:
            counts = outbox.stats(datetime.now(UTC)).counts
            return counts["pending"] == 0 and counts["sending"] == 0

        await _until(drained, 60, "the outbox to drain (the killed leader's lease must run out)")
        phase("outbox drained")
        status, after = await asyncio.to_thread(_get, ports[follower], "/metrics")
        assert status == 200 and _sample(after, "egov_leader") == 1.0
        processes[follower].send_signal(signal.SIGTERM)  # a clean stop of the new leader
        assert await asyncio.to_thread(processes[follower].wait, 30) == 0
    finally:
        for process in processes.values():
            stop(process)
        stop(simulators)
        await smtp.stop()

    rows = outbox.list(limit=10_000)
    deliveries = {row.id: [d.outcome for d in outbox.deliveries(row.id)] for row in rows}
    print(Counter(tuple(o) for o in deliveries.values()))
    received = Counter(smtp.message_ids())
    print(f"{len(rows)} message(s) in the outbox, {sum(received.values())} received, "
          f"{sum(1 for o in deliveries.values() if 'in_doubt' in o)} in doubt")
    assert len(rows) > 3 and all(row.status == "sent" for row in rows)
    assert set(received) == {row.message_id for row in rows}  # nothing lost
    for row in rows:  # nothing twice, unless the server took it just before a kill (recorded in_doubt)
        assert received[row.message_id] == 1 or "in_doubt" in deliveries[row.id], (row, deliveries[row.id])
    assert any("in_doubt" in outcomes for outcomes in deliveries.values())  # the kill did cut a send off
    assert max(received.values()) == 1  # and here the cut-off message had not been accepted: each once
    engine.dispose()
