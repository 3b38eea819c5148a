"""Target evaluations recomputed independently from the stored observations.

The issue's acceptance check: on the demo province, the status, gap and
forecast of every rule for every unit, recomputed here straight from the
observations in the database, the rules and the unit tree, equal the service's
— at the demo's "now" and at two dates in the past (the end of 2025, and the
eve of the 2025 reform when districts still existed). And a unit whose source
is down reads ``stale`` or ``no_data``, never a fabricated 0 %.

The recomputation deliberately imports nothing from ``monitor.kpi``,
``monitor.windows`` or ``monitor.targets.{evaluate,trajectory,forecast}``: it
re-implements the documented semantics in the plainest (and slowest) way, so a
mistake in the service cannot hide behind the same mistake here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from statistics import median
from typing import Any

from monitor.catalog import Catalog
from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import Fault
from monitor.storage.store import StoredObservation
from monitor.targets.model import TargetRule
from monitor.timeutil import FrozenClock
from monitor.units import UnitTree
from tests.support.province import NOW, simulated_service

END_2025 = datetime(2025, 12, 31, 16, 59, 59, tzinfo=UTC)  # 23:59:59 on 31 Dec 2025 in Hanoi
EVE_OF_REFORM = datetime(2025, 6, 30, 16, 59, 59, tzinfo=UTC)  # 23:59:59 on 30 Jun 2025: districts still exist
AS_OFS = [NOW, END_2025, EVE_OF_REFORM]
# Compared (rule, unit) pairs expected at least, per as-of: the test cannot pass on an empty list.
MIN_PAIRS = {NOW: 500, END_2025: 500, EVE_OF_REFORM: 300}
TOLERANCE = 1e-9
TICK = timedelta(microseconds=1)
LATEST_LOOKBACK = timedelta(days=400)
FLAT_PER_YEAR = 0.001
HORIZON = date(2100, 1, 1)


# ---------------------------------------------------------------------- calendar

def day_of(instant: datetime, tz: tzinfo) -> date:
    return instant.astimezone(tz).date()


def midnight(day: date, tz: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def month_shift(first: date, months: int) -> date:
    """The first of the month ``months`` after (or before) ``first``'s month."""
    year, month = divmod(first.year * 12 + first.month - 1 + months, 12)
    return date(year, month + 1, 1)


def end_of_month(first: date, tz: tzinfo) -> datetime:
    """The last instant (local) of the month starting on ``first``."""
    return midnight(month_shift(first, 1), tz) - TICK


def window_bounds(spec: str, instant: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    today = day_of(instant, tz)
    first = today.replace(day=1)
    if spec == "month":
        return midnight(first, tz), midnight(month_shift(first, 1), tz)
    if spec == "previous_month":
        return midnight(month_shift(first, -1), tz), midnight(first, tz)
    if spec == "quarter":
        q = first.replace(month=(today.month - 1) // 3 * 3 + 1)
        return midnight(q, tz), midnight(month_shift(q, 3), tz)
    if spec == "ytd":
        return midnight(date(today.year, 1, 1), tz), midnight(date(today.year + 1, 1, 1), tz)
    if spec == "latest":
        return midnight(today - LATEST_LOOKBACK, tz), midnight(today + timedelta(days=1), tz)
    assert spec.startswith("rolling_") and spec.endswith("d"), spec
    days = int(spec[len("rolling_"):-1])
    return midnight(today - timedelta(days=days - 1), tz), midnight(today + timedelta(days=1), tz)


def trend_instants(as_of: datetime, points: int, tz: tzinfo) -> list[datetime]:
    """``as_of`` and the last instant of each of the ``points - 1`` months before its month."""
    first = day_of(as_of, tz).replace(day=1)
    return [as_of] + [end_of_month(month_shift(first, -k - 1), tz) for k in range(points - 1)]


# ---------------------------------------------------------------------- recomputation

@dataclass(frozen=True)
class Expected:
    status: str
    actual: float | None
    expected: float
    gap: float | None
    forecast_value: float | None
    forecast_reached_on: date | None
    forecast_points: int
    data_through: datetime | None


class Recomputation:
    """Everything an evaluation says, from the stored observations alone."""

    def __init__(self, service: MonitorService) -> None:
        self.catalog: Catalog = service.catalog
        self.units: UnitTree = service.units
        self.tz: tzinfo = service.config.tz
        self.all = service.store.load_observations(
            list(self.catalog.measures), datetime(1990, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
        # The most recently collected row wins when several sources report a (measure, unit, period).
        newest: dict[tuple[str, str, datetime, datetime], StoredObservation] = {}
        for obs in self.all:
            key = (obs.measure, obs.unit, obs.period_start, obs.period_end)
            if key not in newest or obs.collected_at > newest[key].collected_at:
                newest[key] = obs
        self.by_measure: dict[str, list[StoredObservation]] = defaultdict(list)
        for obs in newest.values():
            self.by_measure[obs.measure].append(obs)
        self._values: dict[tuple[str, str, datetime, str], dict[str, tuple[float, float]]] = {}
        self._trees: dict[date, dict[str, str | None]] = {}
        self._chains: dict[tuple[str, date, str], list[str]] = {}

    # -- tree

    def tree_on(self, day: date) -> dict[str, str | None]:
        """Code → parent code, for the units valid on ``day``."""
        if day not in self._trees:
            self._trees[day] = {u.code: u.parent for u in self.units.versions if u.valid_on(day)}
        return self._trees[day]

    def valid_codes(self, day: date) -> set[str]:
        return set(self.tree_on(day))

    def counts_towards(self, code: str, day: date, scope: str) -> list[str]:
        """The unit and, for subtree scope, every unit above it on ``day``."""
        key = (code, day, scope)
        if key not in self._chains:
            tree = self.tree_on(day)
            chain = [code]
            current = tree.get(code) if scope == "subtree" else None
            while current is not None and current in tree and current not in chain:
                chain.append(current)
                current = tree[current]
            self._chains[key] = chain
        return self._chains[key]

    def covered(self, rule: TargetRule, day: date) -> list[str]:
        sel = rule.units
        out = []
        for unit in self.units.versions:
            if not unit.valid_on(day) or unit.code in sel.exclude:
                continue
            if sel.levels and unit.level not in sel.levels:
                continue
            if sel.groups and unit.group not in sel.groups:
                continue
            if sel.codes and unit.code not in sel.codes:
                above = self.counts_towards(unit.code, day, "subtree")[1:]
                if not (sel.descendants and set(above) & set(sel.codes)):
                    continue
            out.append(unit.code)
        return out

    # -- KPI values

    def is_flow(self, kpi_id: str) -> bool:
        return all(self.catalog.measures[m].kind == "flow" for m in self.measures(kpi_id))

    def measures(self, kpi_id: str) -> list[str]:
        kpi = self.catalog.kpis[kpi_id]
        return list(dict.fromkeys(kpi.numerator + kpi.denominator))

    def values(self, kpi_id: str, spec: str, instant: datetime, scope: str) -> dict[str, tuple[float, float]]:
        """Unit → (Σ numerator, Σ denominator) over the window at ``instant``, for
        the units valid on the window's effective day."""
        key = (kpi_id, spec, instant, scope)
        if key not in self._values:
            self._values[key] = self._compute(kpi_id, spec, instant, scope)
        return self._values[key]

    def _compute(self, kpi_id: str, spec: str, instant: datetime, scope: str) -> dict[str, tuple[float, float]]:
        kpi = self.catalog.kpis[kpi_id]
        start, end = window_bounds(spec, instant, self.tz)
        effective = day_of(min(instant, end - TICK), self.tz)
        inside = [o for m in self.measures(kpi_id) for o in self.by_measure[m]
                  if start <= o.period_start and o.period_end <= end and o.period_start < instant]
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        if self.is_flow(kpi_id):
            periods: dict[tuple[str, datetime, datetime], dict[str, float]] = defaultdict(dict)
            for o in inside:
                periods[(o.unit, o.period_start, o.period_end)][o.measure] = o.value
            if spec == "latest" and periods:
                newest_start = max(p[1] for p in periods)
                periods = defaultdict(dict, {p: v for p, v in periods.items() if p[1] == newest_start})
            for (unit, period_start, _), values in periods.items():
                if len(values) < len(self.measures(kpi_id)):
                    continue  # half a record would bias the ratio
                for target in self.counts_towards(unit, day_of(period_start, self.tz), scope):
                    sums[target][0] += sum(values[m] for m in kpi.numerator)
                    sums[target][1] += sum(values[m] for m in kpi.denominator)
        else:
            alive = self.valid_codes(effective)
            latest: dict[tuple[str, str], StoredObservation] = {}
            for o in inside:
                kept = latest.get((o.unit, o.measure))
                if kept is None or o.period_end > kept.period_end:
                    latest[(o.unit, o.measure)] = o
            for unit in {u for u, _ in latest}:
                if unit not in alive or any((unit, m) not in latest for m in self.measures(kpi_id)):
                    continue
                for target in self.counts_towards(unit, effective, scope):
                    sums[target][0] += sum(latest[(unit, m)].value for m in kpi.numerator)
                    sums[target][1] += sum(latest[(unit, m)].value for m in kpi.denominator)
        alive = self.valid_codes(effective)
        return {u: (n, d) for u, (n, d) in sums.items() if u in alive}

    def ratio(self, kpi_id: str, spec: str, instant: datetime, scope: str, unit: str) -> float | None:
        numerator, denominator = self.values(kpi_id, spec, instant, scope).get(unit, (0.0, 0.0))
        return numerator / denominator if denominator > 0 else None

    # -- evaluation

    def evaluate(self, rules: Iterable[TargetRule], as_of: datetime) -> dict[tuple[str, str], Expected]:
        today = day_of(as_of, self.tz)
        plans = []
        for rule in rules:
            if (rule.valid_from and rule.valid_from > today) or (rule.valid_to and rule.valid_to < today):
                continue
            units = self.covered(rule, today)
            if units:
                plans.append((rule, units))
        if not plans:
            return {}
        # data_through reads all stored history, whatever the windows.
        out = {}
        for rule, units in plans:
            through = self.data_through(self.all, rule, as_of)
            baselines = self.baselines(rule, units, as_of)
            for unit in units:
                out[(rule.id, unit)] = self.judge(rule, unit, as_of, through.get(unit), baselines.get(unit))
        return out

    def spec(self, rule: TargetRule) -> str:
        return rule.window or self.catalog.kpis[rule.kpi].window

    def higher_is_better(self, rule: TargetRule) -> bool:
        if rule.comparator is not None:
            return rule.comparator == ">="
        return self.catalog.kpis[rule.kpi].direction == "up"

    def data_through(self, loaded: list[StoredObservation], rule: TargetRule, as_of: datetime
                     ) -> dict[str, datetime]:
        measures = set(self.measures(rule.kpi))
        out: dict[str, datetime] = {}
        own: dict[str, datetime] = {}
        for o in loaded:
            if o.measure not in measures or o.period_start >= as_of:
                continue
            reach = min(o.period_end, as_of)
            if o.unit not in own or reach > own[o.unit]:
                own[o.unit] = reach
            for target in self.counts_towards(o.unit, day_of(o.period_start, self.tz), rule.units.scope):
                if target not in out or reach > out[target]:
                    out[target] = reach
        # A unit that reports itself is no fresher than its own data, whatever its subtree says.
        return {unit: min(reach, own[unit]) if unit in own else reach for unit, reach in out.items()}

    def baselines(self, rule: TargetRule, units: list[str], as_of: datetime) -> dict[str, tuple[date, float]]:
        baseline = rule.baseline
        if baseline is None:
            return {}
        if not baseline.first_observation:
            assert baseline.date is not None and baseline.value is not None
            return dict.fromkeys(units, (baseline.date, baseline.value))
        since = midnight(baseline.since, self.tz) if baseline.since else None
        first: dict[str, datetime] = {}
        for m in self.measures(rule.kpi):
            for o in self.by_measure[m]:
                if o.period_start >= as_of or (since is not None and o.period_start < since):
                    continue
                for target in self.counts_towards(o.unit, day_of(o.period_start, self.tz), rule.units.scope):
                    if target not in first or o.period_start < first[target]:
                        first[target] = o.period_start
        out = {}
        for unit in units:
            if unit not in first:
                continue
            instant = min(as_of, end_of_month(day_of(first[unit], self.tz).replace(day=1), self.tz))
            value = self.ratio(rule.kpi, self.spec(rule), instant, rule.units.scope, unit)
            if value is not None:
                out[unit] = (day_of(instant, self.tz), value)
        return out

    def judge(self, rule: TargetRule, unit: str, as_of: datetime, through: datetime | None,
              baseline: tuple[date, float] | None) -> Expected:
        today = day_of(as_of, self.tz)
        spec, scope = self.spec(rule), rule.units.scope
        actual = self.ratio(rule.kpi, spec, as_of, scope, unit)
        expected = expected_value(rule, baseline, today)
        sign = 1.0 if self.higher_is_better(rule) else -1.0
        if through is not None and as_of - through > rule.stale_after:
            status = "stale"
        elif actual is None:
            status = "stale" if through is not None else "no_data"
        elif sign * (actual - rule.target) >= -TOLERANCE:
            status = "met"
        elif as_of >= midnight(rule.deadline + timedelta(days=1), self.tz):
            status = "missed"
        elif sign * (expected - actual) <= TOLERANCE:
            status = "on_track"
        elif sign * (expected - actual) <= rule.at_risk_margin + TOLERANCE:
            status = "at_risk"
        else:
            status = "behind"
        gap = sign * (expected - actual) if actual is not None else None
        points = []
        for instant in trend_instants(as_of, rule.forecast.points, self.tz):
            value = self.ratio(rule.kpi, spec, instant, scope, unit)
            if value is not None:
                points.append((day_of(instant, self.tz), value))
        value_at_deadline, reached_on, used = project(
            sorted(points), today=today, target=rule.target, deadline=rule.deadline,
            higher=sign > 0, met=status == "met", min_points=rule.forecast.min_points)
        return Expected(status, actual, expected, gap, value_at_deadline, reached_on, used, through)


def expected_value(rule: TargetRule, baseline: tuple[date, float] | None, day: date) -> float:
    """The glide path's value on ``day``."""
    if rule.trajectory.type == "none" or baseline is None:
        return rule.target
    corners = [baseline]
    corners += [(m.date, m.value) for m in rule.trajectory.milestones if m.date > baseline[0]]
    if rule.deadline > baseline[0]:
        corners.append((rule.deadline, rule.target))
    if day <= corners[0][0]:
        return corners[0][1]
    for i in range(1, len(corners)):
        (d0, v0), (d1, v1) = corners[i - 1], corners[i]
        if day <= d1:
            return v0 + (v1 - v0) * (day - d0).days / (d1 - d0).days
    return corners[-1][1]


def project(points: list[tuple[date, float]], *, today: date, target: float, deadline: date, higher: bool,
            met: bool, min_points: int) -> tuple[float | None, date | None, int]:
    """Theil–Sen: (value at the deadline clamped to [0, 1], the day the target is reached, points used)."""
    if len(points) < min_points:
        return None, None, len(points)
    slopes = []
    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            (d0, y0), (d1, y1) = points[i], points[j]
            if d0 != d1:
                slopes.append((y1 - y0) / (d1.toordinal() - d0.toordinal()))
    if not slopes:
        return None, None, len(points)
    slope = median(slopes)
    intercept = median([y - slope * d.toordinal() for d, y in points])
    at_deadline = min(1.0, max(0.0, intercept + slope * deadline.toordinal()))
    if met:
        return at_deadline, today, len(points)
    if (slope if higher else -slope) * 365.25 < FLAT_PER_YEAR:
        return at_deadline, None, len(points)
    crossing = (target - intercept) / slope
    if crossing >= HORIZON.toordinal():
        return at_deadline, None, len(points)
    return at_deadline, date.fromordinal(max(today.toordinal(), math.ceil(crossing))), len(points)


# ---------------------------------------------------------------------- comparison

def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= TOLERANCE


def differences(evaluations: list[Any], expected: dict[tuple[str, str], Expected]) -> list[str]:
    got = {(e.rule, e.unit): e for e in evaluations}
    problems = []
    if set(got) != set(expected):
        problems.append(f"pairs only in the service: {sorted(set(got) - set(expected))[:10]}; "
                        f"only recomputed: {sorted(set(expected) - set(got))[:10]}")
    for key in sorted(set(got) & set(expected)):
        e, x = got[key], expected[key]
        fields = {
            "status": e.status == x.status, "actual": close(e.actual, x.actual),
            "expected": close(e.expected, x.expected), "gap": close(e.gap, x.gap),
            "forecast_value": close(e.forecast_value, x.forecast_value),
            "forecast_reached_on": e.forecast_reached_on == x.forecast_reached_on,
            "forecast_points": e.forecast_points == x.forecast_points,
            "data_through": e.data_through == x.data_through,
        }
        for name, ok in fields.items():
            if not ok:
                problems.append(f"{key} {name}: service {getattr(e, name)!r}, recomputed {getattr(x, name)!r}")
    return problems


async def test_statuses_gaps_and_forecasts_equal_an_independent_recomputation(
        tmp_path: Path, province: ProvinceModel) -> None:
    async with simulated_service(tmp_path, province) as (service, _, config):
        summaries = await service.cycle()
        assert all(s.ok for s in summaries), [s.error for s in summaries]
        recomputation = Recomputation(service)
        assert len(recomputation.all) > 10_000
        # The composite scores of the cycle are stored as computed, every scored unit ranked in its group.
        stored_scores = service.results.load_scores(NOW.astimezone(config.tz).date())
        assert len(stored_scores) == len(service.scores) > 100
        by_key = {(s.index, s.unit): s for s in service.scores}
        for row in stored_scores:
            score = by_key[(row["index_id"], row["unit"])]
            assert (row["score"], row["rank"], row["rank_size"]) == (score.score, score.rank, score.rank_size)
            assert 1 <= row["rank"] <= row["rank_size"]
        compared: dict[datetime, int] = {}
        statuses: set[str] = set()
        for as_of in AS_OFS:
            evaluations = service.evaluations if as_of == NOW else service.evaluate_and_store(service.rules, as_of)
            assert all(e.as_of == as_of for e in evaluations)
            expected = recomputation.evaluate(service.rules, as_of)
            problems = differences(evaluations, expected)
            assert not problems, f"as of {as_of}: {len(problems)} differences:\n" + "\n".join(problems[:40])
            # What was stored for the day is what was returned.
            stored = {(r["rule"], r["unit"]): r for r in service.results.load_evaluations(day_of(as_of, config.tz))}
            assert set(stored) == {(e.rule, e.unit) for e in evaluations}
            for e in evaluations:
                row = stored[(e.rule, e.unit)]
                assert row["status"] == e.status and close(row["gap"], e.gap), (e, row)
            compared[as_of] = len(expected)
            statuses.update(x.status for x in expected.values())
            if as_of == EVE_OF_REFORM:
                levels = {service.units.get(unit, day_of(as_of, config.tz)).level  # type: ignore[union-attr]
                          for _, unit in expected}
                assert "district" in levels
        assert all(compared[a] >= MIN_PAIRS[a] for a in AS_OFS), compared
        assert {"met", "missed", "stale", "no_data"} <= statuses, statuses
        assert statuses & {"on_track", "at_risk", "behind"}, statuses


# ---------------------------------------------------------------------- a source down

def source_kinds(catalog: Catalog, kpi_id: str) -> set[str]:
    kpi = catalog.kpis[kpi_id]
    return {catalog.measures[m].source_kind for m in kpi.numerator + kpi.denominator}


def probe_rules(catalog: Catalog, silent: dict[str, set[str]]) -> list[TargetRule]:
    """One rule per KPI and scope covering the units silent on that KPI's source
    (the shipped rules cover neither every KPI nor a department alone)."""
    rules = []
    for kpi_id in sorted(catalog.kpis):
        codes = sorted(u for u, kinds in silent.items() if kinds & source_kinds(catalog, kpi_id))
        for scope in ("self", "subtree"):
            if codes:
                rules.append(TargetRule.model_validate({
                    "id": f"probe-{kpi_id}-{scope}", "kpi": kpi_id, "units": {"codes": codes, "scope": scope},
                    "target": 0.9, "deadline": date(2030, 12, 31), "trajectory": "none",
                    "citation": {"instrument": "test probe", "date": date(2026, 1, 1), "title": "a probe rule"}}))
    return rules


async def test_a_unit_without_fresh_data_is_stale_or_no_data_never_zero(
        tmp_path: Path, province: ProvinceModel) -> None:
    clock = FrozenClock(NOW)
    unjudged = {"stale", "no_data"}
    async with simulated_service(tmp_path, province, clock=clock) as (service, simulators, config):
        summaries = await service.cycle()
        assert all(s.ok for s in summaries), [s.error for s in summaries]
        catalog = service.catalog

        # The unit whose systems stopped hearing from it 90 days ago, and the units a system never knew.
        stalled = province.stalled_unit
        silent: dict[str, set[str]] = {stalled: {"document_management", "one_stop"}}
        for kind, codes in province.absent_from.items():
            for code in codes:
                silent.setdefault(code, set()).add(kind)
        probes = probe_rules(catalog, silent)
        evaluations = service.evaluator.evaluate(probes, NOW)
        problems = differences(evaluations, Recomputation(service).evaluate(probes, NOW))
        assert not problems, "\n".join(problems[:40])
        own = [e for e in evaluations if e.rule.endswith("-self")]
        assert len(own) >= 15
        for e in own:
            assert e.status in unjudged, e
            if e.unit == stalled:
                # Its own data ends 90 days ago: stale, whatever value the window still holds.
                assert e.status == "stale", e
                assert e.data_through is not None and NOW - e.data_through > timedelta(days=80), e
                assert e.actual is None or e.denominator > 0, e
            else:
                # Never heard of: nothing to show, not a 0 %.
                assert e.actual is None and e.numerator == 0 and e.denominator == 0, e
        assert {e.status for e in own} == unjudged
        # The same units in the shipped rules, each over its subtree: one alone in its
        # subtree is stale or has no data; one a system never knew is not counted among
        # the units reporting (its agencies' data is judged, not a 0 for it). The
        # stalled department's subtree value holds its real data from before it stopped
        # and is checked, like every value, by the recomputation above.
        shipped = 0
        for e in service.evaluations:
            if e.unit in silent and silent[e.unit] & source_kinds(catalog, e.kpi):
                subtree = service.units.subtree(e.unit, e.as_of_day)
                if subtree == [e.unit]:
                    assert e.status in unjudged and e.actual is None, e
                elif e.unit != stalled:
                    assert e.units_reporting < len(subtree), e
                shipped += 1
        assert shipped >= 5

        # Now the document-management system goes down for 45 days.
        simulators.set_fault("document_management", Fault("http_500", times=1000))
        clock.advance(timedelta(days=45))
        summaries = await service.cycle()
        assert {s.source for s in summaries if not s.ok} == {"qlvb"}, [(s.source, s.error) for s in summaries]
        as_of = clock.now()
        documents = {k for k in catalog.kpis if source_kinds(catalog, k) == {"document_management"}}
        affected = [e for e in service.evaluations if e.kpi in documents]
        assert len(affected) > 100
        for e in affected:
            assert e.status in unjudged, e
            assert e.actual is None or e.denominator > 0, e
        assert {e.status for e in affected} == unjudged  # stale everywhere, no_data for the agency never known
        assert all(e.status == "stale" for e in affected if e.unit not in silent), \
            [e for e in affected if e.status != "stale" and e.unit not in silent][:3]
        # The sources still up are judged as usual, and the values shown (if any) are
        # exactly the stored observations' — recomputed, not a fabricated 0.
        assert any(e.status not in unjudged for e in service.evaluations if e.kpi not in documents)
        recomputed = Recomputation(service)
        problems = differences(service.evaluations, recomputed.evaluate(service.rules, as_of))
        assert not problems, "\n".join(problems[:40])
        rows = service.results.load_evaluations(day_of(as_of, config.tz))
        assert {(r["rule"], r["unit"], r["status"]) for r in rows if r["kpi"] in documents} == \
            {(e.rule, e.unit, e.status) for e in affected}
