"""What `egovmon collect --dry-run` prints: what would be stored and what was refused.

The operator connecting a new system reads this to check the mapping before
anything is stored: per measure how many units and observations and their sum,
then the observations themselves (unit, measure, period, value, where from)
and every rejection with its reason and detail.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.collection import RunSummary

INDENT = " " * 2


def dry_run_lines(summary: RunSummary, tz: tzinfo, show: int) -> Iterator[str]:
    observations = sorted(summary.preview, key=lambda o: (o.unit, o.measure, o.period.start))
    if observations:
        yield f"{INDENT}would store, per measure:"
        units: dict[str, set[str]] = defaultdict(set)
        counts: dict[str, int] = defaultdict(int)
        sums: dict[str, float] = defaultdict(float)
        for obs in observations:
            units[obs.measure].add(obs.unit)
            counts[obs.measure] += 1
            sums[obs.measure] += obs.value
        for measure in sorted(counts):
            yield (f"{INDENT * 2}{measure:<32} {counts[measure]:>7} observations "
                   f"{len(units[measure]):>5} units  sum {sums[measure]:g}")
        shown = observations[:show]
        yield f"{INDENT}would store (unit, measure, period, value), {len(shown)} of {len(observations)}:"
        for obs in shown:
            where = f"  ← {obs.raw_ref}" if obs.raw_ref else ""
            yield f"{INDENT * 2}{obs.unit:<18} {obs.measure:<32} {obs.period.label(tz):<10} {obs.value:>10g}{where}"
    if summary.rejected:
        shown_rejections = summary.rejected[:show]
        yield f"{INDENT}rejected, {len(shown_rejections)} of {len(summary.rejected)}:"
        for rejection in shown_rejections:
            where = f"  ← {rejection.raw_ref}" if rejection.raw_ref else ""
            yield f"{INDENT * 2}{rejection.reason:<18} {rejection.detail}{where}"
