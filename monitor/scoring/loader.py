"""Load index files, checking them against the catalog and the unit tree.

Every problem is collected, not only the first, and each names the file, the
line and the field, with the fix where there is an obvious one. The loaded
indices have each component's ``direction`` filled in from the catalog, which
is all ``monitor.scoring.compute`` needs to know about KPIs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from monitor.catalog import Catalog
from monitor.errors import ConfigError, Problem, did_you_mean
from monitor.scoring.model import ScoringIndex, consistency_problems
from monitor.targets.loader import SHIPPED_RULES_DIR, expand_rule_paths
from monitor.units import UnitTree
from monitor.yamlsource import YamlDocument, format_loc, load_yaml_file

log = logging.getLogger(__name__)

# The index files shipped with the project (see SHIPPED_RULES_DIR).
SHIPPED_INDICES_DIR = SHIPPED_RULES_DIR / "indices"

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class _Loaded:
    index: ScoringIndex
    file: str
    line: int | None


def load_indices(paths: Iterable[Path], catalog: Catalog, units: UnitTree | None = None, *,
                 shipped: bool = False) -> tuple[ScoringIndex, ...]:
    """Read and check every index file (directories: the ``*.yaml`` files in
    them). ``units=None`` skips the group checks (no configuration at hand).

    ``shipped``: the project's own index files, written for a province with every
    kind of unit group. Groups this province's units file does not have are then
    left out (an index left with none is skipped) instead of refused: a province
    without districts since the 2025 reform must still start on the defaults.
    A group the operator wrote in their own index file stays an error."""
    problems: list[Problem] = []
    loaded: list[_Loaded] = []
    for path in expand_rule_paths(paths):
        try:
            doc = load_yaml_file(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        item = _index_of(doc, catalog, units, problems, shipped)
        if item is not None:
            loaded.append(item)
    first_by_id: dict[str, _Loaded] = {}
    for item in loaded:
        first = first_by_id.setdefault(item.index.id, item)
        if first is not item:
            problems.append(Problem(item.file, item.line, "id",
                                    f"index {item.index.id!r}: duplicate id, first defined at "
                                    f"{first.file}:{first.line}; index ids must be unique across all index files"))
    if problems:
        raise ConfigError(problems)
    return tuple(item.index for item in loaded)


def _index_of(doc: YamlDocument, catalog: Catalog, units: UnitTree | None,
              problems: list[Problem], shipped: bool) -> _Loaded | None:
    if not isinstance(doc.data, dict):
        problems.append(Problem(doc.file, 1, "", "expected a mapping with 'version: 1', 'id' and 'criteria:'"))
        return None
    try:
        index = ScoringIndex.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(doc.problems_from(exc))
        return None
    before = len(problems)
    for name, message in consistency_problems(index):
        problems.append(_problem(doc, name, message))
    index = _with_catalog(index, doc, catalog, problems)
    if units is not None and shipped:
        known = _known_groups(units)
        groups = tuple(g for g in index.units.groups if g in known)
        if index.units.groups and not groups:
            log.info("shipped index %s skipped: none of its unit groups (%s) is in the units file",
                     index.id, ", ".join(index.units.groups))
            return None
        index = index.model_copy(update={"units": index.units.model_copy(update={"groups": groups})})
    elif units is not None:
        _check_groups(index, doc, units, problems)
    if len(problems) > before:
        return None
    return _Loaded(index, doc.file, doc.line_of(("id",)))


def _problem(doc: YamlDocument, name: str, message: str) -> Problem:
    loc: Loc = tuple(int(p) if p.isdigit() else p for p in name.split("."))
    return Problem(doc.file, doc.line_of(loc), format_loc(loc), message)


def _with_catalog(index: ScoringIndex, doc: YamlDocument, catalog: Catalog,
                  problems: list[Problem]) -> ScoringIndex:
    """Check every component's KPI and fill in its direction from the catalog."""
    criteria = []
    for i, criterion in enumerate(index.criteria):
        components = []
        for j, component in enumerate(criterion.components):
            where = f"criteria.{i}.components.{j}"
            kpi = catalog.kpis.get(component.kpi)
            if kpi is None:
                problems.append(_problem(doc, f"{where}.kpi",
                                         f"unknown KPI {component.kpi!r}{did_you_mean(component.kpi, catalog.kpis)}; "
                                         "the KPIs are listed in the catalog (monitor/catalog.yaml)"))
                components.append(component)
                continue
            if component.direction is not None and component.direction != kpi.direction:
                problems.append(_problem(doc, f"{where}.direction",
                                         f"{component.kpi} is better when "
                                         f"{'higher' if kpi.direction == 'up' else 'lower'} in the catalog "
                                         f"(direction: {kpi.direction}); write that, or leave direction out"))
            if kpi.direction == "up" and component.full_at == 0:
                problems.append(_problem(doc, f"{where}.full_at",
                                         f"{component.kpi} is better when higher, so full_at 0 would give full "
                                         "points for nothing; write the value that earns full points, e.g. 0.8"))
            components.append(component.model_copy(update={"direction": kpi.direction}))
        criteria.append(criterion.model_copy(update={"components": tuple(components)}))
    return index.model_copy(update={"criteria": tuple(criteria)})


def _known_groups(units: UnitTree) -> set[str]:
    return set(units.group_names) | {u.group for u in units.versions}


def _check_groups(index: ScoringIndex, doc: YamlDocument, units: UnitTree, problems: list[Problem]) -> None:
    known = _known_groups(units)
    for i, group in enumerate(index.units.groups):
        if group not in known:
            problems.append(_problem(doc, f"units.groups.{i}",
                                     f"unknown group {group!r}{did_you_mean(group, known)} "
                                     f"(groups: {', '.join(sorted(known))})"))
