"""Shared plumbing of the PostgreSQL faults.

Every session a db fault opens is named ``chaoskit:<run_id>:<fault>:<token>`` in
``application_name``, so that ``revert_record`` (and anyone with ``psql``) can find and end
exactly the sessions of one fault, even when the runner that opened them is frozen or dead.
Passwords of the DSN are registered with the run's redactor as soon as a fault is built, and
never put into evidence: evidence goes to the journal, records go to the private fault ledger.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import ConfigDict, Field, field_validator

from chaoskit.errors import FaultError
from chaoskit.faults.base import Fault, FaultParams
from chaoskit.secrets import Redactor
from chaoskit.units import Duration

if TYPE_CHECKING:
    from chaoskit.runner.context import RunContext

APP_PREFIX = "chaoskit"
_MAX_APP = 63  # NAMEDATALEN - 1: PostgreSQL silently truncates longer application names
QUERY_CHARS = 200


def make_app_name(run_id: str, fault: str, token: str) -> str:
    """``chaoskit:<run_id>:<fault>:<token>``; the run id is shortened, never the token."""
    tail = f":{fault}:{token}"
    head = f"{APP_PREFIX}:{run_id}"
    return head[: max(len(APP_PREFIX), _MAX_APP - len(tail))] + tail


def dsn_parts(dsn: str) -> dict[str, str]:
    try:
        return {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except psycopg.Error:
        return {}


def dsn_password(dsn: str) -> str | None:
    return dsn_parts(dsn).get("password") or None


def describe_dsn(dsn: str) -> str:
    """``user@host:port/db`` without the password: what the journal may show of a DSN."""
    p = dsn_parts(dsn)
    user = p.get("user", "")
    where = f"{p.get('host', 'localhost')}:{p.get('port', '5432')}/{p.get('dbname', user)}"
    return f"{user}@{where}" if user else where


def protect(dsn: str, ctx: RunContext | None) -> None:
    """Teach every redactor of the run the DSN's password before anything can be written."""
    pw = dsn_password(dsn)
    if not pw or ctx is None:
        return
    ctx.redactor.add(pw)
    journal = getattr(ctx, "journal", None)
    if journal is not None and journal.redactor is not ctx.redactor:
        journal.redactor.add(pw)


def clean_error(exc: BaseException, dsn: str | None = None) -> str:
    """One line, password-free: error text is evidence and ends up in journals."""
    red = Redactor()
    red.add(dsn_password(dsn or "") or "")  # implicit: a short word-like password is left alone
    text = " ".join(str(exc).split()) or type(exc).__name__
    return red.text(text)


def ms(seconds: float) -> str:
    """A PostgreSQL time setting from seconds ("250ms"); integer ms, never below 1."""
    return f"{max(1, round(seconds * 1000))}ms"


def qualified(name: str) -> sql.Composable:
    """``schema.table`` or ``table`` as quoted identifiers: experiment values never become SQL."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(p.strip() for p in parts):
        raise FaultError(f"bad table name {name!r}: expected table or schema.table")
    return sql.Identifier(*[p.strip() for p in parts])


def connect(
    dsn: str,
    app_name: str,
    *,
    connect_timeout: float = 5.0,
    safety_timeout: float | None = None,
) -> psycopg.Connection:
    """An autocommit session named ``app_name``; transactions are begun explicitly.

    ``safety_timeout`` makes the server end the session by itself if chaoskit stops talking
    (frozen runner): idle and idle-in-transaction sessions both time out.
    """
    extra: dict[str, Any] = {}
    if safety_timeout:
        # in the startup packet: no extra round trip, and no window without the timeout
        t = ms(safety_timeout)
        opts = f"-c idle_in_transaction_session_timeout={t} -c idle_session_timeout={t}"
        user_opts = dsn_parts(dsn).get("options")
        extra["options"] = f"{user_opts} {opts}" if user_opts else opts
    try:
        conn = psycopg.connect(
            dsn,
            application_name=app_name,
            autocommit=True,
            connect_timeout=max(1, round(connect_timeout)),
            **extra,
        )
    except psycopg.Error as exc:
        raise FaultError(
            f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {clean_error(exc, dsn)}"
        ) from None
    return conn


def close_quietly(conn: psycopg.Connection | None) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection must not mask the revert
        pass


def rollback_quietly(conn: psycopg.Connection | None) -> None:
    if conn is None or conn.closed:
        return
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


def wait_gone(conn: psycopg.Connection, pids: list[int], timeout: float = 3.0) -> list[int]:
    """Wait until these backends left pg_stat_activity; return those still there."""
    left = list(pids)
    deadline = time.monotonic() + timeout
    while left:
        try:
            rows = conn.execute(
                "select pid from pg_stat_activity where pid = any(%s)", (left,)
            ).fetchall()
        except psycopg.Error:
            return left
        left = [r[0] for r in rows]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return left


def terminate_sessions(
    dsn: str,
    names: list[str],
    pids: list[int],
    ctx: RunContext | None,
    *,
    connect_timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """End every session named in ``names`` and the listed pids that are still chaoskit's.

    A pid alone is not trusted (pids are reused): it is only ended while its application_name
    still starts with ``chaoskit``.
    """
    if not names and not pids:
        return []
    run_id = ctx.run_id if ctx is not None else "rollback"
    conn = connect(dsn, make_app_name(run_id, "rollback", secrets.token_hex(3)), connect_timeout=connect_timeout)
    try:
        rows = conn.execute(
            """
            select pid, application_name, pg_terminate_backend(pid, 2000)
            from pg_stat_activity
            where pid <> pg_backend_pid()
              and (application_name = any(%(names)s)
                   or (pid = any(%(pids)s) and application_name like 'chaoskit%%'))
            """,
            {"names": list(names), "pids": [int(p) for p in pids]},
        ).fetchall()
    except psycopg.Error as exc:
        raise FaultError(f"cannot end chaoskit sessions: {clean_error(exc, dsn)}") from None
    finally:
        close_quietly(conn)
    return [{"pid": r[0], "application_name": r[1], "ended": bool(r[2])} for r in rows]


def database_deadlocks(conn: psycopg.Connection) -> int:
    """pg_stat_database.deadlocks of the current database, read fresh (no stats snapshot)."""
    conn.execute("select pg_stat_clear_snapshot()")
    row = conn.execute(
        "select deadlocks from pg_stat_database where datname = current_database()"
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def check_dsn(v: str) -> str:
    """A DSN libpq can parse; the value itself never appears in the error."""
    if not v.strip():
        raise ValueError("dsn is empty")
    try:
        conninfo_to_dict(v)
    except psycopg.Error:
        raise ValueError("not a valid PostgreSQL DSN (postgresql://user@host:5432/db)") from None
    return v


class DbParams(FaultParams):
    """Keys every db fault shares. The DSN is never echoed in validation errors."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    dsn: str = Field(description="PostgreSQL DSN (from vars/env); its password never reaches the journal")
    connect_timeout: Duration = Field(5.0, description="give up connecting after this long")
    max_hold: Duration | None = Field(
        None, description="server-side cap on a silent chaoskit session (default: duration + 60s)"
    )

    @field_validator("dsn")
    @classmethod
    def _dsn_ok(cls, v: str) -> str:
        return check_dsn(v)


class DbFault(Fault):
    """Base of the PostgreSQL faults: named sessions, crash-safe records, clean revert."""

    needs_target = False
    params: DbParams

    def __init__(self, params: DbParams, target: Any, ctx: RunContext):
        super().__init__(params, target, ctx)
        protect(params.dsn, ctx)
        self.app_name = make_app_name(ctx.run_id, self.name, secrets.token_hex(3))
        self._conns: list[psycopg.Connection] = []
        self._pids: list[int] = []
        self._reverted: dict[str, Any] | None = None

    @property
    def safety_timeout(self) -> float | None:
        """How long the server keeps a silent chaoskit session: max_hold, else duration + 60 s."""
        if self.params.max_hold is not None:
            return self.params.max_hold
        d = self.duration
        return d + 60.0 if d else None

    def open(self) -> psycopg.Connection:
        conn = connect(
            self.params.dsn,
            self.app_name,
            connect_timeout=self.params.connect_timeout,
            safety_timeout=self.safety_timeout,
        )
        self._conns.append(conn)
        self._pids.append(conn.info.backend_pid)
        return conn

    def server(self) -> str:
        return describe_dsn(self.params.dsn)

    def error(self, what: str, exc: BaseException) -> FaultError:
        return FaultError(f"{self.name}: {what}: {clean_error(exc, self.params.dsn)}")

    def record(self) -> dict[str, Any]:
        rec = super().record()
        rec.update(
            dsn=self.params.dsn,
            application_names=[self.app_name],
            pids=sorted(self._pids),
        )
        return rec

    def close_all(self, verify: psycopg.Connection | None = None) -> list[int]:
        """Close every session; return the pids still visible afterwards (should be none)."""
        pids = [c.info.backend_pid for c in self._conns if not c.closed and c is not verify]
        for c in self._conns:
            if c is not verify:
                close_quietly(c)
        left = wait_gone(verify, pids) if verify is not None and not verify.closed else []
        close_quietly(verify)
        self._conns.clear()
        return left

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: RunContext | None) -> dict[str, Any] | None:
        dsn = record.get("dsn") or (record.get("params") or {}).get("dsn")
        if not dsn:
            return None
        protect(dsn, ctx)
        ended = terminate_sessions(
            dsn, list(record.get("application_names") or []), list(record.get("pids") or []), ctx
        )
        return {"sessions_ended": ended}


class Sampler:
    """Samples, every ``every`` seconds, which backends wait (directly or in a queue behind
    another waiter) on locks held by ``holders``. Runs on its own session and thread so the
    holders stay untouched."""

    def __init__(self, conn: psycopg.Connection, holders: set[int], every: float, ctx: RunContext, label: str):
        self.conn = conn
        self.holders = set(holders)
        self.every = every
        self.ctx = ctx
        self.label = label
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"chaoskit-{label}-sampler", daemon=True)
        self._t0 = time.monotonic()
        self.samples = 0
        self.max_concurrent = 0
        self.longest_wait_ms = 0
        self.waiters: dict[int, dict[str, Any]] = {}
        self.error: str | None = None

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                self.sample()
            except psycopg.Error as exc:
                self.error = clean_error(exc)
                return
            if self._stop.wait(self.every):
                return

    def sample(self) -> set[int]:
        rows = self.conn.execute(
            """
            select a.pid, a.application_name, a.usename, a.query, pg_blocking_pids(a.pid),
                   extract(epoch from clock_timestamp() - coalesce(min(l.waitstart), a.query_start)) * 1000
            from pg_locks l join pg_stat_activity a on a.pid = l.pid
            where not l.granted and a.pid <> pg_backend_pid()
            group by a.pid, a.application_name, a.usename, a.query, a.query_start
            """
        ).fetchall()
        blocked: set[int] = set()
        grew = True
        while grew:  # waiters queued behind a waiter of ours wait on us too
            grew = False
            for pid, *_rest, blockers, _w in rows:
                if pid not in blocked and set(blockers or ()) & (self.holders | blocked):
                    blocked.add(pid)
                    grew = True
        self.samples += 1
        self.max_concurrent = max(self.max_concurrent, len(blocked))
        now_ms = round((time.monotonic() - self._t0) * 1000)
        for pid, app, user, query, _b, wait_ms in rows:
            if pid not in blocked:
                continue
            w = round(float(wait_ms or 0))
            self.longest_wait_ms = max(self.longest_wait_ms, w)
            known = self.waiters.get(pid)
            if known is None:
                known = self.waiters[pid] = {
                    "pid": pid,
                    "application_name": app,
                    "user": user,
                    "query": self.ctx.redactor.text((query or "")[:QUERY_CHARS]),
                    "first_seen_ms": now_ms,
                    "max_wait_ms": w,
                }
                self.ctx.event(f"{self.label}.waiter", **known)
            known["max_wait_ms"] = max(known["max_wait_ms"], w)
        return blocked

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        out: dict[str, Any] = {
            "samples": self.samples,
            "every_ms": round(self.every * 1000),
            "max_concurrent": self.max_concurrent,
            "distinct_waiters": len(self.waiters),
            "longest_wait_ms": self.longest_wait_ms,
            "waiters": list(self.waiters.values())[:50],
        }
        if self.error:
            out["error"] = self.error
        return out
