"""Any JSON API, mapped in configuration: kind ``http_json``.

The ``options:`` block says how to ask for a period (a path and query
parameters with placeholders), where the records are in each answer, how to
page, and how a record becomes numbers. Records come in two shapes:

- aggregated: one record per (unit, period) with numeric fields, mapped by
  ``measures: {measure_id: path}``; a second record for the same unit and
  period is refused as ``duplicate``;
- items: one record per dossier or document, counted by
  ``count: {measure_id: {where: {path: [values]}}}`` after ``enums`` turned
  source codes into state names; counts of one (unit, period, measure) sum.

One request (and its pages) is made per period. Each record must belong to
the period it was asked for: a source that ignores its date filter would
otherwise have its records counted once per request.

OAuth2 client credentials are handled here (``SourceHttp`` only sends static
headers): the token is cached until shortly before ``expires_in`` and fetched
once more when the API answers 401/403.
"""

from __future__ import annotations

import base64
import math
import re
import string
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl, quote_plus, urlencode, urljoin, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from collectors.base import (
    CollectionResult,
    Collector,
    CollectorError,
    MalformedPayload,
    Observation,
    Rejection,
    SourceAuthError,
    SourceRequestError,
    SourceSettings,
)
from collectors.http import JsonAnswer, SourceHttp, describe_request
from collectors.jsonpath import MISSING, parse_path
from monitor.timeutil import Clock, Period, local_date, local_midnight

PLACEHOLDERS = ("start", "end", "end_inclusive", "month", "year", "start_datetime", "end_datetime")
TOKEN_MARGIN = timedelta(seconds=30)  # refresh this long before the token says it expires
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_REL = re.compile(r"""rel\s*=\s*"?([^";]*)"?""", re.IGNORECASE)
STRUCTURAL = frozenset({"not_an_object", "missing_field"})

Scalar = str | int | float | bool | None


# ----------------------------------------------------------------------------- options

def _valid_path(text: str) -> str:
    parse_path(text)
    return text


def _valid_template(text: str) -> str:
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise ValueError(f"unknown placeholder {{{name}}} in {text!r} (known: "
                             f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}; write {{{{ for a brace)")
    return text


PathText = Annotated[str, AfterValidator(_valid_path)]
Template = Annotated[str, AfterValidator(_valid_template)]
MeasureId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
MaxPages = Annotated[int, Field(ge=1, le=100_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestOptions(_Strict):
    """``path`` is appended to the source's ``url``; values may hold placeholders."""

    path: Template = ""
    params: dict[str, Annotated[str, AfterValidator(_valid_template)] | int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _relative(self) -> RequestOptions:
        if self.path and not self.path.startswith("/"):
            raise ValueError(f"path must start with '/' (it is appended to url), got: {self.path!r}")
        return self


class NoPaging(_Strict):
    style: Literal["none"] = "none"
    max_pages: MaxPages = 1


class PagePaging(_Strict):
    """``param`` = start, start + 1, …; ends at the first page without records."""

    style: Literal["page"]
    param: str = "page"
    start: Annotated[int, Field(ge=0)] = 1
    size_param: str | None = "page_size"
    size: Annotated[int, Field(ge=1)] = 100
    max_pages: MaxPages = 1000


class OffsetPaging(_Strict):
    """``param`` = records received so far (+ start); ends at the first page without records."""

    style: Literal["offset"]
    param: str = "offset"
    start: Annotated[int, Field(ge=0)] = 0
    size_param: str | None = "limit"
    size: Annotated[int, Field(ge=1)] = 100
    max_pages: MaxPages = 1000


class CursorPaging(_Strict):
    """The value at ``cursor`` in each answer is sent as ``param``; absent, null or "" ends."""

    style: Literal["cursor"]
    cursor: PathText
    param: str = "cursor"
    max_pages: MaxPages = 1000


class NextLinkPaging(_Strict):
    """The URL at ``next`` in each answer, or the ``Link: <…>; rel="next"`` header when unset."""

    style: Literal["next_link"]
    next: PathText | None = None
    max_pages: MaxPages = 1000


Paging = NoPaging | PagePaging | OffsetPaging | CursorPaging | NextLinkPaging
Pagination = Annotated[Paging, Field(discriminator="style")]


class PeriodField(_Strict):
    """Each record states its own period: ``month`` YYYY-MM, ``date`` YYYY-MM-DD (local),
    ``datetime`` ISO 8601 (without an offset: the province's time)."""

    path: PathText
    format: Literal["month", "date", "datetime"]


class CountRule(_Strict):
    """Count the records whose fields (after ``enums``) are among the listed values; all must hold."""

    where: dict[PathText, Annotated[list[Scalar], Field(min_length=1)]] = Field(default_factory=dict)


class HttpJsonOptions(_Strict):
    request: RequestOptions = RequestOptions()
    records: PathText = "$"
    unit: PathText
    unit_map: dict[str | int, str] = Field(default_factory=dict)
    period: Literal["from_request"] | PeriodField = "from_request"
    measures: dict[MeasureId, PathText] = Field(default_factory=dict)
    count: dict[MeasureId, CountRule] = Field(default_factory=dict)
    enums: dict[PathText, dict[str | int | bool, str]] = Field(default_factory=dict)
    pagination: Pagination = NoPaging()

    @model_validator(mode="after")
    def _one_shape(self) -> HttpJsonOptions:
        if bool(self.measures) == bool(self.count):
            raise ValueError("give exactly one of 'measures' (a record per unit and period, numeric "
                             "fields) or 'count' (a record per item, counted by 'where')")
        used = {path for rule in self.count.values() for path in rule.where}
        for path, table in self.enums.items():
            if path not in used:
                raise ValueError(f"enums[{path!r}] is not used by any count.where (check its spelling)")
            states = {canon(v) for v in table.values()}
            for measure, rule in self.count.items():
                unknown = [v for v in rule.where.get(path, []) if canon(v) not in states]
                if unknown:
                    raise ValueError(f"count.{measure}.where[{path!r}]: {unknown!r} not among the state "
                                     f"names of enums[{path!r}]: {', '.join(sorted(states))}")
        return self


def canon(value: Any) -> str:
    """How a value is compared: as text, so 2, 2.0 and "2" are the same code, true is "true"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ----------------------------------------------------------------------------- records

@dataclass(frozen=True)
class _Page:
    ref: str
    records: list[Any]


@dataclass
class _Read:
    """Who, when and what one accepted record says."""

    unit: str
    period: Period
    values: dict[str, float]  # aggregated: measure → value; items: measure → 1 for each match


@dataclass
class _Token:
    value: str
    expires_at: datetime | None


@dataclass
class _Tally:
    counts: dict[str, float] = field(default_factory=dict)
    records: int = 0
    ref: str = ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


class HttpJsonCollector(Collector):
    kind: ClassVar[str] = "http_json"
    Options: ClassVar[type[BaseModel]] = HttpJsonOptions
    options: HttpJsonOptions

    def __init__(self, settings: SourceSettings, http: SourceHttp, tz: tzinfo, clock: Clock) -> None:
        super().__init__(settings, http, tz, clock)
        self._token: _Token | None = None
        opts = self.options
        self._records_path = parse_path(opts.records)
        self._unit_path = parse_path(opts.unit)
        self._unit_map = {canon(k): v for k, v in opts.unit_map.items()}
        self._measure_paths = {m: parse_path(p) for m, p in opts.measures.items()}
        self._where_paths = {p: parse_path(p) for rule in opts.count.values() for p in rule.where}
        self._enums = {p: {canon(k): canon(v) for k, v in table.items()} for p, table in opts.enums.items()}

    # ------------------------------------------------------------------ collect

    async def collect(self, periods: Sequence[Period], units: Set[str]) -> CollectionResult:
        self._check_grain()
        result = CollectionResult()
        seen: set[tuple[str, Period]] = set()
        read = 0
        for period in periods:
            tallies: dict[str, _Tally] = defaultdict(_Tally)
            async for page in self._pages(period):
                for index, raw in enumerate(page.records):
                    read += 1
                    ref = f"{page.ref}#{index}"
                    item = self._read(index, raw, period, units)
                    if isinstance(item, Rejection):
                        result.rejections.append(_with_ref(item, ref))
                    elif self.options.count:
                        tally = tallies[item.unit]
                        tally.ref = tally.ref or page.ref
                        tally.records += 1
                        for measure in self.options.count:
                            tally.counts[measure] = tally.counts.get(measure, 0.0) + item.values.get(measure, 0.0)
                    elif (item.unit, period) in seen:
                        result.rejections.append(Rejection(
                            "duplicate", f"record {index}: a second record for {item.unit} "
                            f"{period.label(self.tz)}; the first one was kept", item.unit, None, period, ref))
                    else:
                        seen.add((item.unit, period))
                        result.observations.extend(Observation(m, item.unit, period, v, ref)
                                                   for m, v in item.values.items())
            result.observations.extend(
                Observation(measure, unit, period, value, f"{tally.ref} ({tally.records} records)")
                for unit, tally in tallies.items() for measure, value in tally.counts.items())
        self._refuse_if_unreadable(read, result)
        return result

    def _check_grain(self) -> None:
        period = self.options.period
        if isinstance(period, PeriodField) and period.format == "month" and self.settings.grain == "day":
            raise SourceRequestError(self.source_id, "options.period.format 'month' cannot place records in "
                                     "days (the source's grain is day): use date or datetime, or grain month")

    def _refuse_if_unreadable(self, read: int, result: CollectionResult) -> None:
        """No record fit the mapping at all: the options (or the source's format) are wrong."""
        if read == 0 or result.observations or len(result.rejections) < read:
            return
        if all(r.reason in STRUCTURAL for r in result.rejections):
            first = result.rejections[0]
            raise MalformedPayload(self.source_id, f"none of the {read} records has the fields the options "
                                   f"name, so the mapping or the source's format is wrong; first problem "
                                   f"({first.raw_ref}): {first.detail}")

    # ------------------------------------------------------------------ one record

    def _read(self, index: int, raw: Any, requested: Period, units: Set[str]) -> _Read | Rejection:
        if not isinstance(raw, dict):
            return Rejection("not_an_object", f"record {index}: expected a JSON object, got {_short(raw)}")
        unit = self._unit_of(index, raw, units)
        if isinstance(unit, Rejection):
            return unit
        period = self._period_of(index, raw, requested, unit)
        if isinstance(period, Rejection):
            return period
        values = self._measures(index, raw) if self.options.measures else self._matches(index, raw)
        if isinstance(values, Rejection):
            return Rejection(values.reason, values.detail, unit, values.measure, period)
        return _Read(unit, period, values)

    def _unit_of(self, index: int, raw: dict[str, Any], units: Set[str]) -> str | Rejection:
        path = self.options.unit
        value = self._unit_path.first(raw)
        if value is MISSING or value is None:
            return Rejection("missing_field", f"record {index}: no unit code at {path} (options.unit); "
                             f"the record has {_keys(raw)}")
        if not isinstance(value, str | int) or isinstance(value, bool):
            return Rejection("unknown_unit", f"record {index}: {path} = {_short(value)} is not a unit code")
        code = self._unit_map.get(canon(value), canon(value))
        if code not in units:
            mapped = f" (options.unit_map → {code!r})" if canon(value) in self._unit_map else (
                " (not in options.unit_map)" if self._unit_map else "")
            return Rejection("unknown_unit", f"record {index}: {path} = {_short(value)}{mapped} is not a "
                             "unit of the tree: add it to options.unit_map or to the units file", code)
        return code

    def _period_of(self, index: int, raw: dict[str, Any], requested: Period, unit: str) -> Period | Rejection:
        spec = self.options.period
        if not isinstance(spec, PeriodField):
            return requested
        value = parse_path(spec.path).first(raw)
        where = f"record {index} ({unit}): {spec.path} (options.period)"
        if value is MISSING or value is None:
            return Rejection("missing_field", f"{where} missing", unit)
        period = self._parse_period(value, spec.format)
        if period is None:
            example = {"month": "2026-10", "date": "2026-10-05", "datetime": "2026-10-05T08:30:00+07:00"}
            return Rejection("bad_period", f"{where} = {_short(value)} is not a {spec.format} like "
                             f"{example[spec.format]} (fix options.period.format or the source)", unit)
        if period != requested:
            return Rejection("unexpected_period", f"{where} = {_short(value)} is in {period.label(self.tz)}, "
                             f"but the request was for {requested.label(self.tz)} (does the source "
                             "ignore the date parameters of options.request?)", unit, None, period)
        return period

    def _parse_period(self, value: Any, form: str) -> Period | None:
        if not isinstance(value, str):
            return None
        try:
            if form == "month":
                if not _MONTH.match(value):
                    return None
                return Period.of_month(int(value[:4]), int(value[5:]), self.tz)
            if form == "date":
                if not _DATE.match(value):
                    return None
                instant = local_midnight(date.fromisoformat(value), self.tz)
            else:
                moment = datetime.fromisoformat(value)
                instant = moment if moment.tzinfo is not None else moment.replace(tzinfo=self.tz)
        except ValueError:
            return None
        return Period.containing(instant, self.settings.grain, self.tz)

    def _measures(self, index: int, raw: dict[str, Any]) -> dict[str, float] | Rejection:
        values: dict[str, float] = {}
        missing, bad = [], []
        for measure, path in self._measure_paths.items():
            value = path.first(raw)
            if value is MISSING or value is None:
                missing.append(f"{path} (measures.{measure})")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
                bad.append(f"{path} = {_short(value)} (measures.{measure})")
            else:
                values[measure] = float(value)
        if missing:
            return Rejection("missing_field", f"record {index}: {'; '.join(missing)} missing or null; "
                             "the record was not stored (half a record would bias the ratios)")
        if bad:
            return Rejection("not_a_number", f"record {index}: {'; '.join(bad)} is not a JSON number; "
                             "the record was not stored")
        return values

    def _matches(self, index: int, raw: dict[str, Any]) -> dict[str, float] | Rejection:
        states: dict[str, str] = {}
        for text, path in self._where_paths.items():
            value = path.first(raw)
            if value is MISSING:
                return Rejection("missing_field", f"record {index}: {text} (used by count.where) missing; "
                                 f"the record has {_keys(raw)}")
            state = canon(value)
            table = self._enums.get(text)
            if table is not None:
                if state not in table:
                    return Rejection("unmapped_value", f"record {index}: {text} = {_short(value)} is not in "
                                     f"options.enums[{text!r}] (known: {', '.join(sorted(table))}); add it "
                                     "with the state it means")
                state = table[state]
            states[text] = state
        return {measure: 1.0 for measure, rule in self.options.count.items()
                if all(states[p] in {canon(v) for v in allowed} for p, allowed in rule.where.items())}

    # ------------------------------------------------------------------ requests and pages

    def placeholders(self, period: Period) -> dict[str, str]:
        first, end = local_date(period.start, self.tz), local_date(period.end, self.tz)
        return {"start": first.isoformat(), "end": end.isoformat(),
                "end_inclusive": (end - timedelta(days=1)).isoformat(),
                "month": first.strftime("%Y-%m"), "year": f"{first.year:04d}",
                "start_datetime": period.start.astimezone(self.tz).isoformat(),
                "end_datetime": period.end.astimezone(self.tz).isoformat()}

    async def _pages(self, period: Period) -> AsyncIterator[_Page]:
        values = self.placeholders(period)
        request = self.options.request
        path = request.path.format(**values)
        params: dict[str, str | int] = {k: v.format(**values) if isinstance(v, str) else v
                                        for k, v in request.params.items()}
        paging = self.options.pagination
        filled = 0
        offset = 0
        for number in range(paging.max_pages + 1):
            query = dict(params)
            if isinstance(paging, PagePaging | OffsetPaging):
                query[paging.param] = paging.start + (number if isinstance(paging, PagePaging) else offset)
                if paging.size_param:
                    query[paging.size_param] = paging.size
            ref = describe_request(path, query)
            answer = await self._get(path, query)
            page = _Page(ref, self._records_of(ref, answer.document))
            if page.records:
                filled += 1
                if filled > paging.max_pages:
                    break
            yield page
            offset += len(page.records)
            if not page.records or isinstance(paging, NoPaging):
                return
            following = self._next(paging, ref, path, query, answer)
            if following is None:
                return
            if isinstance(paging, CursorPaging | NextLinkPaging):
                path, params = following
        raise MalformedPayload(self.source_id, f"{describe_request(path, params)}: still more pages after "
                               f"options.pagination.max_pages = {paging.max_pages} (raise it, or ask for "
                               "larger pages)")

    def _records_of(self, ref: str, document: Any) -> list[Any]:
        path = self._records_path
        if not path.is_single:
            return path.find(document)
        found = path.first(document)
        if found is None:  # some APIs send null for an empty list
            return []
        if isinstance(found, list):
            return found
        got = f"nothing there ({_keys(document)})" if found is MISSING else f"a JSON {_json_type(found)}"
        raise MalformedPayload(self.source_id, f"{ref}: expected a list of records at {path} "
                               f"(options.records), got {got}")

    def _next(self, paging: Paging, ref: str, path: str, query: dict[str, str | int],
              answer: JsonAnswer) -> tuple[str, dict[str, str | int]] | None:
        """Where the next page is (``path``, ``params``), or None at the end."""
        if isinstance(paging, PagePaging | OffsetPaging):
            return path, query
        if isinstance(paging, CursorPaging):
            cursor = parse_path(paging.cursor).first(answer.document)
            if cursor is MISSING or cursor is None or cursor == "":
                return None
            if isinstance(cursor, bool) or not isinstance(cursor, str | int):
                raise MalformedPayload(self.source_id, f"{ref}: the cursor at {paging.cursor} is "
                                       f"{_short(cursor)}, expected text or a number")
            if str(query.get(paging.param)) == str(cursor):
                raise MalformedPayload(self.source_id, f"{ref}: the source sent back the same cursor; "
                                       "reading on would loop forever")
            return path, {**query, paging.param: cursor}
        if isinstance(paging, NoPaging):
            return None
        link = self._next_link(paging, ref, answer)
        return None if link is None else self._follow(ref, path, query, link)

    def _next_link(self, paging: NextLinkPaging, ref: str, answer: JsonAnswer) -> str | None:
        if paging.next is not None:
            link = parse_path(paging.next).first(answer.document)
            if link is MISSING or link is None or link == "":
                return None
            if not isinstance(link, str):
                raise MalformedPayload(self.source_id, f"{ref}: the next link at {paging.next} is "
                                       f"{_short(link)}, expected a URL")
            return link
        for match in _LINK.finditer(answer.headers.get("Link", "")):
            rel = _REL.search(match.group(2))
            if rel and "next" in rel.group(1).lower().split():
                return match.group(1)
        return None

    def _follow(self, ref: str, path: str, query: dict[str, str | int],
                link: str) -> tuple[str, dict[str, str | int]]:
        base = self.http.base_url
        here = f"{base}{path}?{urlencode({k: str(v) for k, v in query.items()})}"
        target = urljoin(here, link)
        parts = urlsplit(target)
        address = target.partition("?")[0].partition("#")[0]
        if not address.startswith(base + "/") and address != base:
            # credentials go with every request: never to a host (or a path) outside the source's url
            raise MalformedPayload(self.source_id, f"{ref}: the next link leads outside the source's url "
                                   f"(to {parts.scheme}://{parts.hostname}); refusing to follow it")
        following = dict(parse_qsl(parts.query, keep_blank_values=True))
        if address[len(base):] == path and following == {k: str(v) for k, v in query.items()}:
            raise MalformedPayload(self.source_id, f"{ref}: the next link points to the same page; "
                                   "reading on would loop forever")
        return address[len(base):], dict(following)

    # ------------------------------------------------------------------ auth

    async def _get(self, path: str, params: Mapping[str, str | int]) -> JsonAnswer:
        if self.settings.credentials.type != "oauth2":
            return await self.http.get_answer(path, params)
        token = await self._access_token()
        try:
            return await self.http.get_answer(path, params, headers={"Authorization": f"Bearer {token}"})
        except SourceAuthError:
            # The token may have been revoked or expired early: one fresh token, one more try.
            self._token = None
            token = await self._access_token()
            return await self.http.get_answer(path, params, headers={"Authorization": f"Bearer {token}"})

    async def _access_token(self) -> str:
        now = self.now()
        if self._token is not None and (self._token.expires_at is None or now < self._token.expires_at):
            return self._token.value
        creds = self.settings.credentials
        if not (creds.token_url and creds.client_id and creds.client_secret):
            raise SourceAuthError(self.source_id, "auth type oauth2 needs token_url, client_id and client_secret")
        form = {"grant_type": "client_credentials", **({"scope": creds.scope} if creds.scope else {})}
        # RFC 6749 §2.3.1: id and secret are form-encoded before the Basic scheme encodes them.
        pair = f"{quote_plus(creds.client_id)}:{quote_plus(creds.client_secret)}"
        basic = base64.b64encode(pair.encode()).decode()
        try:
            document = await self.http.post_form(creds.token_url, form, headers={"Authorization": f"Basic {basic}"})
        except (SourceAuthError, SourceRequestError, MalformedPayload) as exc:
            said = exc.message.removesuffix(" (check the source's credentials)").removesuffix(
                " (check the source's url)")
            raise SourceAuthError(self.source_id, self._scrub(
                f"OAuth2 token request refused: {said} (check auth.token_url, auth.client_id, "
                "auth.client_secret and auth.scope)")) from None
        except CollectorError as exc:
            raise type(exc)(self.source_id, self._scrub(f"OAuth2 token endpoint: {exc.message}")) from None
        self._token = self._parse_token(document, now)
        return self._token.value

    def _parse_token(self, document: Any, now: datetime) -> _Token:
        where = "the OAuth2 token endpoint's answer"
        if not isinstance(document, dict) or not isinstance(document.get("access_token"), str) \
                or not document["access_token"]:
            raise SourceAuthError(self.source_id, f"{where} has no access_token (keys: {_keys(document)})")
        kind = document.get("token_type", "bearer")
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise SourceAuthError(self.source_id, f"{where} has token_type {_short(kind)}; only bearer is supported")
        lifetime = document.get("expires_in")
        if isinstance(lifetime, str) and lifetime.isdigit():
            lifetime = int(lifetime)
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            return _Token(document["access_token"], None)  # no lifetime given: keep it until a 401
        seconds = timedelta(seconds=float(lifetime))
        return _Token(document["access_token"], now + seconds - min(TOKEN_MARGIN, seconds / 2))

    def _scrub(self, text: str) -> str:
        for secret in self.settings.credentials.secrets():
            text = text.replace(secret, "***")
        return text


def _with_ref(rejection: Rejection, ref: str) -> Rejection:
    return Rejection(rejection.reason, rejection.detail, rejection.unit, rejection.measure, rejection.period, ref)


def _keys(document: Any) -> str:
    if not isinstance(document, dict):
        return f"a JSON {_json_type(document)}"
    names = list(document)[:12]
    return "fields " + ", ".join(names) + (", …" if len(document) > 12 else "") if names else "no fields"


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _finite(value: int | float) -> bool:
    """JSON integers have no size limit; one beyond a float makes ``math.isfinite`` raise."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
