"""The source faults of issue 8, each with what the service must do about it.

Expectations are written here by hand from docs/faults.md, not read from the
service: a failing source fails with ``reason`` after ``retries`` retries; a
source answering bad records stores the rest and rejects those with ``rejects``,
as many as ``expected_rejections`` counts on the clean wire answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.simulators.server import Fault

SOURCE_OF_KIND = {"document_management": "qlvb", "one_stop": "mot-cua", "email_directory": "thu-cong-vu"}
SPAN_FROM, SPAN_TO = "2026-10-01", "2026-11-30"  # October and November 2026, the span collected
# Small pages for the statistics sources, so that a month's records span several pages (faults
# act per page) while the test stays quick; the mail directory keeps its default.
PAGE_SIZE = {"document_management": 100, "one_stop": 100, "email_directory": 500}


@dataclass(frozen=True)
class FaultCase:
    name: str
    kind: str  # the simulated system that misbehaves
    fault: Fault | None  # None: its port is closed (connection refused)
    fails: str | None = None  # the collection's failure reason; None: it succeeds
    retries: dict[str, int] = field(default_factory=dict)  # retries expected, by reason
    rejects: str | None = None  # reason of the records refused, when some are
    message: str = ""  # a fragment of the error the operator reads
    min_seconds: float = 0.0  # the collection cannot have been quicker (a Retry-After honoured)

    @property
    def source(self) -> str:
        return SOURCE_OF_KIND[self.kind]

    @property
    def mode(self) -> str:
        return "refused" if self.fault is None else self.fault.mode


CASES: tuple[FaultCase, ...] = (
    # Sources that cannot be read: the collection fails, nothing stored changes, alerts are held.
    FaultCase("timeout", "one_stop", Fault("timeout", delay=30), fails="timeout",
              retries={"timeout": 1}, message="no answer within 1s"),
    FaultCase("refused", "document_management", None, fails="unavailable",
              retries={"unavailable": 1}, message="ClientConnectorError"),
    FaultCase("http_500", "document_management", Fault("http_500"), fails="unavailable",
              retries={"unavailable": 1}, message="HTTP 500"),
    FaultCase("http_503", "email_directory", Fault("http_503"), fails="unavailable",
              retries={"unavailable": 1}, message="HTTP 503"),
    FaultCase("http_429", "one_stop", Fault("http_429", retry_after=1), fails="rate_limited",
              retries={"rate_limited": 1}, message="HTTP 429", min_seconds=1.0),
    FaultCase("malformed", "document_management", Fault("malformed"), fails="malformed",
              retries={"malformed": 1}, message="not valid JSON"),
    FaultCase("truncated", "one_stop", Fault("truncated"), fails="malformed",
              retries={"malformed": 1}, message="response body cut short"),
    FaultCase("http_401", "one_stop", Fault("http_401"), fails="auth", message="check the source's credentials"),
    FaultCase("schema_drift", "document_management", Fault("schema_drift"), fails="malformed",
              message="field SoVanBanDi missing"),
    FaultCase("schema_drift_mail", "email_directory", Fault("schema_drift"), fails="malformed",
              message="field ou missing"),
    # Passing faults: retried (after the Retry-After the source asked for) or waited out.
    FaultCase("http_503_once", "one_stop", Fault("http_503", times=1), retries={"unavailable": 1}),
    FaultCase("http_429_once", "document_management", Fault("http_429", times=1, retry_after=1),
              retries={"rate_limited": 1}, min_seconds=1.0),
    FaultCase("slow", "document_management", Fault("slow", times=3, delay=0.3), min_seconds=0.3),
    # Bad records: refused one by one with their reason, the rest stored.
    FaultCase("duplicate_records", "document_management", Fault("duplicate_records"), rejects="duplicate"),
    FaultCase("duplicate_records_mail", "email_directory", Fault("duplicate_records"), rejects="duplicate"),
    FaultCase("periods_out_of_order", "one_stop", Fault("periods_out_of_order")),
    FaultCase("part_exceeds_whole", "one_stop", Fault("part_exceeds_whole"), rejects="inconsistent"),
    FaultCase("part_exceeds_whole_docs", "document_management", Fault("part_exceeds_whole"),
              rejects="inconsistent"),
    FaultCase("negative", "document_management", Fault("negative"), rejects="negative"),
    FaultCase("unknown_unit", "one_stop", Fault("unknown_unit"), rejects="unknown_unit"),
)


def expected_rejections(case: FaultCase, pages: Sequence[Sequence[Any]]) -> int:
    """Records the fault damages in the clean answer's ``pages``; each must be refused once."""
    if case.rejects is None:
        return 0
    if case.mode == "duplicate_records":
        if case.kind == "email_directory":  # only its last page repeats an account
            return 1 if pages and pages[-1] else 0
        return sum(1 for page in pages if page)
    # Records 0, 3, 6 … of every page.
    return sum(math.ceil(len(page) / 3) for page in pages)
