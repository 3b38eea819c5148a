"""Reports as units deliver them: real XLSX files written by openpyxl and CSV files, a drop folder,
and an independent reading of those files to check what the collector stored against."""

from __future__ import annotations

import csv
import io
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from openpyxl import Workbook, load_workbook

from collectors import SourceSettings
from collectors.spreadsheet import SpreadsheetCollector
from collectors.spreadsheet_template import DATA_SHEET, PERIOD_HEADER, UNIT_HEADER
from monitor.catalog import load_catalog
from monitor.timeutil import FrozenClock, zone

TZ = zone("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)  # 10:00 on 10 November in Hanoi
PROVINCE = "000.00.00.H99"
UNITS = ("000.00.31.H99", "000.00.32.H99", "000.00.33.H99")
MEASURES = ("docs_outgoing_total", "docs_outgoing_electronic", "docs_incoming_total", "docs_incoming_electronic")
CATALOG = load_catalog()
VI = {m: CATALOG.measures[m].vi for m in MEASURES}
HEADER = [UNIT_HEADER, PERIOD_HEADER, *(VI[m] for m in MEASURES)]
OPTIONS: dict[str, Any] = {"measures": list(MEASURES), "min_age": "0s"}

Row = list[Any]


def write_xlsx(path: Path, rows: list[Row], *, header: Row | None = None, sheet: str = DATA_SHEET,
               extra_sheets: tuple[str, ...] = ()) -> Path:
    workbook = Workbook()
    data = workbook.active
    data.title = sheet
    data.append(header if header is not None else HEADER)
    for row in rows:
        data.append(row)
    for name in extra_sheets:
        workbook.create_sheet(name).append(["ghi chú"])
    workbook.save(path)
    return path


def write_csv(path: Path, rows: list[Row], *, header: Row | None = None, encoding: str = "utf-8",
              delimiter: str = ",", errors: str = "strict") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header if header is not None else HEADER)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding, errors))
    return path


def age(folder: Path, seconds: float = 60.0) -> None:
    """Make every file in ``folder`` look delivered ``seconds`` ago (past ``min_age``)."""
    then = time.time() - seconds
    for entry in folder.iterdir():
        if entry.is_file() and not entry.is_symlink():
            os.utime(entry, (then, then))


def collector(folder: Path, *, options: dict[str, Any] | None = None, grain: str = "month",
              now: datetime = NOW) -> SpreadsheetCollector:
    settings = SourceSettings(id="bao-cao", kind="spreadsheet", url=folder.as_uri(),
                              grain=grain,  # type: ignore[arg-type]
                              options={**OPTIONS, **(options or {})})
    # A drop folder needs no HTTP client.
    return SpreadsheetCollector(settings, cast(Any, None), TZ, FrozenClock(now))


# ----------------------------------------------------------------------------- independent reading

def read_back(path: Path) -> list[dict[str, Any]]:
    """The file's data rows as {header: value}, read here without the collector's code."""
    if path.suffix == ".xlsx":
        workbook = load_workbook(path)
        rows = [list(r) for r in workbook[DATA_SHEET].iter_rows(values_only=True)]
        workbook.close()
    else:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    header = [str(h) for h in rows[0]]
    return [dict(zip(header, row, strict=True)) for row in rows[1:] if any(v not in (None, "") for v in row)]


def expected_values(paths: list[Path]) -> dict[tuple[str, str, str], float]:
    """(measure, unit, period label) → the number in the cell."""
    by_vi = {v: m for m, v in VI.items()}
    table: dict[tuple[str, str, str], float] = {}
    for path in paths:
        for row in read_back(path):
            for header, value in row.items():
                measure = by_vi.get(header, header if header in MEASURES else None)
                if measure is not None:
                    table[(measure, str(row[UNIT_HEADER]), str(row[PERIOD_HEADER]))] = float(value)
    return table


UNITS_YAML = f"""\
version: 1
groups:  # the groups the shipped rules and indices name
  tinh: {{vi: "Tỉnh", en: "Province"}}
  so_nganh: {{vi: "Sở, ban, ngành", en: "Departments"}}
  huyen: {{vi: "Huyện", en: "Districts"}}
  xa: {{vi: "Xã", en: "Communes"}}
units:
  - {{code: "{PROVINCE}", name: "UBND tỉnh Sơn Hà", level: province, group: tinh}}
  - {{code: "{UNITS[0]}", name: "Sở Nội vụ", level: department, group: so_nganh, parent: "{PROVINCE}"}}
  - {{code: "{UNITS[1]}", name: "Sở Tài chính", level: department, group: so_nganh, parent: "{PROVINCE}"}}
  - {{code: "{UNITS[2]}", name: "Sở Xây dựng", level: department, group: so_nganh, parent: "{PROVINCE}"}}
"""
