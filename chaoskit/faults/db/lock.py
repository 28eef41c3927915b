"""``db.lock``: hold a table, row or advisory lock from a dedicated chaoskit session.

The lock lives in an open transaction of its own session, so it goes away on revert
(ROLLBACK), when chaoskit dies (the server sees the TCP close and aborts the transaction) and,
if chaoskit is merely frozen, when the server's idle-in-transaction timeout (``max_hold``,
default duration + 60 s) ends the session. A second session samples pg_locks every
``sample_every`` to report who waited on the lock and for how long.

``where`` is SQL written by the experiment author, by design (it chooses the rows); table
names always go through ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import psycopg
from psycopg import sql
from pydantic import Field, field_validator, model_validator

from chaoskit import registry
from chaoskit.errors import FaultError
from chaoskit.faults.db.common import DbFault, DbParams, Sampler, ms, qualified
from chaoskit.units import Duration

TABLE_MODES = (
    "access share",
    "row share",
    "row exclusive",
    "share update exclusive",
    "share",
    "share row exclusive",
    "exclusive",
    "access exclusive",
)
ROW_STRENGTHS = ("update", "no key update", "share", "key share")


def table_mode(v: str) -> str:
    """A LOCK TABLE mode, normalised; a clear error names the valid ones."""
    n = _norm(v)
    if n not in TABLE_MODES:
        raise ValueError(f"unknown table lock mode {v!r}; use one of: {', '.join(TABLE_MODES)}")
    return n


def _norm(v: str) -> str:
    v = " ".join(v.lower().replace("_", " ").replace("-", " ").split())
    for prefix in ("for ",):
        if v.startswith(prefix):
            v = v[len(prefix) :]
    if v.endswith(" lock") or v.endswith(" mode"):
        v = v[:-5]
    return v


class LockParams(DbParams):
    """table: LOCK TABLE in ``mode``; rows: SELECT ... WHERE ``where`` FOR ``strength``;
    advisory: pg_advisory_xact_lock(``key``)."""

    kind: Literal["table", "rows", "advisory"] | None = Field(
        None, description="table, rows or advisory (default: from key / where / table)"
    )
    table: str | None = Field(None, description="table or schema.table")
    mode: str = Field("access exclusive", description="table lock mode, e.g. exclusive, access exclusive")
    where: str | None = Field(None, description="SQL condition choosing the rows to lock (experiment SQL)")
    strength: str = Field("update", description="row lock: update, no key update, share, key share")
    key: int | list[int] | None = Field(None, description="advisory lock key: one bigint or two int4")
    shared: bool = Field(False, description="take the advisory lock in shared mode")
    duration: Duration | None = Field(None, description="hold this long, then release")
    lock_timeout: Duration = Field(2.0, description="fail apply if the lock is not granted within this")
    sample_every: Duration = Field(0.05, description="how often waiters are sampled from pg_locks")

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        return table_mode(v)

    @field_validator("strength")
    @classmethod
    def _strength(cls, v: str) -> str:
        n = _norm(v)
        if n not in ROW_STRENGTHS:
            raise ValueError(f"unknown row lock {v!r}; use one of: {', '.join('for ' + s for s in ROW_STRENGTHS)}")
        return n

    @field_validator("key")
    @classmethod
    def _key(cls, v: int | list[int] | None) -> int | list[int] | None:
        if isinstance(v, list):
            if len(v) != 2 or not all(-(2**31) <= k < 2**31 for k in v):
                raise ValueError("an advisory key is one bigint or two int4 values")
        elif v is not None and not -(2**63) <= v < 2**63:
            raise ValueError("an advisory key must fit a bigint")
        return v

    @model_validator(mode="after")
    def _kind(self) -> LockParams:
        if self.kind is None:
            self.kind = "advisory" if self.key is not None else "rows" if self.where else "table"
        if self.kind == "advisory":
            if self.key is None:
                raise ValueError("an advisory lock needs key")
            if self.table or self.where:
                raise ValueError("an advisory lock takes key, not table/where")
        else:
            if not self.table:
                raise ValueError(f"a {self.kind} lock needs table")
            if self.key is not None:
                raise ValueError("key is only for advisory locks")
            if self.kind == "rows" and not (self.where and self.where.strip()):
                raise ValueError("a row lock needs where (the SQL condition choosing the rows)")
            if self.kind == "table" and self.where:
                raise ValueError("where chooses rows: use kind: rows (or drop where)")
        if self.sample_every <= 0:
            raise ValueError("sample_every must be positive")
        if self.max_hold is not None and self.duration is not None and self.max_hold < self.duration:
            raise ValueError("max_hold must not be shorter than duration")
        return self


def lock_statement(p: LockParams) -> tuple[sql.Composable, tuple[Any, ...]]:
    """The statement taking the lock; row locks return how many rows they locked."""
    if p.kind == "table":
        assert p.table
        return (
            sql.SQL("LOCK TABLE {} IN {} MODE").format(qualified(p.table), sql.SQL(p.mode.upper())),
            (),
        )
    if p.kind == "rows":
        assert p.table and p.where
        return (
            sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} FOR {}) AS chaoskit_locked").format(
                qualified(p.table), sql.SQL(p.where), sql.SQL(p.strength.upper())
            ),
            (),
        )
    fn = "pg_advisory_xact_lock_shared" if p.shared else "pg_advisory_xact_lock"
    keys = p.key if isinstance(p.key, list) else [p.key]
    args = sql.SQL(", ").join(sql.Placeholder() for _ in keys)
    return sql.SQL("SELECT {}({})").format(sql.Identifier(fn), args), tuple(keys)


def take_lock(conn: psycopg.Connection, p: LockParams, fault: DbFault) -> dict[str, Any]:
    """BEGIN, take the lock within lock_timeout, and say what was taken. The transaction stays open."""
    stmt, args = lock_statement(p)
    t = time.monotonic()
    try:
        conn.execute("BEGIN")
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(ms(p.lock_timeout))))
        cur = conn.execute(stmt, args or None)
        rows = cur.fetchone() if p.kind == "rows" else None
        conn.execute("SET LOCAL lock_timeout = 0")
    except psycopg.errors.LockNotAvailable:
        _rollback(conn)
        raise FaultError(
            f"{fault.name}: could not get the lock within lock_timeout {ms(p.lock_timeout)}: "
            "another session holds a conflicting lock"
        ) from None
    except psycopg.Error as exc:
        _rollback(conn)
        raise fault.error("taking the lock failed", exc) from None
    got: dict[str, Any] = {"kind": p.kind, "acquire_ms": round((time.monotonic() - t) * 1000, 1)}
    if p.kind == "table":
        got |= {"relation": p.table, "mode": p.mode.upper()}
    elif p.kind == "rows":
        locked = int(rows[0]) if rows else 0
        if locked == 0:
            _rollback(conn)
            raise FaultError(f"{fault.name}: where {p.where!r} matched no rows in {p.table}: nothing locked")
        got |= {"relation": p.table, "mode": f"FOR {p.strength.upper()}", "where": p.where, "rows_locked": locked}
    else:
        got |= {"key": p.key, "mode": "shared" if p.shared else "exclusive"}
    return got


def _rollback(conn: psycopg.Connection) -> bool:
    """False when the session was already gone (ended by max_hold, or by someone else)."""
    try:
        conn.execute("ROLLBACK")
        return True
    except psycopg.Error:
        return False


@registry.faults.register("db.lock")
class DbLock(DbFault):
    name = "db.lock"
    summary = "hold a table, row or advisory lock in PostgreSQL for a while"
    Params = LockParams
    params: LockParams

    def __init__(self, params: LockParams, target: Any, ctx: Any):
        super().__init__(params, target, ctx)
        self.holder: psycopg.Connection | None = None
        self.monitor: psycopg.Connection | None = None
        self.sampler: Sampler | None = None
        self.acquired: dict[str, Any] = {}
        self._t_acquired = 0.0

    def apply(self) -> dict[str, Any]:
        p = self.params
        try:
            self.monitor = self.open()
            self.holder = self.open()
            self.acquired = take_lock(self.holder, p, self)
        except FaultError:
            self.close_all()
            self.holder = None
            raise
        self._t_acquired = time.monotonic()
        holder_pid = self.holder.info.backend_pid
        self.sampler = Sampler(self.monitor, {holder_pid}, p.sample_every, self.ctx, self.name).start()
        evidence = {
            "server": self.server(),
            "application_name": self.app_name,
            "holder_pid": holder_pid,
            "lock": self.acquired,
        }
        self.ctx.event("db.lock.acquired", **evidence)
        return evidence

    def revert(self) -> dict[str, Any] | None:
        if self._reverted is not None:
            return self._reverted
        if self.holder is None:  # never applied: only leftovers of a half-done apply to end
            self.close_all()
            self._reverted = {"released": False, "reason": "not applied"}
            return self._reverted
        # release first, measure afterwards: waiters must not wait on our bookkeeping
        alive = _rollback(self.holder)
        released_at = time.monotonic()
        waiters = self.sampler.stop() if self.sampler else {}
        left = self.close_all(self.monitor)
        self._reverted = {
            "released": True,
            "held_ms": round((released_at - self._t_acquired) * 1000),
            "lock": self.acquired,
            "waiters": waiters,
            "sessions_left": left,
            # the runner's require_fault_evidence: a lock nobody waited on proved nothing
            "took_effect": bool(waiters.get("distinct_waiters")),
        }
        if not alive:
            self._reverted["session_lost"] = "the holding session had already ended (max_hold or terminated)"
        return self._reverted
