"""Prometheus exposition of target evaluations.

Per rule and unit (labels ``rule, kpi, unit, level, group``): the actual value,
the target, the expected value on the trajectory, the gap, the deadline and the
forecast, and one ``egov_target_status`` series carrying the current status as
a label (``count by (status)`` gives the league table's headline). Per rule:
``egov_target_info`` with the citation and severity, so a dashboard can show
where a number comes from. Rendered once per evaluation, like the KPI families.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta, tzinfo

from monitor.catalog import Catalog
from monitor.exporter import Family, Parts, escape_label, family_part, labels_text
from monitor.targets.evaluate import Evaluation
from monitor.targets.loader import RuleSet
from monitor.timeutil import local_midnight
from monitor.units import UnitTree

ACTUAL = Family("egov_target_actual", "Actual KPI value (ratio 0-1) the target is judged on, over the rule's window")
TARGET = Family("egov_target_value", "Target value (ratio 0-1) the rule sets for the deadline")
EXPECTED = Family("egov_target_expected", "Value expected today on the rule's trajectory (ratio 0-1)")
GAP = Family("egov_target_gap", "Shortfall against the expected value (positive: behind the trajectory)")
GAP_TO_TARGET = Family("egov_target_gap_to_target", "Shortfall against the target itself (positive: not reached)")
STATUS = Family("egov_target_status",
                "1 for the current status: met, on_track, at_risk, behind, missed, no_data or stale")
DEADLINE = Family("egov_target_deadline_timestamp_seconds", "End of the deadline day, as Unix time")
FORECAST_VALUE = Family("egov_target_forecast_value", "Value projected at the deadline by the current trend")
FORECAST_REACHED = Family("egov_target_forecast_reached_timestamp_seconds",
                          "Day the target is reached at the current pace, as Unix time (absent: not reachable)")
FORECAST_POINTS = Family("egov_target_forecast_points", "Number of points the trend was fitted to")
INFO = Family("egov_target_info", "Target rule metadata: KPI, window, severity and citation")


def render_target_families(evaluations: Sequence[Evaluation], rules: RuleSet, catalog: Catalog, units: UnitTree,
                           tz: tzinfo) -> Parts:
    """Text exposition of the evaluations and the rules' metadata: one part per family."""
    unit_part: dict[str, str] = {}
    for ev in evaluations:
        if ev.unit not in unit_part:
            unit = units.get(ev.unit, ev.as_of_day) or units.get(ev.unit)
            level, group = (unit.level.value, unit.group) if unit else ("", "")
            unit_part[ev.unit] = (f'unit="{escape_label(ev.unit)}",level="{escape_label(level)}",'
                                  f'group="{escape_label(group)}"')

    def key(ev: Evaluation) -> str:
        return f'{{rule="{escape_label(ev.rule)}",kpi="{escape_label(ev.kpi)}",{unit_part[ev.unit]}}}'

    def rows(pick: Iterable[tuple[Evaluation, float | None]]) -> Iterator[tuple[str, float]]:
        return ((key(ev), value) for ev, value in pick if value is not None)

    parts: Parts = []

    def family(fam: Family, family_rows: Iterable[tuple[str, float]]) -> None:
        parts.append(family_part(fam, family_rows))

    family(ACTUAL, rows((ev, ev.actual) for ev in evaluations))
    family(TARGET, rows((ev, ev.target) for ev in evaluations))
    family(EXPECTED, rows((ev, ev.expected) for ev in evaluations))
    family(GAP, rows((ev, ev.gap) for ev in evaluations))
    family(GAP_TO_TARGET, rows((ev, ev.gap_to_target) for ev in evaluations))
    family(STATUS, [(key(ev)[:-1] + f',status="{ev.status}"}}', 1.0) for ev in evaluations])
    family(DEADLINE, rows(
        (ev, local_midnight(ev.deadline + timedelta(days=1), tz).timestamp()) for ev in evaluations))
    family(FORECAST_VALUE, rows((ev, ev.forecast_value) for ev in evaluations))
    family(FORECAST_REACHED, rows(
        (ev, local_midnight(ev.forecast_reached_on, tz).timestamp() if ev.forecast_reached_on else None)
        for ev in evaluations))
    family(FORECAST_POINTS, rows((ev, float(ev.forecast_points)) for ev in evaluations))
    info_rows = []
    for loaded in rules.rules:
        rule, citation = loaded.rule, loaded.rule.citation
        info_rows.append((labels_text([
            ("rule", rule.id), ("kpi", rule.kpi), ("severity", rule.severity),
            ("window", rule.window or catalog.kpis[rule.kpi].window),
            ("title", rule.title.vi if rule.title else ""), ("deadline", rule.deadline.isoformat()),
            ("instrument", citation.instrument), ("citation_date", citation.date.isoformat()),
            ("citation_title", citation.title), ("url", citation.url or ""),
            ("verified", "true" if citation.verified else "false"), ("pack", loaded.pack or "")]), 1.0))
    family(INFO, info_rows)
    return parts
