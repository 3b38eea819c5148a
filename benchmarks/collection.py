"""A collection cycle of a 1,000-unit province's three systems, 50 ms from the service.

The cycle is the service's own path: ``CollectionRunner.collect`` (dry run, so
the figure is the collection, not the database) for a document-management, a
one-stop and a mail-directory source, concurrently, through the collectors,
``SourceHttp`` and ``new_session``. The sources are a lean emulator in its own
process (``benchmarks._servers``) that holds every answer 50 ms. Pages hold
one unit's record (ten mailboxes in the directory), so that a cycle is 3,000
requests: enough for the concurrency, not the first page each source must read
alone, to set the pace.

Figures, each against a baseline measured in the same run:

- ``collection_cycle_vs_bound``: the cycle's time against the bound the
  concurrency sets, latency × requests / concurrency. The concurrency (100 in
  all) is split between the three sources' ``concurrency`` settings, which size
  each source's connection pool and its pages in flight.
- ``collection_cycle_vs_sequential``: the same cycle against sequential polling
  (one request at a time, each waiting for the previous), timed on a sample of
  the cycle's requests through the same ``SourceHttp`` and scaled to the
  cycle's count (``--quick`` and full both sample; a full sequential cycle
  would take ~150 s).
- ``collection_cycle_vs_plain_aiohttp`` (diagnostic, no goal): the cycle against
  bare aiohttp fetching the same pages with the same concurrency: what the
  service adds (validation, error mapping, storage-ready observations) over
  the HTTP client itself, and how far the machine lets the client near the bound.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from benchmarks._servers import (
    ACCOUNTS_PATH,
    DOCUMENT_PATH,
    ONE_STOP_PATH,
    EmulatorSpec,
    ProvinceEmulator,
    months_of,
    unit_codes,
)
from benchmarks.common import Result

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 10:00 in Hanoi
LATENCY = 0.05
CONCURRENCY = 100
SOURCES = ("qlvb", "mot-cua", "thu-cong-vu")


@dataclass(frozen=True)
class Scenario:
    """A cycle: ``units`` units, ``months`` months of statistics, ``accounts`` per unit,
    read ``pages`` pages per source at ``concurrency`` requests in flight in all."""

    units: int = 1000
    months: int = 1
    accounts_per_unit: int = 10
    pages: int = 1000
    concurrency: int = CONCURRENCY
    latency: float = LATENCY

    @property
    def statistics_page_size(self) -> int:
        return math.ceil(self.units * self.months / self.pages)

    @property
    def accounts_page_size(self) -> int:
        return math.ceil(self.units * self.accounts_per_unit / self.pages)

    def expected_requests(self) -> dict[str, int]:
        statistics = math.ceil(self.units * self.months / self.statistics_page_size)
        accounts = math.ceil(self.units * self.accounts_per_unit / self.accounts_page_size)
        return {DOCUMENT_PATH: statistics, ONE_STOP_PATH: statistics, ACCOUNTS_PATH: accounts}

    def source_concurrency(self) -> list[int]:
        """``concurrency`` split over the three sources (34 + 33 + 33 for 100)."""
        share, extra = divmod(self.concurrency, len(SOURCES))
        return [share + (1 if i < extra else 0) for i in range(len(SOURCES))]

    def spec(self) -> EmulatorSpec:
        return EmulatorSpec(self.units, tuple(months_of(2026, 12 - self.months, 11)),
                            self.accounts_per_unit, self.latency, NOW)


@dataclass(frozen=True)
class CycleOutcome:
    seconds: float
    observations: int
    requests: dict[str, int]


def _runner(scenario: Scenario, url: str, directory: Path):  # type: ignore[no-untyped-def]
    from monitor.catalog import load_catalog
    from monitor.collection import CollectionRunner
    from monitor.config import Config, ProvinceConfig, SourceConfig, UnitsConfig
    from monitor.metrics import ServiceMetrics
    from monitor.storage import Store, create_engine_for
    from monitor.timeutil import FrozenClock
    from monitor.units import Unit, build_tree

    codes = unit_codes(scenario.units)
    units = [Unit(code=codes[0], name="UBND tỉnh Sơn Hà", level="province", group="tinh")]
    units += [Unit(code=code, name=f"Sở Số {i} tỉnh Sơn Hà", level="department", group="so_nganh",
                   parent=codes[0], staff_count=30) for i, code in enumerate(codes[1:])]
    tree = build_tree(units, {"tinh": {"vi": "Tỉnh"}, "so_nganh": {"vi": "Sở, ban, ngành"}}, "<benchmark>")
    kinds = {"qlvb": "document_management", "mot-cua": "one_stop", "thu-cong-vu": "email_directory"}
    sources = tuple(
        SourceConfig(id=source, kind=kinds[source], url=url, retries=0, timeout=30, concurrency=share,
                     options={"page_size": scenario.accounts_page_size if source == "thu-cong-vu"
                              else scenario.statistics_page_size})
        for source, share in zip(SOURCES, scenario.source_concurrency(), strict=True))
    config = Config(province=ProvinceConfig(name="Tỉnh Sơn Hà", code=codes[0]),
                    units=UnitsConfig(file=directory / "units.yaml"), sources=sources)
    store = Store(create_engine_for(f"sqlite:///{directory}/unused.db"))
    return CollectionRunner(config, store, load_catalog(), tree, ServiceMetrics(), FrozenClock(NOW))


async def _cycle(runner, backfill: tuple[date, date]) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    summaries = await asyncio.gather(*(runner.collect(s, backfill=backfill, dry_run=True) for s in SOURCES))
    seconds = time.perf_counter() - started
    failed = [f"{s.source}: {s.error}" for s in summaries if not s.ok]
    if failed:
        raise RuntimeError("the benchmark cycle failed: " + "; ".join(failed))
    return seconds, sum(s.observations for s in summaries)


@contextmanager
def emulated(scenario: Scenario) -> Iterator[ProvinceEmulator]:
    with ProvinceEmulator(scenario.spec()) as emulator:
        yield emulator


def measure_cycles(scenario: Scenario, emulator: ProvinceEmulator, repeats: int) -> CycleOutcome:
    """The fastest of ``repeats`` cycles, and the requests the last one made."""
    months = scenario.spec().months
    backfill = (date.fromisoformat(months[0].first), date.fromisoformat(months[-1].last))
    best, observations, counts = math.inf, 0, {}
    with tempfile.TemporaryDirectory() as directory:
        runner = _runner(scenario, emulator.url, Path(directory))
        for _ in range(repeats):
            emulator.reset()
            seconds, observations = asyncio.run(_cycle(runner, backfill))
            best = min(best, seconds)
            counts = emulator.counts()
    return CycleOutcome(best, observations, counts)


def sequential_per_request(scenario: Scenario, url: str, sample: int) -> float:
    """Seconds per request when polling one request at a time, through ``SourceHttp``,
    over ``sample`` of the cycle's requests spread over the three systems."""
    from collectors.http import SourceHttp, new_session

    async def poll() -> float:
        async with new_session(1) as session:
            http = SourceHttp("sequential", url, session, timeout=30, retries=0, concurrency=1)
            size, limit = scenario.statistics_page_size, scenario.accounts_page_size
            months = scenario.spec().months
            span = {"from": months[0].first, "to": months[-1].last, "grain": "month"}
            started = time.perf_counter()
            for n in range(sample):
                page = n // 3 + 1
                if n % 3 == 0:
                    await http.get_json(DOCUMENT_PATH, {**span, "page": page, "page_size": size})
                elif n % 3 == 1:
                    await http.get_json(ONE_STOP_PATH, {**span, "page": page, "page_size": size})
                else:
                    await http.get_json(ACCOUNTS_PATH, {"offset": (page - 1) * limit, "limit": limit})
            return (time.perf_counter() - started) / sample

    return asyncio.run(poll())


def _urls(scenario: Scenario, url: str) -> list[list[str]]:
    """Per source, the URLs of the cycle's pages, first page first (as the collectors ask them)."""
    month = scenario.spec().months
    span = f"from={month[0].first}&to={month[-1].last}&grain=month"
    counts = scenario.expected_requests()
    size, limit = scenario.statistics_page_size, scenario.accounts_page_size
    return [[f"{url}{path}?{span}&page={page}&page_size={size}" for page in range(1, counts[path] + 1)]
            for path in (DOCUMENT_PATH, ONE_STOP_PATH)] + [
        [f"{url}{ACCOUNTS_PATH}?offset={n * limit}&limit={limit}" for n in range(counts[ACCOUNTS_PATH])]]


def plain_aiohttp_cycle(scenario: Scenario, url: str, repeats: int) -> float:
    """The library's floor: the same requests with bare aiohttp (a session per source sized
    like the source's, the first page first, the body read and decoded, nothing validated)."""
    import aiohttp

    async def source(urls: list[str], share: int) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=share, limit_per_host=share)) as s:
            gate = asyncio.Semaphore(share)

            async def get(target: str) -> None:
                async with gate, s.get(target) as answer:
                    json.loads(await answer.read())

            await get(urls[0])
            await asyncio.gather(*(get(target) for target in urls[1:]))

    async def cycle() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(source(urls, share) for urls, share
                               in zip(_urls(scenario, url), scenario.source_concurrency(), strict=True)))
        return time.perf_counter() - started

    return min(asyncio.run(cycle()) for _ in range(repeats))


def run(quick: bool) -> list[Result]:
    return results(Scenario(), repeats=2 if quick else 5, sample=30 if quick else 150)


def results(scenario: Scenario, *, repeats: int, sample: int) -> list[Result]:
    """The figures for ``scenario``: cycles best of ``repeats``, sequential polling timed on
    ``sample`` requests. Raises if a cycle made other requests than the scenario implies."""
    with emulated(scenario) as emulator:
        measure_cycles(scenario, emulator, 1)  # warm the emulator's page cache and the imports
        cycle = measure_cycles(scenario, emulator, repeats)
        floor = plain_aiohttp_cycle(scenario, emulator.url, repeats)
        per_request = sequential_per_request(scenario, emulator.url, sample)
    if cycle.requests != scenario.expected_requests():
        raise RuntimeError(f"the cycle made {cycle.requests} requests, not {scenario.expected_requests()}")
    requests = sum(cycle.requests.values())
    bound = scenario.latency * requests / scenario.concurrency
    scale = (f"{scenario.units} units × 3 systems, {scenario.months} months of statistics at "
             f"{scenario.statistics_page_size} records a page, {scenario.units * scenario.accounts_per_unit} "
             f"mailboxes at {scenario.accounts_page_size} a page: {requests} requests, "
             f"{cycle.observations} observations a cycle; {scenario.latency * 1000:g} ms latency; concurrency "
             f"{scenario.concurrency} (sources {'+'.join(map(str, scenario.source_concurrency()))})")
    return [
        Result("collection_cycle_vs_bound", cycle.seconds, "s",
               "latency × requests / concurrency", bound, scale,
               "ratio <= 1.3 (issue 9)"),
        Result("collection_cycle_vs_sequential", cycle.seconds, "s",
               f"sequential polling: {sample} requests one at a time, scaled to {requests}",
               per_request * requests, scale, "ratio <= 0.02, i.e. ≥ 50 × faster (issue 9)"),
        Result("collection_cycle_vs_plain_aiohttp", cycle.seconds, "s",
               "bare aiohttp GETs of the same pages, same concurrency, nothing validated", floor, scale,
               "none (diagnostic): the service's own cost over the HTTP client's"),
    ]
