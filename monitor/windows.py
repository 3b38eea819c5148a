"""KPI windows: which stretch of time a KPI value is computed over.

Spelled in config and rule files as ``month``, ``previous_month``, ``quarter``,
``ytd``, ``rolling_<N>d`` or ``latest``. A window resolves, for an as-of instant,
to a half-open UTC interval; flows are summed over the periods that lie wholly
inside it, stocks take their latest value inside it. Rolling windows are exact
only on sources that report daily. ``latest`` looks back at most
``LATEST_LOOKBACK_DAYS``: a value older than that is not "the latest", it is gone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from monitor.timeutil import add_months, local_date, local_midnight

_ROLLING = re.compile(r"^rolling_(\d{1,4})d$")
_NAMED = ("month", "previous_month", "quarter", "ytd", "latest")
LATEST_LOOKBACK_DAYS = 400


@dataclass(frozen=True)
class Window:
    spec: str

    @classmethod
    def parse(cls, spec: str) -> Window:
        match = _ROLLING.match(spec)
        if spec in _NAMED or (match and int(match.group(1)) > 0):
            return cls(spec)
        raise ValueError(
            f"unknown window {spec!r} (use one of {', '.join(_NAMED)} or rolling_<N>d, e.g. rolling_30d)"
        )

    @property
    def is_latest(self) -> bool:
        return self.spec == "latest"

    def bounds(self, as_of: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
        """``[start, end)`` in UTC. ``end`` closes the calendar window, so the
        month that contains ``as_of`` counts with its data so far."""
        today = local_date(as_of, tz)
        first_of_month = today.replace(day=1)
        if self.spec == "month":
            return local_midnight(first_of_month, tz), local_midnight(add_months(first_of_month, 1), tz)
        if self.spec == "previous_month":
            prev = add_months(first_of_month, -1)
            return local_midnight(prev, tz), local_midnight(first_of_month, tz)
        if self.spec == "quarter":
            q_first = first_of_month.replace(month=(today.month - 1) // 3 * 3 + 1)
            return local_midnight(q_first, tz), local_midnight(add_months(q_first, 3), tz)
        if self.spec == "ytd":
            jan = today.replace(month=1, day=1)
            return local_midnight(jan, tz), local_midnight(add_months(jan, 12), tz)
        if self.spec == "latest":
            return (local_midnight(today - timedelta(days=LATEST_LOOKBACK_DAYS), tz),
                    local_midnight(today + timedelta(days=1), tz))
        days = int(_ROLLING.match(self.spec).group(1))  # type: ignore[union-attr]
        return (local_midnight(today - timedelta(days=days - 1), tz),
                local_midnight(today + timedelta(days=1), tz))

    def __str__(self) -> str:
        return self.spec
