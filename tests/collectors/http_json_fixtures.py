"""A JSON API on 127.0.0.1 for the ``http_json`` tests: paged listings in every style the
adapter reads, and an OAuth2 token endpoint (client credentials) that counts its calls.

Handlers are plain functions of the request, so each test builds the API it needs
and keeps the raw records it served, to recompute the expected numbers itself.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Record = dict[str, Any]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)


def answer(document: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(document, status=status, headers=headers,
                             dumps=lambda d: json.dumps(d, ensure_ascii=False))


class ApiServer:
    """Routes by method and path; every request is recorded in ``requests``."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.routes: dict[tuple[str, str], Handler] = {}
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        self.url = ""

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        await self._runner.cleanup()

    def get(self, path: str, handler: Handler) -> None:
        self.routes[("GET", path)] = handler

    def post(self, path: str, handler: Handler) -> None:
        self.routes[("POST", path)] = handler

    def seen(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.requests if s.method == method and s.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()} if request.method == "POST" else {}
        self.requests.append(Seen(request.method, request.path, dict(request.query),
                                  dict(request.headers), form))
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return answer({"error": f"no route {request.method} {request.path}"}, status=404)
        return await handler(request)


# ----------------------------------------------------------------------------- listings

def page_listing(records: Sequence[Any], key: str = "data") -> Handler:
    """``?page=N&page_size=K`` (1-based); past the end an empty list."""
    async def handle(request: web.Request) -> web.Response:
        page, size = int(request.query["page"]), int(request.query["page_size"])
        return answer({key: list(records[(page - 1) * size:page * size])})
    return handle


def offset_listing(records: Sequence[Any]) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        return answer({"items": list(records[offset:offset + limit]), "total": len(records)})
    return handle


def cursor_listing(records: Sequence[Any], size: int, *, param: str = "cursor") -> Handler:
    """Opaque cursors (``c-<offset>``); the last page carries ``next: null``."""
    async def handle(request: web.Request) -> web.Response:
        start = int(request.query.get(param, "c-0").removeprefix("c-"))
        end = start + size
        following = f"c-{end}" if end < len(records) else None
        return answer({"result": {"rows": list(records[start:end])}, "paging": {"next": following}})
    return handle


def link_listing(records: Sequence[Any], size: int, *, in_header: bool) -> Handler:
    """Next pages as a relative link, in the body (``links.next``) or a ``Link`` header."""
    async def handle(request: web.Request) -> web.Response:
        start = int(request.query.get("from", "0"))
        end = start + size
        rows = list(records[start:end])
        following = f"{request.path}?from={end}&month={request.query.get('month', '')}" if end < len(records) else None
        if in_header:
            headers = {"Link": f'<{request.path}?from=0>; rel="first", <{following}>; rel="next"'} if following else {}
            return answer(rows, headers=headers)
        return answer({"rows": rows, "links": {"self": str(request.rel_url), "next": following}})
    return handle


# ----------------------------------------------------------------------------- OAuth2

@dataclass
class TokenEndpoint:
    """Client credentials per RFC 6749 §4.4, client authenticated with HTTP Basic (§2.3.1)."""

    client_id: str
    client_secret: str
    expires_in: int | None = 3600
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    scopes: list[str | None] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return answer({"error": "unsupported_grant_type"}, status=400)
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        pair = base64.b64decode(encoded).decode() if scheme == "Basic" else ""
        client, _, secret = pair.partition(":")
        if (unquote_plus(client), unquote_plus(secret)) != (self.client_id, self.client_secret):
            return answer({"error": "invalid_client", "error_description": "client authentication failed"},
                          status=401)
        token = f"tok-{next(self._numbers)}"
        self.issued.append(token)
        self.scopes.append(str(form["scope"]) if "scope" in form else None)
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return answer(body)

    def valid(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and token in self.issued and token not in self.revoked

    def protect(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self.valid(request):
                return answer({"error": "invalid_token"}, status=401,
                              headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return await handler(request)
        return guarded
