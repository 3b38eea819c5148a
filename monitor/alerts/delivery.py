"""Draining the outbox: claim due messages, hand them to the SMTP relay over
one connection, record each outcome, and keep the metrics in step.

Messages are claimed in small batches, and the connection is opened only once
there is something to send. When the relay cannot be reached, only the batch
already claimed records the failure (and backs off); the rest of the queue is
left untouched for the next drain. That way a dead relay costs one connection
attempt per drain instead of one failed attempt for every queued message, and
the messages that did record it spread the retries out.
"""

from __future__ import annotations

import asyncio
import email
import email.parser
import email.policy
import email.utils
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from monitor.alerts.outbox import ClaimedMessage, Outbox
from monitor.alerts.smtp import DeliveryError, Refused, SmtpTransport
from monitor.config import RetryPolicy, SmtpConfig
from monitor.metrics import ServiceMetrics
from monitor.timeutil import Clock

log = logging.getLogger(__name__)

DEFAULT_BATCH = 10
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")  # ends the header block
DEFAULT_LEASE = timedelta(minutes=5)


@dataclass
class DrainSummary:
    """What one drain did, by outcome."""

    sent: int = 0
    transient: int = 0
    permanent: int = 0
    in_doubt_recovered: int = 0
    expired: int = 0  # transient failures of messages past ``give_up_after``: failed for good


def envelope_recipients(message: bytes) -> list[str]:
    """The addresses in the message's To and Cc headers, each once (the envelope
    is built from the stored message, so what is sent is what was composed)."""
    # The header block only, and in the plain (compat32) parser when it is ASCII, as the
    # composer's always is (names RFC 2047-encoded): parsing a digest whole with the default
    # policy cost several milliseconds a message, more than handing it to the relay. A head
    # with raw UTF-8 (SMTPUTF8 addresses) needs the default policy to read them.
    head = _BLANK_LINE.split(message, maxsplit=1)[0]
    if head.isascii():
        parsed = email.parser.BytesHeaderParser().parsebytes(head)
    else:
        parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(head, headersonly=True)
    values = [str(value) for header in ("To", "Cc") for value in parsed.get_all(header, [])]
    seen: set[str] = set()
    addresses: list[str] = []
    for _name, address in email.utils.getaddresses(values):
        if address and "@" in address and address.lower() not in seen:
            seen.add(address.lower())
            addresses.append(address)
    return addresses


class Deliverer:
    def __init__(self, outbox: Outbox, smtp_config: SmtpConfig, retry: RetryPolicy, metrics: ServiceMetrics,
                 clock: Clock, *, batch_size: int = DEFAULT_BATCH) -> None:
        self.outbox = outbox
        self.smtp_config = smtp_config
        self.retry = retry
        self.metrics = metrics
        self.clock = clock
        self.batch_size = batch_size

    async def drain(self, *, limit: int = 500, lease: timedelta = DEFAULT_LEASE,
                    keep_going: Callable[[], bool] = lambda: True) -> DrainSummary:
        """Send up to ``limit`` due messages. ``lease`` must outlast one batch
        (``batch_size`` messages at ``smtp.timeout`` each), or another sender may
        take a message back while it is still being handed over. No batch is claimed
        once ``keep_going`` says no (an instance that stopped being the leader)."""
        summary = DrainSummary()
        summary.in_doubt_recovered = await asyncio.to_thread(self.outbox.recover, self.clock.now())
        if summary.in_doubt_recovered:
            self.metrics.email_deliveries.labels(outcome="in_doubt").inc(summary.in_doubt_recovered)
        transport = SmtpTransport(self.smtp_config)
        try:
            await self._send_batches(transport, summary, limit, lease, keep_going)
        except BaseException:
            await transport.close(polite=False)
            raise
        await transport.close()
        await self.update_gauges()
        return summary

    async def update_gauges(self) -> None:
        """Set the outbox gauges from the database (the truth, also after a restart)."""
        stats = await asyncio.to_thread(self.outbox.stats, self.clock.now())
        for status, count in stats.counts.items():
            self.metrics.outbox_messages.labels(status=status).set(count)
        self.metrics.outbox_oldest_age.set(stats.oldest_age_seconds)

    async def _send_batches(self, transport: SmtpTransport, summary: DrainSummary, limit: int,
                            lease: timedelta, keep_going: Callable[[], bool]) -> None:
        remaining = limit
        # The record of the message sent last, written in a worker thread while the next one
        # is handed over (the database and the relay each wait on their own; one at a time,
        # so the records keep the order of the sends). Awaited before the next record starts
        # and before the drain ends, whatever ends it.
        recording: asyncio.Future[None] | None = None
        try:
            while remaining > 0 and keep_going():
                batch = await asyncio.to_thread(self.outbox.claim_due, self.clock.now(),
                                                limit=min(self.batch_size, remaining), lease=lease)
                if not batch:
                    return
                remaining -= len(batch)
                for index, message in enumerate(batch):
                    if not transport.connected:
                        try:
                            await transport.open()
                        except DeliveryError as exc:
                            # The relay is unreachable: what this batch already claimed records
                            # it; the rest of the queue waits for the next drain.
                            for claimed in batch[index:]:
                                await self._failed(claimed, exc, None, summary)
                            return
                    record = await self._deliver(transport, message, summary)
                    if recording is not None:
                        await recording
                        recording = None
                    if record is not None:
                        recording = asyncio.ensure_future(record)
        finally:
            if recording is not None:
                await recording

    async def _deliver(self, transport: SmtpTransport, message: ClaimedMessage,
                       summary: DrainSummary) -> Coroutine[Any, Any, None] | None:
        """Hand ``message`` over. A failure is recorded before this returns; a success returns
        the coroutine that records it, for the caller to run while the next message goes out."""
        recipients = envelope_recipients(message.message) or [message.recipient]
        started = time.perf_counter()
        try:
            refused = await transport.send(transport.sender, recipients, message.message)
        except DeliveryError as exc:
            if exc.connection:
                await transport.close(polite=False)  # the next message opens a fresh one
            await self._failed(message, exc, time.perf_counter() - started, summary)
            return None
        return self._sent(message, recipients, time.perf_counter() - started, _refused_detail(refused), summary)

    async def _sent(self, message: ClaimedMessage, recipients: list[str], duration: float, detail: str | None,
                    summary: DrainSummary) -> None:
        await asyncio.to_thread(self.outbox.mark_sent, message.id, self.clock.now(), duration, detail=detail)
        self._count("sent", duration)
        summary.sent += 1
        log.info("email %s (%s) to %s: sent, attempt %d, %.2fs%s", message.message_id, message.key,
                 ", ".join(recipients), message.attempts, duration, f"; {detail}" if detail else "")

    async def _failed(self, message: ClaimedMessage, error: DeliveryError, duration: float | None,
                      summary: DrainSummary) -> None:
        now = self.clock.now()
        if error.permanent:
            await asyncio.to_thread(self.outbox.mark_permanent, message.id, now, error.message, error.code,
                                    duration)
            outcome = "permanent"
            summary.permanent += 1
        else:
            outcome = await asyncio.to_thread(self.outbox.mark_transient, message.id, now, error.message,
                                              error.code, self.retry, duration)
            if outcome == "expired":
                summary.expired += 1
            else:
                summary.transient += 1
        self._count(outcome, duration)
        log.warning("email %s (%s) to %s: %s, attempt %d: %s", message.message_id, message.key,
                    message.recipient, outcome, message.attempts, error.message)

    def _count(self, outcome: str, duration: float | None) -> None:
        self.metrics.email_deliveries.labels(outcome=outcome).inc()
        if duration is not None:
            self.metrics.email_delivery_duration.observe(duration)


def _refused_detail(refused: Refused) -> str | None:
    if not refused:
        return None
    return "accepted, except for " + "; ".join(f"{address}: {code} {reply}"
                                               for address, (code, reply) in refused.items())
