"""Reading the simulators and the service from outside: clean wire pages, the stored
observations' fingerprint, and the rejections the API lists."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
from sqlalchemy import select

from monitor.service import MonitorService
from monitor.simulators.server import DATA_PATHS, SimulatorServer
from monitor.storage.store import OBS
from tests.faults.cases import PAGE_SIZE, SPAN_FROM, SPAN_TO


async def clean_pages(simulators: SimulatorServer, kind: str) -> list[list[Any]]:
    """The records of every page the collector asks for, with no fault armed."""
    fault, _ = simulators.fault(kind)
    assert fault is None, "clean pages are read with no fault armed"
    url = simulators.urls[kind] + DATA_PATHS[kind]  # type: ignore[index]
    pages: list[list[Any]] = []
    async with aiohttp.ClientSession() as session:
        for number in range(1, 10_000):
            if kind == "email_directory":
                query = {"offset": str((number - 1) * PAGE_SIZE[kind]), "limit": str(PAGE_SIZE[kind])}
            else:
                query = {"from": SPAN_FROM, "to": SPAN_TO, "grain": "month", "page": str(number),
                         "page_size": str(PAGE_SIZE[kind])}
            async with session.get(url, params=query) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            pages.append(body["accounts" if kind == "email_directory" else "data"])
            last = not body["more"] if kind == "email_directory" else number >= body["total_pages"]
            if last:
                return pages
    raise AssertionError("unreachable: the simulators page a bounded list")


def fingerprint(service: MonitorService) -> dict[str, tuple[int, str]]:
    """Per source: how many observations are stored, and a SHA-256 of all of them."""
    columns = (OBS.c.source, OBS.c.measure, OBS.c.unit, OBS.c.period_start, OBS.c.period_end, OBS.c.value)
    with service.engine.connect() as connection:
        rows = connection.execute(select(*columns).order_by(*columns)).all()
    digests: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for source, *rest in rows:
        digests.setdefault(source, hashlib.sha256()).update(repr(tuple(rest)).encode())
        counts[source] = counts.get(source, 0) + 1
    return {source: (counts[source], digest.hexdigest()) for source, digest in digests.items()}


def measures_by_source(service: MonitorService) -> dict[str, set[str]]:
    with service.engine.connect() as connection:
        rows = connection.execute(select(OBS.c.source, OBS.c.measure).distinct()).all()
    out: dict[str, set[str]] = {}
    for source, measure in rows:
        out.setdefault(source, set()).add(measure)
    return out


async def api_rejections(base_url: str, source: str, newest: int) -> tuple[int, list[dict[str, Any]]]:
    """``GET /api/v1/sources/{source}/rejections``: the total, and the ``newest`` rows (≤ 1000)."""
    async with aiohttp.ClientSession() as session:
        url = f"{base_url}/api/v1/sources/{source}/rejections"
        async with session.get(url, params={"limit": str(max(1, min(newest, 1000)))}) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
    return int(body["total"]), list(body["items"])[:newest]
