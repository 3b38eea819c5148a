"""Fixtures of the API tests: the simulated province's history (collected once
per session, as for the alert tests), evaluated and served by a real
HttpServer on 127.0.0.1."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from monitor.http import HttpServer
from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from tests.support.province import NOW, simulated_service
from tests.support.smtp import SmtpServer

TOKEN = "api-token-for-tests"
TOKEN_HASH = "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Live:
    """The service, its listener and a client session."""

    service: MonitorService
    http: HttpServer
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"

    async def get(self, path: str, params: Any = None) -> tuple[int, Any]:
        async with self.session.get(self.base + path, params=params) as response:
            return response.status, await response.json()

    async def walk(self, path: str, params: Any = None) -> tuple[list[Any], list[dict[str, Any]]]:
        """Every item of a paginated list, following ``next``; also each page."""
        items: list[Any] = []
        pages: list[dict[str, Any]] = []
        status, page = await self.get(path, params)
        while True:
            assert status == 200, page
            pages.append(page)
            items.extend(page["items"])
            if page["next"] is None:
                return items, pages
            assert len(pages) < 1000, "pagination does not end"
            status, page = await self.get(page["next"])


@asynccontextmanager
async def live_api(directory: Path, province: ProvinceModel, database_url: str) -> AsyncIterator[Live]:
    """A service over the collected history, with its KPIs, evaluations, scores and
    alerts computed at NOW, listening on an ephemeral port; API token TOKEN."""
    async with SmtpServer() as smtp, simulated_service(
            directory, province, database_url=database_url,
            extra={"smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none", "timeout": "5s"},
                   "alerts": {"sending_windows": [], "operators": [{"name": "Phòng CNTT",
                                                                    "email": "cntt@sonha.gov.vn"}]},
                   "http": {"listen": "127.0.0.1:0", "token_hashes": [TOKEN_HASH]}}) as (service, _, config):
        for source in config.sources:  # as if just collected: no source alert inhibits the targets
            service.store.record_attempt(source.id, at=NOW, duration=0.1, ok=True, observations=1)
        await service.refresh_kpis()
        http = HttpServer(service, "127.0.0.1", 0)
        await http.start()
        try:
            async with aiohttp.ClientSession() as session:
                yield Live(service, http, session)
        finally:
            await http.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory, province: ProvinceModel,
               collected: Path) -> AsyncIterator[Live]:
    """One live API per test module (read-mostly: tests that write say so)."""
    directory = tmp_path_factory.mktemp("api")
    shutil.copy(collected, directory / "egovmon.db")
    async with live_api(directory, province, "sqlite:///egovmon.db") as api:
        yield api
