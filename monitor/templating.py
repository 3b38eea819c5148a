"""Jinja2 filters shared by the mail and report templates: each reads the
language from the template's context (``lang``), so a template says
``{{ value | percent }}`` and gets the reader's decimal mark and words. The time
filters also read the province's time zone (``tz``, and its name ``zone``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Literal

from jinja2 import pass_context
from jinja2.runtime import Context

from monitor.timeutil import local_date

Language = Literal["vi", "en"]
_VIETNAM_ZONES = frozenset({"Asia/Ho_Chi_Minh", "Asia/Saigon"})
NO_VALUE = "—"


def format_day(day: date, lang: Language) -> str:
    return day.strftime("%d/%m/%Y") if lang == "vi" else day.isoformat()


def zone_label(zone: str, lang: Language) -> str:
    """"giờ Việt Nam" where readers expect it, else the zone's name."""
    if zone in _VIETNAM_ZONES:
        return "giờ Việt Nam" if lang == "vi" else "Vietnam time"
    return zone


def format_moment(instant: datetime, tz: tzinfo, zone: str, lang: Language) -> str:
    """An aware instant in the province's local time, with the zone said out loud."""
    local = instant.astimezone(tz)
    if lang == "vi":
        return f"{local:%H:%M} ngày {local:%d/%m/%Y} ({zone_label(zone, lang)})"
    return f"{local:%Y-%m-%d %H:%M} ({zone_label(zone, lang)})"


def data_day(data_through: datetime, tz: tzinfo) -> date:
    """The last local day the data covers. ``data_through`` is the exclusive end of the
    newest period (local midnight for a whole day), so step back an instant first."""
    return local_date(data_through - timedelta(microseconds=1), tz)


def context_language(ctx: Context) -> Language:
    lang: Language = ctx["lang"]
    return lang


def in_language(format_: Callable[[Any, Language], str]) -> Callable[[Context, Any], str]:
    """A filter: ``format_(value, the context's language)``."""
    @pass_context
    def apply(ctx: Context, value: Any) -> str:
        return format_(value, context_language(ctx))

    return apply


def name_in(table: dict[Language, dict[str, str]]) -> Callable[[Context, str], str]:
    """A filter naming a key (a status, a kind …) from ``table`` in the context's language."""
    @pass_context
    def name(ctx: Context, key: str) -> str:
        return table[context_language(ctx)].get(key, key)

    return name


@pass_context
def moment_filter(ctx: Context, value: datetime | None, none: str = NO_VALUE) -> str:
    """``{{ instant | moment }}``: local time with the zone named; ``none`` when there is none."""
    if value is None:
        return none
    tz: tzinfo = ctx["tz"]
    return format_moment(value, tz, ctx["zone"], context_language(ctx))


@pass_context
def data_day_filter(ctx: Context, value: datetime | None) -> str:
    """``{{ data_through | data_day }}``: the last local day the data covers."""
    if value is None:
        return NO_VALUE
    tz: tzinfo = ctx["tz"]
    return format_day(data_day(value, tz), context_language(ctx))
