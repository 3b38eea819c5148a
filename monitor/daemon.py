"""The long-running service: HTTP listener + scheduler until SIGINT/SIGTERM."""

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
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("stopping: waiting for running jobs, then closing the listener")
        await scheduler.stop()
        await http.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
