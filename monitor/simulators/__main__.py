"""``python -m monitor.simulators``: run the three simulated systems until Ctrl-C.

Prints one line per system, ``<kind> <url>``, so scripts (and the tests) can read
where each one listens. Ports default to 0 (ephemeral).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import SYSTEM_KINDS, SimulatorServer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m monitor.simulators",
        description="Serve the simulated province Tỉnh Sơn Hà's document-management, mail-directory "
                    "and one-stop systems over HTTP.")
    parser.add_argument("--seed", type=int, default=2025, help="model seed (default 2025)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    for kind in SYSTEM_KINDS:
        flag = "--port-" + kind.replace("_", "-")
        parser.add_argument(flag, type=int, default=0, dest=f"port_{kind}",
                            help=f"port of the {kind} system (default 0: any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--write-units", type=Path, metavar="FILE",
                        help="also write the province's units file (YAML) to FILE")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    model = ProvinceModel(seed=args.seed)
    if args.write_units is not None:
        model.write_units(args.write_units)
        print(f"units written to {args.write_units}", flush=True)
    ports: dict[str, int] = {kind: getattr(args, f"port_{kind}") for kind in SYSTEM_KINDS}
    async with SimulatorServer(model, host=args.host, ports=ports, latency=args.latency) as server:
        for kind, url in server.urls.items():
            print(f"{kind} {url}", flush=True)
        print("serving; press Ctrl-C to stop", flush=True)
        await asyncio.Event().wait()  # until cancelled by Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        print(f"cannot start the simulators: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(BrokenPipeError):
            print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
