"""Official email account directory (Zimbra-style): kind ``email_directory``.

The directory only knows the present, so it is read as a snapshot for the
local day of the clock's instant, whatever periods the runner passes.
``GET /service/admin/accounts?offset=&limit=`` pages through every account.

What an account counts for (active, regular use, unknown units) is decided
in ``collectors.mailboxes``, shared with the ``ldap_directory`` kind.

An account that fails its schema (e.g. a malformed timestamp) is rejected
whole and counted nowhere, not even as a mailbox: counting it in the total
but not in regular use would bias the regular-use rate down; leaving it out
of both keeps the rate right over the accounts that could be read, and the
rejection tells the operator.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from functools import cached_property
from typing import Annotated, ClassVar

from pydantic import BaseModel, Field

from collectors.base import CollectionResult, Collector
from collectors.mailboxes import (
    Mailbox,
    MailboxOptions,
    count_mailboxes,
    mailbox_model,
    refuse_short_snapshot,
    snapshot_observations,
)
from collectors.records import checker, validate_records
from monitor.timeutil import Period

PATH = "/service/admin/accounts"


class EmailDirectoryOptions(MailboxOptions):
    unit_attribute: Annotated[str, Field(min_length=1)] = "ou"
    page_size: Annotated[int, Field(ge=1, le=1000)] = 500


class EmailDirectoryCollector(Collector):
    kind: ClassVar[str] = "email_directory"
    supports_history: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = EmailDirectoryOptions
    options: EmailDirectoryOptions

    @cached_property
    def account_model(self) -> type[Mailbox]:
        """``Mailbox``, with the unit read from ``options.unit_attribute``."""
        return mailbox_model(self.options.unit_attribute)

    async def collect(self, periods: Sequence[Period], units: Set[str]) -> CollectionResult:
        now = self.clock.now()
        result = CollectionResult()
        items = await self.http.get_offset_pages(
            PATH, records_key="accounts", limit=self.options.page_size, convert=checker(self.account_model))
        accounts = validate_records(
            self.source_id, self.account_model, items, result, what="account")
        snapshot = Period.containing(now, "day", self.tz)
        totals = count_mailboxes(accounts, units, now, self.options, snapshot, result,
                                 unit_source=self.options.unit_attribute)
        refuse_short_snapshot(self.source_id, len(items), result, self.options)
        ref = f"GET {PATH} as of {now:%Y-%m-%dT%H:%M:%SZ}"
        result.observations += snapshot_observations(totals, snapshot, ref)
        return result
