"""Push the generated dashboards and target-deadline annotations to a Grafana
instance over its HTTP API (needs the optional ``grafana`` extra: grafana-client).

Idempotent: dashboards are upserted (``overwrite``) by uid into one folder per
audience (folder uid ``egovmon-<audience>``, created when missing); annotations
are tagged ``egovmon`` and only those not already present (same rule id, kind
and time) are added."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from monitor.dashboards.builder import FOLDER_TITLES, FOLDERS
from monitor.targets.model import TargetRule

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
TAG = "egovmon"
DEADLINE = "deadline"
TARGET_CHANGE = "target-change"
INSTALL_HINT = "install the optional extra: pip install 'egov-kpi-monitor[grafana]'"
MESSAGE = "egovmon dashboards push"


class GrafanaMissing(Exception):
    """grafana-client is not installed."""


class PushError(Exception):
    """Grafana could not be reached or refused the request (message names the URL, never the token)."""


@dataclass
class PushReport:
    folders_created: list[str] = field(default_factory=list)
    dashboards: list[str] = field(default_factory=list)
    annotations_added: int = 0
    annotations_present: int = 0


@dataclass(frozen=True)
class Annotation:
    time: int  # epoch ms
    tags: tuple[str, ...]
    text: str

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.tags[2], self.tags[1], self.time)


def folder_uid(folder: str) -> str:
    return f"egovmon-{folder}"


def epoch_ms(day: dt.date) -> int:
    """Midnight of ``day`` in Vietnam, in epoch milliseconds."""
    return int(dt.datetime.combine(day, dt.time(0, 0), tzinfo=TZ).timestamp() * 1000)


def rule_annotations(rules: Iterable[TargetRule], language: str = "vi") -> list[Annotation]:
    out = []
    for rule in rules:
        title = rule.id
        if rule.title is not None:
            title = (rule.title.en or rule.title.vi) if language == "en" else rule.title.vi
        where = f"{title} ({rule.citation.instrument})"
        label = "Deadline" if language == "en" else "Hạn"
        out.append(Annotation(epoch_ms(rule.deadline), (TAG, DEADLINE, rule.id), f"{label}: {where}"))
        if rule.valid_from is not None:
            label = "Target in force" if language == "en" else "Chỉ tiêu có hiệu lực"
            out.append(Annotation(epoch_ms(rule.valid_from), (TAG, TARGET_CHANGE, rule.id), f"{label}: {where}"))
    return out


def _existing_key(item: dict[str, Any]) -> tuple[str, str, int] | None:
    tags = [str(t) for t in item.get("tags") or []]
    kind = DEADLINE if DEADLINE in tags else TARGET_CHANGE if TARGET_CHANGE in tags else None
    others = [t for t in tags if t not in (TAG, DEADLINE, TARGET_CHANGE)]
    if kind is None or len(others) != 1 or not isinstance(item.get("time"), int):
        return None
    return (others[0], kind, item["time"])


def connect(url: str, token: str | None, timeout: float = 10.0) -> Any:
    try:
        from grafana_client.api import GrafanaApi
    except ImportError:
        raise GrafanaMissing(INSTALL_HINT) from None
    return GrafanaApi.from_url(url=url, credential=token, timeout=timeout)


def push(api: Any, url: str, dashboards: dict[str, dict[str, Any]], rules: Iterable[TargetRule],
         language: str = "vi", *, annotations: bool = True) -> PushReport:
    """Upsert ``dashboards`` (``{uid: model}``) and, when asked, the rules' annotations."""
    from grafana_client.client import GrafanaClientError, GrafanaException

    report = PushReport()
    try:
        for folder, uids in FOLDERS.items():
            uid = folder_uid(folder)
            try:
                api.folder.get_folder(uid)
            except GrafanaClientError as exc:
                if exc.status_code != 404:
                    raise
                api.folder.create_folder(FOLDER_TITLES[language][folder], uid=uid)
                report.folders_created.append(uid)
            for dashboard_uid in uids:
                model = {**dashboards[dashboard_uid], "id": None}
                api.dashboard.update_dashboard({"dashboard": model, "folderUid": uid, "overwrite": True,
                                                "message": MESSAGE})
                report.dashboards.append(dashboard_uid)
        if annotations:
            existing = api.annotations.find_annotations(tags=[TAG], ann_type="annotation", limit=100000)
            present = {key for item in existing or [] if isinstance(item, dict)
                       if (key := _existing_key(item)) is not None}
            for note in rule_annotations(rules, language):
                if note.key in present:
                    report.annotations_present += 1
                    continue
                api.annotations.add_annotation(time_from=note.time, tags=list(note.tags), text=note.text)
                present.add(note.key)
                report.annotations_added += 1
    except GrafanaException as exc:
        status = getattr(exc, "status_code", 0)
        if status == 401:
            raise PushError(f"Grafana at {url} refused the token (401 Unauthorized)") from None
        if status == 403:
            raise PushError(f"Grafana at {url} denied access (403 Forbidden): the token needs Editor rights") from None
        raise PushError(f"Grafana at {url} failed: {_scrub(str(exc), api)}") from None
    except OSError as exc:  # connection refused, DNS, TLS (niquests errors are OSErrors)
        raise PushError(f"cannot reach Grafana at {url}: {type(exc).__name__}") from None
    return report


def _scrub(text: str, api: Any) -> str:
    token = getattr(getattr(api, "client", None), "auth", None)
    secret = getattr(token, "token", None)
    return text.replace(secret, "***") if isinstance(secret, str) and secret else text
