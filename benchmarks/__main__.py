"""``python -m benchmarks [--quick] [--only NAME]``: one JSON object per line."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Iterable

from benchmarks.common import Result
from monitor.gctuning import tune_gc

# Each suite is a module with ``run(quick: bool) -> Iterable[Result]``, imported only
# when it runs, so one suite's heavy imports do not slow the others.
SUITES = {
    "collection": "benchmarks.collection",
    "ingest": "benchmarks.ingest",
    "evaluation": "benchmarks.evaluation",
    "metrics": "benchmarks.metrics",
    "reports": "benchmarks.reports",
    "email": "benchmarks.email",
    "memory": "benchmarks.memory",
}


def suite(name: str) -> Callable[[bool], Iterable[Result]]:
    runner: Callable[[bool], Iterable[Result]] = importlib.import_module(SUITES[name]).run
    return runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller scale, one repeat (under two minutes)")
    parser.add_argument("--only", choices=list(SUITES), action="append", help="run only these suites")
    args = parser.parse_args(argv)
    tune_gc()  # as ``egovmon`` does when it starts: the figures are the service's
    for name in args.only or list(SUITES):
        started = time.perf_counter()
        print(f"benchmarks: {name} …", file=sys.stderr, flush=True)
        for result in suite(name)(args.quick):
            print(result.line(), flush=True)
        print(f"benchmarks: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
