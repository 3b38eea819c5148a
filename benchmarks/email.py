"""1,000 digests to a local SMTP server: the outbox and its deliverer against plain aiosmtplib.

1,000 digests (the real composer, three Vietnamese target items each, text and
HTML, a distinct recipient each) are stored in the outbox (SQLite, the
service's own engine settings and schema); ``Deliverer.drain`` then claims
them, hands them to a real aiosmtpd server on 127.0.0.1 and records every
attempt, as the service does. The server runs in its own process (as a relay
would), so it does not compete with the sender for the interpreter.

Figure, against a baseline measured in the same run:

- ``email_digests``: the drain's throughput (messages per second), against plain
  aiosmtplib sending the same 1,000 stored messages over one reused
  connection. ``ratio`` is service / plain; the goal is ``ratio >= 0.8``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from benchmarks._servers import SmtpSink
from benchmarks.common import Result

SENDER = "Giám sát CQĐT <egovmon@sonha.gov.vn>"
DOMAIN = "sonha.gov.vn"
CREATED = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def digest_messages(count: int, distinct: int | None = None) -> list[tuple[str, str, str, bytes]]:
    """``(key, recipient, subject, message)`` for ``count`` digests: ``distinct`` of them (all
    by default) composed, the others copies with their own recipient, key and Message-ID
    (composing is slow, and not what is measured)."""
    composed = _compose(distinct or count)
    out = []
    for n in range(count):
        key, recipient, subject, message = composed[n % len(composed)]
        if n >= len(composed):
            new_recipient = f"chutich.xa{n}@{DOMAIN}"
            old_id = message_id_of(message)
            message = (message.replace(f"<{recipient}>".encode(), f"<{new_recipient}>".encode())
                       .replace(old_id.encode(), f"<copy{n}.{old_id[1:]}".encode()))
            key, recipient = f"digest:2026-12-01T03:00:00Z:{new_recipient}", new_recipient
        out.append((key, recipient, subject, message))
    return out


def _compose(count: int) -> list[tuple[str, str, str, bytes]]:
    from monitor.alerts.compose import compose, subject_of
    from monitor.alerts.model import Digest, Recipient, TargetItem

    base = TargetItem(
        kind="firing", rule="egov.online_dossier_2026", rule_title="Tỷ lệ hồ sơ trực tuyến năm 2026",
        kpi="online_dossier_rate", kpi_name="Tỷ lệ hồ sơ trực tuyến", unit="000.01.01.H99",
        unit_name="UBND xã Tân Lập", status="behind", severity="warning", actual=0.725, expected=0.848,
        target=0.9, comparator=">=", gap=0.123, gap_to_target=0.175, deadline=date(2026, 12, 31),
        forecast_value=0.81, forecast_reached_on=None, forecast_reachable=False, trend_per_year=0.052,
        citation="QĐ 942/QĐ-TTg (15/6/2021): Chiến lược phát triển Chính phủ điện tử",
        citation_url="https://vanban.chinhphu.vn/?docid=203770", since=datetime(2026, 11, 28, 1, 30, tzinfo=UTC),
        escalation_level=0, data_through=datetime(2026, 11, 30, 17, 0, tzinfo=UTC),
        report_url="https://egov.sonha.gov.vn/units/000.01.01.H99?as_of=2026-12-01&tab=kpi")
    out = []
    for n in range(count):
        unit = f"000.{n // 100:02d}.{n % 100:02d}.H99"
        items = tuple(replace(base, unit=unit, unit_name=f"UBND xã Tân Lập Số {n}", rule=f"egov.rule_{k}",
                              actual=0.5 + k / 10) for k in range(3))
        recipient = f"chutich.xa{n}@{DOMAIN}"
        digest = Digest(recipient=Recipient(recipient, f"Nguyễn Văn Số {n}", "vi"), province="Sơn Hà",
                        created_at=CREATED, timezone="Asia/Ho_Chi_Minh", items=items, thread_key=unit)
        key = f"digest:2026-12-01T03:00:00Z:{recipient}"
        message = compose(digest, sender=SENDER, domain=DOMAIN, message_key=key)
        out.append((key, recipient, subject_of(digest), message.as_bytes()))
    return out


def message_id_of(message: bytes) -> str:
    for line in message.split(b"\r\n\r\n", 1)[0].split(b"\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise ValueError("no Message-ID")


def service_drain(messages: list[tuple[str, str, str, bytes]], port: int, directory: Path) -> tuple[float, int]:
    """Store ``messages`` in a fresh outbox, then time ``Deliverer.drain`` sending them all;
    return (seconds, messages recorded as sent)."""
    from monitor.alerts.delivery import Deliverer
    from monitor.alerts.outbox import Outbox
    from monitor.config import RetryPolicy, SmtpConfig
    from monitor.metrics import ServiceMetrics
    from monitor.storage import create_engine_for
    from monitor.storage.db import upgrade_database
    from monitor.timeutil import FrozenClock

    engine = create_engine_for(f"sqlite:///{directory}/outbox-{time.monotonic_ns()}.db")
    upgrade_database(engine)
    outbox = Outbox(engine)
    now = CREATED
    for key, recipient, subject, message in messages:
        outbox.enqueue_now(key=key, kind="digest", recipient=recipient, subject=subject,
                           message_id=message_id_of(message), message=message, now=now)
    smtp = SmtpConfig(host="127.0.0.1", port=port, security="none", sender=SENDER,
                      timeout=timedelta(seconds=30))
    deliverer = Deliverer(outbox, smtp, RetryPolicy(), ServiceMetrics(), FrozenClock(now + timedelta(seconds=1)))
    started = time.perf_counter()
    summary = asyncio.run(deliverer.drain(limit=len(messages)))
    seconds = time.perf_counter() - started
    sent = outbox.stats(now).counts.get("sent", 0)
    engine.dispose()
    if summary.sent != len(messages) or sent != len(messages):
        raise RuntimeError(f"the drain sent {summary.sent} of {len(messages)} ({summary})")
    return seconds, sent


def plain_send(messages: list[tuple[str, str, str, bytes]], port: int) -> float:
    """Plain aiosmtplib: one connection, every message sent on it."""
    import aiosmtplib

    sender = "egovmon@sonha.gov.vn"

    async def send() -> float:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False)
        started = time.perf_counter()
        await client.connect()
        for _key, recipient, _subject, message in messages:
            await client.sendmail(sender, [recipient], message, mail_options=["BODY=8BITMIME"])
        await client.quit()
        return time.perf_counter() - started

    return asyncio.run(send())


def measure(count: int, distinct: int, repeats: int) -> tuple[float, float, float]:
    """(service seconds, plain seconds, mean message bytes): the best of ``repeats`` each,
    alternating; checks that the server received every message, each with its own Message-ID."""
    messages = digest_messages(count, distinct)
    service, plain = float("inf"), float("inf")
    with SmtpSink() as sink, tempfile.TemporaryDirectory() as directory:
        for _ in range(repeats):  # alternate, so that a noisy moment does not favour one side
            sink.reset()
            plain = min(plain, plain_send(messages, sink.port))
            _check(sink, count)
            sink.reset()
            service = min(service, service_drain(messages, sink.port, Path(directory))[0])
            _check(sink, count)
    return service, plain, sum(len(m[3]) for m in messages) / count


def _check(sink: SmtpSink, count: int) -> None:
    received, distinct_ids = sink.received()
    if received != count or distinct_ids != count:
        raise RuntimeError(f"the server received {received} messages, {distinct_ids} distinct, not {count}")


def run(quick: bool) -> list[Result]:
    # --quick: half the messages, each side twice, alternating (the machine is shared and noisy).
    return results(count=500 if quick else 1000, distinct=100 if quick else 1000, repeats=2 if quick else 3)


def results(*, count: int, distinct: int, repeats: int) -> list[Result]:
    service, plain, size = measure(count, distinct, repeats)
    made = "composed" if distinct >= count else (f"{distinct} composed, the rest copies with their own "
                                                 "recipient and Message-ID")
    scale = (f"{count} digests ({made}; 3 items, text + HTML, {size / 1024:.1f} KiB each) to aiosmtpd on "
             "127.0.0.1; outbox on SQLite (WAL); best of "
             f"{repeats}")
    return [Result("email_digests", count / service, "messages/s",
                   "plain aiosmtplib, the same messages over one reused connection", count / plain, scale,
                   "ratio >= 0.8 (issue 9): service throughput / plain throughput")]
