"""The long-running service: HTTP listener + scheduler until SIGINT/SIGTERM;
SIGHUP reloads the configuration (a bad one is refused and the running one kept).
With ``ha.enabled`` a leader election decides which of the instances runs the
leader's jobs (monitor.leader, docs/high-availability.md)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TextIO

from monitor.http import HttpServer
from monitor.leader import LeaderElection, Leadership
from monitor.scheduler import ServiceScheduler
from monitor.service import MonitorService

log = logging.getLogger(__name__)


async def serve(service: MonitorService, out: TextIO, *, collect_now: bool = True) -> int:
    http = HttpServer(service, service.config.http.host, service.config.http.port)
    await http.start()
    scheduler = ServiceScheduler(service)
    election: LeaderElection | None = None
    if service.config.ha.enabled:
        ha = service.config.ha
        service.set_leading(False)  # a follower until the lock says otherwise
        election = LeaderElection(Leadership(service.engine, name=ha.lock_name, poll_interval=ha.poll_interval),
                                  on_elected=scheduler.become_leader, on_deposed=scheduler.step_down)
    scheduler.start(run_now=collect_now)
    if election is not None:
        election.start()
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
        if election is not None:
            await election.stop()  # still the leader (if it was) until its jobs have stopped …
        await scheduler.stop()
        if election is not None:  # … then the lock goes, and a follower takes over at its next poll
            await asyncio.to_thread(election.leadership.release)
        await http.stop()
    return 0
