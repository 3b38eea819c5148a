"""SourceHttp against a real loopback server: error mapping, retries, paging."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web

from collectors.base import (
    CollectorError,
    MalformedPayload,
    SourceAuthError,
    SourceRateLimited,
    SourceRequestError,
    SourceTimeout,
    SourceUnavailable,
)
from collectors.http import SourceHttp, describe_request, excerpt, new_session
from tests.collectors.conftest import SECRET, Handler, Harness

PATH = "/api/thong-ke"


def assert_clean_message(error: CollectorError) -> None:
    assert PATH in str(error)
    assert SECRET not in str(error) and "bí-mật" not in str(error)


# ----------------------------------------------------------------------------- success

async def test_get_json_sends_params_and_headers(harness: Harness) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"xin_chao": "Sơn Hà"})

    harness.server.routes[PATH] = ok
    document = await harness.http().get_json(PATH, {"from": "2025-03-01", "page": 2})
    assert document == {"xin_chao": "Sơn Hà"}
    seen = harness.server.requests[-1]
    assert seen.query == {"from": "2025-03-01", "page": "2"}
    assert seen.headers["Authorization"] == SECRET
    assert harness.sleeps == []


async def test_new_session_sizes_the_pool() -> None:
    session = new_session(7)
    try:
        assert session.connector is not None
        assert (session.connector.limit, session.connector.limit_per_host) == (7, 7)
    finally:
        await session.close()
    with pytest.raises(ValueError, match="concurrency must be at least 1, got: 0"):
        new_session(0)


def test_constructor_refuses_a_url_that_is_not_http(harness: Harness) -> None:
    with pytest.raises(ValueError, match="url must start with http:// or https://") as caught:
        SourceHttp("nguon-thu", "ftp://quan.tri:mat-khau@qlvb.sonha.gov.vn", harness.session)
    assert "mat-khau" not in str(caught.value)


async def test_an_invalid_url_is_a_request_error_without_credentials(harness: Harness) -> None:
    http = SourceHttp("nguon-thu", "http://quan.tri:mat-khau@[qlvb", harness.session)
    with pytest.raises(SourceRequestError) as caught:
        await http.get_json(PATH)
    assert caught.value.permanent and "mat-khau" not in str(caught.value)


async def test_connection_errors_never_show_url_credentials(harness: Harness) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = SourceHttp("nguon-thu", f"http://quan.tri:mat-khau@127.0.0.1:{port}",
                      harness.session, retries=0)
    with pytest.raises(SourceUnavailable) as caught:
        await http.get_json(PATH)
    assert "mat-khau" not in str(caught.value)


def test_constructor_refuses_nonsense(harness: Harness) -> None:
    with pytest.raises(ValueError, match="timeout must be positive, got: 0"):
        harness.http(timeout=0)
    with pytest.raises(ValueError, match="retries must not be negative, got: -1"):
        harness.http(retries=-1)


def test_describe_request_masks_secret_parameters() -> None:
    described = describe_request("/p", {"from": "2025-03-01", "api_key": "abc", "token": "t"})
    assert described == "GET /p?from=2025-03-01&api_key=***&token=***"


def test_excerpt_prefers_the_error_field_and_stays_short() -> None:
    assert excerpt(b'{"error": "Sai tham s\\u1ed1 from"}') == "Sai tham số from"
    assert excerpt(b"") == "(empty body)"
    long = excerpt(b"<html>" + b"x" * 1000 + b"</html>")
    assert len(long) == 201 and long.endswith("…")


# ----------------------------------------------------------------------------- transient faults

async def test_5xx_is_unavailable_after_every_retry(harness: Harness) -> None:
    harness.server.fail(503, {"error": "Hệ thống đang bảo trì"})
    with pytest.raises(SourceUnavailable) as caught:
        await harness.http().get_json(PATH)
    error = caught.value
    assert not error.permanent and error.reason == "unavailable"
    assert harness.server.attempts(PATH) == 3
    assert harness.sleeps == [0.5, 1.0]
    assert harness.retry_reasons == ["unavailable", "unavailable"]
    assert "HTTP 503" in str(error) and "Hệ thống đang bảo trì" in str(error)
    assert "attempt 3 of 3" in str(error)
    assert_clean_message(error)


async def test_a_passing_fault_is_retried_then_succeeds(harness: Harness) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response([1, 2])

    harness.server.routes[PATH] = ok
    harness.server.fail(502, times=1)
    assert await harness.http().get_json(PATH) == [1, 2]
    assert harness.server.attempts(PATH) == 2
    assert harness.sleeps == [0.5]


async def test_backoff_doubles_and_is_capped(harness: Harness) -> None:
    harness.server.fail(500)
    with pytest.raises(SourceUnavailable):
        await harness.http(retries=4, backoff=10.0, max_backoff=15.0).get_json(PATH)
    assert harness.sleeps == [10.0, 15.0, 15.0, 15.0]


async def test_no_retries_means_one_attempt(harness: Harness) -> None:
    harness.server.fail(500)
    with pytest.raises(SourceUnavailable):
        await harness.http(retries=0).get_json(PATH)
    assert harness.server.attempts(PATH) == 1 and harness.sleeps == []


async def test_429_waits_retry_after(harness: Harness) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({})

    harness.server.routes[PATH] = ok
    harness.server.fail(429, headers={"Retry-After": "3"}, times=1)
    assert await harness.http().get_json(PATH) == {}
    assert harness.sleeps == [3.0]
    assert harness.retry_reasons == ["rate_limited"]


async def test_429_gives_up_as_rate_limited_and_caps_the_wait(harness: Harness) -> None:
    harness.server.fail(429, {"error": "Quá nhiều yêu cầu"}, headers={"Retry-After": "100"})
    with pytest.raises(SourceRateLimited) as caught:
        await harness.http(max_backoff=30.0).get_json(PATH)
    assert caught.value.retry_after == 100.0
    assert not caught.value.permanent
    assert harness.sleeps == [30.0, 30.0]
    assert "HTTP 429" in str(caught.value) and "Quá nhiều yêu cầu" in str(caught.value)


@pytest.mark.parametrize("header", [None, "Wed, 21 Oct 2025 07:28:00 GMT", "-5"])
async def test_429_without_usable_retry_after_backs_off(harness: Harness, header: str | None) -> None:
    harness.server.fail(429, headers={"Retry-After": header} if header else {})
    with pytest.raises(SourceRateLimited) as caught:
        await harness.http().get_json(PATH)
    assert caught.value.retry_after is None
    assert harness.sleeps == [0.5, 1.0]


async def test_timeout(harness: Harness) -> None:
    harness.server.hang()
    with pytest.raises(SourceTimeout) as caught:
        await harness.http(timeout=0.2).get_json(PATH)
    assert harness.server.attempts(PATH) == 3
    assert caught.value.reason == "timeout" and not caught.value.permanent
    assert "no answer within 0.2s" in str(caught.value)
    assert_clean_message(caught.value)


async def test_connection_refused_is_unavailable(harness: Harness) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now (it was only bound, never listened on).
    http = SourceHttp("nguon-thu", f"http://127.0.0.1:{port}", harness.session,
                      retries=1, sleep=harness.sleep, headers={"Authorization": SECRET})
    with pytest.raises(SourceUnavailable) as caught:
        await http.get_json(PATH)
    assert harness.sleeps == [0.5]
    assert_clean_message(caught.value)


# ----------------------------------------------------------------------------- malformed answers

@pytest.mark.parametrize(("body", "content_type", "shown"), [
    (b'{"data": [{"OrganId": "000.00.01.H99"', "application/json", '{"data"'),
    (b"<html><body>B\xe1\xba\xa3o tr\xc3\xac</body></html>", "text/html", "Bảo trì"),
    (b"\xff\xfe not utf-8", "application/json", "not utf-8"),
])
async def test_bad_json_is_malformed_after_retries(
    harness: Harness, body: bytes, content_type: str, shown: str,
) -> None:
    harness.server.answer(body, content_type)
    with pytest.raises(MalformedPayload) as caught:
        await harness.http().get_json(PATH)
    assert harness.server.attempts(PATH) == 3
    assert "not valid JSON" in str(caught.value) and shown in str(caught.value)
    assert_clean_message(caught.value)


async def test_truncated_body_is_malformed(harness: Harness) -> None:
    harness.server.truncate()
    with pytest.raises(MalformedPayload) as caught:
        await harness.http().get_json(PATH)
    assert harness.server.attempts(PATH) == 3
    assert "cut short" in str(caught.value)
    assert harness.retry_reasons == ["malformed", "malformed"]


# ----------------------------------------------------------------------------- permanent faults

@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_permanent_and_not_retried(harness: Harness, status: int) -> None:
    harness.server.fail(status, {"error": "Sai mã truy cập"})
    with pytest.raises(SourceAuthError) as caught:
        await harness.http().get_json(PATH)
    assert caught.value.permanent and caught.value.reason == "auth"
    assert harness.server.attempts(PATH) == 1 and harness.sleeps == []
    assert f"HTTP {status}" in str(caught.value) and "Sai mã truy cập" in str(caught.value)
    assert_clean_message(caught.value)


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_other_4xx_are_permanent_request_errors(harness: Harness, status: int) -> None:
    harness.server.fail(status, {"error": "Tham số 'grain' không hợp lệ"})
    with pytest.raises(SourceRequestError) as caught:
        await harness.http().get_json(PATH, {"grain": "week"})
    assert caught.value.permanent and caught.value.reason == "request"
    assert harness.server.attempts(PATH) == 1
    assert f"GET {PATH}?grain=week: HTTP {status}" in str(caught.value)
    assert "Tham số 'grain' không hợp lệ" in str(caught.value)


# ----------------------------------------------------------------------------- page lists

def paged(records: list[Any], size: int, **extra: Any) -> Handler:
    """A handler serving ``records`` as a page list of ``size``, like the real sources."""
    chunks = [records[i:i + size] for i in range(0, len(records), size)]

    async def handler(request: web.Request) -> web.Response:
        page = int(request.query["page"])
        document = {"data": chunks[page - 1] if chunks else [], "page": page, "page_size": size,
                    "total": len(records), "total_pages": len(chunks), **extra}
        return web.json_response(document)

    return handler


async def test_get_pages_returns_every_record_in_page_order(harness: Harness) -> None:
    harness.server.routes[PATH] = paged([f"bản ghi {n}" for n in range(7)], 3)
    items = await harness.http().get_pages(PATH, {"from": "2025-03-01"}, page_size=3)
    assert [record for _, record in items] == [f"bản ghi {n}" for n in range(7)]
    assert items[4][0] == f"GET {PATH}?from=2025-03-01&page=2&page_size=3#1"
    assert sorted(int(seen.query["page"]) for seen in harness.server.requests) == [1, 2, 3]
    assert {seen.query["page_size"] for seen in harness.server.requests} == {"3"}


async def test_get_pages_of_nothing(harness: Harness) -> None:
    harness.server.routes[PATH] = paged([], 500)
    assert await harness.http().get_pages(PATH) == []
    assert harness.server.attempts(PATH) == 1


async def test_get_pages_bounds_concurrency(harness: Harness) -> None:
    total_pages, concurrency = 10, 3
    state = {"in_flight": 0, "peak": 0, "started": 0}

    async def handler(request: web.Request) -> web.Response:
        page = int(request.query["page"])
        if page > 1:
            state["in_flight"] += 1
            state["started"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            # Hold each request until the gate is full (or no more can come), so an
            # unbounded client would show more than `concurrency` at once.
            for _ in range(400):
                if state["in_flight"] >= concurrency or state["started"] == total_pages - 1:
                    break
                await asyncio.sleep(0.005)
            state["in_flight"] -= 1
        return web.json_response({"data": [page], "total_pages": total_pages})

    harness.server.routes[PATH] = handler
    items = await harness.http().get_pages(PATH, page_size=1, concurrency=concurrency)
    assert [record for _, record in items] == list(range(1, total_pages + 1))
    assert state["peak"] == concurrency


@pytest.mark.parametrize(("document", "complaint"), [
    ({"items": [], "total_pages": 1}, "expected an object with a 'data' list, got: no 'data'"),
    ({"data": {"a": 1}, "total_pages": 1}, "'data' is a dict"),
    ([1, 2], "got: a JSON list"),
    ({"data": []}, "'total_pages' missing"),
    ({"data": [], "total_pages": "2"}, "'total_pages' must be a non-negative integer, got: '2'"),
    ({"data": [], "total_pages": -1}, "got: -1"),
    ({"data": [], "total_pages": 10**6}, "exceeds the 10000 pages"),
])
async def test_get_pages_refuses_a_broken_page_list(
    harness: Harness, document: Any, complaint: str,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(document)

    harness.server.routes[PATH] = handler
    with pytest.raises(MalformedPayload) as caught:
        await harness.http(retries=0).get_pages(PATH)
    assert complaint in str(caught.value)
    assert f"GET {PATH}?page=1&page_size=500" in str(caught.value)


async def test_get_pages_fails_whole_when_a_later_page_fails(harness: Harness) -> None:
    good = paged(list(range(12)), 2)

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query["page"] == "4":
            return web.json_response({"error": "Không có quyền xem trang 4"}, status=403)
        return await good(request)

    harness.server.routes[PATH] = handler
    with pytest.raises(SourceAuthError) as caught:
        await harness.http().get_pages(PATH, page_size=2, concurrency=2)
    assert "page=4" in str(caught.value)


def offsets(records: list[Any], limit: int) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        offset = int(request.query["offset"])
        chunk = records[offset:offset + limit]
        return web.json_response({"total": len(records), "offset": offset, "limit": limit,
                                  "more": offset + limit < len(records), "accounts": chunk})

    return handler


async def test_get_offset_pages_follows_more(harness: Harness) -> None:
    harness.server.routes[PATH] = offsets([f"hộp thư {n}" for n in range(9)], 4)
    items = await harness.http().get_offset_pages(PATH, limit=4)
    assert [record for _, record in items] == [f"hộp thư {n}" for n in range(9)]
    asked = [seen.query["offset"] for seen in harness.server.requests]
    assert asked[0] == "0" and sorted(asked[1:], key=int) == ["4", "8"]  # the rest at once, in any order
    assert items[5][0] == f"GET {PATH}?offset=4&limit=4#1"


async def test_get_offset_pages_rereads_in_order_when_pages_do_not_tile(harness: Harness) -> None:
    """A directory whose later pages are shorter than its first (a server-side cap) does not
    fit the offsets the first page implies: the list is then read page after page, once each."""
    records = [f"hộp thư {n}" for n in range(9)]

    async def capped(request: web.Request) -> web.Response:
        offset = int(request.query["offset"])
        size = 4 if offset == 0 else 3
        return web.json_response({"total": len(records), "more": offset + size < len(records),
                                  "accounts": records[offset:offset + size]})

    harness.server.routes[PATH] = capped
    items = await harness.http().get_offset_pages(PATH, limit=4)
    assert [record for _, record in items] == records
    asked = [seen.query["offset"] for seen in harness.server.requests]
    assert sorted(asked[1:3], key=int) == ["4", "8"]  # the concurrent try
    assert asked[3:] == ["4", "7"]  # then offset + records received, in order


@pytest.mark.parametrize(("document", "complaint"), [
    ({"accounts": [], "more": True}, "says 'more' but sent no records"),
    ({"accounts": [1]}, "'more' must be true or false, got: None"),
    ({"more": False}, "no 'accounts'"),
])
async def test_get_offset_pages_refuses_a_broken_list(
    harness: Harness, document: Any, complaint: str,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(document)

    harness.server.routes[PATH] = handler
    with pytest.raises(MalformedPayload, match=complaint):
        await harness.http(retries=0).get_offset_pages(PATH)


async def test_get_offset_pages_stops_at_max_pages(harness: Harness) -> None:
    async def endless(request: web.Request) -> web.Response:
        return web.json_response({"accounts": [1], "more": True})

    harness.server.routes[PATH] = endless
    with pytest.raises(MalformedPayload, match="still 'more' after 5 pages"):
        await harness.http(max_pages=5).get_offset_pages(PATH)
    assert harness.server.attempts(PATH) == 5
