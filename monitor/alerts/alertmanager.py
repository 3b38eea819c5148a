"""Forward alert states to an existing Alertmanager through its v2 API.

Provinces that already run Alertmanager (for their servers, say) can see the
service's alerts there too. The service stays the source of truth: it re-sends
every firing alert each cycle with an ``endsAt`` a few resend intervals ahead,
the convention Prometheus uses, so an alert that the service stops sending (it
crashed, the rule was removed) resolves by itself in Alertmanager instead of
firing forever. A resolved alert is sent once more with the time it resolved.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from collectors.http import excerpt, new_session
from monitor.config import AlertmanagerConfig
from monitor.metrics import ServiceMetrics
from monitor.timeutil import aware_utc

log = logging.getLogger(__name__)

# Prometheus posts at most this many alerts per request (notifier.maxBatchSize);
# Alertmanager copes with more, but large bodies hit proxies' size limits.
MAX_BATCH = 256
# A firing alert stays valid for this many resend intervals: it survives up to three
# missed cycles (a slow evaluation, a failed POST) without flapping to resolved.
RESEND_FACTOR = 4
# Alertmanager 0.25 accepts only Prometheus' classic label names; checking them here
# reports the offending alert at once instead of a 400 for its whole batch.
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_USERINFO = re.compile(r"//[^/@\s]+@")


class AlertmanagerError(Exception):
    """Alertmanager refused alerts or could not be reached."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status  # None when no HTTP answer came back


@dataclass(frozen=True)
class ForwardedAlert:
    """One alert as Alertmanager sees it.

    ``ends_at`` is None while the alert fires and the time it resolved once it
    has. Labels identify the alert (Alertmanager groups and deduplicates on them);
    annotations carry the text. Empty values are dropped: Alertmanager treats an
    empty label as absent, and keeping it would only make two spellings of one alert.
    """

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str | None = None

    def __post_init__(self) -> None:
        # Copies, so a caller mutating its dict later cannot change a queued alert.
        labels = _clean(self.labels)
        bad = [name for name in labels if not _LABEL_NAME.match(name)]
        if bad:
            raise ValueError(f"invalid Alertmanager label names {bad!r}: use [a-zA-Z_][a-zA-Z0-9_]*")
        if not labels:
            raise ValueError("an alert needs at least one non-empty label")
        starts_at = aware_utc(self.starts_at)
        ends_at = aware_utc(self.ends_at) if self.ends_at is not None else None
        if ends_at is not None and ends_at < starts_at:
            raise ValueError(f"alert {labels}: ends_at {ends_at.isoformat()} is before starts_at "
                             f"{starts_at.isoformat()}")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "annotations", _clean(self.annotations))
        object.__setattr__(self, "starts_at", starts_at)
        object.__setattr__(self, "ends_at", ends_at)

    @property
    def resolved(self) -> bool:
        return self.ends_at is not None

    def to_api(self, valid_until: datetime) -> dict[str, Any]:
        """The v2 API's ``postableAlert``; a firing alert ends at ``valid_until``."""
        document: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at if self.ends_at is not None else valid_until),
        }
        if self.generator_url:
            document["generatorURL"] = self.generator_url
        return document


def _clean(values: Mapping[str, Any]) -> dict[str, str]:
    """String values only, empty ones dropped (JSON numbers would be refused)."""
    return {str(k): str(v) for k, v in values.items() if v is not None and str(v) != ""}


def rfc3339(value: datetime) -> str:
    """``2024-03-01T01:30:15.123456Z``: UTC with a ``Z``, as Alertmanager's API expects."""
    return aware_utc(value).isoformat().replace("+00:00", "Z")


class AlertmanagerForwarder:
    """Posts alert states to ``{config.url}/api/v2/alerts``, in batches.

    Give it the service's ``session`` to share the connection pool; without one
    it opens its own on first use, and :meth:`close` closes only that one.
    """

    def __init__(
        self,
        config: AlertmanagerConfig,
        metrics: ServiceMetrics | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.endpoint = config.url.rstrip("/") + "/api/v2/alerts"
        # The URL as messages show it: credentials in it never reach a log.
        self.shown_url = _USERINFO.sub("//***@", self.endpoint)
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=config.timeout.total_seconds())

    async def forward(
        self, alerts: Sequence[ForwardedAlert], *, now: datetime, resend_interval: timedelta
    ) -> None:
        """Post ``alerts``; raise :class:`AlertmanagerError` if any batch failed.

        A batch Alertmanager refuses (HTTP 4xx/5xx) does not stop the others: one
        bad alert must not keep every later alert from being delivered. A connection
        failure does, since the next batch would only wait out the same timeout.
        """
        if resend_interval <= timedelta(0):
            raise ValueError(f"resend_interval must be positive, got: {resend_interval}")
        valid_until = aware_utc(now) + RESEND_FACTOR * resend_interval
        batches = [alerts[i:i + MAX_BATCH] for i in range(0, len(alerts), MAX_BATCH)]
        first: AlertmanagerError | None = None
        failed = sent = 0
        for batch in batches:
            payload = [alert.to_api(valid_until) for alert in batch]
            try:
                await self._post(payload)
            except AlertmanagerError as exc:
                self._count("error")
                first = first or exc
                failed += 1
                if exc.status is None:
                    break
            else:
                self._count("ok")
                sent += 1
        if first is not None:
            message = str(first)
            if len(batches) > 1:
                unsent = len(batches) - failed - sent
                message += f" ({failed} of {len(batches)} batches failed" + (
                    f", {unsent} not tried)" if unsent else ")")
            raise AlertmanagerError(message, url=first.url, status=first.status)
        log.debug("forwarded %d alert(s) to %s in %d batch(es)", len(alerts), self.shown_url, len(batches))

    async def _post(self, payload: list[dict[str, Any]]) -> None:
        # ensure_ascii=False: real UTF-8 on the wire, so Vietnamese stays readable in
        # captures and proxies' logs; Alertmanager decodes either form.
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", **self.config.auth.headers()}
        what = f"Alertmanager {self.shown_url} ({len(payload)} alert(s))"
        try:
            async with self._get_session().post(
                self.endpoint, data=body, headers=headers, timeout=self._timeout
            ) as response:
                status = response.status
                answer = await response.read()
        except TimeoutError:
            # aiohttp's timeouts subclass TimeoutError; catch them before ClientError.
            raise AlertmanagerError(
                f"{what}: no answer within {self._timeout.total:g}s", url=self.shown_url
            ) from None
        except aiohttp.ClientError as exc:
            raise AlertmanagerError(
                f"{what}: {type(exc).__name__}: {_USERINFO.sub('//***@', str(exc))}", url=self.shown_url
            ) from None
        if status >= 300:
            raise AlertmanagerError(
                f"{what}: HTTP {status}: {excerpt(answer)}", url=self.shown_url, status=status
            )

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            # Created here, inside a coroutine, because aiohttp binds it to the running loop.
            self._session = new_session(concurrency=4)
            self._owns_session = True
        return self._session

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.alertmanager_forwarded.labels(outcome=outcome).inc()

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._owns_session:
            self._session = None
