"""A real HTTP source on loopback, recorded payloads, and a harness to run collectors against them.

``SourceServer`` is an aiohttp.web server on 127.0.0.1, port 0. It serves the
recorded answers of ``payloads/<kind>/`` (``page-N.json`` by the ``page``
parameter, ``offset-N.json`` by ``offset``), records every request, and can be
told to misbehave: a status with a body and headers, a truncated body, a
garbage body, a handler that hangs until the test ends.

``payloads/<kind>/case.json`` says how to run the collector of ``kind`` over
its recording: the path, the paging style, the periods and units to ask for,
the clock's instant, options, and a field to remove to simulate schema drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collectors import CollectionResult, Collector, SourceSettings, collector_class
from collectors.http import SourceHttp, new_session
from monitor.timeutil import FrozenClock, Period, zone

PAYLOADS = Path(__file__).parent / "payloads"
TZ = zone("Asia/Ho_Chi_Minh")
SECRET = "Bearer bí-mật-không-được-lộ"  # must never appear in an error message
HANG_LIMIT = 30.0  # a "slow" handler gives up after this, should the test forget to end it

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ----------------------------------------------------------------------------- payload sets

def parse_period(label: str) -> Period:
    """``2025-03`` → that local month, ``2025-03-14`` → that local day."""
    if len(label) == 7:
        return Period.of_month(int(label[:4]), int(label[5:]), TZ)
    return Period.of_day(date.fromisoformat(label), TZ)


@dataclass
class PayloadSet:
    """A kind's recorded answers (a private deep copy: tests may edit it) and its case."""

    kind: str
    case: dict[str, Any]
    documents: dict[str, Any]

    @property
    def path(self) -> str:
        return str(self.case["path"])

    @property
    def records_key(self) -> str:
        return str(self.case["records_key"])

    @property
    def periods(self) -> list[Period]:
        return [parse_period(label) for label in self.case["periods"]]

    @property
    def now(self) -> datetime:
        return datetime.fromisoformat(self.case["now"])

    @property
    def units(self) -> set[str]:
        return set(self.case["units"])

    def records(self) -> list[dict[str, Any]]:
        """Every record, in the order a collector reads them (editable in place)."""
        def order(name: str) -> int:
            return int(name.rsplit("-", 1)[1])

        return [record for name in sorted(self.documents, key=order)
                for record in self.documents[name][self.records_key]]


def load_payloads(kind: str) -> PayloadSet:
    folder = PAYLOADS / kind
    case = json.loads((folder / "case.json").read_text(encoding="utf-8"))
    documents = {p.stem: json.loads(p.read_text(encoding="utf-8"))
                 for p in folder.glob("*.json") if p.stem != "case"}
    assert documents, f"no recorded answers in {folder}"
    return PayloadSet(kind, case, copy.deepcopy(documents))


def remove_field(record: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for name in parents:
        record = record[name]
    del record[leaf]


# ----------------------------------------------------------------------------- the server

@dataclass
class Fault:
    kind: str  # "status", "truncate", "body", "hang"
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None  # None: every request from now on


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class SourceServer:
    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.routes: dict[str, Handler] = {}
        self._answers: dict[str, tuple[str, dict[str, Any]]] = {}
        self._faults: list[Fault] = []
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        self.url = ""

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        self._release.set()
        await self._runner.cleanup()

    # -- what to answer

    def serve(self, payloads: PayloadSet) -> None:
        self._answers[payloads.path] = (str(payloads.case["paging"]), payloads.documents)

    def fail(self, status: int, body: Any = None, *, headers: dict[str, str] | None = None,
             times: int | None = None) -> None:
        text = json.dumps(body if body is not None else {"error": f"lỗi {status}"})
        self._faults.append(Fault("status", status, text.encode(), headers or {}, times))

    def answer(self, body: bytes, content_type: str = "application/json", *,
               times: int | None = None) -> None:
        self._faults.append(Fault("body", 200, body, {"Content-Type": content_type}, times))

    def truncate(self, *, times: int | None = None) -> None:
        self._faults.append(Fault("truncate", times=times))

    def hang(self, *, times: int | None = None) -> None:
        self._faults.append(Fault("hang", times=times))

    def attempts(self, path: str) -> int:
        return sum(1 for seen in self.requests if seen.path == path)

    # -- the handler

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Seen(request.path, dict(request.query), dict(request.headers)))
        fault = self._next_fault()
        if fault is not None:
            return await self._misbehave(request, fault)
        if request.path in self.routes:
            return await self.routes[request.path](request)
        if request.path not in self._answers:
            return web.json_response({"error": f"không tìm thấy {request.path}"}, status=404)
        paging, documents = self._answers[request.path]
        name = f"page-{request.query.get('page')}" if paging == "page" else (
            f"offset-{request.query.get('offset')}")
        if name not in documents:
            return web.json_response({"error": f"không có {name}"}, status=404)
        return web.json_response(documents[name], dumps=lambda d: json.dumps(d, ensure_ascii=False))

    def _next_fault(self) -> Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        if fault.times is not None:
            fault.times -= 1
            if fault.times == 0:
                self._faults.pop(0)
        return fault

    async def _misbehave(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), HANG_LIMIT)
            return web.json_response({"error": "quá muộn"})
        if fault.kind == "truncate":
            body = json.dumps({"data": [], "total_pages": 1, "ghi_chu": "x" * 200}).encode()
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[:25])
            assert request.transport is not None
            request.transport.close()
            return response
        headers = {"Content-Type": "application/json", **fault.headers}
        return web.Response(status=fault.status, body=fault.body, headers=headers)


# ----------------------------------------------------------------------------- harness

class Harness:
    """A session, a fake sleep that only records, and factories for SourceHttp and collectors."""

    def __init__(self, server: SourceServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.sleeps: list[float] = []
        self.retry_reasons: list[str] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def http(self, **overrides: Any) -> SourceHttp:
        kwargs: dict[str, Any] = {
            "timeout": 5.0, "retries": 2, "backoff": 0.5, "max_backoff": 30.0,
            "headers": {"Authorization": SECRET}, "sleep": self.sleep,
            "on_retry": self.retry_reasons.append, **overrides}
        return SourceHttp("nguon-thu", self.server.url, self.session, **kwargs)

    def collector(self, payloads: PayloadSet, *, options: dict[str, Any] | None = None,
                  grain: str | None = None, now: datetime | None = None,
                  **http: Any) -> Collector:
        cls = collector_class(payloads.kind)
        settings = SourceSettings(
            id=f"test-{payloads.kind}", kind=payloads.kind, url=self.server.url,
            grain=grain or payloads.case["grain"],  # type: ignore[arg-type]
            options={**payloads.case["options"], **(options or {})})
        return cls(settings, self.http(**http), TZ, FrozenClock(now or payloads.now))

    async def collect(self, payloads: PayloadSet, *, units: set[str] | None = None,
                      periods: list[Period] | None = None, serve: bool = True,
                      **kwargs: Any) -> CollectionResult:
        if serve:
            self.server.serve(payloads)
        collector = self.collector(payloads, **kwargs)
        return await collector.collect(
            periods if periods is not None else payloads.periods,
            units if units is not None else payloads.units)


@pytest.fixture
async def server() -> AsyncIterator[SourceServer]:
    source = SourceServer()
    await source.start()
    yield source
    await source.close()


@pytest.fixture
async def harness(server: SourceServer) -> AsyncIterator[Harness]:
    session = new_session()
    yield Harness(server, session)
    await session.close()


def by_key(result: CollectionResult) -> dict[tuple[str, str], dict[str, float]]:
    """(unit, period label) → measure → value."""
    table: dict[tuple[str, str], dict[str, float]] = {}
    for obs in result.observations:
        table.setdefault((obs.unit, obs.period.label(TZ)), {})[obs.measure] = obs.value
    return table


def reasons(result: CollectionResult) -> list[str]:
    return [r.reason for r in result.rejections]
