"""A shorter in-process run of the accelerated soak (``python -m benchmarks.soak``):
faults armed in a simulated system every cycle and a share of SMTP refusals, and
still every queued e-mail delivered exactly once, nothing delivered that was not
queued, and no day observation left past the retention horizon. Timing is not judged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.soak import soak


async def test_short_soak_loses_nothing_sends_nothing_twice_and_keeps_the_horizon(tmp_path: Path) -> None:
    # Three simulated days: February's days pass the 7-day horizon on the third (8 March).
    lines, ok = await soak(cycles=3, minutes=2.0, seed=8, directory=tmp_path, fault_share=1.0)
    figures: dict[str, dict[str, Any]] = {line["name"]: line for line in lines}

    assert figures["cycles"]["value"] == 3
    assert sum(figures["faults_injected"]["simulator"].values()) == 3  # one armed each cycle
    assert figures["faults_injected"]["smtp_451"] > 0

    emails = figures["emails"]
    assert emails["expected"] > 20  # digests and source notices were composed
    assert emails["delivered"] == emails["expected"]
    assert (emails["lost"], emails["duplicated"], emails["unexpected"], emails["failed"],
            emails["still_queued"]) == (0, 0, 0, 0, 0)

    assert figures["retention"]["months_rolled_up"] >= 1
    invariants = figures["invariants"]
    assert invariants["retention_horizon_kept"] is True
    assert ok is True and invariants["value"] == 1
