"""The drop-folder report template of the ``spreadsheet`` kind: its columns, and the files shipped.

A report has one row per (unit, period): ``Mã đơn vị``, ``Kỳ báo cáo``, then one
column per measure, headed by the measure's Vietnamese name from the catalog
(the measure id is accepted too). The shipped templates in
``collectors/templates/`` cover every measure a unit can report (all but the
unit registry's); a folder that takes fewer measures gets its own with::

    python -m collectors.spreadsheet_template OUT_DIR --measures docs_outgoing_total,docs_outgoing_electronic
"""

from __future__ import annotations

import argparse
import csv
import io
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill

from monitor.catalog import Catalog, load_catalog

UNIT_HEADER = "Mã đơn vị"
PERIOD_HEADER = "Kỳ báo cáo"
DATA_SHEET = "Báo cáo"
GUIDE_SHEET = "Hướng dẫn"
TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE_STEM = "spreadsheet"
# Fixed document dates, so that writing the template twice gives the same workbook.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)


@cache
def shipped_catalog() -> Catalog:
    return load_catalog()


def default_measures() -> tuple[str, ...]:
    """Every measure a unit reports itself: all but those the service takes from the unit registry."""
    return tuple(m for m, spec in shipped_catalog().measures.items() if spec.source_kind != "registry")


def header_key(text: str) -> str:
    """How headers are compared: NFC (macOS writes NFD), case and runs of spaces ignored."""
    return " ".join(unicodedata.normalize("NFC", text).split()).casefold()


def measure_header(measure: str, aliases: Mapping[str, str] | None = None) -> str:
    """The header written in templates: the alias the folder configured, else the catalog's Vietnamese name."""
    if aliases and measure in aliases:
        return aliases[measure]
    spec = shipped_catalog().measures.get(measure)
    return spec.vi if spec is not None else measure


def headers(measures: Sequence[str], aliases: Mapping[str, str] | None = None) -> list[str]:
    return [UNIT_HEADER, PERIOD_HEADER, *(measure_header(m, aliases) for m in measures)]


def guide_rows(measures: Sequence[str], aliases: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(column, what to write, example) for the guide sheet."""
    catalog = shipped_catalog()
    rows = [
        ("Cột / Column", "Nội dung / Content", "Ví dụ / Example"),
        (UNIT_HEADER, "Mã định danh đơn vị (QCVN 102), đúng như trong danh mục đơn vị. "
         "Unit code as in the unit registry.", "000.00.31.H99"),
        (PERIOD_HEADER, "Kỳ báo cáo dạng văn bản: YYYY-MM (báo cáo tháng) hoặc YYYY-MM-DD (báo cáo ngày). "
         "Reporting period as text: YYYY-MM (monthly) or YYYY-MM-DD (daily).", "2026-10"),
    ]
    for measure in measures:
        spec = catalog.measures.get(measure)
        meaning = ""
        if spec is not None:
            kind = "cộng dồn trong kỳ / flow" if spec.kind == "flow" else "số tại cuối kỳ / stock"
            meaning = f"{spec.vi}. {spec.en} ({kind}). "
        rows.append((measure_header(measure, aliases),
                     f"{meaning}Số nguyên ≥ 0, không dùng công thức. Whole number ≥ 0, no formula. "
                     f"Mã chỉ số / measure id: {measure}", "125"))
    rows.append(("", "Mỗi dòng một đơn vị và một kỳ; không lặp lại (đơn vị, kỳ). Tệp có lỗi bị trả lại "
                 "nguyên tệp trong thư mục rejected/ kèm tệp .errors.txt. One row per unit and period, "
                 "no repeats; a file with any error is returned whole to rejected/ with a .errors.txt.", ""))
    return rows


def write_xlsx(path: Path, measures: Sequence[str], aliases: Mapping[str, str] | None = None) -> Path:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = DATA_SHEET
    sheet.append(headers(measures, aliases))
    bold, fill = Font(bold=True), PatternFill("solid", start_color="FFDDEBF7")
    for index, cell in enumerate(sheet[1], start=1):
        cell.font, cell.fill = bold, fill
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        sheet.column_dimensions[cell.column_letter].width = 16 if index <= 2 else 22
    # Text format, so that Excel keeps "2026-10" as typed instead of turning it into a date.
    sheet.column_dimensions["B"].number_format = "@"
    sheet.freeze_panes = "A2"
    guide = workbook.create_sheet(GUIDE_SHEET)
    for line in guide_rows(measures, aliases):
        guide.append(line)
    for cell in guide[1]:
        cell.font = bold
    for letter, width in (("A", 40), ("B", 90), ("C", 16)):
        guide.column_dimensions[letter].width = width
    workbook.properties.created = workbook.properties.modified = _EPOCH
    workbook.properties.creator = "egov-kpi-monitor"
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def csv_text(measures: Sequence[str], aliases: Mapping[str, str] | None = None) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(headers(measures, aliases))
    return buffer.getvalue()


def write_csv(path: Path, measures: Sequence[str], aliases: Mapping[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # With a BOM: Excel on Windows reads a CSV without one in the legacy code page and garbles the accents.
    path.write_bytes(b"\xef\xbb\xbf" + csv_text(measures, aliases).encode("utf-8"))
    return path


def write_templates(folder: Path = TEMPLATES, measures: Sequence[str] | None = None,
                    aliases: Mapping[str, str] | None = None, stem: str = TEMPLATE_STEM) -> list[Path]:
    """Write ``<stem>.xlsx`` and ``<stem>.csv`` into ``folder``; the shipped ones are these with the defaults."""
    chosen = tuple(measures) if measures is not None else default_measures()
    return [write_xlsx(folder / f"{stem}.xlsx", chosen, aliases), write_csv(folder / f"{stem}.csv", chosen, aliases)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the spreadsheet report template (XLSX and CSV).")
    parser.add_argument("folder", type=Path, nargs="?", default=TEMPLATES)
    parser.add_argument("--measures", help="comma-separated measure ids (default: every measure units report)")
    parser.add_argument("--stem", default=TEMPLATE_STEM, help="file name without extension")
    args = parser.parse_args(argv)
    measures = [m.strip() for m in args.measures.split(",") if m.strip()] if args.measures else None
    for path in write_templates(args.folder, measures, stem=args.stem):
        print(path)


if __name__ == "__main__":
    main()
