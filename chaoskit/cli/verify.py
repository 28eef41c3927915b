"""``chaoskit snapshot``, ``chaoskit verify`` and ``chaoskit audit``: the ledger checks of an
experiment's ``verify.ledger`` block, runnable on their own (before/after a manual test, in CI,
or as the weekly audit). Exit codes: 0 pass, 1 a discrepancy was found, 2 bad input or the
ledger could not be examined (one line on stderr, never a traceback)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click


def _die(cmd: str, msg: str) -> NoReturn:
    click.echo(f"chaoskit {cmd}: {msg}", err=True)
    sys.exit(2)


def _pydantic_line(exc: Any) -> str:
    errs = exc.errors()
    e = errs[0]
    loc = ".".join(str(p) for p in e.get("loc", ())) or "(top level)"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {e.get('msg')}{more}"


def _guard(cmd: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Every expected failure becomes one line and exit 2."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            from pydantic import ValidationError

            from chaoskit.errors import ChaoskitError

            try:
                return fn(*a, **kw)
            except ValidationError as exc:
                _die(cmd, _pydantic_line(exc))
            except ChaoskitError as exc:
                _die(cmd, str(exc).replace("\n", "; "))
            except OSError as exc:
                _die(cmd, f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))

        return wrapper

    return deco


def _load_yaml(path: str, cmd: str) -> Any:
    import yaml

    from chaoskit.experiment.subst import SubstError, substitute

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        _die(cmd, f"cannot read {path}: {exc.strerror}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        _die(cmd, f"{path}{where}: not valid YAML")
    errs: list[SubstError] = []
    data = substitute(data, {}, None, (), errs)
    if errs:
        _die(cmd, f"{path}: {'.'.join(map(str, errs[0].path))}: {errs[0].message}")
    return data


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


# ---------------------------------------------------------------- snapshot


@click.command("snapshot")
@click.option("--dsn", required=True, envvar="CHAOSKIT_LEDGER_DSN", help="PostgreSQL DSN.")
@click.option("--tables", "-t", multiple=True, required=True, help="Tables, comma-separated or repeated.")
@click.option("--key", multiple=True, help="TABLE=COL[,COL]: key when it is not the primary key.")
@click.option("--exclude", multiple=True, help="Volatile columns: COLUMN (every table) or TABLE.COLUMN.")
@click.option("--buckets", type=int, help="Buckets per table (power of two; default grows with size).")
@click.option("--parallel", "-j", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Connections reading big tables at once (one shared snapshot).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Snapshot file.")
@_guard("snapshot")
def snapshot(dsn: str, tables: tuple[str, ...], key: tuple[str, ...], exclude: tuple[str, ...],
             buckets: int | None, parallel: int, output: str) -> None:
    """Fingerprint ledger tables (row counts and bucketed hashes, computed in PostgreSQL)."""
    from chaoskit.checkers import snapshot as snap
    from chaoskit.checkers.sqlutil import connect, consistent_read

    keys: dict[str, list[str]] = {}
    for k in key:
        t, sep, cols = k.partition("=")
        if not sep or not cols:
            _die("snapshot", f"--key {k!r}: expected TABLE=COL[,COL]")
        keys[t] = _split((cols,))
    excl: dict[str, list[str]] = {}
    for e in _split(exclude):
        t, dot, c = e.rpartition(".")
        excl.setdefault(t if dot else "*", []).append(c)
    spec = snap.SnapshotSpec(tables=_split(tables), key=keys, exclude=excl, buckets=buckets)
    with connect(dsn) as conn, consistent_read(conn):
        s = snap.take_snapshot(conn, spec, dsn=dsn, parallel=parallel)
    snap.save_snapshot(s, output)
    for t, d in snap.summary(s).items():
        click.echo(f"{t}: {d['rows']} rows, fingerprint {d['fingerprint']}, {d['buckets']} buckets")
    click.echo(f"wrote {output}")


# ---------------------------------------------------------------- verify


def _ledger_block(data: Any, source: str) -> dict[str, Any]:
    """--config accepts the block itself, {ledger: ...} or {verify: {ledger: ...}}."""
    if isinstance(data, dict) and isinstance(data.get("verify"), dict):
        data = data["verify"]
    if isinstance(data, dict) and isinstance(data.get("ledger"), dict):
        data = data["ledger"]
    if not isinstance(data, dict):
        _die("verify", f"{source}: expected a mapping with the verify.ledger keys (dsn, invariants, ...)")
    return data


@click.command("verify")
@click.argument("experiment", required=False, type=click.Path(dir_okay=False))
@click.option("--config", type=click.Path(dir_okay=False), help="YAML with the verify.ledger block.")
@click.option("--dsn", help="Override the block's DSN.")
@click.option("--before", "before_path", type=click.Path(dir_okay=False), help="Snapshot taken before.")
@click.option("--history", "history_path", type=click.Path(dir_okay=False), help="Workload history (JSON lines).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the result as JSON.")
@click.option("--var", "vars_", multiple=True, help="NAME=VALUE for the experiment's vars.")
@_guard("verify")
def verify(experiment: str | None, config: str | None, dsn: str | None, before_path: str | None,
           history_path: str | None, json_out: str | None, vars_: tuple[str, ...]) -> None:
    """Run ledger verification: invariants, snapshot diff, history check, event sourcing."""
    from chaoskit.checkers import snapshot as snap
    from chaoskit.checkers.ledger import LedgerChecker, LedgerParams
    from chaoskit.runner.context import RunContext

    if (experiment is None) == (config is None):
        _die("verify", "give either an EXPERIMENT file or --config FILE (not both)")
    if experiment is not None:
        from chaoskit.experiment.load import load_experiment, parse_overrides

        exp = load_experiment(experiment, overrides=parse_overrides(list(vars_)))
        found = [p for name, _, p in exp.verify if name == "ledger"]
        if not found:
            _die("verify", f"{experiment}: the experiment has no verify.ledger block")
        params = found[0]
        base = exp.base_dir
        if dsn:
            params = params.model_copy(update={"dsn": dsn})
    else:
        assert config is not None
        block = _ledger_block(_load_yaml(config, "verify"), config)
        if dsn:
            block["dsn"] = dsn
        if "dsn" not in block:
            _die("verify", f"{config}: no dsn (set it in the file or pass --dsn)")
        base = Path(config).resolve().parent
        if isinstance(block.get("invariants_file"), str) and not Path(block["invariants_file"]).is_absolute():
            block["invariants_file"] = str(base / block["invariants_file"])
        params = LedgerParams.model_validate(block)
    ctx = RunContext(run_id="verify", seed=0, base_dir=base)
    checker = LedgerChecker(params, ctx)
    if before_path:
        if params.snapshot is None:
            _die("verify", "--before needs a snapshot block (snapshot: {tables: [...]}) in the config")
        checker.use_before_snapshot(snap.load_snapshot(before_path))
    result = checker.verify(Path(history_path) if history_path else None)
    for line in result.summary():
        click.echo(line)
    if json_out:
        Path(json_out).write_text(json.dumps(ctx.redactor(result.to_json()), indent=2))
    sys.exit(0 if result.ok else 1)


# ---------------------------------------------------------------- audit


@click.command("audit")
@click.option("--dsn", envvar="CHAOSKIT_LEDGER_DSN", help="PostgreSQL DSN of the ledger.")
@click.option("--config", type=click.Path(dir_okay=False),
              help="YAML overriding the audit (balance, invariants, events, pnl, export).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Directory for the CSV export and the report (default reports/audit-<time>).")
@click.option("--no-export", is_flag=True, help="Skip the CSV export.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Report path (default OUT/audit.json).")
@_guard("audit")
def audit(dsn: str | None, config: str | None, out_dir: str | None, no_export: bool,
          json_out: str | None) -> None:
    """The full manual ledger audit: export, balance to the cent, coverage, PnL, orphans."""
    from datetime import UTC, datetime

    from chaoskit.checkers.audit import AuditParams, run_audit, summary_lines, write_report
    from chaoskit.secrets import Redactor

    block: dict[str, Any] = {}
    base = Path.cwd()
    if config:
        data = _load_yaml(config, "audit")
        if isinstance(data, dict) and isinstance(data.get("audit"), dict):
            data = data["audit"]
        if not isinstance(data, dict):
            _die("audit", f"{config}: expected a mapping (dsn, balance, invariants, events, pnl, export)")
        block = data
        base = Path(config).resolve().parent
    if dsn:
        block["dsn"] = dsn
    if not block.get("dsn"):
        _die("audit", "no DSN: pass --dsn, set CHAOSKIT_LEDGER_DSN or put dsn in --config")
    params = AuditParams.model_validate(block)
    out = Path(out_dir) if out_dir else Path("reports") / (
        "audit-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    res, report = run_audit(params, None if no_export else out / "export", base_dir=base)
    redact = Redactor()
    report = redact(report)
    report_path = Path(json_out) if json_out else out / "audit.json"
    write_report(report, report_path)
    for line in summary_lines(res, report):
        click.echo(redact.text(line))
    click.echo(f"report: {report_path}")
    sys.exit(0 if res.ok else 1)
