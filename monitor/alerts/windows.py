"""Sending windows: when mail may go out, in the province's time zone.

Mail that comes due outside every window is deferred to the start of the next
one, never dropped (Alertmanager's mute intervals drop it). Holidays are whole
days in the province's calendar outside every window.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from monitor.config import WEEKDAYS, SendingWindow

_SEARCH_DAYS = 400  # a year of holidays cannot hide every window


class SendingPolicy:
    def __init__(self, windows: Iterable[SendingWindow], holidays: Iterable[date], tz: ZoneInfo) -> None:
        self.windows = tuple(windows)
        self.holidays = frozenset(holidays)
        self.tz = tz

    @property
    def always(self) -> bool:
        return not self.windows

    def is_open(self, now: datetime) -> bool:
        if self.always:
            return True
        local = now.astimezone(self.tz)
        if local.date() in self.holidays:
            return False
        weekday = WEEKDAYS[local.weekday()]
        moment = local.time().replace(tzinfo=None)
        return any(weekday in w.days and w.start <= moment < w.end for w in self.windows)

    def next_open(self, now: datetime) -> datetime:
        """``now`` when a window is open, else the start of the next window (aware UTC)."""
        if self.is_open(now):
            return now
        local = now.astimezone(self.tz)
        for offset in range(_SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            if day in self.holidays:
                continue
            starts = sorted(w.start for w in self.windows if WEEKDAYS[day.weekday()] in w.days)
            for start in starts:
                candidate = datetime.combine(day, start, tzinfo=self.tz)
                if candidate > local:
                    return candidate.astimezone(now.tzinfo)
        raise ValueError("no sending window opens within a year: check alerts.sending_windows and holidays")
