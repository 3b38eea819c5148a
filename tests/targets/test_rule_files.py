"""Rule files: mistakes refused with file, line and field; the shipped packs valid and cited;
a broken reload leaves the service on its last valid rules."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from monitor.catalog import load_catalog
from monitor.cli import app
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from monitor.targets.loader import SHIPPED_RULES_DIR, load_rules
from tests.support.province import write_config

GOOD = """\
  - id: work-records-province
    kpi: work_records_online_rate
    units: {levels: [province]}
    target: 0.9
    deadline: 2025-12-31
    baseline: {value: 0.5, date: 2024-12-31}
    trajectory: linear
    citation: {instrument: "QĐ 942/QĐ-TTg", date: 2021-06-15, title: "Chiến lược Chính phủ điện tử"}
"""


def rule_file(tmp_path: Path, body: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text("version: 1\nrules:\n" + textwrap.dedent(body), encoding="utf-8")
    return path


def problems_of(path: Path, province: ProvinceModel) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_rules([path], load_catalog(), province.unit_tree())
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(("change", "line", "field", "words"), [
    (("kpi: work_records_online_rate", "kpi: work_record_online_rate"), 4, "rules[0].kpi",
     "did you mean 'work_records_online_rate'"),
    (("target: 0.9", "target: 90"), 6, "rules[0].target", "write 0.9 or '90%'"),
    (("deadline: 2025-12-31", "deadline: 2024-06-30"), 7, "rules[0].deadline", "after the baseline date"),
    (("units: {levels: [province]}", "units: {codes: ['000.00.99.H99']}"), 5, "rules[0].units.codes[0]",
     "unknown unit code '000.00.99.H99'"),
    (("units: {levels: [province]}", "units: {levels: [provinces]}"), 5, "rules[0].units.levels[0]",
     "'province'"),
    (("citation: {", "citeation: {"), 10, "rules[0].citeation", "Extra inputs"),
])
def test_a_mistake_is_refused_with_file_line_and_field(tmp_path: Path, province: ProvinceModel,
                                                       change: tuple[str, str], line: int, field: str,
                                                       words: str) -> None:
    path = rule_file(tmp_path, GOOD.replace(*change))
    problems = problems_of(path, province)
    assert any(p.startswith(f"{path}:{line}: {field}: rule 'work-records-province': ") and words in p
               for p in problems), problems


def test_a_duplicate_id_names_both_places(tmp_path: Path, province: ProvinceModel) -> None:
    first = rule_file(tmp_path, GOOD, "a.yaml")
    second = rule_file(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ConfigError) as caught:
        load_rules([first, second], load_catalog(), province.unit_tree())
    assert [str(p) for p in caught.value.problems] == [
        f"{second}:3: rules[0].id: rule 'work-records-province': duplicate id, first defined at {first}:3; "
        "rule ids must be unique across all rule files"]


def test_every_problem_is_reported_at_once(tmp_path: Path, province: ProvinceModel) -> None:
    body = GOOD + GOOD.replace("work-records-province", "second").replace("target: 0.9", "target: 85") \
        .replace("kpi: work_records_online_rate", "kpi: nope")
    problems = problems_of(rule_file(tmp_path, body), province)
    assert len(problems) == 1 and "rules[1].target" in problems[0]  # the schema fails first for that rule
    body = GOOD + GOOD.replace("work-records-province", "second").replace("kpi: work_records_online_rate",
                                                                          "kpi: nope")
    body += GOOD.replace("work-records-province", "third").replace("target: 0.9", 'target: "90"')
    problems = problems_of(rule_file(tmp_path, body), province)
    assert len(problems) == 2 and "rules[1].kpi" in problems[0] and "rules[2]" in problems[1]


@pytest.mark.parametrize(("written", "value"), [("0.9", 0.9), ('"90%"', 0.9), ('"12.5 %"', 0.125), ("1", 1.0)])
def test_ratios_may_be_written_as_percentages(tmp_path: Path, province: ProvinceModel, written: str,
                                              value: float) -> None:
    path = rule_file(tmp_path, GOOD.replace("target: 0.9", f"target: {written}"))
    rules = load_rules([path], load_catalog(), province.unit_tree())
    assert rules.get("work-records-province").target == pytest.approx(value)  # type: ignore[union-attr]


def test_shipped_packs_are_valid_and_every_target_is_cited(province: ProvinceModel) -> None:
    packs = [SHIPPED_RULES_DIR / "national", SHIPPED_RULES_DIR / "provincial"]
    rules = load_rules(packs, load_catalog(), province.unit_tree())
    assert len(rules) >= 15
    instruments = set()
    for loaded in rules.rules:
        citation = loaded.rule.citation
        assert citation.instrument and citation.title and citation.date, loaded.rule.id
        assert citation.verified or citation.note, f"{loaded.rule.id}: unverified without a note"
        instruments.add(re.sub(r"\s+", " ", citation.instrument))
    # The instruments the issue names are all there.
    for number in ("NQ 17/NQ-CP", "QĐ 749/QĐ-TTg", "QĐ 942/QĐ-TTg", "NQ 76/NQ-CP", "CT-TTg", "QĐ 141/QĐ-UBND"):
        assert any(number in i for i in instruments), (number, instruments)
    # Level-specific values: work records 90 / 80 / 60 % by 2025.
    by_level = {level.value: r.rule.target for r in rules.rules for level in r.rule.units.levels
                if r.rule.kpi == "work_records_online_rate" and r.rule.deadline.year == 2025}
    assert (by_level["department"], by_level["district"], by_level["commune"]) == (0.9, 0.8, 0.6)


def test_rules_check_command(tmp_path: Path, province: ProvinceModel) -> None:
    config = write_config(tmp_path, province, {"document_management": "http://127.0.0.1:9/",
                                               "email_directory": "http://127.0.0.1:9/",
                                               "one_stop": "http://127.0.0.1:9/"})
    result = CliRunner().invoke(app, ["-c", str(config), "rules", "check"])
    assert result.exit_code == 0, result.output
    assert re.search(r"ok: \d+ rules in 5 files, 2 indices", result.output)
    bad = rule_file(tmp_path, GOOD.replace("target: 0.9", "target: 90"))
    result = CliRunner().invoke(app, ["-c", str(config), "rules", "check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:6: rules[0].target" in result.output


def test_service_keeps_its_last_valid_rules_when_a_reload_is_refused(tmp_path: Path,
                                                                     province: ProvinceModel) -> None:
    own = rule_file(tmp_path, GOOD, "own.yaml")
    config_path = write_config(tmp_path, province, {"document_management": "http://127.0.0.1:9/",
                                                    "email_directory": "http://127.0.0.1:9/",
                                                    "one_stop": "http://127.0.0.1:9/"})
    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    data["rules"] = {"shipped": [], "files": ["own.yaml"]}
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    service = MonitorService(load_config(config_path))
    try:
        assert [r.id for r in service.rules] == ["work-records-province"]
        own.write_text(own.read_text(encoding="utf-8").replace("target: 0.9", "target: 90"), encoding="utf-8")
        error = service.reload_rules()
        assert error is not None and f"{own}:6: rules[0].target" in str(error)
        assert [r.target for r in service.rules] == [0.9]
        assert service.metrics.registry.get_sample_value("egov_rules_last_reload_success") == 0
        own.write_text(own.read_text(encoding="utf-8").replace("target: 90", "target: 0.8"), encoding="utf-8")
        assert service.reload_rules() is None
        assert [r.target for r in service.rules] == [0.8]
        assert service.metrics.registry.get_sample_value("egov_rules_last_reload_success") == 1
    finally:
        service.close()


def test_a_service_does_not_start_on_broken_rules(tmp_path: Path, province: ProvinceModel) -> None:
    rule_file(tmp_path, GOOD.replace("kpi: work_records_online_rate", "kpi: nope"), "own.yaml")
    config_path = write_config(tmp_path, province, {"document_management": "http://127.0.0.1:9/",
                                                    "email_directory": "http://127.0.0.1:9/",
                                                    "one_stop": "http://127.0.0.1:9/"})
    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    data["rules"] = {"files": ["own.yaml"]}
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(app, ["-c", str(config_path), "evaluate"])
    assert result.exit_code == 2
    assert f"{tmp_path / 'own.yaml'}:4: rules[0].kpi" in result.output
