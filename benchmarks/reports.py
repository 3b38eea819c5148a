"""Gap reports of a 1,000-unit province: XLSX and HTML rendering.

The report is synthetic (1,000 units × 20 targets = 20,000 rows, Vietnamese
names) so the figure measures the renderers, not the database. Baselines, in
the same run: for XLSX, openpyxl writing the same 20,000 × 26 values with no
formatting (the library's own floor); for HTML, joining the same cells into
table markup with ``html.escape`` (the text's floor).
"""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, date, datetime, timedelta
from html import escape

from benchmarks.common import Result, best_of
from monitor.reports.model import GapReport, GapRow, Point, TargetSection, UnitRef

STATUSES = ("met", "on_track", "at_risk", "behind", "missed", "no_data", "stale")


def synthetic_report(units: int = 1000, targets: int = 20) -> GapReport:
    refs = tuple(UnitRef(f"000.{i // 100:02d}.{i % 100:02d}.H99", f"UBND xã Số {i} — Tân Lập", "commune", "xa")
                 for i in range(units))
    as_of = datetime(2026, 11, 22, 3, tzinfo=UTC)
    sections = []
    for t in range(targets):
        rows = []
        for i, ref in enumerate(refs):
            status = STATUSES[(i + t) % len(STATUSES)]
            actual = None if status == "no_data" else ((i * 37 + t * 11) % 100) / 100
            rows.append(GapRow(
                rule=f"rule-{t}", kpi=f"kpi_{t}", unit=ref.code, unit_name=ref.name, level="commune", group="xa",
                group_name="Xã, phường", status=status, actual=actual, expected=0.8, target=0.9, comparator=">=",
                gap=None if actual is None else 0.8 - actual, gap_to_target=None if actual is None else 0.9 - actual,
                deadline=date(2027, 12, 31), numerator=0 if actual is None else actual * 500, denominator=500,
                units_reporting=1, forecast_value=actual, forecast_reached_on=None, forecast_reachable=False,
                trend_per_year=0.05, data_through=as_of - timedelta(days=1),
                behind_since=as_of - timedelta(days=40) if status in ("behind", "missed") else None,
                rank=i + 1, rank_size=units))
        counts = {s: sum(1 for r in rows if r.status == s) for s in STATUSES}
        history = tuple(Point(date(2026, m, 28), 0.5 + m / 40) for m in range(1, 12))
        sections.append(TargetSection(
            rule=f"rule-{t}", title=f"Chỉ tiêu số {t}: văn bản điện tử", kpi=f"kpi_{t}", kpi_name="Tỷ lệ văn bản",
            window="ytd", target=0.9, comparator=">=", deadline=date(2027, 12, 31), severity="warning",
            citation="QĐ 942/QĐ-TTg (15/06/2021): Chiến lược phát triển Chính phủ điện tử", citation_url=None,
            citation_verified=True, status_counts=counts, rows=tuple(rows), headline_unit=refs[0].code,
            history=history, trajectory=(Point(date(2025, 1, 1), 0.5), Point(date(2027, 12, 31), 0.9))))
    totals = {s: sum(sec.status_counts[s] for sec in sections) for s in STATUSES}
    return GapReport(province="Tỉnh Sơn Hà", language="vi", timezone="Asia/Ho_Chi_Minh", as_of=as_of,
                     as_of_day=date(2026, 11, 22), generated_at=as_of, scope=None, scope_name="Tỉnh Sơn Hà",
                     status_counts=totals, targets=tuple(sections), units=refs)


def _plain_cells(report: GapReport) -> list[list[object]]:
    names = [f.name for f in dataclasses.fields(GapRow)]
    return [[getattr(row, n) if not isinstance(getattr(row, n), datetime) else getattr(row, n).replace(tzinfo=None)
             for n in names] for row in report.rows]


def xlsx_baseline(cells: list[list[object]]) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for values in cells:
        sheet.append(values)
    workbook.save(io.BytesIO())


def html_baseline(cells: list[list[object]]) -> None:
    "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in cells)


def run(quick: bool) -> list[Result]:
    from monitor.reports.html import render_html
    from monitor.reports.xlsx import render_xlsx

    units = 300 if quick else 1000
    repeats = 1 if quick else 3
    report = synthetic_report(units=units)
    cells = _plain_cells(report)
    scale = f"{units} units × {len(report.targets)} targets = {len(report.rows)} rows"
    return [
        Result("report_xlsx_render", best_of(lambda: render_xlsx(report), repeats), "s",
               "openpyxl writing the same values unformatted", best_of(lambda: xlsx_baseline(cells), repeats),
               scale, "seconds for 1,000 units (issue 5); ratio ≤ 3 × the unformatted write"),
        Result("report_html_render", best_of(lambda: render_html(report), repeats), "s",
               "the same cells joined into table markup", best_of(lambda: html_baseline(cells), repeats),
               scale, "seconds for 1,000 units (issue 5)"),
    ]
