"""The gap report as one self-contained HTML page: header, status summary, one
section per target (a trend chart, a units chart, the table), composite scores and
how to read it all.

Self-contained means no external asset of any kind: the CSS is inline, the charts
are inline SVG drawn here (no JavaScript), and a Content-Security-Policy meta tag
(``default-src 'none'``) makes the browser refuse anything that would slip in.
Links to the legal texts (``<a href>``) are the only URLs on the page.

Escaping: the template is autoescaped, and the SVG is built with ``Markup.format``,
which escapes every argument, so a unit named ``<b>&"…`` shows as text everywhere.

Charts carry ``class="chart"`` and ``data-chart="<rule>-trend"`` / ``"<rule>-units"``;
their data marks (the headline unit's actual values, the units' bars) carry
``class="mark"``. A chart with nothing to draw says so in visible text and has no
mark. Reference lines (target, glide path, deadline, expected ticks) are not marks:
they come from the rule, not from the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup

from monitor.alerts.compose import format_forecast as compose_forecast
from monitor.alerts.compose import (
    format_gap,
    format_percent,
    format_points,
    format_trend,
    safe_url,
)
from monitor.reports.model import REPORT_STATUSES, GapReport, GapRow, Language, Point, ScoreRow, TargetSection
from monitor.reports.names import STATUS_NAMES
from monitor.templating import (
    context_language,
    data_day_filter,
    format_day,
    in_language,
    moment_filter,
    name_in,
    zone_label,
)
from monitor.timeutil import add_months, local_date

MAX_CHART_UNITS = 30  # the units chart shows the worst rows; the table shows them all

# Fixed texts. The two catalogues must have the same keys (a test checks it).
TEXTS: dict[Language, dict[str, str]] = {
    "vi": {
        "title": "Báo cáo khoảng cách mục tiêu Chính phủ điện tử",
        "province": "Tỉnh",
        "scope": "Phạm vi",
        "as_of": "Tính đến ngày",
        "as_of_moment": "Số liệu tính đến",
        "generated": "Thời điểm lập báo cáo",
        "summary": "Tổng hợp trạng thái",
        "summary_note": "Số cặp (chỉ tiêu, đơn vị) theo trạng thái.",
        "total": "Tổng",
        "contents": "Các chỉ tiêu",
        "kpi": "Chỉ số",
        "window": "Kỳ tính",
        "target": "Mục tiêu",
        "deadline": "Hạn hoàn thành",
        "severity": "Mức độ",
        "citation": "Căn cứ",
        "unverified": "chưa kiểm chứng",
        "counts": "Số đơn vị theo trạng thái",
        "trend_caption": "Diễn biến của {unit} so với lộ trình và mục tiêu",
        "units_caption": "Giá trị hiện tại của các đơn vị (vạch đen: giá trị theo lộ trình đến hôm nay)",
        "units_caption_top": "{shown} đơn vị chậm nhất trên tổng số {total} — tất cả có trong bảng dưới",
        "legend_actual": "Giá trị thực tế (cuối tháng)",
        "legend_trajectory": "Lộ trình",
        "legend_target": "Mục tiêu",
        "legend_deadline": "Hạn hoàn thành",
        "legend_as_of": "Ngày báo cáo",
        "legend_expected": "Theo lộ trình đến hôm nay",
        "no_data": "Chưa có số liệu",
        "no_rows": "Không có đơn vị nào trong phạm vi báo cáo.",
        "deadline_short": "Hạn {day}",
        "target_short": "Mục tiêu {value}",
        "as_of_short": "Ngày báo cáo",
        "unit": "Đơn vị",
        "group": "Nhóm",
        "status": "Trạng thái",
        "actual": "Hiện tại",
        "expected": "Theo lộ trình",
        "gap": "Chênh lệch so với lộ trình",
        "gap_to_target": "Còn cách mục tiêu",
        "target_reached": "đã đạt",
        "forecast": "Dự báo đến hạn",
        "trend": "Xu hướng",
        "data_through": "Số liệu đến ngày",
        "behind_since": "Chậm từ",
        "rank": "Hạng trong nhóm",
        "scores": "Chỉ số tổng hợp",
        "no_scores": "Không có chỉ số tổng hợp trong phạm vi báo cáo.",
        "score": "Điểm",
        "scaled": "Thang 100",
        "complete": "Dữ liệu",
        "complete_yes": "đủ",
        "complete_no": "thiếu — điểm có thể thấp hơn thực tế",
        "no_targets": "Không có chỉ tiêu nào được đánh giá trong phạm vi báo cáo.",
        "howto": "Cách đọc báo cáo",
        "howto_status": ("Trạng thái: «Đạt» — giá trị đã đạt mục tiêu; «Đúng tiến độ» — bằng hoặc tốt hơn giá trị"
                         " theo lộ trình đến hôm nay; «Có nguy cơ» — chậm hơn lộ trình nhưng trong biên cho phép;"
                         " «Chậm tiến độ» — chậm hơn lộ trình quá biên cho phép; «Không đạt (quá hạn)» — đã qua hạn"
                         " mà chưa đạt; «Chưa có dữ liệu» — đơn vị chưa báo cáo; «Dữ liệu cũ» — số liệu đã lâu"
                         " không được cập nhật nên không được đánh giá."),
        "howto_gap": ("«Chênh lệch so với lộ trình» tính bằng điểm phần trăm giữa giá trị hiện tại và giá trị lẽ"
                      " ra phải đạt hôm nay theo lộ trình; «Còn cách mục tiêu» là khoảng cách tới chính mục tiêu."),
        "howto_trend": ("Biểu đồ diễn biến: đường liền là giá trị của đơn vị ở cuối mỗi tháng (đứt quãng khi"
                        " không có số liệu), đường gạch là lộ trình, đường ngang là mục tiêu, đường dọc đỏ là"
                        " hạn hoàn thành."),
        "howto_forecast": ("«Dự báo đến hạn» ngoại suy xu hướng hiện tại (điểm phần trăm mỗi năm) đến hạn hoàn"
                           " thành; đây là ước lượng, không phải cam kết."),
        "howto_rank": "«Hạng trong nhóm» xếp các đơn vị cùng nhóm theo giá trị hiện tại (1 là tốt nhất).",
        "howto_time": "Ngày giờ theo {zone}. «Số liệu đến ngày» là ngày cuối cùng có số liệu.",
        "generator": "Báo cáo được lập tự động bởi hệ thống giám sát chỉ tiêu Chính phủ điện tử.",
    },
    "en": {
        "title": "E-government target gap report",
        "province": "Province",
        "scope": "Scope",
        "as_of": "As of",
        "as_of_moment": "Data as of",
        "generated": "Generated",
        "summary": "Status summary",
        "summary_note": "Number of (target, unit) pairs per status.",
        "total": "Total",
        "contents": "Targets",
        "kpi": "Indicator",
        "window": "Period",
        "target": "Target",
        "deadline": "Deadline",
        "severity": "Severity",
        "citation": "Basis",
        "unverified": "unverified",
        "counts": "Units per status",
        "trend_caption": "{unit} over time against the glide path and the target",
        "units_caption": "Current value of each unit (black tick: expected by today on the glide path)",
        "units_caption_top": "The {shown} worst of {total} units — all of them are in the table below",
        "legend_actual": "Actual value (month ends)",
        "legend_trajectory": "Glide path",
        "legend_target": "Target",
        "legend_deadline": "Deadline",
        "legend_as_of": "Report date",
        "legend_expected": "Expected by today",
        "no_data": "No data yet",
        "no_rows": "No unit in the report's scope.",
        "deadline_short": "Deadline {day}",
        "target_short": "Target {value}",
        "as_of_short": "Report date",
        "unit": "Unit",
        "group": "Group",
        "status": "Status",
        "actual": "Actual",
        "expected": "Expected",
        "gap": "Gap to the plan",
        "gap_to_target": "Distance to the target",
        "target_reached": "reached",
        "forecast": "Forecast at the deadline",
        "trend": "Trend",
        "data_through": "Data through",
        "behind_since": "Behind since",
        "rank": "Rank in group",
        "scores": "Composite scores",
        "no_scores": "No composite score in the report's scope.",
        "score": "Score",
        "scaled": "Out of 100",
        "complete": "Data",
        "complete_yes": "complete",
        "complete_no": "incomplete — the score may understate the unit",
        "no_targets": "No target was evaluated in the report's scope.",
        "howto": "How to read this report",
        "howto_status": ("Statuses: “Met” — the value reaches the target; “On track” — at or better than the value"
                         " expected by today on the glide path; “At risk” — behind the glide path, within the"
                         " tolerated margin; “Behind” — behind the glide path by more than the margin; “Missed” —"
                         " the deadline has passed and the target is not reached; “No data yet” — the unit has not"
                         " reported; “Stale data” — the data has not been updated for too long to be judged."),
        "howto_gap": ("“Gap to the plan” is the distance, in percentage points, between the current value and the"
                      " value expected by today on the glide path; “Distance to the target” is to the target itself."),
        "howto_trend": ("Trend charts: the solid line is the unit's value at each month end (broken where there is no"
                        " data), the dashed line the glide path, the horizontal line the target and the red vertical"
                        " line the deadline."),
        "howto_forecast": ("“Forecast at the deadline” extrapolates the current trend (percentage points per year)"
                           " to the deadline; it is an estimate, not a commitment."),
        "howto_rank": "“Rank in group” orders the units of the same group by their current value (1 is best).",
        "howto_time": "Dates and times in {zone}. “Data through” is the last day the data covers.",
        "generator": "Generated automatically by the e-government target monitoring service.",
    },
}

WINDOW_NAMES: dict[Language, dict[str, str]] = {
    "vi": {"month": "tháng hiện tại", "previous_month": "tháng trước", "quarter": "quý hiện tại",
           "ytd": "từ đầu năm", "latest": "số liệu mới nhất"},
    "en": {"month": "current month", "previous_month": "previous month", "quarter": "current quarter",
           "ytd": "year to date", "latest": "latest value"},
}

SEVERITY_NAMES: dict[Language, dict[str, str]] = {
    "vi": {"info": "thông tin", "warning": "cảnh báo", "critical": "nghiêm trọng"},
    "en": {"info": "info", "warning": "warning", "critical": "critical"},
}

COMPARATORS = {">=": "≥", "<=": "≤"}


# --- Formatting ----------------------------------------------------------------------------------


def keep_together(text: str) -> str:
    """No line break between a number and its unit ("49,0 %", "18,0 điểm %", "4.0 pts")."""
    return text.replace(" %", "\u00a0%").replace(" điểm", "\u00a0điểm").replace(" pts", "\u00a0pts")


def _together(format_: Callable[[Any, Language], str]) -> Callable[[Any, Language], str]:
    def apply(value: Any, lang: Language) -> str:
        return keep_together(format_(value, lang))

    return apply


def format_target(comparator: str, target: float, lang: Language) -> str:
    return f"{COMPARATORS.get(comparator, comparator)} {format_percent(target, lang)}"


def format_gap_to_target(gap: float | None, lang: Language) -> str:
    if gap is None:
        return "—"
    if gap <= 1e-9:
        return TEXTS[lang]["target_reached"]
    return format_points(gap, lang)


def format_forecast(row: GapRow, lang: Language) -> str:
    """At the deadline / reached on / not reachable — as the digest says it."""
    return compose_forecast(row, lang) or "—"


def format_rank(rank: int | None, size: int | None) -> str:
    return "—" if rank is None or size is None else f"{rank}/{size}"


def format_score(value: float, lang: Language) -> str:
    text = f"{value:.1f}"
    return text.replace(".", ",") if lang == "vi" else text


def _tick_percent(hundredths: int, lang: Language) -> str:
    return f"{hundredths} %" if lang == "vi" else f"{hundredths}%"


def _month_label(day: date, step: int, lang: Language) -> str:
    if step >= 12:
        return str(day.year)
    return f"{day:%m/%Y}" if lang == "vi" else f"{day:%Y-%m}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- Charts (inline SVG) -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Linear:
    """Maps [d0, d1] onto [r0, r1]."""

    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, value: float) -> float:
        span = self.d1 - self.d0 or 1.0
        return self.r0 + (value - self.d0) / span * (self.r1 - self.r0)


def _n(value: float) -> str:
    """A coordinate: one decimal is finer than a pixel."""
    return f"{value:.1f}"


def _svg_open(rule: str, kind: str, width: int, height: int, label: str) -> Markup:
    return Markup(
        '<svg class="chart chart-{kind}" data-chart="{rule}-{kind}" xmlns="http://www.w3.org/2000/svg" '
        'viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{label}">'
        "<title>{label}</title>"
    ).format(kind=kind, rule=rule, w=width, h=height, label=label)


def _value_range(values: Iterable[float]) -> tuple[int, int]:
    """The y axis in whole percent: the values with some room, on 10 % steps, within 0–100 %
    unless a value lies outside."""
    found = list(values)
    low = min(found) if found else 0.0
    high = max(found) if found else 1.0
    bottom = math.floor((low - 0.05) * 10) * 10
    top = math.ceil((high + 0.05) * 10) * 10
    bottom = max(0, bottom) if low >= 0 else bottom
    top = min(100, top) if high <= 1 else top
    if top - bottom < 20:
        top, bottom = (min(100, bottom + 20), bottom) if bottom + 20 <= 100 else (top, top - 20)
    return bottom, top


def _month_ticks(start: date, end: date) -> tuple[list[date], int]:
    """First days of months between start and end, every ``step`` months, at most 8 of them."""
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    step = next(s for s in (1, 2, 3, 6, 12, 24, 60, 120, 10**6) if months / s <= 8)
    first = start.replace(day=1)
    if first < start:
        first = add_months(first, 1)
    ticks = []
    day = first
    while day <= end:
        if ((day.year * 12 + day.month - 1) % step) == 0:
            ticks.append(day)
        day = add_months(day, 1)
    return ticks, step


def _glide_path(section: TargetSection) -> list[Point]:
    """The trajectory's corners in order, held flat from the last corner to the deadline."""
    corners = sorted((p for p in section.trajectory if p.value is not None), key=lambda p: p.day)
    if corners and corners[-1].day < section.deadline:
        corners.append(Point(section.deadline, corners[-1].value))
    return corners


def _runs(points: Sequence[Point]) -> list[list[Point]]:
    """Consecutive points with a value; a point without one breaks the line."""
    runs: list[list[Point]] = [[]]
    for point in sorted(points, key=lambda p: p.day):
        if point.value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]


def trend_chart(section: TargetSection, report: GapReport, unit_name: str) -> Markup:
    """The headline unit's month-end values, the glide path, the target and the deadline."""
    lang = report.language
    t = TEXTS[lang]
    width, height = 760, 300
    left, right, top, bottom = 64, 24, 30, 44
    path = _glide_path(section)
    valued = [p for p in section.history if p.value is not None]
    days = [p.day for p in section.history] + [p.day for p in path] + [section.deadline, report.as_of_day]
    start, end = min(days), max(days)
    if (end - start).days < 60:
        start = end - timedelta(days=60)
    low, high = _value_range([p.value for p in (*valued, *path) if p.value is not None] + [section.target])
    x = _Linear(start.toordinal(), end.toordinal(), left, width - right)
    y = _Linear(low / 100, high / 100, height - bottom, top)

    def at(point: Point) -> str:
        assert point.value is not None
        return f"{_n(x(point.day.toordinal()))},{_n(y(point.value))}"

    label = t["trend_caption"].format(unit=unit_name) + " — " + section.title
    parts = [_svg_open(section.rule, "trend", width, height, label)]
    # Grid and axes.
    step = 10 if high - low <= 60 else 20
    for pct in range(low, high + 1, step):
        yy = _n(y(pct / 100))
        parts.append(Markup('<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
            left, width - right, yy, yy))
        parts.append(Markup('<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>').format(
            left - 6, _n(y(pct / 100) + 4), _tick_percent(pct, lang)))
    ticks, month_step = _month_ticks(start, end)
    for day in ticks:
        xx = _n(x(day.toordinal()))
        parts.append(Markup('<line class="axis-tick" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
            xx, xx, height - bottom, height - bottom + 5))
        parts.append(Markup('<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>').format(
            xx, height - bottom + 18, _month_label(day, month_step, lang)))
    parts.append(Markup('<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
        left, width - right, height - bottom, height - bottom))
    parts.append(Markup('<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
        left, left, top, height - bottom))
    parts.append(Markup(
        '<text class="axis-title" x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>'
    ).format(14, _n((top + height - bottom) / 2), 14, _n((top + height - bottom) / 2), section.kpi_name + " (%)"))
    # Reference lines: as-of, deadline, target, glide path.
    ax = x(report.as_of_day.toordinal())
    parts.append(Markup('<line class="ref today" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
        _n(ax), _n(ax), top, height - bottom))
    near_left = ax < left + 90
    parts.append(Markup('<text class="ref-label today" x="{}" y="{}" text-anchor="{}">{}</text>').format(
        _n(ax + 4 if near_left else ax - 4), height - bottom - 6, "start" if near_left else "end",
        t["as_of_short"]))
    dx = x(section.deadline.toordinal())
    parts.append(Markup('<line class="ref deadline" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
        _n(dx), _n(dx), top - 6, height - bottom))
    anchor = "end" if dx > width - right - 80 else "start" if dx < left + 80 else "middle"
    parts.append(Markup('<text class="ref-label deadline" x="{}" y="{}" text-anchor="{}">{}</text>').format(
        _n(dx), top - 10, anchor, t["deadline_short"].format(day=format_day(section.deadline, lang))))
    ty = y(section.target)
    parts.append(Markup('<line class="ref target" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
        left, width - right, _n(ty), _n(ty)))
    parts.append(Markup('<text class="ref-label target" x="{}" y="{}">{}</text>').format(
        left + 6, _n(ty - 5), t["target_short"].format(
            value=format_target(section.comparator, section.target, lang))))
    if path:
        parts.append(Markup('<polyline class="ref trajectory" points="{}"/>').format(" ".join(at(p) for p in path)))
    # The data: the headline unit's values, broken where a month has none.
    if valued:
        for run in _runs(section.history):
            if len(run) > 1:
                parts.append(Markup('<polyline class="mark actual" points="{}"/>').format(
                    " ".join(at(p) for p in run)))
            for point in run:
                px, py = x(point.day.toordinal()), y(point.value or 0.0)
                parts.append(Markup(
                    '<path class="mark point" d="M{},{} m-3.5,0 a3.5,3.5 0 1,0 7,0 a3.5,3.5 0 1,0 -7,0">'
                    "<title>{}: {}</title></path>"
                ).format(_n(px), _n(py), format_day(point.day, lang), format_percent(point.value, lang)))
    else:
        parts.append(Markup('<text class="no-data" x="{}" y="{}" text-anchor="middle">{}</text>').format(
            _n((left + width - right) / 2), _n(top + (height - bottom - top) * 0.3), t["no_data"]))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def units_chart(section: TargetSection, lang: Language) -> Markup:
    """The worst units: a bar for the actual value, a tick for the expected one, the target line."""
    t = TEXTS[lang]
    rows = section.rows[:MAX_CHART_UNITS]
    with_data = [r for r in rows if r.actual is not None]
    width, label_width, right, top, row_height, bottom = 760, 270, 64, 28, 22, 12
    height = top + max(1, len(rows)) * row_height + bottom if with_data else 96
    label = t["units_caption"] + " — " + section.title
    parts = [_svg_open(section.rule, "units", width, height, label)]
    if not with_data:
        parts.append(Markup('<text class="no-data" x="{}" y="{}" text-anchor="middle">{}</text>').format(
            width // 2, height // 2 + 5, t["no_data"] if rows else t["no_rows"]))
        parts.append(Markup("</svg>"))
        return Markup("").join(parts)
    high = max(1.0, *(r.actual for r in with_data if r.actual is not None), *(r.expected for r in rows))
    x = _Linear(0.0, high, label_width, width - right)
    bottom_y = top + len(rows) * row_height
    for pct in range(0, int(high * 100) + 1, 20):
        xx = _n(x(pct / 100))
        parts.append(Markup('<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(xx, xx, top, bottom_y))
        parts.append(Markup('<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>').format(
            xx, top - 8, _tick_percent(pct, lang)))
    for i, row in enumerate(rows):
        y0 = top + i * row_height
        middle = y0 + row_height / 2
        parts.append(Markup('<text class="unit-label" x="{}" y="{}" text-anchor="end">{}<title>{}</title></text>')
                     .format(label_width - 8, _n(middle + 4), _shorten(row.unit_name, 38), row.unit_name))
        if row.actual is not None:
            bar_end = x(row.actual)
            parts.append(Markup(
                '<rect class="mark bar s-{}" x="{}" y="{}" width="{}" height="{}">'
                "<title>{}: {} ({})</title></rect>"
            ).format(row.status, label_width, _n(y0 + 4), _n(max(1.0, bar_end - label_width)), row_height - 8,
                     row.unit_name, format_percent(row.actual, lang), STATUS_NAMES[lang].get(row.status, row.status)))
            parts.append(Markup('<text class="value" x="{}" y="{}">{}</text>').format(
                _n(max(bar_end, x(row.expected)) + 5), _n(middle + 4), format_percent(row.actual, lang)))
        else:
            parts.append(Markup('<text class="missing" x="{}" y="{}">{}</text>').format(
                label_width + 4, _n(middle + 4), STATUS_NAMES[lang].get(row.status, row.status)))
        ex = _n(x(row.expected))
        parts.append(Markup('<line class="expected" x1="{}" x2="{}" y1="{}" y2="{}">'
                            "<title>{}: {}</title></line>").format(
            ex, ex, _n(y0 + 1), _n(y0 + row_height - 1), t["legend_expected"], format_percent(row.expected, lang)))
    targets = sorted({r.target for r in rows})
    for value in targets:
        tx = _n(x(value))
        parts.append(Markup('<line class="ref target" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
            tx, tx, top - 2, bottom_y))
    parts.append(Markup('<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
        label_width, label_width, top, bottom_y))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


# --- Template plumbing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SectionView:
    section: TargetSection
    headline_name: str
    trend: Markup
    units: Markup
    shown_units: int


@dataclass(frozen=True)
class ScoreTable:
    index: str
    index_name: str
    rows: tuple[ScoreRow, ...]


@pass_context
def _local_day_filter(ctx: Context, value: Any) -> str:
    if value is None:
        return "—"
    tz: tzinfo = ctx["tz"]
    return format_day(local_date(value, tz), context_language(ctx))


@pass_context
def _target_filter(ctx: Context, item: TargetSection | GapRow) -> str:
    return format_target(item.comparator, item.target, context_language(ctx))


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("monitor.reports", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update({
        "percent": in_language(_together(format_percent)),
        "gap": in_language(_together(format_gap)),
        "gap_to_target": in_language(_together(format_gap_to_target)),
        "trend": in_language(_together(format_trend)),
        "day": in_language(format_day),
        "forecast": in_language(format_forecast),
        "score": in_language(format_score),
        "local_day": _local_day_filter,
        "data_day": data_day_filter,
        "moment": moment_filter,
        "target": _target_filter,
        "status_name": name_in(STATUS_NAMES),
        "window_name": name_in(WINDOW_NAMES),
        "severity_name": name_in(SEVERITY_NAMES),
        "safe_url": safe_url,
    })
    env.globals["rank"] = format_rank
    return env


def _score_tables(scores: Sequence[ScoreRow]) -> list[ScoreTable]:
    tables: dict[str, list[ScoreRow]] = {}
    names: dict[str, str] = {}
    for score in scores:
        tables.setdefault(score.index, []).append(score)
        names.setdefault(score.index, score.index_name)
    return [ScoreTable(index, names[index], tuple(rows)) for index, rows in tables.items()]


def _context(report: GapReport) -> dict[str, Any]:
    lang = report.language
    tz = ZoneInfo(report.timezone)
    names = {u.code: u.name for u in report.units}
    if report.scope is not None:
        names.setdefault(report.scope, report.scope_name)
    sections = []
    for section in report.targets:
        headline = section.headline_unit
        headline_name = names.get(headline, headline) if headline else report.scope_name
        sections.append(SectionView(section=section, headline_name=headline_name,
                                    trend=trend_chart(section, report, headline_name),
                                    units=units_chart(section, lang),
                                    shown_units=min(len(section.rows), MAX_CHART_UNITS)))
    texts = TEXTS[lang]
    return {
        "lang": lang,
        "tz": tz,
        "zone": report.timezone,
        "t": texts,
        "report": report,
        "statuses": REPORT_STATUSES,
        "sections": sections,
        "score_tables": _score_tables(report.scores),
        "total": sum(report.status_counts.get(s, 0) for s in REPORT_STATUSES),
        "howto_time": texts["howto_time"].format(zone=zone_label(report.timezone, lang)),
    }


def render_html(report: GapReport) -> bytes:
    """The report as one HTML page (UTF-8), with no external assets."""
    html = _environment().get_template("gap.html.j2").render(_context(report))
    return html.encode("utf-8")
