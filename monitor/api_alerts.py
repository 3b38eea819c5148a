"""``/api/v1`` endpoints for alerts and silences.

Reading is open on the listener; anything that changes state needs
``Authorization: Bearer <token>`` whose SHA-256 is in ``http.token_hashes``
(compared in constant time; the tokens themselves are never stored).
Lists are paginated like the rest of ``/api/v1`` (``limit``, ``offset``; see
``monitor.api_v1``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from monitor.api_v1 import ApiError, bad_request, page_params, paginate
from monitor.cli_alerts import alert_json, unknown_matchers
from monitor.timeutil import parse_duration

STATES = ("pending", "firing", "resolved", "inactive")
DURATION = re.compile(r"[0-9]+(\.[0-9]+)?[smhdw]?")
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")
# Column widths of the text the API stores as given (longer would fail on PostgreSQL).
MAX_LENGTHS = {"created_by": 200}


def add_routes(app: web.Application, service_key: web.AppKey[Any]) -> None:
    def service(request: web.Request) -> Any:
        return request.app[service_key]

    async def list_alerts(request: web.Request) -> web.Response:
        page = page_params(request)
        wanted = request.query.getall("state", ["pending", "firing"])
        bad = [s for s in wanted if s not in STATES]
        if bad:
            raise _bad_request(f"state: one of {', '.join(STATES)}, got: {', '.join(map(repr, bad))}")
        records = await asyncio.to_thread(service(request).alerting.alerts.load, states=wanted)
        return paginate(request, records, alert_json, page)

    async def list_silences(request: web.Request) -> web.Response:
        svc = service(request)
        page = page_params(request)
        flag = request.query.get("all", "false")
        if flag.lower() not in TRUE + FALSE:
            raise _bad_request(f"all: true or false, got {flag!r}")
        include_ended = flag.lower() in TRUE
        found = await asyncio.to_thread(svc.alerting.silences.list, svc.clock.now(), include_ended=include_ended)
        return paginate(request, found, _silence_json, page)

    async def create_silence(request: web.Request) -> web.Response:
        svc = service(request)
        authorise(request, svc.config.http.token_hashes)
        body = await _json_body(request)
        now = svc.clock.now()
        ends_at = _ends_at(body, now)
        matchers = {k: _opt_str(body, k) for k in ("rule", "unit", "kpi", "source")}
        reason, by = _req_str(body, "reason"), _req_str(body, "created_by")
        subtree = body.get("subtree", False)
        if not isinstance(subtree, bool):
            raise _bad_request(f"subtree: true or false, got {subtree!r}")
        unknown = unknown_matchers(svc, **matchers)
        if unknown:
            raise _bad_request("; ".join(unknown))
        try:
            made = await asyncio.to_thread(
                svc.alerting.silences.add, **matchers, subtree=subtree, starts_at=now,
                ends_at=ends_at, reason=reason, created_by=by, now=now)
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        return web.json_response(_silence_json(made), status=201)

    async def delete_silence(request: web.Request) -> web.Response:
        svc = service(request)
        authorise(request, svc.config.http.token_hashes)
        text = request.match_info["id"]
        if not text.isascii() or not text.isdigit():
            raise _bad_request(f"the silence id is a number, got {text!r}")
        if len(text) > 18:  # beyond any id the database hands out
            raise ApiError(404, f"no silence {text}")
        silence_id = int(text)
        ended = await asyncio.to_thread(svc.alerting.silences.expire, silence_id, svc.clock.now())
        if ended is None:
            raise ApiError(404, f"no silence {silence_id}")
        return web.json_response(_silence_json(ended))

    async def acknowledge(request: web.Request) -> web.Response:
        svc = service(request)
        authorise(request, svc.config.http.token_hashes)
        body = await _json_body(request)
        now = svc.clock.now()
        until = _ends_at(body, now) if ("ends_at" in body or "duration" in body) else None
        try:
            record = await asyncio.to_thread(
                svc.alerting.acknowledge, _req_str(body, "rule"), _req_str(body, "unit"),
                by=_req_str(body, "created_by"), reason=_req_str(body, "reason"), until=until, now=now)
        except LookupError as exc:
            raise ApiError(404, str(exc.args[0])) from None
        return web.json_response(alert_json(record))

    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_post("/api/v1/alerts/ack", acknowledge)
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", create_silence)
    app.router.add_delete("/api/v1/silences/{id}", delete_silence)


def token_matches(token: str, hashes: tuple[str, ...]) -> bool:
    digest = "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    return any(hmac.compare_digest(digest, known) for known in hashes)


def authorise(request: web.Request, hashes: tuple[str, ...]) -> None:
    if not hashes:
        raise ApiError(403, "changes through the API are off: no http.token_hashes in the configuration "
                            "(make a token with `egovmon token new`)")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token or not token_matches(token.strip(), hashes):
        raise ApiError(401, "a valid token is needed: Authorization: Bearer <token>",
                       headers={"WWW-Authenticate": "Bearer"})


def _bad_request(message: str) -> ApiError:
    return bad_request(message)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, LookupError):  # not JSON, not UTF-8, or an unknown charset
        raise _bad_request("the body must be JSON") from None
    if not isinstance(body, dict):
        raise _bad_request("the body must be a JSON object")
    return body


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad_request(f"{key}: a string")
    if value and "\x00" in value:
        raise _bad_request(f"{key}: must not contain NUL characters")
    if value and len(value) > MAX_LENGTHS.get(key, len(value)):
        raise _bad_request(f"{key}: at most {MAX_LENGTHS[key]} characters")
    return value or None


def _req_str(body: dict[str, Any], key: str) -> str:
    value = _opt_str(body, key)
    if not value:
        raise _bad_request(f"{key}: required")
    return value


def _ends_at(body: dict[str, Any], now: datetime) -> datetime:
    if "duration" in body and "ends_at" in body:
        raise _bad_request("give ends_at or duration, not both")
    if "duration" in body:
        try:
            return now + _duration(body["duration"])
        except OverflowError:
            raise _bad_request(f"duration: too long, got {body['duration']!r}") from None
    text = _req_str(body, "ends_at")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _bad_request(f"ends_at: not an ISO 8601 date-time: {text!r}") from None
    if moment.tzinfo is None:
        raise _bad_request("ends_at: give the time zone, e.g. 2026-12-31T17:00:00+07:00")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise _bad_request(f"ends_at: out of range: {text!r}") from None


def _duration(value: Any) -> timedelta:
    """``30s``, ``15m``, ``2h``, ``7d``, ``1w``, or a number of seconds (string or number)."""
    expected = "write e.g. 30s, 15m, 2h, 7d, or a number of seconds"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad_request(f"duration: {expected}")
    if isinstance(value, str) and not DURATION.fullmatch(value):
        raise _bad_request(f"duration: {expected}, got {value!r}")
    if not isinstance(value, str) and not (math.isfinite(value) and value >= 0):
        raise _bad_request(f"duration: {expected}, got {value!r}")
    try:
        return parse_duration(str(value))
    except OverflowError:
        raise _bad_request(f"duration: too long, got {value!r}") from None
    except ValueError:
        raise _bad_request(f"duration: {expected}, got {value!r}") from None


def _silence_json(silence: Any) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in silence.as_dict().items()}
