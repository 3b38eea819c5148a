"""The target families on /metrics: promtool-clean, one status per rule and unit, numbers as evaluated."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

from prometheus_client.parser import text_string_to_metric_families

from monitor.catalog import load_catalog
from monitor.simulators.province import ProvinceModel
from monitor.targets.evaluate import Evaluation
from monitor.targets.export import render_target_families
from monitor.targets.loader import SHIPPED_RULES_DIR, load_rules
from monitor.timeutil import zone
from tests.support.components import promtool_check_metrics

TZ = zone("Asia/Ho_Chi_Minh")
AS_OF = datetime(2026, 11, 22, 3, tzinfo=UTC)


def evaluation(**fields: object) -> Evaluation:
    base = Evaluation(
        rule="qd942-work-records-online-commune", kpi="work_records_online_rate", unit="000.00.00.H99",
        as_of=AS_OF, as_of_day=date(2026, 11, 22), window="ytd", window_start=AS_OF, window_end=AS_OF,
        status="behind", actual=0.5, numerator=50, denominator=100, units_reporting=3, comparator=">=",
        target=0.6, expected=0.6, gap=0.1, gap_to_target=0.1, deadline=date(2025, 12, 31), baseline_value=None,
        baseline_date=None, data_through=AS_OF, forecast_value=0.58, forecast_reached_on=date(2027, 3, 1),
        forecast_reachable=True, forecast_points=6, trend_per_year=0.04, clear=False)
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def test_target_families(province: ProvinceModel) -> None:
    tree = province.unit_tree()
    commune = next(u for u in tree.valid_on(date(2026, 11, 22)) if u.group == "xa")
    rules = load_rules([SHIPPED_RULES_DIR / "national"], load_catalog(), tree)
    evaluations = [evaluation(unit=commune.code),
                   evaluation(unit="000.00.01.H99", status="no_data", actual=None, gap=None, gap_to_target=None,
                              forecast_value=None, forecast_reached_on=None, forecast_reachable=None,
                              forecast_points=0)]
    text = b"".join(render_target_families(evaluations, rules, load_catalog(), tree, TZ)).decode("utf-8")
    ok, output = promtool_check_metrics(text)
    assert ok, output
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    key = frozenset({"rule": "qd942-work-records-online-commune", "kpi": "work_records_online_rate",
                     "unit": commune.code, "level": commune.level.value, "group": "xa"}.items())
    assert samples[("egov_target_actual", key)] == 0.5
    assert samples[("egov_target_gap", key)] == 0.1
    assert samples[("egov_target_status", key | {("status", "behind")})] == 1
    # The end of 2025-12-31 in Hanoi is 2025-12-31T17:00Z.
    end_of_deadline = datetime(2025, 12, 31, 17, tzinfo=UTC).timestamp()
    assert samples[("egov_target_deadline_timestamp_seconds", key)] == end_of_deadline
    assert samples[("egov_target_forecast_reached_timestamp_seconds", key)] == \
        datetime(2027, 2, 28, 17, tzinfo=UTC).timestamp()
    statuses = [dict(labels) for name, labels in samples if name == "egov_target_status"]
    assert len(statuses) == 2  # exactly one status series per rule and unit
    no_data = frozenset(dict(key, unit="000.00.01.H99", level="department", group="so_nganh").items())
    assert ("egov_target_actual", no_data) not in samples  # no data is absent, never 0
    assert ("egov_target_forecast_reached_timestamp_seconds", no_data) not in samples
    infos = {dict(labels)["rule"]: dict(labels) for name, labels in samples if name == "egov_target_info"}
    assert set(infos) == {r.id for r in rules}
    info = infos["qd942-work-records-online-commune"]
    assert info["instrument"] == "QĐ 942/QĐ-TTg" and info["window"] == "ytd" and info["citation_date"] == "2021-06-15"
    assert "Chính phủ" in info["citation_title"]

