"""The numbers the product exists for, checked against the simulators' raw data.

Every province-level KPI is recomputed here, independently of the collectors and
the KPI engine, straight from the records the simulated systems serve (field
names as in docs/sources.md), and must equal what the service computed after
collecting them over real HTTP.
"""

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.kpi import KpiValue
from monitor.simulators.province import ProvinceModel
from monitor.timeutil import FrozenClock, zone
from monitor.windows import Window
from tests.support.province import NOW, simulated_service

VN = zone("Asia/Ho_Chi_Minh")
PROVINCE = "000.00.00.H99"
Record = dict[str, Any]


def received(r: Record) -> int:
    return sum(v for code, v in r["TheoTrangThai"].items() if code not in ("1", "3"))


DOCS, ONESTOP = "docs", "onestop"
FLOW_KPIS: dict[str, tuple[str, Callable[[Record], float], Callable[[Record], float]]] = {
    "outgoing_docs_electronic_rate": (DOCS, lambda r: r["SoVanBanDi"]["DienTu"], lambda r: r["SoVanBanDi"]["TongSo"]),
    "incoming_docs_processed_electronically_rate": (
        DOCS, lambda r: r["SoVanBanDen"]["XuLyTrenPhanMem"], lambda r: r["SoVanBanDen"]["TongSo"]),
    "outgoing_docs_signed_rate": (DOCS, lambda r: r["SoVanBanDi"]["KySo"], lambda r: r["SoVanBanDi"]["DienTu"]),
    "work_records_online_rate": (
        DOCS, lambda r: r["HoSoCongViec"]["TrenMoiTruongMang"], lambda r: r["HoSoCongViec"]["TongSo"]),
    "onestop_dossier_in_system_rate": (ONESTOP, received, lambda r: r["TongSoHoSoBaoCao"]),
    "online_dossier_rate": (ONESTOP, lambda r: r["TiepNhanTheoKenh"].get("2", 0), received),
    "postal_dossier_rate": (ONESTOP, lambda r: r["TiepNhanTheoKenh"].get("3", 0), received),
    "dossier_ontime_rate": (ONESTOP, lambda r: r["DaXuLy"]["TruocHan"] + r["DaXuLy"]["DungHan"],
                            lambda r: sum(r["DaXuLy"].values())),
    "online_payment_dossier_rate": (ONESTOP, lambda r: sum(r["ThanhToanTrucTuyen"].values()),
                                    lambda r: r["CoPhiLePhi"]),
    "dossier_digitization_rate": (ONESTOP, lambda r: r["SoHoa"], received),
}
STOCK_KPIS: dict[str, tuple[str, Callable[[Record], float], Callable[[Record], float]]] = {
    "doc_mgmt_user_adoption_rate": (DOCS, lambda r: r["TaiKhoan"]["CoThaoTac"], lambda r: r["TaiKhoan"]["TongSo"]),
    "online_service_provision_rate": (ONESTOP, lambda r: r["ThuTuc"]["DVCTT"], lambda r: r["ThuTuc"]["TongSo"]),
    "full_online_service_rate": (ONESTOP, lambda r: r["ThuTuc"]["ToanTrinh"],
                                 lambda r: r["ThuTuc"]["DuDieuKienToanTrinh"]),
}


def raw_records(model: ProvinceModel, system: str, first: date, last: date, now: datetime) -> list[Record]:
    fetch = model.document_records if system == DOCS else model.onestop_records
    return fetch(first, last, "month", now)


def unit_of(record: Record) -> str:
    return str(record.get("OrganId") or record.get("MaDonVi"))


def start_of(record: Record) -> str:
    return str(record.get("From") or record.get("TuNgay"))


def expected_flow(model: ProvinceModel, kpi: str, first: date, as_of: datetime) -> tuple[float, float]:
    """Sums over the records of [first, as_of], as the systems serve them now (NOW):
    a past December is complete, the current month holds the days so far."""
    system, num, den = FLOW_KPIS[kpi]
    records = raw_records(model, system, first, as_of.astimezone(VN).date(), NOW)
    return sum(num(r) for r in records), sum(den(r) for r in records)


def expected_stock(model: ProvinceModel, kpi: str, first: date, now: datetime) -> tuple[float, float]:
    """Latest record per unit in the window, for units that exist on the as-of day."""
    system, num, den = STOCK_KPIS[kpi]
    today = now.astimezone(VN).date()
    alive = {u.code for u in model.unit_tree().valid_on(today)}
    latest: dict[str, Record] = {}
    for record in raw_records(model, system, first, today, now):
        unit = unit_of(record)
        if unit in alive and (unit not in latest or start_of(record) > start_of(latest[unit])):
            latest[unit] = record
    return sum(num(r) for r in latest.values()), sum(den(r) for r in latest.values())


def expected_email(model: ProvinceModel, now: datetime) -> dict[str, tuple[float, float]]:
    today = now.astimezone(VN).date()
    staff = {u.code: u.staff_count for u in model.unit_tree().valid_on(today)}
    active: dict[str, int] = defaultdict(int)
    regular: dict[str, int] = defaultdict(int)
    seen: set[str] = set()
    threshold = now - timedelta(days=30)
    for account in model.email_accounts(now):
        unit = account["ou"]
        if unit not in staff:
            continue
        seen.add(unit)
        if account["zimbraAccountStatus"] != "active":
            continue
        active[unit] += 1
        logon = account.get("zimbraLastLogonTimestamp")
        if logon and datetime.strptime(logon, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC) >= threshold:
            regular[unit] += 1
    coverage_units = [u for u in seen if staff[u] > 0]
    return {
        "official_email_regular_use_rate": (sum(regular[u] for u in seen), sum(active[u] for u in seen)),
        "official_email_account_coverage": (sum(active[u] for u in coverage_units),
                                            sum(staff[u] for u in coverage_units)),
    }


def province_values(values: list[KpiValue]) -> dict[str, KpiValue]:
    return {v.kpi: v for v in values if v.unit == PROVINCE}


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory, province: ProvinceModel) -> Any:
    """Collect the simulated province once over real HTTP; hand out the service."""
    import asyncio

    directory = tmp_path_factory.mktemp("province")

    async def run() -> list[Any]:
        async with simulated_service(directory, province) as (service, _, _):
            summaries = await service.cycle()
            assert all(s.ok for s in summaries), [s.error for s in summaries]
            return [service.kpis.compute(at, [Window.parse(w)], units=[PROVINCE])
                    for at, w in CASES]

    return dict(zip(CASES, asyncio.run(run()), strict=True))


END_2025 = datetime(2025, 12, 31, 16, 59, 59, tzinfo=UTC)  # 23:59:59 on 31 Dec in Hanoi
CASES = [(NOW, "month"), (NOW, "ytd"), (NOW, "latest"), (END_2025, "ytd")]


@pytest.mark.parametrize("kpi", sorted(FLOW_KPIS))
@pytest.mark.parametrize(("as_of", "window", "first"), [
    (NOW, "month", date(2026, 11, 1)), (NOW, "ytd", date(2026, 1, 1)),
    # 2025: old communes through their districts until June, new communes from July.
    (END_2025, "ytd", date(2025, 1, 1)),
])
def test_flow_kpis_equal_raw_sums(collected: Any, province: ProvinceModel, kpi: str, as_of: datetime,
                                  window: str, first: date) -> None:
    got = province_values(collected[(as_of, window)])[kpi]
    numerator, denominator = expected_flow(province, kpi, first, as_of)
    assert denominator > 0
    assert (got.numerator, got.denominator) == (numerator, denominator)
    assert got.value == pytest.approx(numerator / denominator, rel=1e-12)


@pytest.mark.parametrize("kpi", sorted(STOCK_KPIS))
@pytest.mark.parametrize(("window", "first"), [("month", date(2026, 11, 1)), ("ytd", date(2026, 1, 1))])
def test_stock_kpis_take_each_units_latest(collected: Any, province: ProvinceModel, kpi: str, window: str,
                                           first: date) -> None:
    got = province_values(collected[(NOW, window)])[kpi]
    assert (got.numerator, got.denominator) == expected_stock(province, kpi, first, NOW)


@pytest.mark.parametrize("kpi", ["official_email_regular_use_rate", "official_email_account_coverage"])
def test_email_kpis_equal_counts_over_accounts(collected: Any, province: ProvinceModel, kpi: str) -> None:
    got = province_values(collected[(NOW, "latest")])[kpi]
    numerator, denominator = expected_email(province, NOW)[kpi]
    assert (got.numerator, got.denominator) == (numerator, denominator)
    assert 0.4 < got.value < 0.98  # type: ignore[operator]


def test_every_catalog_kpi_has_a_province_value(collected: Any) -> None:
    from monitor.catalog import load_catalog

    month = province_values(collected[(NOW, "month")])
    latest = province_values(collected[(NOW, "latest")])
    for kpi in load_catalog().kpis:
        assert kpi in month or kpi in latest, kpi


def test_rerunning_a_cycle_stores_nothing_twice(tmp_path: Path, province: ProvinceModel) -> None:
    import asyncio

    async def run() -> tuple[int, int, list[Any], list[Any]]:
        async with simulated_service(tmp_path, province, clock=FrozenClock(NOW)) as (service, _, _):
            await service.cycle()
            first = service.store.count_observations()
            before = await service.refresh_kpis()
            await service.cycle()
            after = await service.refresh_kpis()
            return first, service.store.count_observations(), before, after

    first, second, before, after = asyncio.run(run())
    assert first == second
    assert sorted(before, key=repr) == sorted(after, key=repr)
