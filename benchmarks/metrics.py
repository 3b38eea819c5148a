"""/metrics at a million series: a real scrape of the service's HTTP app.

The snapshot is synthetic: 5,000 units (Vietnamese names) × 10 KPIs × 5 windows
= 250,000 KPI values, rendered by ``render_kpi_families`` into four families
(value, numerator, denominator, units reporting): 1,000,000 series, plus the
unit and KPI info families. It is published into an ``Exposition`` once, and
``/metrics`` of ``monitor.http.build_app`` is fetched over loopback with aiohttp,
the whole body read.

Figures, each against a baseline measured in the same run:

- ``metrics_scrape``: one scrape (request to last byte), against formatting the
  same 1,000,000 samples as text lines in a tight loop (f-strings joined and
  encoded), the cost a scrape would have if it rendered anything. Goal: ≤ 2 ×.
  The body is sent uncompressed (the service does not gzip /metrics; see the
  handler), so the figure holds whatever ``Accept-Encoding`` Prometheus sends.
- ``metrics_snapshot_render`` (diagnostic): ``render_kpi_families``, which runs
  once per snapshot (off the scrape path), against the same tight loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from benchmarks.common import Result, best_of

WINDOWS = ("day", "week", "month", "quarter", "ytd")


@dataclass(frozen=True)
class Snapshot:
    values: list[Any]  # KpiValue
    catalog: Any
    units: Any
    series: int  # KPI series in the four value families


def synthetic_snapshot(units: int, kpis: int = 10, windows: tuple[str, ...] = WINDOWS) -> Snapshot:
    from monitor.catalog import load_catalog
    from monitor.kpi import KpiValue
    from monitor.units import Unit, build_tree

    catalog = load_catalog()
    kpi_ids = list(catalog.kpis)[:kpis]
    root = "000.00.00.H99"
    codes = [f"000.{i // 100:02d}.{i % 100:02d}.H{60 + i // 10000:02d}" for i in range(100, 100 + units - 1)]
    tree = build_tree(
        [Unit(code=root, name="UBND tỉnh Sơn Hà", level="province", group="tinh")]
        + [Unit(code=code, name=f"UBND xã Tân Lập Số {i} — huyện Đồng Hỷ", level="commune", group="xa",
                parent=root) for i, code in enumerate(codes)],
        {"tinh": {"vi": "Tỉnh"}, "xa": {"vi": "UBND cấp xã"}}, "<benchmark>")
    values = [KpiValue(kpi, code, window, float(100 + (i * 37) % 900), 1000.0, 1)
              for i, (code, kpi, window) in enumerate(
                  (code, kpi, window) for code in [root, *codes] for kpi in kpi_ids for window in windows)]
    return Snapshot(values, catalog, tree, 4 * len(values))


def tight_loop(snapshot: Snapshot) -> bytes:
    """The floor: the same samples as text lines, f-strings joined, no escaping or metadata."""
    units = snapshot.units
    groups = {code: (u.level.value, u.group) for code in units.codes if (u := units.get(code)) is not None}
    lines = []
    for name, field in (("egov_kpi_value", "value"), ("egov_kpi_numerator", "numerator"),
                        ("egov_kpi_denominator", "denominator"), ("egov_kpi_units_reporting", "units_reporting")):
        for v in snapshot.values:
            level, group = groups[v.unit]
            lines.append(f'{name}{{kpi="{v.kpi}",unit="{v.unit}",level="{level}",group="{group}",'
                         f'window="{v.window}"}} {getattr(v, field)}')
    return ("\n".join(lines) + "\n").encode()


KPI_FAMILIES = (b"egov_kpi_value{", b"egov_kpi_numerator{", b"egov_kpi_denominator{", b"egov_kpi_units_reporting{")


def kpi_series_lines(body: bytes) -> int:
    """Sample lines of the four KPI value families in an exposition."""
    return sum(1 for line in body.split(b"\n") if line.startswith(KPI_FAMILIES))


async def scrape(app: Any, repeats: int) -> tuple[float, bytes]:
    """The fastest of ``repeats`` GET /metrics (to the last byte) and the last body."""
    import aiohttp
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    best, body = float("inf"), b""
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(repeats):
                body = b""
                started = time.perf_counter()
                async with session.get(f"http://127.0.0.1:{port}/metrics",
                                       headers={"Accept-Encoding": "gzip"}) as answer:
                    answer.raise_for_status()
                    body = await answer.read()
                best = min(best, time.perf_counter() - started)
    finally:
        await runner.cleanup()
    return best, body


def metrics_app(snapshot: Snapshot) -> tuple[Any, Any]:
    """``build_app`` around a service that has only what /metrics reads: its exposition."""
    from monitor.exporter import Exposition, render_kpi_families
    from monitor.http import build_app
    from monitor.metrics import ServiceMetrics

    exposition = Exposition(ServiceMetrics())
    exposition.publish(render_kpi_families(snapshot.values, snapshot.catalog, snapshot.units))
    service = SimpleNamespace(exposition=exposition)
    return build_app(service, loopback=True), exposition  # type: ignore[arg-type]


def run(quick: bool) -> list[Result]:
    # Full: a million series, the goal's scale; --quick: 200,000, once.
    return results(units=1000 if quick else 5000, repeats=1 if quick else 3)


def results(*, units: int, repeats: int) -> list[Result]:
    from monitor.exporter import render_kpi_families

    snapshot = synthetic_snapshot(units)
    scale = (f"{units} units × 10 KPIs × {len(WINDOWS)} windows = {len(snapshot.values)} KPI values, "
             f"{snapshot.series} series in 4 families (+ unit and KPI info)")
    floor = best_of(lambda: tight_loop(snapshot), repeats)
    render = best_of(lambda: render_kpi_families(snapshot.values, snapshot.catalog, snapshot.units), repeats)
    app, _ = metrics_app(snapshot)
    seconds, body = asyncio.run(scrape(app, repeats + 1))
    served = kpi_series_lines(body)
    if served != snapshot.series:
        raise RuntimeError(f"/metrics served {served} KPI series, not {snapshot.series}")
    scale += f"; body {len(body) / 1e6:.0f} MB, uncompressed"
    return [
        Result("metrics_scrape", seconds, "s", "the same samples formatted in a tight loop (f-strings joined)",
               floor, scale, "ratio <= 2 (issue 9); a scrape never recomputes KPIs"),
        Result("metrics_snapshot_render", render, "s", "the same samples formatted in a tight loop",
               floor, scale, "none (diagnostic): once per snapshot, off the scrape path"),
    ]
