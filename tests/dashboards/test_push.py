"""``egovmon dashboards push`` against a fake Grafana at the HTTP seam: a small
threaded HTTP server on 127.0.0.1 implementing the Grafana API endpoints the push calls,
with Grafana's answers (404 for a missing folder, 412 without overwrite, 401 for a bad token)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from monitor.catalog import load_catalog
from monitor.cli import app
from monitor.dashboards import build_dashboards
from monitor.dashboards.builder import FOLDERS
from monitor.dashboards.push import epoch_ms
from monitor.targets.loader import configured_rule_paths, load_rules
from monitor.units import load_units
from tests.support.province import SOURCE_IDS, write_config

TOKEN = "glsa_secret-token-1234567890"


class FakeGrafana:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.requests: list[tuple[str, str, Any]] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.annotations: list[dict[str, Any]] = []
        self.bad_auth: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((method, self.path, body))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    fake.bad_auth.append(self.headers.get("Authorization"))
                    return self._send(401, {"message": "Unauthorized"})
                status, reply = fake.route(method, self.path, body)
                self._send(status, reply)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query)
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.removeprefix("/api/folders/")
            return (200, self.folders[uid]) if uid in self.folders else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            if body["uid"] in self.folders:
                return 409, {"message": "exists"}
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": len(self.folders) + 1}
            return 200, self.folders[body["uid"]]
        if method == "POST" and path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            if uid in self.dashboards and not body.get("overwrite"):
                return 412, {"message": "exists"}
            self.dashboards[uid] = body
            return 200, {"uid": uid, "status": "success", "version": 1}
        if method == "GET" and path == "/api/annotations":
            tags = set(query.get("tags", []))
            found = [a for a in self.annotations if tags <= set(a["tags"])]
            return 200, found
        if method == "POST" and path == "/api/annotations":
            note = {**body, "id": len(self.annotations) + 1}
            self.annotations.append(note)
            return 200, {"id": note["id"], "message": "Annotation added"}
        return 404, {"message": f"not implemented: {method} {path}"}

    def posts(self, path: str) -> list[Any]:
        return [body for method, p, body in self.requests if method == "POST" and urlsplit(p).path == path]


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(5)


@pytest.fixture
def config(tmp_path: Path, province: Any) -> Path:
    return write_config(tmp_path, province, {kind: "http://127.0.0.1:9/" for kind in SOURCE_IDS})


def _push(config: Path, url: str, *extra: str, token: str = TOKEN, token_file: bool = True) -> Any:
    args = ["-c", str(config), "dashboards", "push", "--url", url, *extra]
    env = {}
    if token_file:
        path = config.parent / "grafana.token"
        path.write_text(token + "\n", encoding="utf-8")
        args += ["--token-file", str(path)]
    else:
        env["GRAFANA_TOKEN"] = token
    return CliRunner().invoke(app, args, env=env)


def _rules(config: Path) -> list[Any]:
    from monitor.config import load_config

    loaded = load_config(config)
    catalog = load_catalog(loaded.catalog.file)
    paths = configured_rule_paths(loaded.rules.shipped, loaded.rules.files)
    return list(load_rules(paths, catalog, load_units(loaded.units.file)))


def test_push_upserts_dashboards_folders_and_annotations(grafana: FakeGrafana, config: Path) -> None:
    result = _push(config, grafana.url)
    assert result.exit_code == 0, result.output
    assert not grafana.bad_auth

    folder_posts = grafana.posts("/api/folders")
    assert sorted(p["uid"] for p in folder_posts) == sorted(f"egovmon-{f}" for f in FOLDERS)
    assert {p["uid"]: p["title"] for p in folder_posts} == {
        "egovmon-lanh-dao": "Lãnh đạo", "egovmon-don-vi": "Đơn vị", "egovmon-van-hanh": "Vận hành"}

    generated = build_dashboards(load_catalog(), "vi")
    posts = grafana.posts("/api/dashboards/db")
    assert sorted(p["dashboard"]["uid"] for p in posts) == sorted(generated)
    folder_of = {uid: f"egovmon-{folder}" for folder, uids in FOLDERS.items() for uid in uids}
    for post in posts:
        uid = post["dashboard"]["uid"]
        assert post["folderUid"] == folder_of[uid]
        assert post["overwrite"] is True
        assert post["dashboard"]["id"] is None
        assert post["dashboard"]["title"] == generated[uid]["title"]

    rules = _rules(config)
    assert rules
    notes = grafana.posts("/api/annotations")
    by_key = {(n["tags"][2], n["tags"][1]): n for n in notes}
    expected = len(rules) + sum(1 for r in rules if r.valid_from is not None)
    assert len(notes) == expected == len(by_key)
    for rule in rules:
        note = by_key[(rule.id, "deadline")]
        assert note["tags"] == ["egovmon", "deadline", rule.id]
        assert note["time"] == epoch_ms(rule.deadline)
        assert note["text"].startswith("Hạn: ") and rule.citation.instrument in note["text"]
        if rule.valid_from is not None:
            change = by_key[(rule.id, "target-change")]
            assert change["time"] == epoch_ms(rule.valid_from)
            assert change["tags"] == ["egovmon", "target-change", rule.id]
    # midnight in Hanoi is 17:00 UTC the previous day
    assert epoch_ms(rules[0].deadline) % 86_400_000 == 17 * 3_600_000

    # second push: dashboards upserted again, nothing else duplicated
    second = _push(config, grafana.url, token_file=False)
    assert second.exit_code == 0, second.output
    assert len(grafana.posts("/api/folders")) == len(FOLDERS)
    assert len(grafana.posts("/api/annotations")) == expected
    assert len(grafana.posts("/api/dashboards/db")) == 2 * len(generated)
    assert "0 added" in second.output
    assert TOKEN not in result.output + second.output


def test_no_annotations_flag(grafana: FakeGrafana, config: Path) -> None:
    result = _push(config, grafana.url, "--no-annotations", "--lang", "en")
    assert result.exit_code == 0, result.output
    assert not grafana.posts("/api/annotations")
    assert {p["title"] for p in grafana.posts("/api/folders")} == {"Leadership", "Units", "Operations"}


def test_wrong_token_exits_1_without_leaking_it(grafana: FakeGrafana, config: Path) -> None:
    wrong = "glsa_wrong-token-0987654321"
    result = _push(config, grafana.url, token=wrong)
    assert result.exit_code == 1
    assert grafana.url in result.output and "401" in result.output
    assert wrong not in result.output
    assert not grafana.posts("/api/dashboards/db")


def test_connection_refused_exits_1(config: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = _push(config, url)
    assert result.exit_code == 1
    assert url in result.output
    assert TOKEN not in result.output


def test_grafana_error_is_reported_with_its_message(grafana: FakeGrafana, config: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real_route = grafana.route

    def failing(method: str, target: str, body: Any) -> tuple[int, Any]:
        if target.startswith("/api/dashboards/db"):
            return 500, {"message": "database is locked"}
        return real_route(method, target, body)

    monkeypatch.setattr(grafana, "route", failing)
    result = _push(config, grafana.url)
    assert result.exit_code == 1
    assert "HTTP 500" in result.output and "database is locked" in result.output
    assert "/api/dashboards/db" in result.output


def test_url_without_scheme_exits_2(config: Path) -> None:
    result = _push(config, "grafana:3000")
    assert result.exit_code == 2
    assert "--url must start with http://" in result.output
