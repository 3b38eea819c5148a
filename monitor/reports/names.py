"""Names every report format shows, in both languages: one table, so the Excel
file, the web page, the CSV's reader and the mail call a status the same."""

from __future__ import annotations

from monitor.reports.model import Language

STATUS_NAMES: dict[Language, dict[str, str]] = {
    "vi": {"met": "Đạt", "on_track": "Đúng tiến độ", "at_risk": "Có nguy cơ", "behind": "Chậm tiến độ",
           "missed": "Không đạt (quá hạn)", "no_data": "Chưa có dữ liệu", "stale": "Dữ liệu cũ"},
    "en": {"met": "Met", "on_track": "On track", "at_risk": "At risk", "behind": "Behind",
           "missed": "Missed (deadline passed)", "no_data": "No data yet", "stale": "Stale data"},
}
