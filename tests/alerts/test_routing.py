"""Who is told: roles resolved on the unit tree, escalation steps, CC lists,
languages, and the operators when a role has nobody."""

from __future__ import annotations

from datetime import date
from typing import Any

from monitor.alerts.routing import Router
from monitor.config import AlertsConfig
from monitor.targets.model import TargetRule
from monitor.units import Unit, build_tree

DAY = date(2026, 12, 1)
UNITS: list[dict[str, Any]] = [
    {"code": "000.00.00.H99", "name": "UBND tỉnh Mẫu", "level": "province", "group": "tinh",
     "head": {"name": "Trần Văn Chủ", "email": "chutich@mau.gov.vn"}},
    {"code": "000.00.01.H99", "name": "Sở Nội vụ", "level": "department", "group": "so_nganh",
     "parent": "000.00.00.H99", "head": {"name": "Nguyễn Thị Hằng", "email": "hang.snv@mau.gov.vn"}},
    {"code": "000.01.01.H99", "name": "Trung tâm Phục vụ hành chính công", "level": "agency",
     "group": "don_vi_truc_thuoc", "parent": "000.00.01.H99",
     "head": {"name": "Lê Minh Đức", "email": "duc.ttpvhcc@mau.gov.vn"}},
    {"code": "000.01.02.H99", "name": "Chi cục Văn thư – Lưu trữ", "level": "agency",
     "group": "don_vi_truc_thuoc", "parent": "000.00.01.H99"},  # no head recorded
]
TREE = build_tree([Unit.model_validate(u) for u in UNITS], {}, "units.yaml")


def rule(**notify: Any) -> TargetRule:
    return TargetRule.model_validate({
        "id": "r", "kpi": "edoc_ratio", "units": {"levels": ["agency"]}, "target": 0.9, "deadline": "2027-12-31",
        "notify": {"to": ["unit_head"], **notify}, "escalate": [{"after": "30d", "to": ["parent_head"]},
                                                                 {"after": "60d", "to": ["province_head"]}],
        "citation": {"instrument": "QĐ 942/QĐ-TTg", "date": "2021-06-15", "title": "Chiến lược CPĐT"}})


def emails(routed: list[Any]) -> list[tuple[str, str]]:
    return [(r.recipient.email, r.role) for r in routed]


def test_escalation_adds_the_parent_then_the_province_head() -> None:
    router = Router(TREE, AlertsConfig(), "vi")
    assert emails(router.for_target(rule(), "000.01.01.H99", 0, DAY)) == [("duc.ttpvhcc@mau.gov.vn", "unit_head")]
    assert emails(router.for_target(rule(), "000.01.01.H99", 1, DAY)) == [
        ("duc.ttpvhcc@mau.gov.vn", "unit_head"), ("hang.snv@mau.gov.vn", "escalation")]
    assert emails(router.for_target(rule(), "000.01.01.H99", 2, DAY)) == [
        ("duc.ttpvhcc@mau.gov.vn", "unit_head"), ("hang.snv@mau.gov.vn", "escalation"),
        ("chutich@mau.gov.vn", "escalation")]


def test_configured_leadership_cc_and_languages() -> None:
    settings = AlertsConfig.model_validate({
        "province_head": {"name": "Văn phòng UBND tỉnh", "email": "vp@mau.gov.vn"},
        "cc": ["giamsat@mau.gov.vn"], "languages": {"duc.ttpvhcc@mau.gov.vn": "en"}})
    router = Router(TREE, settings, "vi")
    routed = router.for_target(rule(cc=["thanhtra@mau.gov.vn"]), "000.01.01.H99", 2, DAY)
    assert emails(routed) == [("duc.ttpvhcc@mau.gov.vn", "unit_head"), ("thanhtra@mau.gov.vn", "cc"),
                              ("hang.snv@mau.gov.vn", "escalation"), ("vp@mau.gov.vn", "escalation"),
                              ("giamsat@mau.gov.vn", "cc")]
    languages = {r.recipient.email: r.recipient.language for r in routed}
    assert languages["duc.ttpvhcc@mau.gov.vn"] == "en" and languages["hang.snv@mau.gov.vn"] == "vi"
    assert routed[0].recipient.name == "Lê Minh Đức"


def test_a_unit_without_a_head_goes_to_the_operators() -> None:
    settings = AlertsConfig.model_validate({"operators": [{"name": "Phòng CNTT", "email": "cntt@mau.gov.vn"}]})
    routed = Router(TREE, settings, "vi").for_target(rule(), "000.01.02.H99", 0, DAY)
    assert emails(routed) == [("cntt@mau.gov.vn", "operator (unit_head)")]
    assert Router(TREE, AlertsConfig(), "vi").for_target(rule(), "000.01.02.H99", 0, DAY) == []
