"""Schemathesis against the live listener's own ``/openapi.json``.

The CLI (``python -m schemathesis.cli run``, schemathesis 4.x) runs as a
subprocess while the server answers in this test's event loop. Every check is
on: no 5xx, status codes, content types, headers and bodies as documented,
invalid input rejected, valid input accepted, unsupported methods answered 405
with ``Allow``, and state-changing operations refusing requests without a
valid token (``ignored_auth``).

Three passes: every operation without a token (reads must work, writes must be
refused); then the state-changing operations with the token, checking how they
validate their bodies. That second pass leaves out ``positive_data_acceptance``:
a schema-valid silence that names an unknown unit, or ends before now, is
rightly refused with 400 by a check that needs the service's data. The gap
report, which evaluates every rule on each call (seconds), has a short pass of
its own (fuzzing only) to keep the run bounded.
"""

from __future__ import annotations

import asyncio
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import schemathesis

from monitor.simulators.province import ProvinceModel
from tests.api.conftest import AUTH, Live, live_api

SEED = "20261122"  # reproducible runs; change it to explore
MAX_EXAMPLES = "5"  # per operation and phase: a bounded run (about 15 s in all)
TIMEOUT = 240
REPORT = "/reports/gap"


async def schemathesis_run(live: Live, directory: Path, name: str, *options: str,
                           max_examples: str = MAX_EXAMPLES, exclude: tuple[str, ...] = ()) -> ET.Element:
    """Run the CLI against the live server; return its JUnit report (failing
    the test, with the CLI's output, when the run found anything)."""
    junit = directory / f"{name}.xml"
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{live.base}/openapi.json",
               "--checks", "all", "--max-examples", max_examples, "--seed", SEED, "--workers", "1",
               "--generation-database", "none", "--request-timeout", "30",
               # Response times are not the contract (a loaded 2-core machine takes its seconds over a
               # report): a limit above the request timeout leaves slowness to the timeout alone.
               "--max-response-time", "60",
               *(("--exclude-checks", ",".join(exclude)) if exclude else ()),
               "--report", "junit", "--report-junit-path", str(junit), *options]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=directory, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"})
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = output.decode("utf-8", "replace")
    assert process.returncode == 0, f"schemathesis ({name}) found problems:\n{text}"
    return ET.parse(junit).getroot()  # noqa: S314 (the report schemathesis just wrote)


def operations(report: ET.Element) -> set[str]:
    """The operations tested (the stateful scenarios have a test case of their own)."""
    return {case.attrib["name"] for case in report.iter("testcase")} - {"Stateful tests"}


async def test_the_api_keeps_its_contract(tmp_path: Path, province: ProvinceModel, database: str) -> None:
    assert int(schemathesis.__version__.split(".")[0]) >= 4  # the CLI options used here are 4.x
    async with live_api(tmp_path, province, database) as live:
        async with live.session.get(f"{live.base}/openapi.json") as response:
            document = await response.json()
        documented = {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}
        assert len(documented) >= 21

        report = await schemathesis_run(live, tmp_path, "without-token", "--exclude-path", REPORT)
        # Each operation was run (but the document itself, which schemathesis leaves out), none failed or erred.
        assert operations(report) == documented - {"GET /openapi.json", f"GET {REPORT}"}
        assert not [c for c in report.iter("testcase") if c.find("failure") is not None or c.find("error") is not None]
        # Without the token nothing was changed.
        assert live.service.alerting.silences.list(live.service.clock.now(), include_ended=True) == []
        assert not [r for r in live.service.alerting.alerts.load() if r.acked_by]

        writes = {"POST /api/v1/silences", "POST /api/v1/alerts/ack", "DELETE /api/v1/silences/{id}",
                  "POST /api/v1/reload"}
        assert writes == {f"{m.upper()} {p}" for p, item in document["paths"].items() for m, op in item.items()
                          if op.get("security")}
        report = await schemathesis_run(
            live, tmp_path, "with-token", "--header", f"Authorization: {AUTH['Authorization']}",
            "--include-method", "POST", "--include-method", "DELETE", exclude=("positive_data_acceptance",))
        assert operations(report) == writes
        # The documented example made a silence: with the token, writes went through.
        assert live.service.alerting.silences.list(live.service.clock.now(), include_ended=True)

        report = await schemathesis_run(live, tmp_path, "report", "--include-path", REPORT,
                                        "--phases", "examples,fuzzing", max_examples="3")
        assert operations(report) == {f"GET {REPORT}"}
