"""Who hears about an alert, from the unit tree.

A rule names roles (``unit_head``, ``parent_head``, ``province_head``) or
addresses in ``notify.to`` / ``notify.cc`` and in each escalation step. Roles
are resolved on the day of the alert: the unit's head, the nearest ancestor
with a head, and the provincial leadership (``alerts.province_head``, else the
head of the root unit). Addresses in ``alerts.cc`` are copied on every target
alert. A role nobody holds goes to the operators, so no alert is unroutable
while an operator is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from monitor.alerts.model import Language, Recipient
from monitor.config import AlertsConfig, PersonConfig
from monitor.targets.model import ROLE_RECIPIENTS, TargetRule
from monitor.units import Head, UnitTree


@dataclass(frozen=True)
class Routed:
    recipient: Recipient
    role: str  # unit_head, parent_head, province_head, cc, escalation, operator


class Router:
    def __init__(self, units: UnitTree, alerts: AlertsConfig, language: Language) -> None:
        self.units = units
        self.alerts = alerts
        self.language = language

    def _person(self, email: str, name: str | None, language: Language | None = None) -> Recipient:
        chosen = self.alerts.languages.get(email) or language or self.language
        return Recipient(email=email, name=name, language=chosen)

    def _configured(self, person: PersonConfig) -> Recipient:
        return self._person(person.email, person.name, person.language)

    def _head(self, head: Head | None) -> Recipient | None:
        return self._person(head.email, head.name) if head else None

    def operators(self) -> list[Routed]:
        return [Routed(self._configured(p), "operator") for p in self.alerts.operators]

    def role(self, role: str, unit_code: str, day: date) -> Recipient | None:
        if role not in ROLE_RECIPIENTS:
            return self._person(role, None)  # a literal address
        unit = self.units.get(unit_code, day)
        if unit is None:
            return None
        if role == "unit_head":
            return self._head(unit.head)
        chain = [self.units.get(code, day) for code in self.units.ancestors(unit_code, day)]
        if role == "parent_head":
            return next((self._head(u.head) for u in chain if u is not None and u.head), None)
        if role == "province_head":
            if self.alerts.province_head is not None:
                return self._configured(self.alerts.province_head)
            roots = [u for u in chain if u is not None] or [unit]
            return self._head(roots[-1].head)
        return None

    def for_target(self, rule: TargetRule, unit_code: str, level: int, day: date) -> list[Routed]:
        """Everyone told about (rule, unit) at escalation ``level``: the rule's
        recipients, each escalation step reached, the CC lists. One entry per address."""
        wanted: list[tuple[str, str]] = [(r, r if r.count("@") == 0 else "address") for r in rule.notify.to]
        wanted += [(r, "cc") for r in rule.notify.cc]
        for step in rule.escalate[:level]:
            wanted += [(r, "escalation") for r in step.to]
        routed: dict[str, Routed] = {}
        for who, role in wanted:
            recipient = self.role(who, unit_code, day)
            if recipient is None:
                for operator in self.operators():
                    routed.setdefault(operator.recipient.email, Routed(operator.recipient, f"operator ({who})"))
                continue
            routed.setdefault(recipient.email, Routed(recipient, role))
        for address in self.alerts.cc:
            routed.setdefault(address, Routed(self._person(address, None), "cc"))
        return list(routed.values())
