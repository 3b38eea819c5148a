"""When will the target be reached at the current pace?

The trend is a Theil–Sen line: the median of the slopes between every pair of
points, and the median intercept for that slope. One odd month (a holiday, a
late batch of reports) moves an ordinary least-squares line a lot and a median
hardly at all — and unit KPIs have odd months. A few lines of arithmetic; no
statistics package needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from statistics import median

# Slower than this (ratio points per year) towards the target counts as flat:
# at 0.1 percentage point a year, no deadline anyone sets is ever met.
FLAT_PER_YEAR = 0.001
# Beyond this the date is not a forecast, it is a figure of speech.
HORIZON = date(2100, 1, 1)


@dataclass(frozen=True)
class Trend:
    slope_per_day: float
    intercept: float  # value at day ordinal 0
    points: int

    def value_on(self, day: date) -> float:
        return self.intercept + self.slope_per_day * day.toordinal()

    @property
    def per_year(self) -> float:
        return self.slope_per_day * 365.25


@dataclass(frozen=True)
class Forecast:
    points: int  # how many points the trend used
    value_at_deadline: float | None  # projected, clamped to [0, 1]; None: too few points
    reachable: bool | None  # None: too few points to say
    reached_on: date | None  # the day the target is reached at the current pace
    trend_per_year: float | None


def theil_sen(points: Sequence[tuple[date, float]]) -> Trend | None:
    if len(points) < 2:
        return None
    slopes = [(y1 - y0) / (d1.toordinal() - d0.toordinal())
              for i, (d0, y0) in enumerate(points) for d1, y1 in points[i + 1:]
              if d1 != d0]
    if not slopes:
        return None
    slope = median(slopes)
    intercept = median(y - slope * d.toordinal() for d, y in points)
    return Trend(slope, intercept, len(points))


def forecast(points: Sequence[tuple[date, float]], *, today: date, target: float, deadline: date,
             higher_is_better: bool, already_met: bool, min_points: int) -> Forecast:
    """Project the trend of ``points`` (day, value) to the deadline and find the
    day it crosses ``target``. Flat or moving away: not reachable."""
    ordered = sorted(points)
    if len(ordered) < min_points:
        return Forecast(len(ordered), None, None, None, None)
    trend = theil_sen(ordered)
    if trend is None:
        return Forecast(len(ordered), None, None, None, None)
    at_deadline = min(1.0, max(0.0, trend.value_on(deadline)))
    if already_met:
        return Forecast(trend.points, at_deadline, True, today, trend.per_year)
    towards = trend.slope_per_day if higher_is_better else -trend.slope_per_day
    if towards * 365.25 < FLAT_PER_YEAR:
        return Forecast(trend.points, at_deadline, False, None, trend.per_year)
    crossing = (target - trend.intercept) / trend.slope_per_day
    if crossing >= HORIZON.toordinal():
        return Forecast(trend.points, at_deadline, False, None, trend.per_year)
    # The line may already be past the target while the latest value is not:
    # then it is reached "now" at the trend's pace, not in the past.
    reached = date.fromordinal(max(today.toordinal(), math.ceil(crossing)))
    return Forecast(trend.points, at_deadline, True, reached, trend.per_year)
