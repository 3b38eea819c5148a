"""``egovmon``: the command line. Exit codes: 0 ok, 1 failure, 2 bad usage or bad
config (with a message naming the file, line and field)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any

import typer

from monitor import __version__
from monitor.cli_alerts import alerts_app, token_app
from monitor.cli_common import fail as _fail
from monitor.cli_common import load as _load
from monitor.cli_common import open_service as _service
from monitor.cli_common import state
from monitor.cli_dashboards import dashboards_app
from monitor.cli_reports import report_app
from monitor.cli_rules import rules_app
from monitor.config import DEFAULT_LISTEN
from monitor.dry_run import dry_run_lines
from monitor.errors import ConfigError
from monitor.gctuning import tune_gc

app = typer.Typer(help="egov-kpi-monitor: e-government KPIs per unit, against official targets.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
config_app = typer.Typer(help="Check the configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")
app.add_typer(token_app, name="token")
app.add_typer(report_app, name="report")
app.add_typer(dashboards_app, name="dashboards")


@app.callback()
def main_options(
    config: Annotated[Path, typer.Option("-c", "--config", help="Configuration file.",
                                         envvar="EGOVMON_CONFIG")] = Path("monitor.yaml"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)
    state.config_path = config
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Alembic narrates every migration step at INFO; our own log says the revision.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


# ---------------------------------------------------------------------------- commands

@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path("var/demo"),
    listen: Annotated[str, typer.Option(help="HOST:PORT of the HTTP listener.")] = DEFAULT_LISTEN,
    once: Annotated[bool, typer.Option(help="Run one complete cycle, then exit.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the simulated province.")] = 2025,
) -> None:
    """Everything on the embedded default: simulated province, SQLite, SMTP sink, /metrics."""
    from monitor.demo import DemoOptions, run_demo

    try:
        code = asyncio.run(run_demo(DemoOptions(data_dir, listen, once, seed)))
    except ConfigError as exc:
        raise _fail(f"demo configuration is not valid:\n{exc}", 2) from None
    raise typer.Exit(code)


@app.command()
def run() -> None:
    """Run the service: scheduler, collectors, /metrics, until SIGINT/SIGTERM."""
    from monitor.daemon import serve
    from monitor.security import check_listener

    config = _load()
    try:  # a public listener without tokens is refused before anything slow
        check_listener(config.http.host, config.http.port, config.http.token_hashes,
                       config_file=str(state.config_path))
    except ConfigError as exc:
        raise _fail(f"configuration is not valid:\n{exc}", 2) from None
    service = _service(config)

    async def main() -> int:
        try:
            await service.refresh_kpis()
            return await serve(service, sys.stdout)
        finally:
            await service.aclose()

    raise typer.Exit(asyncio.run(main()))


def _parse_span(text: str) -> tuple[date, date]:
    try:
        first, _, last = text.partition("..")
        return date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise typer.BadParameter(f"write FROM..TO as dates, e.g. 2024-01-01..2024-12-31, got: {text!r}") from None


@app.command()
def collect(
    source: Annotated[str | None, typer.Option(help="Only this source id.")] = None,
    backfill: Annotated[str | None, typer.Option(help="Re-read FROM..TO (dates), e.g. 2024-01-01..2024-12-31.")] = None,
    dry_run: Annotated[bool, typer.Option(
        help="Read and validate, store nothing; print what would be stored and what was rejected.")] = False,
    show: Annotated[int, typer.Option(help="In a dry run, how many observations and rejections to list per source.",
                                      min=0)] = 50,
) -> None:
    """Collect now, once, and print what was read and rejected."""
    from monitor.progress import ProgressPrinter

    span = _parse_span(backfill) if backfill else None
    if span and span[0] > span[1]:
        raise _fail(f"--backfill: FROM {span[0]} is after TO {span[1]}", 2)
    config = _load()
    if source is not None:
        try:
            config.source(source)
        except KeyError as exc:
            raise _fail(str(exc.args[0]), 2) from None
    service = _service(config)
    progress = ProgressPrinter()

    async def main() -> list[Any]:
        ids = [source] if source else [s.id for s in config.sources if s.enabled]
        results = await asyncio.gather(*(service.runner.collect(i, backfill=span, dry_run=dry_run,
                                                                progress=progress) for i in ids))
        if not dry_run:
            await asyncio.to_thread(service.runner.write_registry)
        return list(results)

    try:
        summaries = asyncio.run(main())
    finally:
        progress.finish()
        service.close()
    for s in summaries:
        state_text = "ok" if s.ok else f"FAILED ({s.reason}): {s.error}"
        typer.echo(f"{s.source:<14} {s.periods:>4} periods {s.observations:>8} observations "
                   f"{s.rejections:>5} rejected  {state_text}{'  (dry run: nothing stored)' if dry_run else ''}")
        for reason, count in sorted(s.rejected_by_reason.items()):
            typer.echo(f"{'':<14} rejected {count} × {reason}")
        if dry_run:
            for line in dry_run_lines(s, config.tz, show):
                typer.echo(line)
    raise typer.Exit(0 if all(s.ok for s in summaries) else 1)


@app.command()
def evaluate(
    as_of: Annotated[str | None, typer.Option(help="Date (YYYY-MM-DD, province's calendar); default now.")] = None,
    unit: Annotated[str | None, typer.Option(help="Unit code; default the province (root units).")] = None,
    window: Annotated[list[str] | None, typer.Option(help="Window(s), e.g. month, ytd, rolling_30d.")] = None,
    scope: Annotated[str, typer.Option(help="subtree (the unit and all below it) or self (its own data).")] = "subtree",
    rule: Annotated[str | None, typer.Option(help="Show this target rule for every unit it covers.")] = None,
    targets: Annotated[bool, typer.Option(help="Also evaluate the target rules (and store the results).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Compute KPIs and evaluate the target rules at a date; print the unit's figures.

    Every rule is evaluated for every unit it covers and stored (replacing that
    day's results), so past dates can be re-evaluated: --as-of 2020-12-31.
    """
    if scope not in ("subtree", "self"):
        raise _fail(f"--scope: write subtree or self, got: {scope!r}", 2)
    from monitor.targets.present import evaluation_json, evaluation_line, status_summary
    from monitor.windows import Window

    config = _load()
    service = _service(config)
    try:
        instant = datetime.now(UTC)
        if as_of:
            try:
                day = date.fromisoformat(as_of)
            except ValueError:
                raise _fail(f"--as-of: not a date (YYYY-MM-DD): {as_of!r}", 2) from None
            instant = datetime.combine(day, time(23, 59, 59), config.tz).astimezone(UTC)
        try:
            windows = [Window.parse(w) for w in (window or list(config.exporter.windows))]
        except ValueError as exc:
            raise _fail(f"--window: {exc}", 2) from None
        if unit is not None and unit not in service.units:
            raise _fail(f"--unit: no unit {unit!r} in {config.units.file}", 2)
        if rule is not None and service.rules.get(rule) is None:
            raise _fail(f"--rule: no rule {rule!r} (rules: {', '.join(r.id for r in service.rules)})", 2)
        day = instant.astimezone(config.tz).date()
        shown_units = [unit] if unit else [u.code for u in service.units.valid_on(day) if u.parent is None]
        values = service.kpis.compute(instant, windows, units=shown_units, scope=scope)
        evaluations = service.evaluate_and_store(service.rules, instant) if targets else []
    finally:
        service.close()
    if not values:
        typer.echo(f"no KPI values for {', '.join(shown_units) or 'any unit'}: nothing is stored for these "
                   "windows yet (run `egovmon collect` first, or pick another --as-of)", err=True)
    for v in values:
        if as_json:
            typer.echo(json.dumps({"type": "kpi", "kpi": v.kpi, "unit": v.unit, "window": v.window,
                                   "value": v.value, "numerator": v.numerator, "denominator": v.denominator,
                                   "units_reporting": v.units_reporting}, ensure_ascii=False))
        else:
            shown = "   no data" if v.value is None else f"{100 * v.value:9.2f}%"
            typer.echo(f"{v.unit:<15} {v.window:<12} {v.kpi:<45} {shown}  "
                       f"({v.numerator:g}/{v.denominator:g}, {v.units_reporting} units)")
    picked = [e for e in evaluations if (e.rule == rule if rule else e.unit in shown_units)]
    if as_json:
        for e in picked:
            typer.echo(json.dumps(evaluation_json(e), ensure_ascii=False))
        return
    if evaluations:
        typer.echo(f"\ntargets as of {day} ({len(evaluations)} evaluations of {len(service.rules)} rules, stored):")
        for line in status_summary(evaluations):
            typer.echo(f"  {line}")
        typer.echo("")
        for e in picked:
            typer.echo(evaluation_line(e))
    elif targets:
        typer.echo(f"no target rule applies on {day}", err=True)


@config_app.command("check")
def config_check() -> None:
    """Validate the config, the units file and the catalog; report every problem."""
    from monitor.catalog import load_catalog
    from monitor.units import load_units

    config = _load()
    problems: list[str] = []
    counts = {}
    try:
        counts["units"] = len(load_units(config.units.file).codes)
    except ConfigError as exc:
        problems.append(str(exc))
    try:
        counts["kpis"] = len(load_catalog(config.catalog.file).kpis)
    except ConfigError as exc:
        problems.append(str(exc))
    if problems:
        raise _fail("configuration is not valid:\n" + "\n".join(problems), 2)
    typer.echo(f"{state.config_path}: ok — {len(config.sources)} sources, {counts['units']} units, "
               f"{counts['kpis']} KPIs")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision."""
    from monitor.storage import create_engine_for, upgrade_database

    config = _load()
    engine = create_engine_for(config.database.url)
    try:
        revision = upgrade_database(engine)
    finally:
        engine.dispose()
    typer.echo(f"database at revision {revision}")


def main() -> None:
    tune_gc()
    app()
