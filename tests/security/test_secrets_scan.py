"""Secrets never leave the configuration: a province is configured with known
secrets in every place a secret can go (``${ENV}`` and ``*_file``), the real
service runs against the simulators and a real SMTP server — with the failures
that put messages in logs and errors: wrong credentials, sources down, an SMTP
server refusing the login, Alertmanager refusing the token, broken configs —
and then everything it produced is scanned: the log at DEBUG, a real process'
stdout and stderr, /metrics, every /api/v1 answer, the gap report in every
format, CLI outputs, the mail, the database file. None of the secrets, nor the
base64 of the basic-auth pairs, nor their URL-quoted forms, may appear.

The test also proves each secret was in play (sent to its server, or the
failure it caused was recorded), so a scan that finds nothing means something.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import sys
import zipfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml
from aiohttp import web
from typer.testing import CliRunner

from monitor.cli import app as cli_app
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.http import HttpServer
from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import Fault, SimulatorServer
from monitor.timeutil import FrozenClock
from tests.support.components import free_port
from tests.support.process import REPO
from tests.support.province import NOW, write_config
from tests.support.smtp import SmtpServer, TlsFiles

# Each secret is unique and long enough that finding it anywhere is no accident.
SECRETS = {
    "qlvb_token": "QlvbTok-7Hk2pQ9zX1vR4mN8",
    "email_password": "ThuCongVu-Pw-3sD9fK2LqZ",
    "one_stop_key": "MotCuaKey-8Jx4Wc6Nt0Yb",
    "sql_password": "SqlReader-Pw-5Gv7Hn1Mk",
    "sql_url_password": "SqlInUrl-Pw-2Qe8Rt4Yu",
    "oauth_secret": "OauthCli-Sec-9Pl3Ko5Ji",
    "ldap_password": "LdapBind-Pw-6Uy1Tr7Ew",
    "alertmanager_token": "AmTok-4Zx6Cv8Bn2Mq0",
    "smtp_password": "mật-khẩu-Smtp-1Wq3Er5",
}
USERS = {"email_password": "giamsat", "sql_password": "reader", "ldap_password": "cn=giamsat,dc=sonha,dc=gov,dc=vn",
         "smtp_password": "egovmon"}
ENV = {"EGOV_QLVB_TOKEN": SECRETS["qlvb_token"], "EGOV_SQL_PASSWORD": SECRETS["sql_password"],
       "EGOV_SQL_URL_PASSWORD": SECRETS["sql_url_password"], "EGOV_AM_TOKEN": SECRETS["alertmanager_token"],
       "EGOV_OAUTH_SECRET": SECRETS["oauth_secret"]}
FILES = {"email_password": "thu-cong-vu.pw", "one_stop_key": "mot-cua.key", "ldap_password": "ldap.pw",
         "smtp_password": "smtp.pw"}
OPERATOR = "cntt@sonha.gov.vn"
# A short history keeps the run fast; what is scanned is the same kind of output.
RECENT = {"backfill_from": "2026-09-01"}
DEPARTMENT = "000.01.01.H99"  # reports are scoped to one unit: the whole province takes seconds each
FORMATS = ("xlsx", "html", "csv", "json", "md")


def forbidden() -> dict[str, bytes]:
    """Every form a leak could take, as UTF-8 bytes, named for the message."""
    forms: dict[str, bytes] = {}
    for name, secret in SECRETS.items():
        forms[name] = secret.encode()
        forms[f"{name} (url-quoted)"] = quote(secret, safe="").encode()
        forms[f"{name} (base64)"] = base64.b64encode(secret.encode()).rstrip(b"=")
        if name in USERS:
            pair = f"{USERS[name]}:{secret}".encode()
            forms[f"{name} (basic auth)"] = base64.b64encode(pair).rstrip(b"=")
            forms[f"{name} (url userinfo)"] = f"{quote(USERS[name], safe='')}:{quote(secret, safe='')}".encode()
    return forms


@dataclass
class Scanner:
    """Collects every text and file the run produced, then says what leaked where."""

    forms: dict[str, bytes] = field(default_factory=forbidden)
    scanned: dict[str, int] = field(default_factory=dict)  # what → bytes scanned
    leaks: list[str] = field(default_factory=list)

    def add(self, what: str, content: str | bytes) -> None:
        data = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
        if data[:2] == b"PK":  # XLSX and other zip containers: their parts are compressed
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.namelist():
                    self.add(f"{what}!{member}", archive.read(member))
            return
        self.scanned[what] = len(data)
        for form_name, form in self.forms.items():
            if form in data:
                at = data.index(form)
                self.leaks.append(f"{form_name} in {what}: …{data[max(0, at - 80):at + 80]!r}…")

    def add_file(self, path: Path) -> None:
        self.add(str(path.name), path.read_bytes())


class Refusing:
    """An OAuth2 token endpoint and an Alertmanager that refuse every credential,
    recording what they were sent (to prove the secrets were really used)."""

    def __init__(self) -> None:
        self.token_forms: list[dict[str, str]] = []
        self.token_auth: list[str] = []
        self.alertmanager_auth: list[str] = []
        self.app = web.Application()
        self.app.router.add_post("/oauth/token", self.token)
        self.app.router.add_post("/api/v2/alerts", self.alerts)

    async def token(self, request: web.Request) -> web.Response:
        self.token_forms.append(dict(await request.post()))  # type: ignore[arg-type]
        self.token_auth.append(request.headers.get("Authorization", ""))
        return web.json_response({"error": "invalid_client"}, status=401)

    async def alerts(self, request: web.Request) -> web.Response:
        self.alertmanager_auth.append(request.headers.get("Authorization", ""))
        return web.json_response({"error": "unauthorized"}, status=401)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()


def configure(directory: Path, province: ProvinceModel, simulators: SimulatorServer, refusing: str,
              smtp: SmtpServer, tls: TlsFiles) -> Path:
    secrets = directory / "secrets"
    secrets.mkdir()
    for name, file_name in FILES.items():
        (secrets / file_name).write_text(SECRETS[name] + "\n", encoding="utf-8")
    closed = free_port()  # nothing listens here: those sources are down
    auth: dict[str, Any] = {
        "qlvb": {"auth": {"type": "bearer", "token": "${EGOV_QLVB_TOKEN}"}, **RECENT},
        "thu-cong-vu": {"auth": {"type": "basic", "username": USERS["email_password"],
                                 "password_file": "secrets/thu-cong-vu.pw"}, **RECENT},
        "mot-cua": {"auth": {"type": "header", "header": "X-API-Key", "token_file": "secrets/mot-cua.key"},
                    **RECENT},
    }
    path = write_config(directory, province, simulators.urls, **auth)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    query = {"name": "thong_ke", "unit_column": "ma_dv", "period": {"column": "ky", "format": "month"},
             "sql": "SELECT ma_dv, ky, tong FROM thong_ke", "values": {"docs_outgoing_total": "tong"}}
    data["sources"] += [
        {"id": "kho-sql", "kind": "sql", "url": f"postgresql+psycopg://127.0.0.1:{closed}/vanban", "retries": 0,
         "timeout": "2s", "auth": {"type": "basic", "username": USERS["sql_password"],
                                   "password": "${EGOV_SQL_PASSWORD}"}, "options": {"queries": [query]}},
        {"id": "kho-sql-url", "kind": "sql", "retries": 0, "timeout": "2s",
         "url": f"postgresql+psycopg://reader:${{EGOV_SQL_URL_PASSWORD}}@127.0.0.1:{closed}/vanban",
         "options": {"queries": [query]}},
        {"id": "api-json", "kind": "http_json", "url": refusing, "retries": 0, "timeout": "2s",
         "auth": {"type": "oauth2", "token_url": f"{refusing}/oauth/token", "client_id": "giamsat",
                  "client_secret": "${EGOV_OAUTH_SECRET}"},
         "options": {"unit": "unit", "measures": {"docs_outgoing_total": "out.total"}}},
        {"id": "danh-ba", "kind": "ldap_directory", "url": f"ldap://127.0.0.1:{closed}", "retries": 0,
         "timeout": "2s", "auth": {"type": "basic", "username": USERS["ldap_password"],
                                   "password_file": "secrets/ldap.pw"},
         "options": {"base_dn": "ou=people,dc=sonha,dc=gov,dc=vn"}},
    ]
    data["smtp"] = {"host": "127.0.0.1", "port": smtp.port, "security": "starttls", "ca_file": str(tls.ca_file),
                    "username": USERS["smtp_password"], "password_file": "secrets/smtp.pw", "timeout": "5s",
                    "sender": "Giám sát CQĐT <egovmon@sonha.gov.vn>"}
    data["alerts"] = {"sending_windows": [], "operators": [{"name": "Phòng CNTT", "email": OPERATOR}],
                      "source_for": "0s", "retry": {"initial": "1s"},
                      "alertmanager": {"url": refusing, "timeout": "2s",
                                       "auth": {"type": "bearer", "token": "${EGOV_AM_TOKEN}"}}}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


BROKEN_CONFIGS: dict[str, dict[str, Any]] = {
    # auth incomplete next to a secret
    "incomplete-auth": {"auth": {"type": "basic", "password": "${EGOV_SQL_PASSWORD}"}},
    # a misspelt secret key
    "misspelt-key": {"auth": {"type": "bearer", "tokn": "${EGOV_QLVB_TOKEN}"}},
    # a URL with a password that the source kind does not accept
    "wrong-scheme": {"kind": "ldap_directory", "options": {"base_dn": "dc=x"},
                     "url": "postgresql://reader:${EGOV_SQL_URL_PASSWORD}@db.sonha.gov.vn/vanban"},
    # a URL with a password that is not a URL at all (a space in it)
    "malformed-url": {"url": "postgresql://reader:${EGOV_SQL_URL_PASSWORD} @db.sonha.gov.vn/vanban"},
    # a secret where a number is expected
    "secret-as-number": {"timeout": "${EGOV_AM_TOKEN}"},
}


def broken_config(directory: Path, base: Path, name: str) -> Path:
    data = yaml.safe_load(base.read_text(encoding="utf-8"))
    source = {**data["sources"][0], **BROKEN_CONFIGS[name]}
    data["sources"] = [source]
    path = directory / f"broken-{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def run_process(*args: str) -> str:
    """A real ``egovmon`` process; its stdout and stderr together."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", *args, cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, **ENV})
    output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    return output.decode("utf-8", "replace")


def invoke(args: Iterable[str]) -> bytes:
    result = CliRunner().invoke(cli_app, list(args), env=ENV, catch_exceptions=False)
    return result.stdout_bytes + (f"\n[exit {result.exit_code}]".encode())


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with session.get(url) as response:
        return response.status, await response.read()


async def test_no_secret_appears_in_anything_the_service_produces(
        tmp_path: Path, province: ProvinceModel, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The test SMTP server's own protocol trace is not the product's output (and is large);
    # set first, as set_level also sets the capturing handler's level.
    caplog.set_level("WARNING", logger="mail.log")
    caplog.set_level("DEBUG")
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    scanner = Scanner()
    clock = FrozenClock(NOW)
    tls = TlsFiles.create(tmp_path)
    refusing = Refusing()
    async with (SimulatorServer(province, clock=clock) as simulators, refusing.serving() as refusing_url,
                SmtpServer(security="starttls", tls=tls, username=USERS["smtp_password"],
                           password="not-" + SECRETS["smtp_password"]) as smtp):
        path = configure(tmp_path, province, simulators, refusing_url, smtp, tls)
        service = MonitorService(load_config(path), clock=clock, config_path=path)
        service.prepare()
        try:
            # 1. A cycle with three sources down and the SMTP login refused.
            summaries = await service.cycle()
            failed = {s.source for s in summaries if not s.ok}
            assert failed == {"kho-sql", "kho-sql-url", "api-json", "danh-ba"}, summaries
            assert smtp.logins and not any(ok for _, ok in smtp.logins) and smtp.received == []
            # 2. Wrong credentials at a source, then the SMTP password is right again.
            simulators.set_fault("document_management", Fault("http_401", times=10))
            smtp.password = SECRETS["smtp_password"]
            clock.advance(timedelta(hours=1))
            summaries = await service.runner.collect_all()
            assert "qlvb" in {s.source for s in summaries if not s.ok}
            await service.alert_cycle()
            assert smtp.received, "no mail went out once the login was accepted"
            # The secrets were in play: each server saw its credential.
            assert refusing.token_forms and refusing.alertmanager_auth == [
                f"Bearer {SECRETS['alertmanager_token']}"] * len(refusing.alertmanager_auth)
            oauth_sent = [*refusing.token_auth, *(f.get("client_secret", "") for f in refusing.token_forms)]
            assert any(SECRETS["oauth_secret"] in s or base64.b64encode(
                f"giamsat:{SECRETS['oauth_secret']}".encode()).decode() in s for s in oauth_sent)
            assert any(ok for _, ok in smtp.logins)

            # 3. Everything the HTTP listener answers.
            server = HttpServer(service, "127.0.0.1", 0)
            await server.start()
            base = f"http://127.0.0.1:{server.port}"
            try:
                async with aiohttp.ClientSession() as session:
                    paths = sorted({re.sub(r"\{[^}]+\}", "qlvb", r.resource.canonical)
                                    for r in server.runner.app.router.routes()
                                    if r.method == "GET" and r.resource is not None} - {"/reports/gap"})
                    paths += [f"/api/v1/sources/{s.id}" + suffix for s in service.config.sources
                              for suffix in ("", "/rejections")]
                    paths += [f"/reports/gap?format={f}&unit={DEPARTMENT}" for f in FORMATS]
                    paths += ["/api/v1/alerts?state=pending&state=firing&state=resolved&state=inactive",
                              "/api/v1/silences?all=true"]
                    for url_path in paths:
                        status, body = await fetch(session, base + url_path)
                        assert status in (200, 404), (url_path, status, body[:200])
                        scanner.add(f"GET {url_path}", body)
            finally:
                await server.stop()
        finally:
            await service.aclose()

        # 4. The CLI: a real process, and the read commands in this process.
        # A real process at DEBUG on the source whose password is in its URL (the other
        # failures were logged at DEBUG by this process above).
        output = await run_process("-c", str(path), "--log-level", "debug", "collect", "--source", "kho-sql-url")
        assert "kho-sql-url" in output and "FAILED" in output, output
        scanner.add("egovmon collect (stdout+stderr)", output)
        # Every format went through /reports/gap above (the same builder and renderers);
        # the command is run for text to standard output and XLSX to a file.
        commands = [["report", "gap", "--unit", DEPARTMENT, "--format", "md", "-o", "-"],
                    ["report", "gap", "--unit", DEPARTMENT, "--format", "xlsx", "-o", str(tmp_path / "gap.xlsx")],
                    ["alerts", "outbox"], ["config", "check"], ["collect", "--dry-run", "--source", "api-json"]]
        for command in commands:
            scanner.add(f"egovmon {' '.join(command)}",
                        await asyncio.to_thread(invoke, ["-c", str(path), "--log-level", "debug", *command]))
        scanner.add_file(tmp_path / "gap.xlsx")

    # 5. The mail as received, the database file, the log.
    for number, received in enumerate(smtp.received):
        scanner.add(f"mail {number}", received.content)
    for database in await asyncio.to_thread(lambda: sorted(tmp_path.glob("egovmon.db*"))):
        scanner.add_file(database)
    scanner.add("log (DEBUG)", "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records))
    scanner.add("log text with tracebacks", caplog.text)

    print(f"\nsecrets scan: {len(SECRETS)} secrets, {len(scanner.forms)} forms, {len(scanner.scanned)} outputs, "
          f"{sum(scanner.scanned.values())} bytes, {len(smtp.received)} mails, {len(caplog.records)} log records")
    assert not scanner.leaks, "\n".join(scanner.leaks)
    # The scan looked where the failures were written down.
    assert len(caplog.records) > 50 and len(scanner.scanned) > 40


# A refused value is repeated in the message ("got: '…'") unless it came from the environment
# (then the variable is named instead) or is a URL's password (masked).
@pytest.mark.parametrize("name", ["incomplete-auth", "misspelt-key", "wrong-scheme", "malformed-url",
                                  "secret-as-number"])
async def test_config_errors_name_the_field_never_the_secret(tmp_path: Path, province: ProvinceModel,
                                                             monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    for variable, value in ENV.items():
        monkeypatch.setenv(variable, value)
    scanner = Scanner()
    urls = {kind: "http://127.0.0.1:1/" for kind in ("document_management", "email_directory", "one_stop")}
    base = write_config(tmp_path, province, urls)
    broken = broken_config(tmp_path, base, name)
    with pytest.raises(ConfigError) as refused:
        load_config(broken)
    message = str(refused.value)
    assert "sources[0]." in message, message  # it does say what is wrong, and where
    scanner.add(f"ConfigError {name}", message)
    scanner.add(f"egovmon config check ({name})", await asyncio.to_thread(
        invoke, ["-c", str(broken), "config", "check"]))
    assert not scanner.leaks, "\n".join(scanner.leaks)
