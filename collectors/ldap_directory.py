"""Official email accounts read straight from an LDAP directory: kind ``ldap_directory``.

For a Zimbra server (its OpenLDAP holds every account with
``zimbraAccountStatus`` and ``zimbraLastLogonTimestamp``) or any directory
carrying those attributes. The directory only knows the present, so it is read
as a snapshot for the local day of the clock's instant, and counted exactly as
the ``email_directory`` kind counts (``collectors.mailboxes``).

One search per run, ``base_dn`` / ``filter`` / subtree, with the paged-results
control (RFC 2696, ``page_size`` entries a page) so a directory's size limit
does not cut the list short. A search the server ends early (size, time or
admin limit) fails the run: a partial directory would report a false total.

The unit of an account is an ``ou`` of its DN (``unit_from: ou``, the
``ou_level``-th OU below ``base_dn``) or one of its attributes
(``unit_from: attribute``, ``unit_attribute``), translated by ``unit_map``.

ldap3 is synchronous; the whole exchange (connect, StartTLS, bind, pages,
unbind) runs in one worker thread, and its exceptions and result codes are
mapped to the collector errors here. The bind password never appears in a
message or a raw_ref.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import ssl
import warnings
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NoReturn, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, PositiveInt, field_validator, model_validator

from collectors.base import (
    CollectionResult,
    Collector,
    CollectorError,
    MalformedPayload,
    Rejection,
    SourceAuthError,
    SourceRequestError,
    SourceTimeout,
    SourceUnavailable,
)
from collectors.mailboxes import (
    MailboxOptions,
    count_mailboxes,
    mailbox_model,
    refuse_short_snapshot,
    snapshot_observations,
)
from collectors.records import validate_records
from monitor.timeutil import Period

with warnings.catch_warnings():
    # ldap3 2.9.1 imports pyasn1 names that pyasn1 0.6 deprecates (tagMap, typeMap): harmless,
    # and not ours to fix; silenced for this import only, so tests run with warnings as errors.
    warnings.filterwarnings("ignore", r"(tagMap|typeMap) is deprecated", DeprecationWarning)
    import ldap3
    from ldap3.core.exceptions import LDAPException, LDAPInvalidDnError, LDAPInvalidFilterError
    from ldap3.operation.search import parse_filter
    from ldap3.utils.dn import parse_dn

PAGED_RESULTS = "1.2.840.113556.1.4.319"
STATUS, LAST_LOGON = "zimbraAccountStatus", "zimbraLastLogonTimestamp"
DN_UNIT_FIELD = "ou"  # the record key a DN-derived unit is put under
_HEX_ESCAPE = re.compile(rb"\\([0-9A-Fa-f]{2}|.)")
# LDAP result codes (RFC 4511) that need their own answer; any other is "the request was refused".
_BIND_REFUSED = frozenset({48, 49})  # inappropriateAuthentication, invalidCredentials
_LIMITS = frozenset({3, 4, 11})  # timeLimitExceeded, sizeLimitExceeded, adminLimitExceeded
_BUSY = frozenset({51, 52})  # busy, unavailable


def _check_dn(value: str) -> str:
    try:
        parse_dn(value)
    except LDAPInvalidDnError as exc:
        raise ValueError(f"not a DN ({exc}): {value!r} (write e.g. ou=people,dc=example,dc=vn)") from None
    return value


class LdapDirectoryOptions(MailboxOptions):
    base_dn: Annotated[str, Field(min_length=1)]
    filter: str = "(objectClass=zimbraAccount)"
    unit_from: Literal["ou", "attribute"] = "ou"
    ou_level: PositiveInt = 1  # 1: the OU right below base_dn
    unit_attribute: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9-]*$")] | None = None
    page_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    start_tls: bool = False
    ca_file: Path | None = None  # the CA that signed the directory's certificate
    verify: bool = True  # check the directory's certificate (never switch off outside tests)

    @field_validator("base_dn")
    @classmethod
    def _base_is_a_dn(cls, value: str) -> str:
        return _check_dn(value)

    @field_validator("filter")
    @classmethod
    def _filter_parses(cls, value: str) -> str:
        try:
            parse_filter(value, None, True, True, None, False)  # type: ignore[no-untyped-call]
        except LDAPInvalidFilterError:
            raise ValueError(f"not an LDAP filter: {value!r} (write e.g. "
                             "(&(objectClass=zimbraAccount)(!(zimbraIsSystemAccount=TRUE))))") from None
        return value

    @model_validator(mode="after")
    def _unit_source_is_complete(self) -> Self:
        if self.unit_from == "attribute" and self.unit_attribute is None:
            raise ValueError("unit_from: attribute needs unit_attribute (e.g. departmentNumber)")
        if self.unit_from == "ou" and self.unit_attribute is not None:
            raise ValueError(f"unit_attribute ({self.unit_attribute}) is read only with unit_from: attribute; "
                             "set unit_from: attribute, or remove unit_attribute to take the unit from the DN")
        return self


class _HandshakeCheckedTls(ldap3.Tls):
    """TLS where the standard library checks the certificate's host name during the handshake,
    as for HTTPS. ldap3 2.9 checks it afterwards with ``ssl.match_hostname``, deprecated since
    Python 3.7 and removed in 3.12."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(validate=context.verify_mode)
        self.context = context

    def wrap_socket(self, connection: ldap3.Connection, do_handshake: bool = False) -> None:
        connection.socket = self.context.wrap_socket(
            connection.socket, server_side=False, do_handshake_on_connect=do_handshake,
            server_hostname=connection.server.host)


@dataclass
class SearchOutcome:
    """What one paged search returned: (DN, attribute → values) in order, and the page count."""

    entries: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    pages: int = 0


class LdapDirectoryCollector(Collector):
    kind: ClassVar[str] = "ldap_directory"
    supports_history: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = LdapDirectoryOptions
    url_schemes: ClassVar[tuple[str, ...]] = ("ldap", "ldaps")
    options: LdapDirectoryOptions

    async def collect(self, periods: Sequence[Period], units: Set[str]) -> CollectionResult:
        now = self.clock.now()
        outcome = await asyncio.to_thread(self._search)
        if not outcome.entries:
            raise SourceRequestError(self.source_id, (
                f"the search found no entries under {self.options.base_dn} with filter {self.options.filter}: "
                "check base_dn and filter, and that the bind DN may read the accounts (an anonymous "
                "or unprivileged bind usually sees nothing)"))
        result = CollectionResult()
        snapshot = Period.containing(now, "day", self.tz)
        items = self._records(outcome, snapshot, result)
        unit_field = self.options.unit_attribute or DN_UNIT_FIELD
        accounts = validate_records(self.source_id, mailbox_model(unit_field), items, result, what="account")
        totals = count_mailboxes(accounts, units, now, self.options, snapshot, result,
                                 unit_source=self._unit_source())
        refuse_short_snapshot(self.source_id, len(outcome.entries), result, self.options)
        ref = (f"{self._server_url()}/{self.options.base_dn}?sub?{self.options.filter}: "
               f"{len(outcome.entries)} entries in {outcome.pages} pages as of {now:%Y-%m-%dT%H:%M:%SZ}")
        result.observations += snapshot_observations(totals, snapshot, ref)
        return result

    # ------------------------------------------------------------------ entries → records

    def _unit_source(self) -> str:
        if self.options.unit_from == "attribute":
            return str(self.options.unit_attribute)
        return f"ou (level {self.options.ou_level} below {self.options.base_dn})"

    def _records(self, outcome: SearchOutcome, snapshot: Period,
                 result: CollectionResult) -> list[tuple[str, dict[str, Any]]]:
        """``(raw_ref, record)`` per entry in the shape ``Mailbox`` reads; an entry whose DN
        holds no unit is rejected here, and if none does, ``ou_level`` is wrong."""
        items: list[tuple[str, dict[str, Any]]] = []
        without_unit = 0
        for dn, attributes in outcome.entries:
            ref = f"{self._server_url()}/{dn}"
            record: dict[str, Any] = {"name": dn}
            for name in (STATUS, LAST_LOGON, self.options.unit_attribute):
                values = attributes.get(name.casefold()) if name else None
                if name and values:
                    record[name] = values[0] if len(values) == 1 else values
            if self.options.unit_from == "ou":
                unit = self._unit_of_dn(dn)
                if unit is None:
                    without_unit += 1
                    result.rejections.append(Rejection("no_unit", (
                        f"account {dn}: its DN has no ou at level {self.options.ou_level} below "
                        f"{self.options.base_dn}; move the entry under a unit's OU, or fix options.ou_level"),
                        period=snapshot, raw_ref=ref))
                    continue
                record[DN_UNIT_FIELD] = unit
            items.append((ref, record))
        if without_unit and not items:
            raise MalformedPayload(self.source_id, (
                f"none of the {without_unit} entries has an ou at level {self.options.ou_level} below "
                f"{self.options.base_dn} in its DN: lower options.ou_level, or read the unit from an "
                "attribute (unit_from: attribute)"))
        return items

    def _unit_of_dn(self, dn: str) -> str | None:
        try:
            rdns = parse_dn(dn, strip=True)
            base = parse_dn(self.options.base_dn, strip=True)
        except LDAPInvalidDnError:
            return None
        def key(part: tuple[str, str, str]) -> tuple[str, str]:
            return part[0].casefold(), _unescape(part[1]).casefold()

        if len(rdns) <= len(base) or [key(p) for p in rdns[-len(base):]] != [key(p) for p in base]:
            return None
        below = rdns[:-len(base)]
        ous = [_unescape(value) for name, value, _ in reversed(below) if name.casefold() == "ou"]
        level = self.options.ou_level
        return ous[level - 1] if len(ous) >= level else None

    # ------------------------------------------------------------------ the wire (worker thread)

    def _server_url(self) -> str:
        """The URL without anything but scheme, host and port (no userinfo can leak)."""
        parts = urlsplit(self.settings.url)
        host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
        return f"{parts.scheme.lower()}://{host}:{self._port()}"

    def _port(self) -> int:
        parts = urlsplit(self.settings.url)
        try:
            port = parts.port
        except ValueError:
            raise SourceRequestError(self.source_id, "the url's port is not a number") from None
        return port or (636 if parts.scheme.lower() == "ldaps" else 389)

    def _server(self) -> ldap3.Server:
        parts = urlsplit(self.settings.url)
        if not parts.hostname:
            raise SourceRequestError(self.source_id, "the url names no host (write ldaps://host:636)")
        secure = parts.scheme.lower() == "ldaps"
        if secure and self.options.start_tls:
            raise SourceRequestError(self.source_id, "start_tls is for ldap:// urls; ldaps:// is TLS already")
        tls = None
        if secure or self.options.start_tls:
            ca_file = self.options.ca_file
            if ca_file is not None and not ca_file.is_file():
                raise SourceRequestError(self.source_id, f"options.ca_file {ca_file} is not a readable file")
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if not self.options.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            tls = _HandshakeCheckedTls(context)
        return ldap3.Server(parts.hostname, port=self._port(), use_ssl=secure, tls=tls,
                            get_info=ldap3.NONE, connect_timeout=self.settings.timeout)

    def _search(self) -> SearchOutcome:
        credentials = self.settings.credentials
        if credentials.type not in ("none", "basic"):
            raise SourceRequestError(self.source_id, (
                f"auth type {credentials.type!r} does not apply to LDAP: use basic (username: the bind DN, "
                "password) or none (anonymous)"))
        anonymous = credentials.type == "none"
        connection = ldap3.Connection(
            self._server(), user=None if anonymous else credentials.username,
            password=None if anonymous else credentials.password,
            authentication=ldap3.ANONYMOUS if anonymous else ldap3.SIMPLE,
            # whole seconds: ldap3 packs it into SO_RCVTIMEO
            receive_timeout=max(1, math.ceil(self.settings.timeout)), read_only=True, auto_referrals=False,
            raise_exceptions=False)
        try:
            self._open(connection)
            return self._pages(connection)
        except CollectorError:
            raise
        except LDAPException as exc:
            self._fail_on(exc)
        finally:
            with contextlib.suppress(LDAPException):  # the connection is going anyway
                connection.unbind()

    def _open(self, connection: ldap3.Connection) -> None:
        connection.open()
        if self.options.start_tls and not connection.start_tls():
            self._refused(connection, "StartTLS")
        if not connection.bind():
            self._refused(connection, "bind")

    def _pages(self, connection: ldap3.Connection) -> SearchOutcome:
        outcome = SearchOutcome()
        wanted = [STATUS, LAST_LOGON] + ([self.options.unit_attribute] if self.options.unit_attribute else [])
        cookie: bytes | None = None
        while True:
            connection.search(self.options.base_dn, self.options.filter, ldap3.SUBTREE, attributes=wanted,
                              paged_size=self.options.page_size, paged_cookie=cookie)
            if connection.result.get("result") != 0:
                self._refused(connection, "search", len(outcome.entries))
            outcome.pages += 1
            for item in connection.response or []:
                if item.get("type") == "searchResEntry":
                    outcome.entries.append((str(item["dn"]), _decoded(item.get("raw_attributes", {}))))
            control = (connection.result.get("controls") or {}).get(PAGED_RESULTS, {})
            cookie = control.get("value", {}).get("cookie") or None
            if not cookie:
                return outcome

    # ------------------------------------------------------------------ errors

    def _refused(self, connection: ldap3.Connection, step: str, read: int = 0) -> NoReturn:
        """Map a result code the server sent at ``step`` to a collector error."""
        code = int(connection.result.get("result", -1))
        name = str(connection.result.get("description") or code)
        said = self._scrub(str(connection.result.get("message") or "").strip())
        said = f" ({said})" if said else ""
        if step == "bind" and code in _BIND_REFUSED:
            raise SourceAuthError(self.source_id, f"bind as {self._who(connection)} refused: {name}{said}; "
                                  "check auth.username (the bind DN) and the password")
        if code == 13:  # confidentialityRequired
            raise SourceRequestError(self.source_id, f"{step} refused: the directory requires TLS; use an "
                                     "ldaps:// url or start_tls: true")
        if code == 50:
            raise SourceAuthError(self.source_id, f"{step} refused: {name}{said}; the bind DN may not read "
                                  f"{self.options.base_dn}")
        if code == 32:  # noSuchObject; slapd also answers so when the entry is hidden from the binder
            raise SourceRequestError(self.source_id, f"base_dn {self.options.base_dn} not found: it does not "
                                     f"exist, or {self._who(connection)} may not read it{said}")
        if code in _LIMITS:
            error = SourceTimeout if code == 3 else SourceRequestError
            raise error(self.source_id, (
                f"the directory stopped the search after {read} entries: {name}{said}. A partial list "
                "would give a false total, so nothing was counted; raise the limits for the bind DN "
                "(OpenLDAP: limits dn.exact=\"<bind DN>\" size.prtotal=unlimited)"))
        if code in _BUSY:
            raise SourceUnavailable(self.source_id, f"{step}: the directory is {name}{said}")
        raise SourceRequestError(self.source_id, f"{step} refused: {name} (code {code}){said}")

    def _who(self, connection: ldap3.Connection) -> str:
        if connection.authentication == ldap3.ANONYMOUS:
            return "anonymous"
        return str(self.settings.credentials.username)

    def _fail_on(self, exc: LDAPException) -> NoReturn:
        text = self._scrub(str(exc))
        where = self._server_url()
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            reason = _tls_reason(text)
            if "mismatch" in reason:
                raise SourceUnavailable(self.source_id, (
                    f"TLS to {where}: the certificate does not name this host ({reason}); write the "
                    "host name the certificate was issued for in the url")) from None
            raise SourceUnavailable(self.source_id, (
                f"TLS to {where}: the directory's certificate is not trusted ({reason}); set "
                "options.ca_file to the CA that signed it")) from None
        if "timed out" in text.lower() or "timeout" in text.lower():
            raise SourceTimeout(self.source_id, f"{where} did not answer within {self.settings.timeout:g}s "
                                f"({type(exc).__name__})") from None
        raise SourceUnavailable(self.source_id, f"{where}: {type(exc).__name__}: {text}") from None

    def _scrub(self, text: str) -> str:
        for secret in self.settings.credentials.secrets():
            text = text.replace(secret, "***")
        return text


def _tls_reason(text: str) -> str:
    match = re.search(r"certificate verify failed: ([^(\]'\"]+)", text)
    return match.group(1).strip() if match else "certificate verify failed"


def _decoded(raw: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Attribute values as text, by case-folded attribute name (LDAP names ignore case)."""
    return {name.casefold(): [v.decode("utf-8", "replace") for v in values] for name, values in raw.items()}


def _unescape(value: str) -> str:
    """An RDN value without its DN escapes (``\\,`` and ``\\C3\\A1`` are UTF-8 bytes)."""
    def one(match: re.Match[bytes]) -> bytes:
        token = match.group(1)
        return bytes.fromhex(token.decode()) if len(token) == 2 else token

    return _HEX_ESCAPE.sub(one, value.encode()).decode("utf-8", "replace")
