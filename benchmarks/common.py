"""What every benchmark shares: timing with repeats and the JSON line it prints."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def best_of(work: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` runs, in seconds: the least disturbed by the machine."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    scale: str
    goal: str

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("inf")

    def line(self) -> str:
        return json.dumps({"name": self.name, "value": round(self.value, 4), "unit": self.unit,
                           "baseline": self.baseline, "baseline_value": round(self.baseline_value, 4),
                           "ratio": round(self.ratio, 3), "scale": self.scale, "goal": self.goal},
                          ensure_ascii=False)
