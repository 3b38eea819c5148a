"""The KPI catalog: measures and the KPIs computed from them, read from YAML.

The shipped catalog is ``monitor/catalog.yaml``; a deployment may point
``catalog.file`` in ``monitor.yaml`` at its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.errors import ConfigError, Problem
from monitor.windows import Window
from monitor.yamlsource import load_yaml_file, load_yaml_text

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class Measure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["flow", "stock"]
    unit: str
    source_kind: str
    vi: str
    en: str


class Kpi(BaseModel):
    """A ratio ``Σ numerator / Σ denominator``, in ``[0, 1]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    vi: str
    en: str
    numerator: Annotated[tuple[Identifier, ...], Field(min_length=1)]
    denominator: Annotated[tuple[Identifier, ...], Field(min_length=1)]
    direction: Literal["up", "down"] = "up"
    window: str = "month"
    description: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        Window.parse(value)
        return value

    @property
    def measures(self) -> tuple[str, ...]:
        return self.numerator + tuple(m for m in self.denominator if m not in self.numerator)


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    measures: dict[Identifier, Measure]
    kpis: dict[Identifier, Kpi]


@dataclass(frozen=True)
class Catalog:
    measures: Mapping[str, Measure]
    kpis: Mapping[str, Kpi]

    def ratio_pairs(self) -> list[tuple[str, str]]:
        """(part, whole) measure pairs where the part can never exceed the whole."""
        pairs = []
        for kpi in self.kpis.values():
            if len(kpi.numerator) == 1 and len(kpi.denominator) == 1:
                pair = (kpi.numerator[0], kpi.denominator[0])
                if pair not in pairs:
                    pairs.append(pair)
        return pairs


def load_catalog(path: Path | None = None) -> Catalog:
    if path is None:
        text = resources.files("monitor").joinpath("catalog.yaml").read_text(encoding="utf-8")
        doc = load_yaml_text(text, "monitor/catalog.yaml")
    else:
        doc = load_yaml_file(path)
    try:
        parsed = _CatalogFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(doc.problems_from(exc)) from None
    problems = []
    for kpi_id, kpi in parsed.kpis.items():
        for measure in kpi.measures:
            if measure not in parsed.measures:
                problems.append(Problem(doc.file, doc.line_of(("kpis", kpi_id)), f"kpis.{kpi_id}",
                                        f"unknown measure {measure!r}"))
    if problems:
        raise ConfigError(problems)
    return Catalog(parsed.measures, parsed.kpis)
