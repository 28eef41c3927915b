"""``chaoskit soak`` (the continuous-monitoring gate) and ``chaoskit report`` (journals -> HTML).

Exit codes: 0 passed, 1 the gate failed (an alert of a fail_on severity fired), 2 bad input,
3 the target could not be reached, 128 + signal when interrupted (130 on Ctrl-C).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from chaoskit.errors import ChaoskitError, ExperimentError


def _bad(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


@click.command()
@click.argument("file", type=click.Path())
@click.option("--duration", "-d", help="how long to watch: 5m, 72h, 30s (default: the file's duration)")
@click.option("--out", "out", type=click.Path(file_okay=False), help="output directory (default reports/soak-<title>-<ts>)")
@click.option("--reports-dir", default="reports", type=click.Path(file_okay=False), show_default=True)
@click.option("--var", "var", multiple=True, metavar="KEY=VALUE", help="override a variable")
@click.option("--var-file", "var_file", multiple=True, type=click.Path(), help="YAML file of variables")
@click.option("--fail-on", "fail_on", help="comma-separated severities that fail the gate (default: the file's, critical)")
@click.option("--webhook", help="POST every alert as JSON to this URL (overrides the file's outputs.webhook.url)")
@click.option("--quiet", "-q", is_flag=True, help="only the final verdict line")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", help="json: result on stdout")
@click.option("--check", is_flag=True, help="validate the file and print the plan; probe nothing")
def soak(
    file: str,
    duration: str | None,
    out: str | None,
    reports_dir: str,
    var: tuple[str, ...],
    var_file: tuple[str, ...],
    fail_on: str | None,
    webhook: str | None,
    quiet: bool,
    output: str,
    check: bool,
) -> None:
    """Probe the stack on an interval for a duration; alert on rules; gate on severities."""
    from chaoskit.experiment.load import parse_overrides
    from chaoskit.soak import SEVERITIES, SoakConsole, default_out_dir, load_soak_config, run_soak
    from chaoskit.soak.config import WebhookSpec
    from chaoskit.ui import QuietUI
    from chaoskit.units import parse_duration

    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            _bad(f"--duration: {exc}")
        if not seconds or seconds <= 0:
            _bad("--duration must be positive")
    try:
        cfg = load_soak_config(file, parse_overrides(var), [Path(p) for p in var_file])
    except ExperimentError as exc:
        for p in exc.problems:
            click.echo(f"error: {p}", err=True)
        click.echo(f"{len(exc.problems)} problem(s) found", err=True)
        sys.exit(2)
    if fail_on is not None:
        sev = [s.strip() for s in fail_on.split(",") if s.strip()]
        unknown = [s for s in sev if s not in SEVERITIES]
        if unknown:
            _bad(f"--fail-on: unknown severity {', '.join(unknown)} (expected: {', '.join(SEVERITIES)})")
        cfg.spec.fail_on = sev  # type: ignore[assignment]
    if webhook is not None:
        if not webhook.startswith(("http://", "https://")):
            _bad("--webhook must be an http:// or https:// URL")
        old = cfg.spec.outputs.webhook
        cfg.spec.outputs.webhook = old.model_copy(update={"url": webhook}) if old else WebhookSpec(url=webhook)
    if seconds is None and cfg.spec.duration is None:
        _bad(f"{file}: no duration: give --duration (e.g. 5m, 72h) or duration: in the file")
    if check:
        for g, spec in cfg.spec.groups.items():
            names = ", ".join(p.name for p in cfg.group_probes(g))
            click.echo(f"group {g} every {spec.interval:g}s: {names}")
        for r in cfg.spec.alerts:
            click.echo(f"alert [{r.severity}] {r.name}: {r.probe} {json.dumps(r.when)}" + (f" for {r.for_:g}s" if r.for_ else ""))
        click.echo(f"ok: {file} ({len(cfg.probes)} probes, {len(cfg.spec.alerts)} rules, fail on {', '.join(cfg.spec.fail_on)})")
        sys.exit(0)
    out_dir = Path(out) if out else default_out_dir(cfg.title, reports_dir)
    ui = QuietUI() if quiet or output == "json" else SoakConsole()
    try:
        result = run_soak(cfg, seconds, out_dir, ui)
    except ExperimentError as exc:
        for p in exc.problems:
            click.echo(f"error: {p}", err=True)
        sys.exit(2)
    except ChaoskitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        _bad(f"{out_dir}: cannot write the soak output: {exc.strerror or exc}")
    if output == "json":
        click.echo(json.dumps({
            "verdict": result.verdict, "exit_code": result.exit_code, "alerts": len(result.alerts),
            "counts": result.report.get("counts"), "report": str(result.json_path),
            "html": str(result.report_path) if result.report_path else None, "alerts_file": str(result.alerts_path),
            "reasons": result.reasons,
        }))
    elif quiet:
        click.echo(f"soak {result.verdict} (exit {result.exit_code}): {result.json_path}", err=True)
    sys.exit(result.exit_code)


@click.command()
@click.argument("journals", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="HTML file to write")
@click.option("--title", help="page title (default: the run's title, or a count of runs)")
def report(journals: tuple[str, ...], out: str, title: str | None) -> None:
    """Render run journals (files or directories of them) and soak reports into one HTML file."""
    from chaoskit.report import ReportError, load_journals, render_report

    try:
        data = load_journals(list(journals))
        path = render_report(data, Path(out), title=title)
    except ReportError as exc:
        _bad(str(exc))
    except OSError as exc:
        _bad(f"{out}: cannot write: {exc.strerror or exc}")
    click.echo(f"report: {path} ({len(data)} run(s))")
