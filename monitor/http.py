"""The one HTTP listener: /metrics, /healthz, /readyz, /api/v1 (alerts, silences).

Binds to loopback by default (``127.0.0.1:9480``). Errors reach clients as a
short JSON message, never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from monitor import __version__
from monitor.api_alerts import add_routes as add_alert_routes
from monitor.exporter import CONTENT_TYPE
from monitor.service import MonitorService

log = logging.getLogger(__name__)
SERVICE_KEY = web.AppKey("service", MonitorService)
MAX_REQUEST_BYTES = 64 * 1024


def build_app(service: MonitorService) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_json_errors])
    app[SERVICE_KEY] = service
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_alert_routes(app, SERVICE_KEY)
    return app


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Keep what the client needs to react (WWW-Authenticate on 401, Retry-After …).
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)
    except Exception:
        log.exception("error while serving %s %s", request.method, request.path)
        return web.json_response({"error": "internal error; see the service log"}, status=500)


async def index(request: web.Request) -> web.Response:
    return web.json_response({"service": "egov-kpi-monitor", "version": __version__,
                              "links": ["/metrics", "/healthz", "/readyz", "/api/v1/alerts",
                                                        "/api/v1/silences"]})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICE_KEY].exposition.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    problems = []
    if not service.ready:
        problems.append("no KPI snapshot computed yet")
    if not await asyncio.to_thread(service.database_ok):
        problems.append("database not reachable")
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


class HttpServer:
    def __init__(self, service: MonitorService, host: str, port: int) -> None:
        self.runner = web.AppRunner(build_app(service), access_log=None)
        self.host, self.port = host, port

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # learn the ephemeral port
            for address in self.runner.addresses:
                self.port = int(address[1])
        log.info("listening on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        await self.runner.cleanup()
