"""The value a unit is expected to have reached on a given day.

``none``: the target itself, every day. ``linear``: a straight glide path from
the baseline (value, day) to the target at the deadline. ``milestones``: a
piecewise-linear path through the baseline, each milestone and the target at
the deadline. Before the path starts the baseline is expected; after the
deadline, the target. Days are the province's calendar days, so a path is the
same wherever the service runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from itertools import pairwise

from monitor.targets.model import TargetRule


def path_points(rule: TargetRule, baseline: tuple[date, float] | None) -> list[tuple[date, float]]:
    """The corners of the path: (day, value), in order."""
    if rule.trajectory.type == "none" or baseline is None or baseline[0] >= rule.deadline:
        # No path, or one that would start after the deadline (a unit first seen
        # then): the target is what is expected.
        return [(rule.deadline, rule.target)]
    start_day, start_value = baseline
    corners = [(start_day, start_value)]
    for milestone in rule.trajectory.milestones:
        if milestone.date > start_day:
            corners.append((milestone.date, milestone.value))
    corners.append((rule.deadline, rule.target))
    return corners


def expected_on(day: date, corners: Sequence[tuple[date, float]]) -> float:
    """The path's value on ``day``; flat before the first corner and after the last."""
    if day <= corners[0][0]:
        return corners[0][1]
    for (d0, v0), (d1, v1) in pairwise(corners):
        if day <= d1:
            return v0 + (v1 - v0) * (day - d0).days / (d1 - d0).days
    return corners[-1][1]
