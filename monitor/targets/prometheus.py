"""Target rules as a Prometheus rule file, for provinces that alert with Prometheus + Alertmanager.

``egovmon rules export-prometheus`` writes one rule group per pack (or per file,
for rules without a pack) and a summary group:

- ``egov:target_gap:ratio`` per target rule, recomputed in PromQL from
  ``egov_kpi_value`` where labels can say everything the rule says: the expected
  value is a function of ``time()`` along the rule's trajectory. Where they
  cannot (codes with descendants, ``scope: self``, a baseline that is each
  unit's first observation, known only to the service) the recording is the
  service's own ``egov_target_gap`` for that rule, and its PromQL says why.
- ``EgovTargetBehind`` per target rule, on the service's status (behind or
  missed) with the gap as ``$value``, pending for the rule's ``notify.for``.
- ``egov:targets_by_status:count``, ``egov:target_gap:max`` and
  ``EgovTargetDataStale``: the service raises no KPI alert from broken data,
  so stale units must be visible on their own.

The expected value follows ``monitor.targets.trajectory``: whole days in the
province's timezone, a corner of the path reached at the start of its day, the
target from the deadline day on. Timestamps in the PromQL are Unix seconds.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from datetime import timedelta, tzinfo
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from monitor.catalog import Catalog
from monitor.targets.loader import LoadedRule, RuleSet
from monitor.targets.model import TargetRule
from monitor.timeutil import DEFAULT_TIMEZONE, local_midnight, zone

GAP_RECORD = "egov:target_gap:ratio"
BY_STATUS_RECORD = "egov:targets_by_status:count"
GAP_MAX_RECORD = "egov:target_gap:max"
BEHIND_ALERT = "EgovTargetBehind"
STALE_ALERT = "EgovTargetDataStale"
SUMMARY_GROUP = "egov-targets-summary"
# "stale" already means no fresh data for the rule's stale_after (days); the
# hour only keeps one odd evaluation from paging anyone.
STALE_FOR = timedelta(hours=1)
# Go's regexp (RE2) metacharacters; everything else matches itself.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")
_DURATION_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


# --------------------------------------------------------------------------- PromQL text


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal (Go escaping)."""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def regex_escape(value: str) -> str:
    """``value`` as an RE2 pattern matching exactly itself (before string-literal escaping)."""
    return "".join("\\" + c if c in _REGEX_META else c for c in value)


def promql_duration(value: timedelta) -> str:
    """A Prometheus duration in the largest unit that divides it: ``1d``, ``36h``, ``90s``."""
    millis = round(value.total_seconds() * 1000)
    if millis < 0:
        raise ValueError(f"a Prometheus duration cannot be negative, got: {value}")
    if millis == 0:
        return "0s"
    for suffix, size in _DURATION_UNITS:
        if millis % size == 0:
            return f"{millis // size}{suffix}"
    raise AssertionError("unreachable: every whole number of milliseconds is a multiple of 1 ms")


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    return repr(float(value))


def _template_text(text: str) -> str:
    """Free text placed in an alert template: ``{{`` would start a template action."""
    return text.replace("{{", '{{ "{{" }}')


def _comment(text: str) -> str:
    return "# " + " ".join(text.split())  # a PromQL comment runs to the end of its line


# --------------------------------------------------------------------------- one target rule


def _day_start(day: dt.date, tz: tzinfo) -> int:
    return int(local_midnight(day, tz).timestamp())


def _comparator(rule: TargetRule, catalog: Catalog) -> str:
    return rule.comparator or (">=" if catalog.kpis[rule.kpi].direction == "up" else "<=")


def _window(rule: TargetRule, catalog: Catalog) -> str:
    return rule.window or catalog.kpis[rule.kpi].window


def _not_expressible(rule: TargetRule) -> str | None:
    """Why labels on ``egov_kpi_value`` cannot reproduce the rule, or None when they can."""
    if rule.units.descendants:
        return "units given as codes with descendants cannot be selected by labels"
    if rule.units.scope == "self":
        return "egov_kpi_value covers a unit's subtree; this rule reads the unit's own data (scope: self)"
    if rule.trajectory.type != "none" and (rule.baseline is None or rule.baseline.first_observation):
        return "the baseline is each unit's first observation, which only the service knows"
    return None


def path_corners(rule: TargetRule) -> list[tuple[dt.date, float]]:
    """(day, value) through which the expected value runs, in order, as in
    ``monitor.targets.trajectory.path_points`` for a fixed baseline."""
    if rule.trajectory.type == "none":
        return [(rule.deadline, rule.target)]
    baseline = rule.baseline
    assert baseline is not None and baseline.value is not None and baseline.date is not None
    return [(baseline.date, baseline.value), *((m.date, m.value) for m in rule.trajectory.milestones),
            (rule.deadline, rule.target)]


def _fixed_offset(tz: tzinfo, first: dt.date, last: dt.date) -> int | None:
    """The zone's UTC offset in seconds if it is the same on every day of ``[first, last]``."""
    offsets = {local_midnight(first + timedelta(days=n), tz).astimezone(tz).utcoffset()
               for n in range((last - first).days + 1)}
    if len(offsets) != 1:
        return None
    offset = offsets.pop()
    return None if offset is None else int(offset.total_seconds())


def today_promql(offset: int | None) -> str:
    """The start of the current local day, in Unix seconds, or ``time()`` itself
    when the offset changes (daylight saving) and a day has no fixed length."""
    if offset is None:
        return "time()"
    shifted = "time()" if offset == 0 else f"(time() {'+' if offset > 0 else '-'} {abs(offset)})"
    return f"time() - {shifted} % 86400"


def expected_promql(rule: TargetRule, tz: tzinfo) -> str:
    """The expected value today: piecewise linear through the corners, held at
    the first before it and at the target from the deadline on.

    The service judges a unit by whole days (the expected value of the as-of
    day); flooring ``time()`` to local midnight makes this agree with it at
    every instant, where the zone allows. Written as the first value plus one
    clamped term per segment, so it stays scalar arithmetic and needs no lookup
    of which segment today is in.
    """
    corners = [(_day_start(day, tz), value) for day, value in path_corners(rule)]
    today = today_promql(_fixed_offset(tz, path_corners(rule)[0][0], rule.deadline))
    terms = [_number(corners[0][1])]
    for (t0, v0), (t1, v1) in pairwise(corners):
        if v1 != v0:
            terms.append(f"({_number(v1)} - {_number(v0)}) * (scalar(clamp(vector({today}), {t0}, {t1})) "
                         f"{'-' if t0 >= 0 else '+'} {abs(t0)}) / {t1 - t0}")
    return "\n  + ".join(terms)


def _path_description(rule: TargetRule, tz_name: str) -> str:
    if rule.trajectory.type == "none":
        return f"expected value: the target {rule.target:g} at every date"
    steps = " -> ".join(f"{value:g} on {day.isoformat()}" for day, value in path_corners(rule))
    return f"expected value: {rule.trajectory.type} path {steps}, by whole days in {tz_name}"


def kpi_selector(rule: TargetRule, catalog: Catalog) -> str:
    """``egov_kpi_value`` restricted to the rule's KPI, window and units."""
    matchers = [f"kpi={promql_string(rule.kpi)}", f"window={promql_string(_window(rule, catalog))}"]
    selector = rule.units
    if selector.levels:
        matchers.append(f"level=~{promql_string('|'.join(regex_escape(lv.value) for lv in selector.levels))}")
    if selector.groups:
        matchers.append(f"group=~{promql_string('|'.join(regex_escape(g) for g in selector.groups))}")
    if selector.codes:
        matchers.append(f"unit=~{promql_string('|'.join(regex_escape(c) for c in selector.codes))}")
    if selector.exclude:
        matchers.append(f"unit!~{promql_string('|'.join(regex_escape(c) for c in selector.exclude))}")
    return "egov_kpi_value{" + ", ".join(matchers) + "}"


def _validity(rule: TargetRule, tz: tzinfo) -> list[str]:
    """Conditions on ``time()`` that keep the gap to the days the rule is in force."""
    limits = []
    if rule.valid_from is not None:
        limits.append(f"and on() vector(time()) >= {_day_start(rule.valid_from, tz)}")
    if rule.valid_to is not None:
        limits.append(f"and on() vector(time()) < {_day_start(rule.valid_to + timedelta(days=1), tz)}")
    return limits


def gap_expression(rule: TargetRule, catalog: Catalog, tz_name: str) -> str:
    """PromQL for the rule's gap (positive means behind), one series per covered unit."""
    reason = _not_expressible(rule)
    if reason is not None:
        return "\n".join([_comment(f"{reason}: this is the service's own gap for the rule."),
                          f"egov_target_gap{{rule={promql_string(rule.id)}}}"])
    tz = zone(tz_name)
    expected = expected_promql(rule, tz)
    if "\n" in expected:
        expected = f"(\n  {expected}\n)"
    actual = kpi_selector(rule, catalog)
    lines = [expected, f"- {actual}"] if _comparator(rule, catalog) == ">=" else [actual, f"- {expected}"]
    limits = _validity(rule, tz)
    if limits:
        inner = "\n".join(lines).replace("\n", "\n  ")
        lines = [f"(\n  {inner}\n)", *limits]
    return "\n".join([_comment(_path_description(rule, tz_name)), *lines])


def _recording(rule: TargetRule, catalog: Catalog, tz_name: str) -> dict[str, Any]:
    return {"record": GAP_RECORD, "expr": gap_expression(rule, catalog, tz_name) + "\n",
            "labels": {"rule": rule.id, "window": _window(rule, catalog)}}


def _percent(value: float) -> str:
    return f"{value * 100:g}%"


def _citation(rule: TargetRule) -> str:
    citation = rule.citation
    text = f"{citation.instrument}, {citation.date.strftime('%d/%m/%Y')}: {citation.title}"
    if not citation.verified:
        text += f" (chưa xác minh / unverified: {citation.note})"
    return text


def _alert(loaded: LoadedRule, catalog: Catalog) -> dict[str, Any]:
    rule = loaded.rule
    kpi = catalog.kpis[rule.kpi]
    rid = promql_string(rule.id)
    comparator = _comparator(rule, catalog)
    title_vi = _template_text(rule.title.vi if rule.title else kpi.vi)
    title_en = _template_text(rule.title.en if rule.title and rule.title.en else kpi.en)
    gap = "{{ $value | humanizePercentage }}"
    annotations = {
        "summary": (f"Đơn vị {{{{ $labels.unit }}}} chậm so với lộ trình «{title_vi}»: lệch {gap} so với mức "
                    f"cần đạt hôm nay (mục tiêu {comparator} {_percent(rule.target)} "
                    f"đến {rule.deadline.strftime('%d/%m/%Y')})"),
        "summary_en": (f"Unit {{{{ $labels.unit }}}} is behind on “{title_en}”: {gap} off today's expected "
                       f"value (target {comparator} {_percent(rule.target)} by {rule.deadline.isoformat()})"),
        "citation": _template_text(_citation(rule)),
    }
    if rule.citation.url:
        annotations["citation_url"] = _template_text(rule.citation.url)
    # The gap on the left of ``and`` makes it the alert's $value; the status
    # decides whether to fire, so the alert agrees with the service's emails.
    expr = (f"egov_target_gap{{rule={rid}}}\n"
            f"  and on(rule, unit) (egov_target_status{{rule={rid}, status=~\"behind|missed\"}} == 1)\n")
    return {"alert": BEHIND_ALERT, "expr": expr, "for": promql_duration(rule.notify.for_),
            "labels": {"severity": rule.severity, "rule": rule.id, "kpi": rule.kpi},
            "annotations": annotations}


# --------------------------------------------------------------------------- the file


def _group_names(rules: Sequence[LoadedRule]) -> dict[tuple[str, str], str]:
    """One group per pack, or per file for rules without a pack; names unique in the file."""
    names: dict[tuple[str, str], str] = {}
    taken = {SUMMARY_GROUP}
    for loaded in rules:
        key = ("pack", loaded.pack) if loaded.pack else ("file", loaded.file)
        if key in names:
            continue
        base = f"egov-targets-{loaded.pack or Path(loaded.file).stem}"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        names[key] = name
    return names


def _summary_group() -> dict[str, Any]:
    return {"name": SUMMARY_GROUP, "rules": [
        {"record": BY_STATUS_RECORD, "expr": "count by (rule, status) (egov_target_status == 1)"},
        {"record": GAP_MAX_RECORD, "expr": "max by (rule) (egov_target_gap)"},
        {"alert": STALE_ALERT, "expr": 'egov_target_status{status="stale"} == 1',
         "for": promql_duration(STALE_FOR), "labels": {"severity": "warning"},
         "annotations": {
             "summary": ("Dữ liệu của đơn vị {{ $labels.unit }} cho chỉ tiêu {{ $labels.rule }} đã cũ: "
                         "không đánh giá được, không có cảnh báo chỉ tiêu cho đến khi có dữ liệu mới"),
             "summary_en": ("Data for unit {{ $labels.unit }} on target {{ $labels.rule }} is stale: it cannot "
                            "be evaluated, so no target alert will fire until fresh data arrives"),
         }},
    ]}


def export_prometheus_rules(rules: RuleSet, catalog: Catalog, timezone: str = DEFAULT_TIMEZONE) -> dict[str, Any]:
    """The Prometheus rule-file structure (``{"groups": [...]}``) for ``rules``."""
    names = _group_names(rules.rules)
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in names.values()}
    for loaded in rules.rules:
        name = names[("pack", loaded.pack) if loaded.pack else ("file", loaded.file)]
        groups[name].append(_recording(loaded.rule, catalog, timezone))
        groups[name].append(_alert(loaded, catalog))
    return {"groups": [{"name": name, "rules": body} for name, body in groups.items()] + [_summary_group()]}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the PromQL) as literal blocks, so the file reads like hand-written rules."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def render_prometheus_rules(rules: RuleSet, catalog: Catalog, timezone: str = DEFAULT_TIMEZONE) -> str:
    """The rule file as YAML text, with a header saying where it came from."""
    sources = [" ".join(f.split()) for f in rules.files] or ["(no rule files)"]
    header = [
        "# Generated by `egovmon rules export-prometheus`; do not edit: change the rule files and export again.",
        "# From:",
        *(f"#   {source}" for source in sources),
        f"# Days are counted in {timezone} (an expected value changes at local midnight); "
        "timestamps in the PromQL are Unix seconds.",
    ]
    body = yaml.dump(export_prometheus_rules(rules, catalog, timezone), Dumper=_Dumper, allow_unicode=True,
                     sort_keys=False, width=10_000)
    return "\n".join(header) + "\n" + body
