"""Every source fault of issue 8, injected into the simulated systems over real HTTP,
against one running service: the service keeps working and loses nothing.

For each fault (tests/faults/cases.py): (a) what was stored before is intact, count
and checksum; (b) bad records are refused with their reason, counted in
``egov_observations_rejected_total`` and listed by ``GET /api/v1/sources/{id}/rejections``,
as many as the clean wire answer says the fault damaged; (c) the other sources carry
on; (d) while a source is down, no target alert starts from the KPIs it feeds.
The figures are printed at the end (``pytest -s``) and copied into docs/faults.md.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from monitor.http import HttpServer
from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import SimulatorServer
from monitor.timeutil import FrozenClock
from tests.faults.cases import CASES, PAGE_SIZE, SOURCE_OF_KIND, FaultCase, expected_rejections
from tests.faults.wire import api_rejections, clean_pages, fingerprint, measures_by_source
from tests.support.province import NOW, simulated_service
from tests.support.smtp import SmtpServer

SPAN = (date(2026, 10, 1), date(2026, 11, 22))
RETRY_REASONS = ("timeout", "unavailable", "rate_limited", "malformed", "auth", "request")
OPERATOR = "cntt@sonha.gov.vn"


@dataclass
class World:
    """The running service and what the clean baseline collection stored."""

    service: MonitorService
    simulators: SimulatorServer
    api: str
    clean: dict[str, list[list[Any]]]  # kind → the records of each page of the clean answer
    stored: dict[str, tuple[int, str]]  # source → (observations, checksum) after the baseline
    observations: dict[str, int]  # source → observations the baseline collection read
    measures: dict[str, set[str]]  # source → measures it stores

    def sample(self, name: str, **labels: str) -> float:
        return self.service.metrics.registry.get_sample_value(name, labels) or 0.0


def settings(smtp: SmtpServer) -> dict[str, Any]:
    # The default sending windows (weekdays) are closed on NOW, a Sunday: alerts change state
    # but no digest is composed, which keeps this test within its time budget.
    return {"smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none", "timeout": "5s",
                     "sender": "Giám sát CQĐT <egovmon@sonha.gov.vn>"},
            "alerts": {"operators": [{"name": "Phòng CNTT", "email": OPERATOR}]}}


async def test_every_source_fault_is_contained(tmp_path: Path, province: ProvinceModel) -> None:
    def source(kind: str, timeout: str = "2s") -> dict[str, Any]:
        options = {"page_size": PAGE_SIZE[kind]}
        return {"backfill_from": SPAN[0].isoformat(), "timeout": timeout, "options": options}

    # mot-cua gets the ``timeout`` fault: a short timeout keeps that case quick.
    sources: dict[str, Any] = {"qlvb": source("document_management"), "mot-cua": source("one_stop", "1s"),
                               "thu-cong-vu": source("email_directory")}
    async with SmtpServer() as smtp, simulated_service(
            tmp_path, province, clock=FrozenClock(NOW), extra=settings(smtp), **sources) as (service, simulators, _):
        http = HttpServer(service, "127.0.0.1", 0)
        await http.start()
        try:
            # Read first, the clean pages also warm the simulators' cache: their first answer
            # is computed, and must not hit mot-cua's short timeout.
            clean = {kind: await clean_pages(simulators, kind) for kind in SOURCE_OF_KIND}
            baseline = {s.source: s for s in await service.runner.collect_all(backfill=SPAN)}
            assert all(s.ok and s.observations > 0 and s.rejections == 0 for s in baseline.values()), baseline
            world = World(service, simulators, f"http://127.0.0.1:{http.port}", clean, fingerprint(service),
                          {k: s.observations for k, s in baseline.items()}, measures_by_source(service))
            assert not service.alerting.policy.is_open(NOW)
            alerted: set[str] = set()  # sources whose outage has had its alert check (d)
            figures = []
            for case in CASES:
                # The mail directory's KPIs are on target in the simulated province: its outage
                # has no bad evaluation to hold back, so the check (d) would prove nothing there.
                check_alerts = case.fails is not None and case.source not in alerted | {"thu-cong-vu"}
                started = time.perf_counter()
                figures.append(await check_case(world, case, check_alerts))
                figures[-1]["seconds"] = round(time.perf_counter() - started, 2)
                alerted |= {case.source} if check_alerts else set()
            assert {f["source"] for f in figures if f["held"]} == alerted == {"qlvb", "mot-cua"}
        finally:
            await http.stop()
        assert smtp.received == []  # outside the sending window nothing is sent
    report(figures)
    assert len(figures) == len(CASES) and sum(f["lost"] for f in figures) == 0


async def check_case(world: World, case: FaultCase, check_alerts: bool) -> dict[str, Any]:
    service, simulators, source = world.service, world.simulators, case.source
    retries = {r: world.sample("egov_collection_retries_total", source=source, reason=r) for r in RETRY_REASONS}
    rejected = world.sample("egov_observations_rejected_total", source=source, reason=case.rejects or "-")
    errors = world.sample("egov_collection_errors_total", source=source, reason=case.fails or "-")
    listed, _ = await api_rejections(world.api, source, 1)
    served = sum(simulators.faults_served.values())

    if case.fault is None:
        await simulators.stop_system(case.kind)
    else:
        simulators.set_fault(case.kind, case.fault)
    # The faulty source with the others, concurrently as ``collect_all`` does; the mail
    # directory (a second per run) only when it is the one at fault.
    sources = {source, "qlvb", "mot-cua"}
    try:
        summaries = {s.source: s for s in await asyncio.gather(
            *(service.runner.collect(s, backfill=SPAN) for s in sorted(sources)))}
    finally:
        if case.fault is None:
            await simulators.start_system(case.kind)
        simulators.clear_faults()
    summary = summaries[source]
    where = f"fault {case.name} on {source}"

    # The collection fails for the right reason after the right retries, or succeeds.
    if case.fails is None:
        assert summary.ok, f"{where}: {summary.error}"
    else:
        assert not summary.ok and summary.reason == case.fails, f"{where}: {summary}"
        assert case.message in (summary.error or ""), f"{where}: {summary.error}"
        assert world.sample("egov_collection_errors_total", source=source, reason=case.fails) == errors + 1
        health = {h.source: h for h in service.store.health()}[source]
        assert health.consecutive_failures >= 1 and health.last_success_at is not None, where
    assert summary.duration >= case.min_seconds * 0.95, f"{where}: retried too early ({summary.duration:.2f}s)"
    retried = {r: world.sample("egov_collection_retries_total", source=source, reason=r) - retries[r]
               for r in RETRY_REASONS}
    assert {r: n for r, n in retried.items() if n} == case.retries, f"{where}: retries {retried}"

    # (a) What was stored before is intact: same observations, same values.
    after = fingerprint(service)
    assert after == world.stored, f"{where}: stored observations changed"

    # (b) Bad records refused with their reason, counted, and listed by the API.
    expected = expected_rejections(case, world.clean[case.kind])
    assert (case.rejects is None) == (expected == 0), f"{where}: the fault damaged nothing"
    assert summary.rejected_by_reason == ({case.rejects: expected} if case.rejects else {}), where
    if case.rejects is not None:
        counted = world.sample("egov_observations_rejected_total", source=source, reason=case.rejects)
        assert counted - rejected == expected, where
        total, newest = await api_rejections(world.api, source, expected)
        assert total - listed == expected, where
        assert {(r["reason"], bool(r["detail"])) for r in newest} == {(case.rejects, True)}, where
    if case.fails is None:
        # The rest is stored: a refused record takes all its measures with it (a duplicate
        # takes nothing: the first copy is kept).
        per_record = 0 if case.rejects in (None, "duplicate") else len(world.measures[source])
        assert summary.observations == world.observations[source] - expected * per_record, where

    # (c) The other sources carry on.
    for other, theirs in summaries.items():
        if other != source:
            assert theirs.ok and theirs.rejections == 0, f"{where}: {other} {theirs}"
            assert theirs.observations == world.observations[other], f"{where}: {other}"

    held = await check_alerts_held(world, case) if check_alerts else 0
    lost = sum(abs(world.stored[s][0] - after.get(s, (0, ""))[0]) for s in world.stored)
    return {"case": case.name, "source": source, "mode": case.mode, "fails": case.fails or "-",
            # A closed port serves nothing: there, every attempt met the fault.
            "served": sum(simulators.faults_served.values()) - served or int(sum(retried.values())) + 1,
            "rejected": expected, "reason": case.rejects or "-", "retries": int(sum(retried.values())),
            "held": held, "lost": lost}


async def check_alerts_held(world: World, case: FaultCase) -> int:
    """(d) While ``case.source`` is down, the KPIs it feeds start no target alert: every bad
    evaluation of them is held back (``egov_alerts_inhibited``), while the other KPIs alert."""
    service = world.service

    def active() -> set[tuple[str, str, str | None]]:
        return {(r.rule, r.unit, r.kpi) for r in service.alerting.alerts.load(states=("pending", "firing"))
                if r.kind == "target"}

    before = active()
    await service.refresh_kpis()
    fed = {k for k, kpi in service.catalog.kpis.items() if set(kpi.measures) & world.measures[case.source]}
    bad = [e for e in service.evaluations if e.kpi in fed and e.status in service.config.alerts.fire_on
           and service.rules.get(e.rule) is not None]
    where = f"fault {case.name} on {case.source}"
    assert world.sample("egov_alerts_inhibited") == len(bad), where
    now = active()
    assert not {a for a in now - before if a[2] in fed}, f"{where}: a target alert started from incomplete data"
    assert any(a[2] not in fed for a in now), f"{where}: the healthy sources' KPIs raised no alert at all"
    return len(bad)


def report(figures: list[dict[str, Any]]) -> None:
    columns = ("case", "source", "mode", "fails", "served", "retries", "rejected", "reason", "held", "lost",
               "seconds")
    print("\nsource faults injected:")
    print(" | ".join(columns))
    for figure in figures:
        print(" | ".join(str(figure[c]) for c in columns))
    print(f"cases {len(figures)}, faulty answers served {sum(f['served'] for f in figures)}, "
          f"records refused {sum(f['rejected'] for f in figures)}, alerts held {sum(f['held'] for f in figures)}, "
          f"observations lost {sum(f['lost'] for f in figures)}")
