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
