"""The history checker (DESIGN.md "The history model"): linear time, streaming.

The workload writes JSON lines ``{type: invoke|ok|fail|info, process, op, id, time, value,
error}``. Each operation id gets one outcome: ``ok`` if any attempt was acknowledged (a retry with
the same idempotency key is the same logical operation), else ``info`` (unknown) if any attempt
timed out or never completed, else ``fail``. A final *set-based* read counts every id in the
ledger table once, and each id is classified in one pass:

=========  ==========================================================
lost       acknowledged (ok), absent
duplicate  present more than once (ok or unknown)
zombie     failed, yet present
phantom    present, never attempted (and not there before the run)
recovered  unknown outcome, present once (fine: the final read resolved it)
unapplied  unknown outcome, absent (fine)
=========  ==========================================================

Effects without ids get bounds: sum(ok) <= observed <= sum(ok) + sum(unknown) (signed amounts
widen the window the right way). Amounts are integers (or decimal strings), never floats.

Parsing is one flat loop over the lines with orjson (a dependency; about 5x faster than stdlib
json, which is the fallback). The verify path runs it in forked processes, a big file in two
halves merged exactly (``ParseJob``), while the parent decodes the set-based final read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chaoskit.checkers.result import MAX_EXAMPLES, CheckResult, finding

try:  # optional accelerator
    import orjson as _orjson

    _loads: Callable[[bytes], Any] | None = _orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = None

INVOKE, OK, FAIL, INFO = 1, 2, 4, 8
_BITS = {"invoke": INVOKE, "ok": OK, "fail": FAIL, "info": INFO}


class BoundSpec(BaseModel):
    """An effect checked by totals, for operations whose rows carry no id."""

    model_config = ConfigDict(extra="forbid")
    name: str
    op: str | list[str] | None = None
    field: str = "amount_cents"
    query: str = Field(description="SQL returning one number: the observed total")
    delta: bool = Field(True, description="compare after - before (query also run in before())")

    def ops(self) -> set[str] | None:
        return None if self.op is None else {self.op} if isinstance(self.op, str) else set(self.op)


class HistorySpec(BaseModel):
    """Which ledger rows the history's ids must match.

    Set-based (one query for all ids): ``table`` + ``id_column`` (+ ``where``). Per id (the naive
    path, one query per operation): ``present_once: "select count(*) ... = %(id)s"``.
    """

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    table: str | None = None
    id_column: str | None = None
    where: str | None = None
    op: str | list[str] | None = None
    present_once: str | None = None
    phantoms: bool = Field(True, description="report rows whose id was never attempted")
    bounds: list[BoundSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_way(self) -> HistorySpec:
        if self.present_once is None and not (self.table and self.id_column):
            raise ValueError("history needs either table + id_column (set-based) or present_once")
        if self.present_once is not None and "%(id)s" not in self.present_once:
            raise ValueError("present_once must use the placeholder %(id)s")
        return self

    def ops(self) -> set[str] | None:
        return None if self.op is None else {self.op} if isinstance(self.op, str) else set(self.op)

    def label(self) -> str:
        return self.name or (f"{self.table}.{self.id_column}" if self.table else "present_once")


@dataclass
class BoundTotals:
    ok: int | Decimal = 0
    unknown_pos: int | Decimal = 0
    unknown_neg: int | Decimal = 0
    ops: int = 0
    bad_amounts: list[int] = field(default_factory=list)


@dataclass
class ParsedHistory:
    """Per spec: id -> outcome bits. Memory is one small dict entry per operation id."""

    states: list[dict[str, int]]
    lines: int = 0
    ops: int = 0
    malformed: list[tuple[int, str]] = field(default_factory=list)
    malformed_count: int = 0
    unmatched: list[str] = field(default_factory=list)
    unmatched_count: int = 0
    without_id: int = 0
    bounds: list[BoundTotals] = field(default_factory=list)

    def bad(self, lineno: int, why: str) -> None:
        self.malformed_count += 1
        if len(self.malformed) < MAX_EXAMPLES:
            self.malformed.append((lineno, why))


def _amount(v: Any) -> int | Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            d = Decimal(v)
        except ArithmeticError:
            return None
        return int(d) if d == d.to_integral_value() else d
    return None  # floats are refused: money is never float


def _routes(specs: list[HistorySpec]) -> tuple[dict[str, int], int]:
    """op -> index of the spec that takes it; the default spec (no op filter), or -1."""
    route: dict[str, int] = {}
    default = -1
    for i, spec in enumerate(specs):
        ops = spec.ops()
        if ops is None:
            if default < 0:
                default = i
        else:
            for op in ops:
                route.setdefault(op, i)
    return route, default


def parse_history(path: Path | str, specs: list[HistorySpec]) -> ParsedHistory:
    """One streaming pass over the file; never holds more than one chunk of lines."""
    path = Path(path)
    out = ParsedHistory(states=[{} for _ in specs])
    route, default = _routes(specs)
    bound_specs = [(b, b.ops()) for s in specs for b in s.bounds]
    out.bounds = [BoundTotals() for _ in bound_specs]
    # bound bookkeeping: (op or id) -> (amount, bits) for the ops bounds cover
    bound_ops: dict[str, list[int]] = {}
    for bi, (_b, ops) in enumerate(bound_specs):
        for op in ops or {"*"}:
            bound_ops.setdefault(op, []).append(bi)
    bound_by_id: dict[str, list[Any]] = {}
    pending_by_process: dict[Any, list[Any]] = {}
    bounds = (bound_ops, bound_specs, bound_by_id, pending_by_process) if bound_ops else None
    out.ops, lineno = _parse_lines(path, out, route.get, default, bounds=bounds)
    _finish_bounds(out, bound_specs, bound_by_id, pending_by_process)
    out.lines = max(lineno, out.malformed[-1][0] if out.malformed else 0)
    return out


def _bound_record(out: ParsedHistory, lineno: int, d: dict[str, Any], bit: int, oid: Any,
                  bis: list[int], bound_specs: list[Any], by_id: dict[str, list[Any]],
                  by_proc: dict[Any, list[Any]]) -> None:
    """Track one record of an operation a bound covers: pair by id, else by process."""
    value = d.get("value") if isinstance(d.get("value"), dict) else {}
    if bit == INVOKE:
        amounts = []
        for bi in bis:
            amt = _amount(value.get(bound_specs[bi][0].field))
            if amt is None:
                out.bounds[bi].bad_amounts.append(lineno)
            amounts.append(amt)
        rec = [bis, amounts, 0]
        if oid is not None:
            prev = by_id.get(str(oid))
            by_id[str(oid)] = rec if prev is None else prev
        else:
            by_proc[d.get("process")] = rec
            by_id[f"\x00{lineno}"] = rec
        return
    rec = by_id.get(str(oid)) if oid is not None else by_proc.pop(d.get("process"), None)
    if rec is not None:
        rec[2] |= bit


def _finish_bounds(out: ParsedHistory, bound_specs: list[Any], by_id: dict[str, list[Any]],
                   by_proc: dict[Any, list[Any]]) -> None:
    for bis, amounts, bits in by_id.values():
        for bi, amt in zip(bis, amounts, strict=True):
            if amt is None:
                continue
            t = out.bounds[bi]
            t.ops += 1
            if bits & OK:
                t.ok += amt
            elif bits & INFO or not bits & FAIL:
                if amt >= 0:
                    t.unknown_pos += amt
                else:
                    t.unknown_neg += amt


def _parse_lines(path: Path, out: ParsedHistory, route_get: Callable[..., int], default: int,
                 span: tuple[int, int] | None = None,
                 later: dict[tuple[int, str], int] | None = None,
                 bounds: tuple[Any, ...] | None = None) -> tuple[int, int]:
    """The one loop over a history's lines, kept flat (no generator, no per-line calls but the
    JSON parser): 2M lines are the hot path. ``span`` limits it to the lines starting in a byte
    range; ``later`` then collects completions whose invoke was not seen *in that range* (an
    earlier range may hold it: the merge decides). ``bounds`` is the bounds bookkeeping of
    ``parse_history``. Returns (ops, lines)."""
    loads, bits_of, states, unmatched = _loads or json.loads, _BITS, out.states, out.unmatched
    nops = lineno = 0
    start, end = span or (0, -1)
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        for lineno, raw in enumerate(f, 1):  # noqa: B007 - lineno read after the loop
            if pos == end:
                lineno -= 1
                break
            pos += len(raw)
            try:
                d = loads(raw)
            except ValueError:
                if raw.strip():
                    out.bad(lineno, "not valid JSON")
                continue
            try:
                bit = bits_of[d["type"]]
                op = d.get("op")
                oid = d.get("id")
                g = route_get(op, default)
            except (KeyError, TypeError, AttributeError):
                out.bad(lineno, "not an object with type invoke|ok|fail|info")
                continue
            if bounds is not None:
                bis = bounds[0].get(op) or bounds[0].get("*")
                if bis:
                    _bound_record(out, lineno, d, bit, oid, bis, *bounds[1:])
            if g < 0:
                continue
            cls = oid.__class__
            if cls is str:
                key = oid
            elif cls is int:
                key = str(oid)
            else:
                if oid is not None:
                    out.bad(lineno, "id must be a string or an integer")
                elif bit == 1:
                    out.without_id += 1
                continue
            st = states[g]
            prev = st.get(key, 0)
            if bit == 1:
                nops += 1
            elif not prev & 1:
                if later is not None:
                    later[(g, key)] = later.get((g, key), 0) + 1
                else:
                    out.unmatched_count += 1
                    if len(unmatched) < MAX_EXAMPLES:
                        unmatched.append(key)
            st[key] = prev | bit
    return nops, lineno


def _split_point(path: Path) -> int:
    """The start of the first line at or after the middle of the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(size // 2)
        f.readline()
        return f.tell()


def _parse_half(path: Path, specs: list[HistorySpec], span: tuple[int, int], first: bool
                ) -> tuple[ParsedHistory, dict[tuple[int, str], int]]:
    out = ParsedHistory(states=[{} for _ in specs])
    route, default = _routes(specs)
    later: dict[tuple[int, str], int] = {}
    out.ops, out.lines = _parse_lines(path, out, route.get, default, span,
                                      None if first else later)
    return out, later


def _merge_halves(a: ParsedHistory, b: ParsedHistory, later: dict[tuple[int, str], int]
                  ) -> ParsedHistory:
    """What one pass over both halves in order would have found: a completion of the second
    half without an invoke before it in that half is unmatched only if the first half has no
    invoke for it either; outcome bits OR-ed, counts added, line numbers shifted."""
    for (g, key), n in later.items():
        if not a.states[g].get(key, 0) & 1:
            a.unmatched_count += n
            a.unmatched.extend([key] * min(n, MAX_EXAMPLES - len(a.unmatched)))
    for i, (sa, sb) in enumerate(zip(a.states, b.states, strict=True)):
        if len(sb) > len(sa):  # fold the smaller dict into the bigger one
            sa, sb = sb, sa
            a.states[i] = sa
        for k, v in sb.items():
            sa[k] = sa.get(k, 0) | v
    a.ops += b.ops
    a.without_id += b.without_id
    a.malformed_count += b.malformed_count
    for ln, why in b.malformed:
        if len(a.malformed) < MAX_EXAMPLES:
            a.malformed.append((ln + a.lines, why))
    a.lines += b.lines
    return a


_SPLIT_BYTES = 16 << 20  # from this size on, two processes parse one half each


class ParseJob:
    """``parse_history`` in forked children, so the caller's own Python work (decoding the final
    read) runs beside it instead of waiting for the GIL; a big history is parsed in two halves
    at once and merged exactly. Where fork is unavailable, a thread does it (same result)."""

    def __init__(self, path: Path, specs: list[HistorySpec]):
        import multiprocessing
        import threading

        self._procs: list[Any] = []
        self._pipes: list[Any] = []
        self._thread: threading.Thread | None = None
        self._box: dict[str, Any] = {}
        try:
            ctx: Any = multiprocessing.get_context("fork")
        except ValueError:
            ctx = None
        if ctx is None:
            def run() -> None:
                try:
                    self._box["ok"] = parse_history(path, specs)
                except BaseException as exc:  # noqa: BLE001 - re-raised by result()
                    self._box["error"] = exc

            self._thread = threading.Thread(target=run, name="history-parse", daemon=True)
            self._thread.start()
            return
        plain = not any(sp.bounds for sp in specs)
        if plain and path.stat().st_size >= _SPLIT_BYTES:
            mid = _split_point(path)
            jobs: list[tuple[Any, tuple[Any, ...]]] = [
                (_parse_half, (path, specs, (0, mid), True)),
                (_parse_half, (path, specs, (mid, -1), False))]
        else:
            jobs = [(parse_history, (path, specs))]
        for fn, args in jobs:
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_parse_child, args=(send, fn, args), daemon=True,
                               name="chaoskit-history-parse")
            proc.start()
            send.close()
            self._procs.append(proc)
            self._pipes.append(recv)

    def result(self) -> ParsedHistory:
        if self._thread is not None:
            self._thread.join()
            if "error" in self._box:
                raise self._box["error"]
            return self._box["ok"]
        got = []
        for recv in self._pipes:
            try:
                kind, value = recv.recv()
            except EOFError:
                from chaoskit.checkers.sqlutil import CheckerError

                raise CheckerError("a history parser process died") from None
            if kind == "error":
                raise value
            got.append(value)
        if len(got) == 1:
            return got[0]
        (a, _), (b, later) = got
        return _merge_halves(a, b, later)

    def close(self) -> None:
        for recv in self._pipes:
            recv.close()
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if self._thread is not None:
            self._thread.join()


def _parse_child(send: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        send.send(("ok", fn(*args)))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent
        try:
            send.send(("error", exc))
        except Exception:  # noqa: BLE001 - an unpicklable error: say what it was
            send.send(("error", RuntimeError(f"history parse failed: {exc!r}")))
    finally:
        send.close()


def present_query(spec: HistorySpec) -> str:
    """The set-based final read: every id in the table, one row each, in one query. Counting
    happens in Python (``Counter`` over the COPY buffer runs in C), so the server only scans."""
    from chaoskit.checkers.sqlutil import ident

    assert spec.table and spec.id_column
    where = f" where ({spec.where})" if spec.where else ""
    return (f"select ({ident(spec.id_column)})::text from {ident(spec.table)}{where}")


def read_present(conn: Any, spec: HistorySpec) -> dict[str, int]:
    """id -> number of rows carrying it."""
    from collections import Counter

    import psycopg

    from chaoskit.checkers.sqlutil import CheckerError, copy_rows

    q = present_query(spec)
    try:
        with conn.cursor() as cur, cur.copy(f"copy ({q}) to stdout") as cp:
            buf = b"".join(bytes(b) for b in cp)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckerError(f"history {spec.label()}: SQL failed: {first}") from None
    if b"\\" in buf:  # escaped tabs/newlines/backslashes/NULLs: take the careful path
        return dict(Counter(row[0] for row in copy_rows(conn, q) if row[0] != ""))
    lines = buf.decode().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return dict(Counter(lines))


def read_present_per_id(conn: Any, spec: HistorySpec, ids: Iterable[str]) -> dict[str, int]:
    """The naive path: one query per operation id."""
    from chaoskit.checkers.sqlutil import exact, run_sql

    assert spec.present_once
    out: dict[str, int] = {}
    for oid in ids:
        _, rows = run_sql(conn, spec.present_once, {"id": oid}, what=f"history {spec.label()}")
        n = exact(rows[0][0]) if rows and rows[0] else 0
        if n:
            out[oid] = int(n or 0)
    return out


def classify(spec: HistorySpec, states: dict[str, int], present: dict[str, int],
             before: dict[str, int] | None = None, *, set_based: bool = True) -> CheckResult:
    """One pass over the ids; returns findings with counts and the first offending ids."""
    label = spec.label()
    before = before or {}
    present = dict(present) if before else present
    counts = {k: 0 for k in ("confirmed", "lost", "duplicate", "zombie", "recovered",
                             "unapplied", "phantom", "absent_failed")}
    examples: dict[str, list[Any]] = {k: [] for k in counts}

    def hit(kind: str, ex: Any) -> None:
        counts[kind] += 1
        if len(examples[kind]) < MAX_EXAMPLES:
            examples[kind].append(ex)

    pop = present.pop
    bget = before.get
    for oid, bits in states.items():
        c = pop(oid, 0) - bget(oid, 0) if before else pop(oid, 0)
        if bits & OK:
            if c == 1:
                counts["confirmed"] += 1
            elif c <= 0:
                hit("lost", oid)
            else:
                hit("duplicate", {"id": oid, "count": c, "outcome": "ok"})
        elif bits & INFO or not bits & FAIL:
            if c == 1:
                hit("recovered", oid)
            elif c <= 0:
                counts["unapplied"] += 1
            else:
                hit("duplicate", {"id": oid, "count": c, "outcome": "info"})
        elif c > 0:
            hit("zombie", {"id": oid, "count": c})
        else:
            counts["absent_failed"] += 1
    if spec.phantoms and set_based:
        for oid, c in present.items():
            if c - bget(oid, 0) > 0:
                hit("phantom", {"id": oid, "count": c - bget(oid, 0)})
    res = CheckResult()
    total = len(states)
    for kind, bad in (("lost", True), ("duplicate", True), ("zombie", True), ("phantom", True),
                      ("recovered", False)):
        n = counts[kind]
        msg = {
            "lost": f"{n} acknowledged operations absent from {label}",
            "duplicate": f"{n} operations present more than once in {label}",
            "zombie": f"{n} failed operations present in {label}",
            "phantom": f"{n} ids in {label} never attempted by the workload",
            "recovered": f"{n} unknown-outcome operations resolved present once by the final read",
        }[kind]
        res.add(finding("history", kind, not (bad and n), msg, target=label, count=n,
                        examples=examples[kind]))
    res.info[f"history:{label}"] = {"operations": total, **counts}
    return res


def check_bounds(spec: HistorySpec, parsed: ParsedHistory, index0: int,
                 observed: list[int | Decimal]) -> CheckResult:
    res = CheckResult()
    for j, b in enumerate(spec.bounds):
        t = parsed.bounds[index0 + j]
        lo = t.ok + t.unknown_neg
        hi = t.ok + t.unknown_pos
        obs = observed[j]
        ok = lo <= obs <= hi and not t.bad_amounts
        msg = f"sum(ok)={t.ok} <= observed={obs} <= sum(ok)+unknown={hi}"
        if lo != t.ok:
            msg = f"sum(ok)+negative unknown={lo} <= observed={obs} <= {hi}"
        if t.bad_amounts:
            msg += f"; {len(t.bad_amounts)} operations without an integer {b.field}"
        res.add(finding("history", "bounds", ok, f"{b.name}: {msg}", bound=b.name, low=lo,
                        high=hi, observed=obs, operations=t.ops,
                        examples=[{"line": n} for n in t.bad_amounts[:MAX_EXAMPLES]]))
    return res


def history_findings(parsed: ParsedHistory, path: Path | str) -> CheckResult:
    """Findings about the history file itself (malformed lines, completions without invokes)."""
    res = CheckResult()
    res.add(finding("history", "malformed", parsed.malformed_count == 0,
                    f"{parsed.malformed_count} malformed lines in {path}",
                    count=parsed.malformed_count,
                    examples=[{"line": n, "error": why} for n, why in parsed.malformed]))
    res.add(finding("history", "unmatched", parsed.unmatched_count == 0,
                    f"{parsed.unmatched_count} completions without a prior invoke",
                    count=parsed.unmatched_count, examples=parsed.unmatched))
    res.info["history_file"] = {"lines": parsed.lines, "operations": parsed.ops,
                                "operations_without_id": parsed.without_id}
    return res
