"""The evaluator's parts, each against numbers worked out by hand."""

from __future__ import annotations

from datetime import date, timedelta
from statistics import linear_regression

import pytest

from monitor.simulators.province import ProvinceModel
from monitor.targets.evaluate import classify, covered_units, trend_instants
from monitor.targets.forecast import forecast, theil_sen
from monitor.targets.model import TargetRule, UnitSelector
from monitor.targets.trajectory import expected_on, path_points
from monitor.timeutil import local_date, zone

TZ = zone("Asia/Ho_Chi_Minh")
CITATION = {"instrument": "QĐ 942/QĐ-TTg", "date": "2021-06-15", "title": "Chiến lược"}


def rule(**fields: object) -> TargetRule:
    base: dict[str, object] = {"id": "r", "kpi": "work_records_online_rate", "units": {"levels": ["province"]},
                               "target": 0.9, "deadline": "2025-12-31", "citation": CITATION}
    return TargetRule.model_validate(base | fields)


# ---------------------------------------------------------------------------- trajectory

def test_linear_path_from_baseline_to_target() -> None:
    linear = rule(baseline={"value": 0.5, "date": "2025-01-01"}, trajectory="linear")
    corners = path_points(linear, (date(2025, 1, 1), 0.5))
    assert expected_on(date(2024, 6, 1), corners) == 0.5  # before the path: the baseline
    # 2025-07-02 is day 182 of 364: halfway from 0.5 to 0.9.
    assert expected_on(date(2025, 7, 2), corners) == pytest.approx(0.5 + 0.4 * 182 / 364)
    assert expected_on(date(2025, 12, 31), corners) == pytest.approx(0.9)
    assert expected_on(date(2027, 1, 1), corners) == pytest.approx(0.9)  # after the deadline: the target


def test_milestones_are_corners_of_the_path() -> None:
    stepped = rule(baseline={"value": 0.2, "date": "2024-12-31"},
                   trajectory={"type": "milestones", "milestones": [{"date": "2025-06-30", "value": "70%"}]})
    corners = path_points(stepped, (date(2024, 12, 31), 0.2))
    assert corners == [(date(2024, 12, 31), 0.2), (date(2025, 6, 30), 0.7), (date(2025, 12, 31), 0.9)]
    assert expected_on(date(2025, 6, 30), corners) == pytest.approx(0.7)
    # 2025-09-30 is 92 of the 184 days from the milestone to the deadline.
    assert expected_on(date(2025, 9, 30), corners) == pytest.approx(0.7 + 0.2 * 92 / 184)


def test_no_trajectory_expects_the_target_all_along() -> None:
    assert expected_on(date(2020, 1, 1), path_points(rule(), None)) == 0.9


# ---------------------------------------------------------------------------- status

@pytest.mark.parametrize(("actual", "expected", "past", "stale", "reported", "status"), [
    (0.9, 0.5, False, False, True, "met"),
    (0.95, 0.5, True, False, True, "met"),
    (0.89, 0.95, True, False, True, "missed"),
    (0.70, 0.70, False, False, True, "on_track"),
    (0.66, 0.70, False, False, True, "at_risk"),  # 4 points behind, margin 5
    (0.65, 0.70, False, False, True, "at_risk"),  # exactly at the margin
    (0.64, 0.70, False, False, True, "behind"),
    (None, 0.70, False, False, False, "no_data"),
    (None, 0.70, False, False, True, "stale"),
    (0.95, 0.70, False, True, True, "stale"),  # stale data is not judged, even when it looks good
])
def test_classify(actual: float | None, expected: float, past: bool, stale: bool, reported: bool,
                  status: str) -> None:
    assert classify(actual=actual, expected=expected, target=0.9, higher_is_better=True, at_risk_margin=0.05,
                    past_deadline=past, stale=stale, ever_reported=reported) == status


def test_classify_lower_is_better_mirrors() -> None:
    common = {"target": 0.05, "higher_is_better": False, "at_risk_margin": 0.02, "past_deadline": False,
              "stale": False, "ever_reported": True}
    assert classify(actual=0.04, expected=0.10, **common) == "met"  # type: ignore[arg-type]
    assert classify(actual=0.09, expected=0.10, **common) == "on_track"  # type: ignore[arg-type]
    assert classify(actual=0.115, expected=0.10, **common) == "at_risk"  # type: ignore[arg-type]
    assert classify(actual=0.13, expected=0.10, **common) == "behind"  # type: ignore[arg-type]


def test_a_ratio_of_exactly_the_target_meets_it() -> None:
    # 9/10 in floating point is 0.9 only up to rounding; it must still count as met.
    assert classify(actual=27 / 30, expected=0.9, target=0.9, higher_is_better=True, at_risk_margin=0.05,
                    past_deadline=True, stale=False, ever_reported=True) == "met"


# ---------------------------------------------------------------------------- forecast

def monthly(values: list[float], start: date = date(2025, 1, 31)) -> list[tuple[date, float]]:
    return [(start + timedelta(days=30 * i), v) for i, v in enumerate(values)]


def test_theil_sen_ignores_one_odd_month_where_least_squares_does_not() -> None:
    points = monthly([0.50, 0.52, 0.54, 0.10, 0.58, 0.60])  # one month the reports came in late
    trend = theil_sen(points)
    assert trend is not None
    assert trend.slope_per_day == pytest.approx(0.02 / 30)  # the true pace
    ols = linear_regression([d.toordinal() for d, _ in points], [v for _, v in points]).slope
    assert abs(ols - 0.02 / 30) > 0.3 * 0.02 / 30  # least squares is dragged off by the outlier


def test_forecast_finds_the_crossing_day() -> None:
    points = monthly([0.60, 0.62, 0.64, 0.66, 0.68, 0.70])  # +0.02 every 30 days
    today = points[-1][0]
    result = forecast(points, today=today, target=0.9, deadline=date(2027, 12, 31), higher_is_better=True,
                      already_met=False, min_points=3)
    # 0.20 still to go at 0.02 / 30 days: 300 days after the last point.
    assert result.reachable is True and result.points == 6
    assert result.reached_on == today + timedelta(days=300)
    assert result.trend_per_year == pytest.approx(0.02 / 30 * 365.25)
    at_deadline = 0.70 + 0.02 / 30 * (date(2027, 12, 31) - today).days
    assert result.value_at_deadline == pytest.approx(min(1.0, at_deadline))


@pytest.mark.parametrize("values", [[0.6] * 6, [0.70, 0.69, 0.68, 0.67, 0.66, 0.65]])
def test_flat_or_falling_is_not_reachable(values: list[float]) -> None:
    result = forecast(monthly(values), today=date(2025, 6, 30), target=0.9, deadline=date(2026, 12, 31),
                      higher_is_better=True, already_met=False, min_points=3)
    assert result.reachable is False and result.reached_on is None


def test_too_few_points_make_no_forecast() -> None:
    result = forecast(monthly([0.5, 0.6]), today=date(2025, 3, 1), target=0.9, deadline=date(2026, 1, 1),
                      higher_is_better=True, already_met=False, min_points=3)
    assert (result.reachable, result.value_at_deadline, result.points) == (None, None, 2)


def test_lower_is_better_forecast_goes_down() -> None:
    points = monthly([0.20, 0.18, 0.16, 0.14])  # overdue rate falling 2 points a month
    result = forecast(points, today=points[-1][0], target=0.05, deadline=date(2027, 1, 1),
                      higher_is_better=False, already_met=False, min_points=3)
    assert result.reachable is True and result.reached_on == points[-1][0] + timedelta(days=135)


# ---------------------------------------------------------------------------- coverage and trend instants

def test_covered_units_by_level_group_codes_and_descendants(province: ProvinceModel) -> None:
    tree = province.unit_tree()
    day = date(2026, 11, 22)
    departments = [u.code for u in tree.valid_on(day) if u.group == "so_nganh"]
    assert covered_units(UnitSelector(groups=("so_nganh",)), tree, day) == departments
    dept = departments[0]
    below = set(tree.subtree(dept, day))
    assert set(covered_units(UnitSelector(codes=(dept,), descendants=True), tree, day)) == below
    assert covered_units(UnitSelector(codes=(dept,)), tree, day) == [dept]
    assert dept not in covered_units(UnitSelector(groups=("so_nganh",), exclude=(dept,)), tree, day)
    # Districts are gone after the reform: a district rule covers nobody now, but did before it.
    assert covered_units(UnitSelector(levels=("district",)), tree, day) == []  # type: ignore[arg-type]
    assert len(covered_units(UnitSelector(levels=("district",)), tree, date(2025, 6, 30))) > 0  # type: ignore[arg-type]


def test_trend_instants_are_month_ends_in_local_time() -> None:
    from datetime import UTC, datetime

    as_of = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    instants = trend_instants(as_of, 4, TZ)
    assert instants[0] == as_of
    assert [local_date(i, TZ) for i in instants[1:]] == [date(2026, 2, 28), date(2026, 1, 31), date(2025, 12, 31)]
    assert all(i.astimezone(TZ).hour == 23 and i.astimezone(TZ).minute == 59 for i in instants[1:])


def test_a_unit_first_seen_after_the_deadline_is_expected_at_the_target() -> None:
    late = rule(baseline="first_observation", trajectory="linear")
    corners = path_points(late, (date(2026, 1, 31), 0.95))
    assert expected_on(date(2026, 1, 31), corners) == 0.9
