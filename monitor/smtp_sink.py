"""A local SMTP server that writes every message it receives to ``DIR/*.eml``.

Used by the demo so that mail can be read without a real relay; it speaks real
SMTP (aiosmtpd), so the sending side is exercised exactly as in production.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from itertools import count
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)


class MaildirWriter:
    """aiosmtpd handler: one ``.eml`` file per accepted message, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sequence = count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        subject = message_from_bytes(content, policy=policy.default).get("Subject", "") or ""
        slug = re.sub(r"[^\w-]+", "-", str(subject), flags=re.UNICODE).strip("-")[:60] or "message"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{next(self._sequence):05d}-{slug}.eml"
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(content)
        temporary.rename(self.directory / name)
        log.info("mail sink: %s → %s", envelope.rcpt_tos, name)
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = MaildirWriter(directory)
        self.host, self.port = host, port
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.handler.directory.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()

        def protocol() -> Any:
            return SMTP(self.handler, hostname="egovmon-sink", enable_SMTPUTF8=True,
                        data_size_limit=32 * 1024 * 1024)

        self._server = await loop.create_server(protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
