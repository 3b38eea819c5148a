"""Property: a collector fed a mutated payload returns a CollectionResult whose
observations keep the contract (known unit and measure, finite, non-negative),
or raises a CollectorError — never another exception.

HTTP kinds are served by a real aiohttp server on 127.0.0.1 (the recorded
answers of ``tests/collectors/payloads/``, mutated), files are written to disk,
``sql`` reads a real SQLite file.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from collectors import Credentials, SourceSettings
from collectors.dvc_dossiers import DvcDossiersCollector
from collectors.http_json import HttpJsonCollector, HttpJsonOptions
from monitor.timeutil import FrozenClock, Period, iter_periods, local_midnight
from tests.collectors.conftest import TZ, PayloadSet, load_payloads
from tests.collectors.dvc_dossiers_fixtures import PATH as DVC_PATH
from tests.collectors.dvc_dossiers_fixtures import UNITS as DVC_UNITS_TUPLE
from tests.collectors.dvc_dossiers_fixtures import VN, DossierSource, generate, shuffled_records
from tests.fuzz.checks import fuzz
from tests.fuzz.rig import Rig, check_result, collected
from tests.fuzz.strategies import mutated, mutated_bytes, values

BUILT_IN = ("document_management", "one_stop", "email_directory")
SEEDS = {kind: load_payloads(kind) for kind in BUILT_IN}


def with_documents(seed: PayloadSet, documents: Any) -> PayloadSet:
    return PayloadSet(seed.kind, seed.case, documents)


def test_the_seeds_collect(rig: Rig) -> None:
    for kind, seed in SEEDS.items():
        outcome = check_result(rig.run(collected(rig.harness.collect(seed))), seed.units)
        assert outcome is not None and outcome.observations, kind


@fuzz(60)
@given(kind=st.sampled_from(BUILT_IN), data=st.data())
@example(kind="one_stop", data=None)
def test_mutated_records_keep_the_contract(rig: Rig, kind: str, data: st.DataObject | None) -> None:
    seed = SEEDS[kind]
    if data is None:  # every number replaced by a hostile one
        documents = copy.deepcopy(seed.documents)
        for record in with_documents(seed, documents).records():
            for key in list(record):
                if isinstance(record[key], int):
                    record[key] = 10**400
        mutants = documents
    else:
        # Records mutated, paging left alone, so the collector reads every page.
        mutants = copy.deepcopy(seed.documents)
        for name in mutants:
            page = mutants[name]
            page[seed.records_key] = data.draw(mutated(page[seed.records_key]) | values(8), label=name)
    payloads = with_documents(seed, mutants)
    check_result(rig.run(collected(rig.harness.collect(payloads))), seed.units)


@fuzz(40)
@given(kind=st.sampled_from(BUILT_IN), data=st.data())
@example(kind="document_management", data=None)
def test_mutated_bodies_keep_the_contract(rig: Rig, kind: str, data: st.DataObject | None) -> None:
    """Each answer's bytes mutated: broken JSON, wrong encodings, truncation."""
    seed = SEEDS[kind]
    rig.server._faults.clear()
    for name in sorted(seed.documents):
        body = json.dumps(seed.documents[name], ensure_ascii=False).encode()
        if data is None:  # a number over Python's 4300-digit limit: json.loads raises ValueError
            body = body.replace(b"142", b"1" * 5000, 1)
        rig.server.answer(data.draw(mutated_bytes(body), label=name) if data else body, times=1)
    outcome = rig.run(collected(rig.harness.collect(seed, retries=0)))
    rig.server._faults.clear()
    check_result(outcome, seed.units)


# ----------------------------------------------------------------------------- http_json: options + records

JSON_UNITS = {f"000.00.{n:02d}.H99" for n in range(1, 4)}
JSON_OPTIONS: dict[str, Any] = {
    "unit": "unit", "records": "data", "request": {"path": "/stats", "params": {"month": "{month}"}},
    "measures": {"docs_outgoing_total": "out.total", "docs_outgoing_electronic": "$.out['electronic']"}}
JSON_RECORDS = [{"unit": unit, "month": "2026-10", "out": {"total": 40 + i, "electronic": 20 + i}}
                for i, unit in enumerate(sorted(JSON_UNITS))]
JSON_NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def serve_json(rig: Rig, document: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(document, dumps=lambda d: json.dumps(d, ensure_ascii=False, allow_nan=True))

    rig.server.routes["/stats"] = handler


def json_collector(rig: Rig, options: dict[str, Any]) -> HttpJsonCollector:
    settings = SourceSettings("thu-nghiem", "http_json", rig.server.url, "month", options, Credentials())
    return HttpJsonCollector(settings, rig.harness.http(retries=0), TZ, FrozenClock(JSON_NOW))


def test_the_http_json_seed_collects(rig: Rig) -> None:
    serve_json(rig, {"data": JSON_RECORDS})
    outcome = check_result(rig.run(collected(json_collector(rig, JSON_OPTIONS).collect(
        [Period.of_month(2026, 10, TZ)], JSON_UNITS))), JSON_UNITS)
    assert outcome is not None and len(outcome.observations) == 2 * len(JSON_RECORDS)


@fuzz(60)
@given(options=mutated(JSON_OPTIONS, 2) | st.just(JSON_OPTIONS),
       document=mutated({"data": JSON_RECORDS}) | values(10))
@example(options=JSON_OPTIONS, document={"data": [{"unit": "000.00.01.H99", "out": {"total": 1e309}}]})
@example(options=JSON_OPTIONS, document={"data": [{"unit": "000.00.01.H99", "out": {"total": 10**400}}]})
@example(options=JSON_OPTIONS, document={"data": [{"unit": ["000.00.01.H99"], "out": {"total": True}}]})
def test_http_json_options_and_records_keep_the_contract(rig: Rig, options: dict[str, Any], document: Any) -> None:
    try:
        HttpJsonOptions.model_validate(options)
    except ValidationError:
        return  # refused by `config check` with its line (SourceConfig validates options): documented
    serve_json(rig, document)
    outcome = rig.run(collected(json_collector(rig, options).collect([Period.of_month(2026, 10, TZ)], JSON_UNITS)))
    check_result(outcome, JSON_UNITS)


# ----------------------------------------------------------------------------- dvc_dossiers: dossier records

DVC_NOW = datetime(2026, 4, 20, 3, 0, tzinfo=UTC)
DVC_MONTHS = list(iter_periods(local_midnight(date(2026, 1, 1), VN), DVC_NOW, "month", VN))
DVC_RECORDS = shuffled_records(generate(5, 12, local_midnight(date(2025, 12, 1), VN), DVC_NOW), 5)
DVC_UNITS = set(DVC_UNITS_TUPLE)


def dvc_collect(rig: Rig, records: list[Any]) -> Any:
    rig.server.routes[DVC_PATH] = DossierSource(records).handle
    settings = SourceSettings(id="dvc", kind="dvc_dossiers", url=rig.server.url, grain="month",
                              options={"page_size": 5})
    source = DvcDossiersCollector(settings, rig.harness.http(retries=0), VN, FrozenClock(DVC_NOW))
    return check_result(rig.run(collected(source.collect(DVC_MONTHS, DVC_UNITS))), DVC_UNITS)


def test_the_dvc_seed_collects(rig: Rig) -> None:
    outcome = dvc_collect(rig, DVC_RECORDS)
    assert outcome is not None and outcome.observations


@fuzz(50)
@given(records=mutated(DVC_RECORDS, 5))
@example(records=[{**DVC_RECORDS[0], "NgayTiepNhan": "2026-02-30T10:00:00"}])
@example(records=[{**DVC_RECORDS[0], "NgayTiepNhan": "99999999999999"}])
@example(records=[{**DVC_RECORDS[0], "TrangThaiHoSo": 10**400, "DuocThanhToanTrucTuyen": -1}])
@example(records=[{**DVC_RECORDS[0], "DanhSachLePhi": [{"Gia": float("inf")}]}])
def test_mutated_dossiers_keep_the_contract(rig: Rig, records: list[Any]) -> None:
    outcome = dvc_collect(rig, records)
    if outcome is not None and records:
        # Accounting: records read, none stored and none refused would be a silent loss.
        assert outcome.observations or outcome.rejections
