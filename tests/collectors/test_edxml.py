"""The edxml collector over envelopes built to QCVN 102's structure, in a folder and over HTTP.

Every expected count is recomputed here from the list of documents the test
generated (``tally``), never from the collector's own arithmetic.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from collectors import (
    CollectionResult,
    MalformedPayload,
    SourceRequestError,
    SourceSettings,
    SourceUnavailable,
    collector_class,
)
from collectors.edxml import NS, EdxmlCollector, EdxmlOptions, EnvelopeError, parse_envelope
from collectors.http import SourceHttp, new_session
from monitor.config import load_config
from monitor.service import MonitorService
from monitor.timeutil import FrozenClock, Period
from monitor.units import load_units
from monitor.windows import Window
from tests.collectors.conftest import TZ, Harness, SourceServer, by_key, reasons
from tests.collectors.edxml_envelopes import (
    Doc,
    billion_laughs,
    external_dtd,
    external_entity,
    random_docs,
    tally,
)
from tests.support.province import SOURCE_IDS, write_config

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
UNITS = ["000.00.01.H99", "000.00.02.H99", "000.00.03.H99", "000.01.01.H99", "000.02.01.H99", "000.00.31.H99"]
MEASURES = {"sent": "docs_outgoing_electronic", "signed": "docs_outgoing_signed",
            "received": "docs_incoming_electronic"}
MONTHS = [Period.of_month(2026, m, TZ) for m in (8, 9, 10, 11, 12)]
SECRET = "MẬT-KHẨU-cơ-sở-dữ-liệu-9f3a"


def month(day: date) -> str:
    return f"{day:%Y-%m}"


def generated(seed: int, count: int = 80) -> list[Doc]:
    rng = random.Random(seed)
    return random_docs(rng, UNITS, UNITS, date(2026, 9, 1), date(2026, 11, 20), count)


def write(folder: Path, named: list[tuple[str, bytes]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in named:
        (folder / name).write_bytes(data)


def files_of(docs: list[Doc]) -> list[tuple[str, bytes]]:
    return [(f"{i:04d}-{doc.number}.{'edxml' if i % 3 else 'xml'}", doc.xml()) for i, doc in enumerate(docs)]


def with_duplicates(docs: list[Doc], rng: random.Random, copies: int) -> list[Doc]:
    """``docs`` plus ``copies`` re-deliveries of some of them, later in the order."""
    return docs + [rng.choice(docs) for _ in range(copies)]


def collector(harness: Harness, url: str, **options: Any) -> EdxmlCollector:
    settings = SourceSettings(id="truc-edxml", kind="edxml", url=url, grain="month", options=options)
    cls = collector_class("edxml")
    made = cls(settings, harness.http(), TZ, FrozenClock(NOW))
    assert isinstance(made, EdxmlCollector)
    return made


def expected_table(docs: list[Doc], periods: list[Period]) -> dict[tuple[str, str], dict[str, float]]:
    """What must be stored: the tally, plus zeros for every unit seen, in the periods the documents span."""
    counted = tally(docs, month)
    present = {doc.sender for doc in docs} | {r for doc in docs for r in doc.receivers}
    first, last = min(d.promulgated for d in docs), max(d.promulgated for d in docs)
    labels = [p.label(TZ) for p in periods if month(first) <= p.label(TZ) <= month(last)]
    return {(unit, label): {MEASURES[role]: float(counted.get((unit, label), {}).get(role, 0)) for role in MEASURES}
            for unit in present for label in labels}


# ----------------------------------------------------------------------------- counts

async def test_folder_counts_equal_a_tally_of_the_generated_envelopes(harness: Harness, tmp_path: Path) -> None:
    rng = random.Random(7)
    docs = with_duplicates(generated(7), rng, copies=5)
    write(tmp_path / "drop", files_of(docs))
    result = await collector(harness, (tmp_path / "drop").as_uri()).collect(MONTHS, set(UNITS))
    assert by_key(result) == expected_table(docs, MONTHS)
    assert reasons(result) == ["duplicate"] * 5
    assert {r.period.label(TZ) for r in result.rejections if r.period} <= {"2026-09", "2026-10", "2026-11"}
    signed = sum(1 for d in {d.key: d for d in reversed(docs)}.values() if d.signed)
    assert sum(o.value for o in result.observations if o.measure == "docs_outgoing_signed") == signed
    # August and December lie outside the span the envelopes cover: no data, not zeros.
    assert not [o for o in result.observations if o.period in (MONTHS[0], MONTHS[-1])]


async def test_sub_folders_are_read_only_when_recursive(harness: Harness, tmp_path: Path) -> None:
    docs = generated(11, count=12)
    write(tmp_path / "drop", files_of(docs[:6]))
    write(tmp_path / "drop" / "2026-11", files_of(docs[6:]))
    flat = await collector(harness, (tmp_path / "drop").as_uri()).collect(MONTHS, set(UNITS))
    deep = await collector(harness, (tmp_path / "drop").as_uri(), recursive=True).collect(MONTHS, set(UNITS))
    assert by_key(flat) == expected_table(docs[:6], MONTHS)
    assert by_key(deep) == expected_table(docs, MONTHS)


async def test_day_grain_places_each_envelope_on_its_local_day(harness: Harness, tmp_path: Path) -> None:
    docs = generated(3, count=30)
    write(tmp_path, files_of(docs))
    days = [Period.of_day(date(2026, 10, d), TZ) for d in range(1, 32)]
    settings = SourceSettings(id="truc-edxml", kind="edxml", url=tmp_path.as_uri(), grain="day")
    result = await EdxmlCollector(settings, harness.http(), TZ, FrozenClock(NOW)).collect(days, set(UNITS))
    counted = tally(docs, lambda d: d.isoformat())
    for obs in result.observations:
        role = next(r for r, m in MEASURES.items() if m == obs.measure)
        assert obs.value == counted.get((obs.unit, obs.period.label(TZ)), {}).get(role, 0)
    assert sum(o.value for o in result.observations if o.measure == MEASURES["sent"]) == sum(
        1 for d in docs if d.promulgated.month == 10)


async def test_sent_date_option_uses_the_first_trace_hop(harness: Harness, tmp_path: Path) -> None:
    late = Doc(UNITS[0], (UNITS[1],), date(2026, 10, 31), 1, signed=True,
               sent_at=datetime(2026, 11, 2, 8, 15))
    write(tmp_path, [("a.edxml", late.xml())])
    by_promulgation = await collector(harness, tmp_path.as_uri()).collect(MONTHS, set(UNITS))
    by_sending = await collector(harness, tmp_path.as_uri(), date="sent").collect(MONTHS, set(UNITS))
    assert by_key(by_promulgation)[(UNITS[0], "2026-10")][MEASURES["sent"]] == 1
    assert by_key(by_sending)[(UNITS[0], "2026-11")][MEASURES["sent"]] == 1
    assert (UNITS[0], "2026-10") not in by_key(by_sending)


def test_signatures_are_detected_in_both_styles_and_an_empty_one_is_unsigned() -> None:
    base = Doc(UNITS[0], (UNITS[1],), date(2026, 10, 1), 5, signed=True)
    assert parse_envelope(base.xml(), "a").signed
    assert parse_envelope(replace(base, signature="sdk").xml(), "b").signed
    unsigned = replace(base, signed=False).xml()
    assert b"<edXML:DigitalSignature/>" in unsigned and not parse_envelope(unsigned, "c").signed
    emptied = base.xml().replace(b"<SignatureValue>", b"<SignatureValue>\n</SignatureValue><Ignored>")
    emptied = emptied.replace(b"</SignatureValue><KeyInfo>", b"</Ignored><KeyInfo>")
    assert not parse_envelope(emptied, "d").signed


def test_the_namespace_decides_not_the_prefix() -> None:
    doc = Doc(UNITS[0], (UNITS[1], UNITS[2]), date(2026, 10, 1), 5, signed=False)
    assert parse_envelope(replace(doc, prefixed_root=True).xml(), "a").receivers == doc.receivers
    foreign = doc.xml().replace(b"QCVN_102_2016", b"QCVN_102_2015")
    with pytest.raises(EnvelopeError, match=re.escape(f"expected <edXML> in namespace {NS}")) as caught:
        parse_envelope(foreign, "b")
    assert caught.value.reason == "schema"


def test_envelopes_that_cannot_be_counted_say_which_element() -> None:
    base = Doc(UNITS[0], (UNITS[1],), date(2026, 10, 1), 5, signed=True)
    nameless = replace(base, omit=frozenset({"DocumentId"})).xml().replace(
        b"<edXML:CodeNumber>5</edXML:CodeNumber>", b"<edXML:CodeNumber></edXML:CodeNumber>")
    status = (f'<edXML xmlns="{NS}"><edXML:edXMLEnvelope xmlns:edXML="{NS}"><edXML:edXMLHeader><edXML:Status>'
              f"<edXML:ResponseFor><edXML:OrganId>{UNITS[0]}</edXML:OrganId></edXML:ResponseFor>"
              "<edXML:StatusCode>03</edXML:StatusCode></edXML:Status></edXML:edXMLHeader></edXML:edXMLEnvelope>"
              "</edXML>").encode()
    untraced = re.sub(rb"<edXML:TraceHeaderList>.*</edXML:TraceHeaderList>", b"", base.xml())
    cases = [(nameless, "promulgation", "schema", "DocumentId and Code/CodeNumber both missing"),
             (status, "promulgation", "not_a_document", "status package"),
             (untraced, "sent", "schema", "TraceHeader/Timestamp missing"),
             (base.xml().replace(b"2026/10/01</edXML:Prom", b"2026/13/01</edXML:Prom"), "promulgation",
              "schema", "PromulgationDate = '2026/13/01' is not a date")]
    for data, date_source, reason, words in cases:
        with pytest.raises(EnvelopeError) as caught:
            parse_envelope(data, "x", date_source)
        assert (caught.value.reason, words in caught.value.detail) == (reason, True), caught.value.detail
    # Without DocumentId, sender + date + Code still tell two deliveries apart.
    keyed = parse_envelope(replace(base, omit=frozenset({"DocumentId"})).xml(), "y")
    assert keyed.key == f"{UNITS[0]},2026/10/01,5/UBND-VP"


# ----------------------------------------------------------------------------- bad input

async def test_hostile_and_broken_files_are_rejected_and_the_rest_counted(
        harness: Harness, server: SourceServer, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET, encoding="utf-8")
    fetched: list[str] = []

    async def trap(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.Response(text=SECRET)

    server.routes["/secret"] = trap
    server.routes["/evil.dtd"] = trap
    good = generated(21, count=25)
    base = Doc(UNITS[0], (UNITS[1],), date(2026, 10, 5), 9001, signed=True)
    broken = {
        "laughs.edxml": (billion_laughs(), "unsafe_xml"),
        "xxe-file.edxml": (external_entity(secret_file.as_uri(), base), "unsafe_xml"),
        "xxe-http.edxml": (external_entity(f"{server.url}/secret", base), "unsafe_xml"),
        "dtd-http.xml": (external_dtd(f"{server.url}/evil.dtd", base), "unsafe_xml"),
        "huge.edxml": (b"<edXML>" + b"x" * 70_000, "too_large"),  # also broken: proves it was not parsed
        "truncated.edxml": (base.xml()[:1500], "malformed_xml"),
        "no-sender.edxml": (replace(base, number=9002, omit=frozenset({"From"})).xml(), "schema"),
        "no-date.edxml": (replace(base, number=9003,
                                 omit=frozenset({"PromulgationDate"})).xml(), "schema"),
        "stranger.edxml": (Doc("000.00.77.H98", (UNITS[2],), date(2026, 10, 6), 9004, signed=True).xml(),
                           "unknown_unit"),
    }
    write(tmp_path / "drop", files_of(good) + [(name, data) for name, (data, _) in broken.items()])
    source = collector(harness, (tmp_path / "drop").as_uri(), max_bytes=65_536)
    result = await asyncio.wait_for(source.collect(MONTHS, set(UNITS)), 20)

    by_file = {r.raw_ref.rsplit("/", 1)[1]: r for r in result.rejections if r.raw_ref}
    assert {name: r.reason for name, r in by_file.items()} == {name: reason for name, (_, reason) in broken.items()}
    assert re.search(r"at line \d+, column \d+", by_file["truncated.edxml"].detail)
    assert "From/OrganId" in by_file["no-sender.edxml"].detail
    assert "PromulgationDate" in by_file["no-date.edxml"].detail
    assert "000.00.77.H98" in by_file["stranger.edxml"].detail and by_file["stranger.edxml"].unit == "000.00.77.H98"
    assert "max_bytes" in by_file["huge.edxml"].detail
    assert fetched == [], "an external entity or DTD was fetched"
    for text in [r.detail for r in result.rejections] + [str(r.raw_ref) for r in result.rejections] + [
            str(o.raw_ref) for o in result.observations]:
        assert SECRET not in text
    # The stranger's receiver is a unit: its incoming document still counts.
    expected = expected_table(good, MONTHS)
    expected.setdefault((UNITS[2], "2026-10"), {m: 0.0 for m in MEASURES.values()})
    expected[(UNITS[2], "2026-10")][MEASURES["received"]] += 1
    assert by_key(result) == expected


async def test_unit_map_and_external_codes(harness: Harness, tmp_path: Path) -> None:
    docs = [Doc("vxp.saas.03", (UNITS[0],), date(2026, 10, 2), 1, signed=True),
            Doc("000.00.00.G22", (UNITS[0], UNITS[1]), date(2026, 10, 3), 2, signed=True),
            Doc(UNITS[1], ("000.00.00.G22",), date(2026, 10, 4), 3, signed=False)]
    write(tmp_path, files_of(docs))
    plain = await collector(harness, tmp_path.as_uri()).collect(MONTHS, set(UNITS))
    assert reasons(plain) == ["unknown_unit"] * 3
    assert "still counts for its known parties" in plain.rejections[0].detail
    mapped = await collector(harness, tmp_path.as_uri(), unit_map={"vxp.saas.03": UNITS[3]},
                             external=["*.G??"]).collect(MONTHS, set(UNITS))
    assert mapped.rejections == []
    table = by_key(mapped)
    assert table[(UNITS[3], "2026-10")][MEASURES["sent"]] == 1
    assert table[(UNITS[0], "2026-10")][MEASURES["received"]] == 2
    assert table[(UNITS[1], "2026-10")] == {MEASURES["sent"]: 1, MEASURES["signed"]: 0, MEASURES["received"]: 1}


async def test_each_rejection_is_reported_once_across_chunks(harness: Harness, tmp_path: Path) -> None:
    doc = Doc(UNITS[0], (UNITS[1],), date(2026, 10, 2), 1, signed=True)
    write(tmp_path, [("a.edxml", doc.xml()), ("b.edxml", doc.xml()), ("c.edxml", b"<edXML")])
    source = collector(harness, tmp_path.as_uri())
    september = await source.collect(MONTHS[:2], set(UNITS))
    october = await source.collect(MONTHS[2:], set(UNITS))
    assert reasons(september) == ["malformed_xml"]  # undated: with the first chunk
    assert reasons(october) == ["duplicate"]  # dated: with the chunk that holds October
    assert by_key(october)[(UNITS[0], "2026-10")][MEASURES["sent"]] == 1


async def test_a_missing_folder_is_unavailable_and_a_file_is_not_a_folder(harness: Harness, tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="does not exist"):
        await collector(harness, (tmp_path / "absent").as_uri()).collect(MONTHS, set(UNITS))
    (tmp_path / "f.xml").write_bytes(b"")
    with pytest.raises(SourceRequestError, match="is not a folder"):
        await collector(harness, (tmp_path / "f.xml").as_uri()).collect(MONTHS, set(UNITS))


def test_options_are_checked_with_clear_messages() -> None:
    with pytest.raises(ValidationError, match=re.escape("unit_map['vxp.saas.03'] must be a unit code")):
        EdxmlOptions.model_validate({"unit_map": {"vxp.saas.03": "H99"}})
    with pytest.raises(ValidationError, match="max_bytes"):
        EdxmlOptions.model_validate({"max_bytes": 10})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        EdxmlOptions.model_validate({"max_byte": 10_000})
    assert EdxmlOptions.model_validate({"measures": {"received": None}}).measures.received is None


# ----------------------------------------------------------------------------- over HTTP

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def serve_listing(server: SourceServer, named: list[tuple[str, bytes]], page_size: int = 7) -> None:
    """``GET /truc/envelopes?cursor=N`` lists the files (half by path, half by absolute url)."""

    def envelope(data: bytes) -> Route:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=data, content_type="application/xml")
        return handler

    async def listing(request: web.Request) -> web.Response:
        start = int(request.query.get("cursor", "0"))
        page = named[start:start + page_size]
        items = [{"id": name, "modified": "2026-11-20T08:00:00+07:00",
                  **({"path": f"/truc/files/{name}"} if i % 2 else {"url": f"{server.url}/truc/files/{name}"})}
                 for i, (name, _) in enumerate(page, start)]
        following = f"/truc/envelopes?cursor={start + page_size}" if start + page_size < len(named) else None
        return web.json_response({"items": items, "next": following})

    server.routes["/truc/envelopes"] = listing
    for name, data in named:
        server.routes[f"/truc/files/{name}"] = envelope(data)


async def test_http_listing_counts_what_the_folder_counts(
        harness: Harness, server: SourceServer, tmp_path: Path) -> None:
    rng = random.Random(5)
    docs = with_duplicates(generated(5, count=40), rng, copies=3)
    named = files_of(docs)

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to judge by
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"<edXML>" + b"y" * 4096)
        await response.write_eof()
        return response

    serve_listing(server, [*named, ("huge.edxml", b""), ("gone.edxml", b"")])
    server.routes["/truc/files/huge.edxml"] = huge
    del server.routes["/truc/files/gone.edxml"]  # the listing names it, the server answers 404
    over_http = await collector(harness, server.url, listing_path="/truc/envelopes",
                                max_bytes=65_536).collect(MONTHS, set(UNITS))
    write(tmp_path, named)
    from_folder = await collector(harness, tmp_path.as_uri()).collect(MONTHS, set(UNITS))
    assert by_key(over_http) == by_key(from_folder) == expected_table(docs, MONTHS)
    assert sorted(reasons(over_http)) == ["duplicate"] * 3 + ["fetch_failed", "too_large"]
    pages = [s for s in server.requests if s.path == "/truc/envelopes"]
    assert len(pages) == -(-(len(named) + 2) // 7)
    assert all(s.headers.get("Authorization") for s in server.requests)  # the source's credentials went along
    assert all(o.raw_ref == f"GET /truc/envelopes: envelopes dated {o.period.label(TZ)}"
               for o in over_http.observations)


async def test_a_listing_pointing_elsewhere_is_not_followed(harness: Harness, server: SourceServer) -> None:
    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": "x", "url": "http://198.51.100.7/steal.edxml"}],
                                  "next": None})

    server.routes["/envelopes"] = listing
    result = await collector(harness, server.url).collect(MONTHS, set(UNITS))
    assert reasons(result) == ["schema"] and "under the source url" in result.rejections[0].detail
    assert [s.path for s in server.requests] == ["/envelopes"]

    async def bad_next(request: web.Request) -> web.Response:
        return web.json_response({"items": [], "next": "https://elsewhere.example/envelopes?page=2"})

    server.routes["/envelopes"] = bad_next
    with pytest.raises(MalformedPayload, match="not under the source url"):
        await collector(harness, server.url).collect(MONTHS, set(UNITS))


async def test_get_bytes_stops_reading_past_the_limit(server: SourceServer) -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"z" * 10_000)

    server.routes["/big"] = big
    session = new_session()
    try:
        http = SourceHttp("s", server.url, session)
        assert await http.get_bytes("/big", limit=9_999) is None
        assert await http.get_bytes("/big", limit=10_000) == b"z" * 10_000
    finally:
        await session.close()


# ----------------------------------------------------------------------------- end to end

SOURCE_ID = "truc-edxml"
PROVINCE_CODE = "000.00.00.H99"
MINISTRY = "000.00.00.G22"


def province_units(directory: Path, province: Any, count: int) -> list[str]:
    """``count`` units of the simulated province valid from September to November 2026."""
    province.write_units(directory / "units-probe.yaml")
    tree = load_units(directory / "units-probe.yaml")
    september, november = tree.valid_on(date(2026, 9, 1)), tree.valid_on(date(2026, 11, 30))
    both = sorted({u.code for u in september} & {u.code for u in november})
    return random.Random(1).sample(both, count)


@asynccontextmanager
async def service_for(directory: Path, province: Any, url: str,
                      options: dict[str, Any] | None = None) -> AsyncIterator[MonitorService]:
    source = {"id": SOURCE_ID, "kind": "edxml", "url": url, "backfill_from": "2026-09-01", "retries": 0,
              "timeout": "5s", "schedule": {"interval": "1h"}, "options": options or {}}
    dummy = {kind: "http://127.0.0.1:9" for kind in SOURCE_IDS}
    config = load_config(write_config(directory, province, dummy, extra={"sources": [source]}))
    service = MonitorService(config, clock=FrozenClock(NOW))
    service.prepare()
    try:
        yield service
    finally:
        await service.aclose()


def province_docs(units: list[str]) -> tuple[list[Doc], int]:
    """Documents among ``units``, some re-delivered, some from a ministry; and the re-deliveries."""
    rng = random.Random(2026)
    docs = random_docs(rng, units, units, date(2026, 9, 1), date(2026, 11, 20), 150)
    docs += [Doc(MINISTRY, (rng.choice(units),), date(2026, 10, 9), 900 + i, signed=True) for i in range(3)]
    return with_duplicates(docs, rng, copies=6), 6


async def test_end_to_end_signed_rate_equals_the_hand_count(
        tmp_path: Path, province: Any, server: SourceServer) -> None:
    units = province_units(tmp_path, province, 14)
    docs, copies = province_docs(units)
    serve_listing(server, files_of(docs), page_size=50)
    async with service_for(tmp_path, province, server.url, {"listing_path": "/truc/envelopes"}) as service:
        summary = await service.runner.collect(SOURCE_ID)
        assert summary.ok, summary.error
        october = datetime(2026, 10, 15, 5, 0, tzinfo=UTC)
        whole = service.kpis.compute(october, [Window.parse("month")], kpis=["outgoing_docs_signed_rate"],
                                     units=[PROVINCE_CODE])
        own = service.kpis.compute(october, [Window.parse("month")], kpis=["outgoing_docs_signed_rate"],
                                   units=units, scope="self")
        stored = service.store.recent_rejections(SOURCE_ID, limit=1000)
        counted = {reason: service.metrics.registry.get_sample_value(
            "egov_observations_rejected_total", {"source": SOURCE_ID, "reason": reason})
            for reason in ("duplicate", "unknown_unit")}

    # By hand: each document once, from a unit of the tree, promulgated in October.
    unique = list({doc.key: doc for doc in reversed(docs)}.values())
    in_october = [d for d in unique if d.promulgated.month == 10 and d.sender != MINISTRY]
    [province_value] = whole
    assert (province_value.numerator, province_value.denominator) == (
        sum(d.signed for d in in_october), len(in_october))
    for value in own:
        mine = [d for d in in_october if d.sender == value.unit]
        assert (value.numerator, value.denominator) == (sum(d.signed for d in mine), len(mine)), value.unit
    assert {v.unit for v in own} == set(units)  # every unit seen gets a value (0/0 included), none invented
    assert summary.periods == 3 and summary.rejected_by_reason == {"duplicate": copies, "unknown_unit": 3}
    assert sorted(r["reason"] for r in stored) == sorted(["duplicate"] * copies + ["unknown_unit"] * 3)
    assert all(MINISTRY in r["detail"] for r in stored if r["reason"] == "unknown_unit")
    assert counted == {"duplicate": copies, "unknown_unit": 3}


async def test_dry_run_previews_and_stores_nothing(tmp_path: Path, province: Any, server: SourceServer) -> None:
    units = province_units(tmp_path, province, 8)
    docs, copies = province_docs(units)
    serve_listing(server, files_of(docs))
    async with service_for(tmp_path, province, server.url, {"listing_path": "/truc/envelopes"}) as service:
        summary = await service.runner.collect(SOURCE_ID, dry_run=True)
        stored, watermark = service.store.count_observations(), service.store.watermark(SOURCE_ID)
    assert summary.ok and stored == 0 and watermark is None
    preview = CollectionResult(observations=summary.preview)
    known = [d for d in docs if d.sender != MINISTRY]
    expected = expected_table(known, MONTHS[1:4])
    for doc in {d.key: d for d in docs if d.sender == MINISTRY}.values():  # still received by the unit
        expected[(doc.receivers[0], month(doc.promulgated))][MEASURES["received"]] += 1
    assert by_key(preview) == expected
    assert sorted(r.reason for r in summary.rejected) == sorted(["duplicate"] * copies + ["unknown_unit"] * 3)


async def test_end_to_end_from_a_folder(tmp_path: Path, province: Any) -> None:
    units = province_units(tmp_path, province, 6)
    docs = random_docs(random.Random(4), units, units, date(2026, 9, 1), date(2026, 11, 20), 30)
    write(tmp_path / "drop", files_of(docs))
    async with service_for(tmp_path, province, (tmp_path / "drop").as_uri()) as service:
        summary = await service.runner.collect(SOURCE_ID)
        [value] = service.kpis.compute(datetime(2026, 10, 15, 5, 0, tzinfo=UTC), [Window.parse("month")],
                                       kpis=["outgoing_docs_signed_rate"], units=[PROVINCE_CODE])
    assert summary.ok, summary.error
    assert summary.observations == len(expected_table(docs, MONTHS[1:4])) * 3
    october = [d for d in docs if d.promulgated.month == 10]
    assert (value.numerator, value.denominator) == (sum(d.signed for d in october), len(october))
