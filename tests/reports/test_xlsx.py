"""The target-gap report as an Excel workbook: read back with openpyxl and checked
cell by cell against the hand-made sample report.

Expected texts, dates and positions are written out here by hand, so a layout or
formatting slip in xlsx.py fails a test.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import replace
from datetime import datetime
from io import BytesIO
from typing import Any

import pytest
from openpyxl import load_workbook

from monitor.reports.model import REPORT_STATUSES, GapReport, UnitRef
from monitor.reports.xlsx import STATUS_COLOURS, STATUS_LABELS, TEXTS, render_xlsx, sheet_name, sheet_names
from tests.reports.sample import UNITS, sample_report

CENTRE_NAME = UNITS[3].name  # '=HYPERLINK("http://x")+Trung tâm <Phục vụ> & "HCC"'
VI_SHEETS = ["Tổng hợp", "qd942-edoc", "nq17-online", "Ma trận", "Dữ liệu"]
EN_SHEETS = ["Summary", "qd942-edoc", "nq17-online", "Matrix", "Data"]
VI_STATUS_HEADERS = ["Đạt", "Đúng tiến độ", "Có nguy cơ", "Chậm tiến độ", "Không đạt (quá hạn)", "Chưa có dữ liệu",
                     "Dữ liệu cũ"]
FORMULA_ELEMENT = re.compile(rb"<(?:\w+:)?f[\s>/]")


def _load(data: bytes) -> Any:
    return load_workbook(BytesIO(data))


@pytest.fixture(scope="module")
def vi_data() -> bytes:
    return render_xlsx(sample_report())


@pytest.fixture(scope="module")
def vi(vi_data: bytes) -> Any:
    return _load(vi_data)


@pytest.fixture(scope="module")
def en() -> Any:
    return _load(render_xlsx(sample_report("en")))


def _row(ws: Any, row: int, first: int = 1, last: int | None = None) -> list[Any]:
    last = last or ws.max_column
    return [ws.cell(row=row, column=col).value for col in range(first, last + 1)]


def _exact(values: list[Any]) -> list[Any]:
    """``values`` for an == against cells: floats as exact as the file keeps them (openpyxl writes
    16 significant digits, so 0.8 - 0.62 comes back as 0.18), everything else equal."""
    return [pytest.approx(v, rel=1e-15, abs=1e-15) if isinstance(v, float) else v for v in values]


def _fill(cell: Any) -> str:
    """The cell's solid fill colour as RRGGBB ('' when not filled)."""
    if cell.fill is None or cell.fill.fill_type != "solid":
        return ""
    return str(cell.fill.fgColor.rgb)[-6:]


# --- Structure ----------------------------------------------------------------------------------------


def test_sheet_names_in_vietnamese_and_english(vi: Any, en: Any) -> None:
    assert vi.sheetnames == VI_SHEETS
    assert en.sheetnames == EN_SHEETS
    assert sheet_names(sample_report()) == VI_SHEETS
    assert sheet_names(sample_report("en")) == EN_SHEETS


def test_catalogues_have_the_same_keys() -> None:
    assert TEXTS["vi"].keys() == TEXTS["en"].keys()
    assert set(STATUS_LABELS["vi"]) == set(STATUS_LABELS["en"]) == set(REPORT_STATUSES) == set(STATUS_COLOURS)


def test_frozen_headers_on_every_sheet(vi: Any) -> None:
    assert [vi[name].freeze_panes for name in VI_SHEETS] == ["B6", "C6", "C6", "C2", "A2"]


def test_column_widths_fit_and_are_capped(vi: Any) -> None:
    sheet = vi["qd942-edoc"]
    code, name = sheet.column_dimensions["A"].width, sheet.column_dimensions["B"].width
    assert code >= len("000.20.01.H99")
    assert len(CENTRE_NAME) <= name <= 60
    for ws in vi.worksheets:
        widths = [dim.width for dim in ws.column_dimensions.values() if dim.width]
        assert widths and max(widths) <= 60
    # The long citation is capped, not 100+ characters wide.
    summary = vi["Tổng hợp"]
    assert summary.column_dimensions["M"].width == 60


def test_workbook_properties_and_deterministic_bytes(vi_data: bytes, vi: Any) -> None:
    assert vi.properties.creator == "egov-kpi-monitor"
    assert vi.properties.title == "Báo cáo tiến độ thực hiện chỉ tiêu Chính phủ điện tử — Tỉnh Sơn Hà"
    assert vi.properties.created == datetime(2026, 11, 22, 3, 0)
    assert vi.properties.modified == datetime(2026, 11, 22, 3, 0)
    with zipfile.ZipFile(BytesIO(vi_data)) as archive:
        # Zip entries carry generated_at in local time, not the clock.
        assert {info.date_time for info in archive.infolist()} == {(2026, 11, 22, 10, 0, 0)}
    assert render_xlsx(sample_report()) == vi_data


# --- Summary ------------------------------------------------------------------------------------------


def test_summary_title_counts_and_targets(vi: Any) -> None:
    ws = vi["Tổng hợp"]
    report = sample_report()
    assert ws["A1"].value == "Báo cáo tiến độ thực hiện chỉ tiêu Chính phủ điện tử — Tỉnh Sơn Hà"
    assert ws["A2"].value == "Phạm vi: Tỉnh Sơn Hà — số liệu tính đến 10:00 ngày 22/11/2026 (giờ Việt Nam)"
    assert _row(ws, 5, 1, 13) == ["Chỉ tiêu", "Chỉ số", "Mục tiêu", "Hạn hoàn thành", *VI_STATUS_HEADERS, "Tổng",
                                  "Căn cứ"]
    assert ws["A6"].value == "Tất cả chỉ tiêu"
    counts = dict(zip(REPORT_STATUSES, _row(ws, 6, 5, 11), strict=True))
    assert counts == report.status_counts == dict.fromkeys(REPORT_STATUSES, 1)
    assert ws["L6"].value == 7

    edoc = _row(ws, 7, 1, 13)
    assert edoc[:4] == ["90% văn bản trao đổi dưới dạng điện tử", "Tỷ lệ văn bản điện tử", 0.9,
                        datetime(2027, 12, 31)]
    assert edoc[4:12] == [1, 1, 1, 1, 1, 0, 0, 5]
    assert edoc[12] == "QĐ 942/QĐ-TTg (15/06/2021): Chiến lược phát triển Chính phủ điện tử"
    assert ws["M7"].hyperlink.target == "https://vanban.chinhphu.vn/?docid=203658"
    assert "%" in ws["C7"].number_format and "≥" in ws["C7"].number_format
    assert ws["D7"].is_date and ws["D7"].number_format == "dd/mm/yyyy"

    online = _row(ws, 8, 1, 13)
    assert online[4:12] == [0, 0, 0, 0, 0, 1, 1, 2]
    assert online[12].endswith("(chưa kiểm chứng)")  # citation_verified=False
    assert ws["M8"].hyperlink is None


def test_summary_scores(vi: Any) -> None:
    ws = vi["Tổng hợp"]
    assert ws["A10"].value == "Chỉ số tổng hợp"
    assert _row(ws, 11, 1, 9) == ["Bộ chỉ số", "Mã đơn vị", "Đơn vị", "Nhóm", "Điểm", "Điểm tối đa",
                                  "Điểm quy đổi (0–100)", "Xếp hạng trong nhóm", "Đủ số liệu"]
    assert _row(ws, 12, 1, 9) == ["Chỉ số xếp hạng CNTT", "000.00.01.H99", "Sở Nội vụ", "Sở, ban, ngành", 72.5, 100,
                                  72.5, "1/2", "Có"]
    assert _row(ws, 13, 1, 9) == ["Chỉ số xếp hạng CNTT", "000.00.02.H99", "Sở Tài chính", "Sở, ban, ngành", 61, 100,
                                  61, "2/2", "Không"]


def test_summary_without_scores_stops_after_the_targets() -> None:
    ws = _load(render_xlsx(replace(sample_report(), scores=())))["Tổng hợp"]
    assert ws.max_row == 8


# --- Target sheets ------------------------------------------------------------------------------------


def test_target_sheet_header(vi: Any) -> None:
    ws = vi["qd942-edoc"]
    assert ws["A1"].value == "90% văn bản trao đổi dưới dạng điện tử"
    assert ws["A2"].value == "Căn cứ: QĐ 942/QĐ-TTg (15/06/2021): Chiến lược phát triển Chính phủ điện tử"
    assert _row(ws, 3, 1, 6) == ["Chỉ số", "Tỷ lệ văn bản điện tử", "Mục tiêu", 0.9, "Hạn hoàn thành",
                                 datetime(2027, 12, 31)]
    assert _row(ws, 5, 1, 14) == [
        "Mã đơn vị", "Đơn vị", "Nhóm", "Trạng thái", "Giá trị hiện tại", "Theo lộ trình đến hôm nay",
        "Chênh lệch so với lộ trình (điểm %)", "Còn cách mục tiêu (điểm %)", "Dự báo tại hạn hoàn thành",
        "Dự kiến đạt mục tiêu ngày", "Xu hướng (điểm %/năm)", "Số liệu đến ngày", "Cảnh báo từ (giờ Việt Nam)",
        "Xếp hạng trong nhóm"]
    assert ws.auto_filter.ref == "A5:N10"


def test_target_sheet_rows_in_order_with_exact_values(vi: Any) -> None:
    report = sample_report()
    for section in report.targets:
        ws = vi[section.rule]
        assert ws.max_row == 5 + len(section.rows)
        for offset, row in enumerate(section.rows):
            values = _row(ws, 6 + offset, 1, 14)
            assert values[:3] == [row.unit, row.unit_name, row.group_name]
            assert values[4:9] == _exact([row.actual, row.expected, row.gap, row.gap_to_target, row.forecast_value])
            assert values[10] == row.trend_per_year


def test_target_sheet_first_rows_written_out(vi: Any) -> None:
    ws = vi["qd942-edoc"]
    # The missed commune: no forecast date, no rank; alerting since 03:00 UTC = 10:00 in Vietnam.
    assert _row(ws, 6, 1, 14) == ["000.20.01.H99", "UBND xã Tân Lập", "Xã, phường", "Không đạt (quá hạn)", 0.41, 0.9,
                                  0.49, 0.49, 0.51, None, 0.04, datetime(2026, 11, 21), datetime(2026, 10, 1, 10, 0),
                                  None]
    # At risk: expected to reach the target on 30/06/2027; data through the 21st (the period ended at
    # local midnight of the 22nd, 17:00 UTC on the 21st).
    assert _row(ws, 8, 1, 14) == _exact(["000.00.02.H99", "Sở Tài chính", "Sở, ban, ngành", "Có nguy cơ", 0.77, 0.8,
                                         0.03, 0.13, 0.87, datetime(2027, 6, 30), 0.04, datetime(2026, 11, 21), None,
                                         "2/2"])
    assert ws["G8"].value != pytest.approx(0.031, rel=1e-15, abs=1e-15)  # the comparison can fail


def test_target_sheet_number_formats(vi: Any) -> None:
    ws = vi["qd942-edoc"]
    for column in "EFGHIK":
        assert "%" in ws[f"{column}6"].number_format, column
    assert ws["E6"].number_format == "0.0%"
    assert ws["G6"].number_format == "+0.0%;-0.0%;0.0%"
    assert ws["J8"].is_date and ws["J8"].number_format == "dd/mm/yyyy"
    assert ws["L6"].is_date and ws["L6"].number_format == "dd/mm/yyyy"
    assert ws["M6"].is_date and ws["M6"].number_format == "dd/mm/yyyy hh:mm"


def test_status_fills_by_status(vi: Any) -> None:
    ws = vi["qd942-edoc"]
    fills = {ws.cell(row=r, column=4).value: _fill(ws.cell(row=r, column=4)) for r in range(6, 11)}
    assert fills == {"Không đạt (quá hạn)": "E06666", "Chậm tiến độ": "F4CCCC", "Có nguy cơ": "FFE599",
                     "Đúng tiến độ": "D9EAD3", "Đạt": "B6D7A8"}
    assert fills["Chậm tiến độ"] != fills["Đạt"]
    online = vi["nq17-online"]
    assert [_fill(online.cell(row=r, column=4)) for r in (6, 7)] == ["D9D9D9", "EFEFEF"]  # no data, stale
    assert _fill(ws["B6"]) == ""  # only the status column is coloured


def test_no_data_row_leaves_numbers_empty(vi: Any) -> None:
    ws = vi["nq17-online"]
    assert _row(ws, 6, 1, 14) == ["000.00.01.H99", "Sở Nội vụ", "Sở, ban, ngành", "Chưa có dữ liệu", None, 0.5, None,
                                  None, None, None, 0.04, None, None, "1/2"]


# --- Matrix -------------------------------------------------------------------------------------------


def test_matrix_holds_actual_values_coloured_by_status(vi: Any) -> None:
    ws = vi["Ma trận"]
    assert _row(ws, 1, 1, 4) == ["Mã đơn vị", "Đơn vị", "90% văn bản trao đổi dưới dạng điện tử",
                                 "Hồ sơ trực tuyến đạt 50%"]
    assert [_row(ws, r, 1, 4) for r in range(2, 7)] == [
        ["000.00.00.H99", "UBND tỉnh Sơn Hà", 0.93, None],
        ["000.00.01.H99", "Sở Nội vụ", 0.84, None],
        ["000.00.02.H99", "Sở Tài chính", 0.77, 0.3],
        ["000.01.01.H99", CENTRE_NAME, 0.62, None],
        ["000.20.01.H99", "UBND xã Tân Lập", 0.41, None],
    ]
    assert _fill(ws["C6"]) == "E06666"  # the commune missed
    assert _fill(ws["C2"]) == "B6D7A8"  # the province met
    assert _fill(ws["D3"]) == "D9D9D9"  # covered, no data: grey, empty
    assert _fill(ws["D2"]) == ""  # not covered: nothing
    assert ws["C2"].number_format == "0.0%"
    assert ws["A8"].value == "Chú giải"
    assert [ws.cell(row=r, column=2).value for r in range(9, 16)] == VI_STATUS_HEADERS
    assert [_fill(ws.cell(row=r, column=1)) for r in range(9, 16)] == [STATUS_COLOURS[s] for s in REPORT_STATUSES]


# --- Data ---------------------------------------------------------------------------------------------


def test_data_sheet_is_the_flat_typed_table(vi: Any) -> None:
    ws = vi["Dữ liệu"]
    report = sample_report()
    assert _row(ws, 1) == [
        "rule", "kpi", "unit", "unit_name", "level", "group", "group_name", "status", "actual", "expected", "target",
        "comparator", "gap", "gap_to_target", "deadline", "numerator", "denominator", "units_reporting",
        "forecast_value", "forecast_reached_on", "forecast_reachable", "trend_per_year", "data_through",
        "behind_since", "rank", "rank_size"]
    assert ws.max_row == 1 + len(report.rows) == 8
    assert _row(ws, 3) == _exact([
        "qd942-edoc", "edoc_ratio", "000.01.01.H99", CENTRE_NAME, "agency", "don_vi", "Đơn vị trực thuộc", "behind",
        0.62, 0.8, 0.9, ">=", 0.18, 0.28, datetime(2027, 12, 31), 124, 200, 1, 0.72, None, True, 0.04,
        datetime(2026, 11, 22, 0, 0), datetime(2026, 10, 1, 10, 0), 1, 1])
    assert [ws.cell(row=r, column=8).value for r in range(2, 9)] == [row.status for row in report.rows]
    assert ws["I3"].number_format == "0.0%" and "%" in ws["M3"].number_format
    assert ws["W3"].is_date and ws["O3"].is_date
    assert "Asia/Ho_Chi_Minh" in ws["W1"].comment.text and "Asia/Ho_Chi_Minh" in ws["X1"].comment.text
    assert ws.auto_filter.ref == "A1:Z8"


# --- Texts and safety ---------------------------------------------------------------------------------


def test_vietnamese_text_intact(vi: Any) -> None:
    assert vi["qd942-edoc"]["B6"].value == "UBND xã Tân Lập"
    assert vi["Ma trận"]["B6"].value == "UBND xã Tân Lập"
    assert vi["Dữ liệu"]["D2"].value == "UBND xã Tân Lập"
    assert vi["qd942-edoc"]["M5"].value == "Cảnh báo từ (giờ Việt Nam)"


def test_formula_like_unit_name_is_plain_text(vi_data: bytes, vi: Any) -> None:
    cells = [vi["qd942-edoc"]["B7"], vi["Ma trận"]["B5"], vi["Dữ liệu"]["D3"]]
    for cell in cells:
        assert cell.value == CENTRE_NAME
        assert cell.data_type == "s"
        assert cell.quotePrefix  # stays text even when the cell is edited in Excel
    with zipfile.ZipFile(BytesIO(vi_data)) as archive:
        sheets = [name for name in archive.namelist() if name.startswith("xl/worksheets/sheet")]
        assert len(sheets) == 5
        for name in sheets:
            xml = archive.read(name)
            assert not FORMULA_ELEMENT.search(xml), name
        assert b"=HYPERLINK(&quot;http://x&quot;)+Trung t\xc3\xa2m &lt;Ph\xe1\xbb\xa5c v\xe1\xbb\xa5&gt; &amp;" in (
            archive.read("xl/worksheets/sheet2.xml").replace(b'"', b"&quot;"))


def _with_names(names: list[str]) -> GapReport:
    report = sample_report()
    section = report.targets[0]
    rows = tuple(replace(row, unit_name=name) for row, name in zip(section.rows, names, strict=True))
    return replace(report, targets=(replace(section, rows=rows), *report.targets[1:]))


def test_no_text_becomes_a_formula_or_an_error() -> None:
    names = ["=1+1", "+SUM(A1:A2)", "-2+3", "@SUM(A1)", "#N/A"]
    data = render_xlsx(_with_names(names))
    ws = _load(data)["qd942-edoc"]
    cells = [ws.cell(row=r, column=2) for r in range(6, 11)]
    assert [cell.value for cell in cells] == names
    assert [cell.data_type for cell in cells] == ["s"] * 5
    assert [bool(cell.quotePrefix) for cell in cells] == [True, True, True, True, False]
    with zipfile.ZipFile(BytesIO(data)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/sheet"):
                assert not FORMULA_ELEMENT.search(archive.read(name)), name


def test_control_characters_do_not_break_the_workbook() -> None:
    names = ["Tab\tđầu", "\tx", "a\x01b", "Dòng 1\nDòng 2", "\rCR"]
    ws = _load(render_xlsx(_with_names(names)))["qd942-edoc"]
    values = [ws.cell(row=r, column=2).value for r in range(6, 11)]
    assert values[2] == "a\ufffdb"
    assert values[0] == "Tab\tđầu" and values[3] == "Dòng 1\nDòng 2"
    assert values[4] == "\rCR"  # a CR written as such would be read back as a line feed
    assert ws["B7"].quotePrefix and ws["B10"].quotePrefix


def test_spaces_and_markup_characters_survive() -> None:
    names = [" đầu", "cuối ", "  ", 'a & b < c > d ]]> "q" \'x\'', "</t></is></c><c><f>1+1</f></c>"]
    data = render_xlsx(_with_names(names))
    ws = _load(data)["qd942-edoc"]
    assert [ws.cell(row=r, column=2).value for r in range(6, 11)] == names
    with zipfile.ZipFile(BytesIO(data)) as archive:
        assert not FORMULA_ELEMENT.search(archive.read("xl/worksheets/sheet2.xml"))


# --- Layout of the sheet XML -------------------------------------------------------------------------


def test_rows_in_ascending_order_and_the_used_range_covers_them(vi_data: bytes) -> None:
    # The long tables are written apart from the cells openpyxl writes and put in among them.
    with zipfile.ZipFile(BytesIO(vi_data)) as archive:
        for n in range(1, 6):
            rows = [int(r) for r in re.findall(rb'<row r="(\d+)"', archive.read(f"xl/worksheets/sheet{n}.xml"))]
            assert rows == sorted(set(rows)), n
    # A read-only load trusts the sheet's <dimension> for its size.
    wb = load_workbook(BytesIO(vi_data), read_only=True)
    assert [ws.calculate_dimension() for ws in wb.worksheets] == ["A1:M13", "A1:N10", "A1:N7", "A1:D15", "A1:Z8"]
    wb.close()


def test_long_tables_keep_their_places() -> None:
    report = sample_report()
    first, second = report.targets
    units = tuple(UnitRef(f"000.30.{i:02d}.H99", f"UBND xã Số {i}", "commune", "xa") for i in range(120))
    rows = tuple(replace(first.rows[i % len(first.rows)], unit=unit.code, unit_name=unit.name)
                 for i, unit in enumerate(units))
    report = replace(report, units=units, targets=(replace(first, rows=rows), second))
    wb = _load(render_xlsx(report))
    ws = wb["qd942-edoc"]
    assert ws.max_row == 5 + 120
    assert _row(ws, 125, 1, 5) == ["000.30.119.H99", "UBND xã Số 119", "Tỉnh", "Đạt", 0.93]  # as the province's
    assert _fill(ws["D125"]) == "B6D7A8" and ws["E125"].number_format == "0.0%"
    assert ws.auto_filter.ref == "A5:N125"
    matrix = wb["Ma trận"]
    assert _row(matrix, 121, 1, 3) == ["000.30.119.H99", "UBND xã Số 119", 0.93]
    # The other target's two units, missing from the report's list, follow; then an empty row, the legend.
    assert [matrix.cell(row=r, column=1).value for r in (122, 123)] == ["000.00.01.H99", "000.00.02.H99"]
    assert matrix["A125"].value == "Chú giải"
    assert [matrix.cell(row=r, column=2).value for r in range(126, 133)] == VI_STATUS_HEADERS
    data = wb["Dữ liệu"]
    assert data.max_row == 1 + 120 + len(second.rows)
    assert _row(data, 121, 1, 4) == ["qd942-edoc", "edoc_ratio", "000.30.119.H99", "UBND xã Số 119"]


# --- English ------------------------------------------------------------------------------------------


def test_english_workbook(en: Any) -> None:
    summary = en["Summary"]
    assert summary["A1"].value == "E-government target progress report — Tỉnh Sơn Hà"
    assert summary["A2"].value == "Scope: Tỉnh Sơn Hà — data as of 2026-11-22 10:00 (Vietnam time)"
    assert _row(summary, 5, 5, 11) == ["Met", "On track", "At risk", "Behind", "Missed (deadline passed)",
                                       "No data yet", "Stale data"]
    ws = en["qd942-edoc"]
    assert [ws.cell(row=r, column=4).value for r in range(6, 11)] == [
        "Missed (deadline passed)", "Behind", "At risk", "On track", "Met"]
    assert ws["M5"].value == "Alerting since (Vietnam time)"
    assert ws["L6"].number_format == "yyyy-mm-dd"
    assert en["Matrix"]["A8"].value == "Legend"
    assert _row(en["Data"], 1, 1, 3) == ["rule", "kpi", "unit"]
    assert en.properties.language == "en"


# --- Sheet names --------------------------------------------------------------------------------------


def test_sheet_name_rules() -> None:
    taken: set[str] = {"history"}
    assert sheet_name("a/b:c*d?e[f]g\\h", taken) == "a_b_c_d_e_f_g_h"
    long = "nq17-" + "x" * 40
    assert sheet_name(long, taken) == long[:31]
    assert sheet_name(long, taken) == long[:29] + "~2"
    assert sheet_name(long.upper(), taken) == long.upper()[:29] + "~3"  # Excel ignores case
    assert sheet_name("History", taken) == "History~2"
    assert sheet_name("'quoted'", taken) == "quoted"
    assert sheet_name("", taken) == "_"
    assert all(len(name) <= 31 for name in taken)


def test_unsafe_and_duplicate_rule_ids_make_valid_sheets() -> None:
    report = sample_report()
    first, second = report.targets
    report = replace(report, targets=(replace(first, rule="Tổng hợp"), replace(second, rule="a/b" + "c" * 40)))
    wb = _load(render_xlsx(report))
    assert wb.sheetnames == ["Tổng hợp", "Tổng hợp~2", "a_b" + "c" * 28, "Ma trận", "Dữ liệu"]
