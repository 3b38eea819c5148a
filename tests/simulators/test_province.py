"""The simulated province: structure, invariants, day/month consistency, calibration.

KPIs are recomputed here from the records exactly as served (Σ numerator / Σ
denominator), independently of how the model generated them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.simulators.province import PROVINCE_CODE, ProvinceModel
from monitor.units import QCVN102_CODE, Level, load_units

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 10:00 on 2026-11-22 in Hà Nội time
TODAY = date(2026, 11, 22)
MERGE_DATE = date(2025, 3, 1)
REFORM_DATE = date(2025, 7, 1)
GENERALIZED_TIME = re.compile(r"^\d{14}Z$")

Record = dict[str, Any]


@pytest.fixture(scope="module")
def model() -> ProvinceModel:
    return ProvinceModel()


@pytest.fixture(scope="module")
def month_documents(model: ProvinceModel) -> list[Record]:
    return model.document_records(date(2023, 1, 1), date(2026, 12, 31), "month", NOW)


@pytest.fixture(scope="module")
def month_onestop(model: ProvinceModel) -> list[Record]:
    return model.onestop_records(date(2023, 1, 1), date(2026, 12, 31), "month", NOW)


# ----------------------------------------------------------------------------- helpers

def document_problems(record: Record) -> list[str]:
    """Everything wrong with a document-management record, per docs/sources.md."""
    problems = _negative_counts(record)
    out, incoming = record["SoVanBanDi"], record["SoVanBanDen"]
    work, accounts = record["HoSoCongViec"], record["TaiKhoan"]
    checks = [
        (out["DienTu"] <= out["TongSo"], "DienTu > TongSo"),
        (out["KySo"] <= out["DienTu"], "KySo > DienTu"),
        (incoming["XuLyTrenPhanMem"] <= incoming["TongSo"], "XuLyTrenPhanMem > TongSo"),
        (work["TrenMoiTruongMang"] <= work["TongSo"], "TrenMoiTruongMang > TongSo"),
        (accounts["CoThaoTac"] <= accounts["TongSo"], "CoThaoTac > TongSo"),
    ]
    return problems + [message for ok, message in checks if not ok]


def received(record: Record) -> int:
    return sum(n for code, n in record["TheoTrangThai"].items() if code not in ("1", "3"))


def onestop_problems(record: Record) -> list[str]:
    """Everything wrong with a one-stop record, per docs/sources.md."""
    problems = _negative_counts(record)
    procedures = record["ThuTuc"]
    checks = [
        (set(record["TheoTrangThai"]) == {str(c) for c in range(1, 11)}, "TheoTrangThai codes"),
        (sum(record["TiepNhanTheoKenh"].values()) == received(record), "Σ channels ≠ received"),
        (sum(record["ThanhToanTrucTuyen"].values()) <= record["CoPhiLePhi"], "paid online > with fee"),
        (record["CoPhiLePhi"] <= received(record), "with fee > received"),
        (record["SoHoa"] <= received(record), "digitised > received"),
        (sum(record["DaXuLy"].values()) == record["TheoTrangThai"]["9"] + record["TheoTrangThai"]["10"],
         "resolved ≠ status 9 + 10"),
        (received(record) <= record["TongSoHoSoBaoCao"], "received > reported"),
        (procedures["DVCTT"] <= procedures["TongSo"], "DVCTT > TongSo"),
        (procedures["ToanTrinh"] <= procedures["DuDieuKienToanTrinh"], "ToanTrinh > DuDieuKienToanTrinh"),
    ]
    return problems + [message for ok, message in checks if not ok]


def _negative_counts(record: Record) -> list[str]:
    problems = []
    for key, value in record.items():
        values = value.values() if isinstance(value, dict) else [value]
        if not isinstance(value, str) and any(not isinstance(v, int) or v < 0 for v in values):
            problems.append(f"{key} not a non-negative integer: {value}")
    return problems


def period_of(record: Record) -> str:
    return str(record.get("Period", record.get("Ky")))


def unit_of(record: Record) -> str:
    return str(record.get("OrganId", record.get("MaDonVi")))


def province_rate(records: Iterable[Record], period: str, numerator: Callable[[Record], int],
                  denominator: Callable[[Record], int]) -> float:
    chosen = [r for r in records if period_of(r) == period]
    assert chosen, f"no records for {period}"
    return sum(map(numerator, chosen)) / sum(map(denominator, chosen))


def flows(record: Record) -> dict[str, int]:
    """The flow counts of a record, flattened (stocks left out)."""
    out: dict[str, int] = {}
    for key, value in record.items():
        if key in ("TaiKhoan", "ThuTuc") or isinstance(value, str):
            continue
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def summed(records: Iterable[Record]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for record in records:
        for key, value in flows(record).items():
            total[key] += value
    return dict(total)


def digest(records: object) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# ----------------------------------------------------------------------------- determinism

def test_same_seed_gives_identical_output() -> None:
    first, second = ProvinceModel(seed=7), ProvinceModel(seed=7)
    assert first.units_yaml() == second.units_yaml()
    assert first.document_records(date(2024, 1, 1), date(2024, 3, 31), "month", NOW) == \
        second.document_records(date(2024, 1, 1), date(2024, 3, 31), "month", NOW)
    assert first.onestop_records(date(2025, 2, 1), date(2025, 2, 28), "day", NOW) == \
        second.onestop_records(date(2025, 2, 1), date(2025, 2, 28), "day", NOW)
    assert first.email_accounts(NOW) == second.email_accounts(NOW)


def test_different_seeds_differ() -> None:
    first, second = ProvinceModel(seed=7), ProvinceModel(seed=8)
    assert first.document_records(date(2024, 1, 1), date(2024, 1, 31), "month", NOW) != \
        second.document_records(date(2024, 1, 1), date(2024, 1, 31), "month", NOW)
    assert first.onestop_records(date(2024, 1, 1), date(2024, 1, 31), "month", NOW) != \
        second.onestop_records(date(2024, 1, 1), date(2024, 1, 31), "month", NOW)
    assert first.email_accounts(NOW) != second.email_accounts(NOW)


def test_output_does_not_depend_on_the_process_hash_seed(model: ProvinceModel) -> None:
    """Python's str hash is randomised per process; the model must not depend on it."""
    script = (
        "import hashlib, json, sys\n"
        "from datetime import UTC, date, datetime\n"
        "from monitor.simulators.province import ProvinceModel\n"
        "m = ProvinceModel()\n"
        "now = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)\n"
        "data = [m.units_yaml(), m.document_records(date(2025, 5, 1), date(2025, 5, 31), 'day', now),\n"
        "        m.onestop_records(date(2026, 1, 1), date(2026, 11, 30), 'month', now), m.email_accounts(now)]\n"
        "print(hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest())\n"
    )
    expected = digest([model.units_yaml(), model.document_records(date(2025, 5, 1), date(2025, 5, 31), "day", NOW),
                       model.onestop_records(date(2026, 1, 1), date(2026, 11, 30), "month", NOW),
                       model.email_accounts(NOW)])
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                                timeout=120, check=True, cwd=Path(__file__).resolve().parents[2])
        assert result.stdout.strip() == expected


# ----------------------------------------------------------------------------- structure

def _levels_on(model: ProvinceModel, day: date) -> dict[Level, int]:
    counts: dict[Level, int] = defaultdict(int)
    for unit in model.unit_tree().valid_on(day):
        counts[unit.level] += 1
    return counts


def test_unit_counts_before_and_after_the_reform(model: ProvinceModel) -> None:
    tree = model.unit_tree()
    assert len(tree.valid_on(date(2026, 11, 22))) >= 200
    before = _levels_on(model, date(2025, 6, 30))
    assert (before[Level.province], before[Level.department], before[Level.agency], before[Level.district]) == \
        (1, 24, 75, 9)
    assert 250 <= before[Level.commune] + before[Level.ward] <= 310
    after = _levels_on(model, date(2026, 11, 22))
    assert (after[Level.province], after[Level.department], after[Level.agency], after[Level.district]) == \
        (1, 24, 75, 0)
    assert 100 <= after[Level.commune] + after[Level.ward] <= 140
    assert _levels_on(model, date(2025, 2, 28))[Level.department] == 25


def test_codes_names_heads_and_staff(model: ProvinceModel) -> None:
    staff_ranges = {Level.department: (50, 200), Level.agency: (15, 60), Level.district: (80, 150)}
    versions_per_code: dict[str, int] = defaultdict(int)
    for unit in model.unit_tree().versions:
        versions_per_code[unit.code] += 1
        assert QCVN102_CODE.match(unit.code)
        assert unit.name.strip()
        if unit.code == PROVINCE_CODE:
            assert unit.parent is None and unit.staff_count == 0
            continue
        assert unit.head is not None and unit.head.email.endswith("@sonha.gov.vn"), unit
        low, high = staff_ranges.get(unit.level, (20, 70))
        assert low <= unit.staff_count <= high, unit
    assert sorted(n for n in versions_per_code.values() if n > 1) == [2, 2, 2]  # the moved agencies
    tree = model.unit_tree()
    assert {g: tree.display_group(g) for g in ("so_nganh", "xa")} == {"so_nganh": "Sở, ban, ngành",
                                                                      "xa": "UBND cấp xã"}
    heads = [u.head.email for u in tree.valid_on(TODAY) if u.head is not None]
    assert len(heads) == len(set(heads))


def test_department_merge_on_2025_03_01(model: ProvinceModel) -> None:
    tree = model.unit_tree()
    by_name = {u.name: u for u in tree.versions if u.level == Level.department}
    merged, absorbing = by_name["Sở Thông tin và Truyền thông"], by_name["Sở Khoa học và Công nghệ"]
    assert merged.valid_to == MERGE_DATE - timedelta(days=1)
    assert merged.successors == (absorbing.code,)
    assert tree.get(merged.code, MERGE_DATE) is None
    assert tree.get(absorbing.code, MERGE_DATE) is not None
    moved = [u.code for u in tree.children(merged.code, MERGE_DATE - timedelta(days=1))]
    assert len(moved) == 3
    for code in moved:
        after = tree.get(code, MERGE_DATE)
        assert after is not None and after.parent == absorbing.code


def test_district_level_abolished_on_2025_07_01(model: ProvinceModel) -> None:
    tree = model.unit_tree()
    after = tree.valid_on(REFORM_DATE)
    assert not [u for u in after if u.level == Level.district]
    old_communes = [u for u in tree.valid_on(REFORM_DATE - timedelta(days=1))
                    if u.level in (Level.commune, Level.ward)]
    for old in old_communes:
        assert old.successors, old
        for successor in old.successors:
            new = tree.get(successor, REFORM_DATE)
            assert new is not None and new.parent == PROVINCE_CODE and new.group == "xa"
    new_communes = [u for u in after if u.level in (Level.commune, Level.ward)]
    assert all(2 <= len(tree.predecessors(u.code)) <= 3 for u in new_communes)
    assert sum(len(tree.predecessors(u.code)) for u in new_communes) == len(old_communes)


def test_units_yaml_loads_back(model: ProvinceModel, tmp_path: Path) -> None:
    path = tmp_path / "units.yaml"
    model.write_units(path)
    text = path.read_text(encoding="utf-8")
    assert "Sở Tài chính" in text and "valid_to: '2025-06-30'" in text
    loaded = load_units(path)
    assert set(loaded.versions) == set(model.unit_tree().versions)
    assert loaded.group_names == model.unit_tree().group_names


# ----------------------------------------------------------------------------- invariants

def test_every_month_record_satisfies_the_invariants(month_documents: list[Record],
                                                    month_onestop: list[Record]) -> None:
    problems = [(r["OrganId"], r["Period"], p) for r in month_documents for p in document_problems(r)]
    problems += [(r["MaDonVi"], r["Ky"], p) for r in month_onestop for p in onestop_problems(r)]
    assert problems == []
    assert len(month_documents) > 10_000 and len(month_onestop) > 8_000


def test_every_day_record_satisfies_the_invariants(model: ProvinceModel) -> None:
    for month_start, month_end in ((date(2023, 2, 1), date(2023, 2, 28)), (date(2026, 10, 1), date(2026, 11, 30))):
        documents = model.document_records(month_start, month_end, "day", NOW)
        onestop = model.onestop_records(month_start, month_end, "day", NOW)
        assert documents and onestop
        assert [p for r in documents for p in document_problems(r)] == []
        assert [p for r in onestop for p in onestop_problems(r)] == []
        assert all(r["From"] == r["To"] == r["Period"] for r in documents)


def test_records_only_for_units_valid_in_their_period(model: ProvinceModel, month_documents: list[Record],
                                                      month_onestop: list[Record]) -> None:
    tree = model.unit_tree()
    for record in month_documents + month_onestop:
        first = date.fromisoformat(record["From"] if "From" in record else record["TuNgay"])
        last = date.fromisoformat(record["To"] if "To" in record else record["DenNgay"])
        unit = tree.get(unit_of(record), first)
        assert unit is not None and unit.valid_on(last) and unit.code != PROVINCE_CODE


def test_records_are_ordered_by_period_then_unit(month_documents: list[Record]) -> None:
    keys = [(r["Period"], r["OrganId"]) for r in month_documents]
    assert keys == sorted(keys) and len(keys) == len(set(keys))


@pytest.mark.parametrize("month", ["2023-02", "2025-03", "2025-07", "2026-10"])
def test_day_records_sum_exactly_to_the_month(model: ProvinceModel, month: str) -> None:
    first = date.fromisoformat(f"{month}-01")
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    for produce in (model.document_records, model.onestop_records):
        by_month = {unit_of(r): r for r in produce(first, last, "month", NOW)}
        by_day: dict[str, list[Record]] = defaultdict(list)
        for record in produce(first, last, "day", NOW):
            by_day[unit_of(record)].append(record)
        assert set(by_day) == set(by_month)
        for unit, days in by_day.items():
            assert len(days) == (last - first).days + 1
            assert summed(days) == flows(by_month[unit]), unit
            stock_key = "TaiKhoan" if "TaiKhoan" in by_month[unit] else "ThuTuc"
            assert all(day[stock_key] == by_month[unit][stock_key] for day in days)


def test_the_current_month_is_month_to_date_in_local_time(model: ProvinceModel) -> None:
    # 17:30 UTC on the 21st is 00:30 on the 22nd in Hà Nội: the 21st is complete.
    just_after_midnight = datetime(2026, 11, 21, 17, 30, tzinfo=UTC)
    days = model.document_records(date(2026, 11, 1), date(2026, 12, 31), "day", just_after_midnight)
    assert max(r["Period"] for r in days) == "2026-11-21"
    months = model.document_records(date(2026, 11, 1), date(2026, 12, 31), "month", just_after_midnight)
    assert {r["Period"] for r in months} == {"2026-11"}
    for record in months:
        own_days = [d for d in days if d["OrganId"] == record["OrganId"]]
        assert len(own_days) == 21
        assert summed(own_days) == flows(record)
    # Half an hour earlier it is still the 21st locally: the 21st is not served yet.
    before_midnight = datetime(2026, 11, 21, 16, 30, tzinfo=UTC)
    days = model.document_records(date(2026, 11, 1), date(2026, 11, 30), "day", before_midnight)
    assert max(r["Period"] for r in days) == "2026-11-20"


def test_a_month_is_absent_on_its_first_day(model: ProvinceModel) -> None:
    first_of_december = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    months = model.onestop_records(date(2026, 11, 1), date(2026, 12, 31), "month", first_of_december)
    assert {r["Ky"] for r in months} == {"2026-11"}
    assert months == model.onestop_records(date(2026, 11, 1), date(2026, 11, 30), "month", NOW + timedelta(days=30))


def test_a_month_grows_as_days_pass(model: ProvinceModel) -> None:
    earlier = model.document_records(date(2026, 11, 1), date(2026, 11, 30), "month", NOW - timedelta(days=5))
    later = model.document_records(date(2026, 11, 1), date(2026, 11, 30), "month", NOW)
    earlier_totals = {r["OrganId"]: r["SoVanBanDi"]["TongSo"] for r in earlier}
    later_totals = {r["OrganId"]: r["SoVanBanDi"]["TongSo"] for r in later}
    assert all(later_totals[unit] >= total for unit, total in earlier_totals.items())
    assert sum(later_totals.values()) > sum(earlier_totals.values())


def test_nothing_before_history_or_after_today(model: ProvinceModel) -> None:
    records = model.document_records(date(2020, 1, 1), date(2030, 1, 1), "month", NOW)
    periods = {r["Period"] for r in records}
    assert min(periods) == "2023-01" and max(periods) == "2026-11"
    assert model.document_records(date(2026, 12, 1), date(2027, 1, 31), "day", NOW) == []
    assert model.document_records(date(2026, 5, 2), date(2026, 5, 1), "day", NOW) == []


# ----------------------------------------------------------------------------- gaps

def test_missing_data_is_realistic(model: ProvinceModel, month_documents: list[Record],
                                   month_onestop: list[Record]) -> None:
    tree = model.unit_tree()
    for kind, records in (("document_management", month_documents), ("one_stop", month_onestop)):
        assert not model.absent_from[kind] & {unit_of(r) for r in records}
    served = {(r["OrganId"], r["Period"]) for r in month_documents}
    expected = {(u.code, f"{year}-{month:02d}") for year in (2023, 2024, 2025) for month in range(1, 13)
                for u in tree.valid_on(date(year, month, 1)) if u.code != PROVINCE_CODE}
    missing = expected - served
    assert 0.01 <= len(missing) / len(expected) <= 0.06
    assert {code for code, _ in missing} - model.absent_from["document_management"]  # spread over units
    agencies = {u.code for u in tree.valid_on(TODAY) if u.level == Level.agency}
    with_dossiers = agencies & {unit_of(r) for r in month_onestop}
    assert 15 <= len(with_dossiers) < len(agencies)  # agencies without procedures are absent
    assert model.absent_from["email_directory"]
    assert not model.absent_from["email_directory"] & {a["ou"] for a in model.email_accounts(NOW)}


def test_the_stalled_unit_stops_three_months_ago(model: ProvinceModel) -> None:
    days = model.document_records(date(2026, 6, 1), date(2026, 11, 30), "day", NOW)
    stalled_days = sorted(r["Period"] for r in days if r["OrganId"] == model.stalled_unit)
    others_last = max(r["Period"] for r in days if r["OrganId"] != model.stalled_unit)
    assert stalled_days, "the stalled unit reported before it stopped"
    last_day = TODAY - timedelta(days=91)
    if model.has_data("document_management", model.stalled_unit, model.month_index(last_day)):
        assert date.fromisoformat(stalled_days[-1]) == last_day
    else:  # that month happens to be one the system lost
        assert date.fromisoformat(stalled_days[-1]) < last_day.replace(day=1)
    assert others_last == "2026-11-21"


# ----------------------------------------------------------------------------- calibration

def _outgoing_electronic(records: list[Record], period: str) -> float:
    return province_rate(records, period, lambda r: r["SoVanBanDi"]["DienTu"], lambda r: r["SoVanBanDi"]["TongSo"])


def test_outgoing_e_document_rate_rises(month_documents: list[Record]) -> None:
    early, recent = _outgoing_electronic(month_documents, "2023-01"), _outgoing_electronic(month_documents, "2026-10")
    assert 0.15 <= early <= 0.55
    assert 0.65 <= recent <= 0.99
    assert recent - early >= 0.2


def test_other_document_rates_are_in_their_bands(month_documents: list[Record]) -> None:
    signed = province_rate(month_documents, "2026-10", lambda r: r["SoVanBanDi"]["KySo"],
                           lambda r: r["SoVanBanDi"]["DienTu"])
    incoming = province_rate(month_documents, "2026-10", lambda r: r["SoVanBanDen"]["XuLyTrenPhanMem"],
                             lambda r: r["SoVanBanDen"]["TongSo"])
    work = province_rate(month_documents, "2026-10", lambda r: r["HoSoCongViec"]["TrenMoiTruongMang"],
                         lambda r: r["HoSoCongViec"]["TongSo"])
    assert 0.8 <= signed <= 1.0 and 0.6 <= incoming <= 0.99 and 0.3 <= work <= 0.95


def test_dossier_rates_are_plausible(month_onestop: list[Record]) -> None:
    ontime = province_rate(month_onestop, "2026-10", lambda r: r["DaXuLy"]["TruocHan"] + r["DaXuLy"]["DungHan"],
                           lambda r: sum(r["DaXuLy"].values()))
    assert 0.9 <= ontime <= 1.0
    early_online = province_rate(month_onestop, "2023-01", lambda r: r["TiepNhanTheoKenh"]["2"], received)
    recent_online = province_rate(month_onestop, "2026-10", lambda r: r["TiepNhanTheoKenh"]["2"], received)
    assert 0.05 <= early_online < recent_online <= 0.6
    postal = province_rate(month_onestop, "2026-10", lambda r: r["TiepNhanTheoKenh"]["3"], received)
    assert 0.01 <= postal <= 0.05
    # A few units resolve noticeably late.
    unit_ontime: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in month_onestop:
        if record["Ky"].startswith("2026"):
            unit_ontime[record["MaDonVi"]][0] += record["DaXuLy"]["TruocHan"] + record["DaXuLy"]["DungHan"]
            unit_ontime[record["MaDonVi"]][1] += sum(record["DaXuLy"].values())
    late_units = [u for u, (ok, total) in unit_ontime.items() if total and ok / total < 0.93]
    assert 1 <= len(late_units) <= len(unit_ontime) // 4


def test_volumes_by_level(model: ProvinceModel, month_documents: list[Record], month_onestop: list[Record]) -> None:
    tree = model.unit_tree()
    level_of = {u.code: u.level for u in tree.valid_on(date(2026, 10, 1))}
    outgoing: dict[Level, list[int]] = defaultdict(list)
    dossiers: dict[Level, list[int]] = defaultdict(list)
    for record in month_documents:
        if record["Period"] == "2026-10":
            outgoing[level_of[record["OrganId"]]].append(record["SoVanBanDi"]["TongSo"])
    for record in month_onestop:
        if record["Ky"] == "2026-10":
            dossiers[level_of[record["MaDonVi"]]].append(record["TongSoHoSoBaoCao"])
    assert min(outgoing[Level.department]) >= 100 and max(outgoing[Level.department]) <= 600
    assert min(outgoing[Level.agency]) >= 15 and max(outgoing[Level.agency]) <= 150
    assert min(outgoing[Level.commune]) >= 30 and max(outgoing[Level.commune]) <= 160
    assert min(dossiers[Level.commune]) >= 100 and max(dossiers[Level.commune]) <= 800


def test_mail_directory(model: ProvinceModel) -> None:
    accounts = model.email_accounts(NOW)
    assert 10_000 <= len(accounts) <= 20_000
    assert len({a["name"] for a in accounts}) == len(accounts)
    valid_today = {u.code: u for u in model.unit_tree().valid_on(TODAY)}
    assert {a["ou"] for a in accounts} <= set(valid_today)
    active = [a for a in accounts if a["zimbraAccountStatus"] == "active"]
    assert 0.9 * len(accounts) <= len(active) < len(accounts)
    assert {a["zimbraAccountStatus"] for a in accounts} <= {"active", "locked", "closed", "maintenance", "pending"}
    now_text = NOW.strftime("%Y%m%d%H%M%SZ")
    for account in accounts:
        assert account["name"].endswith("@sonha.gov.vn") and account["displayName"].strip()
        assert GENERALIZED_TIME.match(account["zimbraCreateTimestamp"])
        logon = account.get("zimbraLastLogonTimestamp")
        if logon is not None:
            assert GENERALIZED_TIME.match(logon) and account["zimbraCreateTimestamp"] <= logon <= now_text
    never = [a for a in active if "zimbraLastLogonTimestamp" not in a]
    assert 0 < len(never) < len(active) // 4
    cutoff = (NOW - timedelta(days=30)).strftime("%Y%m%d%H%M%SZ")
    regular = [a for a in active if a.get("zimbraLastLogonTimestamp", "") >= cutoff]
    assert 0.4 <= len(regular) / len(active) <= 0.95
    staff = sum(u.staff_count for code, u in valid_today.items()
                if code not in model.absent_from["email_directory"])
    assert 0.53 <= len(active) / staff <= 1.0


def test_mail_directory_is_stable_within_a_local_day(model: ProvinceModel) -> None:
    morning = datetime(2026, 11, 21, 17, 5, tzinfo=UTC)  # 00:05 on the 22nd, local
    assert model.email_accounts(morning) == model.email_accounts(NOW)
    assert model.email_accounts(NOW + timedelta(days=1)) != model.email_accounts(NOW)


def test_heads_have_mailboxes(model: ProvinceModel) -> None:
    mailboxes = {a["name"]: a for a in model.email_accounts(NOW)}
    for unit in model.unit_tree().valid_on(TODAY):
        if unit.head is None or unit.code in model.absent_from["email_directory"] or unit.code == PROVINCE_CODE:
            continue
        account = mailboxes.get(unit.head.email)
        assert account is not None and account["ou"] == unit.code and account["displayName"] == unit.head.name
