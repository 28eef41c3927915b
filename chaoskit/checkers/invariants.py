"""Named SQL invariants with exact expectations, all read from one consistent snapshot.

Expectations: ``equals`` (exact: the DB value is compared as int or Decimal, never float),
``range: [lo, hi]`` (inclusive; ``null`` for open ends), ``zero_rows: true`` (every returned row
is a violation, reported with its columns), or ``expect: {...}`` holding any one of those.
An invariant without an expectation means ``zero_rows`` (the convention of
compose/ledger/invariants.sql).

A **group** (``checks: [a, b, ...]``) is one query that checks several named invariants in one
pass over the tables (on a 10M-row ledger, scanning and grouping once instead of once per
invariant is the difference between seconds and minutes): its first column, ``check_name``,
names the invariant each returned row violates; every listed invariant is reported on its own,
passing when no row names it.

Invariants files are SQL split on ``-- name: <name>`` headers; ``-- why: ...`` becomes the
description and an optional ``-- expect: equals 0`` / ``range 0 100`` / ``zero_rows`` header sets
the expectation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from chaoskit.checkers.result import MAX_EXAMPLES, CheckResult, finding
from chaoskit.checkers.sqlutil import CheckerError, exact, run_sql, to_exact_number


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    equals: Any = None
    range: list[Any] | None = None
    zero_rows: bool | None = None


class Invariant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    query: str
    why: str | None = None
    equals: Any = None
    range: list[Any] | None = Field(None, min_length=2, max_length=2)
    zero_rows: bool | None = None
    expect: Expect | None = None
    checks: list[str] | None = Field(None, min_length=1, description="a group: the invariants "
                                     "this query checks at once; column check_name names each row's")
    check_why: dict[str, str] = Field(default_factory=dict, description="a group: why, per check")
    settings: dict[str, str] = Field(default_factory=dict, description="planner settings for this "
                                     "query only, e.g. {enable_hashjoin: 'off'}")

    @model_validator(mode="after")
    def _one_expectation(self) -> Invariant:
        if self.expect is not None:
            for k in ("equals", "range", "zero_rows"):
                v = getattr(self.expect, k)
                if v is not None:
                    if getattr(self, k) is not None:
                        raise ValueError(f"{k} given both directly and under expect")
                    setattr(self, k, v)
            self.expect = None
        given = [k for k in ("equals", "range", "zero_rows") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"invariant {self.name!r}: give one of equals, range, zero_rows, not {given}")
        if self.checks is not None and given and given != ["zero_rows"]:
            raise ValueError(f"invariant group {self.name!r}: every row is a violation (zero_rows)")
        if not given:
            self.zero_rows = True
        if self.equals is not None:
            self.equals = to_exact_number(self.equals, f"invariant {self.name}: equals")
        if self.range is not None:
            if len(self.range) != 2:
                raise ValueError(f"invariant {self.name!r}: range is [low, high]")
            self.range = [None if v is None else to_exact_number(v, f"invariant {self.name}: range")
                          for v in self.range]
        return self

    def names(self) -> list[str]:
        """The invariant names this entry reports (a group's checks, else its own name)."""
        return list(self.checks) if self.checks else [self.name]

    def kind(self) -> str:
        return "equals" if self.equals is not None else "range" if self.range is not None else "zero_rows"


_HEADER = re.compile(r"^\s*--\s*(name|why|expect|checks|settings)\s*:\s*(.*?)\s*$", re.I)
_SETTING = re.compile(r"^(enable_\w+|work_mem|hash_mem_multiplier|random_page_cost|"
                      r"max_parallel_workers_per_gather)=([\w.]+)$")
_CHECK_WHY = re.compile(r"^\s*--(?:\s{1,3}([A-Za-z_][A-Za-z0-9_]*):\s*(.*?)|\s{4,}(.*?))\s*$")


def load_invariants_file(path: Path | str) -> list[Invariant]:
    """Split an SQL file on ``-- name:`` headers into invariants."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise CheckerError(f"cannot read invariants file {p}: {exc.strerror}") from None
    out: list[Invariant] = []
    cur: dict[str, Any] | None = None
    body: list[str] = []

    def flush() -> None:
        if cur is None:
            return
        q = "\n".join(body).strip().rstrip(";").strip()
        if not q:
            raise CheckerError(f"{p}:{cur['line']}: invariant {cur['name']!r} has no query")
        kw: dict[str, Any] = {"name": cur["name"], "query": q, "why": cur.get("why")}
        if cur.get("expect"):
            kw.update(_parse_expect(cur["expect"], p, cur["line"]))
        if cur.get("settings"):
            kw["settings"] = _parse_settings(cur["settings"], p, cur["line"])
        if cur.get("checks"):
            kw["checks"] = [c for c in re.split(r"[\s,]+", cur["checks"]) if c]
            kw["check_why"] = cur.get("check_why", {})
        try:
            out.append(Invariant(**kw))
        except ValueError as exc:
            raise CheckerError(f"{p}:{cur['line']}: {exc}") from None

    for lineno, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m and m.group(1).lower() == "name":
            flush()
            cur, body = {"name": m.group(2), "line": lineno}, []
        elif m and cur is not None and not body:
            cur[m.group(1).lower()] = ((cur.get(m.group(1).lower()) or "") + " " + m.group(2)).strip()
        elif cur is not None and not body and cur.get("checks") and (d := _CHECK_WHY.match(line)):
            # "--   <check>: why" under a group's checks, continued by deeper-indented lines
            if d.group(1) is not None:
                cur.setdefault("check_why", {})[d.group(1)] = d.group(2)
                cur["_last"] = d.group(1)
            elif cur.get("_last"):
                cur["check_why"][cur["_last"]] += " " + d.group(3)
        elif cur is not None:
            if body or line.strip() and not line.strip().startswith("--"):
                body.append(line)
    flush()
    if not out:
        raise CheckerError(f"{p}: no '-- name:' headers found")
    names = [n for i in out for n in i.names()]
    dups = {n for n in names if names.count(n) > 1}
    if dups:
        raise CheckerError(f"{p}: duplicate invariant names {sorted(dups)}")
    return out


def _parse_settings(text: str, p: Path, line: int) -> dict[str, str]:
    out = {}
    for part in text.replace(",", " ").split():
        m = _SETTING.match(part)
        if not m:
            raise CheckerError(f"{p}:{line}: settings: expected name=value of a planner setting "
                               f"(enable_*, work_mem, ...), got {part!r}")
        out[m.group(1)] = m.group(2)
    return out


@contextmanager
def _settings(conn: psycopg.Connection, settings: dict[str, str], what: str) -> Iterator[None]:
    """Planner settings for one query, put back afterwards (the transaction goes on)."""
    old = {}
    for k, v in settings.items():
        _, r = run_sql(conn, "select current_setting(%(k)s), set_config(%(k)s, %(v)s, true)",
                       {"k": k, "v": v}, what=what)
        old[k] = r[0][0]
    try:
        yield
    finally:
        for k, v in old.items():
            run_sql(conn, "select set_config(%(k)s, %(v)s, true)", {"k": k, "v": v}, what=what)


def _parse_expect(text: str, p: Path, line: int) -> dict[str, Any]:
    parts = text.replace(",", " ").replace("[", " ").replace("]", " ").split()
    if parts and parts[0] == "zero_rows":
        return {"zero_rows": True}
    if len(parts) == 2 and parts[0] == "equals":
        return {"equals": parts[1]}
    if len(parts) == 3 and parts[0] == "range":
        return {"range": [None if v in ("null", "none") else v for v in parts[1:]]}
    raise CheckerError(f"{p}:{line}: expect: expected 'zero_rows', 'equals N' or 'range LO HI'")


def _scalar(cols: list[str], rows: list[tuple[Any, ...]], name: str) -> int | Decimal | None:
    if len(rows) != 1 or len(cols) != 1:
        raise CheckerError(
            f"invariant {name}: equals/range need a query returning one value, "
            f"got {len(rows)} rows x {len(cols)} columns")
    v = exact(rows[0][0])
    if v is not None and not isinstance(v, int | Decimal):
        raise CheckerError(f"invariant {name}: expected a number, got {type(v).__name__} {v!r}")
    return v


def check_group(conn: psycopg.Connection, inv: Invariant) -> list[dict[str, Any]]:
    """One query, several invariants: per ``check_name`` the count of violating rows (counted on
    the server) and the first few of them."""
    assert inv.checks is not None
    query = inv.query.strip().rstrip(";")
    cols, rows = run_sql(conn, (
        f"with q as materialized ({query}), n as (select check_name, count(*) as chaoskit_total "
        f"from q group by 1), r as (select q.*, row_number() over (partition by check_name) "
        f"as chaoskit_rn from q) select n.chaoskit_total, r.* from r join n using (check_name) "
        f"where r.chaoskit_rn <= {MAX_EXAMPLES}"), what=f"invariant group {inv.name}")
    if "check_name" not in cols:
        raise CheckerError(f"invariant group {inv.name}: the query needs a check_name column")
    ci = cols.index("check_name")
    counts: dict[str, int] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        name = r[ci]
        if name not in inv.checks:
            raise CheckerError(f"invariant group {inv.name}: rows name {name!r}, which is not "
                               f"in its checks {inv.checks}")
        counts[name] = int(r[0])
        examples.setdefault(name, []).append(
            {c: exact(v) for c, v in zip(cols[1:], r[1:], strict=True)
             if c not in ("check_name", "chaoskit_rn") and v is not None})
    out = []
    for name in inv.checks:
        n = counts.get(name, 0)
        out.append(finding("invariant", name, n == 0,
                           "no violating rows" if n == 0 else f"{n} violating rows",
                           expect="zero_rows", value=n, count=n, examples=examples.get(name, []),
                           group=inv.name, **({"why": w} if (w := inv.check_why.get(name) or inv.why)
                                              else {})))
    return out


def check_one(conn: psycopg.Connection, inv: Invariant) -> dict[str, Any]:
    desc = {"why": inv.why} if inv.why else {}
    query = inv.query.strip().rstrip(";")
    if inv.zero_rows:
        # count every violation on the server, ship only the first few rows. MATERIALIZED keeps
        # the query planned for its whole result: a bare LIMIT would push the planner to
        # fast-start nested loops, minutes instead of seconds when the answer is "no rows"
        cols, rows = run_sql(conn, f"with q as materialized ({query}) select (select count(*) "
                                   f"from q) as chaoskit_total, q.* from q limit {MAX_EXAMPLES}",
                             what=f"invariant {inv.name}")
        n = int(rows[0][0]) if rows else 0
        examples = [dict(zip(cols[1:], (exact(v) for v in r[1:]), strict=True)) for r in rows]
        return finding("invariant", inv.name, n == 0,
                       "no violating rows" if n == 0 else f"{n} violating rows",
                       expect="zero_rows", value=n, count=n, examples=examples, **desc)
    cols, rows = run_sql(conn, query, what=f"invariant {inv.name}")
    v = _scalar(cols, rows, inv.name)
    if inv.equals is not None:
        ok = v is not None and v == inv.equals
        return finding("invariant", inv.name, ok, f"value {v} (expected {inv.equals})",
                       expect={"equals": inv.equals}, value=v, **desc)
    assert inv.range is not None
    lo, hi = inv.range
    ok = v is not None and (lo is None or v >= lo) and (hi is None or v <= hi)
    return finding("invariant", inv.name, ok, f"value {v} (expected within [{lo}, {hi}])",
                   expect={"range": [lo, hi]}, value=v, **desc)


def check_invariants(conn: psycopg.Connection, invariants: list[Invariant]) -> CheckResult:
    """Run every invariant; call inside ``consistent_read`` so all see the same snapshot."""
    res = CheckResult()
    for inv in invariants:
        with _settings(conn, inv.settings, f"invariant {inv.name}"):
            found = check_group(conn, inv) if inv.checks else [check_one(conn, inv)]
        for f in found:
            res.add(f)
    return res
