"""Fixtures of the alert tests: the simulated province's history, collected once."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.simulators.province import ProvinceModel
from tests.support.province import simulated_service


@pytest.fixture(scope="session")
def collected(tmp_path_factory: pytest.TempPathFactory, province: ProvinceModel) -> Path:
    """A database with the province's history collected once for the session."""

    directory = tmp_path_factory.mktemp("collected")

    async def collect() -> None:
        async with simulated_service(directory, province, extra={"alerts": {"enabled": False}}) as (service, _, _):
            summaries = await service.runner.collect_all()
            assert all(s.ok for s in summaries), summaries

    asyncio.run(collect())
    return directory / "egovmon.db"


@pytest.fixture
def database(collected: Path, tmp_path: Path) -> Iterator[str]:
    shutil.copy(collected, tmp_path / "egovmon.db")
    yield "sqlite:///egovmon.db"


