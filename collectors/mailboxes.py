"""Counting official mailboxes (Zimbra-style accounts), whatever directory they are read from.

The ``email_directory`` (Zimbra admin HTTP) and ``ldap_directory`` (LDAP) kinds
read the same accounts through different wires; what an account counts for is
decided here, once:

- Only ``active`` accounts count; one without ``zimbraLastLogonTimestamp``
  never logged in and is not in regular use. Regular use is a last logon at
  most ``regular_use_days`` before the snapshot instant.
- Zimbra writes ``zimbraLastLogonTimestamp`` at most once per
  ``zimbraLastLogonTimestampFrequency``, so a window shorter than that would
  count people who did log in as idle: ``regular_use_days`` must be at least
  ``logon_frequency_days``.
- A unit gets observations when the directory has at least one readable
  account for it, active or not (so "all mailboxes locked" is a true 0). A
  unit absent from the directory gets none: that is "no data", not 0 %.
- Accounts that are not active carry no number, so a non-active account of
  an unknown unit is skipped silently; an active one is rejected
  ``unknown_unit``. The same account read twice is counted once.
- The counts are a snapshot that replaces the day's stored one. When more than
  ``max_rejected_share`` of the accounts read could not be counted (unreadable,
  unknown unit), the snapshot is refused whole and the source reported down: its
  short counts would replace complete ones, and alerts would start from data the
  service knows to be incomplete.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Set
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt, create_model, model_validator

from collectors.base import CollectionResult, MalformedPayload, Observation, Rejection
from collectors.records import WireModel
from monitor.timeutil import Period

TOTAL, REGULAR = "email_accounts_total", "email_accounts_regular_use"
# RFC 4517 GeneralizedTime: hour, optional minute and second, an optional fraction of the
# last of them, then Z or an offset. Zimbra writes 20251118013000Z or 20251118013000.000Z;
# a directory may hand back any form its syntax checker accepted.
_GENERALIZED_TIME = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(\d{2})(?:(\d{2})(\d{2})?)?(?:[.,](\d+))?(Z|[+-]\d{2}(?:\d{2})?)$")


def generalized_time(value: Any) -> Any:
    """LDAP generalized time (``YYYYMMDDHHMMSSZ`` and the other RFC 4517 forms) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 15 and value[14] == "Z" and value[:14].isdigit():
        # Zimbra's own form, nearly every account: fromisoformat reads it at a fifth of the cost
        # of the general path below, which handles what it refuses (a leap second, say).
        try:
            return datetime.fromisoformat(f"{value[:8]}T{value[8:14]}+00:00")
        except ValueError:
            pass
    match = _GENERALIZED_TIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("expected LDAP generalized time YYYYMMDDHHMMSSZ")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    # A leap second (:60) is valid LDAP; Python has no such second, and one second is harmless.
    # datetime() checks the ranges as strptime would, at a tenth of its cost (a directory
    # of 10,000 accounts is 10,000 of these).
    try:
        whole = datetime(int(year), int(month), int(day), int(hour), int(minute or 0),
                         min(int(second or 0), 59), tzinfo=UTC)
    except ValueError:
        raise ValueError("expected LDAP generalized time YYYYMMDDHHMMSSZ: no such date or time") from None
    if fraction:  # a fraction of the last component given
        step = timedelta(seconds=1 if second else 60 if minute else 3600)
        whole += step * float(f"0.{fraction}")
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        whole -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5] or 0))
    return whole


class Mailbox(WireModel):
    """An account as counted: its name, its unit's raw value, status and last logon."""

    name: str
    unit: str = Field(alias="ou", min_length=1)  # re-aliased by ``mailbox_model``
    # Zimbra's statuses; "lockout" is a temporary lock after failed passwords.
    zimbraAccountStatus: Literal["active", "locked", "lockout", "closed", "maintenance", "pending"]
    zimbraLastLogonTimestamp: Annotated[datetime | None, BeforeValidator(generalized_time)] = None


@lru_cache(maxsize=32)
def mailbox_model(unit_field: str) -> type[Mailbox]:
    """``Mailbox`` with the unit read from the wire field ``unit_field``."""
    if unit_field == "ou":
        return Mailbox
    return create_model("Mailbox", __base__=Mailbox, unit=(str, Field(alias=unit_field, min_length=1)))


class MailboxOptions(BaseModel):
    """The options every mailbox directory kind shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    regular_use_days: PositiveInt = 30
    logon_frequency_days: PositiveInt = 7
    unit_map: dict[str, str] = {}  # unit value → unit code; unmapped values are codes
    # above this share of accounts not counted, the snapshot is refused (see the module docstring)
    max_rejected_share: Annotated[float, Field(ge=0, le=1)] = 0.05

    @model_validator(mode="after")
    def _window_covers_logon_frequency(self) -> Self:
        if self.regular_use_days < self.logon_frequency_days:
            raise ValueError(
                f"regular_use_days must be at least logon_frequency_days "
                f"({self.logon_frequency_days}), got: {self.regular_use_days}. The directory "
                "updates zimbraLastLogonTimestamp only once per "
                "zimbraLastLogonTimestampFrequency, so a shorter window would count people who "
                "did log in as not using their mailbox. Lengthen regular_use_days, or lower "
                "logon_frequency_days if the server's zimbraLastLogonTimestampFrequency is "
                "shorter (e.g. 1d)")
        return self


def count_mailboxes(
    accounts: Iterable[tuple[int, str, Mailbox]], units: Set[str], now: datetime,
    options: MailboxOptions, snapshot: Period, result: CollectionResult, *, unit_source: str,
) -> dict[str, tuple[int, int]]:
    """Unit → (active accounts, of which in regular use); rejections go to ``result``.

    ``unit_source`` names where the unit value came from, for the operator
    (``ou``, ``departmentNumber``, ``ou (level 1 below the base DN)``).
    """
    cutoff = now - timedelta(days=options.regular_use_days)
    totals: dict[str, tuple[int, int]] = {}
    names: set[str] = set()
    for index, ref, account in accounts:
        unit = options.unit_map.get(account.unit, account.unit)
        active = account.zimbraAccountStatus == "active"
        problem = _problem(account, unit, active, units, names, unit_source)
        names.add(account.name.casefold())
        if problem is not None:
            reason, detail = problem
            result.rejections.append(Rejection(
                reason, f"account {index} ({account.name}): {detail}", unit=unit,
                period=snapshot, raw_ref=ref))
        elif unit in units:  # else not active, and carries no number
            last = account.zimbraLastLogonTimestamp
            regular = active and last is not None and last >= cutoff
            total, in_use = totals.get(unit, (0, 0))
            totals[unit] = (total + active, in_use + regular)
    return totals


def _problem(
    account: Mailbox, unit: str, active: bool, units: Set[str], names: set[str], unit_source: str,
) -> tuple[str, str] | None:
    if account.name.casefold() in names:
        return "duplicate", "listed twice (did the directory change while read?); counted once"
    if active and unit not in units:
        mapped = f" (mapped by unit_map from {account.unit!r})" if unit != account.unit else ""
        return "unknown_unit", (
            f"{unit_source} = {unit!r}{mapped} is not a unit of the tree "
            "(add it to the units, or map it in options.unit_map)")
    return None


def refuse_short_snapshot(source_id: str, read: int, result: CollectionResult, options: MailboxOptions) -> None:
    """Raise when too many of the ``read`` accounts could not be counted (duplicates do not count:
    the account is counted once)."""
    refused = [r for r in result.rejections if r.reason != "duplicate"]
    if read and len(refused) > options.max_rejected_share * read:
        raise MalformedPayload(source_id, (
            f"{len(refused)} of {read} accounts could not be counted (first: {refused[0].reason}: "
            f"{refused[0].detail}); the snapshot was not stored, so the counts stored before stay. "
            f"Fix the directory or the mapping, or raise options.max_rejected_share "
            f"({options.max_rejected_share:g})"))


def snapshot_observations(
    totals: dict[str, tuple[int, int]], snapshot: Period, ref: str,
) -> list[Observation]:
    """The two stock measures per unit, for the snapshot day."""
    return [obs for unit, (active, regular) in sorted(totals.items()) for obs in (
        Observation(TOTAL, unit, snapshot, float(active), ref),
        Observation(REGULAR, unit, snapshot, float(regular), ref))]
