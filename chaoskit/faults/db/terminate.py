"""``db.terminate``: drop the connections that match, with pg_terminate_backend.

Matchers are ANDed and at least one is required, so an empty step cannot drop a whole server.
chaoskit's own sessions and non-client backends (autovacuum, walsender...) are never touched.
With ``duration`` or ``repeat`` it keeps dropping matching backends every ``every`` (the
application reconnects, we drop it again) until the window ends or the fault is reverted.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

import psycopg
from psycopg import sql
from pydantic import Field, field_validator, model_validator

from chaoskit import registry
from chaoskit.errors import FaultError
from chaoskit.faults.db.common import QUERY_CHARS, DbFault, DbParams, clean_error
from chaoskit.units import Duration

MAX_LISTED = 200


def glob_to_like(pattern: str) -> str:
    """``app-*`` -> ``app-%``; LIKE's own wildcards in the name are taken literally."""
    out = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return out.replace("*", "%").replace("?", "_")


class TerminateParams(DbParams):
    """application_name is a glob (``*``, ``?``); user and database are exact; client_addr is an
    address or CIDR; query is a PostgreSQL regular expression matched against the current query."""

    application_name: str | None = Field(None, description="glob on application_name (* and ?)")
    user: str | None = Field(None, description="exact role name")
    database: str | None = Field(None, description="exact database name")
    client_addr: str | None = Field(None, description="client address or CIDR, e.g. 172.18.0.0/16")
    query: str | None = Field(None, description="PostgreSQL regular expression on the current query")
    state: list[str] | None = Field(None, description="only backends in these states (active, idle, ...)")
    duration: Duration | None = Field(None, description="keep dropping matches for this long")
    repeat: int | None = Field(None, description="passes in total (the first one included)")
    every: Duration | None = Field(None, description="time between passes (default 1s)")
    require_match: bool = Field(True, description="fail when the first pass drops nothing")

    @field_validator("client_addr")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"client_addr {v!r} is not an IP address or CIDR") from None

    @model_validator(mode="after")
    def _some_matcher(self) -> TerminateParams:
        if not any((self.application_name, self.user, self.database, self.client_addr, self.query)):
            raise ValueError(
                "give at least one of application_name, user, database, client_addr, query "
                "(refusing to drop every connection)"
            )
        if self.repeat is not None and self.repeat < 1:
            raise ValueError("repeat must be at least 1")
        if self.every is not None and self.every <= 0:
            raise ValueError("every must be positive")
        return self


def match_sql(p: TerminateParams) -> tuple[sql.Composable, dict[str, Any]]:
    conds = [
        sql.SQL("a.pid <> pg_backend_pid()"),
        sql.SQL("a.backend_type = 'client backend'"),
        sql.SQL("coalesce(a.application_name, '') NOT LIKE 'chaoskit%%'"),
    ]
    args: dict[str, Any] = {}
    if p.application_name is not None:
        conds.append(sql.SQL("a.application_name LIKE %(app)s"))
        args["app"] = glob_to_like(p.application_name)
    if p.user is not None:
        conds.append(sql.SQL("a.usename = %(user)s"))
        args["user"] = p.user
    if p.database is not None:
        conds.append(sql.SQL("a.datname = %(db)s"))
        args["db"] = p.database
    if p.client_addr is not None:
        conds.append(sql.SQL("a.client_addr <<= %(addr)s::inet"))
        args["addr"] = p.client_addr
    if p.query is not None:
        conds.append(sql.SQL("a.query ~ %(query)s"))
        args["query"] = p.query
    if p.state:
        conds.append(sql.SQL("a.state = any(%(state)s)"))
        args["state"] = list(p.state)
    # Only terminate what this role may terminate (superuser; else not a superuser's backend and
    # a member of its role or of pg_signal_backend): one refusal must not abort the whole pass.
    stmt = sql.SQL(
        "SELECT a.pid, a.application_name, a.usename, host(a.client_addr), a.datname, a.state,"
        " left(a.query, {n}),"
        " CASE WHEN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
        "   OR (NOT coalesce(r.rolsuper, false)"
        "       AND (pg_has_role(a.usesysid, 'MEMBER') OR pg_has_role('pg_signal_backend', 'MEMBER')))"
        " THEN pg_terminate_backend(a.pid, 1000) END"
        " FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid WHERE {conds}"
    ).format(n=sql.Literal(QUERY_CHARS), conds=sql.SQL(" AND ").join(conds))
    return stmt, args


@registry.faults.register("db.terminate")
class DbTerminate(DbFault):
    name = "db.terminate"
    summary = "drop PostgreSQL connections matching application_name/user/database/client/query"
    Params = TerminateParams
    params: TerminateParams

    def __init__(self, params: TerminateParams, target: Any, ctx: Any):
        super().__init__(params, target, ctx)
        self.conn: psycopg.Connection | None = None
        self.terminated: list[dict[str, Any]] = []
        self.passes = 0
        self.total = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._t0 = 0.0
        self._error: str | None = None

    @property
    def windowed(self) -> bool:
        p = self.params
        return p.duration is not None or p.repeat is not None or p.every is not None

    def sweep(self) -> list[dict[str, Any]]:
        """One pass: terminate what matches now; return who was dropped."""
        assert self.conn is not None
        stmt, args = match_sql(self.params)
        rows = self.conn.execute(stmt, args).fetchall()
        t_ms = round((time.monotonic() - self._t0) * 1000)
        dropped = [
            {
                "pid": r[0],
                "application_name": r[1],
                "user": r[2],
                "client_addr": r[3],
                "database": r[4],
                "state": r[5],
                "query": self.ctx.redactor.text(r[6] or ""),
                "terminated": bool(r[7]),
                "t_ms": t_ms,
            }
            | ({"refused": "not permitted for this role"} if r[7] is None else {})
            for r in rows
        ]
        with self._lock:
            self.passes += 1
            self.total += sum(d["terminated"] for d in dropped)
            room = MAX_LISTED - len(self.terminated)
            self.terminated.extend(dropped[: max(0, room)])
        done = [d["pid"] for d in dropped if d["terminated"]]
        if dropped:
            self.ctx.event("db.terminate.pass", n=len(done), pids=done,
                           refused=[d["pid"] for d in dropped if not d["terminated"]])
        return dropped

    def apply(self) -> dict[str, Any]:
        self.conn = self.open()
        self._t0 = time.monotonic()
        try:
            first = self.sweep()
        except psycopg.Error as exc:
            self.close_all()
            raise self.error("pg_terminate_backend failed", exc) from None
        if not any(d["terminated"] for d in first) and self.params.require_match:
            self.close_all()
            why = "no connection matched" if not first else f"{len(first)} matched but none may be terminated by this role"
            raise FaultError(f"{self.name}: {why} {self._matchers()} (require_match: true)")
        if self.windowed:
            self._thread = threading.Thread(target=self._loop, name="chaoskit-db.terminate", daemon=True)
            self._thread.start()
        return {
            "server": self.server(),
            "match": self._matchers(),
            "terminated": first,
            "took_effect": any(d["terminated"] for d in first) or self.windowed,
        }

    def _loop(self) -> None:
        p = self.params
        every = p.every if p.every is not None else 1.0
        end = self._t0 + p.duration if p.duration is not None else None
        k = 0
        while True:
            k += 1  # fixed rate: a slow pass does not push the later ones back
            if self._stop.wait(max(0.0, self._t0 + k * every - time.monotonic())):
                return
            if p.repeat is not None and self.passes >= p.repeat:
                return
            if end is not None and time.monotonic() >= end:
                return
            try:
                self.sweep()
            except psycopg.Error as exc:
                self._error = clean_error(exc, p.dsn)
                return

    def _matchers(self) -> dict[str, Any]:
        keys = ("application_name", "user", "database", "client_addr", "query", "state")
        return {k: getattr(self.params, k) for k in keys if getattr(self.params, k) is not None}

    def revert(self) -> dict[str, Any] | None:
        """Nothing to undo on the server; stops the window and reports every pid dropped."""
        if self._reverted is not None:
            return self._reverted
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        left = self.close_all()
        with self._lock:
            self._reverted = {
                "passes": self.passes,
                "terminated_total": self.total,
                "terminated": list(self.terminated),
                "sessions_left": left,
                "took_effect": self.total > 0,
            }
        if self._error:
            self._reverted["error"] = self._error
        return self._reverted
