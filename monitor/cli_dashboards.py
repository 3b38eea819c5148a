"""`egovmon dashboards`: Grafana dashboards generated from the KPI catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

dashboards_app = typer.Typer(help="Grafana dashboards.", no_args_is_help=True)


@dashboards_app.command("build")
def build(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("dashboards"),
    lang: Annotated[str, typer.Option(help="Language of titles: vi or en.")] = "vi",
) -> None:
    """Write the dashboards (one folder per audience) and Grafana provisioning files."""
    from monitor.catalog import load_catalog
    from monitor.dashboards import write_dashboards

    if lang not in ("vi", "en"):
        typer.echo(f"--lang must be vi or en, not {lang!r}", err=True)
        raise typer.Exit(2)
    for path in write_dashboards(load_catalog(), out, lang):
        typer.echo(str(path))


@dashboards_app.command("push")
def push(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. http://grafana:3000.")],
    token_file: Annotated[Path | None, typer.Option(
        help="File holding a Grafana service-account token (default: env GRAFANA_TOKEN).")] = None,
    lang: Annotated[str, typer.Option(help="Language of titles: vi or en.")] = "vi",
    annotations: Annotated[bool, typer.Option(
        "--annotations/--no-annotations", help="Add target deadline / target change annotations.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each Grafana request.")] = 10.0,
) -> None:
    """Upsert the dashboards into Grafana (one folder per audience) and annotate target deadlines."""
    import asyncio
    import os

    from monitor.catalog import load_catalog
    from monitor.cli_common import fail
    from monitor.dashboards import build_dashboards
    from monitor.dashboards.push import PushError
    from monitor.dashboards.push import push as push_to
    from monitor.targets.model import TargetRule

    if lang not in ("vi", "en"):
        raise fail(f"--lang must be vi or en, not {lang!r}", 2)
    if not url.startswith(("http://", "https://")):
        raise fail(f"--url must start with http:// or https://, got: {url!r}", 2)
    if token_file is not None:
        try:
            token: str | None = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise fail(f"cannot read --token-file {token_file}: {exc.strerror}", 2) from None
    else:
        token = os.environ.get("GRAFANA_TOKEN") or None
    rules: list[TargetRule] = []
    if annotations:
        from monitor.cli_rules import _context
        from monitor.errors import ConfigError
        from monitor.targets.loader import load_rules

        ctx = _context(None, None)
        try:
            rules = list(load_rules(ctx.rule_paths, ctx.catalog, ctx.units))
        except ConfigError as exc:
            raise fail(f"target rules are not valid:\n{exc}", 2) from None
    try:
        report = asyncio.run(push_to(url, token, build_dashboards(load_catalog(), lang), rules, lang,
                                     annotations=annotations, request_timeout=timeout))
    except PushError as exc:
        raise fail(str(exc), 1) from None
    typer.echo(f"pushed {len(report.dashboards)} dashboards to {url} "
               f"({len(report.folders_created)} folders created)")
    if annotations:
        typer.echo(f"annotations: {report.annotations_added} added, {report.annotations_present} already present")
