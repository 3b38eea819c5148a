"""``egovmon rules check|test|export-prometheus``: tooling for rule files, like promtool's.

Without a configuration file these work on the packs shipped in ``rules/`` (unit
codes and groups are then not checked, since there is no unit tree to check them
against); with one, on the rules and indices it configures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from monitor.catalog import Catalog, load_catalog
from monitor.cli_common import fail, state
from monitor.errors import ConfigError
from monitor.units import UnitTree

rules_app = typer.Typer(help="Target rule files: check, test, export to Prometheus.", no_args_is_help=True)

SHIPPED_TESTS = "tests"
SHIPPED_EXAMPLES = ("national", "provincial")


@dataclass
class _Context:
    rule_paths: list[Path]
    index_paths: list[Path]
    catalog: Catalog
    units: UnitTree | None  # None: no configuration, nothing to check codes against
    where: str


def _context(paths: list[Path] | None, indices: list[Path] | None) -> _Context:
    from monitor.config import load_config
    from monitor.scoring import SHIPPED_INDICES_DIR
    from monitor.targets.loader import SHIPPED_RULES_DIR, configured_rule_paths
    from monitor.units import load_units

    config = None
    if state.config_path.exists():
        try:
            config = load_config(state.config_path)
        except ConfigError as exc:
            raise fail(f"configuration is not valid:\n{exc}", 2) from None
    units = None
    catalog_file = None
    if config is not None:
        catalog_file = config.catalog.file
        try:
            units = load_units(config.units.file)
        except ConfigError as exc:
            raise fail(f"units file is not valid:\n{exc}", 2) from None
    try:
        catalog = load_catalog(catalog_file)
    except ConfigError as exc:
        raise fail(f"KPI catalog is not valid:\n{exc}", 2) from None
    if paths:
        rule_paths = list(paths)
        index_paths = list(indices or [])
        where = "the given files"
    elif config is not None:
        try:
            rule_paths = configured_rule_paths(config.rules.shipped, config.rules.files)
        except ConfigError as exc:
            raise fail(str(exc), 2) from None
        index_paths = list(indices or (config.rules.indices if config.rules.indices is not None
                                       else [SHIPPED_INDICES_DIR]))
        where = f"the rules configured in {state.config_path}"
    else:
        rule_paths = [SHIPPED_RULES_DIR / name for name in SHIPPED_EXAMPLES]
        index_paths = list(indices or [SHIPPED_INDICES_DIR])
        where = "the shipped packs (no configuration: unit codes and groups not checked)"
    return _Context(rule_paths, index_paths, catalog, units, where)


@rules_app.command("check")
def check(
    paths: Annotated[list[Path] | None, typer.Argument(help="Rule files or folders; default: as configured.")] = None,
    indices: Annotated[list[Path] | None, typer.Option(help="Index files or folders to check too.")] = None,
) -> None:
    """Validate rule and index files; print every problem as file:line: field: message."""
    from monitor.scoring import SHIPPED_INDICES_DIR, load_indices
    from monitor.targets.loader import expand_rule_paths, load_rules

    ctx = _context(paths, indices)
    problems = []
    count_rules = count_indices = 0
    try:
        count_rules = len(load_rules(ctx.rule_paths, ctx.catalog, ctx.units))
    except ConfigError as exc:
        problems.append(str(exc))
    if ctx.index_paths:
        try:
            count_indices = len(load_indices(ctx.index_paths, ctx.catalog, ctx.units,
                                             shipped=ctx.index_paths == [SHIPPED_INDICES_DIR]))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise fail("rule files are not valid:\n" + "\n".join(problems), 2)
    files = len(expand_rule_paths(ctx.rule_paths))
    typer.echo(f"ok: {count_rules} rules in {files} files, {count_indices} indices ({ctx.where})")


@rules_app.command("test")
def test(
    paths: Annotated[list[Path] | None, typer.Argument(help="Test files or folders; default: rules/tests.")] = None,
) -> None:
    """Run rule unit tests: input series, evaluation dates, expected status / gap / forecast."""
    from monitor.targets.loader import SHIPPED_RULES_DIR, expand_rule_paths
    from monitor.targets.testing import run_test_files

    files = expand_rule_paths(paths or [SHIPPED_RULES_DIR / SHIPPED_TESTS])
    if not files:
        raise fail(f"no test files in {', '.join(str(p) for p in paths or [SHIPPED_RULES_DIR / SHIPPED_TESTS])}", 2)

    def show(file: str, name: str, ok: bool) -> None:
        typer.echo(f"{'ok  ' if ok else 'FAIL'} {Path(file).name}: {name}")

    try:
        report = run_test_files(files, load_catalog(None), on_test=show)
    except ConfigError as exc:
        raise fail(f"test files are not valid:\n{exc}", 2) from None
    for failure in report.failures or []:
        typer.echo(f"  {failure}", err=True)
    summary = (f"{report.tests} tests, {report.checks} checks in {report.files} files: "
               f"{len(report.failures or [])} failed")
    typer.echo(summary)
    raise typer.Exit(0 if report.ok else 1)


@rules_app.command("export-prometheus")
def export_prometheus(
    paths: Annotated[list[Path] | None, typer.Argument(help="Rule files or folders; default: as configured.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
) -> None:
    """Prometheus recording and alerting rules equivalent to the target rules."""
    from monitor.targets.loader import load_rules
    from monitor.targets.prometheus import render_prometheus_rules

    ctx = _context(paths, [])
    try:
        rules = load_rules(ctx.rule_paths, ctx.catalog, ctx.units)
    except ConfigError as exc:
        raise fail(f"rule files are not valid:\n{exc}", 2) from None
    text = render_prometheus_rules(rules, ctx.catalog)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {len(rules)} rules' Prometheus rules to {output}", err=True)
