"""The long-running service: HTTP listener + scheduler until SIGINT/SIGTERM;
SIGHUP reloads the configuration (a bad one is refused and the running one kept)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TextIO

from monitor.http import HttpServer
from monitor.scheduler import ServiceScheduler
from monitor.service import MonitorService

log = logging.getLogger(__name__)


async def serve(service: MonitorService, out: TextIO, *, collect_now: bool = True) -> int:
    http = HttpServer(service, service.config.http.host, service.config.http.port)
    await http.start()
    scheduler = ServiceScheduler(service)
    scheduler.start(run_now=collect_now)
    out.write(f"serving http://{service.config.http.host}:{http.port}/metrics "
              "(also /healthz, /readyz, /api/v1, /openapi.json, /reports/gap); Ctrl-C stops.\n")
    out.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[object]] = set()

    def on_hangup() -> None:
        log.info("SIGHUP: reloading the configuration from %s", service.config_path)
        task = loop.create_task(service.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await stop.wait()
    finally:
        log.info("stopping: waiting for running jobs, then closing the listener")
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if reloads:
            await asyncio.wait(reloads, timeout=10)
        await scheduler.stop()
        await http.stop()
    return 0
