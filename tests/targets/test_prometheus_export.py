"""Target rules exported as a Prometheus rule file: promtool accepts it, the
recorded gap is what the rules say, and the alerts fire when and how they should.

The PromQL is run by a real ``promtool test rules``, whose clock starts at Unix
epoch 0: the rules here use 1970 dates and are exported with ``timezone="UTC"``
so the glide paths lie inside the test's time range. The expected values are
computed here from the rule text, by whole days, independently of the exporter.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.catalog import Catalog, load_catalog
from monitor.simulators.province import ProvinceModel
from monitor.targets.loader import SHIPPED_RULES_DIR, RuleSet, expand_rule_paths, load_rules
from monitor.targets.prometheus import (
    export_prometheus_rules,
    promql_duration,
    promql_string,
    regex_escape,
    render_prometheus_rules,
)
from tests.support.components import promtool_check_rules, promtool_test_rules, require_promtool

CATALOG = """\
version: 1
measures:
  done:  {kind: flow, unit: items, source_kind: test, vi: "Đã xong", en: "Done"}
  late:  {kind: flow, unit: items, source_kind: test, vi: "Trễ hạn", en: "Late"}
  total: {kind: flow, unit: items, source_kind: test, vi: "Tổng", en: "Total"}
kpis:
  up_rate:   {vi: "Tỷ lệ hoàn thành", en: "Completion rate", numerator: [done], denominator: [total]}
  down_rate: {vi: "Tỷ lệ trễ hạn", en: "Late rate", numerator: [late], denominator: [total], direction: down}
"""

# Values are dyadic fractions and paths span 4, 8 or 16 days, so the PromQL and
# the Python below compute the same floats exactly (promtool 2.42 compares exactly).
RULES = """\
version: 1
pack: test-pack
defaults:
  citation:
    instrument: "QĐ 942/QĐ-TTg"
    date: 2021-06-15
    title: 'Chiến lược "CPĐT" {{ 2025 }}'
    url: "https://vanban.chinhphu.vn/?docid=203715"
  notify: {for: 3h}
rules:
  - id: up.linear
    kpi: up_rate
    title: {vi: 'Tỷ lệ "điện tử" {{ đạt }}', en: 'Electronic "rate" {{ reached }}'}
    window: ytd
    units: {levels: [province, department], exclude: [000.00.02.H99]}
    target: 0.75
    deadline: 1970-01-17
    baseline: {value: 0.25, date: 1970-01-01}
    trajectory: linear
  - id: up.milestones
    kpi: up_rate
    units: {groups: [huyen]}
    target: 0.875
    deadline: 1970-01-09
    baseline: {value: 0.25, date: 1970-01-01}
    trajectory: {type: milestones, milestones: [{date: 1970-01-05, value: 0.5}]}
  - id: up.flat
    kpi: up_rate
    units: {codes: [000.00.01.H99]}
    target: 0.875
    deadline: 1970-01-17
    valid_from: 1970-01-05
    valid_to: 1970-01-10
    severity: critical
    notify: {for: 90m}
  - id: down.linear
    kpi: down_rate
    units: {levels: [province]}
    target: 0.125
    deadline: 1970-01-17
    baseline: {value: 0.5, date: 1970-01-01}
    trajectory: linear
  - id: up.subtree
    kpi: up_rate
    units: {codes: [000.00.00.H99], descendants: true}
    target: 0.75
    deadline: 1970-01-17
  - id: up.first
    kpi: up_rate
    units: {levels: [commune]}
    target: 0.75
    deadline: 1970-01-17
    baseline: first_observation
    trajectory: linear
  - id: up.self
    kpi: up_rate
    units: {levels: [department], scope: self}
    target: 0.75
    deadline: 1970-01-17
"""

EXTRA = """\
version: 1
rules:
  - id: extra.none
    kpi: up_rate
    units: {levels: [province]}
    target: "90%"
    deadline: 2025-12-31
    notify: {for: 36h}
    citation: {instrument: "NQ 17/NQ-CP", date: 2019-03-07, title: "Nghị quyết 17", verified: false,
               note: "figure not confirmed"}
"""

PROVINCE, DEPT, DEPT_2, DISTRICT, COMMUNE = (
    "000.00.00.H99", "000.00.01.H99", "000.00.02.H99", "000.00.41.H99", "000.01.41.H99")
# Matches the code 000.00.01.H99 only if the dots are left unescaped in a regex.
DECOY = "000a00a01aH99"
LABELS = {PROVINCE: ("province", "tinh"), DEPT: ("department", "so_nganh"), DEPT_2: ("department", "so_nganh"),
          DISTRICT: ("district", "huyen"), COMMUNE: ("commune", "xa"), DECOY: ("department", "so_nganh")}
DAY = 86400
HOUR = 3600


def setup_rules(tmp_path: Path) -> tuple[RuleSet, Catalog]:
    (tmp_path / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    (tmp_path / "pack.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "extra.yaml").write_text(EXTRA, encoding="utf-8")
    catalog = load_catalog(tmp_path / "catalog.yaml")
    return load_rules([tmp_path / "pack.yaml", tmp_path / "extra.yaml"], catalog, None), catalog


def by_rule(exported: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, rule id) -> the Prometheus rule, kind "record" or "alert"."""
    out = {}
    for group in exported["groups"]:
        for rule in group["rules"]:
            rule_id = rule.get("labels", {}).get("rule")
            if rule_id:
                out[("record" if "record" in rule else "alert", rule_id)] = rule
    return out


# --------------------------------------------------------------------------- (a) the export itself


def test_export_passes_promtool_check_rules(tmp_path: Path) -> None:
    require_promtool()
    rules, catalog = setup_rules(tmp_path)
    text = render_prometheus_rules(rules, catalog)  # the province's timezone: 1970 midnights are negative
    path = tmp_path / "egov-targets.rules.yaml"
    path.write_text(text, encoding="utf-8")
    ok, output = promtool_check_rules(path)
    assert ok, output
    assert f"SUCCESS: {2 * len(rules) + 3} rules found" in output, output

    assert text.startswith("# Generated by `egovmon rules export-prometheus`")
    assert str(tmp_path / "pack.yaml") in text.split("groups:")[0]
    assert str(tmp_path / "extra.yaml") in text.split("groups:")[0]
    exported = export_prometheus_rules(rules, catalog)
    assert yaml.safe_load(text) == exported
    assert [g["name"] for g in exported["groups"]] == [
        "egov-targets-test-pack", "egov-targets-extra", "egov-targets-summary"]


def test_rules_labels_cannot_express_fall_back_to_the_services_gap(tmp_path: Path) -> None:
    rules, catalog = setup_rules(tmp_path)
    exported = by_rule(export_prometheus_rules(rules, catalog))
    for rule_id, why in (("up.subtree", "descendants"), ("up.first", "first observation"),
                         ("up.self", "scope: self")):
        expr = exported[("record", rule_id)]["expr"]
        comment, query = expr.strip().split("\n")
        assert comment.startswith("#") and why in comment
        assert query == f'egov_target_gap{{rule="{rule_id}"}}'
    for rule_id in ("up.linear", "up.milestones", "up.flat", "down.linear", "extra.none"):
        assert "egov_kpi_value{" in exported[("record", rule_id)]["expr"]
        assert "egov_target_gap" not in exported[("record", rule_id)]["expr"]


def test_alert_for_citation_and_severity(tmp_path: Path) -> None:
    rules, catalog = setup_rules(tmp_path)
    exported = by_rule(export_prometheus_rules(rules, catalog))
    assert exported[("alert", "up.linear")]["for"] == "3h"
    assert exported[("alert", "up.flat")]["for"] == "90m"
    assert exported[("alert", "up.flat")]["labels"] == {"severity": "critical", "rule": "up.flat", "kpi": "up_rate"}
    extra = exported[("alert", "extra.none")]
    assert extra["for"] == "36h"
    assert extra["annotations"]["citation"] == ("NQ 17/NQ-CP, 07/03/2019: Nghị quyết 17 "
                                                "(chưa xác minh / unverified: figure not confirmed)")
    assert "citation_url" not in extra["annotations"]
    assert "mục tiêu >= 90% đến 31/12/2025" in extra["annotations"]["summary"]


@pytest.mark.parametrize(("value", "expected"), [
    (timedelta(days=1), "1d"), (timedelta(hours=36), "36h"), (timedelta(minutes=30), "30m"),
    (timedelta(minutes=90), "90m"), (timedelta(seconds=90), "90s"), (timedelta(days=14), "14d"),
    (timedelta(milliseconds=1500), "1500ms"), (timedelta(0), "0s"),
])
def test_promql_duration(value: timedelta, expected: str) -> None:
    assert promql_duration(value) == expected


def test_string_and_regex_escaping_as_promql_reads_them(tmp_path: Path) -> None:
    """The escaping is checked by PromQL itself: a selector written with it must
    match exactly the series whose label holds the raw value."""
    nasty = 'Sở "A" \\ b.c+d(e|f)[g]*?{h}^ 5% \t\nmới'
    decoy = nasty.replace(".", "X").replace("+", "")  # what a pattern with unescaped . and + would also match
    assert promql_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'

    def series(value: str) -> str:
        return f"esc{{l={json.dumps(value, ensure_ascii=False)}}}"  # JSON escapes are Go's: written independently

    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": series(nasty), "values": "1x5"}, {"series": series(decoy), "values": "2x5"}],
        "promql_expr_test": [
            {"expr": f"esc{{l={promql_string(nasty)}}}", "eval_time": "2m",
             "exp_samples": [{"labels": series(nasty), "value": 1}]},
            {"expr": f"esc{{l=~{promql_string(regex_escape(nasty))}}}", "eval_time": "2m",
             "exp_samples": [{"labels": series(nasty), "value": 1}]},
            {"expr": f"esc{{l=~{promql_string(regex_escape(nasty) + '|' + regex_escape(decoy))}}}",
             "eval_time": "2m",
             "exp_samples": [{"labels": series(nasty), "value": 1}, {"labels": series(decoy), "value": 2}]},
        ],
    }]}
    path = tmp_path / "escape.test.yaml"
    path.write_text(yaml.safe_dump(test, allow_unicode=True, sort_keys=False), encoding="utf-8")
    ok, output = promtool_test_rules(path)
    assert ok, output


# --------------------------------------------------------------------------- (b) the PromQL, run


def expected_on(day: date, corners: list[tuple[date, float]]) -> float:
    """The glide path by whole days: held before the first corner and after the last."""
    if day <= corners[0][0]:
        return corners[0][1]
    for (d0, v0), (d1, v1) in pairwise(corners):
        if day <= d1:
            return v0 + (v1 - v0) * (day - d0).days / (d1 - d0).days
    return corners[-1][1]


EPOCH = date(1970, 1, 1)
LINEAR = [(EPOCH, 0.25), (date(1970, 1, 17), 0.75)]
MILESTONES = [(EPOCH, 0.25), (date(1970, 1, 5), 0.5), (date(1970, 1, 9), 0.875)]
DOWN = [(EPOCH, 0.5), (date(1970, 1, 17), 0.125)]
# (kpi, unit, window) -> the value egov_kpi_value holds throughout the test.
ACTUAL = {
    ("up_rate", PROVINCE, "ytd"): 0.25,
    ("up_rate", DEPT, "ytd"): 0.5,
    ("up_rate", DEPT_2, "ytd"): 0.5,        # excluded by up.linear
    ("up_rate", COMMUNE, "ytd"): 0.5,       # wrong level for up.linear
    ("down_rate", PROVINCE, "ytd"): 0.4375,  # wrong KPI for up.linear, wrong window for down.linear
    ("up_rate", PROVINCE, "month"): 0.5,    # wrong window for up.linear
    ("up_rate", DISTRICT, "month"): 0.3125,
    ("up_rate", DEPT, "month"): 0.5,        # wrong group for up.milestones; up.flat's unit
    ("up_rate", DECOY, "month"): 0.5,
    ("down_rate", PROVINCE, "month"): 0.4375,
}
# Times inside a day (the expected value is the one of the day, as the service
# has it), on a milestone, after a deadline, and on both edges of up.flat's validity.
EVAL_TIMES = [2 * DAY + 12 * HOUR, 4 * DAY, 6 * DAY + 12 * HOUR, 9 * DAY + 12 * HOUR, 10 * DAY,
              12 * DAY + 6 * HOUR, 17 * DAY]


def kpi_series(kpi: str, unit: str, window: str, **extra: str) -> dict[str, str]:
    level, group = LABELS[unit]
    return {"kpi": kpi, "unit": unit, "level": level, "group": group, "window": window, **extra}


def selector(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels.items()) + "}"


def expected_gaps(seconds: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Per rule id, the recorded series and values at ``seconds`` after the epoch."""
    day = EPOCH + timedelta(days=seconds // DAY)
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    linear = expected_on(day, LINEAR)
    out["up.linear"] = [(kpi_series("up_rate", unit, "ytd", rule="up.linear"),
                         linear - ACTUAL[("up_rate", unit, "ytd")]) for unit in (PROVINCE, DEPT)]
    milestones = expected_on(day, MILESTONES)
    out["up.milestones"] = [(kpi_series("up_rate", DISTRICT, "month", rule="up.milestones"),
                             milestones - ACTUAL[("up_rate", DISTRICT, "month")])]
    in_force = date(1970, 1, 5) <= day <= date(1970, 1, 10)
    out["up.flat"] = [(kpi_series("up_rate", DEPT, "month", rule="up.flat"),
                       0.875 - ACTUAL[("up_rate", DEPT, "month")])] if in_force else []
    out["down.linear"] = [(kpi_series("down_rate", PROVINCE, "month", rule="down.linear"),
                           ACTUAL[("down_rate", PROVINCE, "month")] - expected_on(day, DOWN))]
    out["up.subtree"] = [({"rule": "up.subtree", "kpi": "up_rate", "unit": PROVINCE, "level": "province",
                           "group": "tinh", "window": "month"}, 0.0625)]
    return out


def target_series(name: str, rule: str, unit: str, **extra: str) -> str:
    level, group = LABELS[unit]
    return selector(name, {"rule": rule, "kpi": "up_rate", "unit": unit, "level": level, "group": group, **extra})


def behind_alert(rule: str, unit: str, severity: str, gap: str, title: tuple[str, str],
                 target: str, deadline: date) -> dict[str, Any]:
    level, group = LABELS[unit]
    return {
        "exp_labels": {"severity": severity, "rule": rule, "kpi": "up_rate", "unit": unit, "level": level,
                       "group": group},
        "exp_annotations": {
            "summary": (f"Đơn vị {unit} chậm so với lộ trình «{title[0]}»: lệch {gap} so với mức cần đạt hôm nay "
                        f"(mục tiêu >= {target} đến {deadline:%d/%m/%Y})"),
            "summary_en": (f"Unit {unit} is behind on “{title[1]}”: {gap} off today's expected value "
                           f"(target >= {target} by {deadline.isoformat()})"),
            "citation": 'QĐ 942/QĐ-TTg, 15/06/2021: Chiến lược "CPĐT" {{ 2025 }}',
            "citation_url": "https://vanban.chinhphu.vn/?docid=203715",
        },
    }


def test_promtool_runs_the_recorded_gaps_and_the_alerts(tmp_path: Path) -> None:
    require_promtool()
    rules, catalog = setup_rules(tmp_path)
    (tmp_path / "egov-targets.rules.yaml").write_text(render_prometheus_rules(rules, catalog, "UTC"),
                                                      encoding="utf-8")
    span = f"x{17 * 24 + 2}"  # hourly samples until after the last evaluation time
    inputs = [{"series": selector("egov_kpi_value", kpi_series(kpi, unit, window)), "values": f"{value}{span}"}
              for (kpi, unit, window), value in ACTUAL.items()]
    inputs += [
        {"series": target_series("egov_target_gap", "up.subtree", PROVINCE), "values": f"0.0625{span}"},
        # The service's view for the alerts: the province behind from the start (for: 3h), a
        # department at risk (never alerts), a district missed from 2h on, up.flat (for: 90m)
        # behind from the start, and a commune whose data went stale (its own alert, for: 1h).
        {"series": target_series("egov_target_gap", "up.linear", PROVINCE), "values": f"0.125{span}"},
        {"series": target_series("egov_target_status", "up.linear", PROVINCE, status="behind"), "values": f"1{span}"},
        {"series": target_series("egov_target_gap", "up.linear", DEPT), "values": f"0.03125{span}"},
        {"series": target_series("egov_target_status", "up.linear", DEPT, status="at_risk"), "values": f"1{span}"},
        {"series": target_series("egov_target_gap", "up.linear", DISTRICT), "values": f"0.0625{span}"},
        {"series": target_series("egov_target_status", "up.linear", DISTRICT, status="missed"),
         "values": f"_ _ 1{span}"},
        {"series": target_series("egov_target_gap", "up.flat", DEPT), "values": f"0.375{span}"},
        {"series": target_series("egov_target_status", "up.flat", DEPT, status="behind"), "values": f"1{span}"},
        {"series": target_series("egov_target_status", "up.first", COMMUNE, status="stale"), "values": f"1{span}"},
    ]
    expr_tests = []
    for seconds in EVAL_TIMES:
        for rule_id, samples in expected_gaps(seconds).items():
            expr_tests.append({
                "expr": f'egov:target_gap:ratio{{rule="{rule_id}"}}', "eval_time": f"{seconds}s",
                "exp_samples": [{"labels": selector("egov:target_gap:ratio", labels), "value": value}
                                for labels, value in samples]})
    expr_tests.append({"expr": "egov:targets_by_status:count", "eval_time": "3h", "exp_samples": [
        {"labels": 'egov:targets_by_status:count{rule="up.linear",status="behind"}', "value": 1},
        {"labels": 'egov:targets_by_status:count{rule="up.linear",status="at_risk"}', "value": 1},
        {"labels": 'egov:targets_by_status:count{rule="up.linear",status="missed"}', "value": 1},
        {"labels": 'egov:targets_by_status:count{rule="up.flat",status="behind"}', "value": 1},
        {"labels": 'egov:targets_by_status:count{rule="up.first",status="stale"}', "value": 1}]})
    expr_tests.append({"expr": "egov:target_gap:max", "eval_time": "3h", "exp_samples": [
        {"labels": 'egov:target_gap:max{rule="up.linear"}', "value": 0.125},
        {"labels": 'egov:target_gap:max{rule="up.flat"}', "value": 0.375},
        {"labels": 'egov:target_gap:max{rule="up.subtree"}', "value": 0.0625}]})

    linear_title = ('Tỷ lệ "điện tử" {{ đạt }}', 'Electronic "rate" {{ reached }}')
    catalog_title = ("Tỷ lệ hoàn thành", "Completion rate")
    province = behind_alert("up.linear", PROVINCE, "warning", "12.5%", linear_title, "75%", date(1970, 1, 17))
    district = behind_alert("up.linear", DISTRICT, "warning", "6.25%", linear_title, "75%", date(1970, 1, 17))
    flat = behind_alert("up.flat", DEPT, "critical", "37.5%", catalog_title, "87.5%", date(1970, 1, 17))
    stale_labels = {"severity": "warning", "rule": "up.first", "kpi": "up_rate", "unit": COMMUNE,
                    "level": "commune", "group": "xa", "status": "stale"}
    alert_tests = [
        {"alertname": "EgovTargetBehind", "eval_time": "1h", "exp_alerts": []},
        {"alertname": "EgovTargetBehind", "eval_time": "2h", "exp_alerts": [flat]},  # 90m passed, 3h not yet
        {"alertname": "EgovTargetBehind", "eval_time": "4h", "exp_alerts": [province, flat]},
        {"alertname": "EgovTargetBehind", "eval_time": "5h", "exp_alerts": [province, district, flat]},
        {"alertname": "EgovTargetDataStale", "eval_time": "0h", "exp_alerts": []},
        {"alertname": "EgovTargetDataStale", "eval_time": "1h", "exp_alerts": [{
            "exp_labels": stale_labels,
            "exp_annotations": {
                "summary": ("Dữ liệu của đơn vị 000.01.41.H99 cho chỉ tiêu up.first đã cũ: không đánh giá được, "
                            "không có cảnh báo chỉ tiêu cho đến khi có dữ liệu mới"),
                "summary_en": ("Data for unit 000.01.41.H99 on target up.first is stale: it cannot be evaluated, "
                               "so no target alert will fire until fresh data arrives")}}]},
    ]
    test = {"rule_files": ["egov-targets.rules.yaml"], "evaluation_interval": "1h", "tests": [{
        "interval": "1h", "input_series": inputs, "promql_expr_test": expr_tests, "alert_rule_test": alert_tests}]}
    path = tmp_path / "egov-targets.test.yaml"
    path.write_text(yaml.safe_dump(test, allow_unicode=True, sort_keys=False), encoding="utf-8")
    ok, output = promtool_test_rules(path)
    assert ok, output


def test_the_independent_expectations_walk_the_paths() -> None:
    """The Python side must itself be on the glide path, or the test above proves little."""
    gaps = [expected_gaps(t) for t in EVAL_TIMES]
    province = [g["up.linear"][0][1] for g in gaps]
    assert province == [0.0625, 0.125, 0.1875, 0.28125, 0.3125, 0.375, 0.5]  # 0.25 -> 0.75 in 16 days, - 0.25
    assert [g["up.milestones"][0][1] for g in gaps] == [0.0625, 0.1875, 0.375, 0.5625, 0.5625, 0.5625, 0.5625]
    assert [len(g["up.flat"]) for g in gaps] == [0, 1, 1, 1, 0, 0, 0]
    assert [g["down.linear"][0][1] for g in gaps] == [-0.015625, 0.03125, 0.078125, 0.1484375, 0.171875,
                                                       0.21875, 0.3125]


# --------------------------------------------------------------------------- (c) the shipped packs


def test_shipped_packs_export_passes_promtool(tmp_path: Path) -> None:
    require_promtool()
    folders = [SHIPPED_RULES_DIR / name for name in ("national", "provincial")
               if (SHIPPED_RULES_DIR / name).is_dir()]
    assert expand_rule_paths(folders), f"no rule files in {SHIPPED_RULES_DIR}/national or provincial"
    catalog = load_catalog()
    rules = load_rules(folders, catalog, ProvinceModel().unit_tree())
    path = tmp_path / "egov-targets.rules.yaml"
    path.write_text(render_prometheus_rules(rules, catalog), encoding="utf-8")
    ok, output = promtool_check_rules(path)
    assert ok, output
    assert re.search(rf"SUCCESS: {2 * len(rules) + 3} rules found", output), output
