"""The wheel carries everything the service reads at run time, so a plain (not editable)
install works away from the checkout: the shipped rule packs and indices, the migrations,
the templates."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from monitor.scoring.loader import SHIPPED_INDICES_DIR
from monitor.targets.loader import SHIPPED_RULES_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # From a clean copy of the tree: a checkout's stale build/ or *.egg-info would list
    # files the configuration no longer includes.
    source = build / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".*_cache", ".hypothesis", "__pycache__", "data"))
    # Built as pip builds for a user: in isolation, with the build backend pyproject.toml names.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, timeout=240, cwd=build, check=False)
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("egov_kpi_monitor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _files(folder: Path, pattern: str) -> list[Path]:
    found = sorted(p for p in folder.rglob(pattern) if p.is_file())
    assert found, f"nothing matches {pattern} under {folder}"
    return found


def test_the_loaders_read_the_rules_through_the_package() -> None:
    # The loaders look inside the package (monitor/rules), which in a checkout links to rules/.
    assert SHIPPED_RULES_DIR == ROOT / "monitor" / "rules"
    assert SHIPPED_RULES_DIR.resolve() == (ROOT / "rules").resolve()
    assert SHIPPED_INDICES_DIR == SHIPPED_RULES_DIR / "indices"


def test_the_wheel_carries_every_shipped_rule_file(wheel_names: set[str]) -> None:
    expected = {f"monitor/rules/{p.relative_to(ROOT / 'rules').as_posix()}"
                for p in [*_files(ROOT / "rules", "*.yaml"), ROOT / "rules" / "README.md"]}
    assert expected - wheel_names == set()
    assert any(name.startswith("monitor/rules/indices/") for name in expected)


def test_the_wheel_carries_migrations_templates_and_catalog(wheel_names: set[str]) -> None:
    sources = [*_files(ROOT / "monitor" / "storage" / "migrations" / "versions", "*.py"),
               *_files(ROOT / "monitor" / "alerts" / "templates", "*.j2"),
               *_files(ROOT / "monitor" / "reports" / "templates", "*.j2"),
               *_files(ROOT / "collectors" / "templates", "*.xlsx"),
               ROOT / "monitor" / "catalog.yaml"]
    expected = {p.relative_to(ROOT).as_posix() for p in sources}
    assert expected - wheel_names == set()
