"""The runner's own checks, applied to whatever any collector returns."""

import math
from datetime import UTC, datetime
from pathlib import Path

from collectors.base import CollectionResult, Observation
from monitor.catalog import load_catalog
from monitor.collection import CollectionRunner
from monitor.config import load_config
from monitor.metrics import ServiceMetrics
from monitor.storage import Store, create_engine_for
from monitor.timeutil import FrozenClock, Period, zone
from monitor.units import load_units
from tests.test_config import VALID, write

VN = zone("Asia/Ho_Chi_Minh")
DEPT, OLD_COMMUNE = "000.00.01.H99", "000.01.41.H99"
UNITS = """\
version: 1
units:
  - {code: 000.00.00.H99, name: "UBND tỉnh", level: province, group: tinh}
  - {code: 000.00.01.H99, name: "Sở Tư pháp", level: department, group: so_nganh, parent: 000.00.00.H99}
  - {code: 000.01.41.H99, name: "UBND xã cũ", level: commune, group: xa, parent: 000.00.00.H99,
     valid_to: 2025-06-30}
"""


def runner(tmp_path: Path) -> CollectionRunner:
    config = load_config(write(tmp_path, VALID, UNITS), {"QLVB_TOKEN": "t"})
    return CollectionRunner(config, Store(create_engine_for(f"sqlite:///{tmp_path}/v.db")), load_catalog(),
                            load_units(config.units.file), ServiceMetrics(),
                            FrozenClock(datetime(2026, 1, 1, tzinfo=UTC)))


def test_each_bad_observation_is_rejected_with_its_reason(tmp_path: Path) -> None:
    march, august_2025 = Period.of_month(2026, 3, VN), Period.of_month(2025, 8, VN)
    good = Observation("docs_outgoing_total", DEPT, march, 10)
    result = CollectionResult([
        good,
        Observation("docs_outgoing_total", "000.09.09.H99", march, 1),
        Observation("docs_ougoing_total", DEPT, march, 1),
        Observation("docs_incoming_total", DEPT, march, -4),
        Observation("docs_incoming_electronic", DEPT, march, math.nan),
        Observation("docs_outgoing_total", OLD_COMMUNE, august_2025, 5),  # after the commune ended
    ])
    kept, rejected = runner(tmp_path).validate(result, None)
    assert kept == [good]
    assert [r.reason for r in rejected] == ["unknown_unit", "unknown_measure", "negative", "not_a_number",
                                            "unit_not_valid"]
    assert "docs_ougoing_total" in rejected[1].detail and "-4" in rejected[2].detail
    assert "2025-08" in rejected[4].detail


def test_a_part_larger_than_its_whole_refuses_the_units_period(tmp_path: Path) -> None:
    march = Period.of_month(2026, 3, VN)
    result = CollectionResult([
        Observation("docs_outgoing_electronic", DEPT, march, 12),
        Observation("docs_outgoing_total", DEPT, march, 10),
        Observation("docs_incoming_total", DEPT, march, 50),
    ])
    kept, rejected = runner(tmp_path).validate(result, None)
    assert kept == []
    (problem,) = rejected
    assert problem.reason == "inconsistent"
    assert "docs_outgoing_electronic=12 exceeds docs_outgoing_total=10" in problem.detail


def test_periods_that_were_not_asked_for_are_rejected(tmp_path: Path) -> None:
    march, april = Period.of_month(2026, 3, VN), Period.of_month(2026, 4, VN)
    kept, rejected = runner(tmp_path).validate(
        CollectionResult([Observation("docs_outgoing_total", DEPT, april, 3)]), {march})
    assert kept == [] and rejected[0].reason == "unexpected_period"
