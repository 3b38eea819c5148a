"""The ``spreadsheet`` drop folder, over real files: XLSX written by openpyxl, CSV in several
encodings, symlinks, half-written files; through the collector alone and through the runner,
from a YAML configuration to a stored KPI."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from openpyxl import load_workbook

from collectors import CollectionResult, Rejection
from collectors.spreadsheet import SpreadsheetCollector
from collectors.spreadsheet_template import (
    DATA_SHEET,
    GUIDE_SHEET,
    PERIOD_HEADER,
    TEMPLATES,
    UNIT_HEADER,
    default_measures,
    write_templates,
)
from monitor.collection import CollectionRunner
from monitor.config import Config, load_config
from monitor.errors import ConfigError
from monitor.kpi import KpiEngine
from monitor.metrics import ServiceMetrics
from monitor.storage import Store, create_engine_for, upgrade_database
from monitor.timeutil import FrozenClock, Period
from monitor.units import load_units
from monitor.windows import Window
from tests.collectors.spreadsheet_fixtures import (
    CATALOG,
    HEADER,
    MEASURES,
    NOW,
    PROVINCE,
    TZ,
    UNITS,
    UNITS_YAML,
    VI,
    Row,
    age,
    collector,
    expected_values,
    read_back,
    write_csv,
    write_xlsx,
)

MONTHS = ("2026-08", "2026-09", "2026-10")


def report_rows(seed: int, units: tuple[str, ...] = UNITS, months: tuple[str, ...] = MONTHS) -> list[Row]:
    """Plausible counts: electronic never above the total."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for unit in units:
        for month in months:
            out_total, in_total = rng.randint(50, 900), rng.randint(50, 900)
            rows.append([unit, month, out_total, rng.randint(0, out_total), in_total, rng.randint(0, in_total)])
    return rows


def collect(folder: Path, **kwargs: Any) -> tuple[SpreadsheetCollector, CollectionResult]:
    source = collector(folder, **kwargs)
    return source, asyncio.run(source.collect([Period.containing(NOW, "day", TZ)], set(UNITS)))


def cell_errors(rejections: list[Rejection]) -> list[Rejection]:
    """The errors, without the one "file_rejected" summary each refused file also gets."""
    return [r for r in rejections if r.reason != "file_rejected"]


def refused_files(rejections: list[Rejection]) -> list[str]:
    return [r.raw_ref or "" for r in rejections if r.reason == "file_rejected"]


def stored_table(result: CollectionResult) -> dict[tuple[str, str, str], float]:
    return {(o.measure, o.unit, o.period.label(TZ)): o.value for o in result.observations}


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "thư mục nộp báo cáo"  # Vietnamese, with spaces: percent-encoded in the file URL
    folder.mkdir()
    return folder


# ----------------------------------------------------------------------------- the template

def test_shipped_templates_are_what_the_writer_writes(tmp_path: Path) -> None:
    """If the catalog changed, regenerate: python -m collectors.spreadsheet_template"""
    fresh = write_templates(tmp_path)
    assert (tmp_path / "spreadsheet.csv").read_bytes() == (TEMPLATES / "spreadsheet.csv").read_bytes()

    def content(path: Path) -> dict[str, Any]:
        workbook = load_workbook(path)
        sheets = {name: [list(r) for r in workbook[name].iter_rows(values_only=True)] for name in workbook.sheetnames}
        bold = [cell.font.b for cell in workbook[DATA_SHEET][1]]
        workbook.close()
        return {"sheets": sheets, "bold": bold}

    shipped, written = content(TEMPLATES / "spreadsheet.xlsx"), content(fresh[0])
    assert shipped == written
    assert list(shipped["sheets"]) == [DATA_SHEET, GUIDE_SHEET]
    header = shipped["sheets"][DATA_SHEET][0]
    assert header == [UNIT_HEADER, PERIOD_HEADER, *(CATALOG.measures[m].vi for m in default_measures())]
    assert all(shipped["bold"])
    guide_columns = [row[0] for row in shipped["sheets"][GUIDE_SHEET][1:] if row[0]]
    assert guide_columns == header  # every column is explained


def test_a_filled_in_template_is_read(drop: Path, tmp_path: Path) -> None:
    xlsx, csv_file = write_templates(tmp_path / "mau", MEASURES, stem="mẫu")
    workbook = load_workbook(xlsx)
    for row in report_rows(1, months=("2026-10",)):
        workbook[DATA_SHEET].append(row)
    workbook.save(drop / "báo cáo từ mẫu.xlsx")
    csv_text = csv_file.read_text(encoding="utf-8-sig") + "".join(
        ",".join(map(str, row)) + "\r\n" for row in report_rows(2, months=("2026-09",)))
    (drop / "báo cáo từ mẫu.csv").write_text(csv_text, encoding="utf-8-sig")
    age(drop)
    _, result = collect(drop)
    assert result.rejections == []
    assert stored_table(result) == expected_values([drop / "báo cáo từ mẫu.xlsx", drop / "báo cáo từ mẫu.csv"])


# ----------------------------------------------------------------------------- reading

def test_xlsx_and_csv_cells_become_observations(drop: Path) -> None:
    files = [
        write_xlsx(drop / "Sở Nội vụ - tháng 10.xlsx", report_rows(3, units=UNITS[:1])),
        # measure ids are accepted as headers, in any column order
        write_csv(drop / "so-tai-chinh.csv", [[r[0], r[1], *reversed(r[2:])] for r in report_rows(4, UNITS[1:2])],
                  header=[UNIT_HEADER, PERIOD_HEADER, *reversed(MEASURES)], encoding="utf-8-sig"),
        write_csv(drop / "so-xay-dung.csv", report_rows(5, units=UNITS[2:]), encoding="utf-8"),  # no BOM
    ]
    age(drop)
    _, result = collect(drop)
    assert result.rejections == []
    expected = expected_values(files)
    assert len(expected) == len(UNITS) * len(MONTHS) * len(MEASURES)
    assert stored_table(result) == expected
    refs = {o.raw_ref for o in result.observations}
    assert "Sở Nội vụ - tháng 10.xlsx#Báo cáo!R2" in refs and "so-tai-chinh.csv#R4" in refs
    october = Period.of_month(2026, 10, TZ)
    assert {o.period for o in result.observations if o.period.label(TZ) == "2026-10"} == {october}


def test_day_grain_and_excel_dates(drop: Path) -> None:
    from datetime import date, datetime

    rows = [[UNITS[0], "2026-11-03", 5, 4, 3, 2], [UNITS[1], datetime(2026, 11, 4), 6, 5, 4, 3],
            [UNITS[2], date(2026, 11, 5), 7, 6, 5, 4]]
    write_xlsx(drop / "ngay.xlsx", rows)
    age(drop)
    _, result = collect(drop, grain="day")
    assert result.rejections == []
    days = {(o.unit, o.period) for o in result.observations}
    assert days == {(UNITS[0], Period.of_day(date(2026, 11, 3), TZ)), (UNITS[1], Period.of_day(date(2026, 11, 4), TZ)),
                    (UNITS[2], Period.of_day(date(2026, 11, 5), TZ))}


BAD_CELLS = [
    # (column, value, reason, words in the detail)
    (4, "abc", "not_a_number", '"abc" is not a whole number'),
    (4, 12.5, "not_a_number", '"12.5" is not a whole number'),
    (4, True, "not_a_number", "not a whole number"),
    (2, -3, "negative", "-3 is negative"),
    (5, None, "empty_cell", "empty; every cell of a row must be filled"),
    (2, "=C2*2", "formula", '"=C2*2" is a formula'),
    (0, "000.00.99.H99", "unknown_unit", '"000.00.99.H99" is not a unit code'),
    (1, "2026/10", "bad_period", '"2026/10" is not a month period'),
    (1, "2026-13", "bad_period", "write YYYY-MM"),
    (1, "2026-12", "bad_period", "has not begun yet"),
    (3, 10_000, "inconsistent", "docs_outgoing_electronic = 10000 exceeds docs_outgoing_total"),
]


# CSV has no booleans: those cells are tried in XLSX only.
BAD_CELL_CASES = [(fmt, *case) for case in BAD_CELLS for fmt in ("xlsx", "csv")
                  if not (fmt == "csv" and isinstance(case[1], bool))]


@pytest.mark.parametrize(("fmt", "column", "value", "reason", "words"), BAD_CELL_CASES,
                         ids=[f"{c[0]}-{c[3]}-{c[2]}" for c in BAD_CELL_CASES])
def test_a_bad_cell_rejects_its_file_naming_the_place(drop: Path, fmt: str, column: int, value: Any,
                                                      reason: str, words: str) -> None:
    rows = report_rows(6)
    rows[5][column] = value  # row 7 of the sheet (header is row 1)
    name = f"báo cáo tháng 10.{fmt}"
    bad = write_xlsx(drop / name, rows) if fmt == "xlsx" else write_csv(drop / name, rows)
    good = write_csv(drop / "tốt.csv", report_rows(7, months=("2026-07",)))
    age(drop)
    _, result = collect(drop)
    assert [r.reason for r in cell_errors(result.rejections)] == [reason]
    rejection = result.rejections[0]
    assert refused_files(result.rejections) == [name]
    assert f"{name}: rejected whole, none of its {len(rows)} data rows stored (1 error)" in result.rejections[1].detail
    sheet = ', sheet "Báo cáo"' if fmt == "xlsx" else ""
    place = f"{name}{sheet}, row 7" + ("" if reason == "inconsistent" else f', column "{HEADER[column]}"')
    assert rejection.detail.startswith(place + ": "), rejection.detail
    assert words in rejection.detail
    assert rejection.raw_ref == (f"{name}#Báo cáo!R7" if fmt == "xlsx" else f"{name}#R7")
    # never half-imported: nothing of the bad file, everything of the good one
    assert stored_table(result) == expected_values([good])
    assert str(bad) not in {o.raw_ref for o in result.observations}


def test_every_error_of_a_file_is_listed(drop: Path) -> None:
    rows = report_rows(8)
    rows[0][2], rows[3][3], rows[4][0] = "mười", -1, "000.00.77.H99"
    write_xlsx(drop / "nhiều lỗi.xlsx", rows)
    age(drop)
    _, result = collect(drop)
    assert [(r.reason, r.raw_ref) for r in cell_errors(result.rejections)] == [
        ("not_a_number", "nhiều lỗi.xlsx#Báo cáo!R2"), ("negative", "nhiều lỗi.xlsx#Báo cáo!R5"),
        ("unknown_unit", "nhiều lỗi.xlsx#Báo cáo!R6")]
    assert result.observations == []
    negative = result.rejections[1]
    assert (negative.unit, negative.measure, negative.period) == (
        rows[3][0], "docs_outgoing_electronic", Period.of_month(2026, 8, TZ))


@pytest.mark.parametrize(("header", "reason", "words"), [
    ([*HEADER, "Ghi chú"], "unknown_header", 'unknown column header "Ghi chú"'),
    ([*HEADER, CATALOG.measures["dossiers_received_total"].vi], "unknown_header",
     "this folder does not take measure dossiers_received_total"),
    (HEADER[:-1], "missing_column", "docs_incoming_electronic"),
    ([*HEADER, "docs_outgoing_total"], "duplicate_column", "a second column for"),
    ([HEADER[1], *HEADER[2:]], "missing_column", f'"{UNIT_HEADER}"'),
])
def test_header_problems(drop: Path, header: Row, reason: str, words: str) -> None:
    rows = [row[:len(header)] + [1] * (len(header) - len(row)) for row in report_rows(9)]
    write_xlsx(drop / "cột lạ.xlsx", rows, header=header)
    age(drop)
    _, result = collect(drop)
    assert [r.reason for r in cell_errors(result.rejections)] == [reason]
    assert words in result.rejections[0].detail and ", row 1" in result.rejections[0].detail
    assert result.observations == []


def test_headers_are_matched_regardless_of_case_spaces_and_unicode_form(drop: Path) -> None:
    import unicodedata

    header = [UNIT_HEADER.upper(), f"  {PERIOD_HEADER} ", *(unicodedata.normalize("NFD", VI[m]) for m in MEASURES)]
    path = write_xlsx(drop / "hoa-thuong.xlsx", report_rows(10), header=header)
    age(drop)
    _, result = collect(drop)
    assert result.rejections == []
    assert len(result.observations) == len(read_back(path)) * len(MEASURES)


def test_duplicates_within_a_file_and_across_files(drop: Path) -> None:
    inside = report_rows(11, units=UNITS[:1])
    inside.append(list(inside[0]))
    write_xlsx(drop / "a-trùng-trong-tệp.xlsx", inside)
    write_csv(drop / "b-sở-tài-chính.csv", report_rows(12, units=UNITS[1:2]))
    write_csv(drop / "c-sở-tài-chính-lần-2.csv", report_rows(13, units=UNITS[1:2], months=("2026-10",)))
    good = write_csv(drop / "d-sở-xây-dựng.csv", report_rows(14, units=UNITS[2:]))
    age(drop)
    _, result = collect(drop)
    details = sorted(r.detail for r in cell_errors(result.rejections))
    assert [r.reason for r in cell_errors(result.rejections)] == ["duplicate"] * 3
    assert sorted(refused_files(result.rejections)) == [
        "a-trùng-trong-tệp.xlsx", "b-sở-tài-chính.csv", "c-sở-tài-chính-lần-2.csv"]
    assert details[0].startswith("a-trùng-trong-tệp.xlsx, sheet \"Báo cáo\", row 5: 000.00.31.H99 2026-08 is "
                                 "already in row 2")
    # both files of the clash are refused: which one is right is the operator's call
    assert details[1].startswith("b-sở-tài-chính.csv, row 4: 000.00.32.H99 2026-10 is also in "
                                 "c-sở-tài-chính-lần-2.csv, row 2")
    assert details[2].startswith("c-sở-tài-chính-lần-2.csv, row 2: 000.00.32.H99 2026-10 is also in "
                                 "b-sở-tài-chính.csv, row 4")
    assert stored_table(result) == expected_values([good])


# ----------------------------------------------------------------------------- files

def test_files_that_cannot_be_reports(drop: Path, tmp_path: Path) -> None:
    write_csv(drop / "cp1258.csv", [[UNITS[0], "2026-10", 1, 1, 1, 1]], encoding="cp1258", errors="replace")
    write_csv(drop / "utf16.csv", [[UNITS[0], "2026-10", 1, 1, 1, 1]], encoding="utf-16")
    (drop / "công văn.pdf").write_bytes(b"%PDF-1.7\n")
    (drop / "cũ.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    (drop / "hỏng.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    outside = write_csv(tmp_path / "ngoài thư mục.csv", report_rows(16))
    (drop / "liên kết.csv").symlink_to(outside)
    write_xlsx(drop / "hai trang.xlsx", report_rows(17), sheet="Tháng 10", extra_sheets=("Tháng 9",))
    good = write_csv(drop / "tốt.csv", report_rows(18, months=("2026-06",)))
    max_bytes = max(p.stat().st_size for p in drop.iterdir() if not p.is_symlink()) + 1
    big = write_xlsx(drop / "quá lớn.xlsx", report_rows(15, months=tuple(f"{y}-{m:02}" for y in range(2000, 2026)
                                                                         for m in range(1, 13))))
    assert big.stat().st_size > max_bytes
    age(drop)
    _, result = collect(drop, options={"max_bytes": max_bytes})
    by_file = {r.raw_ref or "": (r.reason, r.detail) for r in cell_errors(result.rejections)}
    assert sorted(refused_files(result.rejections)) == sorted(by_file)
    assert {ref: reason for ref, (reason, _) in by_file.items()} == {
        "cp1258.csv": "encoding", "utf16.csv": "encoding", "công văn.pdf": "not_a_spreadsheet",
        "cũ.xls": "not_a_spreadsheet", "hỏng.xlsx": "not_a_spreadsheet", "quá lớn.xlsx": "too_large",
        "liên kết.csv": "unsafe_path", "hai trang.xlsx": "no_sheet"}
    assert "CSV UTF-8" in by_file["cp1258.csv"][1] and "UTF-16" in by_file["utf16.csv"][1]
    assert "save as .xlsx" in by_file["cũ.xls"][1]
    assert f"options.max_bytes = {max_bytes}" in by_file["quá lớn.xlsx"][1]
    assert "symbolic link" in by_file["liên kết.csv"][1]
    assert stored_table(result) == expected_values([good])


def test_young_hidden_and_nested_files_are_not_read(drop: Path) -> None:
    write_csv(drop / "đang chép.csv", report_rows(19))
    (drop / ".~lock.tệp.csv#").write_text("x", encoding="utf-8")
    (drop / "~$đang mở.xlsx").write_bytes(b"owner")
    (drop / "con").mkdir()
    write_csv(drop / "con" / "lồng.csv", report_rows(20))
    source, result = collect(drop, options={"min_age": "1h"})
    assert (result.observations, result.rejections) == ([], [])
    asyncio.run(source.stored())
    assert sorted(p.name for p in drop.iterdir()) == sorted([".~lock.tệp.csv#", "con", "~$đang mở.xlsx",
                                                             "đang chép.csv"])


def test_a_missing_folder_is_unavailable(tmp_path: Path) -> None:
    from collectors import SourceUnavailable

    with pytest.raises(SourceUnavailable, match="does not exist"):
        collect(tmp_path / "không có")


def test_stored_moves_accepted_to_archive_and_rejected_with_their_errors(drop: Path) -> None:
    good = write_xlsx(drop / "Sở Nội vụ.xlsx", report_rows(21))
    bad_rows = report_rows(22)
    bad_rows[1][3], bad_rows[2][4] = "x", -5
    write_csv(drop / "Sở Tài chính.csv", bad_rows)
    # name clashes in both destinations: a suffix, never an overwrite
    day = (drop / "archive" / "2026-11-10")
    day.mkdir(parents=True)
    (day / "Sở Nội vụ.xlsx").write_bytes(b"earlier")
    (drop / "rejected").mkdir()
    (drop / "rejected" / "Sở Tài chính.csv").write_bytes(b"earlier")
    age(drop)
    expected = expected_values([good])
    source, result = collect(drop)
    assert list(drop.glob("*.*")) != []  # collect alone moves nothing
    asyncio.run(source.stored())
    assert sorted(p.name for p in drop.iterdir()) == ["archive", "rejected"]
    assert (day / "Sở Nội vụ.xlsx").read_bytes() == b"earlier"
    assert expected_values([day / "Sở Nội vụ-1.xlsx"]) == expected == stored_table(result)
    assert (drop / "rejected" / "Sở Tài chính.csv").read_bytes() == b"earlier"
    errors = (drop / "rejected" / "Sở Tài chính-1.csv.errors.txt").read_text(encoding="utf-8").splitlines()
    assert errors == [r.detail for r in cell_errors(result.rejections)]
    assert errors[0].startswith('Sở Tài chính.csv, row 3, column "Văn bản đi phát hành dạng điện tử": "x"')
    assert len(errors) == 2 and errors[1].startswith("Sở Tài chính.csv, row 4,")
    assert (drop / "rejected" / "Sở Tài chính-1.csv").is_file()


def test_a_file_replaced_after_reading_stays_for_the_next_run(drop: Path) -> None:
    path = write_csv(drop / "sửa lại.csv", report_rows(23))
    age(drop)
    source, _ = collect(drop)
    write_csv(path, report_rows(24))
    age(drop, seconds=30)
    asyncio.run(source.stored())
    assert path.is_file() and not (drop / "archive").exists()


def test_a_symlinked_archive_is_refused(drop: Path, tmp_path: Path) -> None:
    from collectors import SourceRequestError

    write_csv(drop / "tốt.csv", report_rows(25))
    elsewhere = tmp_path / "nơi khác"
    elsewhere.mkdir()
    (drop / "archive").symlink_to(elsewhere)
    age(drop)
    source, _ = collect(drop)
    with pytest.raises(SourceRequestError, match="symbolic link"):
        asyncio.run(source.stored())
    assert list(elsewhere.iterdir()) == [] and (drop / "tốt.csv").is_file()


# ----------------------------------------------------------------------------- options

def write_monitor_yaml(directory: Path, drop: Path, options: dict[str, Any] | None = None) -> Path:
    import yaml

    (directory / "units.yaml").write_text(UNITS_YAML, encoding="utf-8")
    data = {"version": 1, "province": {"name": "Tỉnh Sơn Hà", "code": PROVINCE},
            "database": {"url": f"sqlite:///{directory}/egovmon.db"}, "units": {"file": "units.yaml"},
            "alerts": {"enabled": False},
            "sources": [{"id": "bao-cao-qlvb", "kind": "spreadsheet", "url": drop.as_uri(), "grain": "month",
                         "options": options if options is not None else {"measures": list(MEASURES),
                                                                          "min_age": "2s"}}]}
    path = directory / "monitor.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(("options", "words"), [
    ({"measures": ["docs_outgoing_totl"]}, "unknown measure(s) docs_outgoing_totl"),
    ({"measures": ["docs_outgoing_total"], "max_byte": 5}, "max_byte"),
    ({"measures": ["docs_outgoing_total", "docs_outgoing_total"]}, "measures listed twice: docs_outgoing_total"),
    ({"measures": []}, "measures"),
    ({"headers": {"my_measure": "Của tôi"}}, "not in options.measures: my_measure"),
])
def test_option_mistakes_are_reported_at_config_load(tmp_path: Path, options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_monitor_yaml(tmp_path, tmp_path / "drop", options))
    assert words in str(caught.value) and "bad options for kind 'spreadsheet'" in str(caught.value)


def test_a_measure_of_ones_own_catalog_is_taken_with_its_header(drop: Path) -> None:
    config = load_config(write_monitor_yaml(drop.parent, drop, {
        "measures": ["docs_outgoing_total", "trang_web_bai_viet"],
        "headers": {"trang_web_bai_viet": "Bài viết trên cổng TTĐT"}, "min_age": 0}))
    source = config.source("bao-cao-qlvb")
    write_csv(drop / "riêng.csv", [[UNITS[0], "2026-10", 4, 9]],
              header=[UNIT_HEADER, PERIOD_HEADER, "Văn bản đi (sổ văn bản)", "Bài viết trên cổng TTĐT"])
    age(drop)
    _, result = collect(drop, options=dict(source.options))
    assert result.rejections == []
    assert sorted((o.measure, o.value) for o in result.observations) == [
        ("docs_outgoing_total", 4.0), ("trang_web_bai_viet", 9.0)]


# ----------------------------------------------------------------------------- through the runner

class Province:
    """The service's parts from a YAML configuration, storing into SQLite."""

    def __init__(self, config: Config) -> None:
        engine = create_engine_for(config.database.url)
        upgrade_database(engine)
        self.engine = engine
        self.store = Store(engine)
        self.clock = FrozenClock(NOW)
        units = load_units(config.units.file)
        self.runner = CollectionRunner(config, self.store, CATALOG, units, ServiceMetrics(), self.clock)
        self.kpis = KpiEngine(CATALOG, units, self.store, config.tz)

    def stored(self) -> dict[tuple[str, str, str], float]:
        rows = self.store.load_observations(MEASURES, Period.of_month(2020, 1, TZ).start, NOW)
        return {(o.measure, o.unit, Period(o.period_start, o.period_end).label(TZ)): o.value for o in rows}


@pytest.fixture
def province(tmp_path: Path, drop: Path) -> Iterator[Province]:
    province = Province(load_config(write_monitor_yaml(tmp_path, drop)))
    yield province
    province.engine.dispose()


def test_end_to_end_from_yaml_to_kpi(province: Province, drop: Path) -> None:
    files = [write_xlsx(drop / "Sở Nội vụ tháng 10.xlsx", report_rows(26, units=UNITS[:1], months=("2026-10",))),
             write_csv(drop / "Sở Tài chính tháng 10.csv", report_rows(27, units=UNITS[1:2], months=("2026-10",)))]
    bad_rows = report_rows(28, units=UNITS[2:], months=("2026-10",))
    bad_rows[0][2] = "=SUM(1,2)"
    write_xlsx(drop / "Sở Xây dựng tháng 10.xlsx", bad_rows)
    age(drop)
    expected = expected_values(files)
    cells = [row for path in files for row in read_back(path)]
    summary = asyncio.run(province.runner.collect("bao-cao-qlvb"))
    assert summary.ok, summary.error
    assert summary.rejected_by_reason == {"formula": 1, "file_rejected": 1}
    assert province.stored() == expected
    # outgoing_docs_electronic_rate for October, by hand from the cells of the accepted files
    numerator = sum(int(r[VI["docs_outgoing_electronic"]]) for r in cells)
    denominator = sum(int(r[VI["docs_outgoing_total"]]) for r in cells)
    values = province.kpis.compute(NOW, [Window.parse("previous_month")], kpis=["outgoing_docs_electronic_rate"],
                                   units=[PROVINCE])
    assert [(v.numerator, v.denominator, v.units_reporting) for v in values] == [(numerator, denominator, 2)]
    assert values[0].value == pytest.approx(numerator / denominator)
    rejections = province.store.recent_rejections("bao-cao-qlvb")
    assert sorted(r["reason"] for r in rejections) == ["file_rejected", "formula"]
    assert sorted(p.name for p in (drop / "archive" / "2026-11-10").iterdir()) == sorted(p.name for p in files)
    assert (drop / "rejected" / "Sở Xây dựng tháng 10.xlsx.errors.txt").is_file()


def test_dry_run_stores_and_moves_nothing(province: Province, drop: Path) -> None:
    files = [write_xlsx(drop / "tháng 9.xlsx", report_rows(29, months=("2026-09",)))]
    bad = report_rows(30, months=("2026-10",))
    bad[0][3] = ""
    write_csv(drop / "lỗi.csv", bad)
    age(drop)
    expected = expected_values(files)
    before = sorted(p.name for p in drop.iterdir())
    summary = asyncio.run(province.runner.collect("bao-cao-qlvb", dry_run=True))
    assert summary.ok and province.store.count_observations() == 0
    assert {(o.measure, o.unit, o.period.label(TZ)): o.value for o in summary.preview} == expected
    assert [r.reason for r in summary.rejected] == ["empty_cell", "file_rejected"]
    assert sorted(p.name for p in drop.iterdir()) == before


class Killed(BaseException):
    """The process dies: not an Exception, so nothing on the way catches it."""


def test_killed_between_commit_and_move_stores_the_same_values_again(province: Province, drop: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    files = [write_xlsx(drop / "Sở Nội vụ.xlsx", report_rows(31, units=UNITS[:1])),
             write_csv(drop / "Sở Tài chính.csv", report_rows(32, units=UNITS[1:]))]
    age(drop)
    expected = expected_values(files)

    async def killed(self: SpreadsheetCollector) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(SpreadsheetCollector, "stored", killed)
        with pytest.raises(Killed):
            asyncio.run(province.runner.collect("bao-cao-qlvb"))
    assert province.stored() == expected  # committed before the kill
    assert all(path.is_file() for path in files)  # but not moved
    count = province.store.count_observations()
    province.clock.advance(timedelta(hours=1))
    summary = asyncio.run(province.runner.collect("bao-cao-qlvb"))
    assert summary.ok and summary.observations == len(expected)
    assert province.store.count_observations() == count == len(expected)  # upserted, not duplicated
    assert province.stored() == expected
    assert not any(path.exists() for path in files)
    assert len(list((drop / "archive" / "2026-11-10").iterdir())) == len(files)


def test_a_folder_delivered_later_corrects_what_was_stored(province: Province, drop: Path) -> None:
    first = report_rows(33, months=("2026-10",))
    write_csv(drop / "lần 1.csv", first)
    age(drop)
    assert asyncio.run(province.runner.collect("bao-cao-qlvb")).ok
    corrected = [[*row[:2], row[2] + 1, *row[3:]] for row in first]
    fix = write_csv(drop / "lần 1.csv", corrected)  # same name as the archived one
    age(drop)
    province.clock.advance(timedelta(days=1))
    assert asyncio.run(province.runner.collect("bao-cao-qlvb")).ok
    assert province.stored() == expected_values([drop / "archive" / "2026-11-11" / fix.name])
    assert os.path.exists(drop / "archive" / "2026-11-10" / "lần 1.csv")


def test_a_file_full_of_errors_lists_them_all_in_its_report(drop: Path) -> None:
    rows = [[UNITS[0], f"{year}-01", "?", 1, 1, 1] for year in range(1900, 2020)]
    write_csv(drop / "toàn lỗi.csv", rows)
    age(drop)
    source, result = collect(drop)
    errors = cell_errors(result.rejections)
    assert [r.reason for r in errors] == ["not_a_number"] * 100 + ["too_many_errors"]
    assert f"and {len(rows) - 100} more errors" in errors[-1].detail
    asyncio.run(source.stored())
    listed = (drop / "rejected" / "toàn lỗi.csv.errors.txt").read_text(encoding="utf-8").splitlines()
    assert len(listed) == len(rows) and all(", column \"Văn bản đi (sổ văn bản)\": \"?\"" in line for line in listed)


def test_max_rows(drop: Path) -> None:
    rows = report_rows(34)
    write_csv(drop / "dài.csv", rows)
    age(drop)
    _, result = collect(drop, options={"max_rows": len(rows) - 1})
    assert [r.reason for r in cell_errors(result.rejections)] == ["too_large"]
    assert f"more than {len(rows) - 1} data rows" in result.rejections[0].detail


def with_sheet_xml(path: Path, sheet_xml: bytes) -> None:
    """``path`` with its first worksheet's XML replaced, the rest of the workbook intact."""
    import zipfile

    original = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(original)) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            target.writestr(item, sheet_xml if item.filename == "xl/worksheets/sheet1.xml" else data)


ENTITY_BOMB = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
               b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
               b'<row r="1"><c r="A1" t="inlineStr"><is><t>&b;</t></is></c></row></sheetData></worksheet>')


@pytest.mark.parametrize("sheet_xml", [b"<worksheet><sheetData><row", ENTITY_BOMB], ids=["truncated", "entities"])
def test_a_damaged_sheet_is_not_a_spreadsheet(drop: Path, sheet_xml: bytes) -> None:
    with_sheet_xml(write_xlsx(drop / "hỏng bên trong.xlsx", report_rows(35)), sheet_xml)
    good = write_csv(drop / "tốt.csv", report_rows(36, months=("2026-05",)))
    age(drop)
    _, result = collect(drop)
    assert [(r.reason, r.raw_ref) for r in cell_errors(result.rejections)] == [
        ("not_a_spreadsheet", "hỏng bên trong.xlsx")]
    assert stored_table(result) == expected_values([good])


def test_a_folder_url_with_unencoded_accents(tmp_path: Path) -> None:
    folder = tmp_path / "báo-cáo"
    folder.mkdir()
    source = collector(folder)
    url = f"file://{folder}"  # as an operator types it, not percent-encoded
    typed = SpreadsheetCollector(dataclasses.replace(source.settings, url=url), cast(Any, None), TZ, source.clock)
    assert typed.folder == folder
