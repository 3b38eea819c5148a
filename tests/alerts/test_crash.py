"""A sender killed with SIGKILL in the middle of handing mail to the SMTP server,
then restarted: every digest arrives, none twice. Real processes, real SMTP."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from monitor.alerts.outbox import Outbox
from monitor.simulators.province import ProvinceModel
from monitor.storage import create_engine_for
from monitor.timeutil import FrozenClock
from tests.alerts.test_alert_cycle import _sources_fresh, alert_settings
from tests.support.process import spawn, stop
from tests.support.province import simulated_service
from tests.support.smtp import SmtpServer


async def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_sigkill_while_sending_then_restart_delivers_each_digest_once(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    now = datetime.now(UTC)
    smtp = SmtpServer()
    await smtp.start()
    await smtp.stop()  # keep its port; the relay is down while the digests are composed
    settings = alert_settings(smtp)
    settings["smtp"]["timeout"] = "2s"
    async with simulated_service(tmp_path, province, clock=FrozenClock(now), database_url=database,
                                 extra=settings) as (service, _, _):
        _sources_fresh(service, now)
        await service.refresh_kpis()
        counts = service.alerting.outbox.stats(now).counts
    composed = counts["pending"]
    assert composed > 20 and counts["sent"] == 0

    config = str(tmp_path / "monitor.yaml")
    await smtp.start()
    try:
        sender = spawn("monitor", "-c", config, "alerts", "send")
        try:
            await _wait_for(lambda: len(smtp.received) >= 5, 60, "the first messages")
            smtp.data_entered.clear()
            smtp.hold_data = asyncio.Event()  # the next message stays in DATA …
            await asyncio.wait_for(smtp.data_entered.wait(), 30)
            sender.kill()  # … while the sender dies
            await asyncio.to_thread(sender.wait, 10)
        finally:
            stop(sender)
        await asyncio.sleep(0.2)
        smtp.hold_data.set()
        smtp.hold_data = None
        delivered_before_restart = len(smtp.received)
        assert 5 <= delivered_before_restart < composed

        outbox = Outbox(create_engine_for(f"sqlite:///{tmp_path / 'egovmon.db'}"))
        deadline = time.monotonic() + 120  # the killed sender's lease (10 × 2 s + 10 s) must run out
        while True:
            stats = outbox.stats(datetime.now(UTC)).counts
            if stats["pending"] == 0 and stats["sending"] == 0:
                break
            assert time.monotonic() < deadline, f"outbox never drained: {stats}"
            again = spawn("monitor", "-c", config, "alerts", "send")
            try:
                assert await asyncio.to_thread(again.wait, 60) == 0
            finally:
                stop(again)
            await asyncio.sleep(1)
    finally:
        await smtp.stop()

    ids = Counter(smtp.message_ids())
    assert len(ids) == composed  # nothing lost
    assert max(ids.values()) == 1  # nothing twice
    assert outbox.stats(datetime.now(UTC)).counts["sent"] == composed
    outcomes = Counter(d.outcome for row in outbox.list(limit=1000) for d in outbox.deliveries(row.id))
    assert outcomes["in_doubt"] >= 1  # the message cut off by the kill was retried, not forgotten
    assert outcomes["sent"] == composed
