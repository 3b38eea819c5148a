"""Prometheus exposition of the KPI snapshot.

The KPI families are rendered to text once, when the snapshot is computed, so
a scrape only concatenates bytes: it never recomputes KPIs and never fails
because a source did. prometheus_client renders the service's own (small)
health families. Ratios are exported in 0–1, with the numerator and
denominator beside them so PromQL roll-ups can stay correct
(``sum(num) / sum(den)``, never ``avg(value)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import generate_latest

from monitor.catalog import Catalog
from monitor.kpi import KpiValue
from monitor.metrics import ServiceMetrics
from monitor.units import UnitTree

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) or abs(value) >= 1e15 else f"{int(value)}"


def labels_text(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs) + "}"


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    kind: str = "gauge"


def family_lines(fam: Family, rows: Iterable[tuple[str, float]]) -> list[str]:
    """HELP, TYPE and one line per (rendered label set, value)."""
    return [f"# HELP {fam.name} {fam.help}", f"# TYPE {fam.name} {fam.kind}",
            *(f"{fam.name}{labels} {format_value(number)}" for labels, number in rows)]


KPI_VALUE = Family("egov_kpi_value", "KPI value (ratio 0-1) of the unit's subtree over the window")
KPI_NUMERATOR = Family("egov_kpi_numerator", "Sum of the KPI's numerator measures over the window")
KPI_DENOMINATOR = Family("egov_kpi_denominator",
                         "Sum of the KPI's denominator measures over the window")
KPI_REPORTING = Family("egov_kpi_units_reporting",
                       "Units of the subtree that contributed data to the KPI over the window")
UNIT_INFO = Family("egov_unit_info", "Organisational unit: name, level, group and parent")
KPI_INFO = Family("egov_kpi_info", "KPI catalog entry: names and direction")


def render_kpi_families(values: Sequence[KpiValue], catalog: Catalog, units: UnitTree) -> bytes:
    """Text exposition of the KPI snapshot, with unit and KPI metadata."""
    lines: list[str] = []
    unit_labels: dict[str, str] = {}
    for value in values:
        if value.unit not in unit_labels:
            unit = units.get(value.unit)
            level, group = (unit.level.value, unit.group) if unit else ("", "")
            unit_labels[value.unit] = (f'unit="{escape_label(value.unit)}",'
                                       f'level="{escape_label(level)}",group="{escape_label(group)}"')

    def family(fam: Family, rows: Iterable[tuple[str, float]]) -> None:
        lines.extend(family_lines(fam, rows))

    def series(value: KpiValue) -> str:
        return (f'{{kpi="{escape_label(value.kpi)}",{unit_labels[value.unit]},'
                f'window="{escape_label(value.window)}"}}')

    family(KPI_VALUE, ((series(v), v.value) for v in values if v.value is not None))
    family(KPI_NUMERATOR, ((series(v), v.numerator) for v in values))
    family(KPI_DENOMINATOR, ((series(v), v.denominator) for v in values))
    family(KPI_REPORTING, ((series(v), float(v.units_reporting)) for v in values))
    family(UNIT_INFO, (
        (labels_text([("unit", u.code), ("name", u.name), ("level", u.level.value), ("group", u.group),
                  ("parent", u.parent or "")]), 1.0)
        for code in unit_labels if (u := units.get(code)) is not None))
    family(KPI_INFO, (
        (labels_text([("kpi", k), ("name", kpi.vi), ("name_en", kpi.en), ("direction", kpi.direction)]),
         1.0) for k, kpi in catalog.kpis.items()))
    return ("\n".join(lines) + "\n").encode("utf-8")


class Exposition:
    """Holds the pre-rendered KPI text; ``chunks()`` is what ``/metrics`` serves."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self._kpi_text = b""

    def publish(self, kpi_text: bytes) -> None:
        self._kpi_text = kpi_text  # one reference swap: a scrape sees old or new, never half

    def chunks(self) -> tuple[bytes, bytes]:
        """The service's own families (rendered now: they are small and live), then the
        KPI text as published. Kept apart so that a scrape writes them one after the other
        instead of joining them: at a million series the join would copy 100+ MB per scrape."""
        return generate_latest(self.metrics.registry), self._kpi_text

    def render(self) -> bytes:
        """The whole exposition as one ``bytes`` (for tests and tools; ``/metrics`` streams ``chunks()``)."""
        return b"".join(self.chunks())
