"""``monitor.yaml``: read once, validated, frozen.

This is the only module that reads the process environment (for ``${ENV}``
interpolation). Secrets come either inline (usually as ``${ENV}``) or from a
file named by the sibling ``*_file`` key; they are kept as ``SecretStr`` so they
never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from datetime import date, time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from collectors import COLLECTORS, Credentials, collector_class
from monitor.errors import ConfigError, Problem
from monitor.security import is_loopback
from monitor.timeutil import DEFAULT_TIMEZONE, parse_duration
from monitor.windows import Window
from monitor.yamlsource import YamlDocument, format_loc, load_yaml_file

DEFAULT_LISTEN = "127.0.0.1:9480"
SECRET_KEYS = ("password", "token", "client_secret", "api_key")
SourceId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, int | float):
            return timedelta(seconds=value)
        return parse_duration(str(value))
    except OverflowError:  # timedelta holds at most 999999999 days; pydantic reports ValueError only
        raise ValueError(f"duration too long: {value!r}") from None


# Durations are written as 30s, 15m, 2h, 7d (or a number of seconds).
Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Schedule(_Frozen):
    """Either ``interval`` (e.g. ``15m``) or ``cron`` (five fields, province's timezone)."""

    interval: Duration | None = None
    cron: str | None = None
    jitter: Duration = timedelta(seconds=0)
    misfire_grace: Duration = timedelta(minutes=5)


    @field_validator("cron")
    @classmethod
    def _cron_fields(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError(f"cron needs 5 fields (minute hour day month weekday), got: {value!r}")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("give exactly one of 'interval' (e.g. 15m) or 'cron' (e.g. '0 * * * *')")
        if self.interval is not None and self.interval < timedelta(seconds=1):
            raise ValueError("interval must be at least 1s")
        return self


class Auth(_Frozen):
    type: Literal["none", "bearer", "basic", "header", "oauth2"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    header: str | None = None  # for type=header: the header name, e.g. X-API-Key
    # for type=oauth2 (client credentials grant): the token endpoint and the client
    token_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        needs = {"bearer": ("token",), "basic": ("username", "password"), "header": ("header", "token"),
                 "oauth2": ("token_url", "client_id", "client_secret")}
        missing = [k for k in needs.get(self.type, ()) if getattr(self, k) is None]
        if missing:
            raise ValueError(f"auth type {self.type!r} needs {', '.join(missing)}")
        return self

    def headers(self) -> dict[str, str]:
        """Static request headers; oauth2 tokens are fetched by the collector that needs them."""
        if self.type == "bearer" and self.token:
            return {"Authorization": f"Bearer {self.token.get_secret_value()}"}
        if self.type == "basic" and self.username and self.password:
            raw = f"{self.username}:{self.password.get_secret_value()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self.type == "header" and self.header and self.token:
            return {self.header: self.token.get_secret_value()}
        return {}

    def credentials(self) -> Credentials:
        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        return Credentials(self.type, self.username, secret(self.password), secret(self.token), self.header,
                           self.token_url, self.client_id, secret(self.client_secret), self.scope)


class SourceConfig(_Frozen):
    id: SourceId
    kind: str
    # Where the source lives, in a scheme its kind accepts: http(s)://…, a SQLAlchemy
    # URL, ldap(s)://…, file:///folder (see each collector's ``url_schemes``).
    url: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")]
    enabled: bool = True
    schedule: Schedule = Schedule(interval=timedelta(minutes=15))
    grain: Literal["day", "month"] = "month"
    timeout: Duration = timedelta(seconds=10)
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 8
    backfill_from: date | None = None
    settle: Duration = timedelta(days=7)
    auth: Auth = Auth()
    options: dict[str, Any] = Field(default_factory=dict)


    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in COLLECTORS:
            raise ValueError(f"unknown source kind {value!r} (known: {', '.join(sorted(COLLECTORS))})")
        return value

    @field_validator("url")
    @classmethod
    def _scheme_for_kind(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")  # absent when the kind itself was refused
        if kind is None:
            return value
        collector = collector_class(kind)
        if not collector.accepts_url(value):
            schemes = ", ".join(f"{s}…" if s.endswith("+") else f"{s}:" for s in collector.url_schemes)
            # only the scheme is echoed: the rest of a database URL may hold a password
            raise ValueError(f"url of a {kind!r} source must start with {schemes}; got: {value.partition(':')[0]}:…")
        return value

    @model_validator(mode="after")
    def _options_for_kind(self) -> SourceConfig:
        try:
            collector_class(self.kind).Options.model_validate(self.options)
        except ValidationError as exc:
            details = "; ".join(f"options.{format_loc(e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"bad options for kind {self.kind!r}: {details}") from None
        return self


class DatabaseConfig(_Frozen):
    url: str = "sqlite:///var/egovmon.db"
    echo: bool = False


class HttpConfig(_Frozen):
    listen: str = DEFAULT_LISTEN
    public_url: str | None = None  # how users reach it, for links in emails
    # SHA-256 of the API tokens allowed to change state (silences, acks), written
    # "sha256:<hex>"; `egovmon token new` makes one. The tokens themselves are never stored.
    token_hashes: tuple[Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")], ...] = ()

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"write HOST:PORT, e.g. 127.0.0.1:9480, got: {value!r}")
        return value

    @model_validator(mode="after")
    def _tokens_off_loopback(self) -> HttpConfig:
        if not is_loopback(self.host) and not self.token_hashes:
            raise ValueError(f"http.listen {self.listen} is not a loopback address, so every endpoint but "
                             "/healthz and /readyz needs a token: add http.token_hashes (`egovmon token new`), "
                             "or listen on 127.0.0.1 behind a reverse proxy (docs/security.md)")
        return self

    def report_url(self, unit: str) -> str | None:
        """The unit's gap report as recipients reach it; None without ``public_url`` (the
        listen address is usually loopback, which a unit head cannot open)."""
        return f"{self.public_url.rstrip('/')}/reports/gap?unit={unit}" if self.public_url else None

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class SmtpConfig(_Frozen):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 25
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "egov-kpi-monitor <noreply@localhost>"
    timeout: Duration = timedelta(seconds=30)
    verify: bool = True  # check the server's TLS certificate
    ca_file: Path | None = None  # a private CA for the relay's certificate

    @model_validator(mode="after")
    def _login_pair(self) -> SmtpConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP login needs both username and password (or password_file)")
        return self


class SendingWindow(_Frozen):
    """When mail may go out, in the province's time zone: ``start`` ≤ time < ``end``
    on the given weekdays."""

    days: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
    start: time = time(7, 30)
    end: time = time(17, 30)

    @model_validator(mode="after")
    def _order(self) -> SendingWindow:
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must come before end {self.end}")
        return self


class RetryPolicy(_Frozen):
    """Backoff for transient SMTP failures: ``initial`` doubling up to ``max``; a
    message still not accepted after ``give_up_after`` is recorded as failed."""

    initial: Duration = timedelta(seconds=30)
    max: Duration = timedelta(hours=1)
    give_up_after: Duration = timedelta(days=3)


class AlertmanagerConfig(_Frozen):
    """Forward alert states to an existing Alertmanager (its v2 API)."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    timeout: Duration = timedelta(seconds=10)
    auth: Auth = Auth()


class PersonConfig(_Frozen):
    name: str | None = None
    email: Email
    language: Literal["vi", "en"] | None = None


class AlertsConfig(_Frozen):
    enabled: bool = True
    # Evaluation statuses that make a target alert pending (then firing after the rule's notify.for).
    fire_on: tuple[Literal["at_risk", "behind", "missed"], ...] = ("behind", "missed")
    # The IT operator: told about sources that are down or stale, and about units without a head.
    operators: tuple[PersonConfig, ...] = ()
    # The provincial leadership; default: the head of the root unit of the tree.
    province_head: PersonConfig | None = None
    # Told about every target alert, each in a digest of their own (one mail per cycle, not one per unit).
    cc: tuple[Email, ...] = ()
    languages: dict[Email, Literal["vi", "en"]] = Field(default_factory=dict)  # default: config language
    # No window: mail goes out at any time. Holidays (province's calendar) are outside every window.
    sending_windows: tuple[SendingWindow, ...] = (SendingWindow(),)
    holidays: tuple[date, ...] = ()
    # An alert that fires or resolves this many times within flap_window is flapping:
    # its recipients get one notice and no more mail about it until it settles.
    flap_threshold: Annotated[int, Field(ge=2)] = 4
    flap_window: Duration = timedelta(days=1)
    source_for: Duration = timedelta(minutes=10)  # a source failing this long alerts the operator
    source_stale_after: Duration = timedelta(days=1)  # no successful collection for this long: stale
    source_repeat: Duration = timedelta(hours=12)
    retry: RetryPolicy = RetryPolicy()
    tick: Duration = timedelta(minutes=1)  # how often due mail is composed and sent
    alertmanager: AlertmanagerConfig | None = None


class UnitsConfig(_Frozen):
    file: Path


class CatalogConfig(_Frozen):
    file: Path | None = None


class RulesConfig(_Frozen):
    """Target rules and composite indices. ``shipped`` names packs under the
    project's ``rules/`` folder; ``files`` adds the deployment's own files or
    folders. ``indices`` defaults to the shipped ``rules/indices``."""

    shipped: tuple[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")], ...] = ("national",)
    files: tuple[Path, ...] = ()
    indices: tuple[Path, ...] | None = None


class ExporterConfig(_Frozen):
    windows: tuple[str, ...] = ("month", "ytd")
    evaluate_interval: Duration = timedelta(minutes=5)


    @field_validator("windows")
    @classmethod
    def _windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for spec in value:
            Window.parse(spec)
        return value


class ReportSchedule(_Frozen):
    """A gap report emailed on a schedule (through the outbox, like alert mail)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    schedule: Schedule  # e.g. {cron: "0 8 * * mon"}: Mondays 08:00, province's time
    to: Annotated[tuple[PersonConfig, ...], Field(min_length=1)]
    unit: str | None = None  # the report's scope; default the whole province
    language: Literal["vi", "en"] | None = None  # default the configuration's language
    attach: Annotated[tuple[Literal["xlsx", "csv", "html", "json", "md"], ...], Field(min_length=1)] = ("xlsx",)


class ReportsConfig(_Frozen):
    schedules: tuple[ReportSchedule, ...] = ()

    @field_validator("schedules")
    @classmethod
    def _unique(cls, value: tuple[ReportSchedule, ...]) -> tuple[ReportSchedule, ...]:
        names = [s.name for s in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"report schedule name(s) used twice: {', '.join(twice)}")
        return value


class RetentionConfig(_Frozen):
    """How long history is kept at full detail (off unless enabled: a fresh install keeps everything).

    Day observations older than ``raw_days`` are rolled up into month observations (flows
    summed, stocks keep the month's latest value), so month, quarter and year windows give
    the same KPIs as before; operational tables are pruned past their own horizons.
    """

    enabled: bool = False
    # Whole months only, never a period still open for re-collection (before a source's
    # watermark), are rolled up; keep it above the longest rolling_<N>d window in the rules.
    raw_days: Annotated[int, Field(ge=7)] = 400
    downsample: Literal["month"] = "month"
    rejections_days: Annotated[int, Field(ge=1)] = 90
    collection_runs_days: Annotated[int, Field(ge=1)] = 90
    alert_transitions_days: Annotated[int, Field(ge=1)] = 400
    outbox_days: Annotated[int, Field(ge=1)] = 90  # sent messages only; pending and failed stay
    batch_size: Annotated[int, Field(ge=100, le=100_000)] = 5000
    schedule: Schedule = Schedule(cron="30 2 * * *")  # daily, province's time, before office hours


class HaConfig(_Frozen):
    """High availability: several instances on one PostgreSQL database, one of them the
    leader (a PostgreSQL advisory lock) that collects, alerts, mails and reports; the
    others serve reads and /metrics and take over when it dies (docs/high-availability.md)."""

    enabled: bool = False  # off: this instance is always the leader (one instance)
    # How often a follower tries to take the lock and the leader checks it still holds it;
    # also sets the keepalive and timeouts of the lock's connection (see the doc for the bounds).
    poll_interval: Annotated[Duration, Field(ge=timedelta(milliseconds=200), le=timedelta(minutes=5))] = (
        timedelta(seconds=5))
    # The instances that share this name compete for one lock; two deployments on one database
    # (say, two provinces) need different names.
    lock_name: Annotated[str, Field(min_length=1, max_length=200)] = "egovmon-leader"


class ProvinceConfig(_Frozen):
    name: str
    code: str | None = None


class Config(_Frozen):
    """The whole configuration. Paths are resolved relative to the config file."""

    version: Literal[1] = 1
    province: ProvinceConfig
    timezone: str = DEFAULT_TIMEZONE
    language: Literal["vi", "en"] = "vi"
    database: DatabaseConfig = DatabaseConfig()
    http: HttpConfig = HttpConfig()
    smtp: SmtpConfig = SmtpConfig()
    units: UnitsConfig
    catalog: CatalogConfig = CatalogConfig()
    sources: tuple[SourceConfig, ...] = ()
    rules: RulesConfig = RulesConfig()
    exporter: ExporterConfig = ExporterConfig()
    alerts: AlertsConfig = AlertsConfig()
    reports: ReportsConfig = ReportsConfig()
    retention: RetentionConfig = RetentionConfig()
    ha: HaConfig = HaConfig()
    path: Path | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r} (e.g. Asia/Ho_Chi_Minh)") from None
        return value

    @field_validator("ha")
    @classmethod
    def _ha_needs_postgresql(cls, value: HaConfig, info: ValidationInfo) -> HaConfig:
        database = info.data.get("database")
        if value.enabled and database is not None and not database.url.startswith("postgresql"):
            scheme = database.url.partition(":")[0]  # only the scheme: the rest may hold a password
            raise ValueError(
                f"ha.enabled needs a PostgreSQL database shared by every instance, but database.url is "
                f"{scheme}:…; use a postgresql+psycopg:// URL, or set ha.enabled: false (one instance on SQLite "
                "is always the leader)")
        return value

    @field_validator("sources")
    @classmethod
    def _unique_ids(cls, value: tuple[SourceConfig, ...]) -> tuple[SourceConfig, ...]:
        seen: set[str] = set()
        for source in value:
            if source.id in seen:
                raise ValueError(f"source id {source.id!r} is used twice")
            seen.add(source.id)
        return value

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def source(self, source_id: str) -> SourceConfig:
        for source in self.sources:
            if source.id == source_id:
                return source
        known = ", ".join(s.id for s in self.sources) or "none"
        raise KeyError(f"no source {source_id!r} in the config (sources: {known})")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; raise ConfigError listing every problem with its line."""
    environ = os.environ if environ is None else environ
    doc = load_yaml_file(path, environ)
    if not isinstance(doc.data, dict):
        raise ConfigError.single(str(path), "expected a mapping at the top (province:, units:, sources: …)")
    problems: list[Problem] = []
    data = _read_secret_files(doc.data, (), doc, path.parent, problems)
    if problems:  # before paths are resolved: a NUL in one makes pathlib raise ValueError
        raise ConfigError(problems)
    data = _resolve_paths(data, path.parent)
    try:
        return Config.model_validate({**data, "path": path})
    except ValidationError as exc:
        raise ConfigError(doc.problems_from(exc)) from None


def _read_secret_files(value: Any, loc: tuple[str | int, ...], doc: YamlDocument, base: Path,
                       problems: list[Problem]) -> Any:
    """Replace ``password_file: /run/secrets/x`` by ``password: <contents>``."""
    if isinstance(value, list):
        return [_read_secret_files(v, (*loc, i), doc, base, problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "\x00" in value:
        # No setting needs one, and every file or path API refuses it with ValueError.
        problems.append(Problem(doc.file, doc.line_of(loc), _dotted(loc), "contains a NUL character (\\0)"))
        return value
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        key = str(key)
        secret = key.removesuffix("_file")
        if key.endswith("_file") and secret in SECRET_KEYS:
            if secret in value:
                problems.append(Problem(doc.file, doc.line_of((*loc, key)), _dotted((*loc, key)),
                                        f"give either {secret} or {key}, not both"))
                continue
            file = (base / str(item)).expanduser()
            try:
                out[secret] = file.read_text(encoding="utf-8").strip()
            except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or a NUL in the path
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                problems.append(Problem(doc.file, doc.line_of((*loc, key)), _dotted((*loc, key)),
                                        f"cannot read secret file {file}: {reason}"))
            continue
        out[key] = _read_secret_files(item, (*loc, key), doc, base, problems)
    return out


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    data = dict(data)
    for section in ("units", "catalog"):
        block = data.get(section)
        if isinstance(block, dict) and isinstance(block.get("file"), str):
            data[section] = {**block, "file": (base / block["file"]).expanduser()}
    smtp = data.get("smtp")
    if isinstance(smtp, dict) and isinstance(smtp.get("ca_file"), str):
        data["smtp"] = {**smtp, "ca_file": (base / smtp["ca_file"]).expanduser()}
    rules = data.get("rules")
    if isinstance(rules, dict):
        rules = dict(rules)
        for key in ("files", "indices"):
            if isinstance(rules.get(key), list):
                rules[key] = [(base / item).expanduser() if isinstance(item, str) else item for item in rules[key]]
        data["rules"] = rules
    database = data.get("database")
    if isinstance(database, dict) and isinstance(database.get("url"), str):
        data["database"] = {**database, "url": resolve_sqlite_url(database["url"], base)}
    return data


def resolve_sqlite_url(url: str, base: Path) -> str:
    """Make a relative SQLite path relative to the config file, not the cwd."""
    match = re.match(r"^(sqlite(?:\+\w+)?:///)(?!/)(.+)$", url)
    if match and match.group(2) != ":memory:":
        return match.group(1) + str((base / match.group(2)).resolve())
    return url


def _dotted(loc: tuple[str | int, ...]) -> str:
    return format_loc(loc)
