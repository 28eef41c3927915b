"""Order-independent table fingerprints computed inside PostgreSQL, and their diff.

Per row, PostgreSQL computes (all in one scan, nothing but bucket sums leaves the server):

* ``h``  = 64-bit hash of the row over explicit columns (volatile columns excluded): a chain of
  the columns' own typed hash functions, each seeded with the previous one's result, so it binds
  columns to positions and costs one hash call per column (``hash_record_extended`` costs ~1.5x),
* a bucket and a 32-bit key value ``kh`` inside it,
* ``g``  = ``h >> 33`` and ``p`` = ``kh * g`` (exact in int8: 32 bits x 31 bits).

Buckets come in two kinds. A single integer key (the usual ``bigserial id``) is bucketed by key
**range** (``key >> shift``, ``kh`` = the key's low bits): no hash of the key, and a diff drills
into a changed bucket with an index range scan instead of a table scan. Any other key is bucketed
by **hash** (``kh`` = 32-bit key hash, bucket ``kh & (buckets-1)``).

Each bucket keeps ``count, sum(h), sum(kh), sum(g), sum(p)`` (plus ``sum(key)`` for an integer key
in hash buckets). Sums, not XOR: a duplicated row adds its hash twice instead of cancelling out,
and order does not matter. The extra sums let a diff *name* a single differing row per bucket
without having kept the rows: an appeared row has ``h == Δsum(h)``; a vanished one has
``kh == -Δsum(kh)`` (which, with the range, is its key); a changed one has
``kh == Δsum(p) / Δsum(g)``. Small tables (up to ``detail_rows``) additionally keep ``(key, h)``
per row, so their diff is exact for any number of changes.

Big tables are read in page ranges (``ctid``), one per connection, all connections sharing one
exported snapshot: two cores hash at once and the result is still one instant. Each range query
keeps ``h`` behind an ``OFFSET 0`` fence, so it is computed once per row, not once per aggregate.

Snapshot files are versioned JSON (``chaoskit_snapshot: 2``; version 1 used another row hash).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from chaoskit.checkers.result import MAX_EXAMPLES, CheckResult, finding
from chaoskit.checkers.sqlutil import CheckerError, copy_rows, ident, run_sql, run_tasks

SNAPSHOT_VERSION = 2
_INT_TYPES = {"bigint", "integer", "smallint"}
# 32-bit key hashes for hash buckets (a typed hash for a single column is ~2.5x cheaper than a
# record's)
_KEY_HASH = {"bigint": "hashint8extended", "integer": "hashint4extended",
             "smallint": "hashint2extended", "text": "hashtextextended", "uuid": "uuid_hash_extended"}
# row hash per column type: (seeded 64-bit hash function, argument, value standing in for NULL).
# timestamptz goes through UTC so the session's TimeZone cannot change a fingerprint; types not
# listed are hashed through their text form.
_ROW_HASH: dict[str, tuple[str, str, str]] = {
    "bigint": ("hashint8extended", "{c}", "0"),
    "integer": ("hashint4extended", "{c}", "0"),
    "smallint": ("hashint2extended", "{c}", "0::int2"),
    "text": ("hashtextextended", "{c}", "''"),
    "character varying": ("hashtextextended", "{c}::text", "''"),
    "character": ("hashbpcharextended", "{c}", "''::bpchar"),
    "numeric": ("hash_numeric_extended", "{c}", "0::numeric"),
    "uuid": ("uuid_hash_extended", "{c}", "'00000000-0000-0000-0000-000000000000'::uuid"),
    "jsonb": ("jsonb_hash_extended", "{c}", "'null'::jsonb"),
    "boolean": ("hashint4extended", "{c}::int", "0"),
    "date": ("hashint4extended", "({c} - date '2000-01-01')", "0"),
    "timestamp without time zone": ("timestamp_hash_extended", "{c}", "'epoch'::timestamp"),
    "timestamp with time zone": ("timestamp_hash_extended", "({c} at time zone 'UTC')",
                                 "'epoch'::timestamp"),
    "double precision": ("hashfloat8extended", "{c}", "0::float8"),
    "real": ("hashfloat4extended", "{c}", "0::float4"),
    "bytea": ("hashvarlenaextended", "{c}", "''::bytea"),
}
_TEXT_FORM = ("hashtextextended", "{c}::text", "''")
_MAX_SHIFT = 30         # range buckets: kh = key & (2^shift - 1) stays within 32 bits
_RANGE_MIN_ROWS = 65536  # below this, hash buckets (and usually row detail) are as cheap
_CHUNK_MIN_PAGES = 4096  # 32 MB: smaller tables are read by one connection


class SnapshotSpec(BaseModel):
    """The ``snapshot:`` block: which tables, keyed how, which columns are volatile."""

    model_config = ConfigDict(extra="forbid")
    tables: list[str] = Field(min_length=1)
    key: dict[str, list[str]] = Field(default_factory=dict, description="per table key columns")
    exclude: dict[str, list[str]] | list[str] = Field(
        default_factory=dict, description="volatile columns: per table, or for every table")
    columns: dict[str, list[str]] = Field(default_factory=dict, description="explicit columns")
    buckets: int | None = Field(None, description="power of two; default grows with the table")
    bucketing: Literal["auto", "range", "hash"] = Field(
        "auto", description="range: by integer key range (default for big tables keyed by one "
                            "integer column); hash: by key hash")
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


def _base_type(t: str) -> str:
    return re.sub(r"\(.*?\)", "", t).strip()


@dataclass
class TablePlan:
    table: str
    columns: list[str]
    types: dict[str, str]
    key: list[str]
    buckets: int          # hash buckets (mode "hash")
    mode: str = "hash"    # or "range"
    shift: int = 0        # range buckets: key >> shift
    not_null: frozenset[str] = frozenset()  # columns that cannot be NULL: no NULL handling

    @property
    def int_key(self) -> bool:
        return len(self.key) == 1 and _base_type(self.types.get(self.key[0], "")) in _INT_TYPES

    def _k(self) -> str:
        return f"{ident(self.key[0])}::int8"

    def row_expr(self) -> str:
        """The row hash: each column's typed hash seeded with the previous column's."""
        h = "0::int8"
        for c in self.columns:
            fn, arg, null = _ROW_HASH.get(_base_type(self.types.get(c, "")), _TEXT_FORM)
            a = arg.format(c=ident(c))
            if c in self.not_null:
                h = f"{fn}({a}, {h})"
            else:
                # NULL hashes as the type's stand-in value, then flips the low bit: no collision
                # with the stand-in, no second evaluation of the chain so far, and the same hash
                # as the plain form for every non-NULL value
                h = f"({fn}(coalesce({a}, {null}), {h}) # ({ident(c)} is null)::int)"
        return h

    def key_expr(self) -> str:
        """32-bit value identifying the key inside its bucket: the key's low bits for range
        buckets, a key hash otherwise."""
        if self.mode == "range":
            return f"({self._k()} & {(1 << self.shift) - 1})"
        if len(self.key) == 1 and _base_type(self.types.get(self.key[0], "")) in _KEY_HASH:
            fn = _KEY_HASH[_base_type(self.types[self.key[0]])]
            return f"({fn}({ident(self.key[0])}, 0) >> 32)"
        cols = ", ".join(f"{ident(c)}::text" if _base_type(self.types.get(c, "")) not in _ROW_HASH
                         else ident(c) for c in self.key)
        return f"hash_record(row({cols}))::int8"

    def bucket_expr(self, kh: str = "kh") -> str:
        return f"{self._k()} >> {self.shift}" if self.mode == "range" else f"{kh} & {self.buckets - 1}"

    def bucket_query(self, where: str = "") -> str:
        """One scan: per bucket count and sums. ``OFFSET 0`` keeps ``h`` computed once per row
        (PostgreSQL would otherwise inline it into every aggregate)."""
        ksum = ", sum(k)" if self.int_key and self.mode == "hash" else ""
        kcol = f", {self._k()} as k" if self.int_key else ""
        # range buckets come from the key (computed inside), hash buckets from kh (outside)
        inner_b = f", {self.bucket_expr()} as b" if self.mode == "range" else ""
        outer_b = "b" if self.mode == "range" else self.bucket_expr()
        return (f"select {outer_b}, count(*), sum(h), sum(kh), sum(h >> 33), sum(kh * (h >> 33))"
                f"{ksum} from (select {self.key_expr()} as kh, {self.row_expr()} as h{kcol}"
                f"{inner_b} from {ident(self.table)}{where} offset 0) r group by 1")

    def rows_query(self, buckets: list[int] | None = None) -> str:
        """(bucket, kh, h, key...) per row, of the given buckets only (range buckets: an index
        range scan per run of adjacent buckets)."""
        keys = ", ".join(f"({ident(c)})::text" for c in self.key)
        where = ""
        if buckets is not None:
            if self.mode == "range":
                runs = _runs(sorted(buckets))
                where = " where " + " or ".join(
                    f"({self._k()} >= {lo << self.shift} and {self._k()} < {(hi + 1) << self.shift})"
                    for lo, hi in runs) if runs else " where false"
            else:
                where = (f" where {self.key_expr()} & {self.buckets - 1} = "
                         f"any('{{{','.join(map(str, buckets))}}}'::int8[])")
        return (f"select {self.bucket_expr(self.key_expr())}, {self.key_expr()}, "
                f"{self.row_expr()}, {keys} from {ident(self.table)}{where}")


def _runs(xs: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for x in xs:
        if out and x == out[-1][1] + 1:
            out[-1] = (out[-1][0], x)
        else:
            out.append((x, x))
    return out


def _ceil_log2(x: int) -> int:
    return max(0, (x - 1).bit_length())


def plan_table(conn: psycopg.Connection, spec: SnapshotSpec, table: str,
               like: dict[str, Any] | None = None) -> TablePlan:
    """Columns, types, key and buckets from the catalog (or from an earlier snapshot, to compare
    alike)."""
    _, rows = run_sql(conn, (
        "select a.attname, format_type(a.atttypid, a.atttypmod), "
        "coalesce(i.indisprimary, false), array_position(i.indkey::int2[], a.attnum), a.attnotnull "
        "from pg_attribute a left join pg_index i on i.indrelid = a.attrelid and i.indisprimary "
        "where a.attrelid = to_regclass(%(t)s) and a.attnum > 0 and not a.attisdropped "
        "order by a.attnum"), {"t": ident(table)}, what=f"snapshot {table}")
    if not rows:
        raise CheckerError(f"snapshot: table {table!r} does not exist")
    types = {r[0]: r[1] for r in rows}
    not_null = frozenset(r[0] for r in rows if r[4])
    if like is not None:
        missing = [c for c in like["columns"] if c not in types]
        if missing:
            raise CheckerError(f"snapshot: table {table} lost columns {missing} since the snapshot")
        return TablePlan(table, list(like["columns"]), types, list(like["key"]),
                         like.get("buckets", 0), like.get("mode", "hash"), like.get("shift", 0),
                         not_null)
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
    _, est = run_sql(conn, "select greatest(reltuples, 0)::int8 from pg_class "
                           "where oid = to_regclass(%(t)s)", {"t": ident(table)})
    n = int(est[0][0]) if est else 0
    plan = TablePlan(table, cols, types, key, spec.buckets or _default_buckets(n), not_null=not_null)
    if plan.int_key and spec.bucketing != "hash" and (spec.bucketing == "range" or n >= _RANGE_MIN_ROWS):
        _, mm = run_sql(conn, f"select min({plan._k()}), max({plan._k()}) from {ident(table)}")
        lo, hi = mm[0] if mm else (None, None)
        if lo is not None:
            target = spec.buckets or _default_buckets(n)
            shift = _ceil_log2(-(-(hi - lo + 1) // target))
            if shift <= _MAX_SHIFT:
                plan.mode, plan.shift = "range", shift
        elif spec.bucketing == "range":
            plan.mode, plan.shift = "range", 0
    if spec.bucketing == "range" and plan.mode != "range":
        raise CheckerError(f"snapshot: table {table}: range buckets need one integer key column "
                           f"spanning less than 2^{_MAX_SHIFT} x buckets values")
    return plan


def _default_buckets(n: int) -> int:
    buckets = 16
    while buckets < 65536 and buckets * 128 < n:
        buckets *= 2
    return buckets


def _chunks(conn: psycopg.Connection, table: str, parts: int) -> list[str]:
    """WHERE clauses splitting the heap into ``parts`` page ranges (the last one open-ended, so
    pages added since the size was read are still covered)."""
    _, r = run_sql(conn, "select pg_relation_size(to_regclass(%(t)s)) / "
                         "current_setting('block_size')::int8", {"t": ident(table)})
    pages = int(r[0][0]) if r and r[0][0] is not None else 0
    if parts <= 1 or pages < _CHUNK_MIN_PAGES:
        return [""]
    bounds = [pages * i // parts for i in range(1, parts)]
    out = [f" where ctid < '({bounds[0]},0)'::tid"]
    out += [f" where ctid >= '({a},0)'::tid and ctid < '({b},0)'::tid" for a, b in pairwise(bounds)]
    out.append(f" where ctid >= '({bounds[-1]},0)'::tid")
    return out


def snapshot_table(conn: psycopg.Connection, plan: TablePlan, detail_rows: int,
                   dsn: str | None = None, parallel: int = 1) -> dict[str, Any]:
    chunks = _chunks(conn, plan.table, parallel if dsn else 1)

    def scan(where: str) -> Callable[[psycopg.Connection], list[list[str]]]:
        return lambda c: list(copy_rows(c, plan.bucket_query(where)))

    parts = run_tasks(conn, dsn or "", [scan(w) for w in chunks], parallel if dsn else 1)
    data: dict[str, list[int]] = {}
    for part in parts:
        for f in part:
            vals = [int(x) for x in f[1:]]
            cur = data.get(f[0])
            data[f[0]] = vals if cur is None else [x + y for x, y in zip(cur, vals, strict=True)]
    rows = sum(v[0] for v in data.values())
    total = sum(v[1] for v in data.values())
    out: dict[str, Any] = {
        "columns": plan.columns, "key": plan.key, "mode": plan.mode,
        "buckets": plan.buckets if plan.mode == "hash" else len(data), "rows": rows,
        "fingerprint": f"{rows}:{total}", "int_key": plan.int_key, "bucket_data": data,
    }
    if plan.mode == "range":
        out["shift"] = plan.shift
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
                  like: dict[str, Any] | None = None, dsn: str | None = None,
                  parallel: int = 1) -> dict[str, Any]:
    """Fingerprint every table; call inside ``consistent_read`` so all tables are one instant.
    With ``dsn`` and ``parallel > 1``, big tables are read by that many connections sharing the
    snapshot."""
    from chaoskit.runner.journal import utc_iso

    tables: dict[str, Any] = {}
    for t in spec.tables:
        prev = (like or {}).get("tables", {}).get(t)
        plan = plan_table(conn, spec, t, like=prev)
        detail_rows = spec.detail_rows if prev is None else (spec.detail_rows if "detail" in prev else -1)
        tables[t] = snapshot_table(conn, plan, detail_rows, dsn, parallel)
    return {"chaoskit_snapshot": SNAPSHOT_VERSION, "taken": utc_iso(), "tables": tables}


def save_snapshot(snap: dict[str, Any], path: Path | str) -> None:
    Path(path).write_text(json.dumps(snap, separators=(",", ":")))


def load_snapshot(path: Path | str) -> dict[str, Any]:
    try:
        snap = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CheckerError(f"cannot read snapshot {path}: {exc}") from None
    if not isinstance(snap, dict) or "chaoskit_snapshot" not in snap:
        raise CheckerError(f"{path} is not a chaoskit snapshot (version {SNAPSHOT_VERSION})")
    if snap["chaoskit_snapshot"] != SNAPSHOT_VERSION:
        raise CheckerError(f"{path} is a version {snap['chaoskit_snapshot']} snapshot; this chaoskit "
                           f"reads version {SNAPSHOT_VERSION}: take the snapshot again")
    return snap


def summary(snap: dict[str, Any]) -> dict[str, Any]:
    """What goes into the journal: counts and fingerprints, not the buckets."""
    return {t: {"rows": d["rows"], "fingerprint": d["fingerprint"], "buckets": d["buckets"]}
            for t, d in snap["tables"].items()}


# ---------------------------------------------------------------- diff


def _vec(row: list[Any], key_sum: bool) -> list[int]:
    """A drilled row's contribution to its bucket's sums."""
    kh, h = row[0], row[1]
    g = h >> 33
    v = [1, h, kh, g, kh * g]
    if key_sum:
        v.append(int(row[2][0]))
    return v


def _sub(a: list[int], b: list[int]) -> list[int]:
    return [x - y for x, y in zip(a, b, strict=False)]


def _decode(before: list[int], rows: list[list[Any]], int_key: bool, max_key: int | None,
            bucket: int, shift: int | None) -> tuple[list[Any], list[Any], list[Any], bool]:
    """Name what differs in one bucket from its sums. Returns (appeared, vanished, changed,
    decoded). ``shift`` is set for range buckets, whose ``kh`` is the key's low bits."""
    key_sum = int_key and shift is None
    width = 6 if key_sum else 5
    appeared: list[Any] = []
    acc = [0] * width
    rest = []
    for r in rows:
        if max_key is not None and int(r[2][0]) > max_key:
            appeared.append(r[2])
        else:
            rest.append(r)
            acc = [x + y for x, y in zip(acc, _vec(r, key_sum), strict=False)]
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
        if len(hits) == 1 and (not key_sum or int(hits[0][2][0]) == d[5]):
            return appeared + [hits[0][2]], [], [], True
    if dc == -1:
        name: Any = ([str((bucket << shift) - dkh)] if shift is not None else
                     [str(-d[5])] if key_sum else {"key_hash": -dkh})
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
        layout = ("mode", "shift", "columns", "key") + (("buckets",) if b.get("mode") != "range" else ())
        if any(a.get(k) != b.get(k) for k in layout):
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
        shift = b.get("shift") if b.get("mode") == "range" else None
        width = 6 if b.get("int_key") and shift is None else 5
        for k in drill:
            before_v = bb.get(k, [0] * width)
            app, van, chg, ok = _decode(before_v, rows_by_bucket.get(k, []), bool(b.get("int_key")),
                                        max_key, int(k), shift)
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
