"""A simulated province wired to a real service, for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from monitor.config import Config, load_config
from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import SimulatorServer
from monitor.timeutil import Clock, FrozenClock

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 10:00 in Hanoi
BACKFILL_FROM = date(2025, 1, 1)  # spans the 2025 reform
SOURCE_IDS = {"document_management": "qlvb", "email_directory": "thu-cong-vu", "one_stop": "mot-cua"}


def write_config(directory: Path, model: ProvinceModel, urls: dict[str, str], *,
                 database_url: str | None = None, extra: dict[str, Any] | None = None, **overrides: Any) -> Path:
    model.write_units(directory / "units.yaml")
    sources = []
    for kind, source_id in SOURCE_IDS.items():
        source: dict[str, Any] = {"id": source_id, "kind": kind, "url": urls[kind], "retries": 1,
                                  "timeout": "5s", "backfill_from": BACKFILL_FROM.isoformat(),
                                  "schedule": {"interval": "1h"}}
        source.update(overrides.get(source_id, {}))
        sources.append(source)
    data = {"version": 1, "province": {"name": "Tỉnh Sơn Hà", "code": "000.00.00.H99"},
            "database": {"url": database_url or "sqlite:///egovmon.db"},
            "http": {"listen": "127.0.0.1:0"}, "units": {"file": "units.yaml"}, "sources": sources,
            "exporter": {"windows": ["month", "ytd"]}, **(extra or {})}
    path = directory / "monitor.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@asynccontextmanager
async def simulated_service(directory: Path, model: ProvinceModel, *, clock: Clock | None = None,
                            database_url: str | None = None, extra: dict[str, Any] | None = None,
                            **overrides: Any
                            ) -> AsyncIterator[tuple[MonitorService, SimulatorServer, Config]]:
    clock = clock or FrozenClock(NOW)
    async with SimulatorServer(model, clock=clock) as simulators:
        path = write_config(directory, model, simulators.urls, database_url=database_url, extra=extra, **overrides)
        config = load_config(path)
        service = MonitorService(config, clock=clock, config_path=path)
        service.prepare()
        try:
            yield service, simulators, config
        finally:
            await service.aclose()
