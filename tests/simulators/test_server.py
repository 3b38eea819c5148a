"""The simulators over real HTTP on 127.0.0.1: wire format, paging, errors, faults.

Delays (``latency``, the ``slow`` fault) are observed through an injected sleep
function, never by timing requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import SYSTEM_KINDS, Fault, SimulatorServer
from monitor.timeutil import FrozenClock
from monitor.units import load_units

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
DOCS = "/qlvb/api/v1/statistics"
ONESTOP = "/motcua/api/v1/bao-cao"
MAIL = "/service/admin/accounts"
PATHS = {"document_management": DOCS, "one_stop": ONESTOP, "email_directory": MAIL}
A_QUARTER = {"from": "2025-03-01", "to": "2025-05-31"}
MAX_PAGES = 200  # every paging loop below is bounded
REPO_ROOT = Path(__file__).resolve().parents[2]


class SleepRecorder:
    """Stands in for asyncio.sleep: remembers the delays asked for, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def model() -> ProvinceModel:
    return ProvinceModel()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def server(model: ProvinceModel, sleeps: SleepRecorder) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(model, clock=FrozenClock(NOW), sleep=sleeps) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as client:
        yield client


async def get(session: aiohttp.ClientSession, server: SimulatorServer, kind: str,
              params: dict[str, Any] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
    """Status, decoded JSON body and the response of a GET on ``kind``'s data endpoint."""
    async with session.get(server.urls[kind] + PATHS[kind], params=params or {}) as response:
        text = await response.text()
        return response.status, json.loads(text), response


async def all_pages(session: aiohttp.ClientSession, server: SimulatorServer, kind: str,
                    params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every record of a paged query, and the envelopes of the pages."""
    records: list[dict[str, Any]] = []
    envelopes: list[dict[str, Any]] = []
    for page in range(1, MAX_PAGES + 1):
        status, body, _ = await get(session, server, kind, {**params, "page": page})
        assert status == 200, body
        records.extend(body.pop("data"))
        envelopes.append(body)
        if page >= body["total_pages"]:
            return records, envelopes
    raise AssertionError("more pages than expected")


# ----------------------------------------------------------------------------- serving

async def test_three_apps_on_loopback(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    assert set(server.urls) == set(SYSTEM_KINDS)
    assert all(url.startswith("http://127.0.0.1:") for url in server.urls.values())
    assert len(set(server.urls.values())) == 3
    for url in server.urls.values():
        async with session.get(url + "/_sim/health") as response:
            assert response.status == 200 and await response.json() == {"ok": True}


async def test_stop_closes_the_ports(model: ProvinceModel, session: aiohttp.ClientSession) -> None:
    running = SimulatorServer(model, clock=FrozenClock(NOW))
    await running.start()
    url = running.urls["one_stop"]
    await running.stop()
    assert running.urls == {}
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.get(url + "/_sim/health"):
            pass
    await running.stop()  # idempotent


async def test_fixed_ports_are_used(model: ProvinceModel, session: aiohttp.ClientSession) -> None:
    async with SimulatorServer(model, clock=FrozenClock(NOW)) as first:
        port = int(first.urls["email_directory"].rsplit(":", 1)[1])
    async with SimulatorServer(model, ports={"email_directory": port}, clock=FrozenClock(NOW)) as second:
        assert second.urls["email_directory"] == f"http://127.0.0.1:{port}"
    with pytest.raises(ValueError, match="unknown system kinds"):
        SimulatorServer(model, ports={"qlvb": 1})


async def test_document_pages_reassemble_to_the_model(server: SimulatorServer, model: ProvinceModel,
                                                     session: aiohttp.ClientSession) -> None:
    params = {"from": "2025-01-01", "to": "2025-12-31", "grain": "month", "page_size": 250}
    records, envelopes = await all_pages(session, server, "document_management", params)
    expected = model.document_records(date(2025, 1, 1), date(2025, 12, 31), "month", NOW)
    assert records == expected
    total = len(expected)
    assert envelopes[0] == {"page": 1, "page_size": 250, "total": total, "total_pages": -(-total // 250)}
    assert len(envelopes) == -(-total // 250) > 1


async def test_onestop_day_pages_reassemble_to_the_model(server: SimulatorServer, model: ProvinceModel,
                                                        session: aiohttp.ClientSession) -> None:
    params = {"from": "2026-11-10", "to": "2026-11-30", "grain": "day", "page_size": 1000}
    records, _ = await all_pages(session, server, "one_stop", params)
    assert records == model.onestop_records(date(2026, 11, 10), date(2026, 11, 30), "day", NOW)
    assert max(r["Ky"] for r in records) == "2026-11-21"  # month-to-date, from the injected clock


async def test_default_grain_and_page_size(server: SimulatorServer, model: ProvinceModel,
                                           session: aiohttp.ClientSession) -> None:
    status, body, _ = await get(session, server, "one_stop", A_QUARTER)
    assert status == 200
    assert (body["page"], body["page_size"]) == (1, 500)
    expected = model.onestop_records(date(2025, 3, 1), date(2025, 5, 31), "month", NOW)
    assert body["total"] == len(expected) and body["data"] == expected[:500]


async def test_a_page_past_the_end_is_empty(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    status, body, _ = await get(session, server, "document_management", {**A_QUARTER, "page": 99})
    assert status == 200 and body["data"] == [] and body["page"] == 99 and body["total"] > 0


async def test_mail_directory_pages(server: SimulatorServer, model: ProvinceModel,
                                    session: aiohttp.ClientSession) -> None:
    expected = model.email_accounts(NOW)
    accounts: list[dict[str, Any]] = []
    for offset in range(0, MAX_PAGES * 1000, 1000):
        status, body, response = await get(session, server, "email_directory", {"offset": offset, "limit": 1000})
        assert status == 200 and response.content_type == "application/json"
        assert (body["total"], body["offset"], body["limit"]) == (len(expected), offset, 1000)
        accounts.extend(body["accounts"])
        if not body["more"]:
            break
    assert accounts == expected
    status, body, _ = await get(session, server, "email_directory")
    assert (body["offset"], body["limit"], body["more"], len(body["accounts"])) == (0, 500, True, 500)


async def test_vietnamese_text_is_utf8_on_the_wire(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    async with session.get(server.urls["email_directory"] + MAIL, params={"limit": 50}) as response:
        raw = await response.read()
    names = [a["displayName"] for a in json.loads(raw.decode("utf-8"))["accounts"]]
    assert any(name.encode("utf-8") in raw for name in names if not name.isascii())


@pytest.mark.parametrize(("kind", "params"), [
    ("document_management", {}),
    ("document_management", {"from": "2025-03-01"}),
    ("document_management", {"from": "2025-3-1", "to": "2025-05-31"}),
    ("document_management", {"from": "2025-02-30", "to": "2025-05-31"}),
    ("document_management", {"from": "2025-06-01", "to": "2025-05-31"}),
    ("one_stop", {**A_QUARTER, "grain": "week"}),
    ("one_stop", {**A_QUARTER, "page": "0"}),
    ("one_stop", {**A_QUARTER, "page": "two"}),
    ("one_stop", {**A_QUARTER, "page_size": "1001"}),
    ("one_stop", {**A_QUARTER, "page_size": "0"}),
    ("email_directory", {"offset": "-1"}),
    ("email_directory", {"limit": "0"}),
    ("email_directory", {"limit": "5000"}),
    ("email_directory", {"limit": "many"}),
])
async def test_bad_parameters_are_refused(server: SimulatorServer, session: aiohttp.ClientSession, kind: str,
                                          params: dict[str, str]) -> None:
    status, body, _ = await get(session, server, kind, params)
    assert status == 400
    assert set(body) == {"error"} and body["error"]


async def test_unknown_path_is_a_json_404(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    async with session.get(server.urls["one_stop"] + "/motcua/api/v2/bao-cao") as response:
        assert response.status == 404
        assert "error" in await response.json()


# ----------------------------------------------------------------------------- faults

@pytest.mark.parametrize(("mode", "status"), [("http_500", 500), ("http_503", 503), ("http_401", 401)])
async def test_error_faults_last_until_cleared(server: SimulatorServer, session: aiohttp.ClientSession,
                                               mode: str, status: int) -> None:
    server.set_fault("document_management", Fault(mode))  # type: ignore[arg-type]
    for _ in range(3):
        got, body, _ = await get(session, server, "document_management", A_QUARTER)
        assert got == status and "error" in body
    server.clear_faults()
    got, body, _ = await get(session, server, "document_management", A_QUARTER)
    assert got == 200 and body["data"]


async def test_rate_limit_carries_retry_after(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    server.set_fault("email_directory", Fault("http_429", retry_after=7))
    status, body, response = await get(session, server, "email_directory")
    assert status == 429 and "error" in body
    assert response.headers["Retry-After"] == "7"


async def test_faults_affect_only_their_own_system(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    server.set_fault("one_stop", Fault("http_503"))
    assert (await get(session, server, "one_stop", A_QUARTER))[0] == 503
    assert (await get(session, server, "document_management", A_QUARTER))[0] == 200
    assert (await get(session, server, "email_directory"))[0] == 200
    async with session.get(server.urls["one_stop"] + "/_sim/health") as response:
        assert response.status == 200


async def test_times_counts_down(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    server.set_fault("one_stop", Fault("http_500", times=2))
    statuses = [(await get(session, server, "one_stop", A_QUARTER))[0] for _ in range(2)]
    assert statuses == [500, 500]
    assert server.fault("one_stop") == (None, None)
    assert (await get(session, server, "one_stop", A_QUARTER))[0] == 200


async def test_slow_fault_waits_then_answers(server: SimulatorServer, model: ProvinceModel,
                                             sleeps: SleepRecorder, session: aiohttp.ClientSession) -> None:
    server.set_fault("document_management", Fault("slow", delay=2.5, times=1))
    status, body, _ = await get(session, server, "document_management", A_QUARTER)
    assert sleeps.delays == [2.5]
    assert status == 200
    assert body["data"] == model.document_records(date(2025, 3, 1), date(2025, 5, 31), "month", NOW)[:500]
    await get(session, server, "document_management", A_QUARTER)
    assert sleeps.delays == [2.5]


async def test_latency_is_added_to_every_request(model: ProvinceModel, session: aiohttp.ClientSession) -> None:
    sleeps = SleepRecorder()
    async with SimulatorServer(model, clock=FrozenClock(NOW), latency=0.25, sleep=sleeps) as slow:
        for kind in SYSTEM_KINDS:
            async with session.get(slow.urls[kind] + "/_sim/health") as response:
                assert response.status == 200
        status, _, _ = await get(session, slow, "one_stop", A_QUARTER)
        assert status == 200
    assert sleeps.delays == [0.25] * 4


async def test_malformed_fault_truncates_the_body(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    server.set_fault("one_stop", Fault("malformed", times=1))
    async with session.get(server.urls["one_stop"] + ONESTOP, params=A_QUARTER) as response:
        assert response.status == 200
        text = await response.text()
    assert text.startswith('{"data": [')
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@pytest.mark.parametrize(("kind", "old", "new", "params", "key"), [
    ("document_management", "SoVanBanDi", "VanBanDi", A_QUARTER, "data"),
    ("one_stop", "MaDonVi", "DonVi", A_QUARTER, "data"),
    ("email_directory", "ou", "unit", {}, "accounts"),
])
async def test_schema_drift_renames_a_field_everywhere(server: SimulatorServer, session: aiohttp.ClientSession,
                                                       kind: str, old: str, new: str, params: dict[str, str],
                                                       key: str) -> None:
    _, clean, _ = await get(session, server, kind, params)
    server.set_fault(kind, Fault("schema_drift", times=1))
    status, drifted, _ = await get(session, server, kind, params)
    assert status == 200 and len(drifted[key]) == len(clean[key]) > 0
    for before, after in zip(clean[key], drifted[key], strict=True):
        assert old not in after and after[new] == before[old]
        assert {k: v for k, v in after.items() if k != new} == {k: v for k, v in before.items() if k != old}


async def test_negative_fault_corrupts_some_records(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    _, clean, _ = await get(session, server, "document_management", A_QUARTER)
    server.set_fault("document_management", Fault("negative", times=1))
    _, body, _ = await get(session, server, "document_management", A_QUARTER)
    corrupted = [i for i, r in enumerate(body["data"]) if r["SoVanBanDi"]["TongSo"] < 0]
    assert corrupted == list(range(0, len(body["data"]), 3))
    assert [r for i, r in enumerate(body["data"]) if i % 3] == [r for i, r in enumerate(clean["data"]) if i % 3]
    server.set_fault("one_stop", Fault("negative", times=1))
    _, body, _ = await get(session, server, "one_stop", A_QUARTER)
    assert body["data"][0]["TongSoHoSoBaoCao"] < 0 and body["data"][1]["TongSoHoSoBaoCao"] >= 0
    server.set_fault("email_directory", Fault("negative", times=1))
    assert (await get(session, server, "email_directory"))[1]["total"] == -1


async def test_part_exceeds_whole_fault(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    server.set_fault("document_management", Fault("part_exceeds_whole", times=1))
    _, body, _ = await get(session, server, "document_management", A_QUARTER)
    broken = [i for i, r in enumerate(body["data"]) if r["SoVanBanDi"]["DienTu"] > r["SoVanBanDi"]["TongSo"]]
    assert broken == list(range(0, len(body["data"]), 3))
    server.set_fault("one_stop", Fault("part_exceeds_whole", times=1))
    _, body, _ = await get(session, server, "one_stop", A_QUARTER)
    first = body["data"][0]
    assert first["SoHoa"] > sum(first["TiepNhanTheoKenh"].values())
    server.set_fault("email_directory", Fault("part_exceeds_whole", times=1))
    _, body, _ = await get(session, server, "email_directory", {"offset": 100, "limit": 50})
    assert body["total"] < 150


def test_fault_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown fault mode"):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        Fault("http_500", times=0)


# ----------------------------------------------------------------------------- control endpoint

async def test_control_endpoint_arms_and_clears(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    control = server.urls["document_management"] + "/_sim/fault"
    async with session.post(control, json={"mode": "http_429", "retry_after": 3, "times": 1}) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["fault"]["mode"] == "http_429" and answer["remaining"] == 1
    status, _, response = await get(session, server, "document_management", A_QUARTER)
    assert status == 429 and response.headers["Retry-After"] == "3"
    assert (await get(session, server, "document_management", A_QUARTER))[0] == 200

    async with session.post(control, json={"mode": "http_503"}) as response:
        assert response.status == 200
    assert (await get(session, server, "document_management", A_QUARTER))[0] == 503
    async with session.delete(control) as response:
        assert response.status == 200 and (await response.json())["fault"] is None
    assert (await get(session, server, "document_management", A_QUARTER))[0] == 200


@pytest.mark.parametrize("body", [{"mode": "explode"}, {"times": 2}, {"mode": "slow", "delay": "long"},
                                  {"mode": "http_500", "times": 0}, {"mode": "http_500", "colour": "red"}, [1]])
async def test_control_endpoint_refuses_bad_faults(server: SimulatorServer, session: aiohttp.ClientSession,
                                                   body: object) -> None:
    async with session.post(server.urls["one_stop"] + "/_sim/fault", json=body) as response:
        assert response.status == 400
        assert "error" in await response.json()
    assert server.fault("one_stop") == (None, None)


async def test_control_endpoint_refuses_non_json(server: SimulatorServer, session: aiohttp.ClientSession) -> None:
    async with session.post(server.urls["one_stop"] + "/_sim/fault", data=b"mode=http_500") as response:
        assert response.status == 400


# ----------------------------------------------------------------------------- the command

async def test_command_line_runs_the_servers(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    units_file = tmp_path / "units.yaml"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.simulators", "--seed", "3", "--write-units", str(units_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        urls: dict[str, str] = {}
        for _ in range(20):
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
            kind, _, url = line.strip().partition(" ")
            if kind in SYSTEM_KINDS:
                urls[kind] = url
            if line.startswith("serving") or not line:
                break
        assert set(urls) == set(SYSTEM_KINDS)
        async with session.get(urls["one_stop"] + "/_sim/health") as response:
            assert await response.json() == {"ok": True}
        assert len(load_units(units_file).valid_on(date(2026, 11, 22))) >= 200
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), timeout=30)
    assert process.returncode == 0
