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


def family_part(fam: Family, rows: Iterable[tuple[str, float]]) -> bytes:
    """One family's exposition text, encoded. A snapshot is published as a list of these
    parts and never joined: at a million series the lines of one family are all that is
    held beside the encoded parts, instead of every line, their join and its encoding."""
    return ("\n".join(family_lines(fam, rows)) + "\n").encode("utf-8")


# What a snapshot is published as: the families' parts, served one after another.
Parts = list[bytes]


KPI_VALUE = Family("egov_kpi_value", "KPI value (ratio 0-1) of the unit's subtree over the window")
KPI_NUMERATOR = Family("egov_kpi_numerator", "Sum of the KPI's numerator measures over the window")
KPI_DENOMINATOR = Family("egov_kpi_denominator",
                         "Sum of the KPI's denominator measures over the window")
KPI_REPORTING = Family("egov_kpi_units_reporting",
                       "Units of the subtree that contributed data to the KPI over the window")
UNIT_INFO = Family("egov_unit_info", "Organisational unit: name, level, group and parent")
KPI_INFO = Family("egov_kpi_info", "KPI catalog entry: names and direction")


def render_kpi_families(values: Sequence[KpiValue], catalog: Catalog, units: UnitTree) -> Parts:
    """Text exposition of the KPI snapshot, with unit and KPI metadata: one part per family."""
    parts: Parts = []
    unit_labels: dict[str, str] = {}
    for value in values:
        if value.unit not in unit_labels:
            unit = units.get(value.unit)
            level, group = (unit.level.value, unit.group) if unit else ("", "")
            unit_labels[value.unit] = (f'unit="{escape_label(value.unit)}",'
                                       f'level="{escape_label(level)}",group="{escape_label(group)}"')

    def family(fam: Family, rows: Iterable[tuple[str, float]]) -> None:
        parts.append(family_part(fam, rows))

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
    return parts


class Exposition:
    """Holds the pre-rendered snapshot parts; ``chunks()`` is what ``/metrics`` serves."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self._parts: tuple[bytes, ...] = ()

    def publish(self, parts: Sequence[bytes]) -> None:
        self._parts = tuple(parts)  # one reference swap: a scrape sees old or new, never half

    def published(self) -> bytes:
        """The snapshot's text as published (joined: for tests and tools)."""
        return b"".join(self._parts)

    def chunks(self) -> tuple[bytes, ...]:
        """The service's own families (rendered now: they are small and live), then the
        snapshot's parts as published. Kept apart so that a scrape writes them one after
        another instead of joining them: at a million series a join would copy 100+ MB."""
        return (generate_latest(self.metrics.registry), *self._parts)

    def render(self) -> bytes:
        """The whole exposition as one ``bytes`` (for tests and tools; ``/metrics`` streams ``chunks()``)."""
        return b"".join(self.chunks())
