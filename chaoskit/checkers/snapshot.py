"""Order-independent table fingerprints computed inside PostgreSQL, and their diff.

Per row, PostgreSQL computes (all in one scan, nothing but bucket sums leaves the server):

* ``h``  = 64-bit hash of the row over explicit columns (volatile columns excluded),
* ``kh`` = 32-bit hash of the row's key, which also picks its bucket (``kh & (buckets-1)``),
* ``g``  = ``h >> 33`` and ``p`` = ``kh * g`` (exact in int8: 31 bits x 30 bits).

Each bucket keeps ``count, sum(h), sum(kh), sum(g), sum(p)`` (plus ``sum(key)`` for a single
integer key). Sums, not XOR: a duplicated row adds its hash twice instead of cancelling out, and
order does not matter. The extra sums let a diff *name* a single differing row per bucket without
having kept the rows: an appeared row has ``h == Δsum(h)``; a vanished one has ``kh == -Δsum(kh)``
(and ``key == -Δsum(key)``); a changed one has ``kh == Δsum(p) / Δsum(g)``. Small tables (up to
``detail_rows``) additionally keep ``(key, h)`` per row, so their diff is exact for any number of
changes. A diff compares buckets and drills down only into the ones that differ, with one query
that reads only those buckets' rows.

Snapshot files are versioned JSON (``chaoskit_snapshot: 1``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from chaoskit.checkers.result import MAX_EXAMPLES, CheckResult, finding
from chaoskit.checkers.sqlutil import CheckerError, copy_rows, ident, run_sql

SNAPSHOT_VERSION = 1
_INT_TYPES = {"bigint", "integer", "smallint"}
# types without a hash opclass are hashed through their text form
_KEY_HASH = {"bigint": ("hashint8extended", ""), "integer": ("hashint4extended", ""),
             "smallint": ("hashint2extended", ""), "text": ("hashtextextended", ""),
             "uuid": ("uuid_hash_extended", "")}
_TEXT_HASHED = {"json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle"}


class SnapshotSpec(BaseModel):
    """The ``snapshot:`` block: which tables, keyed how, which columns are volatile."""

    model_config = ConfigDict(extra="forbid")
    tables: list[str] = Field(min_length=1)
    key: dict[str, list[str]] = Field(default_factory=dict, description="per table key columns")
    exclude: dict[str, list[str]] | list[str] = Field(
        default_factory=dict, description="volatile columns: per table, or for every table")
    columns: dict[str, list[str]] = Field(default_factory=dict, description="explicit columns")
    buckets: int | None = Field(None, description="power of two; default grows with the table")
    detail_rows: int = Field(20000, ge=0, description="keep per-row hashes up to this many rows")
    append_only: list[str] = Field(default_factory=list,
                                   description="tables whose rows may appear, never change or vanish")
    unchanged: list[str] = Field(default_factory=list, description="tables that must not change")

    @field_validator("key", "columns", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: [c] if isinstance(c, str) else c for k, c in v.items()}
        return v

    @field_validator("buckets")
    @classmethod
    def _pow2(cls, v: int | None) -> int | None:
        if v is not None and (v < 1 or v & (v - 1) or v > 1 << 20):
            raise ValueError("buckets must be a power of two between 1 and 1048576")
        return v

    def excluded(self, table: str) -> set[str]:
        if isinstance(self.exclude, list):
            return set(self.exclude)
        return set(self.exclude.get(table, [])) | set(self.exclude.get("*", []))


@dataclass
class TablePlan:
    table: str
    columns: list[str]
    types: dict[str, str]
    key: list[str]
    buckets: int

    @property
    def int_key(self) -> bool:
        return len(self.key) == 1 and self.types.get(self.key[0]) in _INT_TYPES

    def _col(self, c: str) -> str:
        return f"{ident(c)}::text" if self.types.get(c) in _TEXT_HASHED else ident(c)

    def row_expr(self) -> str:
        return f"hash_record_extended(row({', '.join(self._col(c) for c in self.columns)}), 0)"

    def key_expr(self) -> str:
        """32-bit key hash; a typed hash for a single column is ~2.5x cheaper than a record's."""
        if len(self.key) == 1 and self.types.get(self.key[0]) in _KEY_HASH:
            fn, cast = _KEY_HASH[self.types[self.key[0]]]
            return f"({fn}({ident(self.key[0])}{cast}, 0) >> 32)"
        return f"hash_record(row({', '.join(self._col(c) for c in self.key)}))"

    def bucket_query(self, parallel: bool = True) -> str:
        """PostgreSQL would inline ``h`` into every aggregate and hash each row three times; a
        set-returning ``unnest`` in the subquery keeps it computed once and, unlike an
        ``OFFSET 0`` fence, still lets the planner run a parallel aggregate."""
        kcol = f", {ident(self.key[0])}::int8 as k" if self.int_key else ""
        ksum = ", sum(k)" if self.int_key else ""
        h = f"unnest(array[{self.row_expr()}])" if parallel else self.row_expr()
        fence = "" if parallel else " offset 0"
        return (f"select kh & {self.buckets - 1} as b, count(*), sum(h), sum(kh), sum(h >> 33), "
                f"sum(kh * (h >> 33)){ksum} from (select {self.key_expr()}::int8 as kh, "
                f"{h} as h{kcol} from {ident(self.table)}{fence}) r group by 1")

    def rows_query(self, buckets: list[int] | None = None) -> str:
        keys = ", ".join(f"({ident(c)})::text" for c in self.key)
        where = f" where ({self.key_expr()}) & {self.buckets - 1} = any('{{{','.join(map(str, buckets))}}}'::int[])" \
            if buckets is not None else ""
        return (f"select ({self.key_expr()}) & {self.buckets - 1}, ({self.key_expr()})::int8, "
                f"{self.row_expr()}, {keys} from {ident(self.table)}{where}")


def plan_table(conn: psycopg.Connection, spec: SnapshotSpec, table: str,
               like: dict[str, Any] | None = None) -> TablePlan:
    """Columns, types and key from the catalog (or from an earlier snapshot, to compare alike)."""
    _, rows = run_sql(conn, (
        "select a.attname, format_type(a.atttypid, a.atttypmod), "
        "coalesce(i.indisprimary, false), array_position(i.indkey::int2[], a.attnum) "
        "from pg_attribute a left join pg_index i on i.indrelid = a.attrelid and i.indisprimary "
        "where a.attrelid = to_regclass(%(t)s) and a.attnum > 0 and not a.attisdropped "
        "order by a.attnum"), {"t": ident(table)}, what=f"snapshot {table}")
    if not rows:
        raise CheckerError(f"snapshot: table {table!r} does not exist")
    types = {r[0]: r[1] for r in rows}
    if like is not None:
        missing = [c for c in like["columns"] if c not in types]
        if missing:
            raise CheckerError(f"snapshot: table {table} lost columns {missing} since the snapshot")
        return TablePlan(table, list(like["columns"]), types, list(like["key"]), like["buckets"])
    pk = [r[0] for r in sorted((r for r in rows if r[2] and r[3] is not None), key=lambda r: r[3])]
    key = spec.key.get(table) or pk
    if not key:
        raise CheckerError(f"snapshot: table {table} has no primary key; set snapshot.key.{table}")
    excluded = spec.excluded(table)
    cols = spec.columns.get(table) or [c for c in types if c not in excluded]
    unknown = [c for c in [*cols, *key] if c not in types]
    if unknown:
        raise CheckerError(f"snapshot: table {table} has no columns {unknown}")
    if set(key) & excluded:
        raise CheckerError(f"snapshot: table {table}: key columns cannot be excluded")
    buckets = spec.buckets
    if buckets is None:
        _, est = run_sql(conn, "select greatest(reltuples, 0)::int8 from pg_class "
                               "where oid = to_regclass(%(t)s)", {"t": ident(table)})
        n = int(est[0][0]) if est else 0
        buckets = 16
        while buckets < 65536 and buckets * 128 < n:
            buckets *= 2
    return TablePlan(table, cols, types, key, buckets)


def snapshot_table(conn: psycopg.Connection, plan: TablePlan, detail_rows: int) -> dict[str, Any]:
    data: dict[str, list[int]] = {}
    rows = 0
    total = 0
    for f in copy_rows(conn, plan.bucket_query()):
        vals = [int(x) for x in f[1:]]
        data[f[0]] = vals
        rows += vals[0]
        total += vals[1]
    out: dict[str, Any] = {
        "columns": plan.columns, "key": plan.key, "buckets": plan.buckets, "rows": rows,
        "fingerprint": f"{rows}:{total}", "int_key": plan.int_key, "bucket_data": data,
    }
    if plan.int_key:
        _, mx = run_sql(conn, f"select max({ident(plan.key[0])}) from {ident(plan.table)}")
        out["max_key"] = mx[0][0]
    if rows <= detail_rows:
        detail: dict[str, list[Any]] = {}
        for f in copy_rows(conn, plan.rows_query()):
            detail.setdefault(f[0], []).append([f[3:], int(f[2])])
        out["detail"] = detail
    return out


def take_snapshot(conn: psycopg.Connection, spec: SnapshotSpec,
                  like: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fingerprint every table; call inside ``consistent_read`` so all tables are one instant."""
    from chaoskit.runner.journal import utc_iso

    tables: dict[str, Any] = {}
    for t in spec.tables:
        prev = (like or {}).get("tables", {}).get(t)
        plan = plan_table(conn, spec, t, like=prev)
        detail_rows = spec.detail_rows if prev is None else (spec.detail_rows if "detail" in prev else -1)
        tables[t] = snapshot_table(conn, plan, detail_rows)
    return {"chaoskit_snapshot": SNAPSHOT_VERSION, "taken": utc_iso(), "tables": tables}


def save_snapshot(snap: dict[str, Any], path: Path | str) -> None:
    Path(path).write_text(json.dumps(snap, separators=(",", ":")))


def load_snapshot(path: Path | str) -> dict[str, Any]:
    try:
        snap = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CheckerError(f"cannot read snapshot {path}: {exc}") from None
    if not isinstance(snap, dict) or snap.get("chaoskit_snapshot") != SNAPSHOT_VERSION:
        raise CheckerError(f"{path} is not a chaoskit snapshot (version {SNAPSHOT_VERSION})")
    return snap


def summary(snap: dict[str, Any]) -> dict[str, Any]:
    """What goes into the journal: counts and fingerprints, not the buckets."""
    return {t: {"rows": d["rows"], "fingerprint": d["fingerprint"], "buckets": d["buckets"]}
            for t, d in snap["tables"].items()}


# ---------------------------------------------------------------- diff


def _vec(row: list[Any], int_key: bool) -> list[int]:
    """A drilled row's contribution to its bucket's sums."""
    kh, h = row[0], row[1]
    g = h >> 33
    v = [1, h, kh, g, kh * g]
    if int_key:
        v.append(int(row[2][0]))
    return v


def _sub(a: list[int], b: list[int]) -> list[int]:
    return [x - y for x, y in zip(a, b, strict=False)]


def _decode(before: list[int], rows: list[list[Any]], int_key: bool, max_key: int | None
            ) -> tuple[list[Any], list[Any], list[Any], bool]:
    """Name what differs in one bucket from its sums. Returns (appeared, vanished, changed,
    decoded)."""
    width = 6 if int_key else 5
    appeared: list[Any] = []
    acc = [0] * width
    rest = []
    for r in rows:
        if max_key is not None and int(r[2][0]) > max_key:
            appeared.append(r[2])
        else:
            rest.append(r)
            acc = [x + y for x, y in zip(acc, _vec(r, int_key), strict=False)]
    d = _sub(acc, before + [0] * (width - len(before)))
    if not any(d):
        return appeared, [], [], True
    dc, dh, dkh, dg, dp = d[:5]
    if dc == 0 and dkh == 0 and dg != 0 and dp % dg == 0:
        kh = dp // dg
        hits = [r for r in rest if r[0] == kh]
        if len(hits) == 1:
            return appeared, [], [hits[0][2]], True
    if dc == 1:
        hits = [r for r in rest if r[1] == dh and r[0] == dkh]
        if len(hits) == 1 and (not int_key or int(hits[0][2][0]) == d[5]):
            return appeared + [hits[0][2]], [], [], True
    if dc == -1:
        name: Any = [str(-d[5])] if int_key else {"key_hash": -dkh}
        return appeared, [name], [], True
    return appeared, [], [], False


def diff_snapshots(before: dict[str, Any], after: dict[str, Any],
                   conn: psycopg.Connection | None = None, max_drill: int = 1000
                   ) -> dict[str, Any]:
    """Per table: rows before/after, buckets that differ and, drilling down only into those,
    the rows that appeared, vanished or changed (keys as text lists)."""
    out: dict[str, Any] = {}
    for t, b in before["tables"].items():
        a = after["tables"].get(t)
        if a is None:
            out[t] = {"error": "table missing from the second snapshot"}
            continue
        if a["buckets"] != b["buckets"] or a["columns"] != b["columns"] or a["key"] != b["key"]:
            out[t] = {"error": "snapshots taken with different columns, key or buckets"}
            continue
        bb, ab = b["bucket_data"], a["bucket_data"]
        differing = sorted((k for k in set(bb) | set(ab) if bb.get(k) != ab.get(k)), key=int)
        res: dict[str, Any] = {"rows_before": b["rows"], "rows_after": a["rows"],
                               "changed_buckets": len(differing), "appeared": [], "vanished": [],
                               "changed": [], "ambiguous_buckets": [], "appeared_count": 0,
                               "vanished_count": 0, "changed_count": 0}
        out[t] = res
        if not differing:
            continue
        drill = differing[:max_drill]
        if len(differing) > max_drill:
            res["undrilled_buckets"] = len(differing) - max_drill
        if "detail" in b:
            after_rows = _drill_detail(a, conn, t, b, drill)
            for k in drill:
                old = {tuple(key): h for key, h in b["detail"].get(k, [])}
                new = {tuple(key): h for key, h in after_rows.get(k, [])}
                for key in new.keys() - old.keys():
                    _note(res, "appeared", list(key))
                for key in old.keys() - new.keys():
                    _note(res, "vanished", list(key))
                for key in old.keys() & new.keys():
                    if old[key] != new[key]:
                        _note(res, "changed", list(key))
            continue
        if conn is None:
            res["ambiguous_buckets"] = [int(k) for k in drill[:MAX_EXAMPLES]]
            res["ambiguous_count"] = len(drill)
            continue
        rows_by_bucket: dict[str, list[list[Any]]] = {}
        for f in copy_rows(conn, _typed_rows_query(conn, t, b, [int(k) for k in drill])):
            rows_by_bucket.setdefault(f[0], []).append([int(f[1]), int(f[2]), f[3:]])
        max_key = b.get("max_key") if b.get("int_key") else None
        for k in drill:
            before_v = bb.get(k, [0, 0, 0, 0, 0] + ([0] if b.get("int_key") else []))
            app, van, chg, ok = _decode(before_v, rows_by_bucket.get(k, []), bool(b.get("int_key")),
                                        max_key)
            for key in app:
                _note(res, "appeared", key)
            for key in van:
                _note(res, "vanished", key)
            for key in chg:
                _note(res, "changed", key)
            if not ok:
                res.setdefault("ambiguous_count", 0)
                res["ambiguous_count"] += 1
                if len(res["ambiguous_buckets"]) < MAX_EXAMPLES:
                    res["ambiguous_buckets"].append(int(k))
    return out


def _typed_rows_query(conn: psycopg.Connection, t: str, b: dict[str, Any], buckets: list[int]) -> str:
    plan = plan_table(conn, SnapshotSpec(tables=[t]), t, like=b)
    return plan.rows_query(buckets)


def _drill_detail(a: dict[str, Any], conn: psycopg.Connection | None, t: str, b: dict[str, Any],
                  drill: list[str]) -> dict[str, list[Any]]:
    if "detail" in a:
        return a["detail"]
    if conn is None:
        raise CheckerError(f"diff of {t}: the second snapshot has no row detail and no database")
    rows: dict[str, list[Any]] = {}
    for f in copy_rows(conn, _typed_rows_query(conn, t, b, [int(k) for k in drill])):
        rows.setdefault(f[0], []).append([f[3:], int(f[2])])
    return rows


def _note(res: dict[str, Any], kind: str, key: Any) -> None:
    res[f"{kind}_count"] += 1
    if len(res[kind]) < MAX_EXAMPLES:
        res[kind].append(key)


def diff_findings(diff: dict[str, Any], spec: SnapshotSpec) -> CheckResult:
    """Turn a diff into verdicts: ``unchanged`` tables must not differ, ``append_only`` tables
    may only gain rows; every other table's diff is reported for the record (ok)."""
    res = CheckResult()
    for t, d in diff.items():
        if "error" in d:
            res.add(finding("snapshot", "diff_error", False, f"{t}: {d['error']}", table=t))
            continue
        amb = d.get("ambiguous_count", 0)
        msg = (f"{t}: {d['rows_before']} -> {d['rows_after']} rows, {d['changed_buckets']} buckets "
               f"differ; appeared {d['appeared_count']}, vanished {d['vanished_count']}, "
               f"changed {d['changed_count']}" + (f", {amb} buckets not decodable" if amb else ""))
        if t in spec.unchanged:
            ok, name = d["changed_buckets"] == 0, "table_changed"
        elif t in spec.append_only:
            ok = d["vanished_count"] == 0 and d["changed_count"] == 0 and not amb
            name = "rows_changed_or_vanished"
        else:
            ok, name = True, "diff"
        res.add(finding("snapshot", name, ok, msg, table=t,
                        examples=[{"vanished": k} for k in d["vanished"]] +
                                 [{"changed": k} for k in d["changed"]] +
                                 ([{"appeared": k} for k in d["appeared"]] if ok or name == "table_changed" else []),
                        **{k: v for k, v in d.items() if k.endswith("_count") or k.startswith("rows_")}))
    return res
