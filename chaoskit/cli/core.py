"""validate, run, list, schema, rollback, replay."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from chaoskit.errors import ExperimentError


def _fail_invalid(exc: ExperimentError) -> None:
    for p in exc.problems:
        click.echo(f"error: {p}", err=True)
    click.echo(f"{len(exc.problems)} problem(s) found", err=True)
    sys.exit(2)


def _load(path: str, var: tuple[str, ...], var_file: tuple[str, ...]):
    from chaoskit.experiment.load import load_experiment, parse_overrides

    try:
        return load_experiment(path, parse_overrides(var), [Path(p) for p in var_file])
    except ExperimentError as exc:
        _fail_invalid(exc)


var_option = click.option("--var", "var", multiple=True, metavar="KEY=VALUE", help="override a variable")
var_file_option = click.option(
    "--var-file", "var_file", multiple=True, type=click.Path(), help="YAML file of variables"
)


def _loader_for(path: str):
    """Experiments, soak files and gauntlet files all validate the same way."""
    from chaoskit.experiment.fast import file_kind

    kind = file_kind(path)
    if kind == "soak":
        from chaoskit.soak.config import load_soak_config

        return load_soak_config
    if kind == "gauntlet":
        from chaoskit.gauntlet import load_gauntlet

        return lambda f, overrides, var_files: load_gauntlet(Path(f), overrides)
    from chaoskit.experiment.load import load_experiment

    return load_experiment


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@var_option
@var_file_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def validate(files: tuple[str, ...], var: tuple[str, ...], var_file: tuple[str, ...], output: str) -> None:
    """Check experiment, soak and gauntlet files; every error with file:line and key.

    A file the fast path certainly accepts skips pydantic; any other goes to the full loader,
    the one authority on errors."""
    from chaoskit.experiment.document import parse_overrides
    from chaoskit.experiment.fast import certainly_valid

    problems = []
    ok = []
    try:
        overrides = parse_overrides(var)
    except ExperimentError as exc:
        _fail_invalid(exc)
    var_files = [Path(p) for p in var_file]
    for f in files:
        if certainly_valid(f, overrides, var_files):
            ok.append(f)
            continue
        try:
            _loader_for(f)(f, overrides, var_files)
            ok.append(f)
        except ExperimentError as exc:
            problems.extend(exc.problems)
    if output == "json":
        click.echo(json.dumps({"valid": ok, "problems": [p.__dict__ for p in problems]}, indent=2))
    else:
        for f in ok:
            click.echo(f"ok: {f}")
        for p in problems:
            click.echo(f"error: {p}", err=True)
    sys.exit(2 if problems else 0)


@click.command()
@click.argument("file", type=click.Path())
@var_option
@var_file_option
@click.option("--seed", type=int, help="make every random choice reproducible")
@click.option("--dry-run", is_flag=True, help="print what would be hit; touch nothing")
@click.option("--journal", "journal", type=click.Path(), help="journal path (default reports/<slug>-<ts>.json)")
@click.option("--reports-dir", default="reports", type=click.Path(), show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="no progress output")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", help="json: outcome on stdout")
def run(
    file: str,
    var: tuple[str, ...],
    var_file: tuple[str, ...],
    seed: int | None,
    dry_run: bool,
    journal: str | None,
    reports_dir: str,
    quiet: bool,
    output: str,
) -> None:
    """Run one experiment against its target."""
    exp = _load(file, var, var_file)
    outcome = _run(exp, seed=seed, dry_run=dry_run, journal=journal, reports_dir=reports_dir, quiet=quiet or output == "json")
    if output == "json":
        click.echo(json.dumps(outcome.as_dict()))
    sys.exit(outcome.exit_code)


def _run(exp, *, seed=None, dry_run=False, journal=None, reports_dir="reports", quiet=False, replay=None):
    from chaoskit.runner.run import RunOptions, run_experiment
    from chaoskit.ui import ConsoleUI, QuietUI

    opts = RunOptions(
        seed=seed,
        journal_path=Path(journal) if journal else None,
        reports_dir=Path(reports_dir),
        dry_run=dry_run,
        replay=replay,
    )
    return run_experiment(exp, opts, QuietUI() if quiet else ConsoleUI())


@click.command("list")
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def list_(output: str) -> None:
    """List faults, probes, expectations, triggers and checkers."""
    from chaoskit import registry

    kinds = {
        "faults": registry.faults,
        "probes": registry.probes,
        "expectations": registry.expectations,
        "triggers": registry.triggers,
        "checkers": registry.checkers,
    }
    data: dict[str, dict[str, str]] = {}
    for kind, reg in kinds.items():
        data[kind] = {}
        for name, obj in reg.items():
            doc = getattr(obj, "summary", "") or (obj.__doc__ or "").strip().splitlines()[0:1]
            data[kind][name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    for kind, items in data.items():
        click.echo(f"{kind}:")
        for name, doc in items.items():
            click.echo(f"  {name:<22} {doc}")


@click.command()
@click.option("-o", "--out", type=click.Path(), help="write to a file instead of stdout")
@click.option("--validator", is_flag=True,
              help="the fast validator's IR instead (ships as chaoskit/schema/validate.json)")
def schema(out: str | None, validator: bool) -> None:
    """Print the JSON Schema of the experiment format (for editors)."""
    if validator:
        from chaoskit.experiment.fastir import dumps, validator_ir

        text = dumps(validator_ir()).rstrip("\n")
    else:
        from chaoskit.experiment.schema import experiment_schema

        text = json.dumps(experiment_schema(), indent=2)
    if out:
        Path(out).write_text(text + "\n")
    else:
        click.echo(text)


@click.command()
@click.argument("run_id", required=False)
@click.option("--all", "all_", is_flag=True, help="every run with faults left in the ledger")
@click.option("--sweep", is_flag=True, help="also remove chaoskit-marked leftovers no ledger lists")
@click.option("--state-dir", type=click.Path(), help="fault ledger location")
@click.option("--list", "list_only", is_flag=True, help="only show what would be reverted")
def rollback(run_id: str | None, all_: bool, sweep: bool, state_dir: str | None, list_only: bool) -> None:
    """Revert faults a dead runner left behind (from the on-disk fault ledger)."""
    from chaoskit.runner.context import default_state_dir
    from chaoskit.runner.ledger import pending_runs
    from chaoskit.runner.rollback import rollback as do_rollback
    from chaoskit.runner.rollback import sweep as do_sweep

    sd = Path(state_dir) if state_dir else default_state_dir()
    if not run_id and not all_ and not list_only:
        click.echo("give a RUN_ID or --all (or --list to see what is pending)", err=True)
        sys.exit(2)
    if list_only:
        for rid, entries in pending_runs(sd).items():
            for e in entries:
                click.echo(f"{rid} {e.get('fault')} {[i.get('name') for i in e.get('instances', [])]}")
        return
    report = do_rollback(sd, None if all_ else run_id, log=lambda s: click.echo(s, err=True))
    if sweep:
        do_sweep(log=lambda s: click.echo(s, err=True))
    click.echo(f"reverted {report['reverted']}, failed {report['failed']}")
    sys.exit(1 if report["failed"] else 0)


@click.command()
@click.argument("journal", type=click.Path(exists=True))
@click.option("--journal-out", "journal_out", type=click.Path(), help="journal path of the replay")
@click.option("--reports-dir", default="reports", type=click.Path())
@click.option("--quiet", "-q", is_flag=True)
def replay(journal: str, journal_out: str | None, reports_dir: str, quiet: bool) -> None:
    """Re-run a journal's experiment: same seed, same instances, same fault schedule."""
    from chaoskit.runner.replay import compare, replay_plan

    try:
        data = json.loads(Path(journal).read_text())
    except (OSError, ValueError) as exc:
        click.echo(f"error: {journal}: not a readable journal ({exc})", err=True)
        sys.exit(2)
    src = data.get("experiment_file")
    if not src or not Path(src).exists():
        click.echo(f"error: {journal}: experiment file {src!r} not found", err=True)
        sys.exit(2)
    overrides = {k: str(v) for k, v in (data.get("overrides") or {}).items()}
    exp = _load(src, tuple(f"{k}={v}" for k, v in overrides.items()), ())
    plan = replay_plan(data)
    outcome = _run(exp, seed=data.get("seed"), journal=journal_out, reports_dir=reports_dir, quiet=quiet, replay=plan)
    new = json.loads(Path(outcome.journal).read_text())
    click.echo(compare(data, new))
    sys.exit(outcome.exit_code)
