"""HTTP for collectors: one aiohttp session, one ``SourceHttp`` per source.

``SourceHttp`` is the boundary where aiohttp's exceptions, HTTP statuses and
JSON decoding errors become the ``collectors.base`` error tree, and where
transient faults are retried. Collectors above it only see JSON values and
``CollectorError``s.

aiohttp was chosen by measurement: it stays near the latency bound up to 200
concurrent requests (see ``benchmarks/``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDict

from collectors.base import (
    CollectorError,
    MalformedPayload,
    SourceAuthError,
    SourceRateLimited,
    SourceRequestError,
    SourceTimeout,
    SourceUnavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

Params = Mapping[str, str | int]
# Applied to each record of a page as the page arrives, with the record's raw reference
# (e.g. validating it into a model): the work overlaps with waiting for the other pages
# instead of following the last one. It must not raise for a bad record; it returns what
# the caller will judge later, in page order.
Convert = Callable[[str, Any], Any]
Sleep = Callable[[float], Awaitable[None]]

EXCERPT_CHARS = 200
# Query parameters whose values never appear in messages or raw references.
_SECRET_PARAM = re.compile(r"token|key|secret|pass|auth|signature|sig$", re.IGNORECASE)
_USERINFO = re.compile(r"//[^/@\s]+@")
# Characters urlencode(safe="*") leaves as they are.
_PLAIN = re.compile(r"[A-Za-z0-9_.~*-]*")


@dataclass(frozen=True)
class JsonAnswer:
    """A decoded JSON document and the response headers it came with."""

    document: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def new_session(concurrency: int = 100) -> aiohttp.ClientSession:
    """A session whose connection pool admits ``concurrency`` requests at once, to one host too.

    Call it from a coroutine (aiohttp binds the pool to the running loop) and
    close it when the service stops.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got: {concurrency}")
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    return aiohttp.ClientSession(connector=connector)


def describe_request(path: str, params: Params | None = None) -> str:
    """``GET /path?a=1&b=2``, with secret-looking parameter values masked."""
    if not params:
        return f"GET {path}"
    shown = {k: ("***" if _SECRET_PARAM.search(k) else str(v)) for k, v in params.items()}
    if all(_PLAIN.fullmatch(k) and _PLAIN.fullmatch(v) for k, v in shown.items()):
        # What urlencode would give, without its per-character quoting: a paged read
        # describes every page, thousands a collection.
        return f"GET {path}?" + "&".join(f"{k}={v}" for k, v in shown.items())
    return f"GET {path}?{urlencode(shown, safe='*')}"


def excerpt(body: bytes) -> str:
    """A short, single-line view of an error body: when it is JSON, the ``error`` or
    ``message`` field, or the string itself (Alertmanager's v2 errors are JSON strings)."""
    text = body.decode("utf-8", errors="replace")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, str):
        text = document
    elif isinstance(document, dict):
        text = next((document[k] for k in ("error", "message") if isinstance(document.get(k), str)), text)
    text = " ".join(text.split())
    if not text:
        return "(empty body)"
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _without_userinfo(text: str) -> str:
    """``text`` with any ``user:password@`` of a URL masked."""
    return _USERINFO.sub("//***@", text)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds; an HTTP-date or garbage counts as not given."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


class SourceHttp:
    """JSON over HTTP GET for one source, with timeouts, retries and error mapping.

    Transient failures (unavailable, timeout, rate limited, malformed answer)
    are retried ``retries`` times, waiting ``backoff · 2ⁿ`` seconds (at most
    ``max_backoff``), or the source's ``Retry-After`` for a 429. Permanent ones
    (401/403, other 4xx) are raised at once. ``on_retry`` is told the reason
    of every retry, for metrics. ``headers`` (credentials) are sent with every
    request and never appear in messages.
    """

    def __init__(
        self,
        source_id: str,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        headers: Mapping[str, str] | None = None,
        sleep: Sleep = asyncio.sleep,
        on_retry: Callable[[str], None] | None = None,
        max_pages: int = 10_000,
        concurrency: int = 8,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got: {timeout}")
        if retries < 0:
            raise ValueError(f"retries must not be negative, got: {retries}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got: {concurrency}")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"source {source_id!r}: url must start with http:// or https://, "
                             f"got: {_without_userinfo(base_url)!r}")
        self.source_id = source_id
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeout = timeout
        self._client_timeout = aiohttp.ClientTimeout(total=timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_pages = max_pages
        # Requests of one paged read in flight at once, unless the caller says otherwise:
        # the source's ``concurrency``, which also sizes its connection pool.
        self.concurrency = concurrency
        self._headers = dict(headers or {})
        self._sleep = sleep
        self._on_retry = on_retry

    # ------------------------------------------------------------------ one document

    async def get_json(self, path: str, params: Params | None = None) -> Any:
        """The JSON document at ``base_url + path``; see the class for retries."""
        return await self._get_json(path, params, describe_request(path, params))

    async def _get_json(self, path: str, params: Params | None, where: str) -> Any:
        """``get_json`` for a caller that has described the request already (paged reads: the
        description is their records' raw reference, and describing costs a urlencode)."""
        answer = await self._with_retries(lambda attempt: self._exchange(
            "GET", self.base_url + path, where, attempt, params=params))
        return answer.document

    async def get_answer(
        self, path: str, params: Params | None = None, *, headers: Mapping[str, str] | None = None
    ) -> JsonAnswer:
        """Like ``get_json``, with extra request ``headers`` (never shown in messages) and the
        response headers (a ``Link: rel=next`` for paging)."""
        where = describe_request(path, params)
        return await self._with_retries(lambda attempt: self._exchange(
            "GET", self.base_url + path, where, attempt, params=params, headers=headers))

    async def post_form(
        self, url: str, form: Mapping[str, str], *, headers: Mapping[str, str] | None = None
    ) -> Any:
        """The JSON answer to a form POST to the absolute ``url`` (an OAuth2 token endpoint),
        retried like ``get_json``. ``form`` and ``headers`` never appear in messages."""
        where = f"POST {_without_userinfo(url.partition('?')[0])}"
        answer = await self._with_retries(lambda attempt: self._exchange(
            "POST", url, where, attempt, form=form, headers=headers))
        return answer.document

    async def _with_retries(self, once: Callable[[str], Awaitable[T]]) -> T:
        """``once(attempt label)``, retried on transient errors with backoff (or the source's Retry-After)."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                return await once(f"attempt {attempt + 1} of {attempts}")
            except CollectorError as exc:
                if exc.permanent or attempt + 1 == attempts:
                    raise
                delay = self._delay(exc, attempt)
                log.info("%s: retrying in %.1fs: %s", self.source_id, delay, exc.message)
                if self._on_retry is not None:
                    self._on_retry(exc.reason)
                await self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _delay(self, error: CollectorError, attempt: int) -> float:
        if isinstance(error, SourceRateLimited) and error.retry_after is not None:
            return min(error.retry_after, self.max_backoff)
        return float(min(self.backoff * 2**attempt, self.max_backoff))

    @contextmanager
    def _client_errors(self, where: str, attempt: str) -> Iterator[None]:
        """aiohttp's exceptions, raised inside the block, as the collectors' error tree."""
        try:
            yield
        except TimeoutError:
            # aiohttp's own timeouts subclass TimeoutError; catch them before ClientError.
            raise SourceTimeout(
                self.source_id, f"{where}: no answer within {self.timeout:g}s ({attempt})") from None
        except aiohttp.ClientPayloadError as exc:
            raise MalformedPayload(
                self.source_id, f"{where}: response body cut short: {exc} ({attempt})") from None
        except aiohttp.InvalidURL:
            raise SourceRequestError(
                self.source_id, f"{where}: the source's url is not a valid URL") from None
        except aiohttp.ClientError as exc:
            raise SourceUnavailable(self.source_id, f"{where}: {type(exc).__name__}: "
                                    f"{_without_userinfo(str(exc))} ({attempt})") from None

    async def _exchange(
        self, method: str, url: str, where: str, attempt: str, *, params: Params | None = None,
        form: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
    ) -> JsonAnswer:
        query = {k: str(v) for k, v in (params or {}).items()}
        with self._client_errors(where, attempt):
            async with self.session.request(
                method,
                url,
                params=query,
                data=form,
                headers={**self._headers, **headers} if headers else self._headers,
                timeout=self._client_timeout,
            ) as response:
                body = await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
                received = CIMultiDict(response.headers)
        if status >= 300:
            raise self._status_error(where, status, body, retry_after, attempt)
        return JsonAnswer(self._decode(where, body, attempt), received)

    def _status_error(
        self, where: str, status: int, body: bytes, retry_after: str | None, attempt: str
    ) -> CollectorError:
        message = f"{where}: HTTP {status}: {excerpt(body)}"
        if status in (401, 403):
            return SourceAuthError(self.source_id, f"{message} (check the source's credentials)")
        if status == 429:
            seconds = _retry_after(retry_after)
            return SourceRateLimited(self.source_id, f"{message} ({attempt})", seconds)
        if status >= 500:
            return SourceUnavailable(self.source_id, f"{message} ({attempt})")
        return SourceRequestError(self.source_id, f"{message} (check the source's url)")

    def _decode(self, where: str, body: bytes, attempt: str) -> Any:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise MalformedPayload(
                self.source_id, f"{where}: not valid JSON ({exc}): {excerpt(body)} ({attempt})"
            ) from None

    # ------------------------------------------------------------------ paged lists

    async def get_pages(
        self,
        path: str,
        params: Params | None = None,
        *,
        records_key: str = "data",
        page_size: int = 500,
        concurrency: int | None = None,
        convert: Convert | None = None,
    ) -> list[tuple[str, Any]]:
        """Every record of a ``page``/``total_pages`` list, as ``(raw_ref, record)`` in page order.

        Page 1 says how many pages there are; the others are fetched at most
        ``concurrency`` (default: the source's) at a time. ``raw_ref`` is the request plus ``#i``, the
        record's index in that page's ``records_key`` array. ``convert``, if given, is
        applied to each record as its page arrives (see :data:`Convert`).
        """
        concurrency = self.concurrency if concurrency is None else concurrency
        if page_size < 1 or concurrency < 1:
            raise ValueError(
                f"page_size and concurrency must be positive, got: {page_size}, {concurrency}")

        def query(page: int) -> dict[str, str | int]:
            return {**(params or {}), "page": page, "page_size": page_size}

        first = await self._page(path, query(1), records_key, convert)
        first_ref, total_pages = first[0], first[1].get("total_pages")
        if type(total_pages) is not int or total_pages < 0:
            raise MalformedPayload(
                self.source_id, f"{first_ref}: 'total_pages' must be a non-negative integer, "
                f"got: {total_pages!r}")
        if total_pages > self.max_pages:
            raise MalformedPayload(
                self.source_id, f"{first_ref}: 'total_pages' = {total_pages} exceeds the "
                f"{self.max_pages} pages a collection may read (raise page_size)")
        rest = await _fetch_all(lambda page: self._page(path, query(page), records_key, convert),
                                range(2, total_pages + 1), concurrency)
        return [item for _, _, items in [first, *rest] for item in items]

    async def _page(
        self, path: str, params: Params, records_key: str, convert: Convert | None = None,
    ) -> tuple[str, dict[str, Any], list[tuple[str, Any]]]:
        """The page's request, document and ``(raw_ref, record)`` items."""
        ref = describe_request(path, params)
        document = await self._get_json(path, params, ref)
        items = self._records(ref, document, records_key, convert)
        if "total_pages" not in document:
            raise MalformedPayload(self.source_id, f"{ref}: 'total_pages' missing (schema drift?)")
        return ref, document, items

    async def get_offset_pages(
        self,
        path: str,
        params: Params | None = None,
        *,
        records_key: str = "accounts",
        limit: int = 500,
        concurrency: int | None = None,
        convert: Convert | None = None,
    ) -> list[tuple[str, Any]]:
        """Every record of an ``offset``/``limit``/``more`` list.

        The next offset is the previous one plus the records received, as the
        directory defines it; a page that says ``more`` but brings nothing
        would loop forever and is refused. When the first page announces a
        ``total``, the other pages are fetched at once, ``concurrency``
        (default: the source's) at a time, at the offsets that page's size
        implies; were the answers not to fit together (a page shorter than the
        first before the end, ``more`` where it should not be), the list is read
        again page after page, so a directory that pages differently is still
        read right, only slower.
        """
        if limit < 1:
            raise ValueError(f"limit must be positive, got: {limit}")
        concurrency = self.concurrency if concurrency is None else concurrency
        first = await self._offset_page(path, params, 0, limit, records_key, convert)
        pages = [first]
        step, total = len(first.records), first.total
        if first.more and step and total is not None and total > step:
            offsets = range(step, total, step)
            if 1 + len(offsets) <= self.max_pages:
                rest = await _fetch_all(
                    lambda offset: self._offset_page(path, params, offset, limit, records_key, convert),
                    offsets, concurrency)
                if _pages_fit(rest, step):
                    return _offset_records([first, *rest])
                log.info("%s: GET %s: the pages do not fit the announced total %d; "
                         "reading them one after another", self.source_id, path, total)
        offset = step
        while pages[-1].more:
            if not pages[-1].records:
                raise MalformedPayload(self.source_id, f"{pages[-1].ref}: says 'more' but sent no records")
            if len(pages) == self.max_pages:
                raise MalformedPayload(
                    self.source_id, f"GET {path}: still 'more' after {self.max_pages} pages (raise limit)")
            pages.append(await self._offset_page(path, params, offset, limit, records_key, convert))
            offset += len(pages[-1].records)
        return _offset_records(pages)

    async def _offset_page(
        self, path: str, params: Params | None, offset: int, limit: int, records_key: str,
        convert: Convert | None = None,
    ) -> _OffsetPage:
        query = {**(params or {}), "offset": offset, "limit": limit}
        ref = describe_request(path, query)
        document = await self._get_json(path, query, ref)
        items = self._records(ref, document, records_key, convert)
        more, total = document.get("more"), document.get("total")
        if not isinstance(more, bool):
            raise MalformedPayload(
                self.source_id, f"{ref}: 'more' must be true or false, got: {more!r}")
        known_total = total if type(total) is int and total >= 0 else None
        return _OffsetPage(ref, items, more, known_total)

    def _records(self, ref: str, document: Any, records_key: str,
                 convert: Convert | None) -> list[tuple[str, Any]]:
        """The ``(raw_ref, record)`` items of ``document``, an object holding a ``records_key``
        list (a page of records), with ``convert`` applied to each record. ``raw_ref`` is the
        request plus ``#i``, the record's index in the list."""
        if not isinstance(document, dict) or not isinstance(document.get(records_key), list):
            raise MalformedPayload(
                self.source_id, f"{ref}: expected an object with a {records_key!r} list, got: "
                f"{_shape(document, records_key)}")
        items = [(f"{ref}#{index}", record) for index, record in enumerate(document[records_key])]
        return items if convert is None else [(raw_ref, convert(raw_ref, record)) for raw_ref, record in items]

    # ------------------------------------------------------------------ raw documents

    async def get_bytes(self, path: str, *, limit: int) -> bytes | None:
        """The body at ``base_url + path`` as bytes, or None when it is longer than ``limit``.

        An oversized body is not read beyond ``limit`` bytes (a ``Content-Length``
        above it is not read at all), so it never sits in memory whole. Statuses,
        timeouts and retries are handled as for ``get_json``.
        """
        if limit < 0:
            raise ValueError(f"limit must not be negative, got: {limit}")
        return await self._with_retries(lambda attempt: self._get_bytes_once(path, limit, attempt))

    async def _get_bytes_once(self, path: str, limit: int, attempt: str) -> bytes | None:
        where = describe_request(path)
        with self._client_errors(where, attempt):
            async with self.session.get(
                self.base_url + path, headers=self._headers,
                timeout=self._client_timeout,
            ) as response:
                if response.status >= 300:
                    body = await response.content.read(64 * 1024)  # enough for the excerpt
                    raise self._status_error(where, response.status, body,
                                             response.headers.get("Retry-After"), attempt)
                return await _read_at_most(response, limit)


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to be longer than ``limit`` bytes."""
    if response.content_length is not None and response.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class _OffsetPage:
    """One page of an offset/limit list: its request, ``(raw_ref, record)`` items, ``more``
    and announced ``total``."""

    ref: str
    records: list[tuple[str, Any]]
    more: bool
    total: int | None


def _pages_fit(pages: list[_OffsetPage], step: int) -> bool:
    """Whether pages fetched at ``step`` offsets tile the list: full pages saying ``more``,
    then a last one that does not."""
    return (bool(pages) and not pages[-1].more
            and all(page.more and len(page.records) == step for page in pages[:-1]))


def _offset_records(pages: list[_OffsetPage]) -> list[tuple[str, Any]]:
    return [item for page in pages for item in page.records]


def _shape(document: Any, key: str) -> str:
    if not isinstance(document, dict):
        return f"a JSON {type(document).__name__}"
    if key not in document:
        return f"no {key!r} (schema drift?)"
    return f"{key!r} is a {type(document[key]).__name__}"


async def _fetch_all(fetch: Callable[[int], Awaitable[R]], keys: Iterable[int], concurrency: int) -> list[R]:
    """``fetch(key)`` for every key, at most ``concurrency`` at a time, the results in key
    order; on the first failure the other requests are cancelled."""
    gate = asyncio.Semaphore(concurrency)

    async def bounded(key: int) -> R:
        async with gate:
            return await fetch(key)

    tasks = [asyncio.ensure_future(bounded(key)) for key in keys]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
