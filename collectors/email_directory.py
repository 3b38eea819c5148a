"""Official email account directory (Zimbra-style): kind ``email_directory``.

The directory only knows the present, so it is read as a snapshot for the
local day of the clock's instant, whatever periods the runner passes.
``GET /service/admin/accounts?offset=&limit=`` pages through every account.

Decisions, and why:

- Only ``active`` accounts count; one without ``zimbraLastLogonTimestamp``
  never logged in and is not in regular use.
- An account that fails its schema (e.g. a malformed timestamp) is rejected
  whole and counted nowhere, not even as a mailbox: counting it in the total
  but not in regular use would bias the regular-use rate down; leaving it out
  of both keeps the rate right over the accounts that could be read, and the
  rejection tells the operator.
- A unit gets observations when the directory has at least one readable
  account for it, active or not (so "all mailboxes locked" is a true 0). A
  unit absent from the directory gets none: that is "no data", not 0 %.
- Accounts that are not active carry no number, so a non-active account of
  an unknown unit is skipped silently; an active one is rejected
  ``unknown_unit``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence, Set
from datetime import datetime, timedelta
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    create_model,
    model_validator,
)

from collectors.base import CollectionResult, Collector, Observation, Rejection
from collectors.records import WireModel, validate_records
from monitor.timeutil import Period

PATH = "/service/admin/accounts"
_GENERALIZED_TIME = re.compile(r"^(\d{14})(?:[.,]\d+)?Z$")


def _generalized_time(value: Any) -> Any:
    """LDAP generalized time ``YYYYMMDDHHMMSSZ`` (UTC) as an aware datetime."""
    if value is None:
        return None
    match = _GENERALIZED_TIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("expected LDAP generalized time YYYYMMDDHHMMSSZ")
    return datetime.strptime(match.group(1) + "+0000", "%Y%m%d%H%M%S%z")


class Account(WireModel):
    name: str
    unit: str = Field(alias="ou", min_length=1)  # re-aliased to options.unit_attribute
    zimbraAccountStatus: Literal["active", "locked", "closed", "maintenance", "pending"]
    zimbraLastLogonTimestamp: Annotated[datetime | None, BeforeValidator(_generalized_time)] = None


class EmailDirectoryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    regular_use_days: PositiveInt = 30
    logon_frequency_days: PositiveInt = 7
    unit_attribute: Annotated[str, Field(min_length=1)] = "ou"
    unit_map: dict[str, str] = {}  # attribute value → unit code; unmapped values are codes
    page_size: Annotated[int, Field(ge=1, le=1000)] = 500

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


class EmailDirectoryCollector(Collector):
    kind: ClassVar[str] = "email_directory"
    supports_history: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = EmailDirectoryOptions
    options: EmailDirectoryOptions

    @cached_property
    def account_model(self) -> type[Account]:
        """``Account``, with the unit read from ``options.unit_attribute``."""
        if self.options.unit_attribute == "ou":
            return Account
        return create_model(
            "Account", __base__=Account,
            unit=(str, Field(alias=self.options.unit_attribute, min_length=1)))

    async def collect(self, periods: Sequence[Period], units: Set[str]) -> CollectionResult:
        now = self.clock.now()
        result = CollectionResult()
        items = await self.http.get_offset_pages(
            PATH, records_key="accounts", limit=self.options.page_size)
        accounts = validate_records(
            self.source_id, self.account_model, items, result, what="account")
        snapshot = Period.containing(now, "day", self.tz)
        totals = self._tally(accounts, units, now, snapshot, result)
        ref = f"GET {PATH} as of {now:%Y-%m-%dT%H:%M:%SZ}"
        for unit, (active, regular) in sorted(totals.items()):
            result.observations += [
                Observation("email_accounts_total", unit, snapshot, float(active), ref),
                Observation("email_accounts_regular_use", unit, snapshot, float(regular), ref),
            ]
        return result

    def _tally(
        self, accounts: list[tuple[int, str, Account]], units: Set[str], now: datetime,
        snapshot: Period, result: CollectionResult,
    ) -> dict[str, tuple[int, int]]:
        """Unit → (active accounts, of which in regular use); rejections go to ``result``."""
        cutoff = now - timedelta(days=self.options.regular_use_days)
        totals: dict[str, tuple[int, int]] = {}
        names: set[str] = set()
        for index, ref, account in accounts:
            unit = self.options.unit_map.get(account.unit, account.unit)
            active = account.zimbraAccountStatus == "active"
            problem = self._problem(account, unit, active, units, names)
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
        self, account: Account, unit: str, active: bool, units: Set[str], names: set[str],
    ) -> tuple[str, str] | None:
        if account.name.casefold() in names:
            return "duplicate", "listed twice (did the directory change while read?); counted once"
        if active and unit not in units:
            mapped = f" (mapped by unit_map from {account.unit!r})" if unit != account.unit else ""
            return "unknown_unit", (
                f"{self.options.unit_attribute} = {unit!r}{mapped} is not a unit of the tree "
                "(add it to the units, or map it in options.unit_map)")
        return None
