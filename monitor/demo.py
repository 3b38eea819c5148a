"""``egovmon demo``: the whole product on the embedded default.

Starts simulators of a province's three systems and an SMTP sink on loopback,
writes a real ``monitor.yaml`` pointing at them (so every other command works
with ``-c DIR/monitor.yaml`` while the demo runs), backfills history with
progress, computes the KPIs and serves ``/metrics``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TextIO

import yaml

from monitor.cli_alerts import describe_outbox
from monitor.config import DEFAULT_LISTEN, load_config
from monitor.daemon import serve
from monitor.demo_rules import write_demo_rules
from monitor.progress import ProgressPrinter
from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import SimulatorServer
from monitor.smtp_sink import SmtpSink
from monitor.targets.evaluate import STATUSES
from monitor.timeutil import Clock, SystemClock, add_months, local_date, zone

log = logging.getLogger(__name__)
HISTORY_MONTHS = 24
LEADERSHIP = {"name": "Lãnh đạo UBND tỉnh Sơn Hà", "email": "lanhdao@sonha.gov.vn"}
DEMO_RULES = "rules/son-ha.yaml"
SOURCES = (  # id, kind, schedule
    ("qlvb", "document_management", {"interval": "5m", "jitter": "10s"}),
    ("thu-cong-vu", "email_directory", {"interval": "1h", "jitter": "30s"}),
    ("mot-cua", "one_stop", {"interval": "5m", "jitter": "10s"}),
)


@dataclass
class DemoOptions:
    data_dir: Path = Path("var/demo")
    listen: str = DEFAULT_LISTEN
    once: bool = False
    seed: int = 2025


def demo_config(options: DemoOptions, urls: dict[str, str], smtp_port: int, today: date,
                token_hash: str) -> dict[str, object]:
    backfill_from = add_months(today.replace(day=1), -(HISTORY_MONTHS - 1))
    sources = []
    for source_id, kind, schedule in SOURCES:
        source: dict[str, object] = {"id": source_id, "kind": kind, "url": urls[kind],
                                     "schedule": schedule, "backfill_from": backfill_from}
        if kind == "email_directory":
            source["options"] = {"regular_use_days": 30, "logon_frequency_days": 7}
        sources.append(source)
    return {
        "version": 1,
        "province": {"name": "Tỉnh Sơn Hà (mô phỏng)", "code": "000.00.00.H99"},
        "timezone": "Asia/Ho_Chi_Minh",
        "language": "vi",
        "database": {"url": "sqlite:///egovmon.db"},
        # Links in the mail point at the demo's own listener (none with an ephemeral port).
        "http": {"listen": options.listen, "token_hashes": [token_hash],
                 **({"public_url": f"http://{options.listen}"} if not options.listen.endswith(":0") else {})},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none",
                 "sender": "Giám sát CQĐT <egovmon@sonha.gov.vn>"},
        "units": {"file": "units.yaml"},
        "sources": sources,
        "rules": {"shipped": ["national"], "files": [DEMO_RULES]},
        "exporter": {"windows": ["month", "ytd"], "evaluate_interval": "5m"},
        # The demo sends at any hour so its mail can be read at once; a province
        # keeps the default office-hours window (mail outside it waits, never dropped).
        "alerts": {"sending_windows": [], "operators": [
            {"name": "Phòng Công nghệ thông tin", "email": "cntt@sonha.gov.vn"}]},
        # Leadership gets the gap report by mail: weekly (Monday 08:00) and monthly (the 1st).
        "reports": {"schedules": [
            {"name": "hang-tuan", "schedule": {"cron": "0 8 * * mon"}, "to": [LEADERSHIP]},
            {"name": "hang-thang", "schedule": {"cron": "0 8 1 * *"}, "to": [LEADERSHIP],
             "attach": ["xlsx", "html"]}]},
    }


def _write_config(path: Path, data: dict[str, object]) -> None:
    header = ("# Written by `egovmon demo`: a real configuration pointing at the demo's\n"
              "# simulators and mail sink. While the demo runs, every command works with\n"
              f"#   egovmon -c {path} …\n")
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=False)
    path.write_text(header + text, encoding="utf-8")


def _side_ports(listen: str) -> dict[str, int]:
    """Simulators and sink next to the listener (9481…9484 by default), so the
    written config stays valid across demo restarts; ephemeral with port 0."""
    port = int(listen.rpartition(":")[2])
    if port == 0 or port > 65530:
        return {"document_management": 0, "email_directory": 0, "one_stop": 0, "smtp": 0}
    return {"document_management": port + 1, "email_directory": port + 2, "one_stop": port + 3,
            "smtp": port + 4}


async def run_demo(options: DemoOptions, *, clock: Clock | None = None,
                   out: TextIO | None = None) -> int:
    out = out or sys.stdout
    clock = clock or SystemClock()
    data_dir = options.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = _side_ports(options.listen)
    model = ProvinceModel(seed=options.seed)
    model.write_units(data_dir / "units.yaml")
    simulators = SimulatorServer(model, ports={k: v for k, v in ports.items() if k != "smtp"},
                                 clock=clock)
    sink = SmtpSink(data_dir / "mail", port=ports["smtp"])
    try:
        await simulators.start()
        await sink.start()
    except OSError as exc:
        await simulators.stop()
        print(f"egovmon demo: cannot open a port on 127.0.0.1 ({exc.strerror}); another demo may be "
              f"running — stop it, or pick other ports with --listen 127.0.0.1:PORT", file=sys.stderr)
        return 1
    today = local_date(clock.now(), zone("Asia/Ho_Chi_Minh"))
    config_path = data_dir / "monitor.yaml"
    write_demo_rules(data_dir / DEMO_RULES, today, add_months(today.replace(day=1), -(HISTORY_MONTHS - 1)))
    token_hash = _api_token(data_dir / "api-token")
    _write_config(config_path, demo_config(options, simulators.urls, sink.port, today, token_hash))
    config = load_config(config_path)
    service = MonitorService(config, clock=clock)
    try:
        await asyncio.to_thread(service.prepare)
        _say(out, f"egovmon demo: {len(service.units.valid_on(today))} units of "
                  f"{config.province.name}, simulators on "
                  + ", ".join(f"{k} {u}" for k, u in simulators.urls.items()))
        _say(out, f"  config   {config_path}\n  database {data_dir / 'egovmon.db'}\n"
                  f"  mail     {data_dir / 'mail'} (SMTP sink on 127.0.0.1:{sink.port})")
        _say(out, "collecting (history is backfilled on the first run; later runs resume):")
        progress = ProgressPrinter()
        summaries = await service.cycle(progress=progress)
        progress.finish()
        for s in summaries:
            state = "ok" if s.ok else f"FAILED ({s.reason}): {s.error}"
            _say(out, f"  {s.source:<12} {s.periods:>3} periods  {s.observations:>7} observations  "
                      f"{s.rejections:>4} rejected  {s.duration:5.1f}s  {state}")
        size = service.snapshot_size
        _say(out, f"KPIs computed: {size.values} values for {size.units} units")
        statuses = Counter(e.status for e in service.evaluations)
        _say(out, f"targets: {len(service.evaluations)} evaluations of {len(service.rules)} rules — "
                  + ", ".join(f"{statuses[s]} {s}" for s in STATUSES if statuses[s]))
        firing = service.alerting.alerts.load(states=("firing",))
        stats = service.alerting.outbox.stats(clock.now())
        _say(out, f"alerts: {len(firing)} firing; mail: {describe_outbox(stats)} → {data_dir / 'mail'}")
        if options.once:
            _say(out, "one complete cycle done (--once).")
            return 0 if all(s.ok for s in summaries) else 1
        _say(out, f"other commands: egovmon -c {config_path} …")
        _say(out, f"  API token for silences and acks in {data_dir / 'api-token'}")
        return await serve(service, out, collect_now=False)
    finally:
        await service.aclose()
        await sink.stop()
        await simulators.stop()


def _api_token(path: Path) -> str:
    """The demo's API token, kept across restarts (readable by the owner only)."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    return "sha256:" + hashlib.sha256(path.read_text(encoding="utf-8").strip().encode()).hexdigest()


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()
