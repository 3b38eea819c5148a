"""Drop folder of periodic reports as XLSX or CSV: kind ``spreadsheet``.

Units deliver a report in the documented template (see
``collectors.spreadsheet_template`` and docs/connect/spreadsheet.md) into a
folder, ``url: file:///var/lib/egovmon/drop/qlvb``. Each run reads every file
directly in the folder; the files state their own periods, so the kind does
not support history and the runner does not check periods against a request.

Decisions, and why:

- A file with any error is rejected whole: a half-imported report would show
  KPIs over some of a unit's numbers and hide that the rest is missing. Every
  error becomes a ``Rejection`` naming file, sheet, row and column; other
  files still land.
- Files move only in ``stored()``, after the runner committed: accepted ones to
  ``archive/YYYY-MM-DD/``, rejected ones to ``rejected/`` with
  ``<name>.errors.txt``. A process killed between commit and move reads the
  same files again next run, and storing is an idempotent upsert on (measure,
  unit, period, source), so the same values land again, not twice. A dry run
  never calls ``stored()`` and moves nothing.
- The same (unit, period) in two files of one batch rejects both: which one is
  right is the operator's call. A correction delivered in a later run simply
  replaces the stored values (upsert).
- Files modified less than ``min_age`` ago may still be being copied and are
  left for the next run. Symlinks, non-regular files and anything that could
  lead outside the folder are refused; files are opened with ``O_NOFOLLOW``.
- Measure cells must be whole numbers typed as values. A formula is refused:
  its cached result may be stale or absent (files written by scripts carry
  none), and formulas are how spreadsheets smuggle code into other tools.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import re
import stat
import time
import zipfile
from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import unquote, urlparse

from openpyxl import load_workbook
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from collectors.base import (
    CollectionResult,
    Collector,
    Observation,
    Rejection,
    SourceAuthError,
    SourceRequestError,
    SourceUnavailable,
)
from collectors.spreadsheet_template import (
    DATA_SHEET,
    GUIDE_SHEET,
    PERIOD_HEADER,
    UNIT_HEADER,
    default_measures,
    header_key,
    shipped_catalog,
)
from monitor.timeutil import Period, local_date, parse_duration

log = logging.getLogger(__name__)

ARCHIVE, REJECTED = "archive", "rejected"
EXTENSIONS = (".xlsx", ".csv")
FILE_REJECTED = "file_rejected"
MAX_REJECTIONS_PER_FILE = 100  # the .errors.txt next to the file has them all
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
# What openpyxl raises on a damaged workbook: a bad zip, a missing part, XML that does not
# parse (ParseError is a SyntaxError) or that defusedxml refuses (a ValueError).
UNREADABLE_XLSX = (zipfile.BadZipFile, KeyError, ValueError, TypeError, SyntaxError, OSError)
_INTEGER = re.compile(r"^-?\d+$")


def _duration(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return parse_duration(value) if isinstance(value, str) else value


class SpreadsheetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    measures: Annotated[tuple[str, ...], Field(min_length=1)] = Field(default_factory=default_measures)
    # measure id → header text accepted for its column (besides the catalog's Vietnamese name and the id)
    headers: dict[str, str] = {}
    max_bytes: Annotated[int, Field(ge=1, le=1 << 30)] = 10 * 1024 * 1024
    max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 20_000
    min_age: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(seconds=5)
    csv_delimiter: Literal[",", ";", "\t"] = ","

    @model_validator(mode="after")
    def _known_measures(self) -> Self:
        known = shipped_catalog().measures
        twice = sorted({m for m in self.measures if self.measures.count(m) > 1})
        if twice:
            raise ValueError(f"measures listed twice: {', '.join(twice)}")
        unknown = [m for m in self.measures if m not in known and m not in self.headers]
        if unknown:
            raise ValueError(
                f"unknown measure(s) {', '.join(unknown)} (not in the KPI catalog; a measure of your own "
                f"catalog needs its column header in options.headers); known: {', '.join(sorted(known))}")
        stray = sorted(set(self.headers) - set(self.measures))
        if stray:
            raise ValueError(f"options.headers names measure(s) not in options.measures: {', '.join(stray)}")
        if self.min_age < timedelta(0):
            raise ValueError(f"min_age must not be negative, got: {self.min_age}")
        return self


# ----------------------------------------------------------------------------- reading one file

@dataclass(frozen=True)
class FileError:
    reason: str
    text: str  # "file, sheet "…", row 7, column "…": problem (how to fix)"
    row: int | None = None
    unit: str | None = None
    measure: str | None = None
    period: Period | None = None


@dataclass(frozen=True)
class ReportRow:
    number: int
    unit: str
    period: Period
    values: dict[str, int]


@dataclass
class DeliveredFile:
    name: str
    stamp: tuple[int, int]  # (size, mtime_ns) when read: a file replaced since is not moved
    sheet: str | None = None
    data_rows: int = 0
    rows: list[ReportRow] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)

    def where(self, row: int | None = None, column: str | None = None) -> str:
        parts = [self.name]
        if self.sheet is not None:
            parts.append(f'sheet "{self.sheet}"')
        if row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f'column "{column}"')
        return ", ".join(parts)

    def ref(self, row: int | None = None) -> str:
        if row is None:
            return self.name
        return f"{self.name}#{self.sheet}!R{row}" if self.sheet is not None else f"{self.name}#R{row}"

    def fail(self, reason: str, problem: str, row: int | None = None, column: str | None = None,
             **about: Any) -> None:
        self.errors.append(FileError(reason, f"{self.where(row, column)}: {problem}", row, **about))


class ReportReader:
    """Turns the cells of one report into rows, or into errors naming each bad cell."""

    def __init__(self, options: SpreadsheetOptions, grain: str, units: Set[str], tz: tzinfo,
                 now: datetime) -> None:
        self.options, self.grain, self.units, self.tz, self.now = options, grain, units, tz, now
        self.columns: dict[str, str] = {}  # header key → measure id
        for measure in options.measures:
            spec = shipped_catalog().measures.get(measure)
            for text in (measure, spec.vi if spec else None, options.headers.get(measure)):
                if text:
                    self.columns[header_key(text)] = measure
        self.others = {header_key(name): m for m, spec in shipped_catalog().measures.items()
                       for name in (m, spec.vi) if m not in options.measures}
        self.pairs = [(p, w) for p, w in shipped_catalog().ratio_pairs()
                      if p in options.measures and w in options.measures]

    def read(self, report: DeliveredFile, cells: Iterator[list[Any]]) -> None:
        header = next(cells, None)
        if header is None:
            report.fail("empty", "the file is empty (expected the template's header row, then one row per "
                        "unit and period)")
            return
        layout = self._layout(report, header)
        if layout is None:
            return
        count = 0
        for number, row in enumerate(cells, start=2):
            if all(_blank(v) for v in row):
                continue  # spreadsheets keep formatted empty rows below the data
            count += 1
            report.data_rows = count
            if count > self.options.max_rows:
                report.fail("too_large", f"more than {self.options.max_rows} data rows (options.max_rows); "
                            "split the report into several files")
                return
            self._row(report, number, layout, row)
        if count == 0:
            report.fail("empty", "no data rows under the header (one row per unit and period expected)")

    def _layout(self, report: DeliveredFile, header: list[Any]) -> dict[int, tuple[str, str]] | None:
        """Column index → (role: "unit", "period" or a measure id, header text), or None if unusable."""
        layout: dict[int, tuple[str, str]] = {}
        taken: dict[str, str] = {}
        before = len(report.errors)
        for index, value in enumerate(header):
            if _blank(value):
                continue
            if _is_formula(value):
                report.fail("formula", f"header cell {index + 1} is a formula {_show(value)}; type the header text",
                            row=1)
                continue
            text = str(value).strip()
            key = header_key(text)
            role = ("unit" if key == header_key(UNIT_HEADER) else
                    "period" if key == header_key(PERIOD_HEADER) else self.columns.get(key))
            if role is None:
                report.fail("unknown_header", self._unknown(text), row=1, column=text)
            elif role in taken:
                report.fail("duplicate_column", f"a second column for {_role(role)} (first: "
                            f'"{taken[role]}"); keep one', row=1, column=text)
            else:
                taken[role] = text
                layout[index] = (role, text)
        missing = [_role(r) for r in ("unit", "period", *self.options.measures) if r not in taken]
        if missing:
            report.fail("missing_column", f"the header row lacks the column(s) {'; '.join(missing)}; "
                        "start from the folder's template (row 1 must be the header row)", row=1)
        return layout if len(report.errors) == before else None

    def _unknown(self, text: str) -> str:
        other = self.others.get(header_key(text))
        if other is not None:
            return (f"this folder does not take measure {other} (options.measures); remove the column or "
                    "deliver it to the folder that takes it")
        return (f"unknown column header {_show(text)}; expected {_show(UNIT_HEADER)}, {_show(PERIOD_HEADER)} "
                "and one column per measure, headed by its Vietnamese name or its id (see the template)")

    def _row(self, report: DeliveredFile, number: int, layout: dict[int, tuple[str, str]], row: list[Any]) -> None:
        before = len(report.errors)
        unit: str | None = None
        period: Period | None = None
        raw: dict[str, tuple[str, Any]] = {}
        for index, value in enumerate(row):
            if index not in layout:
                if not _blank(value):
                    report.fail("unknown_header", f"cell {index + 1} holds {_show(value)} but its column has no "
                                "header; remove it or head the column", row=number)
                continue
            role, text = layout[index]
            raw[role] = (text, value)
        for role, (text, value) in raw.items():
            if _is_formula(value):
                report.fail("formula", f"{_show(value)} is a formula; type the value itself (formulas are "
                            "refused: their result may be stale, and they can carry code)", number, text)
            elif _blank(value):
                report.fail("empty_cell", "empty; every cell of a row must be filled (write 0 for none)",
                            number, text)
            elif role == "unit":
                unit = self._unit(report, number, text, value)
            elif role == "period":
                period = self._period(report, number, text, value)
        values: dict[str, int] = {}
        for measure in self.options.measures:
            text, value = raw.get(measure, (measure, None))
            if not _blank(value) and not _is_formula(value):
                number_value = self._count(report, number, text, value, unit, measure, period)
                if number_value is not None:
                    values[measure] = number_value
        for part, whole in self.pairs:
            if part in values and whole in values and values[part] > values[whole]:
                report.fail("inconsistent", f"{part} = {values[part]} exceeds {whole} = {values[whole]} "
                            "(a part can never be larger than its whole); check both cells", number,
                            unit=unit, measure=part, period=period)
        if len(report.errors) == before and unit is not None and period is not None:
            report.rows.append(ReportRow(number, unit, period, values))

    def _unit(self, report: DeliveredFile, number: int, column: str, value: Any) -> str | None:
        code = str(value).strip()
        if code not in self.units:
            report.fail("unknown_unit", f"{_show(code)} is not a unit code of the unit registry (check the code, "
                        "or add the unit to the units file)", number, column, unit=code)
            return None
        return code

    def _period(self, report: DeliveredFile, number: int, column: str, value: Any) -> Period | None:
        period = self._parse_period(value)
        if period is None:
            example = "2026-10 for October 2026" if self.grain == "month" else "2026-10-05"
            form = "YYYY-MM" if self.grain == "month" else "YYYY-MM-DD"
            report.fail("bad_period", f"{_show(value)} is not a {self.grain} period; this folder takes "
                        f"{self.grain}ly reports, write {form} as text (e.g. {example})", number, column)
            return None
        if period.start > self.now:
            report.fail("bad_period", f"{_show(value)} has not begun yet; check the year and month", number,
                        column, period=period)
            return None
        return period

    def _parse_period(self, value: Any) -> Period | None:
        if isinstance(value, datetime | date):
            # Excel turns a typed "2026-10" into 1 October 2026 unless the cell is text.
            day = value.date() if isinstance(value, datetime) else value
            if isinstance(value, datetime) and value.time() != datetime.min.time():
                return None
            if self.grain == "day":
                return Period.of_day(day, self.tz)
            return Period.of_month(day.year, day.month, self.tz) if day.day == 1 else None
        text = str(value).strip()
        match = (_MONTH if self.grain == "month" else _DAY).match(text)
        if match is None:
            return None
        try:
            if self.grain == "month":
                year, month = int(match[1]), int(match[2])
                return Period.of_month(year, month, self.tz) if 1 <= month <= 12 else None
            return Period.of_day(date.fromisoformat(text), self.tz)
        except ValueError:
            return None

    def _count(self, report: DeliveredFile, number: int, column: str, value: Any, unit: str | None,
               measure: str, period: Period | None) -> int | None:
        about = {"unit": unit, "measure": measure, "period": period}
        parsed: int | None = None
        if isinstance(value, bool):
            parsed = None
        elif isinstance(value, int):
            parsed = value
        elif isinstance(value, float) and value.is_integer():
            parsed = int(value)
        elif isinstance(value, str) and _INTEGER.match(value.strip()):
            parsed = int(value.strip())
        if parsed is None:
            report.fail("not_a_number", f"{_show(value)} is not a whole number (write digits only, e.g. 125; "
                        "no decimals, no thousands separators)", number, column, **about)
        elif parsed < 0:
            report.fail("negative", f"{parsed} is negative; counts are never negative", number, column, **about)
            return None
        return parsed


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_formula(value: Any) -> bool:
    # openpyxl gives a formula as its text "=…" (or an ArrayFormula object); CSV formulas arrive as text
    if type(value).__name__ in ("ArrayFormula", "DataTableFormula"):
        return True
    return isinstance(value, str) and value.strip().startswith("=")


def _show(value: Any) -> str:
    text = str(value)
    return '"' + (text if len(text) <= 60 else text[:60] + "…") + '"'


def _role(role: str) -> str:
    if role == "unit":
        return f'"{UNIT_HEADER}"'
    if role == "period":
        return f'"{PERIOD_HEADER}"'
    spec = shipped_catalog().measures.get(role)
    return f'"{spec.vi}" ({role})' if spec else role


# ----------------------------------------------------------------------------- file formats

def unreadable_xlsx(report: DeliveredFile, exc: Exception) -> None:
    report.fail("not_a_spreadsheet", f"not a readable XLSX workbook ({type(exc).__name__}); save it again as "
                "Excel Workbook (.xlsx)")


def xlsx_cells(report: DeliveredFile, data: bytes) -> Iterator[list[Any]] | None:
    """The data sheet's rows, streamed (a small file can unpack to a huge sheet, and reading
    stops at ``max_rows``), or None after recording why the workbook cannot be read."""
    try:
        # openpyxl parses with defusedxml when installed (it is): entity expansion is refused
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except UNREADABLE_XLSX as exc:
        unreadable_xlsx(report, exc)
        return None
    names = list(workbook.sheetnames)
    candidates = [DATA_SHEET] if DATA_SHEET in names else [n for n in names if n != GUIDE_SHEET]
    if len(candidates) != 1:
        workbook.close()
        report.fail("no_sheet", f'no sheet "{DATA_SHEET}" and {len(candidates)} other sheets '
                    f"({', '.join(candidates) or 'none'}); name the report's sheet \"{DATA_SHEET}\"")
        return None
    report.sheet = candidates[0]
    return _sheet_rows(workbook, report.sheet)


def _sheet_rows(workbook: Any, sheet: str) -> Iterator[list[Any]]:
    try:
        for row in workbook[sheet].iter_rows(values_only=True):
            yield list(row)
    finally:
        workbook.close()


def csv_cells(report: DeliveredFile, data: bytes, delimiter: str) -> Iterator[list[Any]] | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        report.fail("encoding", "the file is UTF-16 (Excel's \"Unicode Text\"); save it as \"CSV UTF-8 "
                    "(Comma delimited)\"")
        return None
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        report.fail("encoding", f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}; probably a "
                    "Windows code page such as 1258); save it as \"CSV UTF-8 (Comma delimited)\"")
        return None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        report.fail("not_a_spreadsheet", f"not a well-formed CSV file ({exc}); save it again from the template")
        return None
    return iter(rows)


# ----------------------------------------------------------------------------- the collector

@dataclass(frozen=True)
class Outcome:
    """What ``stored()`` does with one file."""

    name: str
    stamp: tuple[int, int]
    errors: tuple[str, ...]  # empty: accepted


class SpreadsheetCollector(Collector):
    kind: ClassVar[str] = "spreadsheet"
    supports_history: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = SpreadsheetOptions
    url_schemes: ClassVar[tuple[str, ...]] = ("file",)
    options: SpreadsheetOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outcomes: list[Outcome] = []

    @property
    def folder(self) -> Path:
        parsed = urlparse(self.settings.url)
        path = unquote(parsed.path)
        if parsed.netloc not in ("", "localhost") or not path.startswith("/"):
            raise SourceRequestError(self.source_id, "url must be file:///absolute/folder (a local folder), "
                                     f"got a host or a relative path: {parsed.netloc}{path}")
        return Path(path)

    async def collect(self, periods: Sequence[Period], units: Set[str]) -> CollectionResult:
        self._outcomes = []
        return await asyncio.to_thread(self._collect, units)

    async def stored(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        await asyncio.to_thread(self._move_all, outcomes)

    # -- reading

    def _collect(self, units: Set[str]) -> CollectionResult:
        folder = self.folder
        reader = ReportReader(self.options, self.settings.grain, units, self.tz, self.now())
        reports = [self._read(folder, name, reader) for name in self._deliveries(folder)]
        self._duplicates(reports)
        result = CollectionResult()
        self._outcomes = []
        for report in reports:
            self._outcomes.append(Outcome(report.name, report.stamp, tuple(e.text for e in report.errors)))
            if report.errors:
                result.rejections.extend(self._rejections(report))
            else:
                result.observations.extend(
                    Observation(measure, row.unit, row.period, float(value), report.ref(row.number))
                    for row in report.rows for measure, value in row.values.items())
        return result

    def _deliveries(self, folder: Path) -> list[str]:
        """Names of the files to read now: not hidden, not Excel's lock files, not still being written."""
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            raise SourceUnavailable(self.source_id, f"drop folder {folder} does not exist (not mounted?)") from None
        except NotADirectoryError:
            raise SourceRequestError(self.source_id, f"{folder} is not a folder") from None
        except PermissionError:
            raise SourceAuthError(self.source_id, f"no permission to list {folder}") from None
        youngest = time.time() - self.options.min_age.total_seconds()  # mtimes are the file system's clock
        names = []
        for entry in entries:
            if (entry.name in (ARCHIVE, REJECTED) or entry.name.startswith((".", "~$"))
                    or entry.is_dir(follow_symlinks=False)):
                continue  # our folders, other folders; dotfiles; Excel's "~$name.xlsx" while open
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_mtime > youngest:
                log.info("source %s: %s was modified less than %s ago, left for the next run",
                         self.source_id, entry.name, self.options.min_age)
                continue
            names.append(entry.name)
        return names

    def _read(self, folder: Path, name: str, reader: ReportReader) -> DeliveredFile:
        report = DeliveredFile(name, (0, 0))
        data = self._bytes(folder, report)
        if data is None:
            return report
        suffix = os.path.splitext(name)[1].lower()
        cells = xlsx_cells(report, data) if suffix == ".xlsx" else csv_cells(report, data, self.options.csv_delimiter)
        if cells is not None:
            try:
                reader.read(report, cells)
            except UNREADABLE_XLSX as exc:
                if report.sheet is None:  # CSV: not a damaged workbook but a bug, let it show
                    raise
                unreadable_xlsx(report, exc)  # a damaged sheet shows only while it is read
            finally:
                close = getattr(cells, "close", None)
                if close is not None:
                    close()
        return report

    def _bytes(self, folder: Path, report: DeliveredFile) -> bytes | None:
        """The file's content, read without following links, or None after recording why not."""
        path = folder / report.name
        try:
            info = os.lstat(path)
        except OSError as exc:
            report.fail("unreadable", f"cannot read the file ({exc.strerror}); deliver it again")
            return None
        report.stamp = (info.st_size, info.st_mtime_ns)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            report.fail("unsafe_path", f"{what}; deliver the file itself into the folder (links could read "
                        "files outside it)")
            return None
        if os.path.splitext(report.name)[1].lower() not in EXTENSIONS:
            hint = " (old Excel format: save as .xlsx)" if report.name.lower().endswith(".xls") else ""
            report.fail("not_a_spreadsheet", f"not an .xlsx or .csv file{hint}; deliver the report in the template")
            return None
        if info.st_size > self.options.max_bytes:
            report.fail("too_large", f"{info.st_size} bytes, more than options.max_bytes = {self.options.max_bytes}; "
                        "split the report or raise max_bytes")
            return None
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            report.fail("unsafe_path" if exc.errno == getattr(os, "ELOOP", -1) else "unreadable",
                        f"cannot open the file ({exc.strerror}); check its permissions")
            return None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(self.options.max_bytes + 1)
        if len(data) > self.options.max_bytes:
            report.fail("too_large", f"more than options.max_bytes = {self.options.max_bytes} bytes")
            return None
        return data

    def _duplicates(self, reports: list[DeliveredFile]) -> None:
        """The same (unit, period) twice in a file, or in two files read together (then both are refused)."""
        for report in reports:
            rows: dict[tuple[str, Period], int] = {}
            for row in report.rows:
                earlier = rows.setdefault((row.unit, row.period), row.number)
                if earlier != row.number:
                    report.fail("duplicate", f"{row.unit} {row.period.label(self.tz)} is already in row {earlier}; "
                                "keep one row per unit and period", row.number, unit=row.unit, period=row.period)
        first: dict[tuple[str, Period], tuple[DeliveredFile, int]] = {}
        clashes: list[tuple[DeliveredFile, ReportRow, DeliveredFile, int]] = []
        for report in [r for r in reports if not r.errors]:
            for row in report.rows:
                key = (row.unit, row.period)
                if key in first:
                    clashes.append((report, row, *first[key]))
                else:
                    first[key] = (report, row.number)
        for report, row, other, other_row in clashes:
            label, fix = row.period.label(self.tz), "keep one row per unit and period in the files delivered together"
            report.fail("duplicate", f"{row.unit} {label} is also in {other.where(other_row)}; {fix}", row.number,
                        unit=row.unit, period=row.period)
            other.fail("duplicate", f"{row.unit} {label} is also in {report.where(row.number)}; {fix}", other_row,
                       unit=row.unit, period=row.period)

    def _rejections(self, report: DeliveredFile) -> Iterator[Rejection]:
        shown = report.errors[:MAX_REJECTIONS_PER_FILE]
        for error in shown:
            yield Rejection(error.reason, error.text, error.unit, error.measure, error.period, report.ref(error.row))
        hidden = len(report.errors) - len(shown)
        if hidden > 0:
            yield Rejection("too_many_errors", f"{report.name}: and {hidden} more errors, listed in "
                            f"{REJECTED}/{report.name}.errors.txt", raw_ref=report.ref())
        # Said once per file, so that a reader of the rejections sees the good rows were not stored either.
        rows = f", none of its {report.data_rows} data rows stored" if report.data_rows else ""
        yield Rejection(FILE_REJECTED, f"{report.name}: rejected whole{rows} ({len(report.errors)} "
                        f"error{'s' if len(report.errors) != 1 else ''}); correct it and deliver it again (it is "
                        f"moved to {REJECTED}/ with its .errors.txt)", raw_ref=report.ref())

    # -- moving, after the commit

    def _move_all(self, outcomes: list[Outcome]) -> None:
        folder = self.folder
        today = local_date(self.now(), self.tz).isoformat()
        failed: list[str] = []
        for outcome in outcomes:
            try:
                self._move_one(folder, outcome, today)
            except OSError as exc:
                # Left in place: read again next run, which is safe (the store upserts).
                log.error("source %s: could not move %s: %s", self.source_id, outcome.name, exc.strerror)
                failed.append(f"{outcome.name} ({exc.strerror})")
        if failed:
            raise SourceRequestError(self.source_id, f"stored, but could not move {', '.join(failed)} out of the "
                                     "drop folder; check the permissions of archive/ and rejected/")

    def _move_one(self, folder: Path, outcome: Outcome, today: str) -> None:
        source = folder / outcome.name
        try:
            info = os.lstat(source)
        except FileNotFoundError:
            return  # moved by hand meanwhile
        if (info.st_size, info.st_mtime_ns) != outcome.stamp:
            log.warning("source %s: %s changed after it was read; left in place for the next run",
                        self.source_id, outcome.name)
            return
        if outcome.errors:
            target = self._move(folder, source, Path(REJECTED))
            with open(target.with_name(target.name + ".errors.txt"), "x", encoding="utf-8") as report:
                report.writelines(line.replace("\n", " ") + "\n" for line in outcome.errors)
            log.warning("source %s: %s rejected (%d errors), moved to %s", self.source_id, outcome.name,
                        len(outcome.errors), target.relative_to(folder))
        else:
            target = self._move(folder, source, Path(ARCHIVE) / today)
            log.info("source %s: %s stored, moved to %s", self.source_id, outcome.name, target.relative_to(folder))

    def _move(self, folder: Path, source: Path, under: Path) -> Path:
        """Move ``source`` into ``folder/under`` without overwriting: ``name-1.xlsx``, ``name-2.xlsx``…"""
        directory = folder
        for part in under.parts:
            directory = directory / part
            if directory.is_symlink():
                raise SourceRequestError(self.source_id, f"{directory.relative_to(folder)} is a symbolic link; "
                                         "refusing to move delivered files through it")
            directory.mkdir(exist_ok=True)
        stem, suffix = os.path.splitext(source.name)
        target, n = directory / source.name, 0
        # One run per source at a time (the runner's lock), so checking then renaming does not race.
        while os.path.lexists(target) or os.path.lexists(f"{target}.errors.txt"):
            n += 1
            target = directory / f"{stem}-{n}{suffix}"
        os.rename(source, target)
        return target
