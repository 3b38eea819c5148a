"""Serve a ``ProvinceModel`` over real HTTP, one aiohttp app per system kind.

Each app speaks exactly the wire format of ``docs/sources.md``:

- ``document_management``: ``GET /qlvb/api/v1/statistics?from&to&grain&page&page_size``
- ``one_stop``: ``GET /motcua/api/v1/bao-cao?from&to&grain&page&page_size``
- ``email_directory``: ``GET /service/admin/accounts?offset&limit``

and, for tests and benchmarks, ``GET /_sim/health`` plus fault injection, either
in-process (``server.set_fault(kind, Fault(...))``) or from another process
(``POST /_sim/fault`` with a JSON body such as ``{"mode": "http_429",
"retry_after": 3, "times": 2}``; ``DELETE /_sim/fault`` clears it). A fault only
affects the data endpoint of its own app:

========================  =====================================================
mode                      effect on each affected request
========================  =====================================================
``http_500/503/401``      that status, JSON ``{"error": ...}``
``http_429``              429 with ``Retry-After: <retry_after>``
``slow``                  sleeps ``delay`` seconds, then answers normally
``malformed``             200 with the JSON body cut in half
``schema_drift``          a field renamed in every record (``SoVanBanDi`` →
                          ``VanBanDi``, ``MaDonVi`` → ``DonVi``, ``ou`` → ``unit``)
``negative``              records 0, 3, 6… of the page get a negative count
                          (``SoVanBanDi.TongSo``, ``TongSoHoSoBaoCao``); the mail
                          directory, which has no counts per record, answers
                          ``total: -1``
``part_exceeds_whole``    records 0, 3, 6… get a part above its whole
                          (``SoVanBanDi.DienTu`` > ``TongSo``, ``SoHoa`` >
                          received); the mail directory answers a ``total``
                          smaller than the accounts it has already returned
``timeout``               never answers: holds the request ``delay`` seconds
                          (set it above the client's timeout), then drops
                          the connection without a response
``truncated``             200 announcing the whole body's ``Content-Length``,
                          then the connection is dropped halfway through it
                          (``malformed`` is a complete HTTP answer whose JSON
                          is cut; this one is cut at the HTTP level)
``duplicate_records``     record 0 of the page is sent twice (the copy right
                          after it); the mail directory does it on its last
                          page only, as an extra account on a full page would
                          shift the offsets of the pages after it
``periods_out_of_order``  the answer's records in reverse order, newest period
                          first: page 1 answers the last period asked for,
                          and each page runs backwards; the mail directory,
                          which has no periods, lists its accounts backwards
``unknown_unit``          records 0, 3, 6… carry the unit code ``UNKNOWN_UNIT``
                          (999.99.99.Z99, in no units file) instead of theirs
                          (``OrganId``, ``MaDonVi``, the accounts' ``ou``)
========================  =====================================================

``times`` limits how many requests a fault affects (``None``: until cleared).
``stop_system(kind)`` / ``start_system(kind)`` close and reopen one app's port
in-process, for "connection refused" (no mode: nothing listens).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import re
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from types import TracebackType
from typing import Any, Literal, get_args

from aiohttp import web

from monitor.simulators.province import Grain, Kind, ProvinceModel
from monitor.timeutil import Clock, SystemClock, local_date

SYSTEM_KINDS: tuple[Kind, ...] = ("document_management", "email_directory", "one_stop")
FaultMode = Literal["http_500", "http_503", "http_401", "http_429", "slow", "malformed", "schema_drift",
                    "negative", "part_exceeds_whole", "timeout", "truncated", "duplicate_records",
                    "periods_out_of_order", "unknown_unit"]
FAULT_MODES: tuple[str, ...] = get_args(FaultMode)
ERROR_STATUS = {"http_500": 500, "http_503": 503, "http_401": 401, "http_429": 429}
# Modes that answer normally with a damaged copy of the body (see ``corrupt``).
BODY_MODES = frozenset({"schema_drift", "negative", "part_exceeds_whole", "duplicate_records", "unknown_unit"})
UNIT_FIELDS: dict[Kind, str] = {"document_management": "OrganId", "one_stop": "MaDonVi", "email_directory": "ou"}
UNKNOWN_UNIT = "999.99.99.Z99"  # shaped like a unit code, in no province's units file
DRIFT_RENAMES: dict[Kind, tuple[str, str]] = {
    "document_management": ("SoVanBanDi", "VanBanDi"),
    "one_stop": ("MaDonVi", "DonVi"),
    "email_directory": ("ou", "unit"),
}
DATA_PATHS: dict[Kind, str] = {
    "document_management": "/qlvb/api/v1/statistics",
    "one_stop": "/motcua/api/v1/bao-cao",
    "email_directory": "/service/admin/accounts",
}
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
CORRUPT_EVERY = 3  # "some records": positions 0, 3, 6 … of a page
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RECORD_CACHE_SIZE = 32

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Fault:
    """A misbehaviour to inject into one system's data endpoint (see the module docstring)."""

    mode: FaultMode
    times: int | None = None
    retry_after: int = 1
    delay: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {self.mode!r} (one of {', '.join(FAULT_MODES)})")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be at least 1 (or null for until cleared), got {self.times}")
        if self.retry_after < 0 or self.delay < 0:
            raise ValueError("retry_after and delay must not be negative")

    @classmethod
    def from_json(cls, data: object) -> Fault:
        """Read the body of ``POST /_sim/fault``; ``ValueError`` on anything unexpected."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object such as {\"mode\": \"http_503\", \"times\": 2}")
        unknown = set(data) - {"mode", "times", "retry_after", "delay"}
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        mode, times = data.get("mode"), data.get("times")
        retry_after, delay = data.get("retry_after", 1), data.get("delay", 1.0)
        if not isinstance(mode, str):
            raise ValueError("mode is required")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool)):
            raise ValueError("times must be an integer or null")
        if not isinstance(retry_after, int) or isinstance(retry_after, bool):
            raise ValueError("retry_after must be an integer number of seconds")
        if not isinstance(delay, int | float) or isinstance(delay, bool):
            raise ValueError("delay must be a number of seconds")
        return cls(mode, times, retry_after, float(delay))  # type: ignore[arg-type]  # checked in __post_init__


class _FaultSlot:
    """The fault currently armed on one app, counting down its uses."""

    def __init__(self) -> None:
        self.fault: Fault | None = None
        self.remaining: int | None = None

    def arm(self, fault: Fault) -> None:
        self.fault, self.remaining = fault, fault.times

    def clear(self) -> None:
        self.fault, self.remaining = None, None

    def take(self) -> Fault | None:
        """The fault for this request, if any; uses one of its ``times``."""
        fault = self.fault
        if fault is not None and self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.clear()
        return fault


class _BadRequest(Exception):
    pass


# ----------------------------------------------------------------------------- query parsing

def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _BadRequest(f"{name} must be {bound}, got {value}")
    return value


def _date_param(query: Mapping[str, str], name: str) -> date:
    raw = query.get(name)
    if raw is None:
        raise _BadRequest(f"missing parameter {name!r} (a local date, YYYY-MM-DD)")
    if not _ISO_DATE.match(raw):
        raise _BadRequest(f"{name} must be a date YYYY-MM-DD, got {raw!r}")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _BadRequest(f"{name} is not a valid date: {raw!r}") from None


@dataclass(frozen=True)
class PeriodQuery:
    start: date
    end: date
    grain: Grain
    page: int
    page_size: int

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> PeriodQuery:
        start, end = _date_param(query, "from"), _date_param(query, "to")
        if start > end:
            raise _BadRequest(f"from ({start}) is after to ({end})")
        grain = query.get("grain", "month")
        if grain not in ("day", "month"):
            raise _BadRequest(f"grain must be 'day' or 'month', got {grain!r}")
        page = _int_param(query, "page", 1, 1, None)
        page_size = _int_param(query, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        return cls(start, end, "day" if grain == "day" else "month", page, page_size)


def _page(records: list[dict[str, Any]], page: int, page_size: int) -> dict[str, Any]:
    first = (page - 1) * page_size
    return {"data": records[first:first + page_size], "page": page, "page_size": page_size,
            "total": len(records), "total_pages": math.ceil(len(records) / page_size)}


# ----------------------------------------------------------------------------- corruption

def _records_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    records = body.get("data", body.get("accounts", []))
    assert isinstance(records, list)
    return records


def corrupt(kind: Kind, mode: FaultMode, body: dict[str, Any]) -> dict[str, Any]:
    """A damaged copy of a response body (the model's records are never touched)."""
    body = copy.deepcopy(body)
    key = "accounts" if kind == "email_directory" else "data"
    if mode == "duplicate_records":
        records = _records_of(body)
        if records and (kind != "email_directory" or not body["more"]):
            records.insert(1, copy.deepcopy(records[0]))
    elif mode == "unknown_unit":
        for record in _records_of(body)[::CORRUPT_EVERY]:
            record[UNIT_FIELDS[kind]] = UNKNOWN_UNIT
    elif mode == "schema_drift":
        old, new = DRIFT_RENAMES[kind]
        body[key] = [{(new if k == old else k): v for k, v in r.items()} for r in _records_of(body)]
    elif kind == "email_directory":
        accounts_so_far = body["offset"] + len(body["accounts"])
        body["total"] = -1 if mode == "negative" else max(0, accounts_so_far - 1)
    else:
        for record in _records_of(body)[::CORRUPT_EVERY]:
            _corrupt_record(kind, mode, record)
    return body


def _corrupt_record(kind: Kind, mode: FaultMode, record: dict[str, Any]) -> None:
    if kind == "document_management":
        outgoing = record["SoVanBanDi"]
        if mode == "negative":
            outgoing["TongSo"] = -outgoing["TongSo"] - 1
        else:
            outgoing["DienTu"] = outgoing["TongSo"] + 5
    elif mode == "negative":
        record["TongSoHoSoBaoCao"] = -record["TongSoHoSoBaoCao"] - 1
    else:
        record["SoHoa"] = sum(record["TiepNhanTheoKenh"].values()) + 5


# ----------------------------------------------------------------------------- the server

class SimulatorServer:
    """The three systems of a ``ProvinceModel`` on loopback, each on its own port."""

    def __init__(self, model: ProvinceModel, *, host: str = "127.0.0.1",
                 ports: Mapping[str, int] | None = None, clock: Clock | None = None,
                 latency: float = 0.0, sleep: Sleep = asyncio.sleep) -> None:
        unknown = set(ports or {}) - set(SYSTEM_KINDS)
        if unknown:
            raise ValueError(f"unknown system kinds: {', '.join(sorted(unknown))} (use {', '.join(SYSTEM_KINDS)})")
        if latency < 0:
            raise ValueError("latency must not be negative")
        self.model = model
        self.host = host
        self.ports: dict[str, int] = {kind: int((ports or {}).get(kind, 0)) for kind in SYSTEM_KINDS}
        self.clock: Clock = clock or SystemClock()
        self.latency = latency
        self.urls: dict[str, str] = {}
        self._sleep = sleep  # injectable so tests can observe delays without timing them
        self._faults: dict[str, _FaultSlot] = {kind: _FaultSlot() for kind in SYSTEM_KINDS}
        self._runners: list[web.AppRunner] = []
        self._sites: dict[str, web.TCPSite] = {}
        # Requests answered with a fault, per (kind, mode): the figure a fault test reports.
        self.faults_served: Counter[tuple[str, str]] = Counter()
        # Set on stop, so a request held by the ``timeout`` mode does not hold up the shutdown.
        self._stopping = asyncio.Event()
        self._record_cache: OrderedDict[tuple[object, ...], list[dict[str, Any]]] = OrderedDict()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runners:
            raise RuntimeError("simulator server already started")
        self._stopping = asyncio.Event()  # bound to this start's event loop
        try:
            for kind in SYSTEM_KINDS:
                runner = web.AppRunner(self._app(kind), access_log=None)
                await runner.setup()
                self._runners.append(runner)
                site = web.TCPSite(runner, self.host, self.ports[kind])
                await site.start()
                self._sites[kind] = site
                port = runner.addresses[0][1]
                self.ports[kind] = port  # start_system reopens the same port
                host = f"[{self.host}]" if ":" in self.host else self.host
                self.urls[kind] = f"http://{host}:{port}"
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close every app that started; safe to call twice or after a failed start."""
        self._stopping.set()
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()
        self._sites.clear()
        self.urls.clear()

    async def stop_system(self, kind: str) -> None:
        """Close ``kind``'s listening port: its clients get "connection refused" until ``start_system``."""
        self._slot(kind)
        site = self._sites.pop(kind, None)
        if site is None:
            raise RuntimeError(f"{kind} is not running")
        await site.stop()

    async def start_system(self, kind: str) -> None:
        """Reopen ``kind`` on the port (and so the URL) it had."""
        self._slot(kind)
        if not self._runners:
            raise RuntimeError("simulator server not started")
        if kind in self._sites:
            raise RuntimeError(f"{kind} is already running")
        runner = self._runners[SYSTEM_KINDS.index(kind)]
        site = web.TCPSite(runner, self.host, self.ports[kind])
        await site.start()
        self._sites[kind] = site

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.stop()

    # ------------------------------------------------------------------ faults

    def set_fault(self, kind: str, fault: Fault) -> None:
        self._slot(kind).arm(fault)

    def clear_faults(self) -> None:
        for slot in self._faults.values():
            slot.clear()

    def fault(self, kind: str) -> tuple[Fault | None, int | None]:
        """The armed fault of ``kind`` and how many requests it still affects (None: unlimited)."""
        slot = self._slot(kind)
        return slot.fault, slot.remaining

    def _slot(self, kind: str) -> _FaultSlot:
        if kind not in self._faults:
            raise ValueError(f"unknown system kind {kind!r} (use {', '.join(SYSTEM_KINDS)})")
        return self._faults[kind]

    # ------------------------------------------------------------------ apps

    def _app(self, kind: Kind) -> web.Application:
        app = web.Application(middlewares=[self._latency_middleware, _json_errors_middleware])
        app.router.add_get(DATA_PATHS[kind], self._data_handler(kind))
        app.router.add_get("/_sim/health", _health)
        app.router.add_get("/_sim/fault", self._fault_handler(kind, "GET"))
        app.router.add_post("/_sim/fault", self._fault_handler(kind, "POST"))
        app.router.add_delete("/_sim/fault", self._fault_handler(kind, "DELETE"))
        return app

    @web.middleware
    async def _latency_middleware(self, request: web.Request,
                                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                  ) -> web.StreamResponse:
        if self.latency > 0:
            await self._sleep(self.latency)
        return await handler(request)

    def _data_handler(self, kind: Kind) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            fault = self._faults[kind].take()
            if fault is not None:
                self.faults_served[(kind, fault.mode)] += 1
            if fault is not None and fault.mode in ERROR_STATUS:
                return _fault_response(fault)
            if fault is not None and fault.mode == "timeout":
                return await self._hang(request, fault.delay)
            if fault is not None and fault.mode == "slow":
                await self._sleep(fault.delay)
            try:
                backwards = fault is not None and fault.mode == "periods_out_of_order"
                body = await self._body(kind, request.query, backwards=backwards)
            except _BadRequest as exc:
                return _error(400, str(exc))
            if fault is not None and fault.mode in BODY_MODES:
                body = corrupt(kind, fault.mode, body)
            text = json.dumps(body, ensure_ascii=False)
            if fault is not None and fault.mode == "malformed":
                text = text[: len(text) // 2]  # a body cut by a proxy that still ends the answer cleanly
            if fault is not None and fault.mode == "truncated":
                return await _cut_short(request, text.encode("utf-8"))
            return web.Response(text=text, content_type="application/json")

        return handle

    async def _hang(self, request: web.Request, delay: float) -> web.StreamResponse:
        """Hold the request ``delay`` seconds (less if the server stops), then drop the connection."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        if request.transport is not None:
            request.transport.close()
        # Nothing can be written any more; aiohttp discards this response.
        return web.Response(status=504)

    async def _body(self, kind: Kind, query: Mapping[str, str], *, backwards: bool = False) -> dict[str, Any]:
        """One page of the model's records; ``backwards``: of the records in reverse order."""
        now = self.clock.now()
        if kind == "email_directory":
            offset = _int_param(query, "offset", 0, 0, None)
            limit = _int_param(query, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
            accounts = await self._records(kind, None, now)
            accounts = accounts[::-1] if backwards else accounts
            return {"total": len(accounts), "offset": offset, "limit": limit,
                    "more": offset + limit < len(accounts), "accounts": accounts[offset:offset + limit]}
        period = PeriodQuery.parse(query)
        records = await self._records(kind, period, now)
        return _page(records[::-1] if backwards else records, period.page, period.page_size)

    async def _records(self, kind: Kind, period: PeriodQuery | None, now: datetime) -> list[dict[str, Any]]:
        """The model's records, cached per query so that paging through them stays cheap
        (they depend on ``now`` only through its local date). A miss is computed in a worker
        thread, so one large query does not stall the other systems' requests."""
        key = (kind, period, local_date(now, self.model.timezone))
        cached = self._record_cache.get(key)
        if cached is not None:
            self._record_cache.move_to_end(key)
            return cached
        cached = await asyncio.to_thread(self._produce, kind, period, now)
        self._record_cache[key] = cached
        if len(self._record_cache) > _RECORD_CACHE_SIZE:
            self._record_cache.popitem(last=False)
        return cached

    def _produce(self, kind: Kind, period: PeriodQuery | None, now: datetime) -> list[dict[str, Any]]:
        if period is None:
            return list(self.model.email_accounts(now))
        produce = self.model.document_records if kind == "document_management" else self.model.onestop_records
        return produce(period.start, period.end, period.grain, now)

    def _fault_handler(self, kind: Kind, method: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            slot = self._faults[kind]
            if method == "POST":
                try:
                    slot.arm(Fault.from_json(await request.json()))
                except (ValueError, json.JSONDecodeError) as exc:
                    return _error(400, f"bad fault: {exc}")
            elif method == "DELETE":
                slot.clear()
            fault = asdict(slot.fault) if slot.fault is not None else None
            return web.json_response({"ok": True, "kind": kind, "fault": fault, "remaining": slot.remaining})

        return handle


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _fault_response(fault: Fault) -> web.Response:
    status = ERROR_STATUS[fault.mode]
    if status == 429:
        return _error(429, "too many requests (simulated)", {"Retry-After": str(fault.retry_after)})
    if status == 401:
        return _error(401, "authentication required (simulated)", {"WWW-Authenticate": "Bearer"})
    return _error(status, f"simulated server error {status}")


async def _cut_short(request: web.Request, data: bytes) -> web.StreamResponse:
    """Announce all of ``data``, send half of it, and drop the connection, as a crashed
    upstream or a proxy timing out mid-transfer does."""
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    response.content_length = len(data)
    await response.prepare(request)
    await response.write(data[: len(data) // 2])
    if request.transport is not None:
        request.transport.close()
    return response


@web.middleware
async def _json_errors_middleware(request: web.Request,
                                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                  ) -> web.StreamResponse:
    """aiohttp's own 404/405 pages become ``{"error": ...}`` like every other error."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
