"""Local servers for the benchmarks, each in its own process: a lean province emulator
and an SMTP sink.

``ProvinceEmulator`` serves the three systems' wire formats (docs/sources.md)
for a synthetic province of ``units`` units, every answer held ``latency``
seconds first, as a distant source would. Pages are rendered once and cached,
and the server runs in a separate process, so that the benchmark measures the
client (the service's collection path), not the emulator sharing its event loop.
The ``count`` command says how many data requests each path answered. The HTTP is a
minimal keep-alive HTTP/1.1 on an asyncio protocol (an aiohttp server here
spent ~0.7 ms of CPU a request and became the bottleneck at 2,000 requests/s).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

DOCUMENT_PATH = "/qlvb/api/v1/statistics"
ONE_STOP_PATH = "/motcua/api/v1/bao-cao"
ACCOUNTS_PATH = "/service/admin/accounts"
PROVINCE_CODE = "000.00.00.H99"


def unit_codes(units: int) -> list[str]:
    """The province first, then ``units - 1`` departments: QCVN 102 codes."""
    return [PROVINCE_CODE] + [f"000.{i // 100:02d}.{i % 100:02d}.H99" for i in range(100, 100 + units - 1)]


@dataclass(frozen=True)
class Month:
    label: str  # "2026-11"
    first: str  # "2026-11-01"
    last: str  # "2026-11-30"


def months_of(year: int, first_month: int, last_month: int) -> list[Month]:
    out = []
    for month in range(first_month, last_month + 1):
        start = date(year, month, 1)
        end = date(year + month // 12, month % 12 + 1, 1)
        out.append(Month(f"{year}-{month:02d}", start.isoformat(), date.fromordinal(end.toordinal() - 1).isoformat()))
    return out


def document_record(code: str, month: Month, n: int) -> dict[str, Any]:
    return {"OrganId": code, "Period": month.label, "From": month.first, "To": month.last,
            "SoVanBanDi": {"TongSo": 40 + n % 17, "DienTu": 35 + n % 5, "KySo": 30 + n % 5},
            "SoVanBanDen": {"TongSo": 60 + n % 11, "XuLyTrenPhanMem": 55 + n % 5},
            "HoSoCongViec": {"TongSo": 20 + n % 7, "TrenMoiTruongMang": 15 + n % 5},
            "TaiKhoan": {"TongSo": 30, "CoThaoTac": 25 + n % 5}}


def one_stop_record(code: str, month: Month, n: int) -> dict[str, Any]:
    received = 100 + n % 13  # statuses 2, 4..10 (1 and 3 are "not received")
    status = {"1": 3, "2": received - 80, "3": 1, "4": 10, "5": 10, "6": 10, "7": 10, "8": 10, "9": 15, "10": 15}
    return {"MaDonVi": code, "Ky": month.label, "TuNgay": month.first, "DenNgay": month.last,
            "TongSoHoSoBaoCao": received + 4, "TheoTrangThai": status,
            "TiepNhanTheoKenh": {"1": received - 60, "2": 55, "3": 5},
            "DaXuLy": {"TruocHan": 10, "DungHan": 15, "TreHan": 5}, "CoPhiLePhi": 40,
            "ThanhToanTrucTuyen": {"1": 10, "2": 12}, "SoHoa": 70,
            "ThuTuc": {"TongSo": 300, "DVCTT": 250, "DuDieuKienToanTrinh": 120, "ToanTrinh": 100}}


def account_record(code: str, n: int, now: datetime) -> dict[str, str]:
    return {"name": f"canbo{n}.{code.replace('.', '')}@sonha.gov.vn", "displayName": f"Nguyễn Văn Số {n}",
            "ou": code, "zimbraAccountStatus": "active", "zimbraCreateTimestamp": "20190304020000Z",
            "zimbraLastLogonTimestamp": now.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")}


@dataclass(frozen=True)
class EmulatorSpec:
    """What the emulator serves: ``units`` units, ``months`` of statistics, ``accounts`` per unit."""

    units: int
    months: tuple[Month, ...]
    accounts_per_unit: int
    latency: float
    now: datetime


def _pages(spec: EmulatorSpec) -> dict[str, Callable[[dict[str, str]], bytes]]:
    """Path → the body of the page a query asks for."""
    codes = unit_codes(spec.units)
    documents = [document_record(c, m, i) for m in spec.months for i, c in enumerate(codes)]
    reports = [one_stop_record(c, m, i) for m in spec.months for i, c in enumerate(codes)]
    accounts = [account_record(c, n, spec.now) for c in codes for n in range(spec.accounts_per_unit)]

    def paged(records: list[dict[str, Any]]) -> Callable[[dict[str, str]], bytes]:
        def body(query: dict[str, str]) -> bytes:
            page, size = int(query.get("page", "1")), int(query.get("page_size", "500"))
            chunk = records[(page - 1) * size:page * size]
            return json.dumps({"data": chunk, "page": page, "page_size": size, "total": len(records),
                               "total_pages": math.ceil(len(records) / size)}, ensure_ascii=False).encode()
        return body

    def offsets(query: dict[str, str]) -> bytes:
        offset, limit = int(query.get("offset", "0")), int(query.get("limit", "500"))
        return json.dumps({"total": len(accounts), "offset": offset, "limit": limit,
                           "more": offset + limit < len(accounts), "accounts": accounts[offset:offset + limit]},
                          ensure_ascii=False).encode()

    return {DOCUMENT_PATH: paged(documents), ONE_STOP_PATH: paged(reports), ACCOUNTS_PATH: offsets}


class _Emulator:
    """The state the connections share: rendered answers (cached per target) and request counts."""

    def __init__(self, spec: EmulatorSpec) -> None:
        self.latency = spec.latency
        self.pages = _pages(spec)
        self.cache: dict[bytes, bytes] = {}
        self.counts: Counter[str] = Counter()

    def answer(self, target: bytes) -> bytes:
        """The whole HTTP response to ``GET target``."""
        cached = self.cache.get(target)
        path, _, query = target.decode("latin-1").partition("?")
        if path in self.pages:
            self.counts[path] += 1
        if cached is not None:
            return cached
        if path not in self.pages:
            return _response("404 Not Found", b'{"error": "not found"}')
        self.cache[target] = response = _response("200 OK", self.pages[path](dict(parse_qsl(query))))
        return response

    def command(self, command: str) -> str:
        """``count``: the data requests answered, per path (JSON); ``reset``: forget them."""
        if command == "reset":
            self.counts.clear()
        return json.dumps(dict(self.counts))


def _response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class _Connection(asyncio.Protocol):
    """HTTP/1.1 keep-alive, GET only, no body: all the collectors send. Each answer is
    written ``latency`` seconds after its request arrived (a timer, not a task: cheap)."""

    def __init__(self, emulator: _Emulator) -> None:
        self.emulator = emulator
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            _method, target, _version = head.split(b"\r\n", 1)[0].split(b" ", 2)
            loop.call_later(self.emulator.latency, self._write, self.emulator.answer(target))

    def _write(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _serve(spec: EmulatorSpec) -> None:
    """The emulator process: print the port, serve until stdin closes."""
    emulator = _Emulator(spec)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(emulator), "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await _commands(emulator.command)
        server.close()

    asyncio.run(main())


class _ChildServer:
    """A server in a child process (``python -m benchmarks._servers KIND ARG``): it prints its
    port, answers one-line commands on stdin, and stops when its stdin closes."""

    kind = ""

    def __init__(self, argument: str = "") -> None:
        self.argument = argument
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Any:
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._servers", self.kind, self.argument],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root, env=env)
        line = self._read()  # the port, once listening (EOF if it died)
        if not line.isdigit():
            self.__exit__(None, None, None)
            raise RuntimeError(f"the {self.kind} server did not start (it said {line!r})")
        self.port = int(line)
        return self

    def command(self, line: str) -> str:
        """Send one command line; return the server's one-line answer."""
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()
        return self._read()

    def _read(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        return self._process.stdout.readline().strip()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()  # the server's signal to stop
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


class ProvinceEmulator(_ChildServer):
    """``with ProvinceEmulator(spec) as emulator: emulator.url …``"""

    kind = "province"

    def __init__(self, spec: EmulatorSpec) -> None:
        super().__init__(json.dumps(_spec_json(spec)))
        self.spec = spec

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, int]:
        """Data requests answered per path since the last ``reset``."""
        counts: dict[str, int] = json.loads(self.command("count"))
        return counts

    def reset(self) -> None:
        self.command("reset")


class SmtpSink(_ChildServer):
    """A real aiosmtpd server that accepts everything and counts it: ``received()`` is
    (messages, distinct Message-IDs); ``reset()`` forgets them."""

    kind = "smtp"

    def received(self) -> tuple[int, int]:
        messages, distinct = self.command("count").split()
        return int(messages), int(distinct)

    def reset(self) -> None:
        self.command("reset")


def _spec_json(spec: EmulatorSpec) -> dict[str, Any]:
    return {"units": spec.units, "months": [[m.label, m.first, m.last] for m in spec.months],
            "accounts_per_unit": spec.accounts_per_unit, "latency": spec.latency, "now": spec.now.isoformat()}


def _spec_from_json(data: dict[str, Any]) -> EmulatorSpec:
    return EmulatorSpec(data["units"], tuple(Month(*m) for m in data["months"]), data["accounts_per_unit"],
                        data["latency"], datetime.fromisoformat(data["now"]))


async def _commands(handle: Callable[[str], str]) -> None:
    """Answer stdin's command lines until EOF (the parent closed it or went away)."""
    while line := await asyncio.to_thread(sys.stdin.readline):
        print(handle(line.strip()), flush=True)


def _serve_smtp() -> None:
    from aiosmtpd.smtp import SMTP

    message_ids: set[bytes] = set()
    messages = 0

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            nonlocal messages
            messages += 1
            head = (envelope.original_content or envelope.content).split(b"\r\n\r\n", 1)[0]
            for line in head.split(b"\r\n"):
                if line[:11].lower() == b"message-id:":
                    message_ids.add(line[11:].strip())
            return "250 OK"

    def handle(command: str) -> str:
        nonlocal messages
        if command == "reset":
            messages = 0
            message_ids.clear()
            return "ok"
        return f"{messages} {len(message_ids)}"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Handler(), hostname="bench-smtp", enable_SMTPUTF8=True), "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await _commands(handle)
        server.close()

    asyncio.run(main())


if __name__ == "__main__":
    if sys.argv[1] == "province":
        _serve(_spec_from_json(json.loads(sys.argv[2])))
    else:
        _serve_smtp()
