"""Property: ``load_config`` returns a Config or raises ConfigError — for any YAML.

Inputs: arbitrary nested documents, mutations of a valid configuration
(keys deleted or renamed, values of the wrong type, duplicated sources,
Unicode, huge and non-finite numbers), arbitrary bytes and mutated bytes
of the valid file, and alias bombs (billion laughs, a recursive alias).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from monitor.config import Config, load_config
from monitor.errors import ConfigError
from tests.fuzz.checks import fuzz, loads_or_config_error
from tests.fuzz.strategies import billion_laughs, mutated, mutated_bytes, values

UNITS = """\
version: 1
units:
  - {code: 000.00.00.H99, name: "UBND tỉnh Sơn Hà", level: province, group: tinh}
"""

VALID = """\
version: 1
province: {name: "Tỉnh Sơn Hà", code: 000.00.00.H99}
timezone: Asia/Ho_Chi_Minh
database: {url: "sqlite:///data/egovmon.db"}
units: {file: units.yaml}
http: {listen: "127.0.0.1:9480", token_hashes: ["sha256:%s"]}
smtp: {host: 127.0.0.1, port: 2525, security: none, username: u, password_file: secret.txt, timeout: 30s}
exporter: {windows: [month, ytd, rolling_30d], evaluate_interval: 5m}
rules: {shipped: [national], files: [own-rules.yaml]}
sources:
  - id: qlvb
    kind: document_management
    url: http://127.0.0.1:9481
    schedule: {interval: 15m, jitter: 10s}
    auth: {type: bearer, token: "${QLVB_TOKEN}"}
    backfill_from: 2024-01-01
  - id: mail
    kind: email_directory
    url: http://127.0.0.1:9482
    schedule: {cron: "0 6 * * *"}
    auth: {type: basic, username: monitor, password_file: secret.txt}
    options: {page_size: 100}
alerts:
  operators: [{name: "Trực ban", email: cntt@sonha.gov.vn}]
  sending_windows: [{days: [mon, fri], start: "07:30", end: "17:30"}]
  holidays: [2025-09-02]
  retry: {initial: 30s, max: 1h, give_up_after: 3d}
reports:
  schedules:
    - {name: weekly, schedule: {cron: "0 8 * * mon"}, to: [{email: lanh.dao@sonha.gov.vn}], attach: [xlsx, md]}
""" % ("0" * 64)
VALID_DATA: Any = yaml.safe_load(VALID)
ENVIRON = {"QLVB_TOKEN": "tok-123"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example: the units and secret files the config refers to."""
    path = tmp_path_factory.mktemp("config-fuzz")
    (path / "units.yaml").write_text(UNITS, encoding="utf-8")
    (path / "secret.txt").write_text("s3cr3t\n", encoding="utf-8")
    (path / "binary.txt").write_bytes(b"\xff\xfe\x00")
    return path


def check(folder: Path, content: bytes) -> Config | ConfigError:
    path = folder / "monitor.yaml"
    path.write_bytes(content)
    return loads_or_config_error(lambda: load_config(path, ENVIRON))


def dump(data: Any) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8")


def test_the_valid_config_loads(folder: Path) -> None:
    """The seed of every mutation is itself valid, so mutations start from accepted ground."""
    assert isinstance(check(folder, VALID.encode()), Config)
    assert isinstance(check(folder, dump(VALID_DATA)), Config)


@fuzz(80)
@given(data=mutated(VALID_DATA))
@example(data={**VALID_DATA, "sources": VALID_DATA["sources"] * 2})  # duplicate ids
@example(data={**VALID_DATA, "timezone": "Asia"})  # a directory of the tz database
@example(data={**VALID_DATA, "smtp": {"password_file": "a\x00b"}})  # NUL in a path
@example(data={**VALID_DATA, "smtp": {"username": "u", "password_file": "binary.txt"}})  # secret not UTF-8
@example(data={**VALID_DATA, "database": {"url": "sqlite:///a\x00b"}})
@example(data={**VALID_DATA, "exporter": {"evaluate_interval": 10**300}})
@example(data={**VALID_DATA, "exporter": {"evaluate_interval": "99999999999999999999d"}})
@example(data={**VALID_DATA, "exporter": {"evaluate_interval": float("nan")}})
@example(data={**VALID_DATA, "http": {"listen": "127.0.0.1:²"}})
def test_mutated_config_loads_or_says_why(folder: Path, data: Any) -> None:
    check(folder, dump(data))


@fuzz(80)
@given(data=values(20))
def test_arbitrary_document_loads_or_says_why(folder: Path, data: Any) -> None:
    check(folder, dump(data))


@fuzz(150)
@given(content=mutated_bytes(VALID.encode()) | st.binary(max_size=200))
@example(content=VALID.encode() + b"\n  backfill_from: 2025-02-30\n")  # a date the calendar lacks
@example(content=VALID.encode() + b"timezone: " + b"1" * 5000 + b"\n")  # over Python's int-string limit
@example(content=VALID.encode() + b"x: &a [*a]\n")  # a recursive alias
@example(content=b"a: " + b"[" * 5000 + b"]" * 5000)  # nesting deeper than the parser's recursion
@example(content=b"province: {name: \x01}\n")  # a control character YAML refuses
@example(content=b"\xff\xfeprovince: x\n")  # not UTF-8
def test_arbitrary_bytes_load_or_say_why(folder: Path, content: bytes) -> None:
    check(folder, content)


@pytest.mark.parametrize("levels", [6, 9, 30])
def test_alias_bombs_are_refused_fast(folder: Path, levels: int) -> None:
    """9**30 leaves would never finish expanding; the loader must refuse, not try."""
    result = check(folder, billion_laughs(levels).encode())
    assert isinstance(result, ConfigError)
