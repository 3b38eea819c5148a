"""What the alerting parts hand each other: a digest for one recipient, its items,
and the outbox message that carries it.

The engine resolves every text to the recipient's language before it builds a
``Digest``, so the composer only lays out what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

Language = Literal["vi", "en"]
# What happened to an alert since the recipient last heard of it.
ItemKind = Literal["firing", "reminder", "escalated", "resolved", "flapping"]
AlertState = Literal["inactive", "pending", "firing", "resolved"]
ALERT_STATES: tuple[AlertState, ...] = ("inactive", "pending", "firing", "resolved")
OutboxStatus = Literal["pending", "sending", "sent", "failed"]
OUTBOX_STATUSES: tuple[OutboxStatus, ...] = ("pending", "sending", "sent", "failed")
DeliveryOutcome = Literal["sent", "transient", "permanent", "in_doubt", "expired"]


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str | None = None
    language: Language = "vi"


@dataclass(frozen=True)
class TargetItem:
    """One (rule, unit) in a digest, with everything a unit head needs to act."""

    kind: ItemKind
    rule: str
    rule_title: str  # in the recipient's language
    kpi: str
    kpi_name: str  # in the recipient's language
    unit: str
    unit_name: str  # in the recipient's language when the unit has one
    status: str  # met, on_track, at_risk, behind, missed, ...
    severity: str
    actual: float | None
    expected: float
    target: float
    comparator: str  # ">=" or "<="
    gap: float | None
    gap_to_target: float | None
    deadline: date
    forecast_value: float | None
    forecast_reached_on: date | None
    forecast_reachable: bool | None
    trend_per_year: float | None
    citation: str  # e.g. "QĐ 942/QĐ-TTg (15/6/2021): Chiến lược phát triển Chính phủ điện tử …"
    citation_url: str | None
    since: datetime | None  # when the alert fired (aware UTC)
    escalation_level: int  # 0: the unit head; 1, 2, …: escalation steps reached
    data_through: datetime | None
    report_url: str | None


@dataclass(frozen=True)
class SourceItem:
    """A source that is down or stale (for the operator), or back."""

    kind: Literal["firing", "reminder", "resolved"]
    source: str
    source_kind: str
    problem: Literal["down", "stale"]
    detail: str  # the last error, or how old the newest data is
    since: datetime | None
    last_success_at: datetime | None
    inhibited: int  # target alerts held back because of this source


@dataclass(frozen=True)
class Digest:
    """Everything one recipient is told in one cycle: one email."""

    recipient: Recipient
    province: str
    created_at: datetime  # aware UTC; shown in ``timezone``
    timezone: str  # IANA name, e.g. Asia/Ho_Chi_Minh
    items: tuple[TargetItem, ...] = ()
    sources: tuple[SourceItem, ...] = ()
    # The conversation this mail belongs to: the unit's code when the digest is
    # about one unit, else a key for the recipient; mails with the same key thread
    # together in the recipient's mail client.
    thread_key: str = ""
    cc: tuple[Recipient, ...] = field(default=())
    # Why the recipient is told (unit_head, parent_head, province_head, escalation, cc,
    # address, operator …): the footer says so.
    roles: tuple[str, ...] = ()
