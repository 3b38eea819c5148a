"""What the operator touches: the alerts API with its token, the CLI, an SMTP
outage across cycles, and forwarding to a real Alertmanager."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from typer.testing import CliRunner

from monitor.cli import app
from monitor.http import HttpServer
from monitor.simulators.province import ProvinceModel
from monitor.timeutil import FrozenClock
from tests.alerts.test_alert_cycle import _sources_fresh, alert_settings
from tests.support.components import AlertmanagerServer, require_alertmanager
from tests.support.province import NOW, simulated_service
from tests.support.smtp import SmtpServer, TlsFiles

TOKEN = "s3cret-token-for-tests"
TOKEN_HASH = "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()


def with_token(settings: dict[str, Any], hashes: list[str]) -> dict[str, Any]:
    return {**settings, "http": {"listen": "127.0.0.1:0", "token_hashes": hashes}}


async def test_api_reads_openly_and_changes_only_with_a_token(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    async with SmtpServer() as smtp, simulated_service(
            tmp_path, province, database_url=database,
            extra=with_token(alert_settings(smtp), [TOKEN_HASH])) as (service, _, _):
        _sources_fresh(service, NOW)
        await service.refresh_kpis()
        http = HttpServer(service, "127.0.0.1", 0)
        await http.start()
        base = f"http://127.0.0.1:{http.port}/api/v1"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/alerts", params={"state": "firing", "limit": "1000"}) as response:
                    listed = await response.json()
                stored = service.alerting.alerts.load(states=("firing",))
                assert response.status == 200 and listed["count"] == listed["total"] == len(stored) > 0
                assert listed["limit"] == 1000 and listed["offset"] == 0 and listed["next"] is None
                assert {(a["rule"], a["unit"]) for a in listed["items"]} == {(r.rule, r.unit) for r in stored}
                async with session.get(f"{base}/alerts", params={"state": "burning"}) as response:
                    assert response.status == 400 and "state" in (await response.json())["error"]

                body = {"unit": stored[0].unit, "duration": "2h", "reason": "bảo trì", "created_by": "Phòng CNTT"}
                async with session.post(f"{base}/silences", json=body) as response:
                    assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
                async with session.post(f"{base}/silences", json={**body, "unit": "000.00.00.Z00"},
                                        headers=auth) as response:
                    assert response.status == 400 and "no unit" in (await response.json())["error"]
                async with session.post(f"{base}/silences", json=body,
                                        headers={"Authorization": "Bearer wrong"}) as response:
                    assert response.status == 401
                assert service.alerting.silences.list(NOW) == []
                async with session.post(f"{base}/silences", json=body, headers=auth) as response:
                    made = await response.json()
                    assert response.status == 201 and made["reason"] == "bảo trì"
                async with session.get(f"{base}/silences") as response:
                    assert [s["id"] for s in (await response.json())["items"]] == [made["id"]]
                async with session.post(f"{base}/silences", data=b"{not json", headers=auth) as response:
                    assert response.status == 400 and "JSON" in (await response.json())["error"]
                async with session.delete(f"{base}/silences/{made['id']}") as response:
                    assert response.status == 401
                async with session.delete(f"{base}/silences/{made['id']}", headers=auth) as response:
                    assert response.status == 200 and response.content_type == "application/json"
                assert service.alerting.silences.list(NOW + timedelta(seconds=1)) == []

                ack = {"rule": stored[0].rule, "unit": stored[0].unit, "reason": "đang xử lý", "created_by": "GĐ"}
                async with session.post(f"{base}/alerts/ack", json=ack, headers=auth) as response:
                    assert response.status == 200 and (await response.json())["acked_by"] == "GĐ"
                async with session.post(f"{base}/alerts/ack", json={**ack, "unit": "000.00.00.Z00"},
                                        headers=auth) as response:
                    assert response.status == 404
        finally:
            await http.stop()


async def test_without_configured_tokens_changes_are_refused(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    async with SmtpServer() as smtp, simulated_service(
            tmp_path, province, database_url=database, extra=with_token(alert_settings(smtp), [])) as (service, _, _):
        http = HttpServer(service, "127.0.0.1", 0)
        await http.start()
        try:
            async with aiohttp.ClientSession() as session, session.post(
                    f"http://127.0.0.1:{http.port}/api/v1/silences", json={"unit": "x"},
                    headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                assert response.status == 403 and "token new" in (await response.json())["error"]
        finally:
            await http.stop()


def test_cli_lists_silences_and_acknowledges(tmp_path: Path, province: ProvinceModel, database: str) -> None:
    async def prepare() -> tuple[str, str, int]:
        async with SmtpServer() as smtp, simulated_service(
                tmp_path, province, database_url=database, extra=alert_settings(smtp)) as (service, _, _):
            _sources_fresh(service, NOW)
            await service.refresh_kpis()
            firing = service.alerting.alerts.load(states=("firing",))
            return firing[0].rule, firing[0].unit, len(service.alerting.alerts.load(states=("pending", "firing")))

    rule, unit, active = asyncio.run(prepare())
    config = str(tmp_path / "monitor.yaml")

    def cli(*args: str) -> Any:
        return CliRunner().invoke(app, ["-c", config, *args])

    listed = cli("alerts", "list", "--json")
    assert listed.exit_code == 0, listed.output
    lines = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == active
    made = cli("alerts", "silence", "--unit", unit, "--for", "3h", "--reason", "kiểm tra", "--by", "Hằng")
    assert made.exit_code == 0, made.output
    match = re.search(r"silence (\d+) until", made.stdout)
    assert match is not None
    silences = cli("alerts", "silences")
    assert f"unit={unit}" in silences.stdout and "Hằng: kiểm tra" in silences.stdout
    assert cli("alerts", "unsilence", match.group(1)).exit_code == 0
    assert f"unit={unit}" not in cli("alerts", "silences").stdout
    assert cli("alerts", "unsilence", "9999").exit_code == 1
    assert cli("alerts", "silence", "--reason", "x", "--for", "2h").exit_code == 2  # no matcher
    assert cli("alerts", "silence", "--unit", unit, "--reason", "x", "--for", "soon").exit_code == 2
    assert cli("alerts", "silence", "--unit", "000.00.00.Z00", "--reason", "x", "--for", "1h").exit_code == 2
    acked = cli("alerts", "ack", rule, unit, "--reason", "đang khắc phục", "--by", "Phòng CNTT")
    assert acked.exit_code == 0, acked.output
    assert "acked by Phòng CNTT" in cli("alerts", "list").stdout
    assert cli("alerts", "ack", "no-such-rule", unit, "--reason", "x").exit_code == 1
    token = cli("token", "new").stdout
    secret = re.search(r"token \(.*\): (\S+)", token)
    digest = re.search(r"sha256:([0-9a-f]{64})", token)
    assert secret and digest and hashlib.sha256(secret.group(1).encode()).hexdigest() == digest.group(1)


async def test_smtp_down_for_several_cycles_then_each_digest_once(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    """Over STARTTLS with a login, as a province's relay would want it."""
    clock = FrozenClock(NOW)
    tls = TlsFiles.create(tmp_path)
    smtp = SmtpServer(security="starttls", tls=tls, username="egovmon", password="mật-khẩu-thư")
    await smtp.start()
    await smtp.stop()
    (tmp_path / "smtp-password").write_text("mật-khẩu-thư\n", encoding="utf-8")
    settings = alert_settings(smtp)
    settings["smtp"] |= {"security": "starttls", "username": "egovmon", "password_file": "smtp-password",
                         "ca_file": str(tls.ca_file)}
    async with simulated_service(tmp_path, province, clock=clock, database_url=database,
                                 extra=settings) as (service, _, _):
        _sources_fresh(service, NOW)
        await service.refresh_kpis()
        composed = service.alerting.outbox.stats(NOW).counts["pending"]
        assert composed > 20
        for _ in range(4):  # four cycles with the relay down, past several backoffs
            clock.advance(timedelta(minutes=10))
            _sources_fresh(service, clock.now())
            await service.refresh_kpis()
        assert service.alerting.outbox.stats(clock.now()).counts["pending"] == composed  # nothing added, nothing lost
        await smtp.start()
        try:
            clock.advance(timedelta(hours=1))
            _sources_fresh(service, clock.now())
            await service.refresh_kpis()
            await service.alert_cycle()
            ids = Counter(smtp.message_ids())
            assert len(ids) == composed and max(ids.values()) == 1
            assert all(m.tls and m.login == "egovmon" for m in smtp.received)
            stats = service.alerting.outbox.stats(clock.now()).counts
            assert stats["sent"] == composed and stats["pending"] == 0
            metrics = service.metrics.registry
            assert metrics.get_sample_value("egov_email_deliveries_total", {"outcome": "sent"}) == composed
            assert metrics.get_sample_value("egov_email_deliveries_total", {"outcome": "transient"}) >= 1  # type: ignore[operator]
            assert metrics.get_sample_value("egov_outbox_oldest_pending_age_seconds") == 0
        finally:
            await smtp.stop()


async def test_firing_alerts_are_forwarded_to_a_real_alertmanager(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    require_alertmanager()
    now = datetime.now(UTC)  # Alertmanager judges endsAt by its own clock
    with AlertmanagerServer() as alertmanager:
        async with SmtpServer() as smtp:
            settings = alert_settings(smtp, alertmanager={"url": alertmanager.url})
            async with simulated_service(tmp_path, province, clock=FrozenClock(now), database_url=database,
                                         extra=settings) as (service, _, _):
                _sources_fresh(service, now)
                await service.refresh_kpis()
                firing = {(r.rule, r.unit) for r in service.alerting.alerts.load(states=("firing",))}
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            forwarded = alertmanager.alerts()
            got = {(a["labels"]["rule"], a["labels"]["unit"]) for a in forwarded
                   if a["labels"].get("alertname") == "EgovTargetAlert"}
            if got == firing or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert got == firing and firing
        sample = next(a for a in forwarded if a["labels"].get("alertname") == "EgovTargetAlert")
        assert sample["labels"]["province"] == "Tỉnh Sơn Hà" and sample["annotations"]["summary"]
