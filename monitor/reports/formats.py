"""The formats a gap report is rendered in: one table, shared by the CLI, the
HTTP endpoint and scheduled reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from monitor.reports.model import GapReport


@dataclass(frozen=True)
class Format:
    name: str
    extension: str
    content_type: str
    module: str  # imported on first use: openpyxl and the HTML templates load only when asked for
    function: str

    def render(self, report: GapReport) -> bytes:
        renderer: Callable[[GapReport], bytes] = getattr(import_module(self.module), self.function)
        return renderer(report)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("html", "html", "text/html; charset=utf-8", "monitor.reports.html", "render_html"),
    Format("xlsx", "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           "monitor.reports.xlsx", "render_xlsx"),
    Format("csv", "csv", "text/csv; charset=utf-8", "monitor.reports.text", "render_csv"),
    Format("json", "json", "application/json; charset=utf-8", "monitor.reports.text", "render_json"),
    Format("md", "md", "text/markdown; charset=utf-8", "monitor.reports.text", "render_markdown"),
)}


def format_named(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown report format {name!r} (one of {', '.join(FORMATS)})") from None


def file_name(report: GapReport, fmt: Format) -> str:
    """``bao-cao-khoang-cach-<scope>-<yyyy-mm-dd>.<ext>``: ASCII, safe on every file system."""
    scope = report.scope or "tinh"
    return f"bao-cao-khoang-cach-{scope.replace('.', '-')}-{report.as_of_day.isoformat()}.{fmt.extension}"
