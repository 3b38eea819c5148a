"""Load rule files into a RuleSet, checking them against the catalog and the units.

Every problem is collected, not just the first, and each names the file, the
line, the field and the rule id, with the fix where there is an obvious one —
so one ``egovmon rules check`` tells the operator everything to correct.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from monitor.catalog import Catalog
from monitor.errors import ConfigError, Problem, did_you_mean
from monitor.targets.model import RuleFile, TargetRule, consistency_problems
from monitor.units import UnitTree
from monitor.yamlsource import YamlDocument, format_loc, load_yaml_file

# The rule packs shipped with the project. In a source checkout ``monitor/rules`` is a
# link to the top-level ``rules/`` (where people read and edit them); a wheel carries
# a copy as package data, so an installed service finds them too.
SHIPPED_RULES_DIR = Path(__file__).resolve().parents[1] / "rules"


@dataclass(frozen=True)
class LoadedRule:
    rule: TargetRule
    file: str
    line: int | None
    pack: str | None
    index: int = 0  # position in its file's rules list


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[LoadedRule, ...] = ()
    files: tuple[str, ...] = ()
    by_id: Mapping[str, LoadedRule] = field(default_factory=dict)

    def __iter__(self) -> Iterator[TargetRule]:
        return (loaded.rule for loaded in self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, rule_id: str) -> TargetRule | None:
        loaded = self.by_id.get(rule_id)
        return loaded.rule if loaded else None


def expand_rule_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given; directories become the ``*.yaml``/``*.yml`` files directly in them."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            out.append(path)
    return out


def load_rules(paths: Iterable[Path], catalog: Catalog, units: UnitTree | None) -> RuleSet:
    """Read and check every rule file. ``units=None`` skips the unit-code checks
    (``rules check`` without a configuration)."""
    files = expand_rule_paths(paths)
    problems: list[Problem] = []
    loaded: list[LoadedRule] = []
    for path in files:
        try:
            doc = load_yaml_file(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        loaded.extend(_rules_of(doc, catalog, units, problems))
    by_id: dict[str, LoadedRule] = {}
    for item in loaded:
        first = by_id.get(item.rule.id)
        if first is not None:
            problems.append(Problem(item.file, item.line, f"rules[{item.index}].id",
                                    f"rule {item.rule.id!r}: duplicate id, first defined at {first.file}:{first.line}; "
                                    "rule ids must be unique across all rule files"))
            continue
        by_id[item.rule.id] = item
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
    return RuleSet(tuple(by_id.values()), tuple(str(p) for p in files), by_id)


def _rules_of(doc: YamlDocument, catalog: Catalog, units: UnitTree | None,
              problems: list[Problem]) -> list[LoadedRule]:
    if not isinstance(doc.data, dict):
        problems.append(Problem(doc.file, 1, "", "expected a mapping with 'version: 1' and 'rules:'"))
        return []
    try:
        parsed = RuleFile.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(doc.problems_from(exc))
        return []
    out = []
    for index, raw in enumerate(parsed.rules):
        loc: tuple[str | int, ...] = ("rules", index)
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        label = f"rule {rule_id!r}: " if isinstance(rule_id, str) else f"rule #{index + 1}: "
        merged = {**parsed.defaults, **raw}
        try:
            rule = TargetRule.model_validate(merged)
        except ValidationError as exc:
            for problem in doc.problems_from(exc, loc):
                problems.append(Problem(problem.file, problem.line, problem.field, label + problem.message))
            continue
        before = len(problems)
        for name, message in consistency_problems(rule):
            problems.append(_problem(doc, loc, name, label + message))
        _check_against_catalog(rule, doc, loc, catalog, problems, label)
        if units is not None:
            _check_against_units(rule, doc, loc, units, problems, label)
        if len(problems) == before:
            out.append(LoadedRule(rule, doc.file, doc.line_of(loc), parsed.pack, index))
    return out


def _problem(doc: YamlDocument, loc: tuple[str | int, ...], name: str, message: str) -> Problem:
    parts: tuple[str | int, ...] = tuple(int(p) if p.isdigit() else p for p in name.split("."))
    full = (*loc, *parts)
    return Problem(doc.file, doc.line_of(full), format_loc(full), message)


def _check_against_catalog(rule: TargetRule, doc: YamlDocument, loc: tuple[str | int, ...], catalog: Catalog,
                           problems: list[Problem], label: str) -> None:
    if rule.kpi not in catalog.kpis:
        hint = did_you_mean(rule.kpi, catalog.kpis)
        problems.append(_problem(doc, loc, "kpi", f"{label}unknown KPI {rule.kpi!r}{hint}; "
                                 "the KPIs are listed in the catalog (monitor/catalog.yaml)"))
        return
    kpi = catalog.kpis[rule.kpi]
    comparator = rule.comparator or (">=" if kpi.direction == "up" else "<=")
    if (comparator, kpi.direction) in ((">=", "down"), ("<=", "up")):
        problems.append(_problem(doc, loc, "comparator",
                                 f"{label}{rule.kpi} is better when {'higher' if kpi.direction == 'up' else 'lower'}, "
                                 f"so a target {comparator} {rule.target:g} points the wrong way; "
                                 f"write comparator: {'>=' if kpi.direction == 'up' else '<='} (or leave it out)"))


def _check_against_units(rule: TargetRule, doc: YamlDocument, loc: tuple[str | int, ...], units: UnitTree,
                         problems: list[Problem], label: str) -> None:
    known_groups = set(units.group_names) | {u.group for u in units.versions}
    for i, code in enumerate(rule.units.codes):
        if code not in units:
            problems.append(_problem(doc, loc, f"units.codes.{i}",
                                     f"{label}unknown unit code {code!r}{did_you_mean(code, units.codes)}; "
                                     "it must be in the units file"))
    for i, code in enumerate(rule.units.exclude):
        if code not in units:
            problems.append(_problem(doc, loc, f"units.exclude.{i}", f"{label}unknown unit code {code!r}"))
    for i, group in enumerate(rule.units.groups):
        if group not in known_groups:
            problems.append(_problem(doc, loc, f"units.groups.{i}",
                                     f"{label}unknown group {group!r}{did_you_mean(group, known_groups)} "
                                     f"(groups: {', '.join(sorted(known_groups))})"))


def configured_rule_paths(shipped: Iterable[str], files: Iterable[Path]) -> list[Path]:
    """The shipped packs named in the config, then the deployment's own files."""
    paths = []
    for name in shipped:
        folder = SHIPPED_RULES_DIR / name
        if not folder.is_dir():
            available = sorted(p.name for p in SHIPPED_RULES_DIR.iterdir()
                               if p.is_dir() and p.name not in ("tests", "indices")) \
                if SHIPPED_RULES_DIR.is_dir() else []
            raise ConfigError.single("rules.shipped", f"no shipped rule pack {name!r} in {SHIPPED_RULES_DIR} "
                                     f"(available: {', '.join(available) or 'none'})")
        paths.append(folder)
    paths.extend(files)
    return paths
