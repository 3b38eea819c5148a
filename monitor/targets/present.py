"""Evaluations as the terminal and JSON show them."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from monitor.targets.evaluate import STATUSES, Evaluation


def evaluation_json(evaluation: Evaluation) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "evaluation"}
    for key, value in dataclasses.asdict(evaluation).items():
        out[key] = value.isoformat() if isinstance(value, date | datetime) else value
    return out


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def evaluation_line(e: Evaluation) -> str:
    if e.forecast_reachable is None:
        outlook = f"forecast: too few points ({e.forecast_points})"
    elif e.forecast_reachable:
        outlook = f"reached {e.forecast_reached_on} at current pace"
    else:
        outlook = "not reachable at current pace"
    gap = "" if e.gap is None else f" gap {100 * e.gap:+.1f} pt"
    return (f"{e.rule:<44} {e.unit:<15} {e.status:<9} actual {_percent(e.actual):>6} expected "
            f"{_percent(e.expected):>6} target {e.comparator} {_percent(e.target)} by {e.deadline}{gap}; {outlook}")


def status_summary(evaluations: Iterable[Evaluation]) -> list[str]:
    """One line per rule: how many units in each status."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for e in evaluations:
        counts[e.rule][e.status] += 1
    return [f"{rule:<44} " + ", ".join(f"{c[s]} {s}" for s in STATUSES if c[s])
            for rule, c in sorted(counts.items())]
