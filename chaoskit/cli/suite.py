"""suite and gauntlet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from chaoskit.cli.core import _fail_invalid, var_file_option, var_option
from chaoskit.errors import ExperimentError


def _summary_table(result, console) -> None:
    from rich.table import Table

    t = Table(title=f"suite {result.name}: {sum(c.passed for c in result.cases)}/{len(result.cases)} passed")
    t.add_column("#", justify="right")
    t.add_column("experiment")
    t.add_column("verdict")
    t.add_column("s", justify="right")
    t.add_column("why")
    for i, c in enumerate(result.cases, 1):
        color = "green" if c.passed else "red"
        t.add_row(str(i), c.title, f"[{color}]{'passed' if c.passed else c.status}[/]", f"{c.duration:.1f}",
                  "; ".join(c.reasons)[:120])
    console.print(t)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@var_option
@var_file_option
@click.option("--fail-fast", is_flag=True, help="stop at the first experiment that does not pass")
@click.option("--junit", "junit", type=click.Path(), help="write JUnit XML here")
@click.option("--reports-dir", default="reports", type=click.Path(), show_default=True)
@click.option("--name", default=None, help="suite name (default: the first path's name)")
@click.option("--seed", type=int, help="one seed for every experiment")
@click.option("--tag", "tags", multiple=True, help="only experiments with this tag")
@click.option("--quiet", "-q", is_flag=True)
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def suite(paths, var, var_file, fail_fast, junit, reports_dir, name, seed, tags, quiet, output) -> None:
    """Run many experiments in order: summary table, one journal each, a suite journal, JUnit."""
    from rich.console import Console

    from chaoskit.experiment.load import parse_overrides
    from chaoskit.suite import run_suite, write_junit
    from chaoskit.ui import ConsoleUI, QuietUI

    try:
        overrides = parse_overrides(var)
        result = run_suite(
            list(paths),
            name=name or Path(paths[0]).resolve().name,
            reports_dir=Path(reports_dir),
            overrides=overrides,
            var_files=[Path(p) for p in var_file],
            seed=seed,
            fail_fast=fail_fast,
            tags=list(tags),
            ui=QuietUI() if quiet or output == "json" else ConsoleUI(),
        )
    except ExperimentError as exc:
        _fail_invalid(exc)
    if junit:
        write_junit(result, Path(junit))
    if output == "json":
        click.echo(json.dumps({"suite": str(result.journal), "ok": result.ok,
                               "cases": [c.__dict__ for c in result.cases]}))
    else:
        _summary_table(result, Console(stderr=True))
        click.echo(f"suite journal: {result.journal}" + (f"; junit: {junit}" if junit else ""), err=True)
    sys.exit(result.exit_code)


@click.command()
@click.argument("config", required=False, type=click.Path(), default="experiments/gauntlet/phase7.yaml")
@var_option
@click.option("--soak-duration", help="override the soak gate's duration, e.g. 5m or 72h")
@click.option("--up", is_flag=True, help="bring the stack up first")
@click.option("--reports-dir", default="reports", type=click.Path(), show_default=True)
@click.option("--quiet", "-q", is_flag=True)
def gauntlet(config, var, soak_duration, up, reports_dir, quiet) -> None:
    """Soak -> chaos suite -> audit; stop at the first failing gate; a report per gate and a final one."""
    from rich.console import Console
    from rich.table import Table

    from chaoskit.experiment.load import parse_overrides
    from chaoskit.gauntlet import PROTOCOL, run_gauntlet
    from chaoskit.ui import ConsoleUI, QuietUI
    from chaoskit.units import parse_duration

    try:
        dur = parse_duration(soak_duration) if soak_duration else None
    except ValueError as exc:
        click.echo(f"error: --soak-duration: {exc}", err=True)
        sys.exit(2)
    try:
        result = run_gauntlet(Path(config), overrides=parse_overrides(var), soak_duration=dur,
                              reports_dir=Path(reports_dir), up=up, ui=QuietUI() if quiet else ConsoleUI())
    except ExperimentError as exc:
        _fail_invalid(exc)
    console = Console(stderr=True)
    t = Table(title=f"{result.title}: {'PASSED' if result.ok else 'FAILED'}")
    for col in ("gate", "verdict", "s", "why"):
        t.add_column(col)
    for g in result.gates:
        color = {"passed": "green", "skipped": "dim"}.get(g.verdict, "red")
        t.add_row(g.name, f"[{color}]{g.verdict}[/]", f"{g.seconds:.1f}", "; ".join(g.reasons)[:160])
    console.print(t)
    if not result.ok:
        console.print(PROTOCOL)
    click.echo(f"gauntlet report: {result.json_path}" + (f", {result.html_path}" if result.html_path else ""), err=True)
    sys.exit(result.exit_code)
