"""The whole alert cycle on the simulated province, mail received by a real SMTP
server (aiosmtpd): one digest per head, nothing twice, resolved notices,
inhibition by a broken source, silences and the sending window.

Expected recipients are recomputed from the evaluations and the unit tree, not
taken from the alert engine.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import Fault
from monitor.timeutil import FrozenClock, local_date
from tests.support.province import NOW, simulated_service
from tests.support.smtp import SmtpServer

OPERATOR = "cntt@sonha.gov.vn"
FIRE_ON = ("behind", "missed")


def alert_settings(smtp: SmtpServer, **alerts: Any) -> dict[str, Any]:
    return {"smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none", "timeout": "5s",
                     "sender": "Giám sát CQĐT <egovmon@sonha.gov.vn>"},
            "alerts": {"sending_windows": [], "operators": [{"name": "Phòng CNTT", "email": OPERATOR}], **alerts}}


def parsed(smtp: SmtpServer, start: int = 0) -> list[EmailMessage]:
    return [message_from_bytes(m.content, policy=policy.default) for m in smtp.received[start:]]  # type: ignore[misc]


def expected_heads(service: MonitorService, now: datetime) -> dict[str, set[str]]:
    """Head email → units with a target that is bad now and was bad ``for`` ago."""
    day = local_date(now, service.config.tz)
    heads: dict[str, set[str]] = {}
    for rule in service.rules:
        assert rule.notify.to == ("unit_head",) and not rule.notify.cc  # what this recomputation assumes
    bad_now = [e for e in service.evaluations if e.status in FIRE_ON]
    for_by_rule = {r.id: r.notify.for_ for r in service.rules}
    for for_ in set(for_by_rule.values()):
        rules = [r for r in service.rules if r.notify.for_ == for_]
        ids = {r.id for r in rules}
        wanted = [e for e in bad_now if e.rule in ids]
        earlier = {(e.rule, e.unit): e.status for e in service.evaluator.evaluate(
            rules, now - for_, units={e.unit for e in wanted})}
        for e in wanted:
            if earlier.get((e.rule, e.unit)) in FIRE_ON:
                unit = service.units.get(e.unit, day)
                assert unit is not None and unit.head is not None
                heads.setdefault(unit.head.email, set()).add(e.unit)
    return heads


async def test_one_digest_per_head_nothing_twice_then_a_resolved_notice(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    clock = FrozenClock(NOW)
    async with SmtpServer() as smtp, simulated_service(
            tmp_path, province, clock=clock, database_url=database,
            extra={**alert_settings(smtp), "http": {"listen": "127.0.0.1:0",
                                                    "public_url": "https://giamsat.sonha.gov.vn"}}) as (service, _, _):
        await service.refresh_kpis()
        expected = expected_heads(service, NOW)
        assert len(expected) > 20  # the simulated province has many units behind
        messages = parsed(smtp)
        recipients = Counter(str(m["To"].addresses[0].addr_spec) for m in messages)
        assert recipients == Counter(dict.fromkeys(expected, 1))  # exactly one digest each, nobody else
        day = local_date(NOW, service.config.tz)
        for message in messages:
            address = message["To"].addresses[0]
            units = expected[address.addr_spec]
            names = {service.units.get(code, day).name for code in units}  # type: ignore[union-attr]
            head = service.units.get(next(iter(units)), day).head  # type: ignore[union-attr]
            assert address.display_name == head.name  # type: ignore[union-attr]
            subject = str(message["Subject"])
            assert subject.startswith("[Tỉnh Sơn Hà]") or "Tỉnh Sơn Hà" in subject
            if len(units) == 1:
                assert names.pop() in subject
            raw_headers = smtp.received[messages.index(message)].content.split(b"\r\n\r\n", 1)[0]
            assert raw_headers.isascii()  # RFC 2047: Vietnamese travels encoded
            assert [p.get_content_type() for p in message.walk()][1:] == ["text/plain", "text/html"]
            text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert all(f"https://giamsat.sonha.gov.vn/reports/gap?unit={code}" in text for code in units)

        # Nothing changed: a second cycle sends nothing new.
        before = len(smtp.received)
        clock.advance(timedelta(minutes=5))
        await service.refresh_kpis()
        assert len(smtp.received) == before

        # Fix one unit's data: its head hears that it is resolved, and only that.
        firing = [r for r in service.alerting.alerts.load(states=("firing",)) if r.kind == "target"]
        target = _fixable(service, firing, day)
        kpi = service.catalog.kpis[target.kpi or ""]
        _make_perfect(service, target.unit, kpi.numerator[0], kpi.denominator[0])
        clock.advance(timedelta(minutes=5))
        await service.refresh_kpis()
        fixed = service.alerting.alerts.get(target.id or 0)
        assert fixed is not None and fixed.state == "resolved" and fixed.notified_state == "resolved"
        new = parsed(smtp, before)
        head = service.units.get(target.unit, day).head  # type: ignore[union-attr]
        to_head = [m for m in new if m["To"].addresses[0].addr_spec == head.email]  # type: ignore[union-attr]
        assert len(to_head) == 1
        body = to_head[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "đã khắc phục" in body.lower()
        assert len(set(smtp.message_ids())) == len(smtp.received)

        # Broken again right after: history shows it firing a moment ago, so it must wait
        # `for` in real time before anyone is told again.
        _make_zero(service, target.unit, kpi.numerator[0])
        clock.advance(timedelta(minutes=5))
        count = len(smtp.received)
        await service.refresh_kpis()
        again = service.alerting.alerts.get(target.id or 0)
        assert again is not None and again.state == "pending" and len(smtp.received) == count


def _fixable(service: MonitorService, firing: list[Any], day: Any) -> Any:
    """A firing alert on a unit without children whose KPI is one measure over one measure."""
    for record in firing:
        kpi = service.catalog.kpis[record.kpi]
        if (len(kpi.numerator) == 1 and len(kpi.denominator) == 1 and not service.units.children(record.unit, day)
                and record.status == "behind"):
            return record
    pytest.fail("no single-measure firing alert on a leaf unit to fix")


def _make_perfect(service: MonitorService, unit: str, numerator: str, denominator: str) -> None:
    """Every stored period of the unit: numerator = denominator (the KPI at 100 %)."""
    with service.engine.begin() as connection:
        changed = connection.execute(text(
            "UPDATE observations SET value = (SELECT d.value FROM observations d WHERE d.unit = observations.unit "
            "AND d.measure = :den AND d.period_start = observations.period_start "
            "AND d.period_end = observations.period_end AND d.source = observations.source) "
            "WHERE unit = :unit AND measure = :num AND EXISTS (SELECT 1 FROM observations d "
            "WHERE d.unit = observations.unit AND d.measure = :den AND d.period_start = observations.period_start "
            "AND d.period_end = observations.period_end AND d.source = observations.source)"),
            {"unit": unit, "num": numerator, "den": denominator}).rowcount
    assert changed > 0


def _make_zero(service: MonitorService, unit: str, numerator: str) -> None:
    with service.engine.begin() as connection:
        assert connection.execute(text("UPDATE observations SET value = 0 WHERE unit = :unit AND measure = :num"),
                                  {"unit": unit, "num": numerator}).rowcount > 0


async def test_a_source_down_inhibits_its_kpis_and_tells_the_operator_once(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    clock = FrozenClock(NOW)
    async with SmtpServer() as smtp, simulated_service(
            tmp_path, province, clock=clock, database_url=database,
            extra=alert_settings(smtp, source_for="10m")) as (service, simulators, _):
        _sources_fresh(service, NOW)
        await service.refresh_kpis()
        day = local_date(NOW, service.config.tz)
        # A unit that is fine on a one-stop KPI, about to be broken while the source is down.
        fine = _fine_one_stop_unit(service, day)
        baseline = len(smtp.received)

        simulators.set_fault("one_stop", Fault("http_503"))
        clock.advance(timedelta(minutes=5))
        summary = await service.runner.collect("mot-cua")
        assert not summary.ok
        _make_zero(service, fine.unit, service.catalog.kpis[fine.kpi].numerator[0])
        await service.refresh_kpis()
        clock.advance(timedelta(minutes=11))
        await service.runner.collect("mot-cua")
        await service.refresh_kpis()
        clock.advance(timedelta(minutes=5))
        await service.refresh_kpis()

        new = parsed(smtp, baseline)
        assert [m["To"].addresses[0].addr_spec for m in new] == [OPERATOR]  # one mail, to the operator only
        body = new[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "mot-cua" in body
        source_alert = [r for r in service.alerting.alerts.load() if r.kind == "source"]
        assert [(r.rule, r.state) for r in source_alert] == [("mot-cua", "firing")]
        held = [r for r in service.alerting.alerts.load() if r.rule == fine.rule and r.unit == fine.unit]
        assert all(r.state != "firing" for r in held)

        # The source comes back: the operator hears it, and the held-back alert goes ahead.
        simulators.clear_faults()
        clock.advance(timedelta(minutes=5))
        assert (await service.runner.collect("mot-cua")).ok
        _make_zero(service, fine.unit, service.catalog.kpis[fine.kpi].numerator[0])  # the collection restored it
        await service.refresh_kpis()
        after = parsed(smtp, baseline + 1)
        addresses = [m["To"].addresses[0].addr_spec for m in after]
        assert OPERATOR in addresses
        head = service.units.get(fine.unit, day).head  # type: ignore[union-attr]
        assert head.email in addresses  # type: ignore[union-attr]


def _fine_one_stop_unit(service: MonitorService, day: Any) -> Any:
    one_stop = service.store.source_measures()["mot-cua"]
    for e in service.evaluations:
        kpi = service.catalog.kpis[e.kpi]
        if (e.status == "met" and set(kpi.measures) <= one_stop and not service.units.children(e.unit, day)
                and (e.rule, e.unit) not in {(r.rule, r.unit) for r in service.alerting.alerts.load()}):
            return e
    pytest.fail("no unit meeting a one-stop target")


async def test_silence_holds_exactly_what_it_matches_until_it_ends(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    clock = FrozenClock(NOW)
    async with SmtpServer() as smtp, simulated_service(
            tmp_path, province, clock=clock, database_url=database, extra=alert_settings(smtp)) as (service, _, _):
        day = local_date(NOW, service.config.tz)
        await service._refresh(None)  # evaluations only, no alerts yet
        heads = expected_heads(service, NOW)
        silenced_unit = sorted(u for units in heads.values() for u in units)[0]
        silenced_head = service.units.get(silenced_unit, day).head.email  # type: ignore[union-attr]
        silence = service.alerting.silences.add(
            rule=None, unit=silenced_unit, kpi=None, source=None, subtree=False, starts_at=NOW,
            ends_at=NOW + timedelta(hours=2), reason="kiểm tra dữ liệu", created_by="test", now=NOW)
        await service.alert_cycle(service.rules, service.evaluations)
        got = Counter(m["To"].addresses[0].addr_spec for m in parsed(smtp))
        only_silenced = {h for h, units in heads.items() if units == {silenced_unit}}
        assert set(got) == set(heads) - only_silenced
        assert silenced_head not in got or heads[silenced_head] != {silenced_unit}
        count = len(smtp.received)
        clock.advance(timedelta(hours=1))
        await service.alert_cycle()
        assert len(smtp.received) == count  # still silenced
        clock.advance(timedelta(hours=1, minutes=1))
        await service.alert_cycle()
        late = parsed(smtp, count)
        assert [m["To"].addresses[0].addr_spec for m in late] == [silenced_head]
        assert silence.id > 0


async def test_mail_due_at_night_goes_out_when_the_window_opens(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    night = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # Tuesday 23:00 in Hanoi
    clock = FrozenClock(night)
    window = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:30", "end": "17:30"}]
    async with SmtpServer() as smtp, simulated_service(
            tmp_path, province, clock=clock, database_url=database,
            extra=alert_settings(smtp, sending_windows=window, holidays=["2026-11-25"])) as (service, _, _):
        _sources_fresh(service, night)
        await service.refresh_kpis()
        assert smtp.received == []
        assert service.alerting.outbox.stats(night).counts["pending"] == 0  # not even composed yet
        assert service.alerting.alerts.load(states=("firing",))  # but firing
        # Wednesday is a holiday: nothing; Thursday 07:30 it goes out.
        clock.advance(timedelta(hours=8, minutes=30))  # Wednesday 07:30
        await service.alert_cycle()
        assert smtp.received == []
        clock.advance(timedelta(days=1))  # Thursday 07:30
        _sources_fresh(service, clock.now())
        await service.alert_cycle()
        assert len(smtp.received) > 20
        assert {m["Date"].datetime for m in parsed(smtp)} == {night + timedelta(days=1, hours=8, minutes=30)}


def _sources_fresh(service: MonitorService, at: datetime) -> None:
    """As if every source had just been collected (the data itself stays as stored)."""
    for source in ("qlvb", "thu-cong-vu", "mot-cua"):
        service.store.record_attempt(source, at=at, duration=0.1, ok=True, observations=1, rejections=0)


async def test_two_instances_notifying_at_once_send_each_digest_once(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    import asyncio

    from monitor.config import load_config

    clock = FrozenClock(NOW)
    async with SmtpServer() as smtp, simulated_service(
            tmp_path, province, clock=clock, database_url=database,
            extra=alert_settings(smtp)) as (first, _, config):
        second = MonitorService(load_config(config.path), clock=clock)  # type: ignore[arg-type]
        try:
            _sources_fresh(first, NOW)
            await first._refresh(None)
            first.alerting.update(first.rules, first.evaluations, NOW)
            heads = expected_heads(first, NOW)
            summaries = await asyncio.gather(asyncio.to_thread(first.alerting.notify, first.rules, NOW),
                                             asyncio.to_thread(second.alerting.notify, second.rules, NOW))
            assert sum(s.digests for s in summaries) == len(heads)
            assert sorted(s.digests for s in summaries)[0] == 0  # the loser sent nothing
            # Re-running the whole cycle on either instance adds nothing.
            await second.alert_cycle(second.rules, first.evaluations)
            await first.alert_cycle(first.rules, first.evaluations)
            stats = first.alerting.outbox.stats(NOW).counts
            assert stats["sent"] == len(heads) and stats["pending"] == 0
            assert Counter(smtp.message_ids()) == Counter(dict.fromkeys(set(smtp.message_ids()), 1))
            assert len(smtp.received) == len(heads)
        finally:
            await second.aclose()
