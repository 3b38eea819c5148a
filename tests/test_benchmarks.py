"""The benchmark suites, run at a tiny scale: their figures are well formed and the work
they time was really done. No timing is asserted (timings belong in the suites)."""

from __future__ import annotations

import asyncio
import json
import math

from benchmarks.common import Result

FIELDS = {"name", "value", "unit", "baseline", "baseline_value", "ratio", "scale", "goal"}


def check_lines(results: list[Result], names: list[str]) -> list[dict[str, object]]:
    lines = [json.loads(result.line()) for result in results]
    assert [line["name"] for line in lines] == names
    for result, line in zip(results, lines, strict=True):
        assert set(line) == FIELDS
        assert result.value > 0 and result.baseline_value > 0
        assert math.isfinite(result.value) and math.isfinite(result.baseline_value)
        assert line["ratio"] == round(result.value / result.baseline_value, 3)
        assert line["goal"] and line["scale"] and line["baseline"]
    return lines


# ----------------------------------------------------------------------------- collection, metrics, email

def test_collection_cycle_makes_every_request_and_keeps_every_observation() -> None:
    from benchmarks.collection import Scenario, emulated, measure_cycles, results

    # 20 units: the province and 19 departments; 3 mailboxes each; 20 pages a source.
    scenario = Scenario(units=20, accounts_per_unit=3, pages=20, concurrency=6, latency=0.002)
    assert scenario.source_concurrency() == [2, 2, 2]
    with emulated(scenario) as emulator:
        cycle = measure_cycles(scenario, emulator, 1)
    assert cycle.requests == {"/qlvb/api/v1/statistics": 20, "/motcua/api/v1/bao-cao": 20,
                              "/service/admin/accounts": 20}
    # 9 document measures and 13 one-stop measures per unit and month, 2 mailbox measures per unit.
    assert cycle.observations == 20 * 9 + 20 * 13 + 20 * 2
    lines = check_lines(results(scenario, repeats=1, sample=3),
                        ["collection_cycle_vs_bound", "collection_cycle_vs_sequential",
                         "collection_cycle_vs_plain_aiohttp"])
    assert "60 requests" in str(lines[0]["scale"])


def test_metrics_scrape_serves_every_series_of_the_snapshot() -> None:
    from benchmarks.metrics import kpi_series_lines, metrics_app, results, scrape, synthetic_snapshot

    snapshot = synthetic_snapshot(units=4, kpis=3, windows=("month", "ytd"))
    assert len(snapshot.values) == 4 * 3 * 2
    app, _ = metrics_app(snapshot)
    _seconds, body = asyncio.run(scrape(app, 1))
    assert kpi_series_lines(body) == 4 * 3 * 2 * 4  # four families, one line per value each
    assert "UBND xã Tân Lập Số 0 — huyện Đồng Hỷ".encode() in body  # Vietnamese unit names intact
    assert b"egov_build_info" in body  # the service's own families come first
    check_lines(results(units=3, repeats=1), ["metrics_scrape", "metrics_snapshot_render"])


def test_email_drain_delivers_each_digest_once() -> None:
    from benchmarks.email import digest_messages, measure, message_id_of, results

    messages = digest_messages(6, distinct=2)
    assert len({message_id_of(m) for *_, m in messages}) == 6
    assert len({recipient for _, recipient, _, _ in messages}) == 6
    # measure() raises unless the server received every message with its own Message-ID,
    # and service_drain raises unless the outbox recorded each as sent.
    service, plain, size = measure(6, 2, 1)
    assert service > 0 and plain > 0 and size > 10_000
    check_lines(results(count=4, distinct=2, repeats=1), ["email_digests"])
