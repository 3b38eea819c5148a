"""DocumentManagementCollector: field → measure arithmetic and per-record checks."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from collectors import CollectionResult
from monitor.timeutil import Period
from tests.collectors.conftest import TZ, Harness, PayloadSet, by_key, load_payloads, reasons

KIND = "document_management"


def expected_measures(record: dict[str, Any]) -> dict[str, float]:
    """docs/sources.md's table, written again from the wire record."""
    out, inc = record["SoVanBanDi"], record["SoVanBanDen"]
    work, acc = record["HoSoCongViec"], record["TaiKhoan"]
    return {
        "docs_outgoing_total": out["TongSo"], "docs_outgoing_electronic": out["DienTu"],
        "docs_outgoing_signed": out["KySo"], "docs_incoming_total": inc["TongSo"],
        "docs_incoming_electronic": inc["XuLyTrenPhanMem"],
        "work_records_total": work["TongSo"], "work_records_online": work["TrenMoiTruongMang"],
        "docmgmt_accounts_total": acc["TongSo"], "docmgmt_accounts_active": acc["CoThaoTac"],
    }


@pytest.fixture
def payloads() -> PayloadSet:
    return load_payloads(KIND)


async def test_every_field_maps_to_its_measure(harness: Harness, payloads: PayloadSet) -> None:
    result = await harness.collect(payloads)
    records = payloads.records()
    expected = {(r["OrganId"], r["Period"]): expected_measures(r) for r in records}
    assert by_key(result) == expected
    assert len(result.observations) == 9 * len(records) == 99


async def test_record_period_is_the_local_month_in_utc(
    harness: Harness, payloads: PayloadSet,
) -> None:
    result = await harness.collect(payloads)
    march = {o.period for o in result.observations if o.period.label(TZ) == "2025-03"}
    # 1 March 00:00 in Asia/Ho_Chi_Minh (UTC+7) is 28 February 17:00 UTC.
    assert march == {Period(datetime(2025, 2, 28, 17, tzinfo=UTC), datetime(2025, 3, 31, 17, tzinfo=UTC))}


async def test_raw_ref_points_at_page_and_index(harness: Harness, payloads: PayloadSet) -> None:
    result = await harness.collect(payloads)
    second_page_first = payloads.documents["page-2"]["data"][0]
    refs = {o.raw_ref for o in result.observations
            if (o.unit, o.period.label(TZ)) == (second_page_first["OrganId"], second_page_first["Period"])}
    assert refs == {"GET /qlvb/api/v1/statistics?from=2025-03-01&to=2025-05-31&grain=month"
                    "&page=2&page_size=6#0"}


async def test_part_greater_than_whole_rejects_the_whole_record(
    harness: Harness, payloads: PayloadSet,
) -> None:
    record = payloads.records()[2]
    record["SoVanBanDi"]["DienTu"] = record["SoVanBanDi"]["TongSo"] + 1
    result = await harness.collect(payloads)
    assert reasons(result) == ["inconsistent"]
    detail = result.rejections[0].detail
    total = record["SoVanBanDi"]["TongSo"]
    assert f"SoVanBanDi.DienTu = {total + 1} exceeds SoVanBanDi.TongSo = {total}" in detail
    assert record["OrganId"] in detail and "2025-03" in detail
    assert (record["OrganId"], record["Period"]) not in by_key(result)
    assert len(by_key(result)) == len(payloads.records()) - 1


@pytest.mark.parametrize(("part", "whole"), [
    (("SoVanBanDi", "KySo"), ("SoVanBanDi", "DienTu")),
    (("SoVanBanDen", "XuLyTrenPhanMem"), ("SoVanBanDen", "TongSo")),
    (("HoSoCongViec", "TrenMoiTruongMang"), ("HoSoCongViec", "TongSo")),
    (("TaiKhoan", "CoThaoTac"), ("TaiKhoan", "TongSo")),
])
async def test_each_invariant_is_checked(
    harness: Harness, payloads: PayloadSet, part: tuple[str, str], whole: tuple[str, str],
) -> None:
    record = payloads.records()[0]
    record[part[0]][part[1]] = record[whole[0]][whole[1]] + 5
    result = await harness.collect(payloads)
    assert reasons(result) == ["inconsistent"]
    assert f"{'.'.join(part)} = " in result.rejections[0].detail
    assert f"exceeds {'.'.join(whole)} = {record[whole[0]][whole[1]]}" in result.rejections[0].detail


async def test_negative_count_is_rejected(harness: Harness, payloads: PayloadSet) -> None:
    payloads.records()[1]["SoVanBanDi"]["KySo"] = -3
    result = await harness.collect(payloads)
    assert reasons(result) == ["negative"]
    assert "SoVanBanDi.KySo = -3" in result.rejections[0].detail


@pytest.mark.parametrize("value", ["210", 210.5, None, True])
async def test_a_count_that_is_not_an_integer_is_schema_drift(
    harness: Harness, payloads: PayloadSet, value: Any,
) -> None:
    payloads.records()[3]["SoVanBanDi"]["TongSo"] = value
    result = await harness.collect(payloads)
    assert reasons(result) == ["schema"]
    detail = result.rejections[0].detail
    assert detail.startswith("record 3: field SoVanBanDi.TongSo")
    assert repr(value) in detail


async def test_renamed_field_is_named(harness: Harness, payloads: PayloadSet) -> None:
    record = payloads.records()[0]
    record["TaiKhoan"]["SoTaiKhoan"] = record["TaiKhoan"].pop("TongSo")
    result = await harness.collect(payloads)
    assert [r.detail for r in result.rejections] == [
        "record 0: field TaiKhoan.TongSo missing (schema drift?)"]


async def test_a_period_not_requested_is_rejected(harness: Harness, payloads: PayloadSet) -> None:
    record = payloads.records()[0]
    record.update({"Period": "2025-06", "From": "2025-06-01", "To": "2025-06-30"})
    result = await harness.collect(payloads)
    assert reasons(result) == ["unexpected_period"]
    assert "period 2025-06 was not requested" in result.rejections[0].detail


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"To": "2025-03-15"}, "From = 2025-03-01 and To = 2025-03-15 are not one local day or month"),
    ({"Period": "2025-04"}, "Period = '2025-04' but From..To = 2025-03-01..2025-03-31 is 2025-03"),
])
async def test_dates_that_disagree_are_inconsistent(
    harness: Harness, payloads: PayloadSet, changes: dict[str, str], complaint: str,
) -> None:
    payloads.records()[0].update(changes)
    result = await harness.collect(payloads)
    assert reasons(result) == ["inconsistent"]
    assert complaint in result.rejections[0].detail


async def test_a_date_in_another_format_is_schema_drift(
    harness: Harness, payloads: PayloadSet,
) -> None:
    payloads.records()[0]["From"] = "01/03/2025"
    result = await harness.collect(payloads)
    assert reasons(result) == ["schema"]
    assert result.rejections[0].detail == (
        "record 0: field From: expected a local date YYYY-MM-DD, got '01/03/2025'")


async def test_a_repeated_record_is_kept_once(harness: Harness, payloads: PayloadSet) -> None:
    page = payloads.documents["page-2"]["data"]
    page.append(dict(payloads.records()[0]))
    result = await harness.collect(payloads)
    assert reasons(result) == ["duplicate"]
    assert len(result.observations) == 99


async def test_day_grain(harness: Harness, payloads: PayloadSet) -> None:
    record = payloads.records()[0]
    record.update({"Period": "2025-03-14", "From": "2025-03-14", "To": "2025-03-14"})
    payloads.documents = {"page-1": {"data": [record], "page": 1, "page_size": 500,
                                     "total": 1, "total_pages": 1}}
    day = Period.of_day(date(2025, 3, 14), TZ)
    result = await harness.collect(payloads, periods=[day], grain="day")
    assert {o.period for o in result.observations} == {day}
    assert harness.server.requests[0].query == {
        "from": "2025-03-14", "to": "2025-03-14", "grain": "day", "page": "1", "page_size": "6"}


async def test_empty_answer_is_no_data_not_an_error(harness: Harness, payloads: PayloadSet) -> None:
    payloads.documents = {"page-1": {"data": [], "page": 1, "page_size": 6, "total": 0,
                                     "total_pages": 0}}
    result = await harness.collect(payloads)
    assert result == CollectionResult()


async def test_no_periods_means_no_request(harness: Harness, payloads: PayloadSet) -> None:
    result = await harness.collect(payloads, periods=[])
    assert result == CollectionResult()
    assert harness.server.requests == []


def test_options_are_validated() -> None:
    from pydantic import ValidationError

    from collectors.document_management import DocumentManagementCollector

    assert DocumentManagementCollector.Options.model_validate({}).model_dump() == {
        "page_size": 500, "page_concurrency": None}
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        DocumentManagementCollector.Options.model_validate({"page_size": 5000})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        DocumentManagementCollector.Options.model_validate({"pagesize": 5})
