"""``/api/v1`` endpoints for alerts and silences.

Reading is open on the listener; anything that changes state needs
``Authorization: Bearer <token>`` whose SHA-256 is in ``http.token_hashes``
(compared in constant time; the tokens themselves are never stored).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from monitor.cli_alerts import alert_json, unknown_matchers
from monitor.timeutil import parse_duration

STATES = ("pending", "firing", "resolved", "inactive")


def add_routes(app: web.Application, service_key: web.AppKey[Any]) -> None:
    def service(request: web.Request) -> Any:
        return request.app[service_key]

    async def list_alerts(request: web.Request) -> web.Response:
        wanted = request.query.getall("state", ["pending", "firing"])
        bad = [s for s in wanted if s not in STATES]
        if bad:
            raise _bad_request(f"state: one of {', '.join(STATES)}, got: {', '.join(bad)}")
        records = await asyncio.to_thread(service(request).alerting.alerts.load, states=wanted)
        return web.json_response({"items": [alert_json(r) for r in records], "count": len(records)})

    async def list_silences(request: web.Request) -> web.Response:
        svc = service(request)
        include_ended = request.query.get("all") in ("1", "true", "yes")
        found = await asyncio.to_thread(svc.alerting.silences.list, svc.clock.now(), include_ended=include_ended)
        return web.json_response({"items": [_silence_json(s) for s in found], "count": len(found)})

    async def create_silence(request: web.Request) -> web.Response:
        svc = service(request)
        _authorise(request, svc.config.http.token_hashes)
        body = await _json_body(request)
        now = svc.clock.now()
        ends_at = _ends_at(body, now)
        matchers = {k: _opt_str(body, k) for k in ("rule", "unit", "kpi", "source")}
        reason, by = _req_str(body, "reason"), _req_str(body, "created_by")
        unknown = unknown_matchers(svc, **matchers)
        if unknown:
            raise _bad_request("; ".join(unknown))
        try:
            made = await asyncio.to_thread(
                svc.alerting.silences.add, **matchers, subtree=bool(body.get("subtree", False)), starts_at=now,
                ends_at=ends_at, reason=reason, created_by=by, now=now)
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        return web.json_response(_silence_json(made), status=201)

    async def delete_silence(request: web.Request) -> web.Response:
        svc = service(request)
        _authorise(request, svc.config.http.token_hashes)
        try:
            silence_id = int(request.match_info["id"])
        except ValueError:
            raise _bad_request("the silence id is a number") from None
        ended = await asyncio.to_thread(svc.alerting.silences.expire, silence_id, svc.clock.now())
        if ended is None:
            raise web.HTTPNotFound(reason=f"no silence {silence_id}")
        return web.json_response(_silence_json(ended))

    async def acknowledge(request: web.Request) -> web.Response:
        svc = service(request)
        _authorise(request, svc.config.http.token_hashes)
        body = await _json_body(request)
        now = svc.clock.now()
        until = _ends_at(body, now) if ("ends_at" in body or "duration" in body) else None
        try:
            record = await asyncio.to_thread(
                svc.alerting.acknowledge, _req_str(body, "rule"), _req_str(body, "unit"),
                by=_req_str(body, "created_by"), reason=_req_str(body, "reason"), until=until, now=now)
        except LookupError as exc:
            raise web.HTTPNotFound(reason=str(exc.args[0])) from None
        return web.json_response(alert_json(record))

    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_post("/api/v1/alerts/ack", acknowledge)
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", create_silence)
    app.router.add_delete("/api/v1/silences/{id}", delete_silence)


def token_matches(token: str, hashes: tuple[str, ...]) -> bool:
    digest = "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    return any(hmac.compare_digest(digest, known) for known in hashes)


def _authorise(request: web.Request, hashes: tuple[str, ...]) -> None:
    if not hashes:
        raise web.HTTPForbidden(reason="changes through the API are off: no http.token_hashes in the configuration "
                                       "(make a token with `egovmon token new`)")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token or not token_matches(token.strip(), hashes):
        raise web.HTTPUnauthorized(reason="a valid token is needed: Authorization: Bearer <token>",
                                   headers={"WWW-Authenticate": "Bearer"})


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason=message)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _bad_request("the body must be JSON") from None
    if not isinstance(body, dict):
        raise _bad_request("the body must be a JSON object")
    return body


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad_request(f"{key}: a string")
    return value or None


def _req_str(body: dict[str, Any], key: str) -> str:
    value = _opt_str(body, key)
    if not value:
        raise _bad_request(f"{key}: required")
    return value


def _ends_at(body: dict[str, Any], now: datetime) -> datetime:
    if "duration" in body:
        try:
            return now + parse_duration(str(body["duration"]))
        except ValueError as exc:
            raise _bad_request(f"duration: {exc}") from None
    text = _req_str(body, "ends_at")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _bad_request(f"ends_at: not an ISO 8601 date-time: {text!r}") from None
    if moment.tzinfo is None:
        raise _bad_request("ends_at: give the time zone, e.g. 2026-12-31T17:00:00+07:00")
    return moment.astimezone(UTC)


def _silence_json(silence: Any) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in silence.as_dict().items()}
