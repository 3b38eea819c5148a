"""What every ``egovmon`` command shares: the chosen config file, loading it,
opening the service, and failing with the right exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from monitor.config import Config, load_config
from monitor.errors import ConfigError


class State:
    config_path: Path = Path("monitor.yaml")


state = State()


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def load() -> Config:
    try:
        return load_config(state.config_path)
    except ConfigError as exc:
        raise fail(f"configuration is not valid:\n{exc}", 2) from None


def open_service(config: Config) -> Any:
    from monitor.service import MonitorService

    try:
        service = MonitorService(config, config_path=state.config_path)
    except ConfigError as exc:
        raise fail(f"configuration is not valid:\n{exc}", 2) from None
    service.prepare()
    return service
