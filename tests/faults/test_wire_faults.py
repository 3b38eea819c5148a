"""The simulators' new fault modes damage the wire as monitor/simulators/server.py documents,
seen by a plain HTTP client: the source fault test relies on it."""

from __future__ import annotations

import aiohttp
import pytest

from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import DATA_PATHS, UNKNOWN_UNIT, Fault, SimulatorServer
from monitor.timeutil import FrozenClock
from tests.support.province import NOW

QUERY = {"from": "2026-10-01", "to": "2026-11-30", "grain": "month", "page_size": "100"}


async def pages(session: aiohttp.ClientSession, url: str) -> list[list[dict[str, object]]]:
    out: list[list[dict[str, object]]] = []
    for number in range(1, 100):
        async with session.get(url, params={**QUERY, "page": str(number)}) as response:
            body = await response.json()
        out.append(body["data"])
        if number >= body["total_pages"]:
            return out
    raise AssertionError("more than 99 pages")


async def test_new_fault_modes_on_the_wire(province: ProvinceModel) -> None:
    async with SimulatorServer(province, clock=FrozenClock(NOW)) as simulators, aiohttp.ClientSession() as session:
        url = simulators.urls["document_management"] + DATA_PATHS["document_management"]
        clean = await pages(session, url)
        assert len(clean) > 2 and [p[0]["Period"] for p in clean][:1] == ["2026-10"]

        simulators.set_fault("document_management", Fault("periods_out_of_order"))
        backwards = await pages(session, url)
        assert [r for p in backwards for r in p] == [r for p in clean for r in p][::-1]
        assert backwards[0][0]["Period"] == "2026-11"  # page 1 answers the last period asked for

        simulators.set_fault("document_management", Fault("duplicate_records"))
        doubled = await pages(session, url)
        assert all(p[1] == p[0] and p[2:] == c[1:] for p, c in zip(doubled, clean, strict=True))

        simulators.set_fault("document_management", Fault("unknown_unit"))
        renamed = await pages(session, url)
        for page, original in zip(renamed, clean, strict=True):
            assert [i for i, r in enumerate(page) if r["OrganId"] == UNKNOWN_UNIT] == list(range(0, len(page), 3))
            assert all(r == o for i, (r, o) in enumerate(zip(page, original, strict=True)) if i % 3)

        simulators.set_fault("document_management", Fault("truncated", times=1))
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(url, params={**QUERY, "page": "1"}) as response:
                assert response.status == 200
                await response.read()

        simulators.set_fault("document_management", Fault("timeout", times=1, delay=30))
        with pytest.raises(TimeoutError):
            async with session.get(url, params={**QUERY, "page": "1"},
                                   timeout=aiohttp.ClientTimeout(total=0.3)) as response:
                await response.read()
        assert simulators.fault("document_management") == (None, None)  # the times were used up

        await simulators.stop_system("document_management")
        async with aiohttp.ClientSession() as fresh:  # a pooled connection would outlive the port
            with pytest.raises(aiohttp.ClientConnectorError):
                async with fresh.get(url, params={**QUERY, "page": "1"}):
                    pass
        await simulators.start_system("document_management")
        assert await pages(session, url) == clean
