"""The contract every collector follows, written once.

A collector reads one kind of source system and turns what it reads into
measure observations for organisational units. It receives, through its
constructor, the source's configuration, an HTTP client already set up for
that source (timeouts, retries, auth), the province's timezone and a clock;
and, per call, the reporting periods to read and the unit codes it may report
for.

``collect`` returns a ``CollectionResult``: observations whose periods are
half-open ``[start, end)`` intervals in aware UTC, plus per-record rejections
(a record it could read but must not store, with the reason). It never writes
to storage; the runner validates, stores and advances the watermark.

Collectors that read files (a drop folder) learn, through ``stored()``, that
what they returned is committed, and only then move their files away: a
process killed in between reads the same files again, and storing them again
is an idempotent upsert.

It raises only ``CollectorError`` subclasses. Foreign exceptions (aiohttp,
JSON decoding, pydantic) are mapped at the boundary, so the runner can decide
from ``error.permanent`` whether retrying can help, and can count failures by
``error.reason``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from monitor.timeutil import Clock, Grain, Period

if TYPE_CHECKING:
    from collectors.http import SourceHttp


# ----------------------------------------------------------------------------- errors

class CollectorError(Exception):
    """A source could not be read. ``reason`` is a short metric label."""

    reason: ClassVar[str] = "error"
    permanent: ClassVar[bool] = False

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"source {source!r}: {message}")
        self.source = source
        self.message = message


class SourceUnavailable(CollectorError):
    """Connection refused, DNS failure, HTTP 5xx: try again later."""

    reason = "unavailable"


class SourceTimeout(CollectorError):
    reason = "timeout"


class SourceRateLimited(CollectorError):
    """HTTP 429 after the retries allowed; ``retry_after`` in seconds if the source said."""

    reason = "rate_limited"

    def __init__(self, source: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(source, message)
        self.retry_after = retry_after


class SourceAuthError(CollectorError):
    """Bad credentials (HTTP 401/403): retrying will not help until the config changes."""

    reason = "auth"
    permanent = True


class SourceRequestError(CollectorError):
    """The source refused the request (HTTP 4xx other than 401/403/429): wrong URL or parameters."""

    reason = "request"
    permanent = True


class MalformedPayload(CollectorError):
    """The answer is not what this kind of source sends: bad JSON, missing top-level structure.

    Not permanent: a truncated response is often a passing fault.
    """

    reason = "malformed"


# ----------------------------------------------------------------------------- results

@dataclass(frozen=True, slots=True)
class Observation:
    """One raw number: ``measure`` for ``unit`` over ``period``."""

    measure: str
    unit: str
    period: Period
    value: float
    raw_ref: str | None = None  # where it came from, e.g. "GET /api/...?page=2#17"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that was read but must not be stored, and why."""

    reason: str  # short label: "schema", "negative", "unknown_unit", "inconsistent", ...
    detail: str  # for the operator: which field, which value, how to fix
    unit: str | None = None
    measure: str | None = None
    period: Period | None = None
    raw_ref: str | None = None


@dataclass
class CollectionResult:
    observations: list[Observation] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


# ----------------------------------------------------------------------------- collector

@dataclass(frozen=True)
class Credentials:
    """The source's ``auth:`` block, secrets already read (from ``${ENV}`` or ``*_file``).

    ``type`` is one of none, bearer, basic, header, oauth2. Secrets are kept out
    of ``repr`` so they never reach a log line by accident.
    """

    type: str = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    header: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scope: str | None = None

    def secrets(self) -> list[str]:
        """Every secret value, to scrub from messages."""
        return [s for s in (self.password, self.token, self.client_secret) if s]


@dataclass(frozen=True)
class SourceSettings:
    """What a collector needs to know about its source, independent of config parsing.

    ``url`` is where the source lives, in a scheme the collector kind accepts
    (``Collector.url_schemes``): ``https://…``, ``postgresql+psycopg://…``,
    ``ldaps://…``, ``file:///var/lib/egovmon/drop``.
    """

    id: str
    kind: str
    url: str
    grain: Grain = "month"
    options: dict[str, Any] = field(default_factory=dict)
    credentials: Credentials = Credentials()
    timeout: float = 10.0


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Collector(ABC):
    """Base of all collectors. Subclasses set ``kind`` and implement ``collect``.

    ``Options`` is the pydantic model of the kind-specific ``options:`` block of
    the source's configuration; the configuration layer validates it, so a typo
    is reported by ``egovmon config check`` with its line. The validated object
    is ``self.options``.

    ``supports_history`` is False for sources that are not asked for periods:
    one that only knows the present (an account directory) reports a snapshot
    of the current day; one that receives deliveries (a drop folder of files)
    reports the periods the files state. Either is called once per run with
    the current day, and its observations' periods are not checked against it.

    ``url_schemes`` lists the URL schemes the kind accepts in ``url``; the
    configuration refuses any other. A scheme ending in ``+`` matches any
    driver suffix (``postgresql+`` accepts ``postgresql+psycopg``).
    """

    kind: ClassVar[str]
    supports_history: ClassVar[bool] = True
    Options: ClassVar[type[BaseModel]] = NoOptions
    url_schemes: ClassVar[tuple[str, ...]] = ("http", "https")

    def __init__(self, settings: SourceSettings, http: SourceHttp, tz: tzinfo, clock: Clock) -> None:
        self.settings = settings
        self.options = self.Options.model_validate(settings.options)
        self.http = http
        self.tz = tz
        self.clock = clock

    @property
    def source_id(self) -> str:
        return self.settings.id

    @abstractmethod
    async def collect(self, periods: Sequence[Period], units: Set[str]) -> CollectionResult:
        """Read ``periods`` (all of ``settings.grain``, in order) for the units in ``units``.

        Records for a code not in ``units`` become ``Rejection("unknown_unit", …)``.
        """

    async def stored(self) -> None:
        """What the last ``collect`` returned is committed (never called in a dry run).

        A collector that consumes its input (moves delivered files to an
        archive) does it here, never in ``collect``.
        """
        return None

    async def aclose(self) -> None:
        """Release what the collector opened (database engines, directory connections)."""
        return None

    @classmethod
    def accepts_url(cls, url: str) -> bool:
        scheme = url.partition(":")[0].lower() if ":" in url else ""
        return any(scheme == s or (s.endswith("+") and (scheme == s[:-1] or scheme.startswith(s)))
                   for s in cls.url_schemes)

    def now(self) -> datetime:
        return self.clock.now()
