"""`egovmon run`, the production command, as a real process against separately running
simulators: it collects on its schedule, serves /metrics, reloads its configuration on
SIGHUP (refusing a broken one and running on), and stops cleanly."""

import signal
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from monitor.simulators.province import ProvinceModel
from tests.support.process import read_until, spawn, stop
from tests.support.province import SOURCE_IDS, write_config


def source_up(text: str) -> dict[str, float]:
    return {s.labels["source"]: s.value for f in text_string_to_metric_families(text)
            if f.name == "egov_source_up" for s in f.samples}


def scrape(port: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode("utf-8"))


def reload_metric(port: str, wanted: float) -> float | None:
    """``egov_config_last_reload_success`` once it equals ``wanted`` (or its last value after 30 s)."""
    value, deadline = None, time.monotonic() + 30
    while time.monotonic() < deadline:
        value = next((s.value for f in text_string_to_metric_families(scrape(port))
                      if f.name == "egov_config_last_reload_success" for s in f.samples), None)
        if value == wanted:
            break
        time.sleep(0.2)
    return value


def test_run_collects_on_schedule_serves_and_stops_on_sigterm(tmp_path: Path, province: ProvinceModel) -> None:
    simulators = spawn("monitor.simulators", "--seed", "2025")
    service = None
    try:
        urls = {}
        for _ in SOURCE_IDS:
            match = read_until(simulators, r"^(\w+) (http://127\.0\.0\.1:\d+)", time.monotonic() + 60)
            urls[match.group(1)] = match.group(2)
        config = write_config(tmp_path, province, urls)
        service = spawn("monitor", "-c", str(config), "run")
        port = read_until(service, r"serving http://127\.0\.0\.1:(\d+)/metrics", time.monotonic() + 60).group(1)
        text, deadline = "", time.monotonic() + 120
        while time.monotonic() < deadline:  # the first collection runs at start
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text = response.read().decode("utf-8")
            if source_up(text) == {s: 1.0 for s in SOURCE_IDS.values()} and "egov_kpi_value{" in text:
                break
            time.sleep(0.5)
        assert source_up(text) == {s: 1.0 for s in SOURCE_IDS.values()}, text[-2000:]
        units = {s.labels["unit"] for f in text_string_to_metric_families(text)
                 if f.name == "egov_kpi_value" for s in f.samples}
        assert len(units) >= 200

        good = config.read_text(encoding="utf-8")
        config.write_text(good.replace("kind: one_stop", "kind: one_stopp"), encoding="utf-8")
        service.send_signal(signal.SIGHUP)
        assert reload_metric(port, 0.0) == 0.0  # refused ...
        assert source_up(scrape(port)) == {s: 1.0 for s in SOURCE_IDS.values()}  # ... and still serving
        config.write_text(good, encoding="utf-8")
        service.send_signal(signal.SIGHUP)
        assert reload_metric(port, 1.0) == 1.0
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0
    finally:
        if service is not None:
            stop(service)
        stop(simulators)
