"""Organisational units: an effective-dated tree.

Every unit carries its electronic identifier code (QCVN 102:2016 format
``V1V2V3.Z1Z2.Y1Y2.MX1X2``), its Vietnamese name, level, ranking group, parent,
head and staff count, and is valid from ``valid_from`` to ``valid_to``
(inclusive, in the province's calendar). A code may have several versions with
non-overlapping validity (e.g. a new parent). Units that were merged or split
name their ``successors``, so history stays reportable across the 2025 reform
(district level abolished on 2025-07-01, communes merged).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.errors import ConfigError, Problem
from monitor.yamlsource import load_yaml_file

QCVN102_CODE = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")
FAR_PAST = date(1900, 1, 1)
FAR_FUTURE = date(9999, 12, 31)


class Level(StrEnum):
    national = "national"
    ministry = "ministry"
    province = "province"
    department = "department"
    agency = "agency"
    district = "district"
    commune = "commune"
    ward = "ward"
    special_zone = "special_zone"


class Head(BaseModel):
    # A pattern rather than EmailStr: enough to catch typos, no extra package.
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    title: str | None = None


class Unit(BaseModel):
    """One version of an organisational unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    name: Annotated[str, Field(min_length=1)]
    name_en: str | None = None
    level: Level
    group: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    parent: str | None = None
    head: Head | None = None
    staff_count: Annotated[int, Field(ge=0)] = 0
    valid_from: date | None = None
    valid_to: date | None = None
    successors: tuple[str, ...] = ()

    @field_validator("code", "parent")
    @classmethod
    def _qcvn102(cls, value: str | None) -> str | None:
        if value is not None and not QCVN102_CODE.match(value):
            raise ValueError(
                f"not a QCVN 102 identifier code (V1V2V3.Z1Z2.Y1Y2.MX1X2, e.g. 000.00.31.H12), got: {value!r}"
            )
        return value

    @field_validator("successors")
    @classmethod
    def _successor_codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            cls._qcvn102(code)
        return value

    @property
    def start(self) -> date:
        return self.valid_from or FAR_PAST

    @property
    def end(self) -> date:
        return self.valid_to or FAR_FUTURE

    def valid_on(self, day: date) -> bool:
        return self.start <= day <= self.end

    def overlaps(self, start: date, end: date) -> bool:
        """Valid on some day of ``[start, end]`` (inclusive)."""
        return self.start <= end and start <= self.end


class _UnitsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = 1
    groups: dict[str, dict[str, str]] = Field(default_factory=dict)
    units: list[dict[str, Any]]


@dataclass(frozen=True)
class UnitTree:
    """All versions of all units, with queries by day."""

    versions: tuple[Unit, ...]
    group_names: Mapping[str, Mapping[str, str]]

    @cached_property
    def _by_code(self) -> dict[str, list[Unit]]:
        table: dict[str, list[Unit]] = defaultdict(list)
        for unit in self.versions:
            table[unit.code].append(unit)
        for versions in table.values():
            versions.sort(key=lambda u: u.start)
        return dict(table)

    @cached_property
    def _predecessors(self) -> dict[str, tuple[str, ...]]:
        table: dict[str, list[str]] = defaultdict(list)
        for unit in self.versions:
            for successor in unit.successors:
                if unit.code not in table[successor]:
                    table[successor].append(unit.code)
        return {k: tuple(v) for k, v in table.items()}

    @property
    def codes(self) -> list[str]:
        return list(self._by_code)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def get(self, code: str, day: date | None = None) -> Unit | None:
        """The version valid on ``day``; without a day, the latest version."""
        versions = self._by_code.get(code)
        if not versions:
            return None
        if day is None:
            return versions[-1]
        return next((u for u in versions if u.valid_on(day)), None)

    def versions_of(self, code: str) -> list[Unit]:
        return self._by_code.get(code, [])

    def valid_on(self, day: date) -> list[Unit]:
        return [u for u in self.versions if u.valid_on(day)]

    def children(self, code: str, day: date) -> list[Unit]:
        return [u for u in self.valid_on(day) if u.parent == code]

    def ancestors(self, code: str, day: date) -> tuple[str, ...]:
        """Parent, grandparent, … of ``code`` as the tree stood on ``day``."""
        return self.ancestor_table(day).get(code, ())

    @cached_property
    def _ancestor_tables(self) -> dict[date, dict[str, tuple[str, ...]]]:
        return {}

    def ancestor_table(self, day: date) -> dict[str, tuple[str, ...]]:
        """Unit → its ancestors, as the tree stood on ``day`` (cached per day: the
        tree changes rarely, roll-ups ask for the same few days many times)."""
        table = self._ancestor_tables.get(day)
        if table is None:
            table = self._ancestor_tables[day] = self._build_ancestor_table(day)
        return table

    def _build_ancestor_table(self, day: date) -> dict[str, tuple[str, ...]]:
        parents = {u.code: u.parent for u in self.valid_on(day)}
        table: dict[str, tuple[str, ...]] = {}
        for code in parents:
            chain: list[str] = []
            current = parents.get(code)
            while current is not None and current in parents and current not in chain:
                chain.append(current)
                current = parents.get(current)
            table[code] = tuple(chain)
        return table

    def subtree(self, code: str, day: date) -> list[str]:
        """``code`` and every unit below it on ``day``."""
        table = self.ancestor_table(day)
        return [c for c, chain in table.items() if c == code or code in chain]

    def predecessors(self, code: str) -> tuple[str, ...]:
        """Units that were merged into (or split into) ``code``."""
        return self._predecessors.get(code, ())

    def display_group(self, group: str, language: str = "vi") -> str:
        return self.group_names.get(group, {}).get(language, group)


# --------------------------------------------------------------------------- loading

def load_units(path: Path) -> UnitTree:
    """Read units from YAML (``version``, ``groups``, ``units``) or CSV."""
    if path.suffix.lower() == ".csv":
        return _load_csv(path)
    doc = load_yaml_file(path)
    try:
        parsed = _UnitsFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(doc.problems_from(exc)) from None
    units, problems = [], []
    for index, raw in enumerate(parsed.units):
        try:
            units.append(Unit.model_validate(raw))
        except ValidationError as exc:
            problems.extend(doc.problems_from(exc, ("units", index)))
    if problems:
        raise ConfigError(problems)
    lines = {u.code: doc.line_of(("units", i)) for i, u in enumerate(units)}
    return build_tree(units, parsed.groups, str(path), lines)


CSV_COLUMNS = ("code", "name", "name_en", "level", "group", "parent", "head_name", "head_email",
               "head_title", "staff_count", "valid_from", "valid_to", "successors")


def _load_csv(path: Path) -> UnitTree:
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    missing = {"code", "name", "level", "group"} - set(reader.fieldnames or ())
    if missing:
        raise ConfigError.single(str(path), f"missing columns: {', '.join(sorted(missing))} "
                                            f"(expected {', '.join(CSV_COLUMNS)})", line=1)
    units, problems, lines = [], [], {}
    for row_number, row in enumerate(reader, start=2):
        raw: dict[str, Any] = {k: v for k, v in row.items() if k in CSV_COLUMNS and v not in (None, "")}
        if "head_name" in raw or "head_email" in raw:
            raw["head"] = {"name": raw.pop("head_name", ""), "email": raw.pop("head_email", "")}
            if "head_title" in raw:
                raw["head"]["title"] = raw.pop("head_title")
        raw.pop("head_title", None)
        if "successors" in raw:
            raw["successors"] = [s.strip() for s in raw["successors"].split(";") if s.strip()]
        try:
            unit = Unit.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                problems.append(Problem(str(path), row_number, field, err["msg"]))
            continue
        units.append(unit)
        lines[unit.code] = row_number
    if problems:
        raise ConfigError(problems)
    return build_tree(units, {}, str(path), lines)


def build_tree(units: Iterable[Unit], groups: Mapping[str, Mapping[str, str]], file: str,
               lines: Mapping[str, int | None] | None = None) -> UnitTree:
    """Check the tree as a whole (parents, overlaps, successors, cycles) and build it."""
    units = list(units)
    lines = lines or {}
    problems: list[Problem] = []
    by_code: dict[str, list[Unit]] = defaultdict(list)
    for unit in units:
        by_code[unit.code].append(unit)

    def problem(unit: Unit, field: str, message: str) -> None:
        problems.append(Problem(file, lines.get(unit.code), f"unit {unit.code}: {field}", message))

    for code, versions in by_code.items():
        versions.sort(key=lambda u: u.start)
        for earlier, later in itertools.pairwise(versions):
            if later.start <= earlier.end:
                problem(later, "valid_from", f"overlaps another version of {code} valid to {earlier.end}")
    for unit in units:
        if unit.valid_to and unit.valid_from and unit.valid_to < unit.valid_from:
            problem(unit, "valid_to", f"{unit.valid_to} is before valid_from {unit.valid_from}")
        if unit.parent is not None:
            parents = by_code.get(unit.parent)
            if not parents:
                problem(unit, "parent", f"unknown unit {unit.parent!r}")
            elif not any(p.overlaps(unit.start, unit.end) for p in parents):
                problem(unit, "parent", f"{unit.parent} is not valid while this unit is")
            elif unit.parent == unit.code:
                problem(unit, "parent", "a unit cannot be its own parent")
        for successor in unit.successors:
            if successor not in by_code:
                problem(unit, "successors", f"unknown unit {successor!r}")
            elif unit.valid_to is None:
                problem(unit, "valid_to", "a unit with successors must end (set valid_to)")
    if not problems:
        tree = UnitTree(tuple(units), {k: dict(v) for k, v in groups.items()})
        for unit in units:
            if unit.code in tree.ancestors(unit.code, unit.start):
                problem(unit, "parent", "the parent chain loops back to this unit")
        if not problems:
            return tree
    raise ConfigError(problems)
