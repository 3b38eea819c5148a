from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from monitor.timeutil import Period, aware_utc, iter_periods, parse_duration, zone
from monitor.windows import Window

VN = zone("Asia/Ho_Chi_Minh")


def test_month_period_starts_at_local_midnight_in_utc() -> None:
    period = Period.of_month(2025, 7, VN)
    # Local midnight 2025-07-01 in UTC+7 is 17:00 UTC the day before.
    assert period.start == datetime(2025, 6, 30, 17, tzinfo=UTC)
    assert period.end == datetime(2025, 7, 31, 17, tzinfo=UTC)
    assert period.label(VN) == "2025-07"
    assert period.grain(VN) == "month"


def test_instant_late_in_the_utc_day_belongs_to_the_next_local_day() -> None:
    instant = datetime(2025, 6, 30, 18, tzinfo=UTC)  # 01:00 on 1 July in Hanoi
    assert Period.containing(instant, "month", VN).label(VN) == "2025-07"
    assert Period.containing(instant, "day", VN).label(VN) == "2025-07-01"


def test_iter_periods_covers_span_in_order() -> None:
    start = Period.of_month(2024, 11, VN).start
    end = Period.of_month(2025, 2, VN).start
    labels = [p.label(VN) for p in iter_periods(start, end, "month", VN)]
    assert labels == ["2024-11", "2024-12", "2025-01"]
    days = list(iter_periods(start, start + timedelta(days=3), "day", VN))
    assert [p.label(VN) for p in days] == ["2024-11-01", "2024-11-02", "2024-11-03"]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        aware_utc(datetime(2025, 1, 1))
    assert aware_utc(datetime(2025, 1, 1, 7, tzinfo=timezone(timedelta(hours=7)))) == datetime(
        2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200),
                                               ("7d", 604800), ("30", 30)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_parse_duration_error_names_value() -> None:
    with pytest.raises(ValueError, match="'soon'"):
        parse_duration("soon")


AS_OF = datetime(2026, 11, 22, 3, tzinfo=UTC)  # 10:00 local


@pytest.mark.parametrize(("spec", "first", "last"), [
    ("month", date(2026, 11, 1), date(2026, 12, 1)),
    ("previous_month", date(2026, 10, 1), date(2026, 11, 1)),
    ("quarter", date(2026, 10, 1), date(2027, 1, 1)),
    ("ytd", date(2026, 1, 1), date(2027, 1, 1)),
    ("rolling_30d", date(2026, 10, 24), date(2026, 11, 23)),
])
def test_window_bounds_follow_the_local_calendar(spec: str, first: date, last: date) -> None:
    start, end = Window.parse(spec).bounds(AS_OF, VN)
    assert start == datetime(first.year, first.month, first.day, tzinfo=VN).astimezone(UTC)
    assert end == datetime(last.year, last.month, last.day, tzinfo=VN).astimezone(UTC)


def test_unknown_window_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="rolling_<N>d"):
        Window.parse("fortnight")
    with pytest.raises(ValueError):
        Window.parse("rolling_0d")
