"""monitor.yaml: validation with file, line and field; ${ENV}; *_file secrets."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import load_config
from monitor.errors import ConfigError

UNITS = """\
version: 1
units:
  - {code: 000.00.00.H99, name: "UBND tỉnh Sơn Hà", level: province, group: tinh}
"""

VALID = """\
version: 1
province: {name: "Tỉnh Sơn Hà"}
database: {url: "sqlite:///data/egovmon.db"}
units: {file: units.yaml}
sources:
  - id: qlvb
    kind: document_management
    url: http://127.0.0.1:9481
    schedule: {interval: 15m, jitter: 10s}
    auth: {type: bearer, token: "${QLVB_TOKEN}"}
  - id: mail
    kind: email_directory
    url: http://127.0.0.1:9482
    schedule: {cron: "0 6 * * *"}
    auth: {type: basic, username: monitor, password_file: secret.txt}
    options: {regular_use_days: 30, logon_frequency_days: 7}
"""


def write(tmp_path: Path, text: str, units: str = UNITS) -> Path:
    (tmp_path / "units.yaml").write_text(units, encoding="utf-8")
    (tmp_path / "secret.txt").write_text("s3cr3t-pass\n", encoding="utf-8")
    path = tmp_path / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_config_is_frozen_with_secrets_resolved(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), {"QLVB_TOKEN": "tok-123"})
    qlvb, mail = config.sources
    assert qlvb.auth.headers() == {"Authorization": "Bearer tok-123"}
    assert mail.auth.password is not None and mail.auth.password.get_secret_value() == "s3cr3t-pass"
    assert "s3cr3t" not in repr(config) and "tok-123" not in repr(config)
    assert qlvb.schedule.interval is not None and qlvb.schedule.interval.total_seconds() == 900
    assert config.http.listen == "127.0.0.1:9480"  # loopback by default
    assert config.timezone == "Asia/Ho_Chi_Minh"
    # Relative paths are relative to the config file, not to the working directory.
    assert config.units.file == tmp_path / "units.yaml"
    assert config.database.url == f"sqlite:///{(tmp_path / 'data' / 'egovmon.db').resolve()}"
    with pytest.raises(Exception, match="frozen"):
        config.language = "en"  # type: ignore[misc]


def test_every_problem_is_reported_with_line_and_field(tmp_path: Path) -> None:
    broken = (VALID.replace("interval: 15m", "interval: soon")
              .replace("kind: email_directory", "kind: carrier_pigeon")
              .replace("url: http://127.0.0.1:9481", "url: ftp://x"))
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, broken), {"QLVB_TOKEN": "t"})
    text = str(caught.value)
    lines = {p.field: p.line for p in caught.value.problems}
    assert lines.get("sources[0].url") == 8, text
    assert lines.get("sources[0].schedule.interval") == 9, text
    assert lines.get("sources[1].kind") == 12, text
    assert "carrier_pigeon" in text and "document_management" in text  # names the value and the choices
    assert "monitor.yaml:9" in text


def test_missing_environment_variable_names_it_and_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, VALID), {})
    (problem,) = caught.value.problems
    assert problem.line == 10 and "QLVB_TOKEN" in problem.message


def test_env_default_and_escape(tmp_path: Path) -> None:
    text = VALID.replace('"${QLVB_TOKEN}"', '"${QLVB_TOKEN:-fallback}"').replace(
        'name: "Tỉnh Sơn Hà"', 'name: "Giá $${literal}"')
    config = load_config(write(tmp_path, text), {})
    assert config.sources[0].auth.headers()["Authorization"] == "Bearer fallback"
    assert config.province.name == "Giá ${literal}"


def test_secret_file_problems(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("password_file: secret.txt", "password_file: nowhere.txt"))
    with pytest.raises(ConfigError, match=r"monitor.yaml:15: sources\[1\].auth.password_file: cannot read"):
        load_config(path, {"QLVB_TOKEN": "t"})
    both = VALID.replace("password_file: secret.txt", "password: x, password_file: secret.txt")
    with pytest.raises(ConfigError, match="either password or password_file"):
        load_config(write(tmp_path, both), {"QLVB_TOKEN": "t"})


def test_collector_options_are_validated_with_the_source(tmp_path: Path) -> None:
    text = VALID.replace("regular_use_days: 30", "regular_use_days: 3")
    with pytest.raises(ConfigError, match=r"sources\[1\].*regular_use_days"):
        load_config(write(tmp_path, text), {"QLVB_TOKEN": "t"})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"monitor.yaml:3: YAML syntax error"):
        load_config(write(tmp_path, "version: 1\nprovince: {name: x\nunits: [\n"), {})


def test_cli_config_check_exits_2_with_all_problems(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("interval: 15m", "interval: -").replace(
        "kind: email_directory", "kind: nope"))
    result = CliRunner().invoke(app, ["-c", str(path), "config", "check"],
                                env={"QLVB_TOKEN": "t"})
    assert result.exit_code == 2
    assert "monitor.yaml:9: sources[0].schedule.interval" in result.output
    assert "monitor.yaml:12: sources[1].kind" in result.output


def test_cli_config_check_ok(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["-c", str(write(tmp_path, VALID)), "config", "check"],
                                env={"QLVB_TOKEN": "t"})
    assert result.exit_code == 0, result.output
    assert "2 sources, 1 units" in result.output


def test_cli_config_check_reports_units_file_problems(tmp_path: Path) -> None:
    bad_units = UNITS.replace("000.00.00.H99", "H99")
    result = CliRunner().invoke(app, ["-c", str(write(tmp_path, VALID, bad_units)), "config", "check"],
                                env={"QLVB_TOKEN": "t"})
    assert result.exit_code == 2
    assert "units.yaml:3: units[0].code" in result.output and "QCVN 102" in result.output
