"""SIGKILL at the worst moments, real processes throughout: the simulators on their own,
``egovmon run`` / ``egovmon evaluate`` as separate processes, SQLite on disk. The kill is
aimed, not hoped for: SQLAlchemy's echo log (``database.echo``) names each statement just
before it runs, so the test kills the service inside a chunk's transaction (at the first of
its three or more batches, with the stdout pipe left full so it cannot get to its COMMIT even
if the kill were slow), or inside the evaluations' upsert. What the killed process left is read with plain sqlite3
and compared with an uninterrupted reference run against the same simulators."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.simulators.province import ProvinceModel
from monitor.timeutil import FrozenClock
from tests.alerts.test_alert_cycle import _sources_fresh, alert_settings
from tests.crash import database as db
from tests.crash.processes import Lines, seconds_until_ready, simulators
from tests.support.process import spawn, stop
from tests.support.province import SOURCE_IDS, simulated_service, write_config
from tests.support.smtp import SmtpServer

HISTORY_SOURCES = ("qlvb", "mot-cua")  # the two with a history, collected in chunks of six months
# Two chunks per source (January-June, July-December) keep the runs short; the kill takes the second.
HISTORY: dict[str, Any] = {source: {"backfill_from": "2026-01-01"} for source in HISTORY_SOURCES}
FIRST_YEAR = 2026
NO_ALERTS: dict[str, Any] = {"alerts": {"enabled": False}}
# A batch of an observations upsert, as echoed just before it runs: its first row's period start and source.
OBSERVATION_BATCH = re.compile(r"\] \[\('[^']*', '[^']*', '(\d{4}-\d\d-\d\d [\d:.]+)', '[^']*', '(qlvb|mot-cua)'")


def _echoing(extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, "database": {"url": "sqlite:///egovmon.db", "echo": True}}


def _by_chunk(observations: dict[db.ObservationKey, float], source: str) -> dict[int, dict[db.ObservationKey, float]]:
    chunks: dict[int, dict[db.ObservationKey, float]] = {}
    for key, value in observations.items():
        if key[4] == source:
            chunks.setdefault(db.chunk_of(key[2], FIRST_YEAR), {})[key] = value
    return chunks


def _finish(process: Any) -> None:
    try:
        assert process.wait(timeout=120) == 0
    finally:
        stop(process)
        process.stdout.close()


def test_sigkill_inside_a_collection_chunk_then_restart_resumes_and_loses_nothing(
        tmp_path: Path, province: ProvinceModel) -> None:
    reference_dir, crash_dir = tmp_path / "reference", tmp_path / "crash"
    reference_dir.mkdir()
    crash_dir.mkdir()
    with simulators() as urls:
        # The uninterrupted reference, run meanwhile against the same simulators (same day, same data).
        reference = spawn("monitor", "-c", str(write_config(reference_dir, province, urls, extra=NO_ALERTS, **HISTORY)),
                          "collect")
        config = write_config(crash_dir, province, urls, extra=_echoing(NO_ALERTS), **HISTORY)
        batches = Counter[tuple[str, int]]()

        def inside_a_chunk(line: str) -> bool:
            """The first batch of a chunk after the first: its transaction is open, two more
            batches (some 6 KiB of echo) to come before it can commit, and an earlier chunk
            of the same source committed."""
            match = OBSERVATION_BATCH.search(line)
            if match is None:
                return False
            key = (match.group(2), db.chunk_of(match.group(1), FIRST_YEAR))
            batches[key] += 1
            return batches[key] == 1 and key[1] >= 1

        lines = Lines(spawn("monitor", "-c", str(config), "run"), kill_at=inside_a_chunk)
        try:
            match = OBSERVATION_BATCH.search(lines.wait_killed(120))
        finally:
            lines.close()
        assert match is not None
        victim = (match.group(2), db.chunk_of(match.group(1), FIRST_YEAR))
        _finish(reference)
        source, cut = victim
        crash_db, reference_db = crash_dir / "egovmon.db", reference_dir / "egovmon.db"
        expected = db.observations(reference_db)

        # What the kill left: whole chunks or nothing, the cut chunk rolled back, the watermark at it.
        left = db.observations(crash_db)
        interrupted = [r for r in db.runs(crash_db) if r["status"] == "running"]
        assert source in {r["source"] for r in interrupted}
        complete = rolled_back = 0
        for name in HISTORY_SOURCES:
            wanted, stored = _by_chunk(expected, name), _by_chunk(left, name)
            assert set(stored) <= set(wanted)
            for chunk, rows in stored.items():
                assert rows == wanted[chunk], f"{name} chunk {chunk} half-written or wrong"
            complete += len(stored)
            rolled_back += len(set(wanted) - set(stored))
        assert cut not in _by_chunk(left, source)  # its transaction was open: rolled back
        assert set(range(cut)) <= set(_by_chunk(left, source))  # the chunks before it are there
        kept_watermarks = db.watermarks(crash_db)
        assert kept_watermarks[source] == db.chunk_start(cut, FIRST_YEAR)  # the first unfinished chunk

        # Restart without the echo: ready again, resumes at the watermark, ends with the reference's data.
        write_config(crash_dir, province, urls, extra=NO_ALERTS, **HISTORY)
        last_run = max(r["id"] for r in db.runs(crash_db))
        started = time.monotonic()
        lines = Lines(spawn("monitor", "-c", str(config), "run"))
        try:
            port = lines.until(r"serving http://127\.0\.0\.1:(\d+)/metrics", started + 60).group(1)
            ready_after = seconds_until_ready(port, started, started + 60)
            deadline = time.monotonic() + 90
            while True:
                new = [r for r in db.runs(crash_db) if r["id"] > last_run]
                if len(new) == len(SOURCE_IDS) and all(r["status"] != "running" for r in new):
                    break
                assert time.monotonic() < deadline, f"the restarted collection never finished: {new}"
                time.sleep(0.2)
        finally:
            lines.close()
    assert all(r["status"] == "ok" for r in new), new
    old = {r["id"]: r for r in db.runs(crash_db)}
    for run in interrupted:  # closed at start, not left dangling
        assert old[run["id"]]["status"] == "failed"
        assert old[run["id"]]["error"] == "interrupted (process stopped)"
    resumed = {r["source"]: r["periods_from"] for r in new}
    for name, mark in kept_watermarks.items():
        assert resumed[name] == mark  # not from scratch
    assert resumed[source] > db.chunk_start(0, FIRST_YEAR)
    final = db.observations(crash_db)
    assert final == expected  # same observations, same values: nothing lost, nothing half-written
    print(f"\ncollection: 1 kill inside {source} chunk {cut}'s transaction; {complete} chunks complete and "
          f"{rolled_back} absent after it, none partial; restarted run resumed at {resumed}; ready again "
          f"{ready_after:.1f}s after restart; {len(final)} observations identical to the reference")


EVALUATED_DAY = "2026-11-22"  # the day the session's collected history ends (tests/support/province.NOW)


def _evaluate(directory: Path) -> Any:
    return spawn("monitor", "-c", str(directory / "monitor.yaml"), "evaluate", "--as-of", EVALUATED_DAY)


def _without_stamps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in ("id", "evaluated_at")} for row in rows]


def _kill_inside_the_upsert(directory: Path) -> None:
    lines = Lines(_evaluate(directory), kill_at=lambda line: "INSERT INTO evaluations" in line)
    try:
        lines.wait_killed(120)
    finally:
        lines.close()


def test_sigkill_inside_the_evaluation_upsert_leaves_the_day_whole(
        tmp_path: Path, province: ProvinceModel, collected: Path) -> None:
    unused = {kind: "http://127.0.0.1:9" for kind in SOURCE_IDS}  # evaluate reads the database only
    reference_dir, crash_dir = tmp_path / "reference", tmp_path / "crash"
    for directory in (reference_dir, crash_dir):
        directory.mkdir()
        shutil.copy(collected, directory / "egovmon.db")
    reference_db, crash_db = reference_dir / "egovmon.db", crash_dir / "egovmon.db"
    write_config(reference_dir, province, unused, extra=NO_ALERTS)
    write_config(crash_dir, province, unused, extra=_echoing(NO_ALERTS))

    # Two at a time (two cores): the uninterrupted reference, and a kill while the day is stored first.
    reference = _evaluate(reference_dir)
    try:
        _kill_inside_the_upsert(crash_dir)
    finally:
        _finish(reference)
    stored = db.evaluations(reference_db, EVALUATED_DAY)
    expected = _without_stamps(stored)
    assert len(expected) > 500
    first = db.evaluations(crash_db, EVALUATED_DAY)
    assert first == [] or _without_stamps(first) == expected  # nothing or the whole day, never part of it

    # Then: the killed one runs again cleanly, while the reference is killed replacing its stored day.
    write_config(crash_dir, province, unused, extra=NO_ALERTS)
    write_config(reference_dir, province, unused, extra=_echoing(NO_ALERTS))
    again = _evaluate(crash_dir)
    try:
        _kill_inside_the_upsert(reference_dir)
    finally:
        _finish(again)
    assert _without_stamps(db.evaluations(crash_db, EVALUATED_DAY)) == expected  # as the uninterrupted run
    second = db.evaluations(reference_db, EVALUATED_DAY)
    assert _without_stamps(second) == expected
    stamps = {row["evaluated_at"] for row in second}
    assert len(stamps) == 1  # one transaction's rows, not a mix of the old and the new run
    unchanged = stamps == {stored[0]["evaluated_at"]}
    assert first == [] or unchanged  # at least one kill landed before its commit, or this proved nothing
    after_first, after_second = "absent" if first == [] else "whole", "unchanged" if unchanged else "replaced whole"
    print(f"\nevaluation: 2 kills inside the upsert of {len(expected)} evaluations; after the first the day was "
          f"{after_first}, after the second {after_second}; "
          f"{len(expected)} evaluations identical to the uninterrupted run")


async def test_sigkill_between_composing_digests_and_the_outbox_commit_then_each_digest_once(
        tmp_path: Path, province: ProvinceModel, database: str) -> None:
    """``tests/alerts/test_crash.py`` kills a sender in SMTP DATA; this kills ``alerts send``
    earlier, after the digests are composed and while the outbox rows and the alerts' "told"
    marks are being written in their one transaction: neither may survive without the other."""
    now = datetime.now(UTC)
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    async with SmtpServer() as smtp, SmtpServer() as reference_smtp:
        async with simulated_service(tmp_path, province, clock=FrozenClock(now), database_url=database,
                                     extra=alert_settings(smtp)) as (service, _, _):
            _sources_fresh(service, now)
            evaluations = service.evaluator.evaluate(service.rules, now)
            service.alerting.update(service.rules, evaluations, now)  # firing, nobody told yet
        shutil.copy(tmp_path / "egovmon.db", reference_dir / "egovmon.db")
        unused = {kind: "http://127.0.0.1:9" for kind in SOURCE_IDS}
        write_config(reference_dir, province, unused, extra=alert_settings(reference_smtp))
        write_config(tmp_path, province, unused, extra=_echoing(alert_settings(smtp)))

        reference = spawn("monitor", "-c", str(reference_dir / "monitor.yaml"), "alerts", "send")
        lines = Lines(spawn("monitor", "-c", str(tmp_path / "monitor.yaml"), "alerts", "send"),
                      kill_at=lambda line: "INSERT INTO outbox" in line)
        try:
            await asyncio.to_thread(lines.wait_killed, 120)
        finally:
            lines.close()
        await asyncio.to_thread(_finish, reference)
        with db.connect(tmp_path / "egovmon.db") as connection:
            assert connection.execute("SELECT count(*) FROM outbox").fetchone() == (0,)  # rolled back whole
        assert smtp.received == []

        write_config(tmp_path, province, unused, extra=alert_settings(smtp))
        again = spawn("monitor", "-c", str(tmp_path / "monitor.yaml"), "alerts", "send")
        await asyncio.to_thread(_finish, again)
    expected = sorted(m.rcpt_tos for m in reference_smtp.received)
    assert len(expected) > 20
    ids = Counter(smtp.message_ids())
    assert max(ids.values()) == 1  # nothing twice
    assert sorted(m.rcpt_tos for m in smtp.received) == expected  # nothing lost: the uninterrupted run's mail
    print(f"\nalerts: 1 kill inside the outbox transaction; {len(expected)} digests expected, "
          f"{len(ids)} received, {sum(ids.values()) - len(ids)} duplicated")
