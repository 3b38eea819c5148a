"""DvcDossiersCollector over a real HTTP source on 127.0.0.1 serving generated dossiers.

Every number is recomputed in ``dvc_dossiers_fixtures.expected`` from the
generated dossiers with plain Python, never by the collector's code.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from collectors import CollectionResult, MalformedPayload, SourceSettings
from collectors.dvc_dossiers import DvcDossiersCollector, DvcDossiersOptions
from monitor.config import load_config
from monitor.service import MonitorService
from monitor.timeutil import FrozenClock, Period, iter_periods, local_midnight
from monitor.windows import Window
from tests.collectors.conftest import SECRET, Harness
from tests.collectors.dvc_dossiers_fixtures import (
    ALL_MEASURES,
    PATH,
    UNITS,
    VN,
    DossierSource,
    Truth,
    expected,
    generate,
    shuffled_records,
    spell,
    wire,
)

NOW = datetime(2026, 4, 20, 3, 0, tzinfo=UTC)  # 10:00 on 20 April in Hanoi
START = local_midnight(date(2025, 12, 1), VN)
MONTHS = list(iter_periods(local_midnight(date(2026, 1, 1), VN), NOW, "month", VN))  # Jan..Apr
DAYS = list(iter_periods(local_midnight(date(2026, 4, 1), VN), NOW, "day", VN))  # 1..20 April
Table = dict[tuple[str, Period], dict[str, float]]


def collector(harness: Harness, grain: str = "month", **options: Any) -> DvcDossiersCollector:
    settings = SourceSettings(id="dvc", kind="dvc_dossiers", url=harness.server.url, grain=grain,  # type: ignore[arg-type]
                              options={"page_size": 37, **options})
    return DvcDossiersCollector(settings, harness.http(), VN, FrozenClock(NOW))


async def collect(harness: Harness, records: list[dict[str, Any]], periods: list[Period] = MONTHS,
                  units: set[str] | None = None, **options: Any) -> tuple[CollectionResult, DossierSource]:
    source = DossierSource(records)
    harness.server.routes[PATH] = source.handle
    grain = "day" if periods is DAYS else "month"
    result = await collector(harness, grain, **options).collect(periods, units or set(UNITS))
    return result, source


def table(result: CollectionResult) -> Table:
    out: Table = {}
    for obs in result.observations:
        out.setdefault((obs.unit, obs.period), {})[obs.measure] = obs.value
    return out


def assert_matches(got: Table, want: dict[tuple[str, Period], dict[str, int]], measures: tuple[str, ...]) -> None:
    """Equal counts; every (unit, period) that is reported carries every measure, zeros included."""
    assert want, "the generated data should produce numbers"
    assert set(want) <= set(got), sorted(set(want) - set(got))
    for key, values in got.items():
        assert set(values) == set(measures), key
        assert values == {m: want.get(key, {}).get(m, 0) for m in measures}, key


def finals(dossiers: list[list[Truth]]) -> list[Truth]:
    return [versions[-1] for versions in dossiers]


@pytest.mark.parametrize(("periods", "first", "last"), [(MONTHS, "2026-01-01", "2026-04-30"),
                                                       (DAYS, "2026-04-01", "2026-04-20")], ids=["month", "day"])
async def test_every_measure_equals_a_count_over_the_dossiers(harness: Harness, periods: list[Period], first: str,
                                                              last: str) -> None:
    dossiers = generate(seed=7, count=600, start=START, now=NOW)
    records = shuffled_records(dossiers, seed=8)  # older versions sometimes after newer ones
    assert len(records) > len(dossiers), "some dossiers must come in several versions"
    result, source = await collect(harness, records, periods)
    assert result.rejections == []
    assert_matches(table(result), expected(finals(dossiers), periods, NOW), ALL_MEASURES)
    assert (source.queries[0]["from"], source.queries[0]["to"]) == (first, last)
    assert len(source.queries) == -(-len(records) // 37)  # every page read once
    assert all(obs.raw_ref and obs.raw_ref.startswith(f"GET {PATH}?from=") for obs in result.observations)


async def test_a_chunk_of_past_months_ignores_later_events(harness: Harness) -> None:
    """The runner asks in chunks; a source may send dossiers received or ended after the chunk."""
    dossiers = generate(seed=9, count=300, start=START, now=NOW)
    result, source = await collect(harness, shuffled_records(dossiers, seed=10), MONTHS[:2])
    assert (source.queries[0]["from"], source.queries[0]["to"]) == ("2026-01-01", "2026-02-28")
    assert {p for _, p in table(result)} == set(MONTHS[:2])
    assert_matches(table(result), expected(finals(dossiers), MONTHS[:2], NOW), ALL_MEASURES)


async def test_the_current_period_counts_stocks_at_now_not_at_its_end(harness: Harness) -> None:
    """Due on 25 April, still open on the 20th: in progress, not (yet) overdue."""
    received = local_midnight(date(2026, 4, 2), VN)
    open_one = Truth("H99.A", UNITS[0], 4, 2, received, received, received + timedelta(days=23), None)
    late_one = Truth("H99.B", UNITS[0], 5, 1, received, received, received + timedelta(days=3), None)
    result, _ = await collect(harness, [wire(open_one), wire(late_one)])
    april = table(result)[(UNITS[0], MONTHS[-1])]
    assert (april["dossiers_in_progress"], april["dossiers_overdue"]) == (2, 1)


async def test_edges_follow_half_open_local_periods(harness: Harness) -> None:
    """Finished exactly at the due time is on time; local midnight of 1 March belongs to
    March, whatever UTC says (it is 17:00 on 28 February there); the open dossier due
    exactly at the end of February is not yet overdue then."""
    march = local_midnight(date(2026, 3, 1), VN)
    received = march - timedelta(days=3)
    on_due = Truth("H99.E", UNITS[0], 10, 2, march, received, march, march, formats=("utc",) * 4)
    due_at_end = Truth("H99.F", UNITS[0], 2, 2, received, received, march, None, formats=("naive",) * 4)
    result, _ = await collect(harness, [wire(on_due), wire(due_at_end)])
    got = table(result)
    february, in_march = got[(UNITS[0], MONTHS[1])], got[(UNITS[0], MONTHS[2])]
    assert (february["dossiers_received_total"], february["dossiers_resolved_total"]) == (2, 0)
    assert (in_march["dossiers_resolved_total"], in_march["dossiers_resolved_ontime"]) == (1, 1)
    assert (february["dossiers_in_progress"], february["dossiers_overdue"]) == (2, 0)
    assert (in_march["dossiers_in_progress"], in_march["dossiers_overdue"]) == (1, 1)


async def test_units_get_zeros_only_while_they_had_dossiers(harness: Harness) -> None:
    """A commune whose last dossier ended in January is not reported from February on."""
    jan = local_midnight(date(2026, 1, 10), VN)
    feb = local_midnight(date(2026, 2, 10), VN)
    ended = Truth("H99.C", UNITS[2], 9, 1, jan, jan, jan + timedelta(days=9), jan + timedelta(days=5))
    still_open = Truth("H99.D", UNITS[1], 4, 1, feb, feb, feb + timedelta(days=5), None)
    result, _ = await collect(harness, [wire(ended), wire(still_open)])
    got = table(result)
    assert {p.label(VN) for u, p in got if u == UNITS[2]} == {"2026-01"}
    assert {p.label(VN) for u, p in got if u == UNITS[1]} == {"2026-02", "2026-03", "2026-04"}
    assert got[(UNITS[1], MONTHS[3])]["dossiers_overdue"] == 1
    assert got[(UNITS[1], MONTHS[3])]["dossiers_received_total"] == 0
    # Asked for January only, neither the February dossier's unit nor a later one is reported.
    later = Truth("H99.G", UNITS[0], 4, 1, feb, feb + timedelta(days=30), feb + timedelta(days=40), None)
    result, _ = await collect(harness, [wire(ended), wire(still_open), wire(later)], MONTHS[:1])
    assert {u for u, _ in table(result)} == {UNITS[2]}


async def test_bad_records_are_rejected_with_reasons_and_the_rest_counted(harness: Harness) -> None:
    dossiers = generate(seed=11, count=200, start=START, now=NOW)
    good = shuffled_records(dossiers, seed=12)
    at = local_midnight(date(2026, 3, 3), VN)
    base = Truth("H99.X", UNITS[0], 4, 1, at, at, at + timedelta(days=5), None)

    def bad(number: int, **fields: Any) -> dict[str, Any]:
        return {**wire(base), "MaHoSo": f"H99.BAD{number}", **fields}

    conflict = bad(9)
    wrong = [
        bad(1, TrangThaiHoSo=11),
        bad(2, KenhThucHien=4),
        bad(3, NgayHenTra=spell(at - timedelta(days=1), "iso")),
        bad(4, TrangThaiHoSo=9, NgayKetThucXuLy=spell(at - timedelta(hours=2), "compact")),
        bad(5, DonViXuLy=""),
        {k: v for k, v in bad(6).items() if k != "DonViXuLy"},
        bad(7, DonViXuLy="000.00.99.H99"),
        bad(8, NgayTiepNhan="14/03/2026"),
        conflict, {**conflict, "TrangThaiHoSo": 9, "NgayKetThucXuLy": spell(at, "iso")},
        bad(10, TrangThaiHoSo=10, NgayKetThucXuLy=None),
        dict(good[5]),  # an identical copy of a good record
    ]
    result, _ = await collect(harness, good + wrong)
    assert Counter(r.reason for r in result.rejections) == {
        "unknown_code": 2, "inconsistent": 2, "missing_unit": 2, "unknown_unit": 1, "schema": 1,
        "conflict": 2, "missing_date": 1, "duplicate": 1}
    details = {r.reason + ":" + r.detail for r in result.rejections}

    def has(*words: str) -> bool:
        return any(all(w in d for w in words) for d in details)

    assert has("unknown_code", "H99.BAD1", "TrangThaiHoSo = 11")
    assert has("unknown_code", "H99.BAD2", "KenhThucHien = 4", "2 online")
    assert has("inconsistent", "H99.BAD3", "NgayHenTra", "before NgayTiepNhan")
    assert has("inconsistent", "H99.BAD4", "NgayKetThucXuLy", "before NgayTiepNhan")
    assert has("missing_unit", "H99.BAD5", "DonViXuLy is ''", "unit_field")
    assert has("missing_unit", "H99.BAD6", "DonViXuLy is None")
    assert has("unknown_unit", "H99.BAD7", "000.00.99.H99")
    assert has("schema", "field NgayTiepNhan", "'14/03/2026'", "YYYYMMDDHHMMSS")
    assert has("conflict", "H99.BAD9", "NgayCapNhat")
    assert has("missing_date", "H99.BAD10", "NgayKetThucXuLy is missing")
    assert has("duplicate", good[5]["MaHoSo"], "identical copy")
    first_wrong = len(good)
    assert sorted(int(r.raw_ref.rsplit("#", 1)[1]) for r in result.rejections if r.raw_ref) == sorted(
        (first_wrong + i) % 37 for i in range(len(wrong)))
    assert all(SECRET not in r.detail for r in result.rejections)
    # The good dossiers all land, each once; nothing of the bad ones does.
    assert_matches(table(result), expected(finals(dossiers), MONTHS, NOW), ALL_MEASURES)


async def test_optional_measures_only_when_the_payload_carries_them(harness: Harness) -> None:
    dossiers = generate(seed=21, count=150, start=START, now=NOW)
    records = [{k: v for k, v in r.items()
                if k not in ("DanhSachLePhi", "DuocThanhToanTrucTuyen", "HoSoCoThanhPhanSoHoa")}
               for r in shuffled_records(dossiers, seed=22)]
    result, _ = await collect(harness, records)
    kept = tuple(m for m in ALL_MEASURES
                 if m not in ("dossiers_with_fee", "dossiers_paid_online", "dossiers_digitized"))
    want = {k: {m: n for m, n in v.items() if m in kept} for k, v in expected(finals(dossiers), MONTHS, NOW).items()}
    assert_matches(table(result), want, kept)


async def test_a_format_change_in_every_record_is_malformed(harness: Harness) -> None:
    records = [{k: v for k, v in r.items() if k != "TrangThaiHoSo"}
               for r in shuffled_records(generate(seed=3, count=20, start=START, now=NOW), seed=4)]
    with pytest.raises(MalformedPayload, match="TrangThaiHoSo") as caught:
        await collect(harness, records)
    assert "expected fields" in str(caught.value)


async def test_field_names_are_configurable(harness: Harness) -> None:
    dossiers = generate(seed=31, count=80, start=START, now=NOW)
    records = [{("MaDonVi" if k == "DonViXuLy" else "ThoiDiemCapNhat" if k == "NgayCapNhat" else k): v
                for k, v in r.items()} for r in shuffled_records(dossiers, seed=32)]
    result, source = await collect(harness, records, unit_field="MaDonVi", updated_field="ThoiDiemCapNhat",
                                   from_param="tuNgay", to_param="denNgay", records_key="data")
    assert result.rejections == []
    assert (source.queries[0]["tuNgay"], source.queries[0]["denNgay"]) == ("2026-01-01", "2026-04-30")
    assert_matches(table(result), expected(finals(dossiers), MONTHS, NOW), ALL_MEASURES)


def test_options_refuse_typos_and_explain() -> None:
    with pytest.raises(ValidationError, match="page_sise"):
        DvcDossiersOptions.model_validate({"page_sise": 100})
    with pytest.raises(ValidationError, match=r"path must start with '/'.*write '/api/ho-so'"):
        DvcDossiersOptions.model_validate({"path": "api/ho-so"})


# ----------------------------------------------------------------------------- end to end

UNITS_FILE = """\
version: 1
units:
  - {code: 000.00.00.H99, name: "UBND tỉnh Sơn Hà", level: province, group: tinh}
  - {code: 000.00.01.H99, name: "Sở Xây dựng", level: department, group: so_nganh, parent: 000.00.00.H99}
  - {code: 000.00.02.H99, name: "Sở Tư pháp", level: department, group: so_nganh, parent: 000.00.00.H99}
  - {code: 000.01.02.H99, name: "Phường Đông Sơn", level: ward, group: xa, parent: 000.00.00.H99}
"""


def write_monitor(tmp_path: Path, url: str) -> Path:
    (tmp_path / "units.yaml").write_text(UNITS_FILE, encoding="utf-8")
    config = {
        "version": 1, "province": {"name": "Tỉnh Sơn Hà", "code": "000.00.00.H99"},
        "database": {"url": "sqlite:///egovmon.db"}, "http": {"listen": "127.0.0.1:0"},
        "units": {"file": "units.yaml"}, "alerts": {"enabled": False},
        "sources": [{"id": "dvc-tinh", "kind": "dvc_dossiers", "url": url, "retries": 1, "timeout": "5s",
                     "backfill_from": "2026-01-01", "options": {"page_size": 50}}],
    }
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def hand_rates(finals: list[Truth], first: datetime, units: set[str]) -> dict[str, tuple[int, int]]:
    """``dossier_ontime_rate`` and ``online_dossier_rate`` from ``first`` to NOW, by hand."""
    received = [t for t in finals if t.unit in units and t.status not in (1, 3)
                and t.received is not None and first <= t.received < NOW]
    resolved = [t for t in finals if t.unit in units and t.status in (9, 10)
                and t.finished is not None and first <= t.finished < NOW]
    return {"online_dossier_rate": (sum(t.channel == 2 for t in received), len(received)),
            "dossier_ontime_rate": (sum(t.due is not None and t.finished is not None and t.finished <= t.due
                                        for t in resolved), len(resolved))}


async def test_config_to_stored_kpis_for_a_unit_and_the_province(harness: Harness, tmp_path: Path) -> None:
    dossiers = generate(seed=41, count=500, start=START, now=NOW)
    source = DossierSource(shuffled_records(dossiers, seed=42))
    harness.server.routes[PATH] = source.handle
    config = load_config(write_monitor(tmp_path, harness.server.url))
    service = MonitorService(config, clock=FrozenClock(NOW))
    service.prepare()
    try:
        dry = await service.runner.collect("dvc-tinh", dry_run=True)
        assert dry.ok and dry.preview and service.store.count_observations() == 0
        assert service.store.watermark("dvc-tinh") is None
        summary = await service.runner.collect("dvc-tinh")
        assert summary.ok and summary.rejections == 0, summary.error
        assert summary.observations == len(dry.preview) == service.store.count_observations()
        values = await asyncio.to_thread(service.kpis.compute, NOW, [Window.parse("month"), Window.parse("ytd")],
                                         kpis=["dossier_ontime_rate", "online_dossier_rate"],
                                         units=["000.00.00.H99", UNITS[0]])
    finally:
        await service.aclose()
    got = {(v.kpi, v.unit, v.window): (v.numerator, v.denominator) for v in values}
    april, january = MONTHS[-1].start, MONTHS[0].start
    for window, first in (("month", april), ("ytd", january)):
        for unit, members in ((UNITS[0], {UNITS[0]}), ("000.00.00.H99", set(UNITS))):
            for kpi, (numerator, denominator) in hand_rates(finals(dossiers), first, members).items():
                assert denominator > 0
                assert got[(kpi, unit, window)] == (numerator, denominator), (kpi, unit, window)
