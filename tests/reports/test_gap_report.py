"""The gap report on the simulated province: its numbers are the stored
evaluations; JSON, CSV and Markdown carry them intact; the CLI, the HTTP
endpoint and a scheduled email deliver it."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import ReportSchedule
from monitor.http import HttpServer
from monitor.reports.build import build_gap_report
from monitor.reports.text import CSV_FIELDS, render_csv, render_json, render_markdown
from monitor.simulators.province import ProvinceModel
from monitor.timeutil import FrozenClock, local_date
from tests.alerts.test_alert_cycle import _sources_fresh, alert_settings
from tests.reports.sample import sample_report
from tests.support.province import NOW, simulated_service
from tests.support.smtp import SmtpServer

LEADER = {"name": "Chủ tịch UBND tỉnh", "email": "chutich@sonha.gov.vn"}


async def test_json_report_equals_the_stored_evaluations(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    async with SmtpServer() as smtp, simulated_service(
            tmp_path, province, database_url=database, extra=alert_settings(smtp)) as (service, _, _):
        _sources_fresh(service, NOW)
        await service.refresh_kpis()
        report = build_gap_report(service, as_of=NOW)
        data = json.loads(render_json(report))
        day = local_date(NOW, service.config.tz)
        stored = {(r["rule"], r["unit"]): r for r in service.results.load_evaluations(day)}
        rows = [row for target in data["targets"] for row in target["rows"]]
        assert len(rows) == len(stored) > 1000
        for row in rows:
            evaluation = stored[(row["rule"], row["unit"])]
            assert row["status"] == evaluation["status"]
            assert row["gap"] == evaluation["gap"] and row["actual"] == evaluation["actual"]
            assert row["expected"] == evaluation["expected"] and row["deadline"] == evaluation["deadline"].isoformat()
        counted: dict[str, int] = {}
        for evaluation in stored.values():
            counted[evaluation["status"]] = counted.get(evaluation["status"], 0) + 1
        assert {k: v for k, v in data["status_counts"].items() if v} == counted
        # Behind-since comes from the alerts: every firing target alert's row carries it.
        firing = {(r.rule, r.unit) for r in service.alerting.alerts.load(kind="target", states=("firing",))}
        assert firing and all(row["behind_since"] for row in rows if (row["rule"], row["unit"]) in firing)
        # Rows worst first within each target; ranks within groups are 1..n.
        for target in data["targets"]:
            order = ["missed", "behind", "at_risk", "on_track", "met", "stale", "no_data"]
            positions = [order.index(r["status"]) for r in target["rows"]]
            assert positions == sorted(positions)
        # The province's history: the KPI at month ends, the last point the as-of value.
        headline = data["targets"][0]
        assert len(headline["history"]) == 13 and headline["trajectory"]

        # CSV round-trips: the same rows, the same numbers, Vietnamese names intact.
        text = render_csv(report).decode("utf-8")
        assert text.startswith("\ufeff")
        parsed = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
        assert len(parsed) == len(rows) and list(parsed[0]) == CSV_FIELDS
        for line, row in zip(parsed, rows, strict=True):
            assert line["unit_name"] == row["unit_name"] and line["status"] == row["status"]
            assert (float(line["gap"]) if line["gap"] else None) == row["gap"]
        markdown = render_markdown(report).decode("utf-8")
        assert all(target["title"].replace("|", "\\|") in markdown for target in data["targets"])


def test_csv_neutralises_formulas_and_keeps_numbers() -> None:
    text = render_csv(sample_report()).decode("utf-8").removeprefix("\ufeff")
    parsed = list(csv.DictReader(io.StringIO(text)))
    hostile = next(r for r in parsed if r["unit"] == "000.01.01.H99")
    assert hostile["unit_name"].startswith("'=HYPERLINK(")
    assert float(hostile["actual"]) == 0.62 and float(hostile["gap"]) == pytest.approx(0.18)
    markdown = render_markdown(sample_report()).decode("utf-8")
    assert "&lt;Phục vụ>" in markdown and "UBND xã Tân Lập" in markdown


def _cli(config: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["-c", str(config), "report", "gap", *args])


def test_cli_writes_every_format_and_refuses_bad_options(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    import asyncio

    async def prepare() -> None:
        async with simulated_service(tmp_path, province, database_url=database,
                                     extra={"alerts": {"enabled": False}}):
            pass

    asyncio.run(prepare())
    config = tmp_path / "monitor.yaml"
    out = tmp_path / "out"
    out.mkdir()
    result = _cli(config, "--format", "json", "--as-of", "2026-11-22", "--unit", "000.00.01.H99", "-o", str(out))
    assert result.exit_code == 0, result.output
    written = out / "bao-cao-khoang-cach-000-00-01-H99-2026-11-22.json"
    data = json.loads(written.read_text(encoding="utf-8"))
    assert data["scope"] == "000.00.01.H99" and data["as_of_day"] == "2026-11-22"
    assert "[1/3] ranking and scoring" in result.stderr  # progress on the terminal
    md = _cli(config, "--format", "md", "--lang", "en", "--as-of", "2026-11-22", "-o", "-")
    assert md.exit_code == 0 and md.stdout.startswith("# Target gap report")
    assert _cli(config, "--format", "pdf").exit_code == 2
    assert _cli(config, "--unit", "000.00.00.Z00").exit_code == 2
    assert _cli(config, "--as-of", "22/11/2026").exit_code == 2
    assert _cli(config, "--lang", "fr").exit_code == 2


async def test_http_report_matches_and_errors_are_json(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    async with simulated_service(tmp_path, province, database_url=database,
                                 extra={"alerts": {"enabled": False}}) as (service, _, _):
        http = HttpServer(service, "127.0.0.1", 0)
        await http.start()
        base = f"http://127.0.0.1:{http.port}/reports/gap"
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(base, params={"format": "json", "as_of": "2026-11-22",
                                                     "unit": "000.00.01.H99"}) as response:
                    assert response.status == 200 and response.content_type == "application/json"
                    assert "bao-cao-khoang-cach-000-00-01-H99-2026-11-22.json" in response.headers[
                        "Content-Disposition"]
                    data = await response.json()
                expected = json.loads(render_json(build_gap_report(
                    service, as_of=service.clock.now().replace(year=2026, month=11, day=22, hour=16, minute=59,
                                                               second=59, microsecond=0),
                    scope="000.00.01.H99")))
                assert [r["status"] for r in data["targets"][0]["rows"]] == [
                    r["status"] for r in expected["targets"][0]["rows"]]
                async with session.get(base, params={"format": "pdf"}) as response:
                    assert response.status == 400 and "format" in (await response.json())["error"]
                async with session.get(base, params={"unit": "000.00.00.Z00", "format": "md"}) as response:
                    assert response.status == 404 and "000.00.00.Z00" in (await response.json())["error"]
                # a scope that is not a unit never reaches the file name (it would name the download)
                async with session.get(base, params={"unit": "../../etc/passwd", "format": "xlsx"}) as response:
                    assert response.status == 404 and "Content-Disposition" not in response.headers
                async with session.get(base, params={"as_of": "yesterday"}) as response:
                    assert response.status == 400
        finally:
            await http.stop()


async def test_scheduled_report_arrives_with_a_valid_xlsx(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    from openpyxl import load_workbook

    clock = FrozenClock(NOW)
    async with SmtpServer() as smtp:
        settings = alert_settings(smtp)
        settings["reports"] = {"schedules": [{"name": "hang-tuan", "schedule": {"cron": "0 8 * * mon"},
                                              "to": [LEADER], "attach": ["xlsx", "csv"]}]}
        settings["alerts"]["enabled"] = False  # only the report is mailed here
        async with simulated_service(tmp_path, province, clock=clock, database_url=database,
                                     extra=settings) as (service, _, config):
            schedule: ReportSchedule = config.reports.schedules[0]
            assert await service.send_scheduled_report(schedule) == 1
            assert await service.send_scheduled_report(schedule) == 0  # the same day again: nothing new
            clock.advance(timedelta(days=7))
            assert await service.send_scheduled_report(schedule) == 1
    assert len(smtp.received) == 2
    message = message_from_bytes(smtp.received[0].content, policy=policy.default)
    assert message["To"].addresses[0].display_name == LEADER["name"]
    assert str(message["Subject"]).startswith("[Tỉnh Sơn Hà] Báo cáo khoảng cách mục tiêu")
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Các đơn vị chậm nhất" in body
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    xlsx_name = next(n for n in attachments if n and n.endswith(".xlsx"))
    workbook = load_workbook(io.BytesIO(attachments[xlsx_name].get_content()))
    assert len(workbook.sheetnames) >= 3
    csv_name = next(n for n in attachments if n and n.endswith(".csv"))
    assert attachments[csv_name].get_payload(decode=True).startswith(b"\xef\xbb\xbf" + b"rule,kpi,unit")


async def test_xlsx_and_html_of_the_province_carry_the_stored_numbers(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    """The workbook's data sheet is the evaluations; the page draws every chart in Chromium."""
    import asyncio

    from openpyxl import load_workbook

    from monitor.reports.html import render_html
    from monitor.reports.xlsx import render_xlsx
    from tests.support.components import chromium_render, require_chromium

    async with simulated_service(tmp_path, province, database_url=database,
                                 extra={"alerts": {"enabled": False}}) as (service, _, _):
        report = build_gap_report(service, as_of=NOW, scope="000.00.01.H99")
        day = local_date(NOW, service.config.tz)
        stored = {(r["rule"], r["unit"]): r for r in service.results.load_evaluations(day)}
    workbook = load_workbook(io.BytesIO(render_xlsx(report)))
    data = workbook["Dữ liệu"]
    header = [c.value for c in data[1]]
    rows = [dict(zip(header, (c.value for c in line), strict=True)) for line in data.iter_rows(min_row=2)]
    assert len(rows) == len(report.rows) > 10
    for line in rows:
        evaluation = stored[(line["rule"], line["unit"])]
        assert line["status"] == evaluation["status"]
        if evaluation["gap"] is None:
            assert line["gap"] is None
        else:
            assert line["gap"] == pytest.approx(evaluation["gap"], abs=1e-12)
        assert line["unit_name"] == next(r.unit_name for r in report.rows if r.unit == line["unit"])

    require_chromium()
    page = tmp_path / "report.html"
    page.write_bytes(render_html(report))
    result = await asyncio.to_thread(chromium_render, page, tmp_path / "report.png", full_page=True)
    assert result.errors == []
    assert result.screenshot.stat().st_size > 10_000
    charts = re.findall(r'data-chart="([^"]+)"', result.dom)
    assert sorted(charts) == sorted(f"{t.rule}-{kind}" for t in report.targets for kind in ("trend", "units"))
    assert re.search(r'class="[^"]*\bmark\b', result.dom)
