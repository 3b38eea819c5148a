"""A real loopback HTTP source for sync hypothesis tests: one event loop, one
``SourceServer`` and one client session for the whole module, each example run
on that loop (hypothesis cannot drive async test functions itself)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Set
from typing import TypeVar

import aiohttp

from collectors import CollectionResult, CollectorError
from collectors.http import new_session
from monitor.catalog import load_catalog
from tests.collectors.conftest import Harness, SourceServer

T = TypeVar("T")
MEASURES = frozenset(load_catalog().measures)


class Rig:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = SourceServer()
        self.run(self.server.start())
        self.session: aiohttp.ClientSession = self.run(self._session())
        self.harness = Harness(self.server, self.session)

    async def _session(self) -> aiohttp.ClientSession:
        return new_session()

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(work, 20))

    def close(self) -> None:
        self.run(self.session.close())
        self.run(self.server.close())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def check_result(outcome: CollectionResult | CollectorError, units: Set[str], *,
                 runner_checks_values: bool = False) -> CollectionResult | None:
    """The collector's contract on whatever it returned: observations only for units it
    may report for, of measures the catalog knows, finite and non-negative.

    ``runner_checks_values``: the kind hands numbers over as read and leaves refusing
    negative and non-finite ones to the runner (``monitor/collection.py``); they must
    still be floats."""
    if isinstance(outcome, CollectorError):
        assert outcome.message, outcome
        return None
    assert isinstance(outcome, CollectionResult), type(outcome)
    for obs in outcome.observations:
        assert obs.measure in MEASURES, obs
        assert obs.unit in units, obs
        assert isinstance(obs.value, int | float) and not isinstance(obs.value, bool), obs
        if not runner_checks_values:
            assert math.isfinite(obs.value) and obs.value >= 0, obs
        assert obs.period.start < obs.period.end, obs
    for rejection in outcome.rejections:
        assert rejection.reason and rejection.detail, rejection
    return outcome


async def collected(work: Awaitable[CollectionResult]) -> CollectionResult | CollectorError:
    """The collector's answer, or the documented error it raised; anything else propagates."""
    try:
        return await work
    except CollectorError as error:
        return error
