"""``GET /reports/gap``: the gap report over HTTP, with the options of
``egovmon report gap`` as query parameters (as_of, unit, lang, format)."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from aiohttp import web

from monitor.reports.build import ReportError, build_gap_report, end_of_day
from monitor.reports.formats import file_name, format_named


def add_routes(app: web.Application, service_key: web.AppKey[Any]) -> None:
    async def gap_report(request: web.Request) -> web.Response:
        service = request.app[service_key]
        query = request.query
        try:
            fmt = format_named(query.get("format", "html"))
        except ValueError as exc:
            raise web.HTTPBadRequest(reason=f"format: {exc}") from None
        language = query.get("lang", service.config.language)
        if language not in ("vi", "en"):
            raise web.HTTPBadRequest(reason=f"lang: vi or en, got {language!r}")
        as_of = None
        if "as_of" in query:
            try:
                as_of = end_of_day(date.fromisoformat(query["as_of"]), service.config.tz)
            except ValueError:
                raise web.HTTPBadRequest(reason=f"as_of: a date YYYY-MM-DD, got {query['as_of']!r}") from None
        unit = query.get("unit") or None
        async with service.reporting_lock:  # a report evaluates and stores every rule
            try:
                report = await asyncio.to_thread(build_gap_report, service, as_of=as_of, scope=unit,
                                                 language=language)
            except ReportError as exc:
                raise web.HTTPNotFound(reason=str(exc)) from None
        body = await asyncio.to_thread(fmt.render, report)
        disposition = "inline" if fmt.name in ("html", "json", "md") else "attachment"
        return web.Response(body=body, headers={
            "Content-Type": fmt.content_type,
            "Content-Disposition": f'{disposition}; filename="{file_name(report, fmt)}"'})

    app.router.add_get("/reports/gap", gap_report)
