"""A real SMTP server (aiosmtpd) on 127.0.0.1 for delivery tests.

It records every accepted message with its envelope, and can be told to
speak STARTTLS or implicit TLS (certificates from ``trustme``), to require a
login, to refuse recipients or data with a given reply, to hold a message in
DATA, and to stop and start again on the same port.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any, Literal

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
Security = Literal["none", "starttls", "tls"]


@dataclass(frozen=True)
class TlsFiles:
    """A private CA and a server certificate for 127.0.0.1 and localhost."""

    ca_file: Path  # PEM of the CA, for the client's ``smtp.ca_file``
    server_context: ssl.SSLContext

    @classmethod
    def create(cls, directory: Path) -> TlsFiles:
        ca = trustme.CA()
        certificate = ca.issue_cert(HOST, "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        ca_file = directory / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        return cls(ca_file=ca_file, server_context=context)


@dataclass(frozen=True)
class Received:
    """A message the server accepted, with its envelope."""

    mail_from: str
    mail_options: tuple[str, ...]
    rcpt_tos: tuple[str, ...]
    content: bytes
    tls: bool  # the session was encrypted (STARTTLS or implicit TLS)
    login: str | None  # the user that logged in, if any

    @property
    def message_id(self) -> str:
        return str(message_from_bytes(self.content, policy=policy.default)["Message-ID"])


@dataclass
class SmtpServer:
    """``async with SmtpServer(...) as server:`` — listening on ``server.port``."""

    security: Security = "none"
    tls: TlsFiles | None = None
    username: str | None = None
    password: str | None = None
    port: int = 0
    # Replies that override acceptance: per recipient (lower-case address), for every
    # RCPT, or for DATA; e.g. "550 5.1.1 <x@y>: mailbox unknown" or "451 4.3.0 try later".
    refuse_recipients: dict[str, str] = field(default_factory=dict)
    rcpt_reply: str | None = None
    data_reply: str | None = None
    # When set, DATA waits for this event before accepting (a sender can be killed meanwhile).
    hold_data: asyncio.Event | None = None
    data_entered: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)
    connections: int = 0
    _server: asyncio.Server | None = None
    _live: set[SMTP] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.security != "none" and self.tls is None:
            raise ValueError(f"security {self.security!r} needs tls=TlsFiles.create(...)")

    async def __aenter__(self) -> SmtpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (again) on ``port``: the first start picks a free one."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        ssl_context = self.tls.server_context if self.security == "tls" and self.tls else None
        self._server = await loop.create_server(self._protocol, HOST, self.port, ssl=ssl_context)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and cut every open session, as a crashed relay would."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for protocol in list(self._live):
            if isinstance(protocol.transport, asyncio.Transport):
                protocol.transport.abort()
        self._live.clear()
        await server.wait_closed()
        for _ in range(3):  # let connection_lost callbacks run and cancel the session tasks
            await asyncio.sleep(0)

    @property
    def open_sessions(self) -> int:
        return len(self._live)

    def message_ids(self) -> list[str]:
        return [message.message_id for message in self.received]

    # ------------------------------------------------------------------ aiosmtpd

    def _protocol(self) -> SMTP:
        self.connections += 1
        starttls = self.security == "starttls"
        protocol = _TrackedSMTP(
            self, _Handler(self), hostname="test-smtp", loop=asyncio.get_running_loop(),
            tls_context=self.tls.server_context if starttls and self.tls else None,
            require_starttls=starttls,
            # aiosmtpd only knows about STARTTLS; on implicit TLS the session is already encrypted.
            auth_require_tls=self.security != "tls",
            authenticator=self._authenticate if self.username else None)
        return protocol

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        accepted = (user == self.username and self.password is not None
                    and auth_data.password.decode() == self.password)
        self.logins.append((user, accepted))
        return AuthResult(success=accepted, handled=False, auth_data=user if accepted else None)


class _TrackedSMTP(SMTP):
    def __init__(self, owner: SmtpServer, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._owner._live.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._live.discard(self)
        super().connection_lost(error)


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if self.owner.username and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        reply = self.owner.refuse_recipients.get(address.lower()) or self.owner.rcpt_reply
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        owner = self.owner
        owner.data_entered.set()
        if owner.hold_data is not None:
            await owner.hold_data.wait()
        if owner.data_reply is not None:
            return owner.data_reply
        content = envelope.original_content or envelope.content or b""
        owner.received.append(Received(
            mail_from=str(envelope.mail_from), mail_options=tuple(envelope.mail_options),
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=content if isinstance(content, bytes) else content.encode(),
            tls=owner.security == "tls" or session.ssl is not None,
            login=session.auth_data if session.authenticated else None))
        return "250 2.0.0 Message accepted for delivery"
