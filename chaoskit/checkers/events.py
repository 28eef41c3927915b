"""Event-sourcing checks, generic over table and column names.

* versions: per aggregate the versions are exactly 1..n (a gap is a lost event, a repeat a
  duplicate). Serial ``id`` gaps are *not* looked at: PostgreSQL never reclaims sequence values
  of rolled-back inserts, so they are no evidence of anything.
* links: orphans in both directions between the event log and the rows events describe, as
  set differences of keys (``exists``) or per-key counts (``count``: e.g. one fill entry
  transaction per ``trade.filled`` event).
* projections: a query that rebuilds a projection from events (or fills) against the stored one,
  compared row by row inside PostgreSQL with a full join on the key.
* coverage: covered/total ratios (event coverage), computed exactly, with a required percentage.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field

from chaoskit.checkers.result import MAX_EXAMPLES, CheckResult, finding
from chaoskit.checkers.sqlutil import exact, ident, run_sql


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    events_where: str | None = Field(None, description="filter on the events table (alias e)")
    event_key: str = Field(description="expression over e naming the row an event belongs to")
    rows_from: str = Field(description="FROM clause of the described rows, e.g. 'fills r'")
    rows_where: str | None = None
    row_key: str = Field(description="expression over the rows giving the same key")
    mode: Literal["exists", "count"] = "exists"
    row_unit: str | None = Field(None, description="count mode: count(distinct <this>) per key")
    defect_events: str = "orphan_event"
    defect_rows: str = "orphan_entry"


class Projection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    key: list[str]
    rebuilt: str = Field(description="SQL rebuilding the projection (from events, fills...)")
    stored: str = Field(description="SQL reading the stored projection, same columns")
    defect: str = "projection_mismatch"


class Coverage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    covered: str = Field(description="SQL: how many are covered")
    total: str = Field(description="SQL: how many there are")
    required_percent: Decimal = Decimal(100)
    defect: str = "coverage"


class EventsSpec(BaseModel):
    """The ``events:`` block."""

    model_config = ConfigDict(extra="forbid")
    table: str = "events"
    aggregate: str = "aggregate_id"
    version: str = "version"
    where: str | None = None
    versions: bool = Field(True, description="check versions 1..n per aggregate (off when an "
                                             "invariant group already does)")
    links: list[Link] = Field(default_factory=list)
    projections: list[Projection] = Field(default_factory=list)
    coverage: list[Coverage] = Field(default_factory=list)


def check_versions(conn: psycopg.Connection, spec: EventsSpec) -> CheckResult:
    a, v, t = ident(spec.aggregate), ident(spec.version), ident(spec.table)
    where = f" where {spec.where}" if spec.where else ""
    q = (f"select {a}::text, count(*), count(distinct {v}), min({v}), max({v}) from {t}{where} "
         f"group by {a} having min({v}) <> 1 or max({v}) <> count(*) "
         f"or count(distinct {v}) <> count(*)")
    _, rows = run_sql(conn, q, what="events versions")
    gaps, dups = [], []
    for agg, n, nd, lo, hi in rows:
        if nd < n:
            dups.append({"aggregate": agg, "events": n, "distinct_versions": nd})
        if lo != 1 or hi != nd:
            gaps.append({"aggregate": agg, "first": lo, "last": hi, "distinct_versions": nd})
    res = CheckResult()
    res.add(finding("events", "version_gap", not gaps,
                    f"{len(gaps)} aggregates whose versions are not 1..n", count=len(gaps),
                    examples=gaps[:MAX_EXAMPLES]))
    res.add(finding("events", "duplicate_event", not dups,
                    f"{len(dups)} aggregates with a version recorded twice", count=len(dups),
                    examples=dups[:MAX_EXAMPLES]))
    return res


def _events_sub(spec: EventsSpec, link: Link) -> str:
    conds = [c for c in (spec.where, link.events_where) if c]
    where = f" where {' and '.join(f'({c})' for c in conds)}" if conds else ""
    return f"{ident(spec.table)} e{where}"


def check_link(conn: psycopg.Connection, spec: EventsSpec, link: Link) -> CheckResult:
    ev = _events_sub(spec, link)
    rw = f" where {link.rows_where}" if link.rows_where else ""
    if link.mode == "exists":
        # one pass per side: distinct keys of both, full-joined; unmatched on either side
        q = (f"with ev as (select ({link.event_key})::text as k, count(*) as n from {ev} group by 1), "
             f"rw as (select distinct ({link.row_key})::text as k, 1 as p from {link.rows_from}{rw}) "
             f"select coalesce(ev.k, rw.k), ev.n, rw.p from ev full join rw on rw.k = ev.k "
             f"where ev.n is null or rw.p is null")
        _, diff = run_sql(conn, q, what=f"link {link.name}")
        orphan_ev = [(k, n) for k, n, p in diff if p is None]
        orphan_rows = [(k,) for k, n, _ in diff if n is None]
        ex_ev = [{"key": k, "events": n} for k, n in orphan_ev[:MAX_EXAMPLES]]
        ex_rows = [{"key": r[0]} for r in orphan_rows[:MAX_EXAMPLES]]
        n_ev, n_rows = len(orphan_ev), len(orphan_rows)
    else:
        unit = link.row_unit or "1"
        unit_count = f"count(distinct {unit})" if link.row_unit else "count(*)"
        q = (f"with ev as (select ({link.event_key})::text as k, count(*) as n from {ev} group by 1), "
             f"rw as (select ({link.row_key})::text as k, {unit_count} as n from {link.rows_from}{rw} "
             f"group by 1) select coalesce(ev.k, rw.k), coalesce(ev.n, 0), coalesce(rw.n, 0) "
             f"from ev full join rw on rw.k = ev.k where coalesce(ev.n, 0) <> coalesce(rw.n, 0)")
        _, diff = run_sql(conn, q, what=f"link {link.name}")
        more_ev = [{"key": k, "events": e, "rows": r} for k, e, r in diff if e > r]
        more_rows = [{"key": k, "events": e, "rows": r} for k, e, r in diff if r > e]
        ex_ev, ex_rows = more_ev[:MAX_EXAMPLES], more_rows[:MAX_EXAMPLES]
        n_ev, n_rows = len(more_ev), len(more_rows)
    res = CheckResult()
    res.add(finding("events", link.defect_events, n_ev == 0,
                    f"{link.name}: {n_ev} keys with events but no matching rows", link=link.name,
                    count=n_ev, examples=ex_ev))
    res.add(finding("events", link.defect_rows, n_rows == 0,
                    f"{link.name}: {n_rows} keys with rows but no matching events", link=link.name,
                    count=n_rows, examples=ex_rows))
    return res


def check_projection(conn: psycopg.Connection, p: Projection) -> CheckResult:
    on = " and ".join(f"r.{ident(k)} = s.{ident(k)}" for k in p.key)
    keys = ", ".join(f"coalesce(r.{ident(k)}, s.{ident(k)})::text" for k in p.key)
    q = (f"with r as ({p.rebuilt}), s as ({p.stored}) select {keys}, "
         f"case when s.{ident(p.key[0])} is null then 'missing_stored' "
         f"when r.{ident(p.key[0])} is null then 'missing_rebuilt' else 'differs' end, "
         f"to_jsonb(r), to_jsonb(s) from r full join s on {on} "
         f"where to_jsonb(r) is distinct from to_jsonb(s)")
    cols, rows = run_sql(conn, q, what=f"projection {p.name}")
    nk = len(p.key)
    ex = [{"key": list(r[:nk]), "kind": r[nk], "rebuilt": r[nk + 1], "stored": r[nk + 2]}
          for r in rows[:MAX_EXAMPLES]]
    res = CheckResult()
    res.add(finding("events", p.defect, not rows,
                    f"{p.name}: {len(rows)} rows where the rebuilt projection differs from the stored",
                    projection=p.name, count=len(rows), examples=ex))
    return res


def check_coverage(conn: psycopg.Connection, c: Coverage) -> CheckResult:
    def one(q: str) -> int | Decimal:
        _, rows = run_sql(conn, q, what=f"coverage {c.name}")
        v = exact(rows[0][0]) if rows and rows[0] else 0
        return v or 0

    covered, total = one(c.covered), one(c.total)
    pct = Decimal(100) if total == 0 else (Decimal(covered) * 100 / Decimal(total))
    ok = pct >= c.required_percent
    res = CheckResult()
    res.add(finding("events", c.defect, ok,
                    f"{c.name}: {covered}/{total} = {pct.quantize(Decimal('0.01'))}% "
                    f"(required {c.required_percent}%)", coverage=c.name, covered=covered,
                    total=total, percent=str(pct.quantize(Decimal("0.0001")))))
    return res

