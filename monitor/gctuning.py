"""The garbage collector's thresholds for a process that builds many objects per cycle.

A collection cycle builds tens of thousands of objects that all outlive it for a
while (validated records, observations). With CPython's default first-generation
threshold (700) the collector runs every few hundred of them, promotes them and
rescans them: on the 1,000-unit benchmark cycle (``benchmarks/collection.py``),
240 young and two full collections spent 0.15–0.2 s of a 2 s cycle in the
collector, each pause holding the event loop and with it every request in flight
and every ``/metrics`` scrape. At 10,000 the collector runs about 15 times a cycle,
for about 0.05 s. Reference cycles are still collected, in bigger batches; the
memory they hold meanwhile is a few megabytes at most.
"""

from __future__ import annotations

import gc

FIRST_GENERATION_THRESHOLD = 10_000


def tune_gc() -> None:
    """Raise the first generation's threshold (never lower it); the older generations keep theirs."""
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, FIRST_GENERATION_THRESHOLD), second, third)
