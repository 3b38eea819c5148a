"""``python -m benchmarks [--quick] [--only NAME]``: one JSON object per line."""

from __future__ import annotations

import argparse
import sys

from benchmarks import reports

SUITES = {"reports": reports.run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller scale, one repeat (under two minutes)")
    parser.add_argument("--only", choices=sorted(SUITES), action="append", help="run only these suites")
    args = parser.parse_args(argv)
    for name in args.only or list(SUITES):
        print(f"benchmarks: {name} …", file=sys.stderr, flush=True)
        for result in SUITES[name](args.quick):
            print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
