"""OneStopCollector: field → measure arithmetic and the dossier invariants."""

from __future__ import annotations

from typing import Any

import pytest

from collectors import MalformedPayload
from tests.collectors.conftest import Harness, PayloadSet, by_key, load_payloads, reasons

KIND = "one_stop"


def expected_measures(record: dict[str, Any]) -> dict[str, float]:
    """docs/sources.md's table, recomputed from the wire record."""
    received = sum(n for code, n in record["TheoTrangThai"].items() if int(code) not in {1, 3})
    done, procedures = record["DaXuLy"], record["ThuTuc"]
    return {
        "dossiers_reported_total": record["TongSoHoSoBaoCao"],
        "dossiers_received_total": received,
        "dossiers_received_online": record["TiepNhanTheoKenh"].get("2", 0),
        "dossiers_received_postal": record["TiepNhanTheoKenh"].get("3", 0),
        "dossiers_resolved_total": done["TruocHan"] + done["DungHan"] + done["TreHan"],
        "dossiers_resolved_ontime": done["TruocHan"] + done["DungHan"],
        "dossiers_with_fee": record["CoPhiLePhi"],
        "dossiers_paid_online": sum(record["ThanhToanTrucTuyen"].values()),
        "dossiers_digitized": record["SoHoa"],
        "procedures_total": procedures["TongSo"],
        "procedures_online": procedures["DVCTT"],
        "procedures_full_online_eligible": procedures["DuDieuKienToanTrinh"],
        "procedures_full_online": procedures["ToanTrinh"],
    }


@pytest.fixture
def payloads() -> PayloadSet:
    return load_payloads(KIND)


async def test_every_field_maps_to_its_measure(harness: Harness, payloads: PayloadSet) -> None:
    result = await harness.collect(payloads)
    expected = {(r["MaDonVi"], r["Ky"]): expected_measures(r) for r in payloads.records()}
    assert by_key(result) == expected


async def test_the_documented_example(harness: Harness, payloads: PayloadSet) -> None:
    """The record of docs/sources.md, with the sums done by hand."""
    result = await harness.collect(payloads)
    example = by_key(result)[("000.00.01.H99", "2025-03")]
    assert example["dossiers_received_total"] == 30 + 112 + 9 + 3 + 2 + 1 + 420 + 603 == 1180
    assert example["dossiers_received_online"] == 520
    assert example["dossiers_received_postal"] == 20
    assert example["dossiers_resolved_total"] == 1023
    assert example["dossiers_resolved_ontime"] == 1012
    assert example["dossiers_paid_online"] == 225
    assert example["dossiers_reported_total"] == 1210


async def test_absent_codes_count_zero(harness: Harness, payloads: PayloadSet) -> None:
    commune = next(r for r in payloads.records()
                   if r["MaDonVi"] == "000.02.02.H99" and r["Ky"] == "2025-04")
    assert "3" not in commune["TiepNhanTheoKenh"] and "5" not in commune["TheoTrangThai"]
    result = await harness.collect(payloads)
    measures = by_key(result)[("000.02.02.H99", "2025-04")]
    assert measures["dossiers_received_postal"] == 0
    assert measures["dossiers_received_total"] == sum(commune["TiepNhanTheoKenh"].values())


async def test_channels_must_add_up_to_received(harness: Harness, payloads: PayloadSet) -> None:
    record = payloads.records()[0]
    record["TiepNhanTheoKenh"]["2"] += 7
    result = await harness.collect(payloads)
    assert reasons(result) == ["inconsistent"]
    assert ("Σ TiepNhanTheoKenh = 1187 differs from received (Σ TheoTrangThai not 1, 3) = 1180"
            in result.rejections[0].detail)
    assert ("000.00.01.H99", "2025-03") not in by_key(result)


@pytest.mark.parametrize(("change", "complaint"), [
    (lambda r: r["ThanhToanTrucTuyen"].update({"1": r["CoPhiLePhi"]}),
     "Σ ThanhToanTrucTuyen = 510 exceeds CoPhiLePhi = 380"),
    (lambda r: r.update({"CoPhiLePhi": 1181, "ThanhToanTrucTuyen": {}}),
     "CoPhiLePhi = 1181 exceeds received (Σ TheoTrangThai not 1, 3) = 1180"),
    (lambda r: r.update({"SoHoa": 1200}),
     "SoHoa = 1200 exceeds received (Σ TheoTrangThai not 1, 3) = 1180"),
    (lambda r: r["ThuTuc"].update({"DVCTT": 313}), "ThuTuc.DVCTT = 313 exceeds ThuTuc.TongSo = 312"),
    (lambda r: r["ThuTuc"].update({"ToanTrinh": 141}),
     "ThuTuc.ToanTrinh = 141 exceeds ThuTuc.DuDieuKienToanTrinh = 140"),
])
async def test_each_invariant_is_checked(
    harness: Harness, payloads: PayloadSet, change: Any, complaint: str,
) -> None:
    change(payloads.records()[0])
    result = await harness.collect(payloads)
    assert reasons(result) == ["inconsistent"]
    assert complaint in result.rejections[0].detail
    assert len(by_key(result)) == len(payloads.records()) - 1


async def test_not_received_statuses_do_not_count(harness: Harness, payloads: PayloadSet) -> None:
    """Codes 1 (new) and 3 (not received) may grow without touching the received count."""
    record = payloads.records()[0]
    record["TheoTrangThai"]["1"] += 100
    record["TheoTrangThai"]["3"] += 50
    result = await harness.collect(payloads)
    assert result.rejections == []
    assert by_key(result)[("000.00.01.H99", "2025-03")]["dossiers_received_total"] == 1180


async def test_negative_count_in_a_code_map(harness: Harness, payloads: PayloadSet) -> None:
    record = payloads.records()[0]
    record["TheoTrangThai"]["1"] = -4
    result = await harness.collect(payloads)
    assert reasons(result) == ["negative"]
    assert "TheoTrangThai.1 = -4" in result.rejections[0].detail


async def test_unknown_status_code_is_schema_drift(harness: Harness, payloads: PayloadSet) -> None:
    payloads.records()[1]["TheoTrangThai"]["11"] = 5
    result = await harness.collect(payloads)
    assert reasons(result) == ["schema"]
    assert result.rejections[0].detail == (
        "record 1: field TheoTrangThai.11: unknown TrangThaiHoSo code (known: 1–10), got '11'")


async def test_a_changed_format_names_the_expected_fields(
    harness: Harness, payloads: PayloadSet,
) -> None:
    for record in payloads.records():
        record["MaDinhDanh"] = record.pop("MaDonVi")
    with pytest.raises(MalformedPayload) as caught:
        await harness.collect(payloads)
    message = str(caught.value)
    assert "none of the 6 records has the expected format" in message
    assert "field MaDonVi missing" in message
    assert "MaDonVi, Ky, TuNgay, DenNgay, TongSoHoSoBaoCao" in message
