"""The ``http_json`` adapter over real HTTP on 127.0.0.1: every paging style, OAuth2 client
credentials, item counting with enum maps, precise rejections, options checked at config
load, and a vendor API the project has never seen, connected by YAML alone.

Expected numbers are recomputed in the tests from the records the server was given,
never copied from the adapter's output.
"""

from __future__ import annotations

import random
import re
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from pydantic import ValidationError

from collectors import CollectionResult, Credentials, MalformedPayload, SourceAuthError, SourceSettings
from collectors.http import SourceHttp, new_session
from collectors.http_json import HttpJsonCollector, HttpJsonOptions
from monitor.catalog import load_catalog
from monitor.collection import CollectionRunner
from monitor.config import Config, load_config
from monitor.errors import ConfigError
from monitor.kpi import KpiEngine
from monitor.metrics import ServiceMetrics
from monitor.storage import Store, create_engine_for, upgrade_database
from monitor.timeutil import FrozenClock, Period, zone
from monitor.units import load_units
from monitor.windows import Window
from tests.collectors.http_json_fixtures import (
    ApiServer,
    Handler,
    Record,
    TokenEndpoint,
    answer,
    cursor_listing,
    link_listing,
    offset_listing,
    page_listing,
)

TZ = zone("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 10:00 in Hanoi
OCT = Period.of_month(2026, 10, TZ)
NOV = Period.of_month(2026, 11, TZ)
UNITS = [f"000.00.{n:02d}.H99" for n in range(1, 8)]
CLIENT_ID = "egovmon dashboard:1"  # a space and a colon: RFC 6749 form-encodes them before Basic
CLIENT_SECRET = "bí-mật&=+/không-lộ"


@pytest.fixture
async def api() -> AsyncIterator[ApiServer]:
    server = ApiServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    client = new_session()
    yield client
    await client.close()


def collector(api: ApiServer, session: aiohttp.ClientSession, options: dict[str, Any], *,
              grain: str = "month", credentials: Credentials | None = None,
              clock: FrozenClock | None = None) -> HttpJsonCollector:
    settings = SourceSettings("thu-nghiem", "http_json", api.url, grain,  # type: ignore[arg-type]
                              options, credentials or Credentials())
    http = SourceHttp("thu-nghiem", api.url, session, timeout=5.0, retries=0)
    return HttpJsonCollector(settings, http, TZ, clock or FrozenClock(NOW))


def oauth(token_url: str, secret: str = CLIENT_SECRET) -> Credentials:
    return Credentials("oauth2", token_url=token_url, client_id=CLIENT_ID, client_secret=secret,
                       scope="thong-ke.doc")


def monthly(month: str, units: list[str], seed: int) -> list[Record]:
    rng = random.Random(seed)
    records = []
    for unit in units:
        total = rng.randint(20, 400)
        records.append({"unit": unit, "month": month,
                        "out": {"total": total, "electronic": rng.randint(0, total)}})
    return records


AGGREGATED = {"unit": "unit", "measures": {"docs_outgoing_total": "out.total",
                                           "docs_outgoing_electronic": "$.out['electronic']"}}


def table(result: CollectionResult) -> dict[tuple[str, str], float]:
    return {(o.unit, o.measure): o.value for o in result.observations}


def expected_table(records: list[Record]) -> dict[tuple[str, str], float]:
    return {**{(r["unit"], "docs_outgoing_total"): float(r["out"]["total"]) for r in records},
            **{(r["unit"], "docs_outgoing_electronic"): float(r["out"]["electronic"]) for r in records}}


# ----------------------------------------------------------------------------- paging

PagingCase = tuple[Callable[[list[Record]], Handler], dict[str, Any], str, int]
PAGING: dict[str, PagingCase] = {
    # handler, options.pagination, options.records, requests expected for 7 records in pages of 3
    "page": (lambda rs: page_listing(rs), {"style": "page", "size": 3}, "$.data", 4),
    "offset": (lambda rs: offset_listing(rs), {"style": "offset", "size": 3}, "items", 4),
    "cursor": (lambda rs: cursor_listing(rs, 3), {"style": "cursor", "cursor": "$.paging.next"},
               "$.result.rows", 3),
    "next_link_body": (lambda rs: link_listing(rs, 3, in_header=False),
                       {"style": "next_link", "next": "links.next"}, "rows", 3),
    "next_link_header": (lambda rs: link_listing(rs, 3, in_header=True), {"style": "next_link"}, "$", 3),
}


@pytest.mark.parametrize("style", sorted(PAGING))
async def test_each_paging_style_reads_every_record_once(api: ApiServer, session: aiohttp.ClientSession,
                                                         style: str) -> None:
    make_handler, pagination, records_path, requests = PAGING[style]
    records = monthly("2026-10", UNITS, seed=7)
    api.get("/stats", make_handler(records))
    options = {**AGGREGATED, "records": records_path, "pagination": pagination,
               "request": {"path": "/stats", "params": {"month": "{month}"}}}

    result = await collector(api, session, options).collect([OCT], set(UNITS))

    assert result.rejections == []
    assert table(result) == expected_table(records)
    assert len(api.seen("GET", "/stats")) == requests
    assert all(s.query["month"] == "2026-10" for s in api.seen("GET", "/stats"))
    refs = {o.raw_ref for o in result.observations}
    assert len(refs) == len(records)  # one reference per record, naming its page and index
    assert all(ref is not None and ref.startswith("GET /stats?") and "#" in ref for ref in refs)


async def test_raw_ref_names_the_page_and_the_index(api: ApiServer, session: aiohttp.ClientSession) -> None:
    records = monthly("2026-10", UNITS, seed=3)
    api.get("/stats", page_listing(records))
    options = {**AGGREGATED, "records": "data", "request": {"path": "/stats"},
               "pagination": {"style": "page", "size": 3}}
    result = await collector(api, session, options).collect([OCT], set(UNITS))
    fifth = records[4]["unit"]  # page 2, index 1
    assert {o.raw_ref for o in result.observations if o.unit == fifth} == {"GET /stats?page=2&page_size=3#1"}


async def test_more_pages_than_max_pages_is_a_clear_error(api: ApiServer, session: aiohttp.ClientSession) -> None:
    api.get("/stats", page_listing(monthly("2026-10", UNITS, seed=1)))
    options = {**AGGREGATED, "records": "data", "request": {"path": "/stats"},
               "pagination": {"style": "page", "size": 2, "max_pages": 3}}
    with pytest.raises(MalformedPayload, match=r"still more pages after options\.pagination\.max_pages = 3"):
        await collector(api, session, options).collect([OCT], set(UNITS))
    assert len(api.seen("GET", "/stats")) == 4  # the fourth page had records: refused, not stored partly


async def test_a_repeated_cursor_is_refused_instead_of_looping(api: ApiServer,
                                                               session: aiohttp.ClientSession) -> None:
    async def stuck(request: web.Request) -> web.Response:
        return answer({"rows": monthly("2026-10", UNITS[:1], seed=2), "next": "same"})

    api.get("/stats", stuck)
    options = {**AGGREGATED, "records": "rows", "request": {"path": "/stats"},
               "pagination": {"style": "cursor", "cursor": "next"}}
    with pytest.raises(MalformedPayload, match="same cursor"):
        await collector(api, session, options).collect([OCT], set(UNITS))
    assert len(api.seen("GET", "/stats")) == 2


async def test_a_next_link_to_another_host_is_not_followed(api: ApiServer, session: aiohttp.ClientSession) -> None:
    async def leaking(request: web.Request) -> web.Response:
        return answer({"rows": monthly("2026-10", UNITS[:2], seed=2),
                       "next": "https://thu-thap.example.net/steal?page=2"})

    api.get("/stats", leaking)
    options = {**AGGREGATED, "records": "rows", "request": {"path": "/stats"},
               "pagination": {"style": "next_link", "next": "next"}}
    with pytest.raises(MalformedPayload, match=r"outside the source's url \(to https://thu-thap\.example\.net\)"):
        await collector(api, session, options).collect([OCT], set(UNITS))


async def test_placeholders_fill_path_and_params_per_period(api: ApiServer, session: aiohttp.ClientSession) -> None:
    async def empty(request: web.Request) -> web.Response:
        return answer({"data": []})

    api.get("/bao-cao/2026", empty)
    options = {**AGGREGATED, "records": "data",
               "request": {"path": "/bao-cao/{year}", "params": {
                   "tu": "{start}", "den": "{end_inclusive}", "truoc": "{end}", "ky": "{month}",
                   "luc": "{start_datetime}", "loai": "di", "so": 5}}}
    days = [Period.of_day(datetime(2026, 10, 31).date(), TZ)]
    await collector(api, session, options, grain="day").collect(days, set(UNITS))
    await collector(api, session, options).collect([OCT, NOV], set(UNITS))
    queries = [s.query for s in api.seen("GET", "/bao-cao/2026")]
    assert queries == [
        {"tu": "2026-10-31", "den": "2026-10-31", "truoc": "2026-11-01", "ky": "2026-10",
         "luc": "2026-10-31T00:00:00+07:00", "loai": "di", "so": "5"},
        {"tu": "2026-10-01", "den": "2026-10-31", "truoc": "2026-11-01", "ky": "2026-10",
         "luc": "2026-10-01T00:00:00+07:00", "loai": "di", "so": "5"},
        {"tu": "2026-11-01", "den": "2026-11-30", "truoc": "2026-12-01", "ky": "2026-11",
         "luc": "2026-11-01T00:00:00+07:00", "loai": "di", "so": "5"},
    ]


# ----------------------------------------------------------------------------- OAuth2

def protected_stats(api: ApiServer, endpoint: TokenEndpoint, by_month: dict[str, list[Record]]) -> None:
    api.post("/oauth/token", endpoint.handle)

    async def stats(request: web.Request) -> web.Response:
        records = by_month[request.query["month"]]
        page, size = int(request.query["page"]), int(request.query["page_size"])
        return answer({"data": records[(page - 1) * size:page * size]})

    api.get("/stats", endpoint.protect(stats))


OAUTH_OPTIONS = {**AGGREGATED, "records": "data", "request": {"path": "/stats", "params": {"month": "{month}"}},
                 "pagination": {"style": "page", "size": 4}}


async def test_oauth2_token_is_fetched_once_and_reused(api: ApiServer, session: aiohttp.ClientSession) -> None:
    endpoint = TokenEndpoint(CLIENT_ID, CLIENT_SECRET)
    by_month = {"2026-10": monthly("2026-10", UNITS, 1), "2026-11": monthly("2026-11", UNITS, 2)}
    protected_stats(api, endpoint, by_month)

    result = await collector(api, session, OAUTH_OPTIONS, credentials=oauth(f"{api.url}/oauth/token")
                             ).collect([OCT, NOV], set(UNITS))

    assert len(result.observations) == 2 * 2 * len(UNITS) and result.rejections == []
    assert endpoint.issued == ["tok-1"] and endpoint.scopes == ["thong-ke.doc"]
    data = api.seen("GET", "/stats")
    assert len(data) == 6  # two pages with records and an empty one, per month
    assert {s.headers["Authorization"] for s in data} == {"Bearer tok-1"}


async def test_oauth2_token_is_fetched_again_once_after_a_401(api: ApiServer,
                                                              session: aiohttp.ClientSession) -> None:
    endpoint = TokenEndpoint(CLIENT_ID, CLIENT_SECRET)
    by_month = {"2026-10": monthly("2026-10", UNITS, 1), "2026-11": monthly("2026-11", UNITS, 2)}
    protected_stats(api, endpoint, by_month)
    source = collector(api, session, OAUTH_OPTIONS, credentials=oauth(f"{api.url}/oauth/token"))

    first = await source.collect([OCT], set(UNITS))
    endpoint.revoked.add("tok-1")  # the server forgets it before it expires
    second = await source.collect([NOV], set(UNITS))

    assert table(first) == expected_table(by_month["2026-10"])
    assert table(second) == expected_table(by_month["2026-11"])
    assert endpoint.issued == ["tok-1", "tok-2"]
    statuses = [s.headers["Authorization"] for s in api.seen("GET", "/stats")]
    assert statuses == ["Bearer tok-1"] * 3 + ["Bearer tok-1"] + ["Bearer tok-2"] * 3


async def test_oauth2_token_is_renewed_before_it_expires(api: ApiServer, session: aiohttp.ClientSession) -> None:
    endpoint = TokenEndpoint(CLIENT_ID, CLIENT_SECRET, expires_in=60)
    protected_stats(api, endpoint, {"2026-10": monthly("2026-10", UNITS, 1)})
    clock = FrozenClock(NOW)
    source = collector(api, session, OAUTH_OPTIONS, credentials=oauth(f"{api.url}/oauth/token"), clock=clock)

    await source.collect([OCT], set(UNITS))
    clock.advance(timedelta(seconds=20))
    await source.collect([OCT], set(UNITS))
    assert endpoint.issued == ["tok-1"]
    clock.advance(timedelta(seconds=15))  # 35 s: within 30 s of the 60 s lifetime
    await source.collect([OCT], set(UNITS))
    assert endpoint.issued == ["tok-1", "tok-2"]
    used = [s.headers["Authorization"] for s in api.seen("GET", "/stats")]
    assert used == ["Bearer tok-1"] * 6 + ["Bearer tok-2"] * 3  # renewed before use, not after a 401


async def test_oauth2_wrong_secret_is_an_auth_error_without_the_secret(api: ApiServer,
                                                                       session: aiohttp.ClientSession) -> None:
    endpoint = TokenEndpoint(CLIENT_ID, CLIENT_SECRET)
    protected_stats(api, endpoint, {"2026-10": []})
    wrong = "sai-mật-khẩu-9f8e7d"
    source = collector(api, session, OAUTH_OPTIONS, credentials=oauth(f"{api.url}/oauth/token", wrong))

    with pytest.raises(SourceAuthError) as caught:
        await source.collect([OCT], set(UNITS))

    message = str(caught.value)
    assert "OAuth2 token request refused: POST " in message and "/oauth/token: HTTP 401: invalid_client" in message
    assert "check auth.token_url, auth.client_id, auth.client_secret and auth.scope" in message
    assert wrong not in message and CLIENT_SECRET not in message
    assert caught.value.permanent
    assert api.seen("GET", "/stats") == []  # no data request went out without a token


async def test_oauth2_a_token_the_api_never_accepts_stops_after_one_renewal(
        api: ApiServer, session: aiohttp.ClientSession) -> None:
    endpoint = TokenEndpoint(CLIENT_ID, CLIENT_SECRET)
    api.post("/oauth/token", endpoint.handle)

    async def refuse(request: web.Request) -> web.Response:
        return answer({"error": "insufficient_scope"}, status=401)

    api.get("/stats", refuse)
    with pytest.raises(SourceAuthError, match="HTTP 401: insufficient_scope"):
        await collector(api, session, OAUTH_OPTIONS, credentials=oauth(f"{api.url}/oauth/token")
                        ).collect([OCT], set(UNITS))
    assert endpoint.issued == ["tok-1", "tok-2"] and len(api.seen("GET", "/stats")) == 2


# ----------------------------------------------------------------------------- item records

STATES = {1: "du_thao", 2: "da_phat_hanh", 3: "thu_hoi"}
FORMS = {"DT": "dien_tu", "GIAY": "giay"}
COUNT_OPTIONS: dict[str, Any] = {
    "records": "$.ketQua[*]", "unit": "coQuan.ma",
    "request": {"path": "/van-ban-di", "params": {"tuNgay": "{start}", "denNgay": "{end_inclusive}"}},
    "period": {"path": "ngayBanHanh", "format": "datetime"},
    "enums": {"trangThai": STATES, "hinhThuc": FORMS},
    "count": {"docs_outgoing_total": {"where": {"trangThai": ["da_phat_hanh"]}},
              "docs_outgoing_electronic": {"where": {"trangThai": ["da_phat_hanh"], "hinhThuc": ["dien_tu"]}}},
    "pagination": {"style": "page", "param": "trang", "size_param": "soBanGhi", "size": 25},
}


def documents(seed: int) -> list[Record]:
    rng = random.Random(seed)
    items: list[Record] = []
    for n in range(140):
        day = rng.randint(1, 31)
        items.append({"so": f"{n}/UBND-VP", "coQuan": {"ma": rng.choice(UNITS[:5])},
                      "trangThai": rng.choice([1, 2, 2, 2, 3]), "hinhThuc": rng.choice(["DT", "DT", "GIAY"]),
                      "ngayBanHanh": f"2026-10-{day:02d}T{rng.randint(7, 17):02d}:15:00"})
    items[0]["coQuan"]["ma"] = UNITS[6]  # a unit whose only document is a draft: counts 0, not absent
    items[0]["trangThai"] = 1
    return items


def item_listing(items: list[Record]) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        page, size = int(request.query["trang"]), int(request.query["soBanGhi"])
        return answer({"ketQua": items[(page - 1) * size:page * size]})
    return handle


async def test_items_are_counted_through_the_enum_maps(api: ApiServer, session: aiohttp.ClientSession) -> None:
    items = documents(seed=11)
    api.get("/van-ban-di", item_listing(items))

    result = await collector(api, session, COUNT_OPTIONS).collect([OCT], set(UNITS))

    assert result.rejections == []
    expected: dict[tuple[str, str], float] = {}
    for item in items:
        unit = item["coQuan"]["ma"]
        issued = item["trangThai"] == 2
        expected[(unit, "docs_outgoing_total")] = expected.get((unit, "docs_outgoing_total"), 0) + issued
        expected[(unit, "docs_outgoing_electronic")] = (expected.get((unit, "docs_outgoing_electronic"), 0)
                                                        + (issued and item["hinhThuc"] == "DT"))
    assert table(result) == expected
    assert table(result)[(UNITS[6], "docs_outgoing_total")] == 0
    assert all(o.period == OCT for o in result.observations)
    assert len(api.seen("GET", "/van-ban-di")) == 7  # 140 items in pages of 25, then an empty page


async def test_unmapped_codes_and_other_months_are_rejected_the_rest_counted(
        api: ApiServer, session: aiohttp.ClientSession) -> None:
    items = documents(seed=5)
    items[3]["trangThai"] = 9
    items[4]["ngayBanHanh"] = "2026-10-31T17:30:00Z"  # 00:30 on 1 November in Hanoi
    items[5]["ngayBanHanh"] = "31/10/2026"
    del items[6]["hinhThuc"]
    api.get("/van-ban-di", item_listing(items))

    result = await collector(api, session, COUNT_OPTIONS).collect([OCT], set(UNITS))

    by_ref = {r.raw_ref: r for r in result.rejections}
    assert set(by_ref) == {f"GET /van-ban-di?tuNgay=2026-10-01&denNgay=2026-10-31&trang=1&soBanGhi=25#{i}"
                           for i in (3, 4, 5, 6)}
    ref = "GET /van-ban-di?tuNgay=2026-10-01&denNgay=2026-10-31&trang=1&soBanGhi=25#"
    unmapped = by_ref[ref + "3"]
    assert unmapped.reason == "unmapped_value"
    assert "trangThai = 9 is not in options.enums['trangThai'] (known: 1, 2, 3)" in unmapped.detail
    moved = by_ref[ref + "4"]
    assert moved.reason == "unexpected_period" and moved.period == NOV
    assert "is in 2026-11, but the request was for 2026-10" in moved.detail
    assert by_ref[ref + "5"].reason == "bad_period" and "'31/10/2026' is not a datetime" in by_ref[ref + "5"].detail
    assert by_ref[ref + "6"].reason == "missing_field" and "hinhThuc (used by count.where) missing" in (
        by_ref[ref + "6"].detail)
    kept = [item for i, item in enumerate(items) if i not in (3, 4, 5, 6)]
    total = sum(o.value for o in result.observations if o.measure == "docs_outgoing_total")
    assert total == sum(1 for item in kept if item["trangThai"] == 2)


# ----------------------------------------------------------------------------- rejections

async def test_bad_records_are_rejected_precisely_the_rest_stored(api: ApiServer,
                                                                   session: aiohttp.ClientSession) -> None:
    good = monthly("2026-10", UNITS[:4], seed=9)
    bad: list[Any] = [
        "không phải đối tượng",
        {"month": "2026-10", "out": {"total": 5, "electronic": 1}},
        {"unit": UNITS[4], "month": "2026-10", "out": {"total": 5}},
        {"unit": UNITS[5], "month": "2026-10", "out": {"total": "12", "electronic": 3}},
        {"unit": "000.00.99.H99", "month": "2026-10", "out": {"total": 5, "electronic": 1}},
        {"unit": UNITS[6], "month": "10/2026", "out": {"total": 5, "electronic": 1}},
        {"unit": UNITS[6], "month": "2026-09", "out": {"total": 5, "electronic": 1}},
        {**good[0], "out": {"total": 999, "electronic": 1}},
    ]
    served = good + bad
    api.get("/stats", page_listing(served))
    options = {**AGGREGATED, "records": "data", "request": {"path": "/stats"},
               "period": {"path": "month", "format": "month"}, "pagination": {"style": "page", "size": 50}}

    result = await collector(api, session, options).collect([OCT], set(UNITS))

    assert table(result) == expected_table(good)
    got = [(r.reason, int(str(r.raw_ref).rpartition("#")[2])) for r in result.rejections]
    first_bad = len(good)
    assert got == [(reason, first_bad + i) for i, reason in enumerate(
        ["not_an_object", "missing_field", "missing_field", "not_a_number", "unknown_unit", "bad_period",
         "unexpected_period", "duplicate"])]
    details = [r.detail for r in result.rejections]
    assert "expected a JSON object, got 'không phải đối tượng'" in details[0]
    assert "no unit code at unit (options.unit); the record has fields month, out" in details[1]
    assert "$.out['electronic'] (measures.docs_outgoing_electronic) missing" in details[2]
    assert "out.total = '12' (measures.docs_outgoing_total) is not a JSON number" in details[3]
    assert "unit = '000.00.99.H99' is not a unit of the tree" in details[4]
    assert "month (options.period) = '10/2026' is not a month like 2026-10" in details[5]
    assert "is in 2026-09, but the request was for 2026-10" in details[6]
    assert f"a second record for {UNITS[0]} 2026-10; the first one was kept" in details[7]
    assert [r.unit for r in result.rejections][2:] == [UNITS[4], UNITS[5], "000.00.99.H99", UNITS[6],
                                                       UNITS[6], UNITS[0]]


async def test_unit_map_translates_vendor_codes(api: ApiServer, session: aiohttp.ClientSession) -> None:
    records = [{"unit": 17, "month": "2026-10", "out": {"total": 10, "electronic": 4}},
               {"unit": "SNV", "month": "2026-10", "out": {"total": 8, "electronic": 8}},
               {"unit": "SXD", "month": "2026-10", "out": {"total": 3, "electronic": 1}}]
    api.get("/stats", page_listing(records))
    options = {**AGGREGATED, "records": "data", "request": {"path": "/stats"},
               "pagination": {"style": "page", "size": 10},
               "unit_map": {17: UNITS[0], "SNV": UNITS[1], "SXD": "000.00.98.H99"}}
    result = await collector(api, session, options).collect([OCT], set(UNITS))
    assert table(result) == {(UNITS[0], "docs_outgoing_total"): 10, (UNITS[0], "docs_outgoing_electronic"): 4,
                             (UNITS[1], "docs_outgoing_total"): 8, (UNITS[1], "docs_outgoing_electronic"): 8}
    [rejection] = result.rejections
    assert rejection.reason == "unknown_unit"
    assert "unit = 'SXD' (options.unit_map → '000.00.98.H99') is not a unit of the tree" in rejection.detail


async def test_an_answer_no_record_fits_is_refused_whole(api: ApiServer, session: aiohttp.ClientSession) -> None:
    api.get("/stats", page_listing([{"maDV": u, "tong": 3} for u in UNITS]))
    options = {**AGGREGATED, "records": "data", "request": {"path": "/stats"},
               "pagination": {"style": "page", "size": 50}}
    with pytest.raises(MalformedPayload, match=r"none of the 7 records has the fields the options name.*"
                                               r"no unit code at unit \(options\.unit\)"):
        await collector(api, session, options).collect([OCT], set(UNITS))


async def test_records_path_that_finds_no_list_is_malformed(api: ApiServer, session: aiohttp.ClientSession) -> None:
    async def renamed(request: web.Request) -> web.Response:
        return answer({"items": [], "tong": 0})

    api.get("/stats", renamed)
    options = {**AGGREGATED, "records": "$.data", "request": {"path": "/stats"}}
    with pytest.raises(MalformedPayload, match=r"expected a list of records at \$\.data \(options\.records\), "
                                               r"got nothing there \(fields items, tong\)"):
        await collector(api, session, options).collect([OCT], set(UNITS))


# ----------------------------------------------------------------------------- options

@pytest.mark.parametrize(("options", "message"), [
    ({"unit": "u"}, "give exactly one of 'measures'"),
    ({"unit": "u", "measures": {"a": "x"}, "count": {"b": {}}}, "give exactly one of 'measures'"),
    ({"unit": "u", "measures": {"a": "x"}, "pagnation": {"style": "page"}}, "Extra inputs are not permitted"),
    ({"unit": "u", "measures": {"a": "x["}}, "unexpected '[' at position 1"),
    ({"unit": "u", "measures": {"a": "x"}, "request": {"params": {"tu": "{from}"}}},
     "unknown placeholder {from}"),
    ({"unit": "u", "measures": {"a": "x"}, "request": {"path": "stats"}}, "path must start with '/'"),
    ({"unit": "u", "measures": {"a": "x"}, "pagination": {"style": "pages"}}, "does not match any of the expected"),
    ({"unit": "u", "count": {"a": {"where": {"s": ["da_phat_hanh"]}}}, "enums": {"s": {"1": "da_phat_hnh"}}},
     "['da_phat_hanh'] not among the state names of enums['s']: da_phat_hnh"),
    ({"unit": "u", "count": {"a": {"where": {"s": ["x"]}}}, "enums": {"trang_thai": {"1": "x"}}},
     "enums['trang_thai'] is not used by any count.where"),
    ({"unit": "u", "measures": {"a": "x"}, "period": {"path": "ky", "format": "quarter"}}, "from_request"),
])
def test_options_are_checked_with_clear_messages(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        HttpJsonOptions.model_validate(options)
    assert message in str(caught.value)


def test_a_typo_in_options_is_reported_by_config_load_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "units.yaml").write_text(UNITS_YAML, encoding="utf-8")
    (tmp_path / "monitor.yaml").write_text(textwrap.dedent("""\
        version: 1
        province: {name: Tỉnh Sơn Hà}
        units: {file: units.yaml}
        sources:
          - id: vendor
            kind: http_json
            url: http://127.0.0.1:9/api
            options:
              unit: maDonVi
              measures: {docs_outgoing_total: soVanBanDi.tong}
              pagination: {style: cursor, cursor: next, max_page: 5}
        """), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "monitor.yaml")
    text = str(caught.value)
    assert "monitor.yaml:5" in text and "options.pagination.cursor.max_page" in text, text


def test_the_guides_examples_are_valid_options() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "connect" / "http_json.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", guide, re.DOTALL)]
    options = [s["options"] for b in blocks for s in b.get("sources", [b])]
    assert len(options) == 2
    for option in options:
        HttpJsonOptions.model_validate(option)


# ----------------------------------------------------------------------------- a system never seen

UNITS_YAML = textwrap.dedent("""\
    version: 1
    groups: {so: {vi: Sở, en: Department}}
    units:
      - {code: 000.00.00.H99, name: UBND tỉnh Sơn Hà, level: province, group: tinh}
      - {code: 000.00.01.H99, name: Sở Nội vụ, level: department, group: so, parent: 000.00.00.H99}
      - {code: 000.00.02.H99, name: Sở Tài chính, level: department, group: so, parent: 000.00.00.H99}
      - {code: 000.00.03.H99, name: Sở Xây dựng, level: department, group: so, parent: 000.00.00.H99}
    """)
VENDOR_CODES = {"SNV": "000.00.01.H99", "STC": "000.00.02.H99", "SXD": "000.00.03.H99"}
# The vendor's monitor.yaml entry as an operator writes it (the example of docs/connect/http_json.md).
VENDOR_SOURCE = """\
- id: qlvb-abc
  kind: http_json
  url: {url}/api/v3
  backfill_from: 2026-09-01
  timeout: 5s
  retries: 0
  auth:
    type: oauth2
    token_url: {url}/oauth/token
    client_id: "{client_id}"
    client_secret: ${{ABC_CLIENT_SECRET}}
    scope: thong-ke.doc
  options:
    request:
      path: /thong-ke/van-ban-di
      params: {{tuNgay: "{{start}}", denNgay: "{{end_inclusive}}", kichThuoc: 2}}
    records: $.duLieu.danhSach
    unit: maDonVi
    unit_map: {{SNV: 000.00.01.H99, STC: 000.00.02.H99, SXD: 000.00.03.H99}}
    period: {{path: kyBaoCao, format: month}}
    measures:
      docs_outgoing_total: soVanBanDi.tongSo
      docs_outgoing_electronic: soVanBanDi.phatHanhDienTu
    pagination: {{style: cursor, cursor: $.duLieu.conTroTiep, param: conTro}}
"""


class VendorApi:
    """"Hệ thống QLVB ABC": monthly statistics under duLieu.danhSach, two per page, opaque cursors,
    OAuth2. It also reports an agency ("BQLDA") the province has not mapped."""

    def __init__(self, api: ApiServer) -> None:
        self.endpoint = TokenEndpoint(CLIENT_ID, CLIENT_SECRET)
        rng = random.Random(2026)
        self.months: dict[str, list[Record]] = {}
        for first, last in (("2026-09-01", "2026-09-30"), ("2026-10-01", "2026-10-31"),
                            ("2026-11-01", "2026-11-30")):
            rows = []
            for code in [*VENDOR_CODES, "BQLDA"]:
                total = rng.randint(30, 500)
                rows.append({"maDonVi": code, "tenDonVi": f"Đơn vị {code}", "kyBaoCao": first[:7],
                             "soVanBanDi": {"tongSo": total, "phatHanhDienTu": rng.randint(0, total)}})
            self.months[f"{first}..{last}"] = rows
        api.post("/oauth/token", self.endpoint.handle)
        api.get("/api/v3/thong-ke/van-ban-di", self.endpoint.protect(self.handle))

    async def handle(self, request: web.Request) -> web.Response:
        rows = self.months.get(f"{request.query['tuNgay']}..{request.query['denNgay']}", [])
        size = int(request.query["kichThuoc"])
        start = int(request.query.get("conTro", "0x0"), 16)
        following = hex(start + size) if start + size < len(rows) else None
        return answer({"maLoi": 0, "thongBao": "Thành công",
                       "duLieu": {"danhSach": rows[start:start + size], "conTroTiep": following}})

    def sums(self, month: str, codes: list[str]) -> tuple[int, int]:
        rows = [r for key, rs in self.months.items() if key.startswith(month) for r in rs if r["maDonVi"] in codes]
        return (sum(r["soVanBanDi"]["phatHanhDienTu"] for r in rows), sum(r["soVanBanDi"]["tongSo"] for r in rows))


def vendor_config(directory: Path, url: str) -> Path:
    (directory / "units.yaml").write_text(UNITS_YAML, encoding="utf-8")
    sources = yaml.safe_load(VENDOR_SOURCE.format(url=url, client_id=CLIENT_ID))
    document = {"version": 1, "province": {"name": "Tỉnh Sơn Hà", "code": "000.00.00.H99"},
                "database": {"url": f"sqlite:///{directory / 'egovmon.db'}"}, "http": {"listen": "127.0.0.1:0"},
                "units": {"file": "units.yaml"}}
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    text += "sources:\n" + textwrap.indent(yaml.safe_dump(sources, allow_unicode=True, sort_keys=False), "  ")
    path = directory / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@contextmanager
def wired(config: Config) -> Iterator[tuple[CollectionRunner, Store, KpiEngine]]:
    """The runner, store and KPI engine of the service, over the config's SQLite file."""
    engine = create_engine_for(config.database.url)
    upgrade_database(engine)
    units, catalog, store = load_units(config.units.file), load_catalog(), Store(engine)
    try:
        yield (CollectionRunner(config, store, catalog, units, ServiceMetrics(), FrozenClock(NOW)), store,
               KpiEngine(catalog, units, store, config.tz))
    finally:
        engine.dispose()


async def test_a_system_the_project_has_never_seen_is_connected_by_yaml_alone(
        api: ApiServer, tmp_path: Path) -> None:
    vendor = VendorApi(api)
    config = load_config(vendor_config(tmp_path, api.url), environ={"ABC_CLIENT_SECRET": CLIENT_SECRET})
    with wired(config) as (runner, store, kpis):
        summary = await runner.collect("qlvb-abc")
        month = kpis.compute(NOW, [Window.parse("month")], kpis=["outgoing_docs_electronic_rate"])
        ytd = kpis.compute(NOW, [Window.parse("ytd")], kpis=["outgoing_docs_electronic_rate"])
        rejections = store.recent_rejections("qlvb-abc", limit=100)

    assert summary.ok, summary.error
    assert summary.periods == 3  # September, October and November 2026
    assert summary.observations == 3 * len(VENDOR_CODES) * 2
    assert summary.rejected_by_reason == {"unknown_unit": 3}  # BQLDA, once a month
    assert all("maDonVi = 'BQLDA'" in r["detail"] for r in rejections)
    assert vendor.endpoint.issued == ["tok-1"]  # one token for the whole run
    by_unit = {v.unit: v for v in month}
    for code, unit in VENDOR_CODES.items():
        numerator, denominator = vendor.sums("2026-11", [code])
        assert (by_unit[unit].numerator, by_unit[unit].denominator) == (numerator, denominator)
    numerator, denominator = vendor.sums("2026-11", list(VENDOR_CODES))
    province = by_unit["000.00.00.H99"]
    assert (province.numerator, province.denominator) == (numerator, denominator)
    assert province.value == pytest.approx(numerator / denominator)
    assert province.units_reporting == 3
    ytd_numerator = sum(vendor.sums(m, list(VENDOR_CODES))[0] for m in ("2026-09", "2026-10", "2026-11"))
    ytd_denominator = sum(vendor.sums(m, list(VENDOR_CODES))[1] for m in ("2026-09", "2026-10", "2026-11"))
    province_ytd = next(v for v in ytd if v.unit == "000.00.00.H99")
    assert (province_ytd.numerator, province_ytd.denominator) == (ytd_numerator, ytd_denominator)


async def test_dry_run_stores_nothing_and_previews_everything(api: ApiServer, tmp_path: Path) -> None:
    vendor = VendorApi(api)
    config = load_config(vendor_config(tmp_path, api.url), environ={"ABC_CLIENT_SECRET": CLIENT_SECRET})
    with wired(config) as (runner, store, _):
        summary = await runner.collect("qlvb-abc", dry_run=True)
        stored = store.count_observations()
        watermark = store.watermark("qlvb-abc")
        rejections = store.recent_rejections("qlvb-abc", limit=100)

    assert summary.ok, summary.error
    assert stored == 0 and watermark is None and rejections == []
    served = [r for rows in vendor.months.values() for r in rows if r["maDonVi"] in VENDOR_CODES]
    preview = {(o.unit, o.period.label(TZ), o.measure): o.value for o in summary.preview}
    assert preview == {
        **{(VENDOR_CODES[r["maDonVi"]], r["kyBaoCao"], "docs_outgoing_total"): r["soVanBanDi"]["tongSo"]
           for r in served},
        **{(VENDOR_CODES[r["maDonVi"]], r["kyBaoCao"], "docs_outgoing_electronic"):
           r["soVanBanDi"]["phatHanhDienTu"] for r in served}}
    assert [r.reason for r in summary.rejected] == ["unknown_unit"] * 3
    assert all(r.raw_ref and r.raw_ref.startswith("GET /thong-ke/van-ban-di?") for r in summary.rejected)
