"""``/api/v1`` read endpoints: units, KPIs, observations, evaluations, rules,
sources (with their health and rejections) and composite scores.

All are GET, answer JSON and are open on the listener (like ``/metrics``). The
document at ``/openapi.json`` (``monitor.openapi``) describes every one.

Lists are paginated alike: ``limit`` (1–1000, default 100) and ``offset``
(default 0) in the query, and the answer is ::

    {"items": [...], "count": <items on this page>, "total": <all that match>,
     "limit": n, "offset": n, "next": "<path and query of the next page, or null>"}

Errors are ``{"error": "<message>"}``: 400 when a parameter is malformed or out
of range (the message names it and the expected form), 404 when a well-formed
id names nothing (a unit, KPI, measure, rule or source).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import ColumnElement, Engine, func, select

from monitor.storage.results import EVALUATIONS, SCORES
from monitor.storage.store import OBS, REJECTIONS
from monitor.targets.evaluate import STATUSES
from monitor.timeutil import local_date
from monitor.units import Level, Unit

if TYPE_CHECKING:
    from monitor.catalog import Catalog, Kpi
    from monitor.config import SourceConfig
    from monitor.service import MonitorService
    from monitor.storage.store import SourceHealth
    from monitor.targets.loader import LoadedRule

LIMIT_DEFAULT = 100
LIMIT_MAX = 1000
OFFSET_MAX = 1_000_000_000
LEVELS = tuple(level.value for level in Level)
# ASCII digits only (``\\d`` would take any script's digits), matched whole.
UNIT_CODE = re.compile(r"[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_WHOLE = re.compile(r"[0-9]{1,10}")


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status`` (see
    ``monitor.http``). The message is sent as JSON, never in the status line, so
    it may quote whatever the client sent."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


# --------------------------------------------------------------------------- responses


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(_jsonable(data), status=status,
                             dumps=lambda obj: json.dumps(obj, ensure_ascii=False))


# --------------------------------------------------------------------------- pagination


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def _whole(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not _WHOLE.fullmatch(text) or not low <= int(text) <= high:
        raise bad_request(f"{name}: a whole number from {low} to {high}, got {text!r}")
    return int(text)


def page_params(request: web.Request) -> Page:
    return Page(limit=_whole(request, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX),
                offset=_whole(request, "offset", 0, 0, OFFSET_MAX))


def page_response(request: web.Request, page: Page, items: list[Any], total: int) -> web.Response:
    following = page.offset + page.limit
    next_url = (str(request.rel_url.update_query({"limit": page.limit, "offset": following}))
                if following < total else None)
    return json_response({"items": items, "count": len(items), "total": total, "limit": page.limit,
                          "offset": page.offset, "next": next_url})


def paginate(request: web.Request, records: Sequence[Any], to_json: Callable[[Any], Any],
             page: Page | None = None) -> web.Response:
    """One page of ``records`` (all of them already in memory)."""
    page = page or page_params(request)
    chosen = records[page.offset:page.offset + page.limit]
    return page_response(request, page, [to_json(r) for r in chosen], len(records))


# --------------------------------------------------------------------------- query parameters


def parse_day(request: web.Request, name: str) -> date | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise bad_request(f"{name}: a date written YYYY-MM-DD, e.g. 2026-11-22, got {text!r}") from None


def choice(request: web.Request, name: str, allowed: Collection[str]) -> str | None:
    text = request.query.get(name)
    if text is not None and text not in allowed:
        raise bad_request(f"{name}: one of {', '.join(allowed)}, got {text!r}")
    return text


def known(request: web.Request, name: str, ids: Collection[str], what: str) -> str | None:
    """An id that must name something: 404 when it does not."""
    text = request.query.get(name)
    if text is not None and text not in ids:
        raise not_found(f"{name}: no {what} {text!r}")
    return text


def known_all(request: web.Request, name: str, ids: Collection[str], what: str) -> list[str]:
    values = request.query.getall(name, [])
    for text in values:
        if text not in ids:
            raise not_found(f"{name}: no {what} {text!r}")
    return values


def unit_param(request: web.Request, name: str, service: MonitorService) -> str | None:
    text = request.query.get(name)
    if text is None:
        return None
    if not UNIT_CODE.fullmatch(text):
        raise bad_request(f"{name}: a unit code (QCVN 102, e.g. 000.00.31.H12), got {text!r}")
    if text not in service.units:
        raise not_found(f"{name}: no unit {text!r}")
    return text


def local_start(day: date | None, tz: tzinfo) -> datetime | None:
    """The first instant of ``day`` in the province's calendar, in UTC; None for
    no day or a day at the edge of the calendar (no bound)."""
    if day is None:
        return None
    try:
        return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    except OverflowError:
        return None


def today(service: MonitorService) -> date:
    return local_date(service.clock.now(), service.config.tz)


# --------------------------------------------------------------------------- representations


def unit_json(unit: Unit) -> dict[str, Any]:
    head = unit.head
    return {"code": unit.code, "name": unit.name, "name_en": unit.name_en, "level": unit.level.value,
            "group": unit.group, "parent": unit.parent,
            "head": None if head is None else {"name": head.name, "email": head.email, "title": head.title},
            "staff_count": unit.staff_count, "valid_from": unit.valid_from, "valid_to": unit.valid_to,
            "successors": list(unit.successors)}


def kpi_json(kpi_id: str, kpi: Kpi) -> dict[str, Any]:
    return {"id": kpi_id, "vi": kpi.vi, "en": kpi.en, "numerator": list(kpi.numerator),
            "denominator": list(kpi.denominator), "direction": kpi.direction, "window": kpi.window,
            "description": kpi.description, "measures": list(kpi.measures)}


def rule_json(loaded: LoadedRule, catalog: Catalog) -> dict[str, Any]:
    rule = loaded.rule
    kpi = catalog.kpis[rule.kpi]  # the loader checked every rule's KPI against this catalog
    comparator = rule.comparator or (">=" if kpi.direction == "up" else "<=")
    baseline = rule.baseline
    selector = rule.units
    citation = rule.citation
    return {
        "id": rule.id, "kpi": rule.kpi,
        "title": None if rule.title is None else {"vi": rule.title.vi, "en": rule.title.en},
        "window": rule.window or kpi.window, "comparator": comparator,
        "target": rule.target, "deadline": rule.deadline,
        "baseline": None if baseline is None else {
            "value": baseline.value, "date": baseline.date, "first_observation": baseline.first_observation,
            "since": baseline.since},
        "trajectory": {"type": rule.trajectory.type,
                       "milestones": [{"date": m.date, "value": m.value} for m in rule.trajectory.milestones]},
        "units": {"levels": [level.value for level in selector.levels], "groups": list(selector.groups),
                  "codes": list(selector.codes), "descendants": selector.descendants,
                  "exclude": list(selector.exclude), "scope": selector.scope},
        "at_risk_margin": rule.at_risk_margin, "resolve_margin": rule.resolve_margin, "severity": rule.severity,
        "valid_from": rule.valid_from, "valid_to": rule.valid_to,
        "citation": {"instrument": citation.instrument, "date": citation.date, "title": citation.title,
                     "url": citation.url, "verified": citation.verified, "note": citation.note},
        "pack": loaded.pack, "file": Path(loaded.file).name,
    }


def source_json(source: SourceConfig, health: SourceHealth | None) -> dict[str, Any]:
    interval = source.schedule.interval
    out: dict[str, Any] = {
        "id": source.id, "kind": source.kind, "enabled": source.enabled, "grain": source.grain,
        "schedule": {"interval_seconds": interval.total_seconds() if interval is not None else None,
                     "cron": source.schedule.cron},
        "up": bool(health and health.up),
    }
    for name in ("last_attempt_at", "last_success_at", "last_error_at", "last_error_reason", "last_error_message",
                 "last_duration_seconds"):
        out[name] = getattr(health, name) if health else None
    for name in ("consecutive_failures", "last_observations", "last_rejections"):
        out[name] = getattr(health, name) if health else 0
    return out


def evaluation_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "id"}


def score_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"index": row["index_id"], "unit": row["unit"], "as_of_day": row["as_of_day"], "group": row["unit_group"],
            "level": row["level"], "score": row["score"], "max_score": row["max_score"], "scaled": row["scaled"],
            "rank": row["rank"], "rank_size": row["rank_size"], "complete": row["complete"],
            "criteria": row["criteria"], "missing": row["missing"], "evaluated_at": row["evaluated_at"]}


OBSERVATION_FIELDS = ("measure", "unit", "period_start", "period_end", "source", "value", "collected_at")
REJECTION_FIELDS = ("id", "source", "rejected_at", "reason", "detail", "unit", "measure", "period_start", "raw_ref")


# --------------------------------------------------------------------------- queries


def query_observations(engine: Engine, *, measures: Iterable[str], unit: str | None, source: str | None,
                       start: datetime | None, end: datetime | None, page: Page) -> tuple[list[dict[str, Any]], int]:
    """One page of observations (ordered by the table's unique key) and how many match."""
    conditions: list[ColumnElement[bool]] = []
    wanted = sorted(set(measures))
    if wanted:
        conditions.append(OBS.c.measure.in_(wanted))
    if unit is not None:
        conditions.append(OBS.c.unit == unit)
    if source is not None:
        conditions.append(OBS.c.source == source)
    if start is not None:
        conditions.append(OBS.c.period_start >= start)
    if end is not None:
        conditions.append(OBS.c.period_start < end)
    columns = [OBS.c[name] for name in OBSERVATION_FIELDS]
    query = (select(*columns).where(*conditions)
             .order_by(OBS.c.measure, OBS.c.unit, OBS.c.period_start, OBS.c.period_end, OBS.c.source)
             .limit(page.limit).offset(page.offset))
    with engine.connect() as connection:
        total = int(connection.execute(select(func.count()).select_from(OBS).where(*conditions)).scalar_one())
        rows = [dict(row) for row in connection.execute(query).mappings()] if page.offset < total else []
    return rows, total


def query_rejections(engine: Engine, source: str, page: Page) -> tuple[list[dict[str, Any]], int]:
    """Newest first."""
    condition = REJECTIONS.c.source == source
    query = (select(*[REJECTIONS.c[name] for name in REJECTION_FIELDS]).where(condition)
             .order_by(REJECTIONS.c.id.desc()).limit(page.limit).offset(page.offset))
    with engine.connect() as connection:
        total = int(connection.execute(select(func.count()).select_from(REJECTIONS).where(condition)).scalar_one())
        rows = [dict(row) for row in connection.execute(query).mappings()] if page.offset < total else []
    return rows, total


def latest_day(engine: Engine, table: Any) -> date | None:
    """The newest ``as_of_day`` stored in ``table`` (evaluations or scores)."""
    with engine.connect() as connection:
        value = connection.execute(select(table.c.as_of_day).order_by(table.c.as_of_day.desc()).limit(1)
                                   ).scalar_one_or_none()
    return value if isinstance(value, date) or value is None else date.fromisoformat(str(value))


def unit_groups(service: MonitorService) -> list[str]:
    groups = dict.fromkeys(service.units.group_names)
    groups.update(dict.fromkeys(u.group for u in service.units.versions))
    return list(groups)


# --------------------------------------------------------------------------- routes


def add_routes(app: web.Application, service_key: web.AppKey[MonitorService]) -> None:
    def service(request: web.Request) -> MonitorService:
        return request.app[service_key]

    async def list_units(request: web.Request) -> web.Response:
        svc = service(request)
        page = page_params(request)
        day = parse_day(request, "day") or today(svc)
        level = choice(request, "level", LEVELS)
        group = choice(request, "group", unit_groups(svc))
        parent = unit_param(request, "parent", svc)
        units = [u for u in svc.units.valid_on(day)
                 if (level is None or u.level.value == level) and (group is None or u.group == group)
                 and (parent is None or u.parent == parent)]
        return paginate(request, units, unit_json, page)

    async def get_unit(request: web.Request) -> web.Response:
        svc = service(request)
        code = request.match_info["code"]
        day = parse_day(request, "day") or today(svc)
        versions = svc.units.versions_of(code)
        if not versions:
            raise not_found(f"no unit {code!r}")
        current = svc.units.get(code, day)
        shown = current or versions[-1]
        return json_response({**unit_json(shown), "valid": current is not None,
                              "versions": [unit_json(v) for v in versions],
                              "children": [u.code for u in svc.units.children(code, day)],
                              "predecessors": list(svc.units.predecessors(code))})

    async def list_kpis(request: web.Request) -> web.Response:
        kpis = list(service(request).catalog.kpis.items())
        return paginate(request, kpis, lambda item: kpi_json(*item))

    async def get_kpi(request: web.Request) -> web.Response:
        svc = service(request)
        kpi_id = request.match_info["id"]
        kpi = svc.catalog.kpis.get(kpi_id)
        if kpi is None:
            raise not_found(f"no KPI {kpi_id!r}")
        measures = [{"id": m, "kind": spec.kind, "unit": spec.unit, "source_kind": spec.source_kind,
                     "vi": spec.vi, "en": spec.en}
                    for m in kpi.measures for spec in (svc.catalog.measures[m],)]
        rules = [rule.id for rule in svc.rules if rule.kpi == kpi_id]
        return json_response({**kpi_json(kpi_id, kpi), "measure_details": measures, "rules": rules})

    async def list_observations(request: web.Request) -> web.Response:
        svc = service(request)
        page = page_params(request)
        unit = unit_param(request, "unit", svc)
        measures = set(known_all(request, "measure", svc.catalog.measures, "measure"))
        for kpi_id in known_all(request, "kpi", svc.catalog.kpis, "KPI"):
            measures.update(svc.catalog.kpis[kpi_id].measures)
        source = known(request, "source", [s.id for s in svc.config.sources], "source")
        first, last = parse_day(request, "from"), parse_day(request, "to")
        start = local_start(first, svc.config.tz)
        end = None
        if last is not None and last < date.max:
            end = local_start(last + timedelta(days=1), svc.config.tz)
        rows, total = await asyncio.to_thread(query_observations, svc.engine, measures=measures, unit=unit,
                                              source=source, start=start, end=end, page=page)
        return page_response(request, page, rows, total)

    async def list_evaluations(request: web.Request) -> web.Response:
        svc = service(request)
        page = page_params(request)
        day = parse_day(request, "day")
        rule = known(request, "rule", svc.rules.by_id, "rule")
        kpi = known(request, "kpi", svc.catalog.kpis, "KPI")
        unit = unit_param(request, "unit", svc)
        status = choice(request, "status", STATUSES)
        if day is None:
            day = await asyncio.to_thread(latest_day, svc.engine, EVALUATIONS)
        rows: list[dict[str, Any]] = []
        if day is not None:
            rows = await asyncio.to_thread(svc.results.load_evaluations, day, rules=[rule] if rule else None,
                                           units=[unit] if unit else None)
        rows = [r for r in rows if (status is None or r["status"] == status) and (kpi is None or r["kpi"] == kpi)]
        return paginate(request, rows, evaluation_json, page)

    async def list_rules(request: web.Request) -> web.Response:
        svc = service(request)
        page = page_params(request)
        kpi = known(request, "kpi", svc.catalog.kpis, "KPI")
        rules = [r for r in svc.rules.rules if kpi is None or r.rule.kpi == kpi]
        return paginate(request, rules, lambda loaded: rule_json(loaded, svc.catalog), page)

    async def get_rule(request: web.Request) -> web.Response:
        svc = service(request)
        rule_id = request.match_info["id"]
        loaded = svc.rules.by_id.get(rule_id)
        if loaded is None:
            raise not_found(f"no rule {rule_id!r}")
        return json_response(rule_json(loaded, svc.catalog))

    async def list_sources(request: web.Request) -> web.Response:
        svc = service(request)
        page = page_params(request)
        health = {h.source: h for h in await asyncio.to_thread(svc.store.health)}
        return paginate(request, list(svc.config.sources), lambda s: source_json(s, health.get(s.id)), page)

    def configured_source(request: web.Request) -> SourceConfig:
        source_id = request.match_info["id"]
        for source in service(request).config.sources:
            if source.id == source_id:
                return source
        raise not_found(f"no source {source_id!r}")

    async def get_source(request: web.Request) -> web.Response:
        source = configured_source(request)
        health = {h.source: h for h in await asyncio.to_thread(service(request).store.health)}
        return json_response(source_json(source, health.get(source.id)))

    async def list_rejections(request: web.Request) -> web.Response:
        source = configured_source(request)
        page = page_params(request)
        rows, total = await asyncio.to_thread(query_rejections, service(request).engine, source.id, page)
        return page_response(request, page, rows, total)

    async def list_scores(request: web.Request) -> web.Response:
        svc = service(request)
        page = page_params(request)
        day = parse_day(request, "day")
        index = choice(request, "index", [i.id for i in svc.indices])
        group = choice(request, "group", unit_groups(svc))
        unit = unit_param(request, "unit", svc)
        if day is None:
            day = await asyncio.to_thread(latest_day, svc.engine, SCORES)
        rows: list[dict[str, Any]] = []
        if day is not None:
            rows = await asyncio.to_thread(svc.results.load_scores, day, index=index)
        rows = [r for r in rows if (group is None or r["unit_group"] == group) and (unit is None or r["unit"] == unit)]
        return paginate(request, rows, score_json, page)

    app.router.add_get("/api/v1/units", list_units)
    app.router.add_get("/api/v1/units/{code}", get_unit)
    app.router.add_get("/api/v1/kpis", list_kpis)
    app.router.add_get("/api/v1/kpis/{id}", get_kpi)
    app.router.add_get("/api/v1/observations", list_observations)
    app.router.add_get("/api/v1/evaluations", list_evaluations)
    app.router.add_get("/api/v1/rules", list_rules)
    app.router.add_get("/api/v1/rules/{id}", get_rule)
    app.router.add_get("/api/v1/sources", list_sources)
    app.router.add_get("/api/v1/sources/{id}", get_source)
    app.router.add_get("/api/v1/sources/{id}/rejections", list_rejections)
    app.router.add_get("/api/v1/scores", list_scores)
