"""Alert records as Alertmanager alerts, for provinces that already run one.

Labels identify the alert (Alertmanager groups, routes and silences on them),
so they hold only what does not change while it fires; the status (behind,
missed) and the text go in annotations. Firing alerts are sent every cycle;
resolved ones, with their ``endsAt``, for an hour after they resolve. The
alert names differ from those of ``rules export-prometheus`` (EgovTargetBehind)
so a province that uses both paths can tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from monitor.alerts.alertmanager import ForwardedAlert
from monitor.alerts.state import AlertRecord
from monitor.catalog import Catalog
from monitor.config import Config
from monitor.targets.loader import RuleSet
from monitor.timeutil import local_date
from monitor.units import UnitTree

RESOLVED_FOR = timedelta(hours=1)  # keep telling Alertmanager about a resolution this long


def forwarded_alerts(records: Iterable[AlertRecord], rules: RuleSet, catalog: Catalog, units: UnitTree,
                     config: Config, now: datetime) -> list[ForwardedAlert]:
    day = local_date(now, config.tz)
    base = config.http.public_url or f"http://{config.http.listen}"
    out = []
    for record in records:
        if record.state == "firing" and record.fired_at is not None:
            ends_at = None
        elif record.state == "resolved" and record.resolved_at and now - record.resolved_at < RESOLVED_FOR:
            ends_at = record.resolved_at
        else:
            continue
        if record.inhibited_by:
            continue
        labels = {"province": config.province.name, "severity": record.severity}
        annotations: dict[str, str] = {"status": record.status}
        if record.kind == "source":
            labels |= {"alertname": "EgovSourceAlert", "source": record.rule}
            annotations["summary"] = f"Nguồn dữ liệu {record.rule}: {record.status}"
            annotations["description"] = str(record.snapshot.get("detail", ""))
        else:
            rule = rules.get(record.rule)
            unit = units.get(record.unit, day)
            labels |= {"alertname": "EgovTargetAlert", "rule": record.rule, "unit": record.unit,
                       "kpi": record.kpi or ""}
            unit_name = unit.name if unit else record.unit
            kpi = catalog.kpis.get(record.kpi or "")
            annotations["summary"] = f"{unit_name}: {kpi.vi if kpi else record.kpi} — {record.status}"
            actual, expected = record.snapshot.get("actual"), record.snapshot.get("expected")
            if isinstance(actual, int | float) and isinstance(expected, int | float):
                annotations["description"] = f"thực tế {100 * actual:.1f} %, kỳ vọng {100 * expected:.1f} %"
            if rule is not None:
                annotations["citation"] = f"{rule.citation.instrument}: {rule.citation.title}"
            report_url = config.http.report_url(record.unit)
            if report_url:
                annotations["report_url"] = report_url
        out.append(ForwardedAlert(labels=labels, annotations=annotations, starts_at=record.fired_at or now,
                                  ends_at=ends_at, generator_url=f"{base.rstrip('/')}/api/v1/alerts"))
    return out
