"""The HTTP listener lets no one in who should not be: a non-loopback listener
asks a token on every endpoint but the probes (every route the application
serves is tried, not a hand-written list), refuses to start without tokens,
caps request bodies, and never shows a stack trace to a client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from monitor.errors import ConfigError
from monitor.http import MAX_REQUEST_BYTES, HttpServer
from monitor.security import OPEN_PATHS, is_loopback
from monitor.simulators.province import ProvinceModel
from tests.support.components import free_port
from tests.support.process import REPO
from tests.support.province import simulated_service

TOKEN = "tok-" + "9f2c4e" * 8
WRONG = "tok-" + "0" * 48
TOKEN_HASH = "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()
WRONG_HEADERS: tuple[dict[str, str], ...] = (
    {}, {"Authorization": f"Bearer {WRONG}"}, {"Authorization": TOKEN},  # no scheme
    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {TOKEN_HASH}"})  # the stored hash is not a token
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - these tests are about a listener reachable from outside
PUBLIC = {"http": {"listen": f"{ANY_ADDRESS}:0", "token_hashes": [TOKEN_HASH]}}


def every_route(server: HttpServer) -> list[tuple[str, str]]:
    """(method, path) of every route the application serves, ids filled in with 0."""
    found = set()
    for route in server.runner.app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        found.add((route.method, re.sub(r"\{[^}]+\}", "0", route.resource.canonical)))
    return sorted(found)


async def call(session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
               data: bytes | None = None) -> tuple[int, str, str]:
    async with session.request(method, url, headers=headers, data=data) as response:
        return response.status, response.content_type, await response.text()


async def test_a_public_listener_asks_a_token_everywhere_but_the_probes(tmp_path: Path,
                                                                        province: ProvinceModel) -> None:
    async with simulated_service(tmp_path, province, extra=PUBLIC) as (service, _, _):
        await service.refresh_kpis()
        server = HttpServer(service, ANY_ADDRESS, 0)
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        routes = every_route(server)
        assert len(routes) >= 20 and ("GET", "/metrics") in routes and ("POST", "/api/v1/reload") in routes
        tried = 0
        try:
            async with aiohttp.ClientSession() as session:
                for method, path in routes:
                    for headers in WRONG_HEADERS:
                        status, content_type, body = await call(session, method, base + path, headers)
                        tried += 1
                        if path in OPEN_PATHS:
                            assert status in (200, 503), (method, path, status, body)
                        else:
                            assert (status, content_type) == (401, "application/json"), (method, path, status)
                            assert json.loads(body) == {"error": "a valid token is needed: "
                                                                  "Authorization: Bearer <token>"}
                    # With the token the request reaches its handler (reads answer 200, or 404 for id 0).
                    status, _, body = await call(session, method, base + path,
                                                 {"Authorization": f"Bearer {TOKEN}"})
                    tried += 1
                    assert status not in (401, 403), (method, path, status, body)
                    if method == "GET":
                        assert status == 200 or (status == 404 and "/0" in path), (path, status, body)
                # Prometheus' `authorization: {credentials_file: …}` sends exactly this header.
                status, content_type, text = await call(session, "GET", base + "/metrics",
                                                        {"Authorization": f"Bearer {TOKEN}"})
                assert status == 200 and content_type.startswith("text/plain") and "egov_kpi_value" in text
        finally:
            await server.stop()
        print(f"public listener: {len(routes)} routes, {tried} requests")


async def test_a_loopback_listener_keeps_reading_open_and_changes_closed(tmp_path: Path,
                                                                         province: ProvinceModel) -> None:
    async with simulated_service(tmp_path, province, extra={"http": {"listen": "127.0.0.1:0",
                                                                     "token_hashes": [TOKEN_HASH]}}) as (svc, _, _):
        await svc.refresh_kpis()
        server = HttpServer(svc, "127.0.0.1", 0)
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with aiohttp.ClientSession() as session:
                for method, path in every_route(server):
                    status, _, body = await call(session, method, base + path, {})
                    if method == "GET":
                        assert status in (200, 404), (path, status, body)
                    else:  # every state-changing call needs the token, even on loopback
                        assert status == 401, (method, path, status, body)
        finally:
            await server.stop()


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    (ANY_ADDRESS, False), ("::", False), ("10.0.0.5", False), ("192.168.1.20", False),
    ("giamsat.sonha.gov.vn", False), ("127.0.0.1.nip.io", False), ("", False)])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_a_public_listener_without_tokens_does_not_start(tmp_path: Path, province: ProvinceModel) -> None:
    async with simulated_service(tmp_path, province) as (service, _, _):
        # The listener checks for itself too (a service assembled in code, not from a file).
        with pytest.raises(ConfigError) as refused:
            HttpServer(service, ANY_ADDRESS, 0)
        message = str(refused.value)
        assert "http.listen" in message and "http.token_hashes" in message and "egovmon token new" in message
        HttpServer(service, "127.0.0.1", 0)  # loopback without tokens is fine: reading is local
    # The configuration itself is refused: by `config check`, and by `run` before anything starts.
    path = tmp_path / "monitor.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["http"] = {"listen": f"{ANY_ADDRESS}:{free_port()}"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    for command in ("config", "check"), ("run",):
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "monitor", "-c", str(path), *command],
                                       cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert "is not a loopback address" in done.stderr and "http.token_hashes" in done.stderr
        assert "monitor.yaml" in done.stderr and "serving http://" not in done.stdout


async def test_request_bodies_are_capped(tmp_path: Path, province: ProvinceModel) -> None:
    async with simulated_service(tmp_path, province, extra=PUBLIC) as (service, _, _):
        server = HttpServer(service, "127.0.0.1", 0)
        await server.start()
        url = f"http://127.0.0.1:{server.port}/api/v1/silences"
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        try:
            async with aiohttp.ClientSession() as session:
                over = b'{"reason": "' + b"x" * MAX_REQUEST_BYTES + b'"}'
                status, content_type, body = await call(session, "POST", url, headers, over)
                assert (status, content_type) == (413, "application/json")
                assert json.loads(body) == {"error": f"the request body is too large: at most {MAX_REQUEST_BYTES} "
                                                     "bytes"}
                # Just under the limit is read and judged on its content.
                under = b'{"reason": "' + b"x" * (MAX_REQUEST_BYTES - 100) + b'"}'
                status, _, body = await call(session, "POST", url, headers, under)
                assert status == 400 and "413" not in body
                # Without a token the body is never read: 401, whatever its size.
                status, _, _ = await call(session, "POST", url, {"Content-Type": "application/json"}, over)
                assert status == 401
        finally:
            await server.stop()


async def test_an_internal_error_answers_500_json_and_is_logged(tmp_path: Path, province: ProvinceModel,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    detail = "psycopg.OperationalError: password=Hu7-secret for reader@10.1.2.3"

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError(detail)

    async with simulated_service(tmp_path, province) as (service, _, _):
        monkeypatch.setattr(service.exposition, "chunks", broken)
        server = HttpServer(service, "127.0.0.1", 0)
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                with caplog.at_level(logging.ERROR, logger="monitor.http"):
                    status, content_type, body = await call(session, "GET", f"http://127.0.0.1:{server.port}"
                                                            "/metrics", {})
        finally:
            await server.stop()
    assert (status, content_type) == (500, "application/json")
    assert json.loads(body) == {"error": "internal error; see the service log"}
    assert "Traceback" not in body and "Hu7-secret" not in body and "RuntimeError" not in body
    (record,) = [r for r in caplog.records if r.name == "monitor.http"]
    assert record.getMessage() == "error while serving GET /metrics"
    assert record.exc_info is not None and str(record.exc_info[1]) == detail
