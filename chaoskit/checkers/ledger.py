"""The ``ledger`` checker: the ``verify: {ledger: {...}}`` block of an experiment.

Interface the runner calls::

    from chaoskit.checkers.ledger import LedgerChecker, LedgerParams
    params = LedgerParams.model_validate(block)      # pydantic, extra=forbid
    checker = LedgerChecker(params, ctx)             # or registry.checkers.get("ledger")
    summary = checker.before()      # before the workload starts: snapshot + ids already present
    result = checker.verify(history_path)            # after recovery -> CheckResult
    result.ok, result.findings, result.to_json(), result.summary()

Block keys (all optional except ``dsn``; ``preset: reference`` fills in the reference stack's
snapshot tables, event links, projections, PnL and history mapping, each overridable)::

    dsn: postgresql://...
    preset: reference
    snapshot: {tables: [...], key: {t: [cols]}, exclude: {t: [cols]} | [cols], buckets: 4096,
               append_only: [entries, events], unchanged: [accounts]}
    invariants: [{name, query, equals: 0 | range: [lo, hi] | zero_rows: true | expect: {...}}]
    invariants_file: compose/ledger/invariants.sql     # '-- name:' blocks, zero rows = pass
    history:                                           # one spec or a list
      {table: trades, id_column: client_order_id, op: open, where: ...}   # set-based, all ids at once
      {present_once: "select count(*) from trades where client_order_id = %(id)s"}  # per id (naive)
      bounds: [{name, op, field: amount_cents, query: "select sum(...)"}]
    events: {table, aggregate, version, links: [...], projections: [...], coverage: [...]}
    pnl: [{name, key, rebuilt, stored}]                # projections compared exactly

All reads of one verification happen in one REPEATABLE READ, READ ONLY transaction. A checker
never prints: findings carry the defect class, counts and the first offending ids or rows, and a
compact summary of them goes to the journal as a ``ledger.verify`` event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chaoskit.checkers import events as ev
from chaoskit.checkers import history as hist
from chaoskit.checkers import invariants as inv
from chaoskit.checkers import snapshot as snap
from chaoskit.checkers.result import CheckResult, finding
from chaoskit.checkers.sqlutil import (
    CheckerError,
    connect,
    consistent_read,
    exact,
    run_sql,
    run_tasks,
)

if TYPE_CHECKING:
    from chaoskit.runner.context import RunContext


class LedgerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dsn: str
    preset: Literal["reference"] | None = None
    snapshot: snap.SnapshotSpec | None = None
    invariants: list[inv.Invariant] = Field(default_factory=list)
    invariants_file: str | None = None
    history: list[hist.HistorySpec] = Field(default_factory=list)
    events: ev.EventsSpec | None = None
    pnl: list[ev.Projection] = Field(default_factory=list)
    parallel: int = Field(2, ge=1, le=16, description="connections sharing one snapshot for the checks")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") == "reference":
            from chaoskit.checkers import presets

            base = data.get("_base_dir")
            merged = presets.reference(Path(base) if base else None)
            if "invariants" in data or "invariants_file" in data:
                merged.pop("invariants", None)
                merged.pop("invariants_file", None)
            merged.update({k: v for k, v in data.items() if k != "_base_dir"})
            return merged
        if isinstance(data, dict) and "_base_dir" in data:
            data = {k: v for k, v in data.items() if k != "_base_dir"}
        return data

    @field_validator("history", "pnl", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v

    @field_validator("invariants")
    @classmethod
    def _unique(cls, v: list[inv.Invariant]) -> list[inv.Invariant]:
        names = [i.name for i in v]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"duplicate invariant names {dups}")
        return v


class LedgerChecker:
    """Ledger invariants, snapshot diff, history check, event sourcing and PnL, in one snapshot."""

    name = "ledger"
    summary = "snapshot diff, invariants, history (lost/duplicate/phantom/zombie), event sourcing, PnL"
    Params = LedgerParams

    def __init__(self, params: LedgerParams, ctx: RunContext | None = None):
        self.params = params
        self.ctx = ctx
        self.before_snapshot: dict[str, Any] | None = None
        self._present_before: list[dict[str, int] | None] = [None] * len(params.history)
        self._bounds_before: list[list[Any]] = [[] for _ in params.history]
        if ctx is not None:
            ctx.redactor.add(_password(params.dsn))

    # ------------------------------------------------------------ config helpers

    def _base(self) -> Path:
        return self.ctx.base_dir if self.ctx is not None else Path.cwd()

    def all_invariants(self) -> list[inv.Invariant]:
        out = list(self.params.invariants)
        if self.params.invariants_file:
            p = Path(self.params.invariants_file)
            out += inv.load_invariants_file(p if p.is_absolute() else self._base() / p)
        names = [n for i in out for n in i.names()]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise CheckerError(f"duplicate invariant names {dups} (invariants + invariants_file)")
        return out

    def _event(self, kind: str, **data: Any) -> None:
        if self.ctx is not None:
            self.ctx.event(kind, **data)

    # ------------------------------------------------------------ phases

    def before(self) -> dict[str, Any]:
        """Snapshot the ledger and remember what the history's tables already hold, so rows of
        earlier runs are neither phantoms nor counted twice."""
        t0 = time.monotonic()
        out: dict[str, Any] = {}
        with connect(self.params.dsn) as conn, consistent_read(conn):
            if self.params.snapshot is not None:
                self.before_snapshot = snap.take_snapshot(conn, self.params.snapshot,
                                                          dsn=self.params.dsn,
                                                          parallel=self.params.parallel)
                out["snapshot"] = snap.summary(self.before_snapshot)
            for i, spec in enumerate(self.params.history):
                if spec.table and spec.id_column:
                    self._present_before[i] = hist.read_present(conn, spec)
                    out.setdefault("history_ids_before", {})[spec.label()] = len(
                        self._present_before[i] or {})
                if spec.bounds:
                    self._bounds_before[i] = [_number(conn, b.query, b.name) if b.delta else 0
                                              for b in spec.bounds]
        out["seconds"] = round(time.monotonic() - t0, 3)
        self._event("ledger.before", **out)
        return out

    def use_before_snapshot(self, snapshot: dict[str, Any]) -> None:
        """A snapshot taken earlier (``chaoskit verify --before FILE``)."""
        self.before_snapshot = snapshot

    def verify(self, history_path: Path | None = None) -> CheckResult:
        """All reads in one consistent snapshot. The history file is parsed in a child process
        while PostgreSQL answers the set-based final read and the invariants: parsing is
        Python's work, the final read's decoding too, and a thread would share one GIL."""
        t0 = time.monotonic()
        res = CheckResult()
        invariants = self.all_invariants()
        job = None
        if history_path is not None:
            if not self.params.history:
                raise CheckerError("a history file was given but verify.ledger has no history block")
            if not Path(history_path).is_file():
                raise CheckerError(f"history file {history_path} does not exist")
            job = hist.ParseJob(Path(history_path), self.params.history)
        try:
            with connect(self.params.dsn) as conn, consistent_read(conn):
                present: list[dict[str, int] | None] = [
                    hist.read_present(conn, spec) if job and spec.table and spec.id_column
                    else None for spec in self.params.history]
                for r in run_tasks(conn, self.params.dsn,
                                   check_tasks(invariants, self.params.events, self.params.pnl),
                                   self.params.parallel):
                    res.extend(r)
                if self.params.snapshot is not None and self.before_snapshot is not None:
                    res.extend(self._diff(conn))
                if job is not None:
                    parsed = job.result()
                    res.extend(hist.history_findings(parsed, history_path))
                    res.extend(self._history(conn, parsed, present))
        finally:
            if job is not None:
                job.close()
        res.info["seconds"] = round(time.monotonic() - t0, 3)
        self._event("ledger.verify", ok=res.ok, **_journal_digest(res))
        return res

    def _diff(self, conn: Any) -> CheckResult:
        assert self.params.snapshot is not None and self.before_snapshot is not None
        spec = self.params.snapshot.model_copy(
            update={"tables": [t for t in self.params.snapshot.tables
                               if t in self.before_snapshot["tables"]]})
        after = snap.take_snapshot(conn, spec, like=self.before_snapshot, dsn=self.params.dsn,
                                   parallel=self.params.parallel)
        d = snap.diff_snapshots(self.before_snapshot, after, conn)
        res = snap.diff_findings(d, spec)
        res.info["snapshot_after"] = snap.summary(after)
        return res

    def _history(self, conn: Any, parsed: hist.ParsedHistory,
                 present: list[dict[str, int] | None]) -> CheckResult:
        res = CheckResult()
        bound_index = 0
        for i, spec in enumerate(self.params.history):
            states = parsed.states[i]
            got = present[i]
            if got is not None:
                res.extend(hist.classify(spec, states, got, self._present_before[i]))
            else:
                got = hist.read_present_per_id(conn, spec, states)
                res.extend(hist.classify(spec, states, got, set_based=False))
            if spec.bounds:
                before = self._bounds_before[i] or [0] * len(spec.bounds)
                observed = [_number(conn, b.query, b.name) - (before[j] if b.delta else 0)
                            for j, b in enumerate(spec.bounds)]
                res.extend(hist.check_bounds(spec, parsed, bound_index, observed))
            bound_index += len(spec.bounds)
        return res


def _timed(fn: Callable[[Any], CheckResult]) -> Callable[[Any], CheckResult]:
    def run(conn: Any) -> CheckResult:
        t = time.monotonic()
        r = fn(conn)
        for f in r.findings:
            f["seconds"] = round(time.monotonic() - t, 3)
        return r

    return run


def check_tasks(invariants: list[inv.Invariant], events: ev.EventsSpec | None,
                pnl: list[ev.Projection]) -> list[Callable[[Any], CheckResult]]:
    """Every independent read-only check as a task, so run_tasks can spread them over
    connections that share one snapshot."""

    def one(i: inv.Invariant) -> Callable[[Any], CheckResult]:
        return lambda c: inv.check_invariants(c, [i])

    tasks: list[Callable[[Any], CheckResult]] = [one(i) for i in invariants]
    if events is not None:
        e = events
        if e.versions:
            tasks.append(lambda c: ev.check_versions(c, e))
        tasks += [(lambda c, link=link: ev.check_link(c, e, link)) for link in e.links]
        tasks += [(lambda c, p=p: ev.check_projection(c, p)) for p in e.projections]
        tasks += [(lambda c, cv=cv: ev.check_coverage(c, cv)) for cv in e.coverage]
    tasks += [(lambda c, p=p: ev.check_projection(c, p)) for p in pnl]
    return [_timed(t) for t in tasks]


def _number(conn: Any, query: str, name: str) -> Any:
    _, rows = run_sql(conn, query, what=f"bound {name}")
    if len(rows) != 1 or len(rows[0]) != 1:
        raise CheckerError(f"bound {name}: the query must return one value")
    v = exact(rows[0][0])
    return 0 if v is None else v


def _password(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return str(conninfo_to_dict(dsn).get("password") or "")
    except Exception:  # noqa: BLE001 - a malformed DSN is reported by connect()
        return ""


def _journal_digest(res: CheckResult) -> dict[str, Any]:
    """Counts and first offending ids of every failed check, small enough for the journal."""
    return {
        "failures": [{k: f.get(k) for k in ("check", "name", "count", "message")} |
                     {"examples": (f.get("examples") or [])[:5]} for f in res.failures],
        "checks": len(res.findings),
        "history": {k: v for k, v in res.info.items() if k.startswith("history")},
    }


def error_result(exc: Exception) -> CheckResult:
    """For callers that want a verdict even when the checker could not look."""
    res = CheckResult()
    res.add(finding("ledger", "error", False, str(exc)))
    return res
