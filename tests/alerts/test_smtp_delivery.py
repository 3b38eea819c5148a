"""Delivery from the outbox to a real SMTP server (aiosmtpd on 127.0.0.1):
plain, STARTTLS with login, implicit TLS, refusals, a relay that is down for a
while, and a sender killed mid-send."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from monitor.alerts.delivery import Deliverer, DrainSummary, envelope_recipients
from monitor.alerts.outbox import IN_DOUBT_DETAIL, Outbox
from monitor.alerts.smtp import LOGIN_REFUSED
from monitor.config import RetryPolicy, SmtpConfig
from monitor.metrics import ServiceMetrics
from monitor.storage import create_engine_for, upgrade_database
from monitor.timeutil import FrozenClock
from tests.support.smtp import HOST, SmtpServer, TlsFiles

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
RETRY = RetryPolicy(initial=timedelta(seconds=30), max=timedelta(minutes=10), give_up_after=timedelta(days=3))
SENDER = "Hệ thống giám sát <noreply@egovmon.example.vn>"
USER, PASSWORD = "egovmon", "s3cret-Pa55-word"


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    engine = create_engine_for(f"sqlite:///{tmp_path}/egovmon.db")
    upgrade_database(engine)
    yield Outbox(engine, jitter=0)
    engine.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics()


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return TlsFiles.create(tmp_path)


def config_for(server: SmtpServer, **overrides: Any) -> SmtpConfig:
    values: dict[str, Any] = {"host": HOST, "port": server.port, "security": server.security, "sender": SENDER,
                              "timeout": timedelta(seconds=5)}
    if server.tls is not None:
        values["ca_file"] = server.tls.ca_file
    values.update(overrides)
    return SmtpConfig(**values)


def deliverer(outbox: Outbox, config: SmtpConfig, clock: FrozenClock, metrics: ServiceMetrics,
              **kwargs: Any) -> Deliverer:
    return Deliverer(outbox, config, RETRY, metrics, clock, **kwargs)


def enqueue(outbox: Outbox, key: str, to: str, *, cc: tuple[str, ...] = (), now: datetime = NOW) -> int:
    message = EmailMessage(policy=SMTP_POLICY)  # CRLF line ends, RFC 2047 headers: as the composer writes
    message["From"] = SENDER
    message["To"] = f"Trưởng phòng <{to}>"
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = f"Chỉ tiêu chưa đạt — {key}"
    message["Message-ID"] = f"<{key}@egovmon.test>"
    message.set_content(f"Nội dung {key}")
    assert outbox.enqueue_now(key=key, kind="digest", recipient=to, subject=str(message["Subject"]),
                              message_id=f"<{key}@egovmon.test>", message=message.as_bytes(), now=now)
    (entry,) = [e for e in outbox.list(limit=1000) if e.key == key]
    return entry.id


def counter(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def status(outbox: Outbox, outbox_id: int) -> tuple[str, int]:
    entry = outbox.get(outbox_id)
    assert entry is not None
    return entry.status, entry.attempts


# --------------------------------------------------------------------------- transports


async def test_plain_delivery_over_one_connection(outbox: Outbox, clock: FrozenClock,
                                                  metrics: ServiceMetrics) -> None:
    async with SmtpServer() as server:
        ids = [enqueue(outbox, "a", "a@soyte.example.vn", cc=("pgd@soyte.example.vn",)),
               enqueue(outbox, "b", "b@sotc.example.vn"),
               enqueue(outbox, "c", "c@ubnd.example.vn")]
        summary = await deliverer(outbox, config_for(server), clock, metrics).drain()
        assert summary == DrainSummary(sent=3)
        assert server.connections == 1  # one connection for the whole batch
        assert [r.rcpt_tos for r in server.received] == [
            ("a@soyte.example.vn", "pgd@soyte.example.vn"), ("b@sotc.example.vn",), ("c@ubnd.example.vn",)]
        assert {r.mail_from for r in server.received} == {"noreply@egovmon.example.vn"}
        assert all("BODY=8BITMIME" in r.mail_options for r in server.received)  # the body is UTF-8, 8 bit
        assert server.message_ids() == ["<a@egovmon.test>", "<b@egovmon.test>", "<c@egovmon.test>"]
        assert not any(r.tls for r in server.received)
        stored = outbox.message(ids[0])
        assert stored is not None and server.received[0].content.rstrip(b"\r\n") == stored.rstrip(b"\r\n")
        for outbox_id in ids:
            assert status(outbox, outbox_id) == ("sent", 1)
            assert [(d.outcome, d.code) for d in outbox.deliveries(outbox_id)] == [("sent", 250)]
        assert counter(metrics, "egov_email_deliveries_total", outcome="sent") == 3
        assert counter(metrics, "egov_email_delivery_duration_seconds_count") == 3
        assert counter(metrics, "egov_outbox_messages", status="sent") == 3
        assert counter(metrics, "egov_outbox_messages", status="pending") == 0
        assert counter(metrics, "egov_outbox_oldest_pending_age_seconds") == 0
        # Nothing due: a drain neither sends nor connects.
        assert await deliverer(outbox, config_for(server), clock, metrics).drain() == DrainSummary()
        assert server.connections == 1 and len(server.received) == 3


async def test_starttls_with_login_verifies_the_certificate(outbox: Outbox, clock: FrozenClock,
                                                            metrics: ServiceMetrics, tls: TlsFiles) -> None:
    async with SmtpServer(security="starttls", tls=tls, username=USER, password=PASSWORD) as server:
        outbox_id = enqueue(outbox, "a", "a@soyte.example.vn")
        config = config_for(server, username=USER, password=SecretStr(PASSWORD))
        assert await deliverer(outbox, config, clock, metrics).drain() == DrainSummary(sent=1)
        (received,) = server.received
        assert received.tls is True and received.login == USER
        assert server.logins == [(USER, True)]
        assert status(outbox, outbox_id) == ("sent", 1)


async def test_starttls_refuses_a_certificate_it_cannot_verify(outbox: Outbox, clock: FrozenClock,
                                                               metrics: ServiceMetrics, tls: TlsFiles) -> None:
    async with SmtpServer(security="starttls", tls=tls) as server:
        outbox_id = enqueue(outbox, "a", "a@soyte.example.vn")
        config = config_for(server, ca_file=None)  # only the system CAs: our private CA is unknown
        assert await deliverer(outbox, config, clock, metrics).drain() == DrainSummary(transient=1)
        assert server.received == []
        entry = outbox.get(outbox_id)
        assert entry is not None and entry.status == "pending"
        assert entry.last_error is not None and "certificate verify failed" in entry.last_error


async def test_implicit_tls(outbox: Outbox, clock: FrozenClock, metrics: ServiceMetrics, tls: TlsFiles) -> None:
    async with SmtpServer(security="tls", tls=tls) as server:
        outbox_id = enqueue(outbox, "a", "a@soyte.example.vn")
        assert await deliverer(outbox, config_for(server), clock, metrics).drain() == DrainSummary(sent=1)
        (received,) = server.received
        assert received.tls is True and received.rcpt_tos == ("a@soyte.example.vn",)
        assert status(outbox, outbox_id) == ("sent", 1)


# --------------------------------------------------------------------------- refusals


async def test_wrong_password_is_transient_and_never_shown(outbox: Outbox, clock: FrozenClock,
                                                            metrics: ServiceMetrics, tls: TlsFiles,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-Pa55-" + PASSWORD
    async with SmtpServer(security="starttls", tls=tls, username=USER, password=PASSWORD) as server:
        outbox_id = enqueue(outbox, "a", "a@soyte.example.vn")
        bad = config_for(server, username=USER, password=SecretStr(wrong))
        assert await deliverer(outbox, bad, clock, metrics).drain() == DrainSummary(transient=1)
        assert server.received == [] and server.logins and not any(ok for _user, ok in server.logins)
        entry = outbox.get(outbox_id)
        assert entry is not None and (entry.status, entry.attempts) == ("pending", 1)
        assert entry.last_error is not None and entry.last_error.startswith(LOGIN_REFUSED)
        (delivery,) = outbox.deliveries(outbox_id)
        assert (delivery.outcome, delivery.code) == ("transient", 535)
        texts = [entry.last_error, delivery.detail or "", *(r.getMessage() for r in caplog.records)]
        assert any(LOGIN_REFUSED in text for text in texts[2:])  # the operator sees it in the log
        assert not any(wrong in text or PASSWORD in text for text in texts)
        # Fixed configuration: the message goes out at its next attempt.
        clock.advance(RETRY.initial)
        good = config_for(server, username=USER, password=SecretStr(PASSWORD))
        assert await deliverer(outbox, good, clock, metrics).drain() == DrainSummary(sent=1)
        assert server.message_ids() == ["<a@egovmon.test>"]


async def test_unknown_mailbox_fails_only_its_message(outbox: Outbox, clock: FrozenClock,
                                                      metrics: ServiceMetrics) -> None:
    unknown = "khongton.tai@soyte.example.vn"
    async with SmtpServer(refuse_recipients={unknown: "550 5.1.1 mailbox unknown"}) as server:
        first = enqueue(outbox, "a", "a@soyte.example.vn")
        refused = enqueue(outbox, "b", unknown)
        third = enqueue(outbox, "c", "c@soyte.example.vn")
        copied = enqueue(outbox, "d", "d@soyte.example.vn", cc=(unknown,))
        summary = await deliverer(outbox, config_for(server), clock, metrics).drain()
        assert summary == DrainSummary(sent=3, permanent=1)
        assert server.message_ids() == ["<a@egovmon.test>", "<c@egovmon.test>", "<d@egovmon.test>"]
        assert server.received[2].rcpt_tos == ("d@soyte.example.vn",)
        assert status(outbox, refused) == ("failed", 1)
        (delivery,) = outbox.deliveries(refused)
        assert (delivery.outcome, delivery.code) == ("permanent", 550)
        assert delivery.detail is not None and unknown in delivery.detail and "mailbox unknown" in delivery.detail
        # Accepted for the head, refused for the copy: sent (a retry would duplicate it), the refusal noted.
        (sent,) = outbox.deliveries(copied)
        assert sent.outcome == "sent" and sent.detail is not None and unknown in sent.detail
        assert [status(outbox, i)[0] for i in (first, third, copied)] == ["sent"] * 3
        assert counter(metrics, "egov_email_deliveries_total", outcome="permanent") == 1
        assert counter(metrics, "egov_outbox_messages", status="failed") == 1
        # Never retried.
        clock.advance(timedelta(days=2))
        assert await deliverer(outbox, config_for(server), clock, metrics).drain() == DrainSummary()
        assert len(server.received) == 3 and len(outbox.deliveries(refused)) == 1


@pytest.mark.parametrize(("where", "reply", "outcome", "code"), [
    ("rcpt", "451 4.3.0 try again later", "transient", 451),
    ("data", "451 4.3.0 try again later", "transient", 451),
    ("data", "554 5.7.1 message rejected", "permanent", 554),
    ("rcpt", "550 5.4.4 unable to route", "transient", 550),  # 5.4.4: a passing DNS problem, retried
])
async def test_reply_codes_are_classified(outbox: Outbox, clock: FrozenClock, metrics: ServiceMetrics,
                                          where: str, reply: str, outcome: str, code: int) -> None:
    async with SmtpServer(rcpt_reply=reply if where == "rcpt" else None,
                          data_reply=reply if where == "data" else None) as server:
        outbox_id = enqueue(outbox, "a", "a@soyte.example.vn")
        summary = await deliverer(outbox, config_for(server), clock, metrics).drain()
        assert summary == DrainSummary(**{outcome: 1})
        (delivery,) = outbox.deliveries(outbox_id)
        assert (delivery.outcome, delivery.code) == (outcome, code)
        assert delivery.detail is not None and reply.split(" ", 1)[1] in delivery.detail
        entry = outbox.get(outbox_id)
        assert entry is not None
        if outcome == "transient":
            assert entry.status == "pending" and entry.next_attempt_at == NOW + RETRY.initial
            server.rcpt_reply = server.data_reply = None
            clock.advance(RETRY.initial)
            assert await deliverer(outbox, config_for(server), clock, metrics).drain() == DrainSummary(sent=1)
            assert server.message_ids() == ["<a@egovmon.test>"]
        else:
            assert entry.status == "failed" and server.received == []


# --------------------------------------------------------------------------- outages and crashes


async def test_relay_down_for_several_drains_then_back(outbox: Outbox, clock: FrozenClock,
                                                       metrics: ServiceMetrics) -> None:
    server = SmtpServer()
    await server.start()
    await server.stop()  # the port is known, nothing listens on it: connection refused
    try:
        ids = [enqueue(outbox, key, f"{key}@soyte.example.vn") for key in ("a", "b", "c")]
        drainer = deliverer(outbox, config_for(server), clock, metrics)
        waits = [30, 60, 120]  # the backoff after each failed attempt
        for attempt, wait in enumerate(waits, start=1):
            assert await drainer.drain() == DrainSummary(transient=3)
            for outbox_id in ids:
                entry = outbox.get(outbox_id)
                assert entry is not None
                assert (entry.status, entry.attempts) == ("pending", attempt)
                assert entry.next_attempt_at == clock.now() + timedelta(seconds=wait)
                assert entry.last_error is not None and f"{HOST}:{server.port}" in entry.last_error
            clock.advance(timedelta(seconds=wait - 1))
            assert await drainer.drain() == DrainSummary()  # not due yet: the relay is left alone
            assert counter(metrics, "egov_outbox_messages", status="pending") == 3
            assert counter(metrics, "egov_outbox_oldest_pending_age_seconds") == (clock.now() - NOW).total_seconds()
            clock.advance(timedelta(seconds=1))
        await server.start()  # back, on the same port
        assert await drainer.drain() == DrainSummary(sent=3)
        assert await drainer.drain() == DrainSummary()
        clock.advance(timedelta(days=1))
        assert await drainer.drain() == DrainSummary()
        assert Counter(server.message_ids()) == {"<a@egovmon.test>": 1, "<b@egovmon.test>": 1,
                                                 "<c@egovmon.test>": 1}
        for outbox_id in ids:
            assert status(outbox, outbox_id) == ("sent", 4)
            assert [d.outcome for d in outbox.deliveries(outbox_id)] == ["transient"] * 3 + ["sent"]
        assert counter(metrics, "egov_email_deliveries_total", outcome="transient") == 9
        assert counter(metrics, "egov_email_deliveries_total", outcome="sent") == 3
        assert counter(metrics, "egov_outbox_oldest_pending_age_seconds") == 0
    finally:
        await server.stop()


async def test_a_dead_relay_costs_one_batch_per_drain(outbox: Outbox, clock: FrozenClock,
                                                      metrics: ServiceMetrics) -> None:
    server = SmtpServer()
    await server.start()
    await server.stop()
    ids = [enqueue(outbox, f"m{index}", f"m{index}@soyte.example.vn") for index in range(5)]
    drainer = deliverer(outbox, config_for(server), clock, metrics, batch_size=2)
    assert await drainer.drain() == DrainSummary(transient=2)
    assert [status(outbox, i)[1] for i in ids] == [1, 1, 0, 0, 0]  # the rest of the queue was not touched
    assert await drainer.drain() == DrainSummary(transient=2)  # the next two (the first ones back off)
    assert [status(outbox, i)[1] for i in ids] == [1, 1, 1, 1, 0]
    try:
        await server.start()
        clock.advance(RETRY.initial)
        assert await drainer.drain() == DrainSummary(sent=5)
        assert sorted(server.message_ids()) == [f"<m{index}@egovmon.test>" for index in range(5)]
        assert server.connections == 1
    finally:
        await server.stop()


async def test_expired_lease_is_sent_again_once(outbox: Outbox, clock: FrozenClock,
                                                metrics: ServiceMetrics) -> None:
    async with SmtpServer() as server:
        outbox_id = enqueue(outbox, "a", "a@soyte.example.vn")
        # A sender claimed it and was killed before it could record anything.
        (claimed,) = outbox.claim_due(clock.now(), limit=10, lease=timedelta(minutes=5))
        drainer = deliverer(outbox, config_for(server), clock, metrics)
        assert await drainer.drain() == DrainSummary()  # its lease still runs: hands off
        assert server.received == []
        clock.advance(timedelta(minutes=5, seconds=1))
        assert await drainer.drain() == DrainSummary(sent=1, in_doubt_recovered=1)
        assert await drainer.drain() == DrainSummary()
        assert server.message_ids() == [claimed.message_id]
        assert status(outbox, outbox_id) == ("sent", 2)
        assert [(d.outcome, d.detail) for d in outbox.deliveries(outbox_id)] == [
            ("in_doubt", IN_DOUBT_DETAIL), ("sent", None)]
        assert counter(metrics, "egov_email_deliveries_total", outcome="in_doubt") == 1


async def test_sender_killed_mid_data_is_recovered(outbox: Outbox, clock: FrozenClock,
                                                   metrics: ServiceMetrics) -> None:
    hold = asyncio.Event()
    async with SmtpServer(hold_data=hold) as server:
        outbox_id = enqueue(outbox, "a", "a@soyte.example.vn")
        drainer = deliverer(outbox, config_for(server), clock, metrics)
        task = asyncio.create_task(drainer.drain(lease=timedelta(minutes=5)))
        await asyncio.wait_for(server.data_entered.wait(), timeout=10)
        task.cancel()  # the process dies while the server holds the message in DATA
        with pytest.raises(asyncio.CancelledError):
            await task
        assert status(outbox, outbox_id) == ("sending", 1)
        for _ in range(100):  # bounded: the server notices the dropped session within a few loop turns
            if server.open_sessions == 0:
                break
            await asyncio.sleep(0.01)
        assert server.open_sessions == 0
        hold.set()  # too late: the session that held the message is gone
        server.hold_data = None
        await asyncio.sleep(0)
        assert server.received == []
        clock.advance(timedelta(minutes=6))
        assert await drainer.drain() == DrainSummary(sent=1, in_doubt_recovered=1)
        assert server.message_ids() == ["<a@egovmon.test>"]
        assert [d.outcome for d in outbox.deliveries(outbox_id)] == ["in_doubt", "sent"]
        assert status(outbox, outbox_id) == ("sent", 2)


def test_envelope_recipients_come_from_to_and_cc() -> None:
    message = EmailMessage(policy=SMTP_POLICY)
    message["To"] = '"Nguyễn Văn A, Giám đốc" <a@soyte.example.vn>, b@soyte.example.vn'
    message["Cc"] = "A@soyte.example.vn, Phó GĐ <c@soyte.example.vn>"
    message.set_content("x")
    raw = message.as_bytes()
    assert b"=?utf-8?" in raw  # the display name went out RFC 2047-encoded
    assert envelope_recipients(raw) == ["a@soyte.example.vn", "b@soyte.example.vn", "c@soyte.example.vn"]
