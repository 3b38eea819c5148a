"""The one HTTP listener: /metrics, /healthz, /readyz, the /api/v1 read API
(units, KPIs, observations, evaluations, rules, sources, scores), alerts and
silences, the gap report (/reports/gap), and /openapi.json describing all of it.

Binds to loopback by default (``127.0.0.1:9480``). On any other address every
endpoint except ``/healthz`` and ``/readyz`` needs ``Authorization: Bearer
<token>`` (``/metrics`` too: Prometheus sends it with ``authorization:
credentials_file``), and the server refuses to start without
``http.token_hashes`` (see ``monitor.security`` and docs/security.md). Errors
reach clients as a short JSON message ``{"error": ...}``, never a stack trace;
the details go to the service log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from monitor import __version__
from monitor.api_admin import add_routes as add_admin_routes
from monitor.api_alerts import add_routes as add_alert_routes
from monitor.api_alerts import authorise
from monitor.api_v1 import ApiError
from monitor.api_v1 import add_routes as add_read_routes
from monitor.exporter import CONTENT_TYPE
from monitor.openapi import build_openapi
from monitor.reports.http import add_routes as add_report_routes
from monitor.security import OPEN_PATHS, check_listener, is_loopback
from monitor.service import MonitorService

log = logging.getLogger(__name__)
SERVICE_KEY = web.AppKey("service", MonitorService)
MAX_REQUEST_BYTES = 64 * 1024


def build_app(service: MonitorService, *, loopback: bool | None = None) -> web.Application:
    """``loopback``: whether the listener is reachable from this machine only (default:
    judged from ``http.listen``); when it is not, every request but the probes needs a token."""
    if loopback is None:
        loopback = is_loopback(service.config.http.host)
    # _json_errors first: it is the outermost, so a refused token answers JSON too.
    middlewares = [_json_errors] if loopback else [_json_errors, _token_required]
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=middlewares)
    app[SERVICE_KEY] = service
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi_document)
    add_read_routes(app, SERVICE_KEY)
    add_alert_routes(app, SERVICE_KEY)
    add_admin_routes(app, SERVICE_KEY)
    add_report_routes(app, SERVICE_KEY)
    return app


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as exc:
        return web.json_response({"error": exc.message}, status=exc.status, headers=exc.headers,
                                 dumps=_dumps)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Keep what the client needs to react (Allow on 405, Retry-After …).
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return web.json_response({"error": _message(request, exc)}, status=exc.status, headers=headers,
                                 dumps=_dumps)
    except Exception:
        log.exception("error while serving %s %s", request.method, request.path)
        return web.json_response({"error": "internal error; see the service log"}, status=500)


@web.middleware
async def _token_required(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path not in OPEN_PATHS:
        # Read at each request, so tokens added or revoked by a reload apply at once;
        # with none left, everything but the probes is refused (403), never opened.
        authorise(request, request.app[SERVICE_KEY].config.http.token_hashes)
    response: web.StreamResponse = await handler(request)
    return response


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def _message(request: web.Request, exc: web.HTTPException) -> str:
    """What the framework's own errors say, made useful."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return (f"method {request.method} is not allowed on {request.path}; "
                f"allowed: {', '.join(sorted(exc.allowed_methods))}")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return f"the request body is too large: at most {MAX_REQUEST_BYTES} bytes"
    if isinstance(exc, web.HTTPNotFound) and exc.reason == "Not Found":
        return f"no such endpoint: {request.path} (the API is described at /openapi.json)"
    return exc.reason


LINKS = ("/openapi.json", "/metrics", "/healthz", "/readyz", "/api/v1/units", "/api/v1/kpis",
         "/api/v1/observations", "/api/v1/evaluations", "/api/v1/rules", "/api/v1/sources", "/api/v1/scores",
         "/api/v1/alerts", "/api/v1/silences", "/reports/gap")


async def index(request: web.Request) -> web.Response:
    served = {r.resource.canonical for r in request.app.router.routes() if r.resource is not None}
    return web.json_response({"service": "egov-kpi-monitor", "version": __version__,
                              "links": [link for link in LINKS if link in served]})


async def openapi_document(request: web.Request) -> web.Response:
    document = build_openapi(request.app[SERVICE_KEY], request.app)
    return web.json_response(document, dumps=_dumps)


METRICS_WRITE_BYTES = 1 << 20


async def metrics(request: web.Request) -> web.StreamResponse:
    """The exposition as published: the parts are written in slices, never joined or copied
    whole, so a scrape of a million series costs about what sending them costs. Sent
    uncompressed even when the scraper accepts gzip: compressing 100+ MB on every scrape
    would cost several times the send (see docs/performance.md)."""
    parts = request.app[SERVICE_KEY].exposition.chunks()
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
    response.content_length = sum(len(part) for part in parts)
    await response.prepare(request)
    for part in parts:
        view = memoryview(part)
        for start in range(0, len(view), METRICS_WRITE_BYTES):
            await response.write(view[start:start + METRICS_WRITE_BYTES])
    await response.write_eof()
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    problems = []
    if not service.ready:
        problems.append("no KPI snapshot computed yet")
    if not await asyncio.to_thread(service.database_ok):
        problems.append("database not reachable")
    # The role (high availability): a follower is ready too; it serves reads and /metrics.
    role = "leader" if service.leading else "follower"
    if problems:
        return web.json_response({"status": "not ready", "role": role, "problems": problems}, status=503)
    return web.json_response({"status": "ready", "role": role})


class HttpServer:
    def __init__(self, service: MonitorService, host: str, port: int) -> None:
        """Raises ``ConfigError`` for a non-loopback ``host`` without ``http.token_hashes``."""
        check_listener(host, port, service.config.http.token_hashes,
                       config_file=str(service.config_path or ""))
        self.runner = web.AppRunner(build_app(service, loopback=is_loopback(host)), access_log=None)
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
