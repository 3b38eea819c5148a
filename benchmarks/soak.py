"""Accelerated soak: months of a province's life in a minute, with things going wrong.

``python -m benchmarks.soak [--short] [--cycles N] [--minutes M] [--seed S]``

One ``MonitorService`` over the simulated province (real HTTP on 127.0.0.1), its
clock frozen and moved a day per cycle. Each cycle may arm a random fault in one
simulated system (every mode of ``monitor/simulators/server.py``), the SMTP server
(aiosmtpd, in-process) refuses a random share of messages with a transient 451,
then the service collects, recomputes, alerts and delivers, and retention runs as
its daily job would. At the end the faults are cleared and the outbox drained.

Printed, one JSON object per line: cycles, faults injected, RSS of the first and
last third (and their ratio), database size and observations per cycle, e-mails
expected (every message that ever entered the outbox, read before retention may
prune it), delivered and duplicated (by Message-ID). Exit code 1 when an invariant
fails: a message lost or delivered twice, a message delivered that was never
queued, day observations older than the retention horizon, or memory or database
growth out of bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select, text

from monitor.config import load_config
from monitor.demo_rules import write_demo_rules
from monitor.service import MonitorService
from monitor.simulators.province import ProvinceModel
from monitor.simulators.server import FAULT_MODES, Fault, SimulatorServer
from monitor.storage.store import OBS, OUTBOX
from monitor.timeutil import FrozenClock, local_date, local_midnight

START = datetime(2026, 3, 5, 3, 0, tzinfo=UTC)  # 10:00 in Hanoi
HISTORY_DAYS = 23  # collected before the first cycle: February from the 10th, rolled up from March 8 (cycle 3)
RAW_DAYS = 7  # the smallest horizon allowed, so a short run rolls months up
SOURCES = {"document_management": "qlvb", "one_stop": "mot-cua", "email_directory": "thu-cong-vu"}
# Day grain where retention has work; the one-stop shop reports monthly, as most provinces' do.
GRAIN = {"qlvb": "day", "mot-cua": "month", "thu-cong-vu": "day"}
OPERATOR = "cntt@sonha.gov.vn"
FAULT_SHARE = 0.35  # of cycles that arm a fault in one system
SMTP_REFUSE_SHARE = 0.1  # of messages the SMTP server refuses with 451 (retried later)
RSS_RATIO_LIMIT = 1.5  # last third's mean RSS over the first third's
DB_GROWTH_SLACK = 256 * 1024  # bytes per cycle the last third may grow beyond 1.5× the first third's
JUDGED_FROM = 30  # cycles: below this, memory and growth are reported but not judged (warm-up dominates)
# Two of the demo plan's targets: the cheap ones to evaluate (month-grain dossiers, mailbox stocks),
# the second with many units behind, so digests are composed, fire, escalate and resolve.
RULES = ("son-ha-online-dossiers", "son-ha-email-regular-use")
SHORT = {"cycles": 40, "minutes": 0.6}
LONG = {"cycles": 100_000, "minutes": 10.0}
log = logging.getLogger("soak")


class Recorder:
    """aiosmtpd handler: keeps every accepted message's Message-ID; refuses a seeded
    random share with a transient reply, as a busy relay does."""

    def __init__(self, rng: random.Random, refuse_share: float) -> None:
        self.rng, self.refuse_share = rng, refuse_share
        self.received: Counter[str] = Counter()
        self.refused = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.rng.random() < self.refuse_share:
            self.refused += 1
            return "451 4.3.0 soak: try again later"
        content = envelope.original_content or envelope.content or b""
        data = content.encode() if isinstance(content, str) else content
        self.received[str(message_from_bytes(data, policy=policy.default)["Message-ID"])] += 1
        return "250 OK"


@dataclass
class Figures:
    cycles: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    rss: list[int] = field(default_factory=list)
    db_bytes: list[int] = field(default_factory=list)
    observations: list[int] = field(default_factory=list)
    expected: set[str] = field(default_factory=set)
    rolled_up_months: int = 0
    pruned: Counter[str] = field(default_factory=Counter)


def rss_bytes() -> int:
    """The process's resident set now (not the peak, which only grows)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * 4096


def write_config(directory: Path, model: ProvinceModel, urls: dict[str, str], smtp_port: int) -> Path:
    model.write_units(directory / "units.yaml")
    backfill = local_date(START, model.timezone) - timedelta(days=HISTORY_DAYS)
    # The demo's provincial plan (targets due next year, so units go behind, fire and resolve)
    # rather than every national pack and index: a cycle stays around a second.
    write_demo_rules(directory / "all-rules.yaml", local_date(START, model.timezone), backfill)
    pack = yaml.safe_load((directory / "all-rules.yaml").read_text(encoding="utf-8"))
    pack["rules"] = [rule for rule in pack["rules"] if rule["id"] in RULES]
    (directory / "rules.yaml").write_text(yaml.safe_dump(pack, allow_unicode=True, sort_keys=False), encoding="utf-8")
    sources = [{"id": source_id, "kind": kind, "url": urls[kind], "retries": 0, "timeout": "3s",
                "grain": GRAIN[source_id], "settle": "1d", "backfill_from": backfill.isoformat(),
                "schedule": {"interval": "1h"}} for kind, source_id in SOURCES.items()]
    data = {"version": 1, "province": {"name": "Tỉnh Sơn Hà", "code": "000.00.00.H99"},
            "database": {"url": f"sqlite:///{directory / 'egovmon.db'}"}, "http": {"listen": "127.0.0.1:0"},
            "units": {"file": "units.yaml"}, "sources": sources,
            "rules": {"shipped": [], "files": ["rules.yaml"], "indices": []},
            "exporter": {"windows": ["month"]},
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "timeout": "5s",
                     "sender": "Giám sát CQĐT <egovmon@sonha.gov.vn>"},
            "alerts": {"sending_windows": [], "operators": [{"name": "Phòng CNTT", "email": OPERATOR}],
                       "retry": {"initial": "1h", "max": "1d", "give_up_after": "30d"}},
            "retention": {"enabled": True, "raw_days": RAW_DAYS, "rejections_days": 7, "collection_runs_days": 7,
                          "alert_transitions_days": 30, "outbox_days": 7}}
    path = directory / "monitor.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def queued_message_ids(service: MonitorService) -> set[str]:
    with service.engine.connect() as connection:
        return {row for (row,) in connection.execute(select(OUTBOX.c.message_id))}


def database_bytes(service: MonitorService) -> int:
    """Pages in use (the file never shrinks; the WAL is checkpointed first)."""
    with service.engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        pages = connection.execute(text("PRAGMA page_count")).scalar_one()
        free = connection.execute(text("PRAGMA freelist_count")).scalar_one()
        size = connection.execute(text("PRAGMA page_size")).scalar_one()
    return int((pages - free) * size)


def oldest_short_period(service: MonitorService) -> datetime | None:
    """The start of the oldest stored period shorter than 28 days (a day), read directly."""
    with service.engine.connect() as connection:
        periods = connection.execute(select(OBS.c.period_start, OBS.c.period_end).distinct()).all()
    starts = []
    for start, end in periods:
        start, end = (datetime.fromisoformat(v).replace(tzinfo=UTC) if isinstance(v, str) else v for v in (start, end))
        if end - start < timedelta(days=28):
            starts.append(start)
    return min(starts, default=None)


def arm_random_fault(rng: random.Random, simulators: SimulatorServer, figures: Figures, share: float) -> None:
    simulators.clear_faults()
    if rng.random() >= share:
        return
    kind = rng.choice(list(SOURCES))
    mode = rng.choice(FAULT_MODES)
    times = rng.choice([1, 2, 3, None])  # None: every request of this cycle
    simulators.set_fault(kind, Fault(mode, times=times, retry_after=0, delay=0.2))  # type: ignore[arg-type]
    figures.faults[mode] += 1


async def one_cycle(service: MonitorService, clock: FrozenClock, figures: Figures) -> None:
    clock.advance(timedelta(days=1))
    await service.cycle()
    await service.alert_cycle()  # the alerts tick: retries that came due
    figures.expected |= queued_message_ids(service)  # before retention may prune sent rows
    summary = await service.apply_retention()
    figures.rolled_up_months += summary.months_rolled_up
    for table in ("rejections", "collection_runs", "alert_transitions", "outbox"):
        figures.pruned[table] += getattr(summary, table)
    figures.cycles += 1
    figures.rss.append(rss_bytes())
    figures.db_bytes.append(database_bytes(service))
    figures.observations.append(service.store.count_observations())


async def drain(service: MonitorService, clock: FrozenClock, recorder: Recorder) -> int:
    """Faults cleared, the SMTP server reliable: deliver everything queued (bounded)."""
    recorder.refuse_share = 0.0
    for _ in range(48):
        with service.engine.connect() as connection:
            waiting = connection.execute(select(func.count()).select_from(OUTBOX)
                                         .where(OUTBOX.c.status.in_(("pending", "sending")))).scalar_one()
        if not waiting:
            return 0
        clock.advance(timedelta(hours=1))
        await service.alert_cycle()
    return int(waiting)


def thirds(values: list[int]) -> tuple[float, float]:
    third = max(1, len(values) // 3)
    return sum(values[:third]) / third, sum(values[-third:]) / third


def per_cycle_growth(values: list[int]) -> tuple[float, float]:
    """Mean growth per cycle over the first and the last third."""
    third = max(1, len(values) // 3)
    if len(values) < 2 * third + 1 or third < 2:
        return 0.0, 0.0
    first, last = values[:third], values[-third:]
    return (first[-1] - first[0]) / (third - 1), (last[-1] - last[0]) / (third - 1)


async def soak(*, cycles: int, minutes: float, seed: int, directory: Path,
               fault_share: float = FAULT_SHARE) -> tuple[list[dict[str, Any]], bool]:
    rng = random.Random(seed)
    model = ProvinceModel(seed=2025)
    clock = FrozenClock(START)
    recorder = Recorder(random.Random(seed + 1), SMTP_REFUSE_SHARE)
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(lambda: SMTP(recorder, hostname="soak", enable_SMTPUTF8=True), "127.0.0.1", 0)
    figures = Figures()
    deadline = time.monotonic() + minutes * 60
    try:
        async with SimulatorServer(model, clock=clock) as simulators:
            path = write_config(directory, model, simulators.urls, smtp.sockets[0].getsockname()[1])
            service = MonitorService(load_config(path), clock=clock, config_path=path)
            service.prepare()
            try:
                started = time.monotonic()
                await service.cycle()  # the history before the first cycle
                log.info("history collected in %.1fs", time.monotonic() - started)
                figures.expected |= queued_message_ids(service)
                while figures.cycles < cycles and time.monotonic() < deadline:
                    arm_random_fault(rng, simulators, figures, fault_share)
                    started = time.monotonic()
                    await one_cycle(service, clock, figures)
                    log.info("cycle %d (%s) in %.1fs", figures.cycles, local_date(clock.now(), service.config.tz),
                             time.monotonic() - started)
                simulators.clear_faults()
                still_queued = await drain(service, clock, recorder)
                figures.expected |= queued_message_ids(service)
                oldest_day = oldest_short_period(service)
                # Days may remain only from the month that holds the horizon, or after it.
                horizon = local_midnight((local_date(clock.now(), service.config.tz)
                                          - timedelta(days=RAW_DAYS)).replace(day=1), service.config.tz)
                with service.engine.connect() as connection:
                    failed = connection.execute(select(func.count()).select_from(OUTBOX)
                                                .where(OUTBOX.c.status == "failed")).scalar_one()
            finally:
                await service.aclose()
    finally:
        smtp.close()
        await smtp.wait_closed()
    return report(figures, recorder, still_queued, int(failed), oldest_day, horizon)


def report(figures: Figures, recorder: Recorder, still_queued: int, failed: int, oldest_day: datetime | None,
           horizon: datetime) -> tuple[list[dict[str, Any]], bool]:
    delivered = set(recorder.received)
    lost = figures.expected - delivered
    duplicated = {m for m, n in recorder.received.items() if n > 1}
    unexpected = delivered - figures.expected
    rss_first, rss_last = thirds(figures.rss)
    rss_ratio = rss_last / rss_first if rss_first else 0.0
    db_first, db_last = per_cycle_growth(figures.db_bytes)
    obs_first, obs_last = per_cycle_growth(figures.observations)
    judged = figures.cycles >= JUDGED_FROM
    checks = {
        "no_message_lost": not lost and not still_queued and not failed,
        "no_message_duplicated": not duplicated,
        "no_unexpected_message": not unexpected,
        "retention_horizon_kept": oldest_day is None or oldest_day >= horizon,
        # Flat memory: allow noise, not a leak (the last third averages at most 1.5× the first).
        "rss_flat": not judged or rss_ratio <= RSS_RATIO_LIMIT,
        # Bounded database: with days rolled up, it grows by the evaluations and month rows a day
        # adds, no faster at the end than at the start.
        "database_growth_bounded": not judged or db_last <= 1.5 * max(db_first, 0.0) + DB_GROWTH_SLACK,
    }
    lines: list[dict[str, Any]] = [
        {"name": "cycles", "value": figures.cycles, "unit": "simulated days"},
        {"name": "faults_injected", "value": sum(figures.faults.values()) + recorder.refused, "unit": "faults",
         "simulator": dict(sorted(figures.faults.items())), "smtp_451": recorder.refused},
        {"name": "rss", "first_third_mib": round(rss_first / 2**20, 1), "last_third_mib": round(rss_last / 2**20, 1),
         "ratio": round(rss_ratio, 3), "unit": "ratio", "value": round(rss_ratio, 3)},
        {"name": "database_growth_per_cycle", "first_third_bytes": round(db_first), "last_third_bytes": round(db_last),
         "final_bytes": figures.db_bytes[-1] if figures.db_bytes else 0, "unit": "bytes/cycle",
         "value": round(db_last)},
        {"name": "observations_growth_per_cycle", "first_third": round(obs_first, 1),
         "last_third": round(obs_last, 1), "final": figures.observations[-1] if figures.observations else 0,
         "unit": "rows/cycle", "value": round(obs_last, 1)},
        {"name": "retention", "months_rolled_up": figures.rolled_up_months, **dict(figures.pruned), "unit": "rows",
         "value": figures.rolled_up_months},
        {"name": "emails", "expected": len(figures.expected), "delivered": len(delivered),
         "duplicated": len(duplicated), "lost": len(lost), "unexpected": len(unexpected), "failed": failed,
         "still_queued": still_queued, "unit": "messages", "value": len(lost)},
        {"name": "invariants", "value": int(all(checks.values())), "unit": "ok", "memory_and_growth_judged": judged,
         **checks},
    ]
    return lines, all(checks.values())


@contextmanager
def _directory(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="egovmon-soak-") as name:
        yield Path(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="a run of under a minute (CI)")
    parser.add_argument("--cycles", type=int, help="stop after this many simulated days")
    parser.add_argument("--minutes", type=float, help="stop after this long (wall clock)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--dir", type=Path, help="keep the database and config here (default: a temporary one)")
    args = parser.parse_args(argv)
    mode = SHORT if args.short else LONG
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    with _directory(args.dir) as directory:
        lines, ok = asyncio.run(soak(cycles=args.cycles or int(mode["cycles"]),
                                     minutes=args.minutes or float(mode["minutes"]), seed=args.seed,
                                     directory=directory))
    for line in lines:
        print(json.dumps(line, ensure_ascii=False), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
