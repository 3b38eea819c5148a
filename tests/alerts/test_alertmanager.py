"""Forwarding alert states to Alertmanager, against a real Alertmanager (v2 API).

The real one checks what matters end to end: labels, Vietnamese text and states
as Alertmanager stores them. A small recording server checks what only the wire
shows: batch sizes, headers, the exact JSON.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from collectors.http import new_session
from monitor.alerts.alertmanager import (
    MAX_BATCH,
    AlertmanagerError,
    AlertmanagerForwarder,
    ForwardedAlert,
)
from monitor.config import AlertmanagerConfig, Auth
from monitor.metrics import ServiceMetrics
from tests.support.components import AlertmanagerServer, free_port, require_alertmanager

T = TypeVar("T")

RESEND = timedelta(minutes=1)
VIETNAMESE_SUMMARY = "UBND xã Tân Lập — chậm tiến độ"
VIETNAMESE_DESCRIPTION = (
    "Tỷ lệ hồ sơ trực tuyến toàn trình đạt 41,2 %, thấp hơn mức cần đạt 60 % "
    "(QĐ 942/QĐ-TTg). Đề nghị Chủ tịch UBND xã chỉ đạo khắc phục."
)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def alertmanager() -> Iterator[AlertmanagerServer]:
    """One real Alertmanager for the module; each test tells its alerts apart by ``run``."""
    require_alertmanager()
    with AlertmanagerServer() as server:
        yield server


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics(CollectorRegistry())


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:12]


def forwards(metrics: ServiceMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("egov_alertmanager_forwards_total", {"outcome": outcome})
    return value or 0.0


def target_alert(run: str, unit: str, *, starts_at: datetime, ends_at: datetime | None = None,
                 summary: str = VIETNAMESE_SUMMARY) -> ForwardedAlert:
    return ForwardedAlert(
        labels={
            "alertname": "EgovTargetBehind",
            "rule": "dvc-toan-trinh",
            "unit": unit,
            "kpi": "online_full_process_share",
            "severity": "warning",
            "status": "behind",
            "province": "Tỉnh Mẫu",
            "run": run,
        },
        annotations={
            "summary": summary,
            "description": VIETNAMESE_DESCRIPTION,
            "citation": "QĐ 942/QĐ-TTg (15/6/2021)",
            "report_url": f"https://egov.example.vn/units/{unit}",
        },
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url="https://egov.example.vn/rules/dvc-toan-trinh",
    )


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ms(value: datetime) -> datetime:
    """Alertmanager keeps (and answers with) millisecond precision."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


async def eventually(fetch: Callable[[], T], done: Callable[[T], bool], within: float = 15.0) -> T:
    """Poll ``fetch`` (blocking, run off the loop) until ``done``; the last value either way."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await asyncio.to_thread(fetch)
        if done(value) or asyncio.get_running_loop().time() >= deadline:
            return value
        await asyncio.sleep(0.1)


async def forward_to(url: str, alerts: list[ForwardedAlert], metrics: ServiceMetrics, *,
                     now: datetime, auth: Auth | None = None) -> None:
    config = AlertmanagerConfig(url=url, timeout=timedelta(seconds=5), auth=auth or Auth())
    forwarder = AlertmanagerForwarder(config, metrics)
    try:
        await forwarder.forward(alerts, now=now, resend_interval=RESEND)
    finally:
        await forwarder.close()


# --------------------------------------------------------------------------- real Alertmanager


async def test_firing_then_resolved_in_a_real_alertmanager(
    alertmanager: AlertmanagerServer, metrics: ServiceMetrics, run: str
) -> None:
    now = datetime.now(UTC)
    since = now - timedelta(hours=2)
    tan_lap = target_alert(run, "xa-tan-lap", starts_at=since)
    other = target_alert(run, "xa-binh-minh", starts_at=since, summary="UBND xã Bình Minh — chậm tiến độ")

    await forward_to(alertmanager.url, [tan_lap, other], metrics, now=now)

    held = await eventually(lambda: alertmanager.alerts(f'run="{run}"'), lambda a: len(a) == 2)
    assert len(held) == 2, (held, alertmanager.log_tail())
    by_unit = {a["labels"]["unit"]: a for a in held}
    for sent in (tan_lap, other):
        got = by_unit[sent.labels["unit"]]
        assert got["labels"] == dict(sent.labels)
        assert got["annotations"] == dict(sent.annotations)
        assert got["status"]["state"] == "active"
        assert got["generatorURL"] == sent.generator_url
        assert parse_time(got["startsAt"]) == ms(since)
        # Valid for four resend intervals: Alertmanager resolves it if we stop sending.
        assert parse_time(got["endsAt"]) == ms(now + 4 * RESEND)
    assert by_unit["xa-tan-lap"]["annotations"]["summary"] == "UBND xã Tân Lập — chậm tiến độ"
    assert forwards(metrics, "ok") == 1
    assert forwards(metrics, "error") == 0

    resolved_at = datetime.now(UTC)
    resolved = target_alert(run, "xa-tan-lap", starts_at=since, ends_at=resolved_at)
    await forward_to(alertmanager.url, [resolved], metrics, now=resolved_at)

    active = await eventually(
        lambda: alertmanager.alerts(f'run="{run}"', active=True),
        lambda a: [x["labels"]["unit"] for x in a] == ["xa-binh-minh"],
    )
    assert [a["labels"]["unit"] for a in active] == ["xa-binh-minh"], alertmanager.log_tail()
    # Resolved alerts are not listed at all, active filter or not.
    assert [a["labels"]["unit"] for a in alertmanager.alerts(f'run="{run}"')] == ["xa-binh-minh"]
    assert forwards(metrics, "ok") == 2


async def test_amtool_sees_the_forwarded_alert(
    alertmanager: AlertmanagerServer, metrics: ServiceMetrics, run: str
) -> None:
    now = datetime.now(UTC)
    await forward_to(alertmanager.url, [target_alert(run, "xa-tan-lap", starts_at=now)], metrics, now=now)

    def query() -> list[dict[str, Any]]:
        ok, output = alertmanager.amtool("alert", "query", "-o", "json", f"run={run}")
        assert ok, output
        return list(json.loads(output))

    found = await eventually(query, lambda a: len(a) == 1)
    assert len(found) == 1
    assert found[0]["labels"]["unit"] == "xa-tan-lap"
    assert found[0]["annotations"]["summary"] == VIETNAMESE_SUMMARY


async def test_three_hundred_alerts_all_arrive(
    alertmanager: AlertmanagerServer, metrics: ServiceMetrics, run: str
) -> None:
    now = datetime.now(UTC)
    alerts = [target_alert(run, f"xa-{i:03d}", starts_at=now) for i in range(300)]
    await forward_to(alertmanager.url, alerts, metrics, now=now)

    held = await eventually(lambda: alertmanager.alerts(f'run="{run}"'), lambda a: len(a) == 300)
    assert sorted(a["labels"]["unit"] for a in held) == [f"xa-{i:03d}" for i in range(300)]
    assert forwards(metrics, "ok") == 2  # 256 + 44


async def test_alertmanager_refusal_is_an_error_naming_its_reason(
    alertmanager: AlertmanagerServer, metrics: ServiceMetrics, run: str
) -> None:
    # A start beyond the validity window (a clock gone wrong): Alertmanager answers 400.
    now = datetime.now(UTC)
    future = target_alert(run, "xa-tuong-lai", starts_at=now + timedelta(hours=1))
    with pytest.raises(AlertmanagerError) as raised:
        await forward_to(alertmanager.url, [future], metrics, now=now)
    assert raised.value.status == 400
    assert "HTTP 400" in str(raised.value)
    assert "start time must be before end time" in str(raised.value)
    assert f"{alertmanager.url}/api/v2/alerts" in str(raised.value)
    assert forwards(metrics, "error") == 1
    assert forwards(metrics, "ok") == 0


async def test_unreachable_alertmanager_raises_and_counts_an_error(metrics: ServiceMetrics) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    now = datetime.now(UTC)
    alerts = [target_alert("x", f"xa-{i:03d}", starts_at=now) for i in range(MAX_BATCH + 1)]
    with pytest.raises(AlertmanagerError) as raised:
        await forward_to(url, alerts, metrics, now=now)
    assert f"{url}/api/v2/alerts" in str(raised.value)
    assert raised.value.status is None
    # Unreachable: the second batch is not tried (it would only wait out the same failure).
    assert "1 of 2 batches failed, 1 not tried" in str(raised.value)
    assert forwards(metrics, "error") == 1
    assert forwards(metrics, "ok") == 0


# --------------------------------------------------------------------------- on the wire


@dataclass
class Recorder:
    """A stand-in Alertmanager that records every POST and answers ``status``."""

    url: str = ""
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200
    body: bytes = b""
    delay: float = 0.0


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    state = Recorder()

    async def handle(request: web.Request) -> web.Response:
        state.posts.append((dict(request.headers), await request.read()))
        await asyncio.sleep(state.delay)
        return web.Response(status=state.status, body=state.body)

    app = web.Application()
    app.router.add_post("/prefix/api/v2/alerts", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        state.url = f"http://{host}:{port}/prefix/"  # a path prefix and a trailing slash
        yield state
    finally:
        await runner.cleanup()


async def test_batches_headers_and_json_on_the_wire(recorder: Recorder, metrics: ServiceMetrics) -> None:
    now = datetime(2024, 6, 3, 1, 30, 15, 250000, tzinfo=UTC)
    since = datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
    alerts = [target_alert("wire", f"xa-{i:03d}", starts_at=since) for i in range(299)]
    alerts.append(target_alert("wire", "xa-tan-lap", starts_at=since, ends_at=now - timedelta(minutes=5)))

    await forward_to(recorder.url, alerts, metrics, now=now, auth=Auth(type="bearer", token=SecretStr("bí-mật")))

    assert [len(json.loads(body)) for _, body in recorder.posts] == [MAX_BATCH, 300 - MAX_BATCH] == [256, 44]
    headers, body = recorder.posts[0]
    assert headers["Authorization"] == "Bearer bí-mật"
    assert headers["Content-Type"].startswith("application/json")
    # Raw UTF-8, not \u escapes.
    assert VIETNAMESE_SUMMARY.encode("utf-8") in body
    first = json.loads(body)[0]
    assert first == {
        "labels": dict(alerts[0].labels),
        "annotations": dict(alerts[0].annotations),
        "startsAt": "2024-06-01T00:00:00Z",
        "endsAt": "2024-06-03T01:34:15.250000Z",  # now + 4 × 1 min
        "generatorURL": "https://egov.example.vn/rules/dvc-toan-trinh",
    }
    last = json.loads(recorder.posts[1][1])[-1]
    assert last["labels"]["unit"] == "xa-tan-lap"
    assert last["endsAt"] == "2024-06-03T01:25:15.250000Z"  # when it resolved
    assert forwards(metrics, "ok") == 2


async def test_http_errors_name_the_url_and_status_and_cut_the_body(
    recorder: Recorder, metrics: ServiceMetrics
) -> None:
    recorder.status = 503
    recorder.body = b"q" * 1000
    now = datetime.now(UTC)
    alerts = [target_alert("wire", f"xa-{i:03d}", starts_at=now) for i in range(MAX_BATCH + 1)]
    with pytest.raises(AlertmanagerError) as raised:
        await forward_to(recorder.url, alerts, metrics, now=now)
    message = str(raised.value)
    assert f"{recorder.url}api/v2/alerts" in message
    assert "HTTP 503" in message
    assert "q" * 200 in message and "q" * 201 not in message
    # A refused batch does not keep the next one from being tried.
    assert len(recorder.posts) == 2
    assert "2 of 2 batches failed" in message
    assert raised.value.status == 503
    assert forwards(metrics, "error") == 2


async def test_a_slow_alertmanager_times_out(recorder: Recorder, metrics: ServiceMetrics) -> None:
    recorder.delay = 5.0
    config = AlertmanagerConfig(url=recorder.url, timeout=timedelta(seconds=0.2))
    forwarder = AlertmanagerForwarder(config, metrics)
    now = datetime.now(UTC)
    try:
        with pytest.raises(AlertmanagerError, match=r"no answer within 0\.2s") as raised:
            await forwarder.forward([target_alert("wire", "xa", starts_at=now)], now=now, resend_interval=RESEND)
    finally:
        await forwarder.close()
    assert raised.value.status is None
    assert forwards(metrics, "error") == 1


async def test_a_shared_session_is_left_open(recorder: Recorder) -> None:
    session = new_session()
    try:
        forwarder = AlertmanagerForwarder(AlertmanagerConfig(url=recorder.url), session=session)
        now = datetime.now(UTC)
        await forwarder.forward([target_alert("wire", "xa", starts_at=now)], now=now, resend_interval=RESEND)
        await forwarder.close()
        assert not session.closed
        assert len(recorder.posts) == 1
    finally:
        await session.close()


async def test_nothing_to_forward_posts_nothing(recorder: Recorder, metrics: ServiceMetrics) -> None:
    await forward_to(recorder.url, [], metrics, now=datetime.now(UTC))
    assert recorder.posts == []
    assert forwards(metrics, "ok") == 0


# --------------------------------------------------------------------------- the alert itself


def test_empty_labels_and_annotations_are_dropped() -> None:
    now = datetime.now(UTC)
    alert = ForwardedAlert({"alertname": "X", "unit": ""}, {"summary": "s", "report_url": ""}, now, None)
    assert alert.labels == {"alertname": "X"}
    assert alert.annotations == {"summary": "s"}
    assert alert.to_api(now)["labels"] == {"alertname": "X"}


@pytest.mark.parametrize(
    ("labels", "starts_at", "ends_at", "problem"),
    [
        ({"alertname": "X"}, datetime(2024, 1, 1), None, "naive"),
        ({"bad-name": "X"}, datetime(2024, 1, 1, tzinfo=UTC), None, "invalid Alertmanager label"),
        ({"alertname": ""}, datetime(2024, 1, 1, tzinfo=UTC), None, "at least one"),
        ({"alertname": "X"}, datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC), "before"),
    ],
)
def test_invalid_alerts_are_refused_when_built(
    labels: dict[str, str], starts_at: datetime, ends_at: datetime | None, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        ForwardedAlert(labels, {}, starts_at, ends_at)


async def test_resend_interval_must_be_positive(recorder: Recorder) -> None:
    forwarder = AlertmanagerForwarder(AlertmanagerConfig(url=recorder.url))
    with pytest.raises(ValueError, match="resend_interval"):
        await forwarder.forward([], now=datetime.now(UTC), resend_interval=timedelta(0))
    await forwarder.close()


