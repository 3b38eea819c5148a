"""``POST /api/v1/reload``: re-read the configuration, units, catalog and rules.

Needs a token like every state-changing call. A refused reload answers 422
with every problem (file, line, field, message) and the service keeps running
on what it had; the same happens on SIGHUP.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from monitor.api_alerts import authorise


def add_routes(app: web.Application, service_key: web.AppKey[Any]) -> None:
    async def reload(request: web.Request) -> web.Response:
        svc = request.app[service_key]
        authorise(request, svc.config.http.token_hashes)
        outcome = await svc.reload()
        if not outcome.applied:
            problems = [{"file": p.file, "line": p.line, "field": p.field, "message": p.message}
                        for p in outcome.error.problems]
            return web.json_response({"error": "the new configuration was refused; the service keeps running "
                                               "on the one loaded before", "problems": problems}, status=422)
        return web.json_response({"applied": True, "sources": outcome.sources, "rules": outcome.rules,
                                  "restart_needed": list(outcome.restart_needed)})

    app.router.add_post("/api/v1/reload", reload)
