"""The shipped rule packs' unit tests (rules/tests/*.test.yaml) pass, cover every
shipped rule, and the runner behind ``egovmon rules test`` really fails when an
expectation is wrong or a test file is broken."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from monitor.catalog import load_catalog
from monitor.cli import app
from monitor.targets.loader import expand_rule_paths, load_rules
from monitor.targets.testing import RuleTestFile, RuleTestReport, run_test_files
from monitor.yamlsource import load_yaml_file

ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = ROOT / "rules" / "tests"
PACK_DIRS = [ROOT / "rules" / "national", ROOT / "rules" / "provincial"]


def rule_test_files() -> list[Path]:
    return expand_rule_paths([TESTS_DIR])


@pytest.fixture(scope="module")
def report() -> RuleTestReport:
    return run_test_files(rule_test_files(), load_catalog())


def expected_rule_ids(path: Path) -> set[str]:
    spec = RuleTestFile.model_validate(load_yaml_file(path).data)
    return {e.rule for case in spec.tests for step in case.evaluate for e in step.expect}


def test_every_shipped_rule_test_passes(report: RuleTestReport) -> None:
    assert report.files == len(rule_test_files()) >= 6
    assert report.tests > 0 and report.checks > report.tests
    failures = "\n".join(str(f) for f in report.failures or [])
    assert report.ok, f"{len(report.failures or [])} rule test checks failed:\n{failures}"


def test_every_shipped_pack_has_a_test_file() -> None:
    packs = {p.stem for p in expand_rule_paths(PACK_DIRS)}
    tested = {p.name.removesuffix(".test.yaml") for p in rule_test_files()}
    assert packs <= tested, f"packs without rules/tests/<pack>.test.yaml: {sorted(packs - tested)}"


def test_every_shipped_rule_appears_in_an_expectation() -> None:
    rules = load_rules(PACK_DIRS, load_catalog(), None)
    expected: set[str] = set()
    for path in rule_test_files():
        expected |= expected_rule_ids(path)
    untested = sorted({rule.id for rule in rules} - expected)
    assert not untested, f"shipped rules no test expects anything of: {untested}"


# ---------------------------------------------------------------------------- the runner can fail

def copy_with_absolute_rule_files(source: Path, target_dir: Path) -> tuple[Path, dict[str, Any]]:
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["rule_files"] = [str((source.parent / f).resolve()) for f in data["rule_files"]]
    return target_dir / source.name, data


def find_expectation(data: dict[str, Any], test: str, at: str, rule: str, unit: str) -> dict[str, Any]:
    case = next(c for c in data["tests"] if c["name"] == test)
    step = next(s for s in case["evaluate"] if str(s["at"]) == at)
    return next(e for e in step["expect"] if e["rule"] == rule and e["unit"] == unit)


AT_RISK_CASE = "online dossiers: at_risk, then behind; a falling ytd trend is unreachable"


@pytest.mark.parametrize(("field", "wrong", "message"), [
    ("status", "behind", "status: expected behind, got at_risk"),
    ("gap", 0.05, "gap: expected 0.05, got 0.04"),
])
def test_a_wrong_expectation_is_reported_exactly(tmp_path: Path, field: str, wrong: Any, message: str) -> None:
    path, data = copy_with_absolute_rule_files(TESTS_DIR / "nq17-2019.test.yaml", tmp_path)
    expectation = find_expectation(data, AT_RISK_CASE, "2020-03-31", "nq17-online-dossier", "000.00.00.H99")
    assert expectation["status"] == "at_risk" and expectation["gap"] == pytest.approx(0.04)
    expectation[field] = wrong
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    result = run_test_files([path], load_catalog())

    assert result.failures is not None and len(result.failures) == 1, "\n".join(map(str, result.failures or []))
    failure = result.failures[0]
    assert (failure.file, failure.test, failure.at, failure.rule, failure.unit) == (
        str(path), AT_RISK_CASE, "2020-03-31", "nq17-online-dossier", "000.00.00.H99")
    assert failure.message.startswith(message), failure.message
    original = run_test_files([TESTS_DIR / "nq17-2019.test.yaml"], load_catalog())
    assert (result.tests, result.checks) == (original.tests, original.checks)


# ---------------------------------------------------------------------------- the command line

def test_cli_runs_the_shipped_tests(report: RuleTestReport) -> None:
    result = CliRunner().invoke(app, ["rules", "test"])
    assert result.exit_code == 0, result.output
    summary = f"{report.tests} tests, {report.checks} checks in {report.files} files: 0 failed"
    assert summary in result.output.splitlines(), result.output
    assert "FAIL" not in result.output
    assert re.search(r"^ok +nq76-2021\.test\.yaml: ", result.output, re.MULTILINE)


BROKEN = """\
version: 1
rule_files: [{rules}]
tests:
  - name: a rule id that does not exist
    input: []
    evaluate:
      - at: 2025-06-30
        expect:
          - {{rule: qd942-outgoing-docs-signed, unit: 000.00.01.H99, status: no_data}}
          - {{rule: qd942-no-such-rule, unit: 000.00.01.H99, status: met}}
"""


def test_cli_reports_an_unknown_rule_id_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.test.yaml"
    path.write_text(BROKEN.format(rules=ROOT / "rules" / "national" / "qd942-2021.yaml"), encoding="utf-8")

    result = CliRunner().invoke(app, ["rules", "test", str(path)])

    assert result.exit_code == 2, result.output
    assert f"{path}:10: tests[0].evaluate[0].expect[1].rule" in result.output, result.output
    assert "no rule 'qd942-no-such-rule'" in result.output
