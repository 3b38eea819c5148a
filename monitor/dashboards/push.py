"""Push the generated dashboards and target-deadline annotations into a running
Grafana over its HTTP API.

The few endpoints needed (folders, ``/api/dashboards/db``, annotations) are
called with aiohttp, which the service already uses. grafana-client was tried
and dropped: it depends on niquests, whose ``urllib3-future`` replaces the
``urllib3`` package in the environment and breaks every ``requests``-based
tool installed next to it.

Idempotent: dashboards are upserted (``overwrite``) by uid into one folder per
audience (folder uid ``egovmon-<audience>``, created when missing); annotations
are tagged ``egovmon`` and only those not already present (same rule id, kind
and time) are added.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from collectors.http import excerpt
from monitor.dashboards.builder import FOLDER_TITLES, FOLDERS
from monitor.targets.model import TargetRule

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
TAG = "egovmon"
DEADLINE = "deadline"
TARGET_CHANGE = "target-change"
MESSAGE = "egovmon dashboards push"


class PushError(Exception):
    """Grafana could not be reached or refused a request (the message names the URL, never the token)."""


@dataclass
class PushReport:
    folders_created: list[str] = field(default_factory=list)
    dashboards: list[str] = field(default_factory=list)
    annotations_added: int = 0
    annotations_present: int = 0


@dataclass(frozen=True)
class Annotation:
    time: int  # epoch ms
    tags: tuple[str, ...]  # (TAG, kind, rule id)
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
    """One annotation at each rule's deadline, and one where a rule comes into force."""
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


def _existing_key(item: Any) -> tuple[str, str, int] | None:
    """The (rule id, kind, time) of an annotation an earlier push added, else None."""
    if not isinstance(item, dict):
        return None
    tags = [str(t) for t in item.get("tags") or []]
    kind = DEADLINE if DEADLINE in tags else TARGET_CHANGE if TARGET_CHANGE in tags else None
    others = [t for t in tags if t not in (TAG, DEADLINE, TARGET_CHANGE)]
    if kind is None or len(others) != 1 or not isinstance(item.get("time"), int):
        return None
    return (others[0], kind, item["time"])


class GrafanaApi:
    """The handful of Grafana HTTP API calls ``push`` needs, with Grafana's errors made readable."""

    def __init__(self, url: str, token: str | None, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    async def call(self, method: str, path: str, *, json: Any = None, params: Any = None,
                   missing_ok: bool = False) -> Any:
        try:
            async with self.session.request(method, self.url + path, json=json, params=params,
                                            headers=self.headers) as response:
                body = await response.read()
                if response.status == 404 and missing_ok:
                    return None
                if response.status == 401:
                    raise PushError(f"Grafana at {self.url} refused the token (401 Unauthorized)")
                if response.status == 403:
                    raise PushError(f"Grafana at {self.url} denied {method} {path} (403 Forbidden): "
                                    "the token needs Editor rights")
                if response.status >= 400:
                    raise PushError(f"Grafana at {self.url} answered {method} {path} with HTTP "
                                    f"{response.status}: {excerpt(body)}")
                try:
                    return await response.json(content_type=None)
                except ValueError:
                    raise PushError(f"Grafana at {self.url} answered {method} {path} with something "
                                    f"that is not JSON: {excerpt(body)}") from None
        except aiohttp.ClientError as exc:
            raise PushError(f"cannot reach Grafana at {self.url}: {type(exc).__name__}") from None
        except TimeoutError:
            raise PushError(f"Grafana at {self.url} did not answer {method} {path} in time") from None


async def push(url: str, token: str | None, dashboards: dict[str, dict[str, Any]], rules: Iterable[TargetRule],
               language: str = "vi", *, annotations: bool = True, request_timeout: float = 10.0) -> PushReport:
    """Upsert ``dashboards`` (``{uid: model}``) into their folders and, when asked, annotate the rules."""
    report = PushReport()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout)) as session:
        api = GrafanaApi(url, token, session)
        for folder, uids in FOLDERS.items():
            uid = folder_uid(folder)
            if await api.call("GET", f"/api/folders/{uid}", missing_ok=True) is None:
                await api.call("POST", "/api/folders", json={"uid": uid, "title": FOLDER_TITLES[language][folder]})
                report.folders_created.append(uid)
            for dashboard_uid in uids:
                model = {**dashboards[dashboard_uid], "id": None}  # match by uid, never by numeric id
                await api.call("POST", "/api/dashboards/db", json={
                    "dashboard": model, "folderUid": uid, "overwrite": True, "message": MESSAGE})
                report.dashboards.append(dashboard_uid)
        if annotations:
            existing = await api.call("GET", "/api/annotations",
                                      params={"tags": TAG, "type": "annotation", "limit": "100000"})
            present = {key for item in existing or [] if (key := _existing_key(item)) is not None}
            for note in rule_annotations(rules, language):
                if note.key in present:
                    report.annotations_present += 1
                    continue
                await api.call("POST", "/api/annotations",
                               json={"time": note.time, "tags": list(note.tags), "text": note.text})
                present.add(note.key)
                report.annotations_added += 1
    return report
