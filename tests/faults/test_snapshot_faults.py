"""The mail directory is a snapshot: a run that could not count many of its accounts (unknown
unit codes) must not replace the day's stored counts with smaller ones — KPIs and alerts
would follow data the service knows to be incomplete. The source is reported down instead."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import Fault
from monitor.storage.store import OBS
from monitor.timeutil import FrozenClock
from tests.support.province import NOW, simulated_service


def mail_counts(service: MonitorService) -> dict[tuple[str, str], float]:
    query = select(OBS.c.measure, OBS.c.unit, OBS.c.value).where(OBS.c.source == "thu-cong-vu")
    with service.engine.connect() as connection:
        return {(row.measure, row.unit): row.value for row in connection.execute(query)}


async def test_a_mail_snapshot_with_unknown_units_does_not_replace_the_stored_one(
        tmp_path: Path, province: ProvinceModel) -> None:
    async with simulated_service(tmp_path, province, clock=FrozenClock(NOW),
                                 extra={"alerts": {"enabled": False}}) as (service, simulators, _):
        assert (await service.runner.collect("thu-cong-vu")).ok
        before = mail_counts(service)
        simulators.set_fault("email_directory", Fault("unknown_unit"))
        summary = await service.runner.collect("thu-cong-vu")
        assert not summary.ok and summary.reason == "malformed"
        assert "accounts could not be counted (first: unknown_unit" in (summary.error or "")
        assert mail_counts(service) == before
        assert service.metrics.registry.get_sample_value(
            "egov_source_up", {"source": "thu-cong-vu", "kind": "email_directory"}) == 0
        simulators.clear_faults()
        assert (await service.runner.collect("thu-cong-vu")).ok  # a clean snapshot lands again
        assert mail_counts(service) == before
