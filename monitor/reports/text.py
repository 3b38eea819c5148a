"""The gap report as JSON, CSV and Markdown.

JSON is the report's whole data model (documented in docs/reports.md): dates as
ISO 8601, instants as UTC with an offset, ratios as numbers in [0, 1]. CSV is
the flat table of every (target, unit) row, UTF-8 with a BOM so Excel opens the
Vietnamese names correctly, and text that could start a formula neutralised.
Markdown is for pasting into a chat or a ticket.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from monitor.alerts.compose import format_gap, format_percent
from monitor.reports.model import REPORT_STATUSES, GapReport, GapRow
from monitor.reports.names import STATUS_NAMES
from monitor.templating import format_day

SCHEMA_VERSION = 1
# Cells starting with these are formulas in spreadsheet programs (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_FIELDS = [f.name for f in dataclasses.fields(GapRow)]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def report_dict(report: GapReport) -> dict[str, Any]:
    out = _plain(dataclasses.asdict(report))
    assert isinstance(out, dict)
    return {"schema_version": SCHEMA_VERSION, **out}


def render_json(report: GapReport) -> bytes:
    return json.dumps(report_dict(report), ensure_ascii=False, indent=1).encode("utf-8")


def safe_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe (the
    OWASP advice for CSV injection); numbers and dates are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def render_csv(report: GapReport) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for row in report.rows:
        values = dataclasses.asdict(row)
        writer.writerow([safe_cell(_csv_value(values[name])) for name in CSV_FIELDS])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


_MD_TEXTS = {
    "vi": {"title": "Báo cáo khoảng cách mục tiêu", "as_of": "Tính đến", "summary": "Tổng hợp", "unit": "Đơn vị",
           "status": "Trạng thái", "actual": "Thực tế", "expected": "Theo lộ trình", "gap": "Chênh lệch",
           "deadline": "Hạn", "target": "Mục tiêu", "source": "Căn cứ", "count": "Số lượng",
           "since": "Chậm từ"},
    "en": {"title": "Target gap report", "as_of": "As of", "summary": "Summary", "unit": "Unit",
           "status": "Status", "actual": "Actual", "expected": "Expected", "gap": "Gap", "deadline": "Deadline",
           "target": "Target", "source": "Source", "count": "Count", "since": "Behind since"},
}


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def render_markdown(report: GapReport) -> bytes:
    lang = report.language
    t = _MD_TEXTS[lang]
    tz = ZoneInfo(report.timezone)
    lines = [f"# {t['title']} — {_md(report.scope_name)}", "",
             f"{t['as_of']}: {format_day(report.as_of_day, lang)} · {_md(report.province)}", "",
             f"## {t['summary']}", "", f"| {t['status']} | {t['count']} |", "| --- | ---: |"]
    lines += [f"| {STATUS_NAMES[lang].get(s, s)} | {report.status_counts.get(s, 0)} |" for s in REPORT_STATUSES]
    for section in report.targets:
        comparator = "≥" if section.comparator == ">=" else "≤"
        lines += ["", f"## {_md(section.title)}", "",
                  f"{t['target']}: {comparator} {format_percent(section.target, lang)} · "
                  f"{t['deadline']}: {format_day(section.deadline, lang)} · {t['source']}: {_md(section.citation)}",
                  "", f"| {t['unit']} | {t['status']} | {t['actual']} | {t['expected']} | {t['gap']} | {t['since']} |",
                  "| --- | --- | ---: | ---: | ---: | --- |"]
        for row in section.rows:
            since = format_day(row.behind_since.astimezone(tz).date(), lang) if row.behind_since else ""
            lines.append(f"| {_md(row.unit_name)} | {STATUS_NAMES[lang].get(row.status, row.status)} | "
                         f"{format_percent(row.actual, lang)} | {format_percent(row.expected, lang)} | "
                         f"{format_gap(row.gap, lang) if row.gap is not None else '—'} | {since} |")
    return ("\n".join(lines) + "\n").encode("utf-8")
