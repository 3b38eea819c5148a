"""Lay out one ``Digest`` as one email: headers, a plain-text part and an HTML part.

The engine has already decided who is told what, and resolved every name to the
recipient's language; this module only formats. It is pure (no clock, no
randomness, no I/O beyond reading its templates): the same digest and message key
give the same bytes — Message-ID and MIME boundary included — so a retry is the
same message.

Header safety: every free text that reaches a header (names, subject parts, the
thread key) goes through ``_one_line`` first, and addresses go through
``email.headerregistry.Address``, which refuses CR/LF. Nothing a unit's name
contains can add a header. Non-ASCII headers are RFC 2047 encoded here rather than
by the stdlib folder, which mangles spaces in long Vietnamese headers (see below).
"""

from __future__ import annotations

import base64
import email.errors
import email.policy
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from email.headerregistry import Address, AddressHeader, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime
from functools import cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from jinja2.runtime import Context

from monitor.alerts.model import Digest, Language, Recipient, SourceItem, TargetItem
from monitor.templating import (
    data_day_filter,
    format_day,
    format_moment,
    in_language,
    moment_filter,
    name_in,
)

# Mail clients cut long subjects anyway; past this the unit name is shortened.
MAX_SUBJECT = 150
ACTION_KINDS = frozenset({"firing", "reminder", "escalated"})
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_SAFE_URL = re.compile(r"^(?:https?://|mailto:)[^\s]+$", re.IGNORECASE)

# Fixed texts. The two catalogues must have the same keys (a test checks it).
TEXTS: dict[Language, dict[str, str]] = {
    "vi": {
        "greeting": "Kính gửi {name},",
        "greeting_anonymous": "Kính gửi Anh/Chị,",
        "intro": "Tình hình thực hiện chỉ tiêu Chính phủ điện tử — {province}, cập nhật lúc {moment}.",
        "section_action": "Cần xử lý",
        "section_flapping": "Dao động — tạm ngừng thông báo",
        "section_resolved": "Đã khắc phục",
        "kpi": "Chỉ số",
        "status": "Trạng thái",
        "actual": "Giá trị hiện tại",
        "expected": "Theo lộ trình đến hôm nay",
        "target": "Mục tiêu",
        "gap": "Chênh lệch so với lộ trình",
        "gap_to_target": "Còn cách mục tiêu",
        "deadline": "Hạn hoàn thành",
        "forecast": "Dự báo",
        "trend": "Xu hướng",
        "since": "Cảnh báo từ",
        "citation": "Căn cứ",
        "data_through": "Số liệu đến ngày",
        "report_link": "Xem báo cáo của đơn vị",
        "sources": "Nguồn dữ liệu",
        "sources_active": "Đang gặp sự cố",
        "sources_back": "Đã hoạt động lại",
        "source_kind": "Loại nguồn",
        "problem": "Sự cố",
        "detail": "Chi tiết",
        "source_since": "Sự cố từ",
        "last_success": "Lần thu thập thành công gần nhất",
        "never": "chưa có",
        "footer_head": "Anh/Chị nhận thư này vì là người đứng đầu đơn vị có chỉ tiêu nêu trên.",
        "footer_escalation": ("Anh/Chị nhận thư này vì cảnh báo của đơn vị nêu trên đã quá hạn xử lý"
                              " và được báo cáo lên cấp trên."),
        "footer_operator": "Anh/Chị nhận thư này vì là người vận hành hệ thống giám sát và các nguồn dữ liệu.",
        "footer_copy": "Anh/Chị nhận bản sao thư này theo danh sách nhận bản sao của hệ thống giám sát.",
        "footer_repeat": "Thư nhắc lại được gửi định kỳ chừng nào chỉ tiêu vẫn chậm tiến độ.",
        "footer_auto": "Đây là thư tự động, vui lòng không trả lời thư này.",
        "no_news": "Không có thay đổi.",
    },
    "en": {
        "greeting": "Dear {name},",
        "greeting_anonymous": "Dear colleague,",
        "intro": "E-government target status — {province}, as of {moment}.",
        "section_action": "Action needed",
        "section_flapping": "Flapping — notifications paused",
        "section_resolved": "Resolved",
        "kpi": "Indicator",
        "status": "Status",
        "actual": "Current value",
        "expected": "Expected by today",
        "target": "Target",
        "gap": "Gap to the plan",
        "gap_to_target": "Distance to the target",
        "deadline": "Deadline",
        "forecast": "Forecast",
        "trend": "Trend",
        "since": "Alerting since",
        "citation": "Basis",
        "data_through": "Data through",
        "report_link": "View the unit's report",
        "sources": "Data sources",
        "sources_active": "Having problems",
        "sources_back": "Back up",
        "source_kind": "Source type",
        "problem": "Problem",
        "detail": "Detail",
        "source_since": "Problem since",
        "last_success": "Last successful collection",
        "never": "never",
        "footer_head": "You receive this email as the head of the unit listed above.",
        "footer_escalation": ("You receive this email because alerts of the unit above were not handled in time"
                              " and were escalated to you."),
        "footer_operator": "You receive this email as an operator of the monitoring service and its data sources.",
        "footer_copy": "You receive a copy of this email as configured in the monitoring service's copy list.",
        "footer_repeat": "Reminders repeat while a target stays behind.",
        "footer_auto": "This message was sent automatically; please do not reply.",
        "no_news": "Nothing has changed.",
    },
}

STATUS_NAMES: dict[Language, dict[str, str]] = {
    "vi": {"met": "đạt", "on_track": "đúng tiến độ", "at_risk": "có nguy cơ chậm", "behind": "chậm tiến độ",
           "missed": "không đạt (quá hạn)", "no_data": "chưa có dữ liệu", "stale": "dữ liệu cũ"},
    "en": {"met": "met", "on_track": "on track", "at_risk": "at risk", "behind": "behind",
           "missed": "missed (deadline passed)", "no_data": "no data yet", "stale": "stale data"},
}

KIND_NAMES: dict[Language, dict[str, str]] = {
    "vi": {"firing": "mới chậm tiến độ", "reminder": "nhắc lại", "escalated": "báo cáo lên cấp trên",
           "resolved": "đã khắc phục", "flapping": "dao động — tạm ngừng thông báo"},
    "en": {"firing": "newly behind", "reminder": "reminder", "escalated": "escalated",
           "resolved": "resolved", "flapping": "flapping — notifications paused"},
}

SOURCE_KIND_NAMES: dict[Language, dict[str, str]] = {
    "vi": {"firing": "mới gặp sự cố", "reminder": "nhắc lại", "resolved": "đã hoạt động lại"},
    "en": {"firing": "new", "reminder": "reminder", "resolved": "back up"},
}

PROBLEM_NAMES: dict[Language, dict[str, str]] = {
    "vi": {"down": "không truy cập được", "stale": "dữ liệu cũ, không có số liệu mới"},
    "en": {"down": "down", "stale": "stale, no fresh data"},
}


# --- Formatting helpers (pure; the templates call them as filters) -------------------------------


def _decimal(value: float, lang: Language, *, sign: bool = False) -> str:
    """One decimal, with the decimal comma Vietnamese readers expect."""
    text = f"{value:+.1f}" if sign else f"{value:.1f}"
    if text in ("-0.0", "+0.0"):
        text = "0.0"
    return text.replace(".", ",") if lang == "vi" else text


def format_percent(value: float | None, lang: Language) -> str:
    """A ratio (0.725) as "72,5 %" (vi) or "72.5%" (en); a missing value as a dash, never 0."""
    if value is None:
        return "—"
    number = _decimal(100 * value, lang)
    return f"{number} %" if lang == "vi" else f"{number}%"


def format_gap(gap: float | None, lang: Language) -> str:
    """Shortfall in percentage points; positive means behind (as in ``Evaluation.gap``)."""
    if gap is None:
        return "—"
    points = _decimal(100 * abs(gap), lang)
    if points == ("0,0" if lang == "vi" else "0.0"):
        return "đúng lộ trình" if lang == "vi" else "on plan"
    if gap > 0:
        return f"thiếu {points} điểm %" if lang == "vi" else f"{points} pts behind"
    return f"vượt {points} điểm %" if lang == "vi" else f"{points} pts ahead"


def format_points(value: float, lang: Language) -> str:
    """A distance in percentage points, without a direction: "17,5 điểm %" / "17.5 pts"."""
    points = _decimal(100 * abs(value), lang)
    return f"{points} điểm %" if lang == "vi" else f"{points} pts"


def format_trend(per_year: float | None, lang: Language) -> str:
    """Change per year in percentage points, with its sign."""
    if per_year is None:
        return "—"
    points = _decimal(100 * per_year, lang, sign=True)
    return f"{points} điểm %/năm" if lang == "vi" else f"{points} pts/year"


def format_target(item: TargetItem, lang: Language) -> str:
    symbol = {">=": "≥", "<=": "≤"}.get(item.comparator, item.comparator)
    return f"{symbol} {format_percent(item.target, lang)}"


class Outlook(Protocol):
    """What a forecast phrase needs: a digest item or a report row."""

    @property
    def forecast_reachable(self) -> bool | None: ...
    @property
    def forecast_value(self) -> float | None: ...
    @property
    def forecast_reached_on(self) -> date | None: ...
    @property
    def deadline(self) -> date: ...


def format_forecast(item: Outlook, lang: Language) -> str:
    """The outlook in one phrase, or "" when there were too few points to say."""
    if item.forecast_reachable is None:
        return ""
    at_deadline = None if item.forecast_value is None else format_percent(item.forecast_value, lang)
    if item.forecast_reachable is False:
        if lang == "vi":
            prefix = f"{at_deadline} vào hạn hoàn thành; " if at_deadline else ""
            return prefix + "không đạt được theo xu hướng hiện tại"
        prefix = f"{at_deadline} at the deadline; " if at_deadline else ""
        return prefix + "not reachable at the current trend"
    if item.forecast_reached_on is not None:
        day = format_day(item.forecast_reached_on, lang)
        late = item.forecast_reached_on > item.deadline
        if lang == "vi":
            return f"đạt mục tiêu vào khoảng {day}" + (", sau hạn hoàn thành" if late else "")
        return f"target reached around {day}" + (", after the deadline" if late else "")
    if at_deadline is None:
        return ""
    return f"{at_deadline} vào hạn hoàn thành" if lang == "vi" else f"{at_deadline} at the deadline"


def escalation_note(level: int, lang: Language) -> str:
    if level <= 0:
        return ""
    if lang == "vi":
        return f"Đã quá hạn xử lý, báo cáo lên cấp trên (mức {level})"
    return f"Not handled in time; escalated to the next level (level {level})"


def held_back_note(count: int, lang: Language) -> str:
    """How many target alerts wait on this source (they would only repeat its outage)."""
    if lang == "vi":
        return f"{count} cảnh báo chỉ tiêu đang được tạm giữ vì nguồn này."
    return f"{count} target alert{'' if count == 1 else 's'} held back because of this source."


def safe_url(url: str | None) -> str | None:
    """Only web and mail links become links; anything else (``javascript:``) stays text."""
    if url is None or not _SAFE_URL.match(url.strip()):
        return None
    return url.strip()


# --- Header helpers ------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """Text fit for a header: control characters and line/paragraph separators
    (CR, LF, NEL, U+2028 …) become spaces, runs of spaces collapse."""
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    return " ".join(cleaned.split())


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


# --- RFC 2047 headers we fold ourselves ----------------------------------------------------------
#
# CPython's own folder (3.11) loses or invents spaces in Vietnamese headers: when a long
# subject is split into several encoded words it may put the space between two words
# outside them, where decoders must ignore it (fixed upstream only in 2026, gh-144156);
# and its address parser joins adjacent encoded words of a display name with a space that
# RFC 2047 says is not there. So the subject is split into encoded words that keep every
# space inside a word, and a display name is always one encoded word: both decode exactly,
# in mail clients and in ``email.policy.default``.

_EW_BYTES = 36  # UTF-8 bytes per encoded word: 48 base64 chars, 60 with the wrapper; fits 78 after a name
_MAX_DISPLAY_NAME = 100  # one encoded word per name; stays far below the 998-octet line limit
_REGISTRY = HeaderRegistry()


class _PreFolded(BaseHeader):
    """Mixed into a registry header class: the parsed value stays (``msg["To"].addresses``
    works as usual), but the generator writes ``lines`` as they are, whatever the policy."""

    lines: tuple[str, ...] = ()

    def fold(self, *, policy: Policy) -> str:
        return policy.linesep.join(self.lines) + policy.linesep


@cache
def _pre_folded_class(base: type[BaseHeader]) -> type[_PreFolded]:
    return type(f"PreFolded{base.__name__}", (_PreFolded, base), {})


def _pre_folded(name: str, value: object, lines: Sequence[str]) -> _PreFolded:
    header = _pre_folded_class(_REGISTRY[name])(name, value)
    header.lines = tuple(lines)
    return header


def _base64_word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def encoded_words(text: str, max_bytes: int = _EW_BYTES) -> list[str]:
    """``text`` as RFC 2047 base64 words of at most ``max_bytes`` UTF-8 bytes, never splitting a
    character. Spaces stay inside the words: whitespace between words is dropped on decoding."""
    chunks: list[bytes] = []
    current = b""
    for char in text:
        encoded = char.encode("utf-8")
        if current and len(current) + len(encoded) > max_bytes:
            chunks.append(current)
            current = b""
        current += encoded
    if current:
        chunks.append(current)
    return [_base64_word(chunk) for chunk in chunks]


def _unstructured(name: str, value: str) -> str | _PreFolded:
    """An ASCII value is left to the policy (it folds ASCII losslessly); any other is encoded here."""
    if value.isascii():
        return value
    words = encoded_words(value)
    return _pre_folded(name, value, [f"{name}: {words[0]}", *(f" {word}" for word in words[1:])])


def _mailbox(address: Address) -> str:
    if address.display_name.isascii():
        return str(address)  # the registry quotes ASCII names that need it
    return f"{_base64_word(address.display_name.encode('utf-8'))} <{address.addr_spec}>"


def _addresses(name: str, addresses: Sequence[Address]) -> _PreFolded:
    """One mailbox per line, each display name one encoded word."""
    mailboxes = [_mailbox(a) + ("," if i < len(addresses) - 1 else "") for i, a in enumerate(addresses)]
    return _pre_folded(name, list(addresses), [f"{name}: {mailboxes[0]}", *(f" {m}" for m in mailboxes[1:])])


def _address(email_address: str, name: str | None) -> Address:
    """A header address; an address that carries CR/LF or is not one address is refused."""
    display = _shorten(_one_line(name or ""), _MAX_DISPLAY_NAME)
    if not email_address.isascii():  # would need SMTPUTF8, which the mail is not written for
        raise ValueError(f"not a usable email address (non-ASCII): {email_address!r}")
    try:
        return Address(display_name=display, addr_spec=email_address.strip())
    except (ValueError, IndexError, email.errors.HeaderParseError) as exc:
        raise ValueError(f"not a usable email address: {email_address!r}") from exc


def parse_sender(sender: str) -> Address:
    """``Giám sát CQĐT <egovmon@sonha.gov.vn>`` (or a bare address) as one Address."""
    if any(c in sender for c in "\r\n"):
        raise ValueError(f"sender must be one line: {sender!r}")
    header = _REGISTRY("From", sender)
    addresses = header.addresses if isinstance(header, AddressHeader) else ()
    if header.defects or len(addresses) != 1 or not addresses[0].username or not addresses[0].domain:
        raise ValueError(f"sender must be one address like 'Name <user@domain>': {sender!r}")
    return _address(addresses[0].addr_spec, addresses[0].display_name)


def _hash(key: str, length: int) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:length]


def message_id(message_key: str, domain: str) -> str:
    """The same idempotency key always gives the same Message-ID, so a retried send
    is recognised as a duplicate by receiving servers and clients."""
    return f"<{_hash(message_key, 32)}@{_check_domain(domain)}>"


def thread_id(thread_key: str, domain: str) -> str:
    """A Message-ID no mail has: every digest about one unit refers to it, so clients thread them."""
    return f"<thread-{_hash(thread_key, 24)}@{_check_domain(domain)}>"


def _check_domain(domain: str) -> str:
    if not _HOSTNAME.match(domain):
        raise ValueError(f"not a host name usable in a Message-ID: {domain!r}")
    return domain


# --- Grouping ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitGroup:
    """One unit's items as the mail shows them: what needs action, what flaps, what is fixed."""

    unit: str
    name: str
    action: tuple[TargetItem, ...]
    flapping: tuple[TargetItem, ...]
    resolved: tuple[TargetItem, ...]


def _name_key(name: str) -> tuple[str, str]:
    """Sort Vietnamese names by their letters first (Đ with D, not after Z), then exactly."""
    base = "".join(c for c in unicodedata.normalize("NFD", name) if not unicodedata.combining(c))
    return base.replace("đ", "d").replace("Đ", "D").casefold(), name


def _by_gap(items: Iterable[TargetItem]) -> tuple[TargetItem, ...]:
    """Largest shortfall first; unknown gaps last; rule title breaks ties so the order is stable."""
    return tuple(sorted(items, key=lambda i: (i.gap is None, -(i.gap or 0.0), _name_key(i.rule_title), i.rule)))


def group_items(items: Sequence[TargetItem]) -> list[UnitGroup]:
    units: dict[str, list[TargetItem]] = {}
    for item in items:
        units.setdefault(item.unit, []).append(item)
    groups = [
        UnitGroup(
            unit=unit,
            name=_one_line(unit_items[0].unit_name),
            action=_by_gap(i for i in unit_items if i.kind in ACTION_KINDS),
            flapping=_by_gap(i for i in unit_items if i.kind == "flapping"),
            resolved=_by_gap(i for i in unit_items if i.kind == "resolved"),
        )
        for unit, unit_items in units.items()
    ]
    return sorted(groups, key=lambda g: (*_name_key(g.name), g.unit))


_HEAD_ROLES = frozenset({"unit_head"})
_ESCALATION_ROLES = frozenset({"parent_head", "province_head", "escalation"})
_COPY_ROLES = frozenset({"cc", "address"})


def _footer(digest: Digest, texts: dict[str, str]) -> list[str]:
    """Why this person gets this mail: from the roles the engine routed it by, or, for a
    digest built without them, read off the content (level 0: the unit head; higher
    levels: escalation; sources: the operator)."""
    if digest.roles:
        roles = set(digest.roles)
        lines = [texts[key] for key, wanted in (("footer_head", _HEAD_ROLES), ("footer_escalation", _ESCALATION_ROLES),
                                                ("footer_copy", _COPY_ROLES)) if roles & wanted]
        if any(role.startswith("operator") for role in roles):
            lines.append(texts["footer_operator"])
        if any(i.kind in ACTION_KINDS for i in digest.items):
            lines.append(texts["footer_repeat"])
        lines.append(texts["footer_auto"])
        return lines
    lines = []
    if any(i.escalation_level == 0 for i in digest.items):
        lines.append(texts["footer_head"])
    if any(i.escalation_level > 0 for i in digest.items):
        lines.append(texts["footer_escalation"])
    if digest.sources:
        lines.append(texts["footer_operator"])
    if any(i.kind in ACTION_KINDS for i in digest.items):
        lines.append(texts["footer_repeat"])
    lines.append(texts["footer_auto"])
    return lines


# --- Subject -------------------------------------------------------------------------------------


def _count(n: int, vi: str, en_one: str, en_many: str, lang: Language) -> str:
    if lang == "vi":
        return f"{n} {vi}"
    return f"{n} {en_one if n == 1 else en_many}"


def _target_counts(items: Sequence[TargetItem], lang: Language) -> list[str]:
    action = sum(1 for i in items if i.kind in ACTION_KINDS)
    flapping = sum(1 for i in items if i.kind == "flapping")
    resolved = sum(1 for i in items if i.kind == "resolved")
    parts = []
    if action:
        parts.append(_count(action, "chỉ tiêu chậm tiến độ", "target behind", "targets behind", lang))
    if flapping:
        parts.append(_count(flapping, "chỉ tiêu dao động", "target flapping", "targets flapping", lang))
    if resolved:
        parts.append(_count(resolved, "đã khắc phục", "resolved", "resolved", lang))
    return parts


def _source_counts(sources: Sequence[SourceItem], lang: Language) -> list[str]:
    active = [s for s in sources if s.kind != "resolved"]
    down = sum(1 for s in active if s.problem == "down")
    stale = sum(1 for s in active if s.problem == "stale")
    back = len(sources) - len(active)
    parts = []
    if down:
        parts.append(_count(down, "nguồn lỗi", "down", "down", lang))
    if stale:
        parts.append(_count(stale, "nguồn dữ liệu cũ", "stale", "stale", lang))
    if back:
        parts.append(_count(back, "nguồn đã hoạt động lại", "back up", "back up", lang))
    return parts


def _subject_unit(items: Sequence[TargetItem], lang: Language) -> str:
    units = {i.unit: i.unit_name for i in items}
    if len(units) == 1:
        return _one_line(next(iter(units.values())))
    return f"{len(units)} đơn vị" if lang == "vi" else f"{len(units)} units"


def subject_of(digest: Digest) -> str:
    """``[Sơn Hà] Sở Nội vụ: 2 chỉ tiêu chậm tiến độ, 1 đã khắc phục``: the province, who it is
    about and what changed, in the recipient's language, one line, at most ``MAX_SUBJECT``."""
    lang = digest.recipient.language
    head = f"[{_shorten(_one_line(digest.province), 40)}] "
    sources_label = "Nguồn dữ liệu" if lang == "vi" else "Data sources"
    source_part = ", ".join(_source_counts(digest.sources, lang))
    if digest.items:
        unit = _subject_unit(digest.items, lang)
        tail = ": " + ", ".join(_target_counts(digest.items, lang))
        if source_part:
            tail += f"; {sources_label.lower()}: {source_part}"
    elif source_part:
        unit, tail = sources_label, f": {source_part}"
    else:
        unit, tail = "", TEXTS[lang]["no_news"]
    room = MAX_SUBJECT - len(head) - len(tail)
    return _shorten(head + _shorten(unit, max(room, 10)) + tail, MAX_SUBJECT)


# --- Templates -----------------------------------------------------------------------------------


def _tz(ctx: Context) -> tzinfo:
    tz: tzinfo = ctx["tz"]
    return tz


@cache
def _environment() -> Environment:
    """One environment for the process: templates compile once. ``.html.j2`` is escaped
    (``select_autoescape`` matches the end of the name), the plain text is not."""
    env = Environment(
        loader=PackageLoader("monitor.alerts", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update({
        "percent": in_language(format_percent),
        "gap": in_language(format_gap),
        "points": in_language(format_points),
        "trend": in_language(format_trend),
        "day": in_language(format_day),
        "moment": moment_filter,
        "data_day": data_day_filter,
        "target": in_language(format_target),
        "forecast": in_language(format_forecast),
        "escalation": in_language(escalation_note),
        "held_back": in_language(held_back_note),
        "status_name": name_in(STATUS_NAMES),
        "kind_name": name_in(KIND_NAMES),
        "source_kind_name": name_in(SOURCE_KIND_NAMES),
        "problem_name": name_in(PROBLEM_NAMES),
        "safe_url": safe_url,
    })
    return env


def _context(digest: Digest) -> dict[str, Any]:
    lang = digest.recipient.language
    texts = TEXTS[lang]
    tz = ZoneInfo(digest.timezone)
    name = _one_line(digest.recipient.name or "")
    moment = format_moment(digest.created_at, tz, digest.timezone, lang)
    return {
        "lang": lang,
        "tz": tz,
        "zone": digest.timezone,
        "t": texts,
        "digest": digest,
        "greeting": texts["greeting"].format(name=name) if name else texts["greeting_anonymous"],
        "intro": texts["intro"].format(province=digest.province, moment=moment),
        "groups": group_items(digest.items),
        "sources_active": [s for s in digest.sources if s.kind != "resolved"],
        "sources_back": [s for s in digest.sources if s.kind == "resolved"],
        "footer": _footer(digest, texts),
    }


def render_bodies(digest: Digest) -> tuple[str, str]:
    """The plain-text and HTML bodies of the digest."""
    env = _environment()
    context = _context(digest)
    text = env.get_template("digest.txt.j2").render(context)
    html = env.get_template("digest.html.j2").render(context)
    return text, html


# --- The message ---------------------------------------------------------------------------------


def _recipient_address(recipient: Recipient) -> Address:
    return _address(recipient.email, recipient.name)


def message_headers(*, sender: str, recipient: Recipient, subject: str, created_at: datetime, domain: str,
                    message_key: str, thread_key: str | None = None,
                    cc: Sequence[Recipient] = ()) -> EmailMessage:
    """A message with every header set and no body yet: addresses and subject written
    as RFC 2047 encoded words by this module (see ``encoded_words``), a Message-ID from
    ``message_key`` (a retry is recognisable), and a thread from ``thread_key``."""
    if created_at.tzinfo is None or created_at.utcoffset() is None:
        raise ValueError("created_at must be aware")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = _addresses("From", [parse_sender(sender)])
    msg["To"] = _addresses("To", [_recipient_address(recipient)])
    if cc:
        msg["Cc"] = _addresses("Cc", [_recipient_address(r) for r in cc])
    msg["Subject"] = _unstructured("Subject", subject)
    msg["Date"] = format_datetime(created_at)
    msg["Message-ID"] = message_id(message_key, domain)
    if thread_key:
        msg["In-Reply-To"] = thread_id(thread_key, domain)
        msg["References"] = thread_id(thread_key, domain)
        msg["X-Egovmon-Thread"] = _unstructured("X-Egovmon-Thread", thread_key)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    return msg


def stable_boundary(msg: EmailMessage, message_key: str) -> None:
    """"=_" never occurs in quoted-printable or base64 text, so this boundary cannot
    collide with a body; derived from the key, it keeps a retry byte-identical."""
    msg.set_boundary(f"=_egovmon_{_hash('boundary:' + message_key, 24)}")


def compose(digest: Digest, *, sender: str, domain: str, message_key: str) -> EmailMessage:
    """The digest as a ready-to-send message (multipart/alternative: text, then HTML).

    Serialise it with ``msg.as_bytes(policy=email.policy.SMTP)``: headers are RFC 2047
    encoded ASCII, bodies quoted-printable, so it crosses any relay without SMTPUTF8.
    """
    lang = digest.recipient.language
    thread_key = _one_line(digest.thread_key) or digest.recipient.email.strip().lower()
    text, html = render_bodies(digest)
    msg = message_headers(sender=sender, recipient=digest.recipient, subject=subject_of(digest),
                          created_at=digest.created_at, domain=domain, message_key=message_key,
                          thread_key=thread_key, cc=digest.cc)
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    stable_boundary(msg, message_key)
    # After the bodies: set_content and add_alternative move Content-* headers into the parts.
    msg["Content-Language"] = lang
    return msg
