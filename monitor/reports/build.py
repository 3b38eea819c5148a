"""Build a GapReport from the service: evaluate every rule at the as-of instant
(stored, so the report and the stored evaluations are the same numbers), then
add the history, glide paths, rankings and composite scores around them."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from monitor.reports.model import (
    REPORT_STATUSES,
    GapReport,
    GapRow,
    Language,
    Point,
    ScoreRow,
    TargetSection,
    UnitRef,
)
from monitor.targets.evaluate import Evaluation
from monitor.targets.model import TargetRule
from monitor.targets.trajectory import path_points
from monitor.timeutil import add_months, local_date, local_midnight
from monitor.windows import Window

if TYPE_CHECKING:
    from monitor.service import MonitorService

HISTORY_MONTHS = 12
# Worst first: what needs action before what is fine, and what cannot be judged last.
STATUS_ORDER = {"missed": 0, "behind": 1, "at_risk": 2, "on_track": 3, "met": 4, "stale": 5, "no_data": 6}
Stage = Callable[[str, int, int], None]  # (what, done, total) for progress on the terminal


class ReportError(ValueError):
    """The report cannot be made as asked (an unknown unit, a date without rules …)."""


def end_of_day(day: date, tz: object) -> datetime:
    """The last second of ``day`` in the province's calendar, in UTC."""
    return datetime.combine(day, time(23, 59, 59), tz).astimezone(UTC)  # type: ignore[arg-type]


def build_gap_report(service: MonitorService, *, as_of: datetime | None = None, scope: str | None = None,
                     language: Language = "vi", progress: Stage | None = None) -> GapReport:
    """The report at ``as_of`` (default now) for the province, or the subtree of ``scope``."""
    tz = service.config.tz
    instant = as_of or service.clock.now()
    day = local_date(instant, tz)
    step = progress or (lambda _what, _done, _total: None)
    units = service.units
    if scope is not None and units.get(scope, day) is None:
        known = " (it is not valid on that day)" if scope in units else ""
        raise ReportError(f"no unit {scope!r} on {day.isoformat()}{known}")
    in_scope = set(units.subtree(scope, day)) if scope else {u.code for u in units.valid_on(day)}
    english = language == "en"

    step("evaluating targets", 0, 3)
    evaluations = [e for e in service.evaluate_and_store(service.rules, instant) if e.unit in in_scope]
    step("ranking and scoring", 1, 3)
    scores = service.score_and_store(instant)
    since = _behind_since(service)

    def unit_name(code: str) -> str:
        unit = units.get(code, day)
        if unit is None:
            return code
        return unit.name_en if english and unit.name_en else unit.name

    def group_name(group: str) -> str:
        return units.display_group(group, language)

    by_rule: dict[str, list[Evaluation]] = defaultdict(list)
    for evaluation in evaluations:
        by_rule[evaluation.rule].append(evaluation)
    roots = [scope] if scope else [u.code for u in units.valid_on(day) if u.parent is None]
    headline = roots[0] if roots else None

    step("reading history", 2, 3)
    history = _history(service, [r for r in service.rules if r.id in by_rule], headline, instant)
    sections = []
    for rule in service.rules:
        rows_of_rule = by_rule.get(rule.id)
        if not rows_of_rule:
            continue
        kpi = service.catalog.kpis[rule.kpi]
        ranks = _ranks(rows_of_rule, units, day)
        rows = []
        for e in rows_of_rule:
            unit = units.get(e.unit, day)
            level, group = (str(unit.level), unit.group) if unit else ("", "")
            rank, size = ranks.get(e.unit, (None, None))
            rows.append(GapRow(
                rule=e.rule, kpi=e.kpi, unit=e.unit, unit_name=unit_name(e.unit), level=level, group=group,
                group_name=group_name(group) if group else "", status=e.status, actual=e.actual, expected=e.expected,
                target=e.target, comparator=e.comparator, gap=e.gap, gap_to_target=e.gap_to_target,
                deadline=e.deadline, numerator=e.numerator, denominator=e.denominator,
                units_reporting=e.units_reporting, forecast_value=e.forecast_value,
                forecast_reached_on=e.forecast_reached_on, forecast_reachable=e.forecast_reachable,
                trend_per_year=e.trend_per_year, data_through=e.data_through,
                behind_since=since.get((e.rule, e.unit)), rank=rank, rank_size=size))
        rows.sort(key=lambda r: (STATUS_ORDER.get(r.status, 9), -(r.gap if r.gap is not None else -1e9), r.unit_name))
        headline_eval = next((e for e in rows_of_rule if e.unit == headline), None)
        sections.append(TargetSection(
            rule=rule.id, title=_title(rule, kpi.en if english else kpi.vi, english), kpi=rule.kpi,
            kpi_name=kpi.en if english else kpi.vi, window=rows_of_rule[0].window, target=rule.target,
            comparator=rows_of_rule[0].comparator, deadline=rule.deadline, severity=rule.severity,
            citation=f"{rule.citation.instrument} ({rule.citation.date:%d/%m/%Y}): {rule.citation.title}",
            citation_url=rule.citation.url, citation_verified=rule.citation.verified,
            status_counts=_counts(e.status for e in rows_of_rule), rows=tuple(rows),
            headline_unit=headline, history=history.get(rule.id, ()),
            trajectory=_trajectory(rule, headline_eval)))
    step("done", 3, 3)

    scored = [s for s in scores if s.unit in in_scope]
    index_names = {i.id: (i.en if english and i.en else i.vi) for i in service.indices}
    score_rows = tuple(ScoreRow(
        index=s.index, index_name=index_names.get(s.index, s.index), unit=s.unit, unit_name=unit_name(s.unit),
        group=s.group, group_name=group_name(s.group), score=s.score, max_score=s.max_score, scaled=s.scaled,
        rank=s.rank, rank_size=s.rank_size, complete=s.complete)
        for s in sorted(scored, key=lambda s: (s.index, s.group, s.rank)))
    unit_refs = tuple(UnitRef(code, unit_name(code), str(u.level), u.group)
                      for code in _tree_order(service, roots, day, in_scope)
                      if (u := units.get(code, day)) is not None)
    return GapReport(
        province=service.config.province.name, language=language, timezone=service.config.timezone,
        as_of=instant, as_of_day=day, generated_at=service.clock.now(), scope=scope,
        scope_name=unit_name(scope) if scope else service.config.province.name,
        status_counts=_counts(e.status for e in evaluations), targets=tuple(sections), scores=score_rows,
        units=unit_refs)


def _counts(statuses: object) -> dict[str, int]:
    counted = Counter(statuses)  # type: ignore[call-overload]
    return {s: counted[s] for s in REPORT_STATUSES}


def _title(rule: TargetRule, kpi_name: str, english: bool) -> str:
    if rule.title is None:
        return kpi_name
    return rule.title.en if english and rule.title.en else rule.title.vi


def _behind_since(service: MonitorService) -> dict[tuple[str, str], datetime]:
    """When each pending or firing target alert went bad."""
    out = {}
    for record in service.alerting.alerts.load(kind="target", states=("pending", "firing")):
        moment = record.pending_since or record.fired_at
        if moment is not None:
            out[(record.rule, record.unit)] = moment
    return out


def _ranks(evaluations: Sequence[Evaluation], units: object, day: date) -> dict[str, tuple[int, int]]:
    """Rank by actual value within each group (1 = best; ties share a rank)."""
    groups: dict[str, list[Evaluation]] = defaultdict(list)
    for e in evaluations:
        unit = units.get(e.unit, day)  # type: ignore[attr-defined]
        if unit is not None and e.actual is not None:
            groups[unit.group].append(e)
    out = {}
    for members in groups.values():
        better_high = members[0].comparator == ">="
        values = sorted((e.actual for e in members if e.actual is not None), reverse=better_high)
        for e in members:
            assert e.actual is not None
            out[e.unit] = (values.index(e.actual) + 1, len(members))
    return out


def _trajectory(rule: TargetRule, evaluation: Evaluation | None) -> tuple[Point, ...]:
    baseline = None
    if evaluation is not None and evaluation.baseline_date is not None and evaluation.baseline_value is not None:
        baseline = (evaluation.baseline_date, evaluation.baseline_value)
    return tuple(Point(d, v) for d, v in path_points(rule, baseline))


def _history(service: MonitorService, rules: Sequence[TargetRule], unit: str | None,
             as_of: datetime) -> dict[str, tuple[Point, ...]]:
    """Each rule's KPI for ``unit`` at the end of each of the last months and at ``as_of``,
    from one read of the observations."""
    if unit is None or not rules:
        return {}
    tz = service.config.tz
    first = local_date(as_of, tz).replace(day=1)
    instants = [local_midnight(add_months(first, -k), tz) - timedelta(microseconds=1)
                for k in range(HISTORY_MONTHS - 1, -1, -1)] + [as_of]
    windows = sorted({r.window or service.catalog.kpis[r.kpi].window for r in rules})
    kpis = sorted({r.kpi for r in rules})
    series = service.kpis.compute_series(instants, [Window.parse(w) for w in windows], kpis=kpis, units=[unit])
    values = {(instant, v.kpi, v.window): v.value for instant, computed in series.items() for v in computed}
    out = {}
    for rule in rules:
        window = rule.window or service.catalog.kpis[rule.kpi].window
        out[rule.id] = tuple(Point(local_date(i, tz), values.get((i, rule.kpi, window))) for i in instants)
    return out


def _tree_order(service: MonitorService, roots: Sequence[str], day: date, wanted: set[str]) -> list[str]:
    """Depth first from the roots, children by name: how people read an org chart."""
    out: list[str] = []
    stack = list(reversed(roots))
    while stack:
        code = stack.pop()
        if code in wanted:
            out.append(code)
        children = sorted(service.units.children(code, day), key=lambda u: u.name)
        stack.extend(reversed([c.code for c in children]))
    return out
