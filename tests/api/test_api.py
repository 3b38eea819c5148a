"""The read API against a live listener over the simulated province: every answer
is compared with what the service's own stores and trees say, computed here
independently of the API code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from collectors.base import Rejection
from monitor.storage.results import EVALUATIONS
from monitor.timeutil import Period
from tests.api.conftest import AUTH, Live
from tests.support.province import NOW

pytestmark = pytest.mark.asyncio(loop_scope="module")

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
TODAY = date(2026, 11, 22)  # NOW in the province's calendar
PROVINCE = "000.00.00.H99"
KPI = "online_dossier_rate"
EVER = (datetime(1900, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))


def plain(value: Any) -> Any:
    """A stored value as JSON carries it."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(live: Live) -> AsyncIterator[Live]:
    """The live API, with rejections and a failing source to report."""
    store = live.service.store
    period = Period.of_month(2026, 10, HANOI)
    store.add_rejections("qlvb", [Rejection("negative", f"docs_outgoing_total = -{i}", unit=PROVINCE,
                                            measure="docs_outgoing_total", period=period, raw_ref=f"row {i}")
                                  for i in range(7)], NOW)
    store.add_rejections("mot-cua", [Rejection("unknown_unit", "no unit 999.99.99.X99"),
                                     Rejection("schema", "missing field 'total'")], NOW + timedelta(minutes=1))
    store.record_attempt("qlvb", at=NOW, duration=2.5, ok=True, observations=120, rejections=7)
    store.record_attempt("thu-cong-vu", at=NOW + timedelta(minutes=5), duration=5.0, ok=False, reason="timeout",
                         message="no answer within 5s")
    yield live


# --------------------------------------------------------------------------- units


async def test_units_are_the_trees_valid_units(api: Live) -> None:
    tree = api.service.units
    status, page = await api.get("/api/v1/units", {"limit": "1000"})
    valid = tree.valid_on(TODAY)
    assert status == 200 and page["total"] == page["count"] == len(valid) > 200
    assert [u["code"] for u in page["items"]] == [u.code for u in valid]
    assert page["limit"] == 1000 and page["offset"] == 0 and page["next"] is None
    root = page["items"][0]
    expected_head = tree.get(PROVINCE).head  # type: ignore[union-attr]
    assert root["code"] == PROVINCE and root["parent"] is None and root["level"] == "province"
    assert root["head"] == {"name": expected_head.name, "email": expected_head.email,  # type: ignore[union-attr]
                            "title": expected_head.title}  # type: ignore[union-attr]

    # Before the 2025 reform the tree was another one (districts, unmerged communes).
    status, before = await api.get("/api/v1/units", {"day": "2025-01-01", "limit": "1000"})
    assert status == 200 and before["total"] == len(tree.valid_on(date(2025, 1, 1))) != len(valid)
    assert any(u["level"] == "district" for u in before["items"])
    assert not any(u["level"] == "district" for u in page["items"])

    status, communes = await api.get("/api/v1/units", {"level": "commune", "limit": "1000"})
    assert [u["code"] for u in communes["items"]] == [u.code for u in valid if u.level == "commune"]
    assert 0 < communes["total"] < len(valid)
    status, children = await api.get("/api/v1/units", {"parent": PROVINCE, "limit": "1000"})
    assert {u["code"] for u in children["items"]} == {u.code for u in tree.children(PROVINCE, TODAY)}
    status, departments = await api.get("/api/v1/units", {"group": "so_nganh", "limit": "1000"})
    assert departments["total"] == sum(1 for u in valid if u.group == "so_nganh") > 10


async def test_one_unit_with_its_versions(api: Live) -> None:
    tree = api.service.units
    status, unit = await api.get(f"/api/v1/units/{PROVINCE}")
    assert status == 200 and unit["valid"] is True and unit["name"] == tree.get(PROVINCE).name  # type: ignore[union-attr]
    assert unit["children"] == [u.code for u in tree.children(PROVINCE, TODAY)]
    # A commune merged away in the reform: gone today, there before, with its successor named.
    merged = next(u for u in tree.versions if u.successors and u.valid_to and u.valid_to < TODAY
                  and tree.get(u.code, TODAY) is None)
    status, gone = await api.get(f"/api/v1/units/{merged.code}")
    assert status == 200 and gone["valid"] is False and gone["successors"] == list(merged.successors)
    assert [v["valid_to"] for v in gone["versions"]] == [plain(v.valid_to) for v in tree.versions_of(merged.code)]
    status, then = await api.get(f"/api/v1/units/{merged.code}", {"day": merged.valid_to.isoformat()})  # type: ignore[union-attr]
    assert status == 200 and then["valid"] is True
    status, successor = await api.get(f"/api/v1/units/{merged.successors[0]}")
    assert merged.code in successor["predecessors"]

    status, body = await api.get("/api/v1/units/000.00.00.Z00")
    assert status == 404 and body == {"error": "no unit '000.00.00.Z00'"}
    status, body = await api.get("/api/v1/units/not-a-code")
    assert status == 404 and "no unit" in body["error"]


# --------------------------------------------------------------------------- pagination


@pytest.mark.parametrize(("path", "params", "limit"), [
    ("/api/v1/units", {}, 7),
    ("/api/v1/evaluations", {"day": "2026-11-22"}, 300),
    ("/api/v1/observations", {"unit": "000.00.01.H99"}, 111),
    ("/api/v1/alerts", {"state": ["pending", "firing"]}, 40),
    ("/api/v1/kpis", {}, 5),  # 15 KPIs: the last page is full, and still the last
])
async def test_pages_add_up_to_the_whole_list(api: Live, path: str, params: dict[str, Any], limit: int) -> None:
    whole, _ = await api.walk(path, [*_pairs(params), ("limit", "1000")])
    items, pages = await api.walk(path, [*_pairs(params), ("limit", str(limit))])
    assert len(pages) > 2, "too few items to paginate"
    assert items == whole  # same order, nothing lost, nothing twice
    assert len({repr(sorted(i.items())) for i in items}) == len(items)
    assert [p["offset"] for p in pages] == [limit * i for i in range(len(pages))]
    assert all(p["count"] == len(p["items"]) == limit and p["total"] == len(whole) for p in pages[:-1])
    assert 0 < pages[-1]["count"] <= limit and pages[-1]["next"] is None
    assert all(p["limit"] == limit for p in pages)
    status, past = await api.get(path, [*_pairs(params), ("offset", str(len(whole) + 5))])
    assert status == 200 and past["items"] == [] and past["count"] == 0 and past["total"] == len(whole)
    assert past["next"] is None


def _pairs(params: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in params.items():
        out.extend((key, v) for v in (value if isinstance(value, list) else [value]))
    return out


async def test_next_keeps_the_filters(api: Live) -> None:
    status, page = await api.get("/api/v1/alerts", [("state", "pending"), ("state", "firing"), ("limit", "3")])
    assert status == 200 and page["next"] is not None
    assert page["next"].startswith("/api/v1/alerts?")
    assert "state=pending" in page["next"] and "state=firing" in page["next"] and "offset=3" in page["next"]


# --------------------------------------------------------------------------- observations


async def test_observations_of_a_unit_and_kpi_are_the_stored_ones(api: Live) -> None:
    service = api.service
    measures = service.catalog.kpis[KPI].measures
    commune = next(u.code for u in service.units.valid_on(TODAY) if u.level == "commune")
    stored = service.store.load_observations(measures, *EVER, units=[commune])
    expected = {(o.measure, o.unit, o.period_start.isoformat(), o.period_end.isoformat(), o.source, o.value,
                 o.collected_at.isoformat()) for o in stored}
    items, pages = await api.walk("/api/v1/observations", {"unit": commune, "kpi": KPI, "limit": "25"})
    got = [(o["measure"], o["unit"], o["period_start"], o["period_end"], o["source"], o["value"],
            o["collected_at"]) for o in items]
    assert len(got) == len(set(got)) == len(expected) > 25 and set(got) == expected
    assert len(pages) == -(-len(expected) // 25)

    # Periods starting within the first quarter of 2026, in the province's calendar.
    start, end = datetime(2026, 1, 1, tzinfo=HANOI), datetime(2026, 4, 1, tzinfo=HANOI)
    quarter = {_key(o) for o in stored if start <= o.period_start < end}
    items, _ = await api.walk("/api/v1/observations", {"unit": commune, "kpi": KPI, "from": "2026-01-01",
                                                       "to": "2026-03-31", "limit": "1000"})
    assert {(o["measure"], o["unit"], o["period_start"], o["period_end"], o["source"], o["value"],
             o["collected_at"]) for o in items} == quarter
    assert 0 < len(quarter) < len(expected)

    # One measure of the KPI; a KPI plus a measure is the union of their measures.
    status, one = await api.get("/api/v1/observations", {"unit": commune, "measure": measures[0], "limit": "1000"})
    assert one["total"] == sum(1 for o in stored if o.measure == measures[0]) > 0
    other = next(m for m in service.catalog.measures if m not in measures)
    status, union = await api.get("/api/v1/observations", [("unit", commune), ("kpi", KPI), ("measure", other)])
    extra = service.store.load_observations([other], *EVER, units=[commune])
    assert union["total"] == len(stored) + len(extra)
    status, empty = await api.get("/api/v1/observations", {"unit": commune, "from": "2026-03-01", "to": "2026-01-01"})
    assert status == 200 and empty["total"] == 0


def _key(o: Any) -> tuple[Any, ...]:
    return (o.measure, o.unit, o.period_start.isoformat(), o.period_end.isoformat(), o.source, o.value,
            o.collected_at.isoformat())


async def test_observations_by_source_and_unknown_names(api: Live) -> None:
    status, page = await api.get("/api/v1/observations", {"source": "thu-cong-vu", "limit": "1"})
    measures = api.service.store.source_measures()["thu-cong-vu"]
    everything = api.service.store.load_observations(measures, *EVER)
    assert status == 200 and page["total"] == sum(1 for o in everything if o.source == "thu-cong-vu") > 0
    for params, message in (({"unit": "000.00.00.Z00"}, "unit: no unit '000.00.00.Z00'"),
                            ({"kpi": "happiness"}, "kpi: no KPI 'happiness'"),
                            ({"measure": "smiles"}, "measure: no measure 'smiles'"),
                            ({"source": "fax"}, "source: no source 'fax'")):
        status, body = await api.get("/api/v1/observations", params)
        assert status == 404 and body == {"error": message}


# --------------------------------------------------------------------------- evaluations, scores


async def test_evaluations_are_the_stored_ones(api: Live) -> None:
    service = api.service
    stored = [{k: plain(v) for k, v in row.items() if k != "id"} for row in service.results.load_evaluations(TODAY)]
    items, _ = await api.walk("/api/v1/evaluations", {"limit": "1000"})  # default: the latest day stored
    assert items == stored and len(stored) == len(service.evaluations) > 500
    assert {i["as_of_day"] for i in items} == {"2026-11-22"}

    rule = service.rules.rules[0].rule.id
    items, _ = await api.walk("/api/v1/evaluations", {"day": "2026-11-22", "rule": rule, "status": "missed"})
    assert items == [r for r in stored if r["rule"] == rule and r["status"] == "missed"] and items
    unit = items[0]["unit"]
    items, _ = await api.walk("/api/v1/evaluations", {"unit": unit, "kpi": KPI})
    assert items == [r for r in stored if r["unit"] == unit and r["kpi"] == KPI]
    status, other_day = await api.get("/api/v1/evaluations", {"day": "2026-11-21"})
    assert status == 200 and other_day["total"] == 0


async def test_scores_are_the_stored_ones(api: Live) -> None:
    stored = api.service.results.load_scores(TODAY, index="ict-ranking")
    items, _ = await api.walk("/api/v1/scores", {"index": "ict-ranking", "group": "so_nganh"})
    wanted = [r for r in stored if r["unit_group"] == "so_nganh"]
    assert [(i["unit"], i["rank"], i["score"], i["criteria"]) for i in items] == [
        (r["unit"], r["rank"], r["score"], r["criteria"]) for r in wanted]
    assert [i["rank"] for i in items] == list(range(1, len(items) + 1)) and len(items) > 10
    assert {i["as_of_day"] for i in items} == {"2026-11-22"}
    all_scores, _ = await api.walk("/api/v1/scores", {"limit": "1000"})
    assert len(all_scores) == len(api.service.results.load_scores(TODAY)) == len(api.service.scores)


# --------------------------------------------------------------------------- catalog, rules, sources


async def test_kpis_and_rules(api: Live) -> None:
    service = api.service
    status, kpis = await api.get("/api/v1/kpis")
    assert [k["id"] for k in kpis["items"]] == list(service.catalog.kpis) and kpis["total"] == len(service.catalog.kpis)
    status, kpi = await api.get(f"/api/v1/kpis/{KPI}")
    definition = service.catalog.kpis[KPI]
    assert status == 200 and kpi["vi"] == definition.vi and kpi["numerator"] == list(definition.numerator)
    assert [m["id"] for m in kpi["measure_details"]] == list(definition.measures)
    assert kpi["rules"] == [r.id for r in service.rules if r.kpi == KPI] != []
    status, body = await api.get("/api/v1/kpis/happiness")
    assert status == 404 and body == {"error": "no KPI 'happiness'"}

    items, _ = await api.walk("/api/v1/rules", {"limit": "5"})
    assert [r["id"] for r in items] == [r.id for r in service.rules]
    first = service.rules.rules[0].rule
    assert items[0]["citation"]["instrument"] == first.citation.instrument
    assert items[0]["deadline"] == first.deadline.isoformat() and items[0]["target"] == first.target
    status, rule = await api.get(f"/api/v1/rules/{first.id}")
    assert rule == items[0]
    status, on_kpi = await api.get("/api/v1/rules", {"kpi": KPI})
    assert [r["id"] for r in on_kpi["items"]] == kpi["rules"]


async def test_sources_report_their_health(api: Live) -> None:
    status, page = await api.get("/api/v1/sources")
    assert status == 200 and [s["id"] for s in page["items"]] == ["qlvb", "thu-cong-vu", "mot-cua"]
    by_id = {s["id"]: s for s in page["items"]}
    assert by_id["qlvb"]["up"] is True and by_id["qlvb"]["last_success_at"] == NOW.isoformat()
    assert by_id["qlvb"]["last_observations"] == 120 and by_id["qlvb"]["last_rejections"] == 7
    failing = by_id["thu-cong-vu"]
    assert failing["up"] is False and failing["consecutive_failures"] == 1
    assert failing["last_error_reason"] == "timeout" and failing["last_error_message"] == "no answer within 5s"
    assert failing["last_error_at"] == (NOW + timedelta(minutes=5)).isoformat()
    assert failing["last_success_at"] == NOW.isoformat()  # the success before it is kept
    assert by_id["mot-cua"]["kind"] == "one_stop" and by_id["mot-cua"]["schedule"]["interval_seconds"] == 3600
    status, one = await api.get("/api/v1/sources/thu-cong-vu")
    assert one == failing
    status, body = await api.get("/api/v1/sources/fax")
    assert status == 404 and body == {"error": "no source 'fax'"}


async def test_rejections_newest_first_in_pages(api: Live) -> None:
    items, pages = await api.walk("/api/v1/sources/qlvb/rejections", {"limit": "3"})
    assert len(pages) == 3 and pages[0]["total"] == 7
    assert [r["raw_ref"] for r in items] == [f"row {i}" for i in reversed(range(7))]
    assert [r["id"] for r in items] == sorted((r["id"] for r in items), reverse=True)
    assert items[0]["reason"] == "negative" and items[0]["unit"] == PROVINCE
    assert items[0]["period_start"] == datetime(2026, 10, 1, tzinfo=HANOI).astimezone(UTC).isoformat()
    stored = api.service.store.recent_rejections("qlvb", limit=100)
    assert [r["id"] for r in items] == [r["id"] for r in stored]
    status, other = await api.get("/api/v1/sources/mot-cua/rejections")
    assert [r["reason"] for r in other["items"]] == ["schema", "unknown_unit"] and other["items"][1]["unit"] is None
    status, body = await api.get("/api/v1/sources/fax/rejections")
    assert status == 404 and body == {"error": "no source 'fax'"}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("path", "params", "message"), [
    ("/api/v1/units", {"limit": "0"}, "limit: a whole number from 1 to 1000, got '0'"),
    ("/api/v1/units", {"limit": "1001"}, "limit: a whole number from 1 to 1000, got '1001'"),
    ("/api/v1/kpis", {"limit": "ten"}, "limit: a whole number from 1 to 1000, got 'ten'"),
    ("/api/v1/observations", {"limit": "5.0"}, "limit: a whole number from 1 to 1000, got '5.0'"),
    ("/api/v1/alerts", {"limit": " 5"}, "limit: a whole number from 1 to 1000, got ' 5'"),
    ("/api/v1/silences", {"offset": "-1"}, "offset: a whole number from 0 to 1000000000, got '-1'"),
    ("/api/v1/units", {"day": "2026-13-01"}, "day: a date written YYYY-MM-DD, e.g. 2026-11-22, got '2026-13-01'"),
    ("/api/v1/units", {"day": "22/11/2026"}, "day: a date written YYYY-MM-DD, e.g. 2026-11-22, got '22/11/2026'"),
    ("/api/v1/evaluations", {"day": "20261122"}, "day: a date written YYYY-MM-DD, e.g. 2026-11-22, got '20261122'"),
    ("/api/v1/observations", {"from": "yesterday"}, "from: a date written YYYY-MM-DD, e.g. 2026-11-22, "
                                                    "got 'yesterday'"),
    ("/api/v1/units", {"level": "village"}, "level: one of national, ministry, province, department, agency, "
                                            "district, commune, ward, special_zone, got 'village'"),
    ("/api/v1/observations", {"unit": "H99"}, "unit: a unit code (QCVN 102, e.g. 000.00.31.H12), got 'H99'"),
    ("/api/v1/evaluations", {"status": "great"}, "status: one of met, on_track, at_risk, behind, missed, no_data, "
                                                 "stale, got 'great'"),
    ("/api/v1/alerts", {"state": "burning\n"}, "state: one of pending, firing, resolved, inactive, got: 'burning\\n'"),
    ("/api/v1/silences", {"all": "maybe"}, "all: true or false, got 'maybe'"),
])
async def test_bad_parameters_are_named(api: Live, path: str, params: dict[str, str], message: str) -> None:
    status, body = await api.get(path, params)
    assert (status, body) == (400, {"error": message})


async def test_framework_errors_are_json(api: Live) -> None:
    async with api.session.put(api.base + "/api/v1/units") as response:
        assert response.status == 405 and response.content_type == "application/json"
        assert "GET" in response.headers["Allow"]
        assert (await response.json())["error"] == "method PUT is not allowed on /api/v1/units; allowed: GET, HEAD"
    async with api.session.get(api.base + "/api/v2/units") as response:
        assert response.status == 404 and response.content_type == "application/json"
        assert (await response.json())["error"].startswith("no such endpoint: /api/v2/units")
    body = b'{"reason": "' + b"x" * 70_000 + b'"}'
    async with api.session.post(api.base + "/api/v1/silences", data=body,
                                headers={**AUTH, "Content-Type": "application/json"}) as response:
        assert response.status == 413 and response.content_type == "application/json"
        assert (await response.json())["error"] == "the request body is too large: at most 65536 bytes"


# --------------------------------------------------------------------------- alerts and silences


async def test_alerts_and_silences_are_paginated_and_writes_need_the_token(api: Live) -> None:
    """Writes silences: the last test of the module to look at them."""
    stored = api.service.alerting.alerts.load(states=["pending", "firing"])
    items, _ = await api.walk("/api/v1/alerts", {"limit": "50"})
    assert [a["id"] for a in items] == [r.id for r in stored] and len(stored) > 50
    status, resolved = await api.get("/api/v1/alerts", {"state": "resolved"})
    assert resolved["total"] == len(api.service.alerting.alerts.load(states=["resolved"]))

    silences = f"{api.base}/api/v1/silences"
    body = {"kpi": KPI, "duration": "2h", "reason": "bảo trì", "created_by": "Phòng CNTT"}
    async with api.session.post(silences, json=body) as response:
        assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    async with api.session.post(silences, json=body, headers={"Authorization": "Bearer guessed"}) as response:
        assert response.status == 401
    made = []
    for hours in (1, 2, 3):
        async with api.session.post(silences, json={**body, "duration": f"{hours}h"}, headers=AUTH) as response:
            assert response.status == 201
            made.append((await response.json())["id"])
    for wrong, message in (({**body, "ends_at": "2026-12-01T00:00:00+07:00"}, "give ends_at or duration, not both"),
                           ({**body, "subtree": "yes"}, "subtree: true or false, got 'yes'"),
                           ({**body, "duration": "1e400"}, "duration: write e.g. 30s, 15m, 2h, 7d, or a number of "
                                                           "seconds, got '1e400'"),
                           ({**body, "duration": 1e300}, "duration: too long, got 1e+300"),
                           ({**body, "created_by": "x" * 201}, "created_by: at most 200 characters")):
        async with api.session.post(silences, json=wrong, headers=AUTH) as response:
            assert (response.status, await response.json()) == (400, {"error": message})
    items, pages = await api.walk("/api/v1/silences", {"limit": "2"})
    assert [s["id"] for s in items] == made and len(pages) == 2 and pages[0]["total"] == 3
    async with api.session.delete(f"{silences}/{made[0]}") as response:
        assert response.status == 401
    async with api.session.delete(f"{silences}/{made[0]}", headers=AUTH) as response:
        assert response.status == 200 and (await response.json())["expired_at"] is not None
    async with api.session.delete(f"{silences}/{'9' * 30}", headers=AUTH) as response:
        assert response.status == 404
    status, active = await api.get("/api/v1/silences")
    assert status == 200 and [s["id"] for s in active["items"]] == made[1:]
    status, everything = await api.get("/api/v1/silences", {"all": "true"})
    assert status == 200 and everything["total"] == 3


# --------------------------------------------------------------------------- the document


async def test_openapi_describes_every_route(api: Live) -> None:
    status, document = await api.get("/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served = {(route.method, route.resource.canonical) for route in api.http.runner.app.router.routes()
              if route.method != "HEAD" and route.resource is not None}
    assert documented == served
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert any(code.startswith("2") for code in operation["responses"]), (method, path)
            if method in ("post", "delete"):
                assert operation["security"] == [{"bearerAuth": []}]
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
    schemas = document["components"]["schemas"]
    refs = _refs(document)
    assert refs and all(ref.rsplit("/", 1)[1] in schemas or ref.rsplit("/", 1)[1] in
                        document["components"]["responses"] | document["components"]["parameters"] for ref in refs)
    columns = {c.name for c in EVALUATIONS.columns} - {"id"}
    assert set(schemas["Evaluation"]["properties"]) == set(schemas["Evaluation"]["required"]) == columns
    for name in ("UnitPage", "EvaluationPage", "AlertPage", "SilencePage"):
        assert set(schemas[name]["required"]) == {"items", "count", "total", "limit", "offset", "next"}
    status, index = await api.get("/")
    assert "/openapi.json" in index["links"] and "/api/v1/evaluations" in index["links"]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()
