"""Memory: peak RSS of computing the KPI snapshot, evaluating every rule and rendering
/metrics at national scale, against the peak RSS of a process that merely holds the
observations the evaluation reads.

Each measurement runs in a fresh Python process (so peaks are not shared) over the
dataset of benchmarks/evaluation.py, and reads ``VmHWM`` from /proc/self/status at
its end. Both processes import the same modules and build the same unit tree,
catalog and rules first, so the ratio says how much the computation adds on top of
the rows it needs:

- baseline: ``Store.load_observations`` of the evaluator's read (the largest one:
  18 months of the rules' measures), kept alive;
- figure: what ``MonitorService._refresh`` does — ``KpiEngine.compute`` for the
  exporter's default windows (month, ytd), ``Evaluator.evaluate`` of every rule,
  and the /metrics text of both (``render_kpi_families``, ``render_target_families``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import Result

GOAL = "ratio <= 2 (issue 9: peak RSS at national scale reported; at most twice the rows it reads)"


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(mode: str, path: str, provinces: int, units_per_province: int, months: int) -> dict[str, object]:
    """One measurement, in this (fresh) process."""
    from benchmarks._national import TZ, Scale, national_tree
    from benchmarks.evaluation import AS_OF, national_rules, needed_reads
    from monitor.catalog import load_catalog
    from monitor.storage.db import create_engine_for
    from monitor.storage.store import Store

    scale = Scale(provinces, units_per_province, months)
    catalog = load_catalog()
    units = national_tree(scale)
    rules = national_rules(catalog, units)
    engine = create_engine_for(f"sqlite:///{path}")
    store = Store(engine)
    out: dict[str, object] = {}
    if mode == "load":
        measures, start, end = needed_reads(rules, catalog, units)
        rows = store.load_observations(measures, start, end)
        out["rows"] = len(rows)
    else:
        from monitor.exporter import render_kpi_families
        from monitor.kpi import KpiEngine
        from monitor.targets.evaluate import Evaluator
        from monitor.targets.export import render_target_families
        from monitor.windows import Window

        out["setup_kib"] = _peak_kib()
        values = KpiEngine(catalog, units, store, TZ).compute(AS_OF, [Window.parse("month"), Window.parse("ytd")])
        out["kpis_kib"] = _peak_kib()
        evaluations = Evaluator(catalog, units, store, TZ).evaluate(rules, AS_OF)
        out["evaluation_kib"] = _peak_kib()
        # as MonitorService._refresh: each family's part, published as a list (never joined)
        parts = render_kpi_families(values, catalog, units)
        parts += render_target_families(evaluations, rules, catalog, units, TZ)
        out |= {"kpi_values": len(values), "evaluations": len(evaluations),
                "metrics_bytes": sum(len(part) for part in parts)}
    engine.dispose()
    out["peak_kib"] = _peak_kib()
    return out


def measure(mode: str, path: Path, provinces: int, units_per_province: int, months: int) -> dict[str, object]:
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "benchmarks.memory", mode, str(path), str(provinces),
                             str(units_per_province), str(months)], cwd=repo, capture_output=True, text=True,
                            timeout=1800, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory measurement {mode!r} failed:\n{result.stderr[-3000:]}")
    measured: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def run(quick: bool) -> Iterator[Result]:
    from benchmarks._national import national_sqlite
    from benchmarks.evaluation import full_scale, quick_scale, rule_measures
    from monitor.catalog import load_catalog

    scale = quick_scale() if quick else full_scale()
    stored = rule_measures(load_catalog())
    path = national_sqlite(scale, stored)
    args = (path, scale.provinces, scale.units_per_province, scale.months)
    baseline = measure("load", *args)
    snapshot = measure("snapshot", *args)
    yield Result("memory_snapshot_peak_rss", int(str(snapshot["peak_kib"])) / 1024, "MiB",
                 f"peak RSS of a process holding the {baseline['rows']} observations the evaluation reads",
                 int(str(baseline["peak_kib"])) / 1024,
                 f"{scale.describe(len(stored))}; {snapshot['kpi_values']} KPI values, {snapshot['evaluations']} "
                 f"evaluations, /metrics {snapshot['metrics_bytes']} bytes; peak RSS after setup "
                 f"{_mib(snapshot['setup_kib'])}, after the KPIs {_mib(snapshot['kpis_kib'])}, after the evaluation "
                 f"{_mib(snapshot['evaluation_kib'])}, after rendering {_mib(snapshot['peak_kib'])} MiB", GOAL)


def _mib(kib: object) -> int:
    return round(int(str(kib)) / 1024)


if __name__ == "__main__":
    mode, db, p, u, m = sys.argv[1:6]
    print(json.dumps(child(mode, db, int(p), int(u), int(m))))
