"""The CLI's contract: exit codes and messages that name what was wrong."""

from pathlib import Path

from typer.testing import CliRunner

from monitor.cli import app
from monitor.simulators.province import ProvinceModel
from monitor.storage.db import head_revision
from tests.support.components import free_port
from tests.support.province import write_config


def config_without_servers(tmp_path: Path, province: ProvinceModel) -> Path:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    urls = {"document_management": closed, "email_directory": closed, "one_stop": closed}
    return write_config(tmp_path, province, urls)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_unreachable_sources_fail_with_exit_1_and_say_which(tmp_path: Path, province: ProvinceModel) -> None:
    config = config_without_servers(tmp_path, province)
    code, output = invoke("-c", str(config), "collect", "--source", "qlvb")
    assert code == 1
    assert "qlvb" in output and "FAILED (unavailable)" in output
    assert "127.0.0.1" in output  # says where it tried


def test_usage_errors_exit_2(tmp_path: Path, province: ProvinceModel) -> None:
    config = str(config_without_servers(tmp_path, province))
    code, output = invoke("-c", config, "collect", "--source", "nope")
    assert code == 2 and "no source 'nope'" in output and "qlvb" in output
    code, output = invoke("-c", config, "collect", "--backfill", "2025-13-01..2025-02-01")
    assert code == 2 and "FROM..TO" in output
    code, output = invoke("-c", config, "collect", "--backfill", "2025-03-01..2025-02-01")
    assert code == 2 and "after" in output
    code, output = invoke("-c", config, "evaluate", "--unit", "000.99.99.H99")
    assert code == 2 and "000.99.99.H99" in output
    code, output = invoke("-c", config, "evaluate", "--scope", "everything")
    assert code == 2 and "subtree or self" in output
    code, output = invoke("-c", config, "evaluate", "--window", "fortnight")
    assert code == 2 and "rolling_<N>d" in output
    code, output = invoke("-c", str(tmp_path / "missing.yaml"), "config", "check")
    assert code == 2 and "missing.yaml: file not found" in output


def test_db_upgrade_reports_the_revision(tmp_path: Path, province: ProvinceModel) -> None:
    code, output = invoke("-c", str(config_without_servers(tmp_path, province)), "db", "upgrade")
    assert code == 0 and f"revision {head_revision()}" in output
    assert (tmp_path / "egovmon.db").is_file()


def test_evaluate_without_data_says_no_data(tmp_path: Path, province: ProvinceModel) -> None:
    code, output = invoke("-c", str(config_without_servers(tmp_path, province)), "evaluate")
    assert code == 0
    assert "nothing is stored" in output and "egovmon collect" in output
    # Nothing collected: no KPI value is invented, and every target says no_data.
    kpi_lines = [line for line in output.splitlines() if line.startswith("000.") and "ytd" in line]
    assert kpi_lines == []
    judged = [line for line in output.splitlines() if " actual " in line]
    assert judged and all(" no_data " in line and "actual      —" in line for line in judged), output
