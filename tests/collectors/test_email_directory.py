"""EmailDirectoryCollector: the snapshot, the regular-use window, statuses and options."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from collectors import CollectionResult, MalformedPayload
from collectors.email_directory import EmailDirectoryCollector
from monitor.timeutil import Period
from tests.collectors.conftest import TZ, Harness, PayloadSet, load_payloads, reasons

KIND = "email_directory"
NOW = datetime(2025, 11, 20, 3, 0, tzinfo=UTC)  # the recording's snapshot instant


def counts(result: CollectionResult) -> dict[str, tuple[float, float]]:
    """Unit → (email_accounts_total, email_accounts_regular_use)."""
    table: dict[str, dict[str, float]] = {}
    for obs in result.observations:
        table.setdefault(obs.unit, {})[obs.measure] = obs.value
    return {unit: (m["email_accounts_total"], m["email_accounts_regular_use"])
            for unit, m in table.items()}


def generalized(instant: datetime) -> str:
    return instant.strftime("%Y%m%d%H%M%SZ")


@pytest.fixture
def payloads() -> PayloadSet:
    return load_payloads(KIND)


def account(payloads: PayloadSet, name: str) -> dict[str, Any]:
    return next(a for a in payloads.records() if a["name"].startswith(name + "@"))


async def test_counts_per_unit(harness: Harness, payloads: PayloadSet) -> None:
    result = await harness.collect(payloads)
    assert counts(result) == {
        "000.00.01.H99": (3, 2),  # exactly 30 days ago is in, 30 days + 1 s is out
        "000.00.02.H99": (2, 1),  # never logged in; the locked account is not counted
        "000.00.31.H99": (0, 0),  # only a closed mailbox: a true zero
        "000.02.02.H99": (2, 1),  # the account in maintenance is not counted
    }  # 000.00.05.H99 is not in the directory: no data, not 0 %


async def test_counts_recomputed_from_the_recording(harness: Harness, payloads: PayloadSet) -> None:
    cutoff = NOW - timedelta(days=30)
    expected: dict[str, list[int]] = {}
    for a in payloads.records():
        active = a["zimbraAccountStatus"] == "active"
        last = a.get("zimbraLastLogonTimestamp")
        regular = active and last is not None and (
            datetime.strptime(last + "+0000", "%Y%m%d%H%M%SZ%z") >= cutoff)
        total = expected.setdefault(a["ou"], [0, 0])
        total[0] += active
        total[1] += regular
    result = await harness.collect(payloads)
    assert counts(result) == {unit: (t, r) for unit, (t, r) in expected.items()}


async def test_snapshot_is_the_local_day_whatever_periods_are_asked(
    harness: Harness, payloads: PayloadSet,
) -> None:
    months = [Period.of_month(2025, m, TZ) for m in (9, 10, 11)]
    result = await harness.collect(payloads, periods=months)
    day = Period(datetime(2025, 11, 19, 17, tzinfo=UTC), datetime(2025, 11, 20, 17, tzinfo=UTC))
    assert {o.period for o in result.observations} == {day}


async def test_snapshot_day_is_local_not_utc(harness: Harness, payloads: PayloadSet) -> None:
    just_after_local_midnight = datetime(2025, 11, 19, 17, 30, tzinfo=UTC)  # 00:30 on the 20th
    result = await harness.collect(payloads, now=just_after_local_midnight)
    assert {o.period.label(TZ) for o in result.observations} == {"2025-11-20"}


@pytest.mark.parametrize(("age", "regular"), [
    (timedelta(days=30), True),
    (timedelta(days=30, seconds=1), False),
    (timedelta(days=29, hours=23), True),
    (timedelta(seconds=0), True),
    (timedelta(days=-1), True),  # a logon "in the future" (clock skew) is still recent
])
async def test_regular_use_window_boundary(
    harness: Harness, payloads: PayloadSet, age: timedelta, regular: bool,
) -> None:
    account(payloads, "pham.thi.dung")["zimbraLastLogonTimestamp"] = generalized(NOW - age)
    result = await harness.collect(payloads)
    assert counts(result)["000.00.02.H99"] == (2, 1 + regular)


async def test_window_follows_the_option(harness: Harness, payloads: PayloadSet) -> None:
    result = await harness.collect(payloads, options={"regular_use_days": 90})
    # bùi.thi.hoa logged in on 1 September: in a 90-day window, not in a 30-day one.
    assert counts(result)["000.02.02.H99"] == (2, 2)


async def test_locked_accounts_are_not_mailboxes(harness: Harness, payloads: PayloadSet) -> None:
    for a in payloads.records():
        if a["ou"] == "000.00.01.H99":
            a["zimbraAccountStatus"] = "locked"
    result = await harness.collect(payloads)
    assert counts(result)["000.00.01.H99"] == (0, 0)


async def test_malformed_timestamp_rejects_the_account_from_both_counts(
    harness: Harness, payloads: PayloadSet,
) -> None:
    account(payloads, "nguyen.van.an")["zimbraLastLogonTimestamp"] = "2025-11-18T01:30:00Z"
    result = await harness.collect(payloads)
    assert reasons(result) == ["schema"]
    detail = result.rejections[0].detail
    assert "field zimbraLastLogonTimestamp: expected LDAP generalized time" in detail
    assert "'2025-11-18T01:30:00Z'" in detail
    assert counts(result)["000.00.01.H99"] == (2, 1)


async def test_unknown_status_is_schema_drift(harness: Harness, payloads: PayloadSet) -> None:
    account(payloads, "vu.thi.phuong")["zimbraAccountStatus"] = "Active"
    result = await harness.collect(payloads)
    assert reasons(result) == ["schema"]
    assert "zimbraAccountStatus" in result.rejections[0].detail


async def test_unknown_unit_only_matters_for_active_accounts(
    harness: Harness, payloads: PayloadSet,
) -> None:
    account(payloads, "hoang.van.em")["ou"] = "000.00.77.H99"  # locked: carries no number
    account(payloads, "pham.thi.dung")["ou"] = "000.00.88.H99"  # active: would be counted
    result = await harness.collect(payloads)
    assert reasons(result) == ["unknown_unit"]
    rejection = result.rejections[0]
    assert rejection.unit == "000.00.88.H99" and "pham.thi.dung@sonha.gov.vn" in rejection.detail
    assert "ou = '000.00.88.H99' is not a unit of the tree" in rejection.detail
    assert counts(result)["000.00.02.H99"] == (1, 1)


async def test_units_by_another_attribute_and_a_map(harness: Harness, payloads: PayloadSet) -> None:
    names = {"000.00.01.H99": "Văn phòng UBND tỉnh", "000.00.02.H99": "Sở Nội vụ"}
    for a in payloads.records():
        a["department"] = names.get(a["ou"], a["ou"])
        del a["ou"]
    result = await harness.collect(payloads, options={
        "unit_attribute": "department", "unit_map": {v: k for k, v in names.items()}})
    assert result.rejections == []
    assert counts(result)["000.00.01.H99"] == (3, 2)
    assert counts(result)["000.02.02.H99"] == (2, 1)  # unmapped values are codes already


async def test_a_unit_attribute_no_account_has_is_named(
    harness: Harness, payloads: PayloadSet,
) -> None:
    with pytest.raises(MalformedPayload) as caught:
        await harness.collect(payloads, options={"unit_attribute": "department"})
    assert "field department missing" in str(caught.value)
    assert "expected fields: name, department, zimbraAccountStatus" in str(caught.value)


async def test_a_repeated_account_counts_once(harness: Harness, payloads: PayloadSet) -> None:
    payloads.documents["offset-8"]["accounts"].append(dict(account(payloads, "nguyen.van.an")))
    result = await harness.collect(payloads)
    assert reasons(result) == ["duplicate"]
    assert counts(result)["000.00.01.H99"] == (3, 2)


async def test_reads_every_page(harness: Harness, payloads: PayloadSet) -> None:
    await harness.collect(payloads)
    asked = [(r.query["offset"], r.query["limit"]) for r in harness.server.requests]
    assert asked[0] == ("0", "4") and sorted(asked[1:]) == [("4", "4"), ("8", "4")]  # the rest at once


def test_regular_use_shorter_than_logon_frequency_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        EmailDirectoryCollector.Options.model_validate(
            {"regular_use_days": 3, "logon_frequency_days": 7})
    message = str(caught.value)
    assert "regular_use_days must be at least logon_frequency_days (7), got: 3" in message
    assert "zimbraLastLogonTimestampFrequency" in message


async def test_a_snapshot_with_too_many_uncounted_accounts_is_refused(harness: Harness, payloads: PayloadSet) -> None:
    """The payload's accounts of unknown units are 3 of 10: over the default share (5 %) the whole
    snapshot is refused, so the counts stored before are not replaced by short ones."""
    known = payloads.units - {"000.00.01.H99"}
    with pytest.raises(MalformedPayload, match=r"of 10 accounts could not be counted \(first: unknown_unit"):
        await harness.collect(payloads, units=known, options={"max_rejected_share": 0.05})
    result = await harness.collect(payloads, units=known, options={"max_rejected_share": 0.5})
    refused = [r for r in result.rejections if r.reason == "unknown_unit"]
    assert 0 < len(refused) <= 5 and result.observations


def test_options_defaults_and_limits() -> None:
    options = EmailDirectoryCollector.Options.model_validate({})
    assert options.model_dump() == {
        "regular_use_days": 30, "logon_frequency_days": 7, "unit_attribute": "ou",
        "unit_map": {}, "max_rejected_share": 0.05, "page_size": 500}
    EmailDirectoryCollector.Options.model_validate({"regular_use_days": 1, "logon_frequency_days": 1})
    for bad in ({"regular_use_days": 0}, {"page_size": 1001}, {"unit_attribute": ""},
                {"regular_use_day": 30}):
        with pytest.raises(ValidationError):
            EmailDirectoryCollector.Options.model_validate(bad)
