"""Property: the rule and index loaders return, or raise ConfigError naming the
file — for any mutation of the shipped rule packs and index files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from monitor.catalog import Catalog, load_catalog
from monitor.scoring import load_indices
from monitor.simulators.province import ProvinceModel
from monitor.targets.loader import SHIPPED_RULES_DIR, RuleSet, load_rules
from monitor.units import UnitTree
from tests.fuzz.checks import fuzz, loads_or_config_error
from tests.fuzz.strategies import billion_laughs, mutated, mutated_bytes

RULE_FILES = sorted((SHIPPED_RULES_DIR / "national").glob("*.yaml")) + sorted(
    (SHIPPED_RULES_DIR / "provincial").glob("*.yaml"))
INDEX_FILES = sorted((SHIPPED_RULES_DIR / "indices").glob("*.yaml"))
RULES: dict[str, Any] = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in RULE_FILES}
INDICES: dict[str, Any] = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in INDEX_FILES}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def units() -> UnitTree:
    return ProvinceModel().unit_tree()


def write(folder: Path, content: bytes) -> Path:
    path = folder / "fuzzed.yaml"
    path.write_bytes(content)
    return path


def dump(data: Any) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8")


def test_the_seeds_load(tmp_path: Path, catalog: Catalog, units: UnitTree) -> None:
    assert len(RULES) >= 5 and len(INDICES) >= 2  # the shipped packs are what gets mutated
    for name, data in RULES.items():
        assert isinstance(load_rules([write(tmp_path, dump(data))], catalog, units), RuleSet), name
    for name, data in INDICES.items():
        assert load_indices([write(tmp_path, dump(data))], catalog, units, shipped=True), name


@fuzz(50)
@given(name=st.sampled_from(sorted(RULES)), data=st.data())
def test_mutated_rules_load_or_say_why(tmp_path: Path, catalog: Catalog, units: UnitTree, name: str,
                                       data: st.DataObject) -> None:
    document = data.draw(mutated(RULES[name]), label="document")
    path = write(tmp_path, dump(document))
    loads_or_config_error(lambda: load_rules([path], catalog, units))
    loads_or_config_error(lambda: load_rules([path], catalog, None))  # `rules check` without a config


@fuzz(40)
@given(name=st.sampled_from(sorted(INDICES)), shipped=st.booleans(), data=st.data())
def test_mutated_indices_load_or_say_why(tmp_path: Path, catalog: Catalog, units: UnitTree, name: str,
                                         shipped: bool, data: st.DataObject) -> None:
    document = data.draw(mutated(INDICES[name]), label="document")
    path = write(tmp_path, dump(document))
    loads_or_config_error(lambda: load_indices([path], catalog, units, shipped=shipped))
    loads_or_config_error(lambda: load_indices([path], catalog, None))


@fuzz(40)
@given(name=st.sampled_from(sorted(RULES) + sorted(INDICES)), data=st.data())
@example(name="ct02-2022.yaml", data=None)
def test_mutated_bytes_load_or_say_why(tmp_path: Path, catalog: Catalog, units: UnitTree, name: str,
                                       data: st.DataObject | None) -> None:
    original = next(p for p in RULE_FILES + INDEX_FILES if p.name == name).read_bytes()
    content = data.draw(mutated_bytes(original), label="content") if data is not None else (
        billion_laughs(30).encode())  # an alias bomb in place of a rule file
    path = write(tmp_path, content)
    loads_or_config_error(lambda: load_rules([path], catalog, units))
    loads_or_config_error(lambda: load_indices([path], catalog, units))
