"""``chaoskit audit``: the seed document's manual ledger audit (phase 7, week 3) as one command.

Steps, all inside one REPEATABLE READ, READ ONLY transaction so every number describes the same
instant: full export (CSV + manifest), the balance equation to the cent per currency and per
transaction, event coverage (100% required), PnL recomputation, orphan detection in both
directions, the named invariants, then a discrepancy report (JSON and readable lines).

The SQL is config (``AuditParams``; ``preset: reference`` fills in the reference schema's), so a
team points the same audit at its own ledger with ``--config``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chaoskit.checkers import events as ev
from chaoskit.checkers import invariants as inv
from chaoskit.checkers.export import export_tables
from chaoskit.checkers.result import MAX_EXAMPLES, CheckResult, finding, jsonable
from chaoskit.checkers.sqlutil import connect, consistent_read, ident, run_sql, run_tasks


class BalanceSpec(BaseModel):
    """Where the double-entry lines are."""

    model_config = ConfigDict(extra="forbid")
    table: str = "entries"
    amount: str = "amount_cents"
    currency: str = "currency"
    txn: str = "txn_id"


class AuditParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dsn: str
    preset: Literal["reference"] | None = "reference"
    export: list[str] = Field(default_factory=list)
    balance: BalanceSpec | None = None
    invariants: list[inv.Invariant] = Field(default_factory=list)
    invariants_file: str | None = None
    events: ev.EventsSpec | None = None
    pnl: list[ev.Projection] = Field(default_factory=list)
    parallel: int = Field(2, ge=1, le=16, description="connections sharing one snapshot")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset", "reference") != "reference":
            return data
        from chaoskit.checkers import presets

        merged: dict[str, Any] = {"export": presets.EXPORT_TABLES, "balance": {},
                                  "events": presets.EVENTS, "pnl": presets.PNL}
        if "invariants" not in data and "invariants_file" not in data:
            merged["invariants"] = presets.AUDIT_INVARIANTS
        merged.update(data)
        return merged


def _balances(conn: Any, b: BalanceSpec) -> tuple[CheckResult, dict[str, Any]]:
    t, amt, cur, txn = ident(b.table), ident(b.amount), ident(b.currency), ident(b.txn)
    _, per_cur = run_sql(conn, f"select {cur}::text, sum({amt}), count(*), "
                               f"count(distinct {txn}) from {t} group by 1 order by 1",
                         what="balance per currency")
    _, bad_txn = run_sql(conn, f"select {txn}::text, {cur}::text, sum({amt}), count(*) from {t} "
                               f"group by 1, 2 having sum({amt}) <> 0 order by 1",
                         what="balance per transaction")
    currencies = {c: {"sum_cents": int(s), "lines": n, "transactions": nt}
                  for c, s, n, nt in per_cur}
    res = CheckResult()
    off = {c: v["sum_cents"] for c, v in currencies.items() if v["sum_cents"] != 0}
    res.add(finding("audit", "balance_per_currency", not off,
                    "every currency sums to 0" if not off else
                    "; ".join(f"{c} is off by {s} cents" for c, s in off.items()),
                    currencies=currencies))
    res.add(finding("audit", "balance_per_transaction", not bad_txn,
                    f"{len(bad_txn)} transactions do not sum to 0", count=len(bad_txn),
                    examples=[{"txn": x, "currency": c, "sum_cents": int(s), "lines": n}
                              for x, c, s, n in bad_txn[:MAX_EXAMPLES]]))
    return res, currencies


def run_audit(params: AuditParams, out_dir: Path | None = None,
              base_dir: Path | None = None) -> tuple[CheckResult, dict[str, Any]]:
    """Returns the verdict and the full report (JSON-able)."""
    t0 = time.monotonic()
    res = CheckResult()
    invariants = list(params.invariants)
    if params.invariants_file:
        p = Path(params.invariants_file)
        invariants += inv.load_invariants_file(p if p.is_absolute() else (base_dir or Path.cwd()) / p)
    report: dict[str, Any] = {"chaoskit_audit": 1}
    with connect(params.dsn) as conn, consistent_read(conn):
        if out_dir is not None and params.export:
            report["export"] = {"dir": str(out_dir),
                                "tables": export_tables(conn, params.export, out_dir)}
        if params.balance is not None:
            r, currencies = _balances(conn, params.balance)
            res.extend(r)
            report["balances"] = currencies
        from chaoskit.checkers.ledger import check_tasks

        for r in run_tasks(conn, params.dsn, check_tasks(invariants, params.events, params.pnl),
                           params.parallel):
            res.extend(r)
    report["ok"] = res.ok
    report["discrepancies"] = res.failures
    report["checks"] = res.findings
    report["seconds"] = round(time.monotonic() - t0, 3)
    return res, jsonable(report)


def summary_lines(res: CheckResult, report: dict[str, Any]) -> list[str]:
    lines = [f"ledger audit: {'PASS' if res.ok else 'FAIL'} - {len(res.failures)} discrepancies "
             f"in {len(res.findings)} checks"]
    for c, v in (report.get("balances") or {}).items():
        lines.append(f"  balance {c}: {v['sum_cents']} cents over {v['lines']} lines, "
                     f"{v['transactions']} transactions")
    for f in res.findings:
        if f["check"] == "events" and "percent" in f:
            lines.append(f"  coverage {f['message']}")
    if "export" in report:
        n = sum(t["rows"] for t in report["export"]["tables"].values())
        lines.append(f"  exported {len(report['export']['tables'])} tables, {n} rows, "
                     f"to {report['export']['dir']}")
    lines += [ln for ln in res.summary()[1:] if ln.lstrip().startswith("FAIL")]
    return lines


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
