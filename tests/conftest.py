"""Shared fixtures. The machinery lives in tests/support/components.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.components import (
    PostgresServer,
    PrometheusServer,
    require_postgres,
    require_prometheus,
)

# Tests that use these fixtures get the marker, so `-m "not postgresql"` deselects them.
_MARKER_FOR_FIXTURE = {
    "postgres_server": "postgresql",
    "postgres_url": "postgresql",
    "prometheus_factory": "prometheus",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            marker = _MARKER_FOR_FIXTURE.get(fixture)
            if marker is not None:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the whole session."""
    require_postgres()
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    name = f"egovmon_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test runs once on SQLite (a file in tmp_path) and once on a fresh PostgreSQL db."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/egovmon.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., PrometheusServer]]:
    """``prometheus_factory(["127.0.0.1:PORT"], scrape_interval="1s", metrics_path="/metrics")``
    returns a started PrometheusServer; every one started is stopped after the test."""
    require_prometheus()
    started: list[PrometheusServer] = []

    def factory(targets: list[str], **kwargs: Any) -> PrometheusServer:
        server = PrometheusServer(targets, **kwargs)
        started.append(server)
        return server.start()

    try:
        yield factory
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session")
def province() -> Any:
    """The demo's simulated province (deterministic, built once per session)."""
    from monitor.simulators.province import ProvinceModel

    return ProvinceModel(seed=2025)


@pytest.fixture(scope="session")
def collected(tmp_path_factory: pytest.TempPathFactory, province: Any) -> Path:
    """A database with the simulated province's history collected once for the session
    (alert, report and API tests copy it: see ``database``)."""
    import asyncio

    from tests.support.province import simulated_service

    directory = tmp_path_factory.mktemp("collected")

    async def collect() -> None:
        async with simulated_service(directory, province, extra={"alerts": {"enabled": False}}) as (service, _, _):
            summaries = await service.runner.collect_all()
            assert all(s.ok for s in summaries), summaries

    asyncio.run(collect())
    return directory / "egovmon.db"


@pytest.fixture
def database(collected: Path, tmp_path: Path) -> str:
    """A copy of the collected history in the test's directory, as a config's database URL."""
    import shutil

    shutil.copy(collected, tmp_path / "egovmon.db")
    return "sqlite:///egovmon.db"
