"""The simulated province's own rule pack, written by ``egovmon demo``.

The shipped national targets all fell due in 2025 or fall due in 2030, so on
their own they would show the demo's units as met or missed. A province also
sets its own nearer targets; this pack plays that part for Tỉnh Sơn Hà, with
deadlines relative to the demo's today so glide paths, "at risk" and forecasts
are always visible. Its citation says plainly that the plan is simulated.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import yaml


def demo_rules(today: date, data_from: date) -> dict[str, Any]:
    next_year_end = date(today.year + 1, 12, 31)
    mid_next_year = date(today.year + 1, 6, 30)
    citation = {"instrument": "KH 150/KH-UBND (mô phỏng)", "date": date(today.year, 1, 15).isoformat(),
                "title": "Kế hoạch chuyển đổi số tỉnh Sơn Hà (tỉnh mô phỏng của bản demo)",
                "verified": False,
                "note": "A simulated province's plan, for the demo only: no real instrument sets these figures."}
    baseline = {"first_observation": True, "since": data_from.isoformat()}
    rules: list[dict[str, Any]] = [
        {"id": "son-ha-edoc-departments", "kpi": "outgoing_docs_electronic_rate",
         "title": {"vi": "Sở, ngành phát hành 95% văn bản đi dạng điện tử",
                   "en": "Departments issue 95 % of outgoing documents electronically"},
         "units": {"groups": ["so_nganh"]}, "window": "ytd", "target": "95%", "deadline": next_year_end,
         "baseline": baseline, "trajectory": "linear"},
        {"id": "son-ha-work-records-communes", "kpi": "work_records_online_rate",
         "title": {"vi": "Cấp xã xử lý 85% hồ sơ công việc trên môi trường mạng",
                   "en": "Communes process 85 % of work records online"},
         "units": {"groups": ["xa"]}, "window": "ytd", "target": "85%", "deadline": next_year_end,
         "baseline": baseline, "trajectory": "linear"},
        {"id": "son-ha-online-dossiers", "kpi": "online_dossier_rate",
         "title": {"vi": "60% hồ sơ TTHC tiếp nhận trực tuyến", "en": "60 % of dossiers received online"},
         "units": {"groups": ["tinh", "so_nganh", "xa"]}, "window": "ytd", "target": "60%",
         "deadline": next_year_end, "baseline": baseline,
         "trajectory": {"type": "milestones", "milestones": [{"date": mid_next_year.isoformat(), "value": "52%"}]}},
        {"id": "son-ha-email-regular-use", "kpi": "official_email_regular_use_rate",
         "title": {"vi": "90% hộp thư công vụ được sử dụng thường xuyên",
                   "en": "90 % of official mailboxes in regular use"},
         "units": {"groups": ["tinh", "so_nganh", "xa"]}, "target": "90%", "deadline": mid_next_year,
         "severity": "critical"},
    ]
    for rule in rules:
        rule["deadline"] = rule["deadline"].isoformat()
        rule["citation"] = citation
    return {"version": 1, "pack": "son-ha-demo",
            "title": {"vi": "Chỉ tiêu của tỉnh Sơn Hà (mô phỏng)", "en": "Sơn Hà province's own targets (simulated)"},
            "defaults": {"severity": "warning", "at_risk_margin": 0.05, "resolve_margin": 0.02,
                         "notify": {"to": ["unit_head"], "for": "1d", "repeat": "7d"},
                         "escalate": [{"after": "30d", "to": ["parent_head"]}]},
            "rules": rules}


def write_demo_rules(path: Path, today: date, data_from: date) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by `egovmon demo`: the simulated province's own targets (see monitor/demo_rules.py).\n"
    text = yaml.safe_dump(demo_rules(today, data_from), allow_unicode=True, sort_keys=False)
    path.write_text(header + text, encoding="utf-8")
