"""Time, explicitly: aware UTC inside, the province's timezone at the edges.

Reporting periods (a day, a month) begin at local midnight in the province's
timezone; they are stored as half-open ``[start, end)`` intervals in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

Grain = Literal["day", "month"]
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FrozenClock:
    """A clock for tests and for ``--as-of``: it only moves when told to."""

    instant: datetime

    def now(self) -> datetime:
        return self.instant

    def advance(self, delta: timedelta) -> None:
        self.instant += delta


def aware_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive value is refused (it would be ambiguous)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime is ambiguous, give a timezone: {value!r}")
    return value.astimezone(UTC)


def local_midnight(day: date, tz: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def local_date(instant: datetime, tz: tzinfo) -> date:
    return aware_utc(instant).astimezone(tz).date()


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True, order=True)
class Period:
    """A reporting period ``[start, end)``; both ends aware UTC at local midnight."""

    start: datetime
    end: datetime

    @classmethod
    def of_day(cls, day: date, tz: tzinfo) -> Period:
        return cls(local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz))

    @classmethod
    def of_month(cls, year: int, month: int, tz: tzinfo) -> Period:
        first = date(year, month, 1)
        return cls(local_midnight(first, tz), local_midnight(add_months(first, 1), tz))

    @classmethod
    def containing(cls, instant: datetime, grain: Grain, tz: tzinfo) -> Period:
        day = local_date(instant, tz)
        return cls.of_day(day, tz) if grain == "day" else cls.of_month(day.year, day.month, tz)

    def grain(self, tz: tzinfo) -> Grain:
        first = self.start.astimezone(tz).date()
        return "day" if self == Period.of_day(first, tz) else "month"

    def next(self, tz: tzinfo) -> Period:
        return Period.containing(self.end, self.grain(tz), tz)

    def label(self, tz: tzinfo) -> str:
        """``2025-03`` for a month, ``2025-03-14`` for a day, in the province's calendar."""
        first = self.start.astimezone(tz).date()
        return first.isoformat() if self.grain(tz) == "day" else first.strftime("%Y-%m")


def iter_periods(start: datetime, end: datetime, grain: Grain, tz: tzinfo) -> Iterator[Period]:
    """Periods of ``grain`` that overlap ``[start, end)``, in order."""
    period = Period.containing(start, grain, tz)
    while period.start < end:
        yield period
        period = period.next(tz)


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d`` (or a plain number of seconds)."""
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        if text[-1:] in units:
            return timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return timedelta(seconds=float(text))
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (write e.g. 30s, 15m, 2h, 7d)") from None
