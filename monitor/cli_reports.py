"""``egovmon report gap``: the target-gap report on the terminal's machine, in the
formats people use (Excel first); the same options as ``GET /reports/gap``."""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from monitor.cli_common import fail, load, open_service

report_app = typer.Typer(help="Reports: target gaps per unit, in HTML, XLSX, CSV, JSON or Markdown.",
                         no_args_is_help=True)


class StagePrinter:
    """One line per stage of a report on stderr, with the time since the start."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, what: str, done: int, total: int) -> None:
        sys.stderr.write(f"  [{done}/{total}] {what} ({time.monotonic() - self.started:.1f}s)\n")
        sys.stderr.flush()


@report_app.command("gap")
def gap(
    as_of: Annotated[str | None, typer.Option(help="Date YYYY-MM-DD (end of that day, province's time); "
                                                   "default now.")] = None,
    unit: Annotated[str | None, typer.Option(help="A unit code: the report covers it and every unit below it; "
                                                  "default the whole province.")] = None,
    lang: Annotated[str | None, typer.Option(help="vi or en; default the configuration's language.")] = None,
    format_: Annotated[str, typer.Option("--format", help="html, xlsx, csv, json or md.")] = "xlsx",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File or directory to write; "
                                                                       "'-' for standard output.")] = None,
) -> None:
    """Which units are behind which targets, by how much, since when, and will they make it."""
    from monitor.reports.build import ReportError, build_gap_report, end_of_day
    from monitor.reports.formats import file_name, format_named

    try:
        fmt = format_named(format_)
    except ValueError as exc:
        raise fail(f"--format: {exc}", 2) from None
    config = load()
    language = lang or config.language
    if language not in ("vi", "en"):
        raise fail(f"--lang: vi or en, got {language!r}", 2)
    instant = None
    if as_of is not None:
        try:
            instant = end_of_day(date.fromisoformat(as_of), config.tz)
        except ValueError:
            raise fail(f"--as-of: a date YYYY-MM-DD, got {as_of!r}", 2) from None
    service = open_service(config)
    try:
        report = build_gap_report(service, as_of=instant, scope=unit, language=language,  # type: ignore[arg-type]
                                  progress=StagePrinter())
        body = fmt.render(report)
    except ReportError as exc:
        raise fail(f"--unit: {exc}", 2) from None
    finally:
        service.close()
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return
    target = output or Path(file_name(report, fmt))
    if target.is_dir():
        target = target / file_name(report, fmt)
    try:
        target.write_bytes(body)
    except OSError as exc:
        raise fail(f"cannot write {target}: {exc.strerror}", 1) from None
    counts = ", ".join(f"{n} {s}" for s, n in report.status_counts.items() if n)
    typer.echo(f"{target} ({len(body):,} bytes): {len(report.targets)} targets, {len(report.rows)} rows — {counts}")


@report_app.command("send")
def send(name: Annotated[str, typer.Argument(help="The schedule's name in reports.schedules.")]) -> None:
    """Build and email a scheduled report now (what the scheduler does at its time)."""
    import asyncio

    config = load()
    schedules = {s.name: s for s in config.reports.schedules}
    if name not in schedules:
        raise fail(f"no report schedule {name!r} (reports.schedules: {', '.join(schedules) or 'none'})", 2)
    service = open_service(config)

    async def main() -> int:
        try:
            return int(await service.send_scheduled_report(schedules[name]))
        finally:
            await service.aclose()

    queued = asyncio.run(main())
    stats = service.alerting.outbox.stats(service.clock.now())
    typer.echo(f"report {name}: {queued} message(s) queued; outbox: "
               + (", ".join(f"{n} {s}" for s, n in stats.counts.items() if n) or "empty"))
