"""One contract suite, run over every HTTP collector in ``COLLECTORS`` and its recorded payload set.

A new HTTP collector is covered by adding its row to ``COLLECTORS`` and a
payload set (``payloads/<kind>/case.json`` plus the recorded answers). Kinds
that read databases, directories or files are tested against those in their
own modules; ``test_every_kind_is_tested`` keeps the table honest.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, timedelta
from pathlib import Path

import pytest

import collectors
from collectors import (
    COLLECTORS,
    CollectionResult,
    MalformedPayload,
    SourceAuthError,
    SourceTimeout,
    SourceUnavailable,
    collector_class,
)
from monitor.catalog import load_catalog
from monitor.timeutil import Period, local_date
from tests.collectors.conftest import PAYLOADS, TZ, Harness, load_payloads, remove_field

KINDS = sorted(k for k in COLLECTORS if (PAYLOADS / k).is_dir())
TESTS = Path(__file__).parent


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_table_resolves_every_kind(kind: str) -> None:
    cls = collector_class(kind)
    assert cls.kind == kind
    assert cls.Options.model_validate(load_payloads(kind).case["options"])


def test_an_unknown_kind_lists_the_known_ones() -> None:
    known = ", ".join(sorted(COLLECTORS))
    with pytest.raises(ValueError, match=re.escape(f"unknown source kind 'ldap' (known kinds: {known})")):
        collector_class("ldap")


def test_every_kind_is_tested() -> None:
    """Each kind has a recorded payload set here or a test module of its own."""
    for kind in COLLECTORS:
        assert kind in KINDS or (TESTS / f"test_{kind}.py").is_file(), kind


def test_public_names_are_sorted() -> None:
    assert collectors.__all__ == sorted(collectors.__all__)


def expected_periods(kind: str) -> set[Period]:
    payloads = load_payloads(kind)
    if collector_class(kind).supports_history:
        return set(payloads.periods)
    return {Period.containing(payloads.now, "day", TZ)}


async def test_recorded_answers_become_valid_observations(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    result = await harness.collect(payloads)
    assert isinstance(result, CollectionResult)
    assert result.observations, "the recording should yield observations"
    assert result.rejections == [], "the recording is clean"
    catalog = load_catalog()
    allowed = expected_periods(kind)
    for obs in result.observations:
        assert obs.measure in catalog.measures, obs
        assert catalog.measures[obs.measure].source_kind == kind, obs
        assert obs.unit in payloads.units
        for instant in (obs.period.start, obs.period.end):
            assert instant.tzinfo is not None and instant.utcoffset() == timedelta(0)
        assert obs.period.start < obs.period.end
        assert obs.period in allowed
        assert math.isfinite(obs.value) and obs.value >= 0
        assert obs.raw_ref and obs.raw_ref.startswith(f"GET {payloads.path}")
    produced = {obs.measure for obs in result.observations}
    declared = {m for m, spec in catalog.measures.items() if spec.source_kind == kind}
    assert produced == declared, "every measure of this kind is produced, and no other"
    keys = [(o.measure, o.unit, o.period) for o in result.observations]
    assert len(keys) == len(set(keys)), "one observation per (measure, unit, period)"


async def test_asks_for_the_requested_span(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    await harness.collect(payloads)
    first = harness.server.requests[0]
    assert first.path == payloads.path
    if collector_class(kind).supports_history:
        periods = payloads.periods
        assert first.query["from"] == local_date(periods[0].start, TZ).isoformat()
        assert first.query["to"] == (local_date(periods[-1].end, TZ) - timedelta(days=1)).isoformat()
        assert first.query["grain"] == payloads.case["grain"]


async def test_unknown_units_are_rejected_not_stored(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    dropped = payloads.case["units"][0]
    result = await harness.collect(payloads, units=payloads.units - {dropped})
    assert all(obs.unit != dropped for obs in result.observations)
    unknown = [r for r in result.rejections if r.reason == "unknown_unit"]
    assert unknown and all(r.unit == dropped and dropped in r.detail for r in unknown)
    assert result.observations, "the other units are still read"


async def test_malformed_json_after_retries(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    harness.server.answer(b'{"data": [{"OrganId": "000.00.01.H99", "Tong')
    with pytest.raises(MalformedPayload):
        await harness.collect(payloads)
    assert harness.server.attempts(payloads.path) == 3
    assert harness.sleeps == [0.5, 1.0]


async def test_5xx_is_transient_unavailable_after_retries(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    harness.server.fail(503, {"error": "Máy chủ quá tải"})
    with pytest.raises(SourceUnavailable) as caught:
        await harness.collect(payloads, retries=2)
    assert not caught.value.permanent
    assert harness.server.attempts(payloads.path) == 2 + 1


async def test_401_is_permanent_after_one_attempt(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    harness.server.fail(401, {"error": "Mã truy cập hết hạn"})
    with pytest.raises(SourceAuthError) as caught:
        await harness.collect(payloads)
    assert caught.value.permanent
    assert harness.server.attempts(payloads.path) == 1
    assert harness.sleeps == []


async def test_429_waits_what_the_source_says(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    harness.server.fail(429, headers={"Retry-After": "3"}, times=1)
    result = await harness.collect(payloads)
    assert harness.sleeps == [3.0]
    assert result.observations


async def test_timeout(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    harness.server.hang()
    with pytest.raises(SourceTimeout):
        await harness.collect(payloads, timeout=0.1, retries=0)


async def test_schema_drift_in_every_record_is_malformed(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    field = payloads.case["drift_field"]
    for record in payloads.records():
        remove_field(record, field)
    with pytest.raises(MalformedPayload) as caught:
        await harness.collect(payloads)
    assert field in str(caught.value)
    assert "expected fields" in str(caught.value)


async def test_schema_drift_in_one_record_rejects_that_record(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    baseline = await harness.collect(payloads)
    field = payloads.case["drift_field"]
    remove_field(payloads.records()[0], field)
    result = await harness.collect(payloads)
    assert [r.reason for r in result.rejections] == ["schema"]
    rejection = result.rejections[0]
    assert f"field {field} missing" in rejection.detail
    assert rejection.raw_ref and rejection.raw_ref.endswith("#0")
    kept = {(o.measure, o.unit, o.period, o.value) for o in result.observations}
    before = {(o.measure, o.unit, o.period, o.value) for o in baseline.observations}
    assert kept and kept != before
    assert {k[:3] for k in kept} <= {b[:3] for b in before}


async def test_periods_are_utc_instants(harness: Harness, kind: str) -> None:
    payloads = load_payloads(kind)
    result = await harness.collect(payloads)
    assert {obs.period.start.tzinfo for obs in result.observations} == {UTC}
