"""The OpenAPI 3.1 document of the HTTP listener, served at ``/openapi.json``.

Built in Python from the running service, so the ids a client may name (KPIs,
measures, rules, sources, groups, composite indices) are listed as the values
the service knows today. Every route of the app is described — a route the
app does not serve (``/reports/gap`` before its module is installed) is left
out — and every response body has a schema with exact ``required`` fields and
nullability (``additionalProperties: false``), so a client generator or a
conformance tester (schemathesis) can rely on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from monitor import __version__
from monitor.api_alerts import STATES
from monitor.api_v1 import LEVELS, LIMIT_DEFAULT, LIMIT_MAX, OFFSET_MAX, UNIT_CODE, today, unit_groups
from monitor.targets.evaluate import STATUSES

if TYPE_CHECKING:
    from monitor.service import MonitorService

OPENAPI_VERSION = "3.1.0"
REPORT_PATH = "/reports/gap"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UNIT_PATTERN = f"^{UNIT_CODE.pattern}$"
DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?[smhdw]?$"

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
DATE: Schema = {"type": "string", "format": "date"}
DATETIME: Schema = {"type": "string", "format": "date-time"}
STRINGS: Schema = {"type": "array", "items": STRING}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (JSON Schema 2020-12, as OpenAPI 3.1 has it)."""
    if "type" in schema and "$ref" not in schema:
        out = {**schema, "type": [schema["type"], "null"]}
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], *, optional: Iterable[str] = (), description: str | None = None) -> Schema:
    """An object with exactly these properties, all required but ``optional``."""
    skip = set(optional)
    out: Schema = {"type": "object", "additionalProperties": False,
                   "required": [name for name in properties if name not in skip], "properties": properties}
    if description:
        out["description"] = description
    return out


def one_of(values: Iterable[str], **extra: Any) -> Schema:
    """A string among ``values`` (a plain string when the service knows none yet)."""
    listed = list(dict.fromkeys(values))
    return {"type": "string", **({"enum": listed} if listed else {}), **extra}


def page_of(item: str) -> Schema:
    return obj({
        "items": {"type": "array", "items": ref(item)},
        "count": {**COUNT, "description": "Items on this page."},
        "total": {**COUNT, "description": "Items matching the query, over all pages."},
        "limit": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX},
        "offset": {"type": "integer", "minimum": 0, "maximum": OFFSET_MAX},
        "next": nullable({**STRING, "description": "Path and query of the next page (relative to this server), "
                                                   "or null on the last page."}),
    }, description=f"One page of {item} items.")


# --------------------------------------------------------------------------- parameters


def query(name: str, schema: Schema, description: str, *, array: bool = False, example: Any = None) -> Schema:
    out: Schema = {"name": name, "in": "query", "required": False, "description": description, "schema": schema}
    if array:
        out |= {"schema": {"type": "array", "items": schema}, "style": "form", "explode": True}
    if example is not None:
        out["example"] = [example] if array else example
    return out


def path(name: str, schema: Schema, description: str, example: Any = None) -> Schema:
    out: Schema = {"name": name, "in": "path", "required": True, "description": description, "schema": schema}
    if example is not None:
        out["example"] = example
    return out


PAGE_PARAMETERS = [
    {"$ref": "#/components/parameters/limit"},
    {"$ref": "#/components/parameters/offset"},
]


# --------------------------------------------------------------------------- responses


def ok(schema: Schema, description: str, status: str = "200", links: dict[str, Any] | None = None
       ) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if links:
        out["links"] = links
    return {status: out}


def errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/{ERROR_RESPONSES[status]}"} for status in statuses}


ERROR_RESPONSES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 413: "TooLarge"}


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": ref("Error")}}}
    if headers:
        out["headers"] = headers
    return out


# --------------------------------------------------------------------------- schemas


def schemas() -> dict[str, Schema]:
    head = obj({"name": STRING, "email": STRING, "title": nullable(STRING)})
    unit_properties: dict[str, Schema] = {
        "code": {**STRING, "pattern": UNIT_PATTERN, "description": "Electronic identifier code (QCVN 102:2016)."},
        "name": STRING,
        "name_en": nullable(STRING),
        "level": {"type": "string", "enum": list(LEVELS)},
        "group": STRING,
        "parent": nullable(STRING),
        "head": nullable(ref("Head")),
        "staff_count": COUNT,
        "valid_from": nullable(DATE),
        "valid_to": nullable(DATE),
        "successors": STRINGS,
    }
    unit_detail = obj({
        **unit_properties,
        "valid": {**BOOLEAN, "description": "Whether the unit is valid on the asked day (when not, the fields "
                                            "above are its latest version)."},
        "versions": {"type": "array", "items": ref("Unit"), "description": "Every version, oldest first."},
        "children": {**STRINGS, "description": "Codes of the units directly below it on the asked day."},
        "predecessors": {**STRINGS, "description": "Units merged (or split) into this one."},
    })
    kpi_properties: dict[str, Schema] = {
        "id": STRING, "vi": STRING, "en": STRING, "numerator": STRINGS, "denominator": STRINGS,
        "direction": {"type": "string", "enum": ["up", "down"]}, "window": STRING,
        "description": nullable(STRING), "measures": STRINGS,
    }
    measure = obj({"id": STRING, "kind": {"type": "string", "enum": ["flow", "stock"]}, "unit": STRING,
                   "source_kind": STRING, "vi": STRING, "en": STRING})
    observation = obj({"measure": STRING, "unit": STRING, "period_start": DATETIME, "period_end": DATETIME,
                       "source": STRING, "value": NUMBER, "collected_at": DATETIME})
    evaluation = obj({
        "rule": STRING, "kpi": STRING, "unit": STRING, "as_of_day": DATE, "as_of": DATETIME, "window": STRING,
        "window_start": DATETIME, "window_end": DATETIME, "status": {"type": "string", "enum": list(STATUSES)},
        "actual": nullable(NUMBER), "numerator": NUMBER, "denominator": NUMBER, "units_reporting": COUNT,
        "comparator": {"type": "string", "enum": [">=", "<="]}, "target": NUMBER, "expected": NUMBER,
        "gap": nullable(NUMBER), "gap_to_target": nullable(NUMBER), "deadline": DATE,
        "baseline_value": nullable(NUMBER), "baseline_date": nullable(DATE), "data_through": nullable(DATETIME),
        "forecast_value": nullable(NUMBER), "forecast_reached_on": nullable(DATE),
        "forecast_reachable": nullable(BOOLEAN), "forecast_points": COUNT, "trend_per_year": nullable(NUMBER),
        "clear": BOOLEAN, "evaluated_at": DATETIME,
    })
    rule = obj({
        "id": STRING, "kpi": STRING, "title": nullable(ref("Text")), "window": STRING,
        "comparator": {"type": "string", "enum": [">=", "<="]}, "target": NUMBER, "deadline": DATE,
        "baseline": nullable(ref("Baseline")), "trajectory": ref("Trajectory"), "units": ref("UnitSelector"),
        "at_risk_margin": NUMBER, "resolve_margin": NUMBER,
        "severity": {"type": "string", "enum": ["info", "warning", "critical"]},
        "valid_from": nullable(DATE), "valid_to": nullable(DATE), "citation": ref("Citation"),
        "pack": nullable(STRING), "file": {**STRING, "description": "The rule file's name."},
    })
    source = obj({
        "id": STRING, "kind": STRING, "enabled": BOOLEAN, "grain": {"type": "string", "enum": ["day", "month"]},
        "schedule": obj({"interval_seconds": nullable(NUMBER), "cron": nullable(STRING)}),
        "up": {**BOOLEAN, "description": "The last attempt succeeded."},
        "last_attempt_at": nullable(DATETIME), "last_success_at": nullable(DATETIME),
        "last_error_at": nullable(DATETIME), "last_error_reason": nullable(STRING),
        "last_error_message": nullable(STRING), "last_duration_seconds": nullable(NUMBER),
        "consecutive_failures": COUNT,
        "last_observations": {**COUNT, "description": "Observations stored by the last successful collection."},
        "last_rejections": {**COUNT, "description": "Records rejected by the last successful collection."},
    })
    rejection = obj({"id": INTEGER, "source": STRING, "rejected_at": DATETIME, "reason": STRING, "detail": STRING,
                     "unit": nullable(STRING), "measure": nullable(STRING), "period_start": nullable(DATETIME),
                     "raw_ref": nullable(STRING)})
    score = obj({
        "index": STRING, "unit": STRING, "as_of_day": DATE, "group": STRING, "level": STRING, "score": NUMBER,
        "max_score": NUMBER, "scaled": NUMBER, "rank": INTEGER, "rank_size": COUNT, "complete": BOOLEAN,
        "criteria": {"type": "object", "additionalProperties": NUMBER, "description": "Points per criterion."},
        "missing": {**STRINGS, "description": "KPIs without data."}, "evaluated_at": DATETIME,
    })
    alert = obj({
        "id": INTEGER, "kind": {"type": "string", "enum": ["target", "source"]}, "rule": STRING, "unit": STRING,
        "kpi": nullable(STRING), "state": {"type": "string", "enum": list(STATES)}, "status": STRING,
        "severity": STRING, "pending_since": nullable(DATETIME), "fired_at": nullable(DATETIME),
        "resolved_at": nullable(DATETIME), "escalation_level": COUNT, "notified_state": nullable(STRING),
        "notified_at": nullable(DATETIME), "notify_count": COUNT, "acked_by": nullable(STRING),
        "acked_at": nullable(DATETIME), "ack_reason": nullable(STRING), "ack_until": nullable(DATETIME),
        "flapping": BOOLEAN, "inhibited_by": nullable(STRING),
    })
    silence = obj({
        "id": INTEGER, "rule": nullable(STRING), "unit": nullable(STRING), "kpi": nullable(STRING),
        "source": nullable(STRING), "subtree": BOOLEAN, "starts_at": DATETIME, "ends_at": DATETIME,
        "reason": STRING, "created_by": STRING, "created_at": DATETIME, "expired_at": nullable(DATETIME),
    })
    until = {
        "ends_at": {**DATETIME, "description": "When it ends, with the time zone (ISO 8601)."},
        "duration": {"type": ["string", "number"], "pattern": DURATION_PATTERN, "minimum": 0,
                     "description": "How long from now instead of ends_at: 30s, 15m, 2h, 7d, 1w, or seconds."},
    }
    who = {"reason": {**STRING, "minLength": 1}, "created_by": {**STRING, "minLength": 1, "maxLength": 200}}
    new_silence = {
        "type": "object", "required": ["reason", "created_by"],
        "oneOf": [{"required": ["ends_at"]}, {"required": ["duration"]}],
        "description": "Mutes the alerts matching every matcher given (at least one of rule, unit, kpi, source; "
                       "each must name a known one) until ends_at, or for duration (one of the two).",
        "properties": {
            "rule": nullable({**STRING, "maxLength": 100}), "unit": nullable({**STRING, "maxLength": 35}),
            "kpi": nullable({**STRING, "maxLength": 64}), "source": nullable({**STRING, "maxLength": 64}),
            "subtree": {**BOOLEAN, "default": False, "description": "Also every unit below unit."},
            **until, **who,
        },
    }
    acknowledgement = {
        "type": "object", "required": ["rule", "unit", "reason", "created_by"],
        "not": {"required": ["ends_at", "duration"]},
        "description": "Stops reminders and escalation of a firing alert until it resolves (or until ends_at, "
                       "or for duration: at most one of the two).",
        "properties": {"rule": {**STRING, "minLength": 1, "maxLength": 100},
                       "unit": {**STRING, "minLength": 1, "maxLength": 35}, **until, **who},
    }
    out: dict[str, Schema] = {
        "Error": obj({"error": {**STRING, "description": "What is wrong, naming the parameter when one is."}}),
        "Reloaded": obj({
            "applied": {"const": True},
            "sources": COUNT,
            "rules": COUNT,
            "restart_needed": {**STRINGS, "description": "Settings that changed but take effect at the next start "
                                                         "(database.url, http.listen)."}}),
        "ReloadRefused": obj({
            "error": STRING,
            "problems": {"type": "array", "items": obj({
                "file": STRING, "line": nullable({"type": "integer", "minimum": 1}), "field": STRING,
                "message": STRING})}}),
        "Head": head,
        "Unit": obj(unit_properties, description="One version of an organisational unit."),
        "UnitDetail": unit_detail,
        "Measure": measure,
        "Kpi": obj(kpi_properties),
        "KpiDetail": obj({**kpi_properties, "measure_details": {"type": "array", "items": ref("Measure")},
                          "rules": {**STRINGS, "description": "Ids of the rules on this KPI."}}),
        "Observation": observation,
        "Evaluation": evaluation,
        "Text": obj({"vi": STRING, "en": nullable(STRING)}),
        "Baseline": obj({"value": nullable(NUMBER), "date": nullable(DATE), "first_observation": BOOLEAN,
                         "since": nullable(DATE)}),
        "Trajectory": obj({"type": {"type": "string", "enum": ["none", "linear", "milestones"]},
                           "milestones": {"type": "array", "items": obj({"date": DATE, "value": NUMBER})}}),
        "UnitSelector": obj({"levels": {"type": "array", "items": {"type": "string", "enum": list(LEVELS)}},
                             "groups": STRINGS, "codes": STRINGS, "descendants": BOOLEAN, "exclude": STRINGS,
                             "scope": {"type": "string", "enum": ["subtree", "self"]}}),
        "Citation": obj({"instrument": STRING, "date": DATE, "title": STRING, "url": nullable(STRING),
                         "verified": BOOLEAN, "note": nullable(STRING)}),
        "Rule": rule,
        "Source": source,
        "Rejection": rejection,
        "Score": score,
        "Alert": alert,
        "Silence": silence,
        "NewSilence": new_silence,
        "Acknowledgement": acknowledgement,
        "ServiceIndex": obj({"service": STRING, "version": STRING, "links": STRINGS}),
        "Health": obj({"status": {"type": "string", "enum": ["ok"]}}),
        "Readiness": obj({"status": {"type": "string", "enum": ["ready", "not ready"]},
                          "role": {"type": "string", "enum": ["leader", "follower"],
                                   "description": "High availability: whether this instance is the leader "
                                                  "(always, with one instance) or a follower serving reads."},
                          "problems": {**STRINGS, "description": "Why it is not ready (only then)."}},
                         optional=["problems"]),
        "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"],
                            "properties": {"openapi": STRING, "info": {"type": "object"},
                                           "paths": {"type": "object"}}},
    }
    for item in ("Unit", "Kpi", "Observation", "Evaluation", "Rule", "Source", "Rejection", "Score", "Alert",
                 "Silence"):
        out[f"{item}Page"] = page_of(item)
    return out


# --------------------------------------------------------------------------- paths


def _operation(operation_id: str, tag: str, summary: str, responses: dict[str, Any], *,
               parameters: Sequence[Schema] = (), description: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if description:
        out["description"] = description
    if parameters:
        out["parameters"] = list(parameters)
    out["responses"] = responses
    out.update(extra)
    return out


def paths(service: MonitorService, *, reports: bool) -> dict[str, Any]:
    kpis = list(service.catalog.kpis)
    measures = list(service.catalog.measures)
    rules = [r.id for r in service.rules]
    sources = [s.id for s in service.config.sources]
    groups = unit_groups(service)
    indices = [i.id for i in service.indices]
    unit_code = {**STRING, "pattern": UNIT_PATTERN}
    # Examples name things that exist, so a client (or a tester) can start from real data.
    some_unit = next((u.code for u in service.units.valid_on(today(service))), None)
    some_kpi = next(iter(kpis), None)
    day = query("day", DATE, "A day in the province's calendar (YYYY-MM-DD); default: today.")
    stored_day = query("day", DATE, "The as-of day (YYYY-MM-DD); default: the latest day stored.")
    unit_filter = query("unit", unit_code, "A unit code (QCVN 102); 404 when no unit has it.", example=some_unit)
    page = PAGE_PARAMETERS
    write: dict[str, Any] = {"security": [{"bearerAuth": []}]}

    out: dict[str, Any] = {
        "/": {"get": _operation("getIndex", "service", "The service, its version and links",
                                ok(ref("ServiceIndex"), "The service."))},
        "/openapi.json": {"get": _operation("getOpenApi", "service", "This document",
                                            ok(ref("OpenApiDocument"), "The OpenAPI document."))},
        "/metrics": {"get": _operation(
            "getMetrics", "service", "Prometheus exposition (KPIs, targets, scores, the service's own health)",
            {"200": {"description": "Metrics in the Prometheus text format 0.0.4.",
                     "content": {"text/plain": {"schema": STRING}}}})},
        "/healthz": {"get": _operation("getHealth", "service", "Liveness: the process answers",
                                       ok(ref("Health"), "Alive."))},
        "/readyz": {"get": _operation(
            "getReadiness", "service", "Readiness: a KPI snapshot computed and the database reachable",
            {**ok(ref("Readiness"), "Ready."),
             "503": {"description": "Not ready, with the problems.",
                     "content": {"application/json": {"schema": ref("Readiness")}}}})},
        "/api/v1/units": {"get": _operation(
            "listUnits", "units", "Organisational units valid on a day",
            {**ok(ref("UnitPage"), "Units in the tree's order."), **errors(400, 404)},
            parameters=[day, query("level", {"type": "string", "enum": list(LEVELS)}, "Only units of this level."),
                        query("group", one_of(groups), "Only units of this ranking group."),
                        query("parent", unit_code, "Only units directly below this one; 404 when no unit has "
                                                   "the code."), *page])},
        "/api/v1/units/{code}": {"get": _operation(
            "getUnit", "units", "One unit as it stood on a day, with all its versions",
            {**ok(ref("UnitDetail"), "The unit."), **errors(400, 404)},
            parameters=[path("code", unit_code, "The unit's code (QCVN 102).", some_unit), day])},
        "/api/v1/kpis": {"get": _operation(
            "listKpis", "catalog", "The KPI catalog", {**ok(ref("KpiPage"), "KPIs."), **errors(400)},
            parameters=page)},
        "/api/v1/kpis/{id}": {"get": _operation(
            "getKpi", "catalog", "One KPI with its measures and the rules on it",
            {**ok(ref("KpiDetail"), "The KPI."), **errors(404)},
            parameters=[path("id", one_of(kpis), "The KPI id.", some_kpi)])},
        "/api/v1/observations": {"get": _operation(
            "listObservations", "data", "Stored observations",
            {**ok(ref("ObservationPage"), "Observations ordered by measure, unit, period, source."),
             **errors(400, 404)},
            description="Filters combine with AND; `measure` and `kpi` (repeatable) together select the union of "
                        "the measures named and the measures of the KPIs named. `from`/`to` select periods that "
                        "start within those days (inclusive, province's calendar); `from` after `to` selects none.",
            parameters=[unit_filter,
                        query("measure", one_of(measures), "A measure id (repeatable).", array=True),
                        query("kpi", one_of(kpis), "A KPI id: its measures (repeatable).", array=True,
                              example=some_kpi),
                        query("from", DATE, "First day (YYYY-MM-DD) a period may start on."),
                        query("to", DATE, "Last day (YYYY-MM-DD) a period may start on."),
                        query("source", one_of(sources), "Only from this source."), *page])},
        "/api/v1/evaluations": {"get": _operation(
            "listEvaluations", "targets", "Stored target evaluations of one day",
            {**ok(ref("EvaluationPage"), "Evaluations ordered by rule and unit."), **errors(400, 404)},
            parameters=[stored_day, query("rule", one_of(rules), "Only this rule."),
                        query("kpi", one_of(kpis), "Only rules on this KPI."), unit_filter,
                        query("status", {"type": "string", "enum": list(STATUSES)}, "Only this status."), *page])},
        "/api/v1/rules": {"get": _operation(
            "listRules", "targets", "Target rules in force, with their citations",
            {**ok(ref("RulePage"), "Rules in file order."), **errors(400, 404)},
            parameters=[query("kpi", one_of(kpis), "Only rules on this KPI."), *page])},
        "/api/v1/rules/{id}": {"get": _operation(
            "getRule", "targets", "One target rule", {**ok(ref("Rule"), "The rule."), **errors(404)},
            parameters=[path("id", one_of(rules), "The rule id.")])},
        "/api/v1/sources": {"get": _operation(
            "listSources", "sources", "Configured sources and their health",
            {**ok(ref("SourcePage"), "Sources in configuration order."), **errors(400)}, parameters=page)},
        "/api/v1/sources/{id}": {"get": _operation(
            "getSource", "sources", "One source and its health", {**ok(ref("Source"), "The source."), **errors(404)},
            parameters=[path("id", one_of(sources), "The source id.")])},
        "/api/v1/sources/{id}/rejections": {"get": _operation(
            "listRejections", "sources", "Records a source sent that were not stored, newest first",
            {**ok(ref("RejectionPage"), "Rejections."), **errors(400, 404)},
            parameters=[path("id", one_of(sources), "The source id."), *page])},
        "/api/v1/scores": {"get": _operation(
            "listScores", "scores", "Composite index scores and ranks of one day",
            {**ok(ref("ScorePage"), "Scores ordered by index, group and rank."), **errors(400, 404)},
            parameters=[stored_day, query("index", one_of(indices), "Only this index."),
                        query("group", one_of(groups), "Only this ranking group."), unit_filter, *page])},
        "/api/v1/alerts": {"get": _operation(
            "listAlerts", "alerts", "Alerts by state", {**ok(ref("AlertPage"), "Alerts."), **errors(400)},
            parameters=[query("state", {"type": "string", "enum": list(STATES)},
                              "pending, firing, resolved, inactive (repeatable); default pending and firing.",
                              array=True), *page])},
        "/api/v1/alerts/ack": {"post": _operation(
            "acknowledgeAlert", "alerts", "Acknowledge a firing alert (needs a token)",
            {**ok(ref("Alert"), "The acknowledged alert."), **errors(400, 401, 403, 404, 413)},
            description="404 when there is no firing alert for the rule and unit.",
            requestBody={"required": True, "content": {"application/json": {"schema": ref("Acknowledgement")}}},
            **write)},
        "/api/v1/silences": {
            "get": _operation(
                "listSilences", "alerts", "Silences (active ones unless all=true)",
                {**ok(ref("SilencePage"), "Silences."), **errors(400)},
                parameters=[query("all", BOOLEAN, "Include ended silences."), *page]),
            "post": _operation(
                "createSilence", "alerts", "Silence alerts (needs a token)",
                {**ok(ref("Silence"), "The silence made.", "201", links={"EndSilence": {
                    "operationId": "endSilence", "parameters": {"id": "$response.body#/id"},
                    "description": "End the silence just made."}}),
                 **errors(400, 401, 403, 413)},
                description="400 also when a matcher names an unknown rule, unit, KPI or source, or the silence "
                            "would end before now.",
                requestBody={"required": True, "content": {"application/json": {
                    "schema": ref("NewSilence"),
                    **({"example": {"kpi": some_kpi, "duration": "2h", "reason": "bảo trì hệ thống",
                                    "created_by": "Phòng CNTT"}} if some_kpi else {})}}},
                **write),
        },
        "/api/v1/reload": {"post": _operation(
            "reload", "service", "Reload the configuration, units, catalog and rules (needs a token)",
            {**ok(ref("Reloaded"), "Reloaded and in force."),
             "422": {"description": "Refused: the service keeps running on the configuration loaded before.",
                     "content": {"application/json": {"schema": ref("ReloadRefused")}}},
             **errors(401, 403)},
            description="The same as sending SIGHUP to the process.", **write)},
        "/api/v1/silences/{id}": {"delete": _operation(
            "endSilence", "alerts", "End a silence now (needs a token)",
            {**ok(ref("Silence"), "The silence, ended."), **errors(400, 401, 403, 404)},
            parameters=[path("id", {"type": "integer", "minimum": 1}, "The silence's number.")], **write)},
    }
    if reports:
        report_content = {
            "text/html": {"schema": STRING},
            XLSX: {"schema": {"type": "string", "format": "binary"}},
            "text/csv": {"schema": STRING},
            "application/json": {"schema": {"type": "object"}},
            "text/markdown": {"schema": STRING},
        }
        disposition = {"required": True, "schema": STRING,
                       "description": "inline (html, json, md) or attachment, with the file name."}
        out[REPORT_PATH] = {"get": _operation(
            "getGapReport", "reports", "The target-gap report: who is behind which target, by how much",
            {"200": {"description": "The report in the asked format.",
                     "headers": {"Content-Disposition": disposition}, "content": report_content},
             **errors(400, 404)},
            description="Evaluates (and stores) every rule at the end of the as-of day: it takes seconds.",
            parameters=[query("as_of", DATE, "The as-of day (YYYY-MM-DD, province's calendar); default today."),
                        query("unit", {**STRING, "pattern": f"^({UNIT_CODE.pattern})?$"},
                              "Only this unit's subtree (empty: the whole province); 404 when no such unit "
                              "that day."),
                        query("lang", {"type": "string", "enum": ["vi", "en"]},
                              "Language of the report; default the configured one."),
                        query("format", {"type": "string", "enum": ["html", "xlsx", "csv", "json", "md"]},
                              "html (default), xlsx, csv, json or md.")])}
    return out


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route of ``app`` (HEAD is implied by GET)."""
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"}


def build_openapi(service: MonitorService, app: web.Application | None = None) -> dict[str, Any]:
    """The document for ``app`` (built by ``monitor.http.build_app``) over ``service``."""
    reports = app is not None and any(p == REPORT_PATH for _, p in served_routes(app))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "egov-kpi-monitor",
            "version": __version__,
            "summary": f"E-government KPIs of {service.config.province.name} per organisational unit, "
                       "against the official targets.",
            "description": (
                "Reading is open on a loopback listener; state-changing calls (silences, acknowledgements, "
                "reload) need `Authorization: Bearer <token>` (a token made with `egovmon token new`), and so "
                "does every call but /healthz and /readyz when the listener is not on loopback.\n\n"
                f"Lists are paginated: `limit` (1–{LIMIT_MAX}, default {LIMIT_DEFAULT}) and `offset` "
                "(default 0); the answer has `items`, `count` (on this page), `total` (all matching), "
                "`limit`, `offset` and `next` (path and query of the next page, or null).\n\n"
                "Errors are `{\"error\": \"...\"}`: 400 for a malformed or out-of-range parameter (named in "
                "the message), 401/403 for a missing or refused token, 404 for an id that names nothing, "
                "405 for a method a path does not have, 413 for a body over 64 KiB."),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [{"name": name, "description": text} for name, text in (
            ("service", "The service itself."), ("units", "Organisational units (effective-dated)."),
            ("catalog", "KPIs and their measures."), ("data", "Collected observations."),
            ("targets", "Target rules and their evaluations."), ("sources", "Sources and their health."),
            ("scores", "Composite index scores."), ("alerts", "Alerts, acknowledgements and silences."),
            ("reports", "Reports."))],
        "paths": paths(service, reports=reports),
        "components": {
            "schemas": schemas(),
            "parameters": {
                "limit": query("limit", {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX,
                                         "default": LIMIT_DEFAULT}, "Items per page."),
                "offset": query("offset", {"type": "integer", "minimum": 0, "maximum": OFFSET_MAX, "default": 0},
                                "Items to skip."),
            },
            "responses": {
                "BadRequest": _error_response("A parameter or the body is malformed; the message says which and "
                                              "what is expected."),
                "Unauthorized": _error_response(
                    "No valid token.", {"WWW-Authenticate": {"required": True, "schema": STRING,
                                                             "description": "Bearer"}}),
                "Forbidden": _error_response("Changes through the API are off (no token configured)."),
                "NotFound": _error_response("The id names nothing."),
                "TooLarge": _error_response("The body is over 64 KiB."),
            },
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "A token whose SHA-256 is in http.token_hashes."}},
        },
    }
