"""`egovmon demo` as a user runs it: a real process, real ports, real files, clean stop."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from email import message_from_bytes, policy
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from monitor.demo import HISTORY_MONTHS
from tests.support.components import promtool_check_metrics
from tests.support.process import REPO, read_until, spawn, stop


def egovmon(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)


def test_demo_once_runs_a_complete_cycle(tmp_path: Path) -> None:
    result = egovmon("demo", "--once", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "one complete cycle done" in result.stdout
    assert (tmp_path / "monitor.yaml").is_file() and (tmp_path / "egovmon.db").is_file()
    # Every head told once: one digest per recipient, as many as the demo says it sent.
    sent = int(re.search(r"mail: (\d+) sent", result.stdout).group(1))  # type: ignore[union-attr]
    mails = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in (tmp_path / "mail").glob("*.eml")]
    recipients = [m["To"].addresses[0].addr_spec for m in mails]
    assert sent > 20 and len(mails) == sent and len(set(recipients)) == sent
    assert all(str(m["Subject"]).startswith("[Tỉnh Sơn Hà (mô phỏng)]") for m in mails)
    # The written config is a real one: config check accepts it.
    check = egovmon("-c", str(tmp_path / "monitor.yaml"), "config", "check")
    assert check.returncode == 0, check.stderr
    # A second run on the same directory resumes instead of backfilling everything again.
    again = egovmon("demo", "--once", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0")
    assert again.returncode == 0, again.stderr
    first_periods = [int(n) for n in re.findall(r"qlvb\s+(\d+) periods", result.stdout)]
    second_periods = [int(n) for n in re.findall(r"qlvb\s+(\d+) periods", again.stdout)]
    assert first_periods == [HISTORY_MONTHS] and second_periods[0] < 3
    assert len(list((tmp_path / "mail").glob("*.eml"))) == sent  # nothing changed, nothing sent again


def test_demo_serves_metrics_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    process = spawn("monitor", "demo", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0")
    try:
        port = int(read_until(process, r"serving http://127\.0\.0\.1:(\d+)/metrics",
                              time.monotonic() + 120).group(1))
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/readyz", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
            text = response.read().decode("utf-8")
        ok, output = promtool_check_metrics(text)
        assert ok, output
        units = {s.labels["unit"] for f in text_string_to_metric_families(text)
                 if f.name == "egov_kpi_value" for s in f.samples}
        assert len(units) >= 200
        # Other commands work against the running demo with its config.
        evaluated = egovmon("-c", str(tmp_path / "monitor.yaml"), "evaluate", "--json", "--window", "ytd")
        assert evaluated.returncode == 0, evaluated.stderr
        rows = [json.loads(line) for line in evaluated.stdout.splitlines()]
        assert {r["unit"] for r in rows} == {"000.00.00.H99"} and len(rows) >= 10
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        stop(process)
