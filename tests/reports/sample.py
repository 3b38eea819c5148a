"""A small, hand-made gap report (Vietnamese names, every status, a formula-like
unit name) for the renderers' tests; the end-to-end tests use the simulated province."""

from __future__ import annotations

from datetime import UTC, date, datetime

from monitor.reports.model import GapReport, GapRow, Point, ScoreRow, TargetSection, UnitRef

AS_OF = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
UNITS = (
    UnitRef("000.00.00.H99", "UBND tỉnh Sơn Hà", "province", "tinh"),
    UnitRef("000.00.01.H99", "Sở Nội vụ", "department", "so_nganh"),
    UnitRef("000.00.02.H99", "Sở Tài chính", "department", "so_nganh"),
    UnitRef("000.01.01.H99", "=HYPERLINK(\"http://x\")+Trung tâm <Phục vụ> & \"HCC\"", "agency", "don_vi"),
    UnitRef("000.20.01.H99", "UBND xã Tân Lập", "commune", "xa"),
)
GROUPS = {"tinh": "Tỉnh", "so_nganh": "Sở, ban, ngành", "don_vi": "Đơn vị trực thuộc", "xa": "Xã, phường"}


def row(unit: UnitRef, status: str, actual: float | None, expected: float, *, rule: str = "qd942-edoc",
        kpi: str = "edoc_ratio", target: float = 0.9, rank: int | None = 1, size: int | None = 2) -> GapRow:
    gap = None if actual is None else expected - actual
    return GapRow(
        rule=rule, kpi=kpi, unit=unit.code, unit_name=unit.name, level=unit.level, group=unit.group,
        group_name=GROUPS[unit.group], status=status, actual=actual, expected=expected, target=target,
        comparator=">=", gap=gap, gap_to_target=None if actual is None else target - actual,
        deadline=date(2027, 12, 31), numerator=0 if actual is None else round(actual * 200),
        denominator=0 if actual is None else 200, units_reporting=1 if actual is not None else 0,
        forecast_value=None if actual is None else min(1.0, actual + 0.1),
        forecast_reached_on=date(2027, 6, 30) if status in ("on_track", "at_risk") else None,
        forecast_reachable=None if actual is None else status != "missed", trend_per_year=0.04,
        data_through=datetime(2026, 11, 21, 17, 0, tzinfo=UTC) if actual is not None else None,
        behind_since=datetime(2026, 10, 1, 3, 0, tzinfo=UTC) if status in ("behind", "missed") else None,
        rank=rank, rank_size=size)


def sample_report(language: str = "vi") -> GapReport:
    province, home, finance, centre, commune = UNITS
    edoc_rows = (row(commune, "missed", 0.41, 0.9, rank=None, size=None),
                 row(centre, "behind", 0.62, 0.8, rank=1, size=1),
                 row(finance, "at_risk", 0.77, 0.8, rank=2, size=2),
                 row(home, "on_track", 0.84, 0.8, rank=1, size=2),
                 row(province, "met", 0.93, 0.8, rank=1, size=1))
    online_rows = (row(home, "no_data", None, 0.5, rule="nq17-online", kpi="online_dossier_ratio", target=0.5),
                   row(finance, "stale", 0.3, 0.5, rule="nq17-online", kpi="online_dossier_ratio", target=0.5))
    history = (*(Point(date(2026, m, 28 if m == 2 else 30), 0.5 + 0.03 * m) for m in range(1, 11)),
               Point(date(2026, 11, 22), None))
    sections = (
        TargetSection(
            rule="qd942-edoc", title="90% văn bản trao đổi dưới dạng điện tử", kpi="edoc_ratio",
            kpi_name="Tỷ lệ văn bản điện tử", window="ytd", target=0.9, comparator=">=",
            deadline=date(2027, 12, 31), severity="warning",
            citation="QĐ 942/QĐ-TTg (15/06/2021): Chiến lược phát triển Chính phủ điện tử",
            citation_url="https://vanban.chinhphu.vn/?docid=203658", citation_verified=True,
            status_counts={"met": 1, "on_track": 1, "at_risk": 1, "behind": 1, "missed": 1, "no_data": 0,
                           "stale": 0},
            rows=edoc_rows, headline_unit=province.code, history=history,
            trajectory=(Point(date(2025, 1, 1), 0.5), Point(date(2027, 12, 31), 0.9))),
        TargetSection(
            rule="nq17-online", title="Hồ sơ trực tuyến đạt 50%", kpi="online_dossier_ratio",
            kpi_name="Tỷ lệ hồ sơ trực tuyến", window="month", target=0.5, comparator=">=",
            deadline=date(2027, 12, 31), severity="critical",
            citation="NQ 17/NQ-CP (07/03/2019): Một số nhiệm vụ, giải pháp trọng tâm phát triển Chính phủ điện tử",
            citation_url=None, citation_verified=False,
            status_counts={"met": 0, "on_track": 0, "at_risk": 0, "behind": 0, "missed": 0, "no_data": 1,
                           "stale": 1},
            rows=online_rows, headline_unit=province.code, history=(), trajectory=(Point(date(2027, 12, 31), 0.5),)),
    )
    scores = (ScoreRow("ict-ranking", "Chỉ số xếp hạng CNTT", home.code, home.name, "so_nganh", "Sở, ban, ngành",
                       72.5, 100, 72.5, 1, 2, True),
              ScoreRow("ict-ranking", "Chỉ số xếp hạng CNTT", finance.code, finance.name, "so_nganh",
                       "Sở, ban, ngành", 61.0, 100, 61.0, 2, 2, False))
    counts = {"met": 1, "on_track": 1, "at_risk": 1, "behind": 1, "missed": 1, "no_data": 1, "stale": 1}
    return GapReport(
        province="Tỉnh Sơn Hà", language=language,  # type: ignore[arg-type]
        timezone="Asia/Ho_Chi_Minh", as_of=AS_OF, as_of_day=date(2026, 11, 22),
        generated_at=AS_OF, scope=None, scope_name="Tỉnh Sơn Hà", status_counts=counts, targets=sections,
        scores=scores, units=UNITS)
