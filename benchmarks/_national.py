"""A synthetic national dataset in the shape the service stores, fast to generate.

The simulators (monitor/simulators/province.py) model one province in detail, per
day; generating 34 of them would take longer than the benchmarks themselves. This
generator keeps their shape and none of their detail:

- the unit tree: a national root, ``provinces`` provinces (``000.00.00.Hpp``, level
  province), each with ``units_per_province`` units in all: 24 departments
  (``so_nganh``) with 3 agencies each, and communes and wards (``xa``) directly
  under the province, as after the 2025 reform;
- every catalog measure (monitor/catalog.yaml) for every unit and calendar month
  (periods are local months, Asia/Ho_Chi_Minh, stored in UTC), from one source
  per measure kind, with deterministic values in which every numerator measure is
  a share of its unit's volume, so the KPIs land between 0 and 1.
"""

from __future__ import annotations

import atexit
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from collectors.base import Observation
from monitor.catalog import Catalog, load_catalog
from monitor.timeutil import Period, add_months, zone
from monitor.units import Level, Unit, UnitTree, build_tree

TZ = zone("Asia/Ho_Chi_Minh")
DEPARTMENTS = 24
AGENCIES_PER_DEPARTMENT = 3
COLLECTED_AT = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)
# The sources a service would have, one per measure kind (as in the demo's configuration).
SOURCE_OF_KIND = {"document_management": "qlvb", "email_directory": "email", "registry": "registry",
                  "one_stop": "motcua", "dvc_dossiers": "dvc"}
GROUPS = {"quoc_gia": {"vi": "Quốc gia", "en": "Nation"}, "tinh": {"vi": "Tỉnh", "en": "Province"},
          "so_nganh": {"vi": "Sở, ban, ngành", "en": "Departments"},
          "don_vi_truc_thuoc": {"vi": "Đơn vị trực thuộc sở, ngành", "en": "Subordinate agencies"},
          "xa": {"vi": "UBND cấp xã", "en": "Communes and wards"}}
ROOT = "000.00.00.A00"


@dataclass(frozen=True)
class Scale:
    provinces: int
    units_per_province: int
    months: int  # calendar months of history, the last one being ``last_month``
    last_month: date = date(2026, 6, 1)

    @property
    def units(self) -> int:
        return 1 + self.provinces * self.units_per_province

    def describe(self, measures: int) -> str:
        first = add_months(self.last_month, 1 - self.months)
        return (f"{self.provinces} provinces × {self.units_per_province} units "
                f"(+1 national root = {self.units} units), {measures} measures, "
                f"monthly × {self.months} months ({first:%Y-%m}…{self.last_month:%Y-%m})")


def unit_code(province: int, index: int) -> str:
    """``index`` 0 is the province itself; QCVN 102 shape, unique nationally."""
    return f"{index:03d}.00.00.H{province:02d}"


def national_tree(scale: Scale) -> UnitTree:
    units = [Unit(code=ROOT, name="Quốc gia", level=Level.national, group="quoc_gia")]
    for p in range(1, scale.provinces + 1):
        province = unit_code(p, 0)
        units.append(Unit(code=province, name=f"UBND tỉnh số {p}", level=Level.province, group="tinh", parent=ROOT))
        for i in range(1, scale.units_per_province):
            department = (i - 1) // (AGENCIES_PER_DEPARTMENT + 1)
            if department < DEPARTMENTS and (i - 1) % (AGENCIES_PER_DEPARTMENT + 1) == 0:
                units.append(Unit(code=unit_code(p, i), name=f"Sở số {department + 1}", level=Level.department,
                                  group="so_nganh", parent=province))
            elif department < DEPARTMENTS:
                parent = unit_code(p, 1 + department * (AGENCIES_PER_DEPARTMENT + 1))
                units.append(Unit(code=unit_code(p, i), name=f"Chi cục số {i}", level=Level.agency,
                                  group="don_vi_truc_thuoc", parent=parent))
            else:
                level = Level.ward if i % 4 == 0 else Level.commune
                units.append(Unit(code=unit_code(p, i), name=f"Xã số {i}", level=level, group="xa", parent=province))
    return build_tree(units, GROUPS, "synthetic national tree")


def month_periods(scale: Scale) -> list[Period]:
    first = add_months(scale.last_month, 1 - scale.months)
    return [Period.of_month(m.year, m.month, TZ) for m in (add_months(first, k) for k in range(scale.months))]


def _shares(catalog: Catalog) -> dict[str, float]:
    """Per measure, the share of a unit's volume it holds: denominators of some KPI
    hold all of it, measures only ever in numerators a share below one."""
    denominators = {m for kpi in catalog.kpis.values() for m in kpi.denominator}
    return {m: 1.0 if m in denominators else 0.0 for m in catalog.measures}


def _unit_codes(scale: Scale) -> list[str]:
    return [ROOT] + [unit_code(p, i) for p in range(1, scale.provinces + 1) for i in range(scale.units_per_province)]


def _measures(catalog: Catalog, only: Collection[str] | None = None) -> list[tuple[str, str, bool, int]]:
    """(measure, its source, whether it holds the unit's whole volume, its index)."""
    full_share = _shares(catalog)
    return [(m, SOURCE_OF_KIND.get(spec.source_kind, spec.source_kind), full_share[m] == 1.0, n)
            for n, (m, spec) in enumerate(catalog.measures.items()) if only is None or m in only]


def _value(volume: int, rate: float, drift: float, full: bool, n: int, k: int) -> float:
    """The deterministic value of measure ``n`` in month ``k`` for a unit of ``volume``."""
    if full:
        return float(volume)
    share = min(1.0, max(0.0, rate + drift * k))
    return float(min(volume, int(volume * share * (0.9 + 0.02 * ((n + k) % 6)))))


def _unit_basis(u: int) -> tuple[int, float, float]:
    rng = random.Random(u)
    return rng.randint(20, 600), rng.uniform(0.3, 0.95), rng.uniform(-0.01, 0.02)


def observations(scale: Scale, catalog: Catalog, periods: Sequence[Period] | None = None
                 ) -> Iterator[tuple[str, Observation]]:
    """(source, observation) for every unit, measure and month, deterministic."""
    measures = _measures(catalog)
    chosen = list(periods or month_periods(scale))
    first = month_periods(scale).index(chosen[0])
    for u, code in enumerate(_unit_codes(scale)):
        volume, rate, drift = _unit_basis(u)
        for k, period in enumerate(chosen, start=first):
            for measure, source, full, n in measures:
                yield source, Observation(measure, code, period, _value(volume, rate, drift, full, n, k),
                                          f"synthetic:{u}:{k}")


def sqlite_rows(scale: Scale, catalog: Catalog, collected_at: datetime,
                measures: Collection[str] | None = None) -> Iterator[tuple[object, ...]]:
    """The same observations as :func:`observations`, as SQLite rows, measure by measure
    and unit by unit (the order of the unique key, so building the index stays cheap)."""
    at = sqlite_text(collected_at)
    periods = [(k, sqlite_text(p.start), sqlite_text(p.end)) for k, p in enumerate(month_periods(scale))]
    bases = [(u, code, *_unit_basis(u)) for u, code in enumerate(_unit_codes(scale))]
    for measure, source, full, n in _measures(catalog, measures):
        for u, code, volume, rate, drift in bases:
            for k, start, end in periods:
                yield (measure, code, start, end, source, _value(volume, rate, drift, full, n, k), at,
                       f"synthetic:{u}:{k}")


def sqlite_text(moment: datetime) -> str:
    """How SQLAlchemy stores a UTC datetime in SQLite (naive, with microseconds)."""
    return moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def row_tuple(source: str, o: Observation, collected_at: datetime) -> tuple[object, ...]:
    return (o.measure, o.unit, sqlite_text(o.period.start), sqlite_text(o.period.end), source, float(o.value),
            sqlite_text(collected_at), o.raw_ref)


INSERT_SQL = ("INSERT INTO observations (measure, unit, period_start, period_end, source, value, collected_at, raw_ref)"
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def new_schema_sqlite(path: Path) -> str:
    """A fresh database file with the service's schema (the Alembic migrations); its URL."""
    from monitor.storage.db import create_engine_for, upgrade_database

    url = f"sqlite:///{path}"
    engine = create_engine_for(url)
    upgrade_database(engine)
    engine.dispose()
    return url


_BUILT: dict[tuple[Scale, tuple[str, ...]], Path] = {}


def national_sqlite(scale: Scale, measures: Collection[str]) -> Path:
    """The national dataset of ``measures`` in a SQLite file with the service's schema,
    built once per process (the evaluation and memory suites share it), removed at exit."""
    key = (scale, tuple(sorted(measures)))
    if key in _BUILT:
        return _BUILT[key]
    folder = Path(tempfile.mkdtemp(prefix="egovmon-bench-national-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "national.db"
    new_schema_sqlite(path)
    catalog = load_catalog()
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-1000000")  # 1 GB: the index pages stay in memory
        connection.executemany(INSERT_SQL, sqlite_rows(scale, catalog, COLLECTED_AT, measures))
        connection.commit()
        connection.execute("ANALYZE")
    finally:
        connection.close()
    _BUILT[key] = path
    return path
