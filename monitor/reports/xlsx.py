"""Render a ``GapReport`` as an Excel workbook (openpyxl).

Sheets: a summary (status counts per target, composite scores), one sheet per
target with its units worst first, a units × targets matrix, and a flat data sheet
with every field of every ``GapRow`` for pivot tables.

Values are typed: ratios are numbers with a percent format (Excel shows the decimal
separator of the reader's locale, so a Vietnamese Excel shows "72,5%"), dates and
times are Excel dates — times in the province's timezone, without a zone (Excel has
none), the zone being named in the headers.

Formula injection: openpyxl turns any string that starts with ``=`` into a formula,
and strings such as ``#N/A`` into error values. Every text cell here is forced back
to a plain string (the long tables, written without openpyxl's cells, only ever hold
inline strings), and texts that a spreadsheet could read as a formula when edited
(``= + - @``, tab, CR) also get Excel's "quote prefix" style, so even re-entering the
cell keeps it text. Nothing a unit's name contains can become a formula.

Speed: openpyxl takes some 25 µs to build and write one cell, some 20 s for the
800,000 cells of a 1,000-unit, 20-target report. So only the headings, titles, notes,
links and comments are openpyxl cells; the long tables (the rows of the target
sheets, the matrix and the data sheet) are written as the sheet XML's ``<row>``
elements directly, in about 1.5 µs a cell, and spliced into the sheets openpyxl
writes, with the same values, styles and widths. openpyxl still writes everything
else: workbook, styles, sheet settings, hyperlinks, comments.

The output is deterministic: the same report gives the same bytes (the document
properties and the zip entries carry ``generated_at``, not the clock).
"""

from __future__ import annotations

import codecs
import math
import os
import re
from collections.abc import Callable, Sequence
from copy import copy
from dataclasses import dataclass, field, fields
from datetime import date, datetime, tzinfo
from io import BytesIO
from typing import Any
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell.cell import Cell
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.styles.cell_style import StyleArray
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel
from openpyxl.writer.excel import ExcelWriter

from monitor.alerts.compose import safe_url
from monitor.reports.model import REPORT_STATUSES, GapReport, GapRow, Language, TargetSection
from monitor.reports.names import STATUS_NAMES
from monitor.templating import data_day, format_moment, zone_label

CREATOR = "egov-kpi-monitor"
MAX_WIDTH = 60  # characters; longer texts wrap in the cell
MIN_WIDTH = 6
HEADER_FIT = 18  # a header wraps rather than widen its column past this
MAX_SHEET_NAME = 31

PERCENT = "0.0%"
SIGNED_PERCENT = "+0.0%;-0.0%;0.0%"  # gaps and trends: ratio units shown as percentage points
SCORE = "0.0"
DATE_FORMATS: dict[Language, str] = {"vi": "dd/mm/yyyy", "en": "yyyy-mm-dd"}
DATETIME_FORMATS: dict[Language, str] = {"vi": "dd/mm/yyyy hh:mm", "en": "yyyy-mm-dd hh:mm"}
ISO_DATE = "yyyy-mm-dd"
ISO_DATETIME = "yyyy-mm-dd hh:mm:ss"
COMPARATOR_SYMBOLS = {">=": "≥", "<=": "≤"}

# Fixed texts. The two catalogues have the same keys (a test checks it).
TEXTS: dict[Language, dict[str, str]] = {
    "vi": {
        "sheet_summary": "Tổng hợp",
        "sheet_matrix": "Ma trận",
        "sheet_data": "Dữ liệu",
        "report_title": "Báo cáo tiến độ thực hiện chỉ tiêu Chính phủ điện tử",
        "scope": "Phạm vi",
        "as_of": "số liệu tính đến",
        "target_title": "Chỉ tiêu",
        "kpi": "Chỉ số",
        "target": "Mục tiêu",
        "deadline": "Hạn hoàn thành",
        "total": "Tổng",
        "all_targets": "Tất cả chỉ tiêu",
        "citation": "Căn cứ",
        "unverified": "chưa kiểm chứng",
        "scores": "Chỉ số tổng hợp",
        "index": "Bộ chỉ số",
        "score": "Điểm",
        "max_score": "Điểm tối đa",
        "scaled": "Điểm quy đổi (0–100)",
        "complete": "Đủ số liệu",
        "yes": "Có",
        "no": "Không",
        "unit_code": "Mã đơn vị",
        "unit": "Đơn vị",
        "group": "Nhóm",
        "status": "Trạng thái",
        "actual": "Giá trị hiện tại",
        "expected": "Theo lộ trình đến hôm nay",
        "gap": "Chênh lệch so với lộ trình (điểm %)",
        "gap_to_target": "Còn cách mục tiêu (điểm %)",
        "forecast": "Dự báo tại hạn hoàn thành",
        "reached_on": "Dự kiến đạt mục tiêu ngày",
        "trend": "Xu hướng (điểm %/năm)",
        "data_through": "Số liệu đến ngày",
        "since": "Cảnh báo từ ({zone})",
        "rank": "Xếp hạng trong nhóm",
        "legend": "Chú giải",
        "matrix_note": ("Giá trị: tỷ lệ hiện tại; màu: trạng thái."
                        " Ô trống không màu: chỉ tiêu không áp dụng cho đơn vị."),
        "time_note": "Ngày giờ theo {zone} ({name}).",
        "data_time_note": "Giờ địa phương, {name}; Excel không lưu múi giờ.",
        "data_through_note": "Thời điểm kết thúc (không bao gồm) của kỳ số liệu mới nhất.",
    },
    "en": {
        "sheet_summary": "Summary",
        "sheet_matrix": "Matrix",
        "sheet_data": "Data",
        "report_title": "E-government target progress report",
        "scope": "Scope",
        "as_of": "data as of",
        "target_title": "Target",
        "kpi": "Indicator",
        "target": "Target",
        "deadline": "Deadline",
        "total": "Total",
        "all_targets": "All targets",
        "citation": "Basis",
        "unverified": "unverified",
        "scores": "Composite scores",
        "index": "Index",
        "score": "Score",
        "max_score": "Maximum",
        "scaled": "Scaled (0–100)",
        "complete": "Complete data",
        "yes": "Yes",
        "no": "No",
        "unit_code": "Unit code",
        "unit": "Unit",
        "group": "Group",
        "status": "Status",
        "actual": "Current value",
        "expected": "Expected by today",
        "gap": "Gap to the plan (pts)",
        "gap_to_target": "Distance to the target (pts)",
        "forecast": "Forecast at the deadline",
        "reached_on": "Expected to reach the target on",
        "trend": "Trend (pts/year)",
        "data_through": "Data through",
        "since": "Alerting since ({zone})",
        "rank": "Rank in group",
        "legend": "Legend",
        "matrix_note": ("Value: current ratio; colour: status."
                        " Empty, uncoloured: the target does not apply to the unit."),
        "time_note": "Dates and times in {zone} ({name}).",
        "data_time_note": "Local time, {name}; Excel stores no timezone.",
        "data_through_note": "Exclusive end of the newest data period.",
    },
}

STATUS_LABELS = STATUS_NAMES  # one table for every report format

# Red for behind/missed (darker when the deadline has passed), amber at risk, green on
# track/met, grey when there is nothing to judge. Each status its own shade, for the legend.
STATUS_COLOURS = {"missed": "E06666", "behind": "F4CCCC", "at_risk": "FFE599", "on_track": "D9EAD3",
                  "met": "B6D7A8", "no_data": "D9D9D9", "stale": "EFEFEF"}
UNKNOWN_COLOUR = "FFFFFF"

# GapRow fields holding ratios (percent format) and signed ratio differences.
RATIO_FIELDS = frozenset({"actual", "expected", "target", "forecast_value"})
SIGNED_RATIO_FIELDS = frozenset({"gap", "gap_to_target", "trend_per_year"})

_ILLEGAL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # not allowed in XML 1.0 / by openpyxl
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_SHEET_NAME_INVALID = re.compile(r"[\[\]:*?/\\]")

_BOLD = Font(bold=True)
_TITLE = Font(bold=True, size=14)
_SUBTITLE = Font(bold=True, size=12)
_LINK = Font(color="0563C1", underline="single")
_HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
_HEADER_BORDER = Border(bottom=Side(style="thin", color="808080"))
_WRAP = Alignment(wrap_text=True, vertical="top")
_TOP = Alignment(vertical="top")
_FILLS = {status: PatternFill("solid", fgColor=colour) for status, colour in STATUS_COLOURS.items()}
_UNKNOWN_FILL = PatternFill("solid", fgColor=UNKNOWN_COLOUR)


def status_label(status: str, lang: Language) -> str:
    return STATUS_LABELS[lang].get(status, status)


def status_fill(status: str) -> PatternFill:
    return _FILLS.get(status, _UNKNOWN_FILL)


def clean_text(value: str) -> str:
    """Text openpyxl accepts: control characters XML forbids become U+FFFD."""
    return _ILLEGAL_CHARACTERS.sub("\ufffd", value)


def sheet_name(raw: str, taken: set[str]) -> str:
    """A valid, unique sheet name from ``raw``: no ``[]:*?/\\``, no leading or trailing
    apostrophe, at most 31 characters, unique ignoring case (as Excel compares).
    ``taken`` holds the casefolded names in use and is updated."""
    base = _SHEET_NAME_INVALID.sub("_", _ILLEGAL_CHARACTERS.sub("_", raw)).strip().strip("'").strip()
    base = base[:MAX_SHEET_NAME].strip() or "_"
    name, n = base, 2
    while name.casefold() in taken:
        suffix = f"~{n}"
        name = base[: MAX_SHEET_NAME - len(suffix)] + suffix
        n += 1
    taken.add(name.casefold())
    return name


def _local(value: datetime, tz: tzinfo) -> datetime:
    """An aware instant as naive local time (Excel has no zones); a naive one is kept."""
    if value.tzinfo is None:
        return value
    return value.astimezone(tz).replace(tzinfo=None)


def _display_width(value: object, number_format: str | None) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return max((len(line) for line in value.splitlines()), default=0)
    if isinstance(value, datetime):
        return 16
    if isinstance(value, date):
        return 10
    if isinstance(value, bool):
        return 5
    if number_format and "%" in number_format:
        return 9 if '"' in number_format else 7
    if isinstance(value, float):
        return len(f"{value:.2f}")
    return len(str(value))


class _Styles:
    """Cell styles of one workbook, by the ids of the style objects they combine (kept alive
    alongside, so an id cannot be reused): the style array to give an openpyxl cell, and the
    index of the cell format (``s`` in the sheet XML) that table rows refer to."""

    def __init__(self) -> None:
        self._styles: dict[tuple[object, ...], tuple[StyleArray, int, tuple[object, ...]]] = {}

    def get(self, ws: Any, fmt: str | None = None, font: Font | None = None, fill: PatternFill | None = None,
            align: Alignment | None = None, border: Border | None = None,
            quote: bool = False) -> tuple[StyleArray, int]:
        key = (fmt, id(font), id(fill), id(align), id(border), quote)
        found = self._styles.get(key)
        if found is None:
            probe = Cell(ws)  # not placed in the sheet: only registers the style with the workbook
            if fmt is not None:
                probe.number_format = fmt
            if font is not None:
                probe.font = font
            if fill is not None:
                probe.fill = fill
            if align is not None:
                probe.alignment = align
            if border is not None:
                probe.border = border
            if quote:
                probe.quotePrefix = True
            found = (probe._style, probe.style_id, (font, fill, align, border))
            self._styles[key] = found
        return found[0], found[1]


@dataclass(frozen=True)
class _Series:
    """One column of a table: its values top down, their number format, and each
    cell's fill (``None``: not filled)."""

    values: Sequence[object]
    fmt: str | None = None
    fills: Sequence[PatternFill | None] | None = None


@dataclass(frozen=True)
class _Table:
    """Rows ``first_row`` to ``last_row`` of a sheet, as the ``<row>`` elements of its XML."""

    first_row: int
    last_row: int
    columns: int
    xml: bytes


# A table column being written: its letter, values, number format, fills, and the ``s``
# attributes already looked up, by the id of the fill, for cells without and with a quote prefix.
_TableColumn = tuple[str, list[object], str | None, Sequence[PatternFill | None] | None, dict[int, str],
                     dict[int, str]]


def _escape(text: str) -> str:
    # A CR kept as a character would be read back as a line feed (XML end-of-line handling).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


@dataclass
class _Sheet:
    """A worksheet being laid out: single cells go into the openpyxl sheet (``put``); long
    tables (``table``) are written straight to sheet XML rows, which ``render_xlsx`` splices
    into the sheet openpyxl writes (see the module's docstring)."""

    ws: Any
    tz: tzinfo
    styles: _Styles
    widths: dict[int, int] = field(default_factory=dict)
    header_rows: list[tuple[int, int, list[str]]] = field(default_factory=list)
    tables: list[_Table] = field(default_factory=list)
    cell_rows: set[int] = field(default_factory=set)  # rows holding cells put

    def _value(self, value: object) -> object:
        """``value`` as a cell holds it: local naive time, no infinite or NaN number, clean text."""
        if isinstance(value, str):
            return clean_text(value)
        if isinstance(value, datetime):
            return _local(value, self.tz)
        if isinstance(value, float) and not math.isfinite(value):
            return None  # openpyxl would write an empty number
        return value

    def put(self, row: int, col: int, value: object, *, fmt: str | None = None, font: Font | None = None,
            fill: PatternFill | None = None, align: Alignment | None = None, border: Border | None = None,
            fit: bool = True, fit_cap: int = MAX_WIDTH, link: str | None = None) -> Any:
        """Write one typed value; strings are always stored as strings, never formulas.
        Nothing (no cell) for a missing value unless it is filled."""
        value = self._value(value)
        if value is None and fill is None:
            return None
        if any(table.first_row <= row <= table.last_row for table in self.tables):
            raise ValueError(f"row {row} belongs to a table")
        self.cell_rows.add(row)
        cell = self.ws.cell(row=row, column=col)
        cell.value = value
        quote = False
        if isinstance(value, str):
            cell.data_type = "s"  # openpyxl made "=…" a formula and "#N/A" an error: undo that
            quote = value.startswith(_FORMULA_PREFIXES)  # stays text even when edited in Excel
        if link is not None:
            font = _LINK
        if fmt is not None or font is not None or fill is not None or align is not None or border is not None \
                or quote:
            cell._style = copy(self.styles.get(self.ws, fmt, font, fill, align, border, quote)[0])
        if link is not None:
            cell.hyperlink = link
        if fit:
            width = min(fit_cap, _display_width(value, fmt))
            if width > self.widths.get(col, 0):
                self.widths[col] = width
        return cell

    def header(self, row: int, labels: Sequence[str], *, start: int = 1,
               fills: Sequence[PatternFill | None] = ()) -> None:
        for offset, label in enumerate(labels):
            fill = fills[offset] if offset < len(fills) and fills[offset] is not None else _HEADER_FILL
            self.put(row, start + offset, label, font=_BOLD, fill=fill, align=_WRAP, border=_HEADER_BORDER,
                     fit_cap=HEADER_FIT)
        self.header_rows.append((row, start, list(labels)))

    def table(self, first_row: int, series: Sequence[_Series]) -> int:
        """Write a table from ``first_row`` down, column ``i`` from ``series[i]``, with the same
        cells ``put`` would make; its last row. No other cell may be put in its rows."""
        height = len(series[0].values) if series else 0
        last_row = first_row + height - 1
        if any(len(s.values) != height for s in series):
            raise ValueError("table columns of different lengths")
        if any(first_row <= row <= last_row for row in self.cell_rows):
            raise ValueError(f"rows {first_row}-{last_row} already hold cells")
        columns: list[_TableColumn] = []
        for col, column in enumerate(series, start=1):
            values = list(column.values)
            if any(issubclass(kind, str | datetime | float) for kind in set(map(type, values))):
                values = [self._value(v) for v in values]
            width = min(MAX_WIDTH, _column_width(values, column.fmt))
            if width > self.widths.get(col, 0):
                self.widths[col] = width
            columns.append((get_column_letter(col), values, column.fmt, column.fills, {}, {}))
        if height:
            self.tables.append(_Table(first_row, last_row, len(series), self._rows_xml(first_row, height, columns)))
        return last_row

    def _rows_xml(self, first_row: int, height: int, columns: list[_TableColumn]) -> bytes:
        """The ``<row>`` elements of a table. Text is an inline string (``t="inlineStr"``) and
        nothing else ever is: no formula (``<f>``), no error value, whatever the text says."""
        ws, styles, epoch = self.ws, self.styles, self.ws.parent.epoch

        def style(fmt: str | None, fill: PatternFill | None, quote: bool) -> str:
            if fmt is None and fill is None and not quote:
                return ""
            return f' s="{styles.get(ws, fmt, fill=fill, quote=quote)[1]}"'

        out: list[str] = []
        chunks: list[bytes] = []  # encoded every few hundred rows: bytes take less room than many small strings
        for i in range(height):
            if len(out) > 10_000:
                chunks.append("".join(out).encode())
                out.clear()
            r = str(first_row + i)
            out.append(f'<row r="{r}">')
            for letter, values, fmt, fills, plain, quoted in columns:
                value = values[i]
                fill = None if fills is None else fills[i]
                empty = value is None or value == ""
                if empty and fill is None:
                    continue
                attribute = plain.get(id(fill))
                if attribute is None:
                    attribute = plain[id(fill)] = style(fmt, fill, False)
                if empty:
                    out.append(f'<c r="{letter}{r}"{attribute}/>')
                elif isinstance(value, str):
                    if value.startswith(_FORMULA_PREFIXES):  # stays text even when edited in Excel
                        attribute = quoted.get(id(fill)) or quoted.setdefault(id(fill), style(fmt, fill, True))
                    space = ' xml:space="preserve"' if value != value.strip() else ""
                    out.append(f'<c r="{letter}{r}"{attribute} t="inlineStr">'
                               f'<is><t{space}>{_escape(value)}</t></is></c>')
                elif isinstance(value, bool):
                    out.append(f'<c r="{letter}{r}"{attribute} t="b"><v>{int(value)}</v></c>')
                elif isinstance(value, int | float):  # 16 significant digits, as openpyxl writes numbers
                    out.append(f'<c r="{letter}{r}"{attribute} t="n"><v>{value:.16g}</v></c>')
                elif isinstance(value, date):  # and datetime: a serial number, shown as a date by its format
                    out.append(f'<c r="{letter}{r}"{attribute} t="n"><v>{to_excel(value, epoch):.16g}</v></c>')
                else:
                    raise TypeError(f"cannot write {type(value).__name__} to a cell")
            out.append("</row>")
        chunks.append("".join(out).encode())
        return b"".join(chunks)

    def finish(self, freeze: str | None) -> None:
        for col, chars in self.widths.items():
            self.ws.column_dimensions[get_column_letter(col)].width = max(MIN_WIDTH, min(MAX_WIDTH, chars + 2))
        # Wrapped headers: give the row the height its longest label needs.
        for row, start, labels in self.header_rows:
            lines = 1
            for offset, label in enumerate(labels):
                width = max(MIN_WIDTH, min(MAX_WIDTH, self.widths.get(start + offset, 0) + 2))
                lines = max(lines, math.ceil(len(label) / max(1, width - 1)))
            self.ws.row_dimensions[row].height = 15 * lines
        if freeze is not None:
            self.ws.freeze_panes = freeze


def _column_width(values: Sequence[object], fmt: str | None) -> int:
    """The widest display width among ``values`` (measured once per distinct value and type:
    a column of 20,000 rows holds a few hundred)."""
    distinct = set(zip(map(type, values), values, strict=True))
    return max((_display_width(value, fmt) for _, value in distinct), default=0)


_ROW = re.compile(rb'<row r="(\d+)"')
_SHEET_DATA_END = re.compile(rb"</sheetData>|<sheetData\s*/>")
_DIMENSION = re.compile(rb'<dimension ref="[^"]*"')
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding=["']([\w.:-]+)["']""")


def _splice(xml: bytes, sheet: _Sheet) -> bytes:
    """The sheet XML openpyxl wrote, with the rows of ``sheet``'s tables put in their places
    (rows stay in ascending order, as the format requires) and the used range widened."""
    declared = _DECLARED_ENCODING.match(xml)
    encoding = codecs.lookup(declared.group(1).decode() if declared else "utf-8").name  # XML's default: UTF-8
    for table in sorted(sheet.tables, key=lambda t: t.first_row, reverse=True):
        rows = table.xml if encoding == "utf-8" else table.xml.decode().encode(encoding, "xmlcharrefreplace")
        written = [(int(m.group(1)), m.start()) for m in _ROW.finditer(xml)]
        if any(table.first_row <= row <= table.last_row for row, _ in written):
            raise ValueError(f"openpyxl wrote a row among the table's rows {table.first_row}-{table.last_row}")
        at = next((start for row, start in written if row > table.last_row), None)
        if at is not None:
            xml = xml[:at] + rows + xml[at:]
            continue
        end = _SHEET_DATA_END.search(xml)
        if end is None:
            raise ValueError("no sheetData in the worksheet XML")
        if end.group().startswith(b"</"):
            xml = xml[:end.start()] + rows + xml[end.start():]
        else:
            xml = xml[:end.start()] + b"<sheetData>" + rows + b"</sheetData>" + xml[end.end():]
    ws, tables = sheet.ws, sheet.tables
    top, bottom = min([ws.min_row, *(t.first_row for t in tables)]), max([ws.max_row, *(t.last_row for t in tables)])
    left = 1 if tables else ws.min_column  # tables start in column A
    right = max([ws.max_column, *(t.columns for t in tables)])
    ref = f"{get_column_letter(left)}{top}:{get_column_letter(right)}{bottom}"
    return _DIMENSION.sub(f'<dimension ref="{ref}"'.encode(), xml, count=1)


def _new_sheet(wb: Any, title: str, tz: tzinfo, styles: _Styles) -> _Sheet:
    return _Sheet(wb.create_sheet(title=title), tz, styles)


def _target_format(comparator: str) -> str:
    symbol = COMPARATOR_SYMBOLS.get(comparator, comparator)
    return f'"{symbol} "{PERCENT}' if symbol else PERCENT


def _citation(section: TargetSection, texts: dict[str, str]) -> str:
    if section.citation_verified:
        return section.citation
    return f"{section.citation} ({texts['unverified']})"


# --- Sheets ------------------------------------------------------------------------------------------


def _summary(sheet: _Sheet, report: GapReport, lang: Language, zone: str) -> None:
    texts = TEXTS[lang]
    tz = sheet.tz
    dates = DATE_FORMATS[lang]
    sheet.put(1, 1, f"{texts['report_title']} — {report.province}", font=_TITLE, fit=False)
    moment = format_moment(report.as_of, tz, report.timezone, lang)
    sheet.put(2, 1, f"{texts['scope']}: {report.scope_name} — {texts['as_of']} {moment}", fit=False)
    sheet.put(3, 1, texts["time_note"].format(zone=zone, name=report.timezone), fit=False)

    header = [texts["target_title"], texts["kpi"], texts["target"], texts["deadline"],
              *(status_label(s, lang) for s in REPORT_STATUSES), texts["total"], texts["citation"]]
    fills: list[PatternFill | None] = [None] * 4 + [status_fill(s) for s in REPORT_STATUSES]
    sheet.header(5, header, fills=fills)
    first_status = 5

    sheet.put(6, 1, texts["all_targets"], font=_BOLD)
    for i, status in enumerate(REPORT_STATUSES):
        sheet.put(6, first_status + i, report.status_counts.get(status, 0), font=_BOLD)
    sheet.put(6, first_status + len(REPORT_STATUSES), sum(report.status_counts.values()), font=_BOLD)

    row = 7
    for section in report.targets:
        sheet.put(row, 1, section.title, align=_TOP)
        sheet.put(row, 2, section.kpi_name, align=_TOP)
        sheet.put(row, 3, section.target, fmt=_target_format(section.comparator))
        sheet.put(row, 4, section.deadline, fmt=dates)
        for i, status in enumerate(REPORT_STATUSES):
            sheet.put(row, first_status + i, section.status_counts.get(status, 0))
        sheet.put(row, first_status + len(REPORT_STATUSES), sum(section.status_counts.values()))
        sheet.put(row, first_status + len(REPORT_STATUSES) + 1, _citation(section, texts),
                  link=safe_url(section.citation_url))
        row += 1

    if report.scores:
        row += 1
        sheet.put(row, 1, texts["scores"], font=_SUBTITLE, fit=False)
        row += 1
        sheet.header(row, [texts["index"], texts["unit_code"], texts["unit"], texts["group"], texts["score"],
                           texts["max_score"], texts["scaled"], texts["rank"], texts["complete"]])
        for score in report.scores:
            row += 1
            sheet.put(row, 1, score.index_name)
            sheet.put(row, 2, score.unit)
            sheet.put(row, 3, score.unit_name)
            sheet.put(row, 4, score.group_name)
            sheet.put(row, 5, score.score, fmt=SCORE)
            sheet.put(row, 6, score.max_score, fmt=SCORE)
            sheet.put(row, 7, score.scaled, fmt=SCORE)
            sheet.put(row, 8, f"{score.rank}/{score.rank_size}")
            sheet.put(row, 9, texts["yes"] if score.complete else texts["no"])
    sheet.finish("B6")


@dataclass(frozen=True)
class _Column:
    header: str
    value: Callable[[GapRow], object]
    fmt: str | None = None


def _target_columns(lang: Language, tz: tzinfo, zone: str) -> list[_Column]:
    texts = TEXTS[lang]
    dates, times = DATE_FORMATS[lang], DATETIME_FORMATS[lang]
    return [
        _Column(texts["unit_code"], lambda r: r.unit),
        _Column(texts["unit"], lambda r: r.unit_name),
        _Column(texts["group"], lambda r: r.group_name),
        _Column(texts["status"], lambda r: status_label(r.status, lang)),
        _Column(texts["actual"], lambda r: r.actual, PERCENT),
        _Column(texts["expected"], lambda r: r.expected, PERCENT),
        _Column(texts["gap"], lambda r: r.gap, SIGNED_PERCENT),
        _Column(texts["gap_to_target"], lambda r: r.gap_to_target, SIGNED_PERCENT),
        _Column(texts["forecast"], lambda r: r.forecast_value, PERCENT),
        _Column(texts["reached_on"], lambda r: r.forecast_reached_on, dates),
        _Column(texts["trend"], lambda r: r.trend_per_year, SIGNED_PERCENT),
        _Column(texts["data_through"], lambda r: None if r.data_through is None else data_day(r.data_through, tz),
                dates),
        _Column(texts["since"].format(zone=zone), lambda r: r.behind_since, times),
        _Column(texts["rank"], lambda r: None if r.rank is None else f"{r.rank}/{r.rank_size or '?'}"),
    ]


STATUS_COLUMN = 4  # 1-based, in ``_target_columns``
TARGET_TABLE_ROW = 5  # the header row of a target sheet's table


def _target_sheet(sheet: _Sheet, section: TargetSection, columns: Sequence[_Column], lang: Language) -> None:
    texts = TEXTS[lang]
    sheet.put(1, 1, section.title, font=_SUBTITLE, fit=False)
    sheet.put(2, 1, f"{texts['citation']}: {_citation(section, texts)}", fit=False,
              link=safe_url(section.citation_url))
    sheet.put(3, 1, texts["kpi"], font=_BOLD)
    sheet.put(3, 2, section.kpi_name)
    sheet.put(3, 3, texts["target"], font=_BOLD)
    sheet.put(3, 4, section.target, fmt=_target_format(section.comparator))
    sheet.put(3, 5, texts["deadline"], font=_BOLD)
    sheet.put(3, 6, section.deadline, fmt=DATE_FORMATS[lang])
    sheet.header(TARGET_TABLE_ROW, [column.header for column in columns])
    fills = [status_fill(gap_row.status) for gap_row in section.rows]
    row = sheet.table(TARGET_TABLE_ROW + 1, [
        _Series([column.value(gap_row) for gap_row in section.rows], column.fmt,
                fills if col == STATUS_COLUMN else None)
        for col, column in enumerate(columns, start=1)])
    if section.rows:
        sheet.ws.auto_filter.ref = f"A{TARGET_TABLE_ROW}:{get_column_letter(len(columns))}{row}"
    sheet.finish(f"C{TARGET_TABLE_ROW + 1}")


def _matrix(sheet: _Sheet, report: GapReport, lang: Language) -> None:
    texts = TEXTS[lang]
    sheet.header(1, [texts["unit_code"], texts["unit"], *(section.title for section in report.targets)])
    by_target = [{row.unit: row for row in section.rows} for section in report.targets]
    units = [(unit.code, unit.name) for unit in report.units]
    known = {code for code, _ in units}
    for section in report.targets:  # a row for a unit the report's unit list lacks still shows
        for gap_row in section.rows:
            if gap_row.unit not in known:
                known.add(gap_row.unit)
                units.append((gap_row.unit, gap_row.unit_name))
    series = [_Series([code for code, _ in units]), _Series([name for _, name in units])]
    for rows in by_target:  # a unit the target does not cover: no cell at all
        found = [rows.get(code) for code, _ in units]
        series.append(_Series([None if f is None else f.actual for f in found], PERCENT,
                              [None if f is None else status_fill(f.status) for f in found]))
    row = sheet.table(2, series)
    for col in range(3, 3 + len(report.targets)):
        sheet.widths[col] = max(sheet.widths.get(col, 0), 10)
    row += 2
    sheet.put(row, 1, texts["legend"], font=_BOLD)
    sheet.put(row, 2, texts["matrix_note"], fit=False)
    for status in REPORT_STATUSES:
        row += 1
        sheet.put(row, 1, None, fill=status_fill(status))
        sheet.put(row, 2, status_label(status, lang))
    sheet.finish("C2")


def _data(sheet: _Sheet, report: GapReport, lang: Language) -> None:
    texts = TEXTS[lang]
    names = [f.name for f in fields(GapRow)]
    sheet.header(1, names)
    for col, name in enumerate(names, start=1):
        if name in ("data_through", "behind_since"):
            note = texts["data_time_note"].format(name=report.timezone)
            if name == "data_through":
                note = f"{note} {texts['data_through_note']}"
            sheet.ws.cell(row=1, column=col).comment = Comment(note, CREATOR)
    formats: list[str | None] = []
    for f in fields(GapRow):
        if f.name in RATIO_FIELDS:
            formats.append(PERCENT)
        elif f.name in SIGNED_RATIO_FIELDS:
            formats.append(SIGNED_PERCENT)
        elif f.name in ("deadline", "forecast_reached_on"):
            formats.append(ISO_DATE)
        elif f.name in ("data_through", "behind_since"):
            formats.append(ISO_DATETIME)
        else:
            formats.append(None)
    rows = report.rows
    row = sheet.table(2, [_Series([getattr(gap_row, name) for gap_row in rows], fmt)
                          for name, fmt in zip(names, formats, strict=True)])
    sheet.ws.auto_filter.ref = f"A1:{get_column_letter(len(names))}{row}"
    sheet.finish("A2")


# --- Workbook ----------------------------------------------------------------------------------------


class _StampedZip(ZipFile):
    """A zip whose entries carry a given timestamp rather than the clock's (or a file's).
    The worksheet being written (``sheet``, set by ``_Writer``) gets its tables spliced in."""

    def __init__(self, file: BytesIO, stamp: tuple[int, int, int, int, int, int]) -> None:
        super().__init__(file, "w", ZIP_DEFLATED, allowZip64=True)
        self._stamp = stamp
        self.sheet: _Sheet | None = None
        self.spliced: set[int] = set()  # ids of the sheets spliced

    def writestr(self, zinfo_or_arcname: Any, data: Any, compress_type: int | None = None,
                 compresslevel: int | None = None) -> None:
        if isinstance(zinfo_or_arcname, str):
            info = ZipInfo(zinfo_or_arcname, date_time=self._stamp)
            info.compress_type = ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            zinfo_or_arcname = info
        super().writestr(zinfo_or_arcname, data, compress_type, compresslevel)

    def write(self, filename: Any, arcname: Any = None, compress_type: int | None = None,
              compresslevel: int | None = None) -> None:
        """openpyxl writes each worksheet from a temporary file: take its bytes, not its mtime."""
        with open(filename, "rb") as source:
            data = source.read()
        if self.sheet is not None:
            data = _splice(data, self.sheet)
            self.spliced.add(id(self.sheet))
        self.writestr(os.fspath(arcname if arcname is not None else filename).lstrip("/"), data, compress_type,
                      compresslevel)


class _Writer(ExcelWriter):  # type: ignore[misc]  # openpyxl is untyped
    """openpyxl's workbook writer, telling the archive which sheet it is writing."""

    def __init__(self, wb: Any, archive: _StampedZip, sheets: Sequence[_Sheet]) -> None:
        super().__init__(wb, archive)
        self._zip = archive
        self._sheets = {id(sheet.ws): sheet for sheet in sheets}

    def write_worksheet(self, ws: Any) -> None:
        self._zip.sheet = self._sheets.get(id(ws))
        try:
            super().write_worksheet(ws)
        finally:
            self._zip.sheet = None


def _build(report: GapReport) -> tuple[Any, list[_Sheet]]:
    """The workbook (an ``openpyxl.Workbook``) for ``report``, not yet saved, and its sheets,
    whose tables (``_Sheet.tables``) are only in the file that ``render_xlsx`` writes."""
    lang: Language = report.language if report.language in TEXTS else "vi"
    texts = TEXTS[lang]
    tz = ZoneInfo(report.timezone)
    zone = zone_label(report.timezone, lang)
    wb = Workbook()
    wb.remove(wb.active)
    styles = _Styles()
    sheets = [_new_sheet(wb, title, tz, styles) for title in sheet_names(report)]

    _summary(sheets[0], report, lang, zone)
    columns = _target_columns(lang, tz, zone)
    for sheet, section in zip(sheets[1:-2], report.targets, strict=True):
        _target_sheet(sheet, section, columns, lang)
    _matrix(sheets[-2], report, lang)
    _data(sheets[-1], report, lang)

    created = _local(report.generated_at, ZoneInfo("UTC"))
    title = f"{texts['report_title']} — {report.province}"
    if report.scope_name != report.province:
        title = f"{title} — {report.scope_name}"
    wb.properties.title = clean_text(title)
    wb.properties.creator = CREATOR
    wb.properties.language = "vi-VN" if lang == "vi" else "en"
    wb.properties.created = created
    wb.properties.modified = created
    return wb, sheets


def render_xlsx(report: GapReport) -> bytes:
    """The report as the bytes of an .xlsx file; the same report gives the same bytes."""
    wb, sheets = _build(report)
    stamp = _local(report.generated_at, ZoneInfo(report.timezone))
    buffer = BytesIO()
    # ExcelWriter rather than Workbook.save, which stamps the properties with the clock.
    archive = _StampedZip(buffer, (max(stamp.year, 1980), stamp.month, stamp.day, stamp.hour, stamp.minute,
                                   stamp.second))
    _Writer(wb, archive, sheets).save()
    if any(sheet.tables and id(sheet) not in archive.spliced for sheet in sheets):
        raise RuntimeError("openpyxl did not write a worksheet through ZipFile.write: its tables are missing")
    return buffer.getvalue()


def sheet_names(report: GapReport) -> list[str]:
    """The sheet names ``render_xlsx`` gives ``report``, in order."""
    lang: Language = report.language if report.language in TEXTS else "vi"
    texts = TEXTS[lang]
    taken = {"history"}
    fixed = [sheet_name(texts[key], taken) for key in ("sheet_summary", "sheet_matrix", "sheet_data")]
    return [fixed[0], *(sheet_name(section.rule, taken) for section in report.targets), fixed[1], fixed[2]]

