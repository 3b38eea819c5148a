"""e-document exchange axis envelopes (edXML, QCVN 102:2016): kind ``edxml``.

Counts, per organisation code and period, the e-documents a unit sent over
the axis, how many of those carried a digital signature, and how many it
received, from the edXML envelopes themselves: a folder of ``*.edxml`` /
``*.xml`` files (``file:///srv/lgsp/edxml``) or an HTTP listing of them
(docs/connect/edxml.md gives the listing's shape).

Decisions, and why:

- Envelopes are parsed by ``defusedxml`` with DTDs forbidden: edXML needs
  none, and a DTD is how entity expansion ("billion laughs") and external
  entities (reading a local file or a URL) get in. The size is checked
  before parsing, from the file's size or the HTTP body as it streams in.
- The period is the promulgation date (``PromulgationInfo/PromulgationDate``,
  a local date): the denominators of the KPIs (the register book's outgoing
  documents) are counted by issue date, and a ratio needs both sides on the
  same calendar. ``date: sent`` uses the first trace hop's timestamp instead
  (local time, as the axis writes it).
- Signed means the envelope carries an XML signature with a non-empty
  ``SignatureValue`` (W3C ``ds:Signature``, or the SDK's un-namespaced
  ``Signature``, in the edXML namespace or none); an empty
  ``edXML:DigitalSignature`` is unsigned. The signature is not verified.
- The same document delivered twice counts once: the key is ``DocumentId``
  (sender, date, number/notation by the standard), or the sender, date and
  ``Code`` when the id is empty. The later copy (by file modification time,
  or listing order) is rejected ``duplicate``.
- A unit that appears anywhere in what was read gets explicit zeros for the
  requested periods inside the span the envelopes cover (first to last date):
  the folder is the axis's log for that span, so silence there is a true 0.
  Outside the span nothing is known, and nothing is reported.
- A party whose code is not a unit (after ``unit_map``) is rejected
  ``unknown_unit`` once per envelope, and the envelope still counts for its
  known parties: an envelope from a ministry to a commune is the commune's
  incoming document. Codes matching ``external`` (globs) are skipped quietly.
- The runner asks for periods in chunks; the envelopes are read once per run
  and each rejection is reported once: an undated one (unreadable file) with
  the first chunk, a dated one with the chunk holding its period.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import xml.parsers.expat
from collections import Counter
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, DTDForbidden
from defusedxml import ElementTree as SafeET
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from collectors.base import (
    CollectionResult,
    Collector,
    MalformedPayload,
    Observation,
    Rejection,
    SourceRequestError,
    SourceSettings,
    SourceUnavailable,
)
from collectors.http import SourceHttp, describe_request
from collectors.records import WireModel, describe_errors
from monitor.timeutil import Clock, Period, local_midnight
from monitor.units import QCVN102_CODE

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DS = "http://www.w3.org/2000/09/xmldsig#"
SUFFIXES = frozenset({".edxml", ".xml"})
_E = f"{{{NS}}}"
# W3C XMLDSig; the SDK's <Signature> written without a namespace of its own, so in
# the edXML default namespace, or in none when the root uses a prefix.
_SIGNATURES = {(f"{{{DS}}}Signature", f"{{{DS}}}SignatureValue"),
               (f"{_E}Signature", f"{_E}SignatureValue"), ("Signature", "SignatureValue")}
_DATE = re.compile(r"^(\d{4})[/-](\d{2})[/-](\d{2})$")
_TIMESTAMP = re.compile(r"^(\d{4})[/-](\d{2})[/-](\d{2})[ T]\d{2}:\d{2}(?::\d{2})?$")
_MEASURE = r"^[a-z][a-z0-9_]*$"
_READ_CHUNK = 1024 * 1024


# ----------------------------------------------------------------------------- options

class Measures(BaseModel):
    """Which catalog measure each count feeds; null to not report it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sent: Annotated[str, Field(pattern=_MEASURE)] | None = "docs_outgoing_electronic"
    signed: Annotated[str, Field(pattern=_MEASURE)] | None = "docs_outgoing_signed"
    received: Annotated[str, Field(pattern=_MEASURE)] | None = "docs_incoming_electronic"


class EdxmlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    recursive: bool = False  # folder mode: also read sub-folders
    max_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 20 * 1024 * 1024
    date: Literal["promulgation", "sent"] = "promulgation"
    unit_map: dict[str, str] = {}  # OrganId as written in envelopes → unit code
    external: tuple[str, ...] = ()  # globs of codes outside the unit tree, skipped without a rejection
    measures: Measures = Measures()
    listing_path: Annotated[str, Field(pattern=r"^/\S*$")] = "/envelopes"  # HTTP mode
    fetch_concurrency: Annotated[int, Field(ge=1, le=64)] = 8

    @field_validator("unit_map")
    @classmethod
    def _maps_to_unit_codes(cls, value: dict[str, str]) -> dict[str, str]:
        for raw, code in value.items():
            if not QCVN102_CODE.match(code):
                raise ValueError(
                    f"unit_map[{raw!r}] must be a unit code (QCVN 102 format V1V2V3.Z1Z2.Y1Y2.MX1X2, "
                    f"e.g. 000.00.31.H12), got: {code!r}")
        return value


# ----------------------------------------------------------------------------- one envelope

@dataclass(frozen=True, slots=True)
class Envelope:
    """What an envelope says that is counted; codes as written in it."""

    ref: str
    key: str  # what makes two deliveries the same document
    sender: str
    receivers: tuple[str, ...]
    day: date  # local date that places it in a period
    signed: bool


@dataclass(frozen=True, slots=True)
class Refusal:
    """A file or envelope that is not counted, before units and periods are known."""

    reason: str
    detail: str
    ref: str
    day: date | None = None
    code: str | None = None


class EnvelopeError(Exception):
    def __init__(self, reason: str, detail: str, day: date | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.day, self.code = reason, detail, day, code


def parse_envelope(data: bytes, ref: str, date_source: str = "promulgation") -> Envelope:
    """The counted facts of one edXML package; ``EnvelopeError`` says why it cannot be counted."""
    root = _parse_safely(data)
    if root.tag != f"{_E}edXML":
        namespace, _, local = root.tag[1:].rpartition("}") if root.tag.startswith("{") else ("", "", root.tag)
        raise EnvelopeError("schema", f"root element is <{local}> in namespace {namespace or '(none)'}, "
                            f"expected <edXML> in namespace {NS} (QCVN 102:2016)")
    header = root.find(f"{_E}edXMLEnvelope/{_E}edXMLHeader")
    if header is None:
        raise EnvelopeError("schema", "edXML/edXMLEnvelope/edXMLHeader missing")
    message = header.find(f"{_E}MessageHeader")
    if message is None:
        if header.find(f"{_E}Status") is not None or root.find(f".//{_E}Status") is not None:
            raise EnvelopeError("not_a_document", "a status package (edXML:Status), not a document: "
                                "nothing to count; keep status packages out of the folder or listing")
        raise EnvelopeError("schema", "edXMLHeader/MessageHeader missing")
    sender = _text(message, "From/OrganId")
    if not sender:
        raise EnvelopeError("schema", "MessageHeader/From/OrganId missing or empty: without the sender "
                            "the document cannot be counted; fix the sending software's organisation code")
    receivers = []
    for index, to in enumerate(message.findall(f"{_E}To"), start=1):
        code = _text(to, "OrganId")
        if not code:
            raise EnvelopeError("schema", f"MessageHeader/To[{index}]/OrganId missing or empty", code=sender)
        receivers.append(code)
    day = _promulgation_day(message, sender) if date_source == "promulgation" else _sent_day(header, sender)
    return Envelope(ref, _document_key(message, sender, day), sender, tuple(dict.fromkeys(receivers)), day,
                    _is_signed(root))


def _parse_safely(data: bytes) -> Element:
    try:
        return SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden:
        raise EnvelopeError("unsafe_xml", "has a DOCTYPE (DTD): edXML needs none, and a DTD can expand "
                            "entities or read local files, so the file was not parsed; ask the sender "
                            "to send the envelope without a DOCTYPE") from None
    except DefusedXmlException as exc:
        raise EnvelopeError("unsafe_xml", f"declares entities or external references ({type(exc).__name__}); "
                            "not parsed; ask the sender to send plain edXML") from None
    except ParseError as exc:
        line, column = exc.position
        why = xml.parsers.expat.errors.messages.get(exc.code, "not well-formed")
        raise EnvelopeError("malformed_xml", f"not well-formed XML at line {line}, column {column}: {why} "
                            "(a truncated transfer, or not an edXML file)") from None
    except (LookupError, ValueError) as exc:
        # expat's handling of the declared encoding: unknown (encoding="TF-8"), or
        # multi-byte ones it cannot read (shift_jis, utf-32).
        raise EnvelopeError("malformed_xml", f"the XML declaration names an encoding that cannot be read "
                            f"({exc}); edXML is UTF-8") from None


def _text(parent: Element, path: str) -> str:
    found = parent.find("/".join(_E + step for step in path.split("/")))
    return (found.text or "").strip() if found is not None else ""


def _promulgation_day(message: Element, sender: str) -> date:
    text = _text(message, "PromulgationInfo/PromulgationDate")
    if not text:
        raise EnvelopeError("schema", "MessageHeader/PromulgationInfo/PromulgationDate missing or empty: "
                            "the document cannot be placed in a period (or set options.date: sent)", code=sender)
    match = _DATE.match(text)
    day = _date_of(match)
    if day is None:
        raise EnvelopeError("schema", f"MessageHeader/PromulgationInfo/PromulgationDate = {text!r} is not "
                            "a date YYYY/MM/DD", code=sender)
    return day


def _sent_day(header: Element, sender: str) -> date:
    stamps = [(s.text or "").strip() for s in header.iterfind(f"{_E}TraceHeaderList/{_E}TraceHeader/{_E}Timestamp")]
    if not any(stamps):
        raise EnvelopeError("schema", "edXMLHeader/TraceHeaderList/TraceHeader/Timestamp missing: the "
                            "send time is unknown (options.date is 'sent'; or use 'promulgation')", code=sender)
    days = []
    for text in filter(None, stamps):
        day = _date_of(_TIMESTAMP.match(text))
        if day is None:
            raise EnvelopeError("schema", f"TraceHeader/Timestamp = {text!r} is not YYYY/MM/DD HH:mm:ss",
                                code=sender)
        days.append(day)
    return min(days)  # the first hop is the sender's


def _date_of(match: re.Match[str] | None) -> date | None:
    if match is None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _document_key(message: Element, sender: str, day: date) -> str:
    document_id = _text(message, "DocumentId")
    if document_id:
        return document_id
    number, notation = _text(message, "Code/CodeNumber"), _text(message, "Code/CodeNotation")
    if not number:
        raise EnvelopeError("schema", "MessageHeader/DocumentId and Code/CodeNumber both missing: a second "
                            "delivery of the document could not be told apart, so it is not counted",
                            day, sender)
    return f"{sender},{day:%Y/%m/%d},{number}/{notation}"


def _is_signed(root: Element) -> bool:
    for element in root.iter():
        for tag, value_tag in _SIGNATURES:
            if element.tag == tag:
                value = element.find(value_tag)
                if value is not None and (value.text or "").strip():
                    return True
    return False


def deduplicate(parsed: Iterable[Envelope | Refusal]) -> tuple[list[Envelope], list[Refusal]]:
    """The envelopes, each document once (first delivery kept), and every refusal, in order."""
    first: dict[str, str] = {}
    envelopes: list[Envelope] = []
    refusals: list[Refusal] = []
    for item in parsed:
        if isinstance(item, Refusal):
            refusals.append(item)
        elif item.key in first:
            refusals.append(Refusal("duplicate", f"document {item.key!r} was already read from "
                                    f"{first[item.key]}; counted once", item.ref, item.day, item.sender))
        else:
            first[item.key] = item.ref
            envelopes.append(item)
    return envelopes, refusals


# ----------------------------------------------------------------------------- HTTP listing

class ListedEnvelope(WireModel):
    id: str
    path: str | None = None  # relative to the source url, e.g. /envelopes/123/content
    url: str | None = None  # or absolute, under the source url
    modified: str | None = None


class Listing(WireModel):
    items: list[dict[str, Any]]
    next: str | None = None


# ----------------------------------------------------------------------------- the collector

class EdxmlCollector(Collector):
    kind: ClassVar[str] = "edxml"
    supports_history: ClassVar[bool] = True
    Options: ClassVar[type[BaseModel]] = EdxmlOptions
    url_schemes: ClassVar[tuple[str, ...]] = ("file", "http", "https")
    options: EdxmlOptions

    def __init__(self, settings: SourceSettings, http: SourceHttp, tz: tzinfo, clock: Clock) -> None:
        super().__init__(settings, http, tz, clock)
        # Read once per run (a collector is built per run), though the runner asks in chunks.
        self._read: tuple[list[Envelope], list[Refusal]] | None = None
        self._undated_reported = False

    @property
    def where(self) -> str:
        """The source as shown in raw references: the folder URL or the listing request."""
        if self._is_folder:
            return self.settings.url
        return describe_request(self.options.listing_path)

    @property
    def _is_folder(self) -> bool:
        return self.settings.url.lower().startswith("file:")

    async def collect(self, periods: Sequence[Period], units: Set[str]) -> CollectionResult:
        if self._read is None:
            parsed = await (self._read_folder() if self._is_folder else self._read_listing())
            self._read = deduplicate(parsed)
        envelopes, refusals = self._read
        result = CollectionResult()
        wanted = set(periods)
        self._report(refusals, wanted, result)
        counts, present = self._count(envelopes, wanted, units, result)
        if envelopes:
            first = local_midnight(min(e.day for e in envelopes), self.tz)
            end = local_midnight(max(e.day for e in envelopes) + timedelta(days=1), self.tz)
            for period in (p for p in periods if p.start < end and p.end > first):
                self._observe(period, present, counts, result)
        return result

    # ------------------------------------------------------------------ counting

    def _period(self, day: date) -> Period:
        return Period.containing(local_midnight(day, self.tz), self.settings.grain, self.tz)

    def _report(self, refusals: list[Refusal], wanted: set[Period], result: CollectionResult) -> None:
        for refusal in refusals:
            period = self._period(refusal.day) if refusal.day is not None else None
            if period in wanted or (period is None and not self._undated_reported):
                code = self.options.unit_map.get(refusal.code, refusal.code) if refusal.code else None
                result.rejections.append(Rejection(refusal.reason, refusal.detail, unit=code, period=period,
                                                   raw_ref=refusal.ref))
        self._undated_reported = True

    def _count(
        self, envelopes: list[Envelope], wanted: set[Period], units: Set[str], result: CollectionResult,
    ) -> tuple[dict[str, Counter[tuple[str, Period]]], set[str]]:
        """Per measure role, (unit, period) → count for the wanted periods; and every unit that appears."""
        counts: dict[str, Counter[tuple[str, Period]]] = {"sent": Counter(), "signed": Counter(),
                                                          "received": Counter()}
        present: set[str] = set()
        for envelope in envelopes:
            period = self._period(envelope.day)
            sender = self._unit(envelope.sender, units)
            receivers = {self._unit(code, units) for code in envelope.receivers}
            present.update(c for c in (sender, *receivers) if isinstance(c, str) and c)
            if period not in wanted:
                continue
            unknown = [("From", envelope.sender)] if sender is False else []
            unknown += [("To", raw) for raw in envelope.receivers if self._unit(raw, units) is False]
            if unknown:
                counted = isinstance(sender, str) or any(isinstance(r, str) for r in receivers)
                result.rejections.append(self._unknown(envelope, unknown, counted, period))
            if isinstance(sender, str):
                counts["sent"][(sender, period)] += 1
                counts["signed"][(sender, period)] += envelope.signed
            for receiver in receivers:
                if isinstance(receiver, str):
                    counts["received"][(receiver, period)] += 1
        return counts, present

    def _unit(self, raw: str, units: Set[str]) -> str | bool:
        """The unit code of ``raw``; True for a known outsider (skipped), False when unknown."""
        code = self.options.unit_map.get(raw, raw)
        if code in units:
            return code
        return any(fnmatch.fnmatchcase(raw, pattern) or fnmatch.fnmatchcase(code, pattern)
                   for pattern in self.options.external)

    def _unknown(self, envelope: Envelope, parties: list[tuple[str, str]], counted: bool,
                 period: Period) -> Rejection:
        codes = ", ".join(f"{role}/OrganId = {code!r}" for role, code in parties)
        outcome = "the envelope still counts for its known parties" if counted else "nothing of it was counted"
        detail = (f"{codes}: not a unit of the tree ({outcome}); map the code in "
                  "options.unit_map, add the unit, or list it in options.external if it is outside the province")
        return Rejection("unknown_unit", detail, unit=parties[0][1], period=period, raw_ref=envelope.ref)

    def _observe(self, period: Period, present: set[str],
                 counts: dict[str, Counter[tuple[str, Period]]], result: CollectionResult) -> None:
        ref = f"{self.where}: envelopes dated {period.label(self.tz)}"
        roles = {"sent": self.options.measures.sent, "signed": self.options.measures.signed,
                 "received": self.options.measures.received}
        for unit in sorted(present):
            for role, measure in roles.items():
                if measure is not None:
                    result.observations.append(
                        Observation(measure, unit, period, float(counts[role][(unit, period)]), ref))

    # ------------------------------------------------------------------ folder mode

    def _folder(self) -> Path:
        parts = urlsplit(self.settings.url)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise SourceRequestError(self.source_id, "a folder url is file:///absolute/path (no host, query "
                                     f"or fragment), got: {self.settings.url!r}")
        return Path(unquote(parts.path))

    async def _read_folder(self) -> list[Envelope | Refusal]:
        folder = self._folder()
        return await asyncio.to_thread(self._scan_folder, folder)

    def _scan_folder(self, folder: Path) -> list[Envelope | Refusal]:
        if not folder.exists():
            raise SourceUnavailable(self.source_id, f"folder {folder} does not exist (not mounted yet?)")
        if not folder.is_dir():
            raise SourceRequestError(self.source_id, f"{folder} is not a folder (check the source's url)")
        candidates = folder.rglob("*") if self.options.recursive else folder.iterdir()
        try:
            files = [(p.stat().st_mtime_ns, p) for p in candidates if p.suffix.lower() in SUFFIXES and p.is_file()]
        except OSError as exc:
            raise SourceUnavailable(self.source_id, f"cannot list folder {folder}: {exc.strerror}") from None
        # Oldest first: of two deliveries of one document, the later one is the duplicate.
        return [self._read_file(path) for _, path in sorted(files)]

    def _read_file(self, path: Path) -> Envelope | Refusal:
        ref = path.as_uri()
        limit = self.options.max_bytes
        try:
            size = path.stat().st_size
            if size > limit:
                return self._too_large(ref, f"{size} bytes")
            with path.open("rb") as file:
                data = file.read(limit + 1)  # the file may have grown since stat
        except OSError as exc:
            return Refusal("unreadable", f"cannot read the file: {exc.strerror} (check its permissions)", ref)
        if len(data) > limit:
            return self._too_large(ref, f"more than {limit} bytes")
        return self._parse(data, ref)

    def _too_large(self, ref: str, size: str) -> Refusal:
        return Refusal("too_large", f"{size}, over options.max_bytes = {self.options.max_bytes}; not "
                       "parsed (raise max_bytes if such envelopes are genuine)", ref)

    def _parse(self, data: bytes, ref: str) -> Envelope | Refusal:
        try:
            return parse_envelope(data, ref, self.options.date)
        except EnvelopeError as exc:
            return Refusal(exc.reason, exc.detail, ref, exc.day, exc.code)

    # ------------------------------------------------------------------ HTTP mode

    async def _read_listing(self) -> list[Envelope | Refusal]:
        listed = await self._list()
        gate = asyncio.Semaphore(self.options.fetch_concurrency)

        async def fetch(item: tuple[str, str] | Refusal) -> Envelope | Refusal:
            if isinstance(item, Refusal):
                return item
            ref, path = item
            async with gate:
                try:
                    data = await self.http.get_bytes(path, limit=self.options.max_bytes)
                except SourceRequestError as exc:  # one envelope gone (404) must not stop the rest
                    return Refusal("fetch_failed", exc.message, ref)
            if data is None:
                return self._too_large(ref, f"more than {self.options.max_bytes} bytes")
            return await asyncio.to_thread(self._parse, data, ref)

        return list(await asyncio.gather(*(fetch(item) for item in listed)))

    async def _list(self) -> list[tuple[str, str] | Refusal]:
        """``(raw_ref, path)`` of every listed envelope, page after page, or why one cannot be fetched."""
        listed: list[tuple[str, str] | Refusal] = []
        page = self.options.listing_path
        seen: set[str] = set()
        while True:
            if page in seen or len(seen) >= self.http.max_pages:
                raise MalformedPayload(self.source_id, f"{describe_request(page)}: the listing's 'next' links "
                                       "loop or never end")
            seen.add(page)
            listing = self._listing(page, await self.http.get_json(page))
            for index, raw in enumerate(listing.items):
                listed.append(self._item(f"{describe_request(page)}#{index}", raw))
            if listing.next is None:
                break
            following = self._under_source(listing.next)
            if following is None:
                raise MalformedPayload(self.source_id, f"{describe_request(page)}: 'next' = {listing.next!r} "
                                       "is not under the source url")
            page = following
        return listed

    def _listing(self, page: str, document: Any) -> Listing:
        try:
            return Listing.model_validate(document)
        except ValidationError as exc:
            raise MalformedPayload(self.source_id, f"{describe_request(page)}: expected "
                                   f"{{\"items\": [...], \"next\": ...}}: {describe_errors(exc)}") from None

    def _item(self, ref: str, raw: Any) -> tuple[str, str] | Refusal:
        try:
            item = ListedEnvelope.model_validate(raw)
        except ValidationError as exc:
            return Refusal("schema", f"listed item: {describe_errors(exc)}", ref)
        link = item.path or item.url
        path = self._under_source(link) if link else None
        if path is None:
            return Refusal("schema", f"listed item {item.id!r} has no 'path' or 'url' under the source url, "
                           f"got: {link!r} (envelopes are only fetched from the source, which gets the "
                           "credentials)", ref)
        return describe_request(path), path

    def _under_source(self, link: str) -> str | None:
        """``link`` as a path to append to the source url, or None if it points elsewhere."""
        base = self.http.base_url
        if link.startswith("/") and not link.startswith("//"):
            return link
        if link.startswith(base + "/"):
            return link[len(base):]
        return None

