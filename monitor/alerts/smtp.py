"""Handing messages to the SMTP relay (aiosmtplib), with every failure sorted
into *permanent* (this message will never be accepted: do not retry) or
*transient* (try again later).

One :class:`SmtpTransport` is one SMTP connection, reused for a batch of
messages. The password never appears in an error or a log line: errors carry
the server's reply, and any text that could echo the password is scrubbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import ssl
from types import TracebackType

import aiosmtplib

from monitor.config import SmtpConfig

log = logging.getLogger(__name__)

LOGIN_REFUSED = "SMTP login refused: check smtp.username/password"
# Refused recipients of a message the server accepted for the others: address → (code, reply).
Refused = dict[str, tuple[int, str]]


class DeliveryError(Exception):
    """A message (or the connection for it) was not accepted by the SMTP server."""

    def __init__(self, permanent: bool, code: int | None, message: str, *, connection: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        self.message = message
        # True when the connection itself is unusable: later messages need a new one.
        self.connection = connection

    def __str__(self) -> str:
        return self.message


def envelope_sender(config: SmtpConfig) -> str:
    """The addr-spec of ``smtp.sender`` (``Name <a@b>`` → ``a@b``), for MAIL FROM."""
    address = email.utils.parseaddr(config.sender)[1]
    return address or config.sender


def is_permanent_reply(code: int, text: str) -> bool:
    """5xx is final, 4xx is not — except 5.4.4 (unable to route), which on real
    relays is usually a passing DNS problem, so it is retried."""
    return 500 <= code < 600 and not text.lstrip().startswith("5.4.4")


def tls_context(config: SmtpConfig) -> ssl.SSLContext:
    """The client context: the system's CAs plus ``ca_file``, or no checks at all
    when ``verify`` is off (a relay with a self-signed certificate, knowingly)."""
    if not config.verify:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if config.ca_file is not None:
        context.load_verify_locations(cafile=str(config.ca_file))
    return context


class SmtpTransport:
    """``async with SmtpTransport(config) as smtp: await smtp.send(...)`` — one
    connection (TLS and login as configured) for many messages."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.sender = envelope_sender(config)
        self._client: aiosmtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def __aenter__(self) -> SmtpTransport:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        # A cancelled or failing batch must not wait for a polite QUIT on a connection
        # that may be stuck; a normal end says goodbye.
        await self.close(polite=exc is None)

    async def open(self) -> None:
        """Connect, secure and log in; raise DeliveryError (``connection=True``)."""
        if self.connected:
            return
        config = self.config
        try:
            context = await asyncio.to_thread(tls_context, config)
        except OSError as exc:  # ssl.SSLError included
            raise DeliveryError(False, None, f"cannot use smtp.ca_file {config.ca_file}: {exc}",
                                connection=True) from None
        client = aiosmtplib.SMTP(
            hostname=config.host, port=config.port, timeout=config.timeout.total_seconds(),
            use_tls=config.security == "tls",
            # Explicitly False for "none": aiosmtplib would otherwise upgrade whenever offered.
            start_tls=config.security == "starttls",
            tls_context=context)
        try:
            await self._connect(client)
        except BaseException:
            client.close()  # also when cancelled: no half-open connection is left behind
            raise
        self._client = client
        log.debug("SMTP: connected to %s (%s)", self.where, config.security)

    async def _connect(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.connect()
            if client.last_ehlo_response is None:
                await client.ehlo()  # now, so the extensions are known before the first message
            await self._login(client)
        except DeliveryError:
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._connection_error(exc) from None

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        config = self.config
        if config.username is None or config.password is None:
            return
        try:
            await client.login(config.username, config.password.get_secret_value())
        except aiosmtplib.SMTPAuthenticationError as exc:
            # A wrong password is the service's problem, not the mailbox's: the
            # message stays queued (transient) until the configuration is fixed.
            raise DeliveryError(False, exc.code, self._scrub(f"{LOGIN_REFUSED} (server said: {exc.code} "
                                                             f"{exc.message})"), connection=True) from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            raise  # the connection failed, not the login
        except aiosmtplib.SMTPException as exc:
            raise DeliveryError(False, None, self._scrub(f"SMTP login impossible on {self.where}: {exc.message}"
                                                         " (check smtp.security)"), connection=True) from None

    async def close(self, *, polite: bool = True) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if polite and client.is_connected:
            # The server may have gone away first; then there is nobody to say goodbye to.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        client.close()

    async def send(self, sender: str, recipients: list[str], message: bytes) -> Refused:
        """Hand one message over. Return the recipients refused while others were
        accepted (the message was delivered: retrying would duplicate it for the
        others); raise DeliveryError when nobody accepted it."""
        if self._client is None or not self._client.is_connected:
            raise DeliveryError(False, None, f"not connected to the SMTP server {self.where}", connection=True)
        options = _mail_options(self._client, sender, recipients, message)
        try:
            errors, _reply = await self._client.sendmail(sender, recipients, message, mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise self._recipients_error(exc) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise self._sender_error(exc) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(is_permanent_reply(exc.code, exc.message), exc.code,
                                self._scrub(f"{exc.code} {exc.message}")) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise DeliveryError(True, None, self._scrub(exc.message)) from None
        except (aiosmtplib.SMTPException, OSError) as exc:  # disconnected, timed out: the connection is gone
            raise self._connection_error(exc) from None
        except ValueError as exc:  # an address aiosmtplib cannot put on the wire
            raise DeliveryError(True, None, f"invalid address: {exc}") from None
        return {address: (response.code, response.message) for address, response in errors.items()}

    def _recipients_error(self, exc: aiosmtplib.SMTPRecipientsRefused) -> DeliveryError:
        replies = [(r.code, r.message, r.recipient) for r in exc.recipients]
        permanent = bool(replies) and all(is_permanent_reply(code, text) for code, text, _ in replies)
        text = "; ".join(f"{who}: {code} {reply}" for code, reply, who in replies)
        code = replies[0][0] if replies else None
        return DeliveryError(permanent, code, self._scrub(f"every recipient refused — {text}"))

    def _sender_error(self, exc: aiosmtplib.SMTPSenderRefused) -> DeliveryError:
        # 552 at MAIL FROM means this message is too big (SIZE): final for it. Any
        # other refusal of our own address is the service's configuration, not the
        # message's fault, so the message waits for the fix.
        if exc.code == 552:
            return DeliveryError(True, exc.code, self._scrub(f"{exc.code} {exc.message}"))
        # 530: the relay wants TLS or a login before it takes mail.
        hint = "smtp.security and smtp.username" if exc.code == 530 else "smtp.sender"
        return DeliveryError(False, exc.code, self._scrub(
            f"SMTP server refused the sender {exc.sender}: {exc.code} {exc.message} (check {hint})"))

    def _connection_error(self, exc: BaseException) -> DeliveryError:
        code = getattr(exc, "code", None)
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if isinstance(code, int) and code >= 400:
            detail = f"{code} {detail}"
        return DeliveryError(False, code if isinstance(code, int) else None,
                             self._scrub(f"SMTP server {self.where}: {detail}"), connection=True)

    def _scrub(self, text: str) -> str:
        """Belt and braces: no reply or exception text may carry the password on."""
        password = self.config.password.get_secret_value() if self.config.password else ""
        return text.replace(password, "***") if password else text


def _mail_options(client: aiosmtplib.SMTP, sender: str, recipients: list[str], message: bytes) -> list[str]:
    options = []
    # An 8-bit body (UTF-8 text parts) is declared where the server supports it (RFC 6152).
    if not message.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    # Only non-ASCII addresses need SMTPUTF8; headers are RFC 2047-encoded by the composer.
    if not _ascii(sender, *recipients):
        options.append("SMTPUTF8")
    return options


def _ascii(*texts: str) -> bool:
    return all(text.isascii() for text in texts)
