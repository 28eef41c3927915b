"""``db.deadlock``: make the application's own transactions deadlock on chosen rows.

mode ``app`` (default): chaoskit session A locks the ``first`` rows and waits until an
application backend queues behind it (seen in pg_locks); that transaction is expected to hold
the ``second`` rows already (it takes them in the opposite order). A then asks for ``second``:
the cycle is closed. PostgreSQL runs the deadlock check in the backend whose
``deadlock_timeout`` expires first, which is the application's (it began waiting earlier), so
the application's transaction gets 40P01 and A gets the rows. If A is chosen instead (the
poll came later than deadlock_timeout), A sees 40P01 itself; both outcomes are evidence.

mode ``hold``: two chaoskit sessions lock ``first`` and ``second`` and hold them while
application transactions that take the rows in opposite orders pile up behind them; on
release both queues start at once and the applications deadlock each other.

In both modes pg_stat_database.deadlocks is read before and after. The victim backend flushes
that counter when it next goes idle (at most about once a second), so the "after" value is
polled for up to ``confirm_within``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import psycopg
from psycopg import sql
from pydantic import model_validator

from chaoskit import registry
from chaoskit.errors import FaultError
from chaoskit.faults.db.common import (
    DbFault,
    DbParams,
    Sampler,
    clean_error,
    database_deadlocks,
    ms,
    qualified,
    rollback_quietly,
)
from chaoskit.units import Duration


class DeadlockParams(DbParams):
    """``first``/``second`` are SQL conditions on ``table`` (experiment SQL, by design)."""

    table: str
    first: str
    second: str
    mode: Literal["app", "hold"] = "app"
    deadlocks: int = 1
    duration: Duration | None = None
    lock_timeout: Duration = 2.0
    confirm_within: Duration = 3.0
    poll_every: Duration = 0.02

    @model_validator(mode="after")
    def _check(self) -> DeadlockParams:
        if not self.first.strip() or not self.second.strip():
            raise ValueError("first and second must be SQL conditions choosing rows")
        if self.deadlocks < 1:
            raise ValueError("deadlocks must be at least 1")
        if self.poll_every <= 0:
            raise ValueError("poll_every must be positive")
        return self


@registry.faults.register("db.deadlock")
class DbDeadlock(DbFault):
    name = "db.deadlock"
    summary = "make the application's transactions deadlock on chosen rows"
    Params = DeadlockParams
    params: DeadlockParams

    def __init__(self, params: DeadlockParams, target: Any, ctx: Any):
        super().__init__(params, target, ctx)
        self.a: psycopg.Connection | None = None
        self.b: psycopg.Connection | None = None
        self.monitor: psycopg.Connection | None = None
        self.sampler: Sampler | None = None
        self.before = 0
        self.deadlock_timeout_ms = 1000
        self.cycles: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._applied = False

    # -- helpers -----------------------------------------------------------------------------

    def _lock_rows(self, conn: psycopg.Connection, where: str, timeout: float) -> int:
        """BEGIN (if needed) and lock the rows; raises psycopg errors to the caller."""
        stmt = sql.SQL(
            "SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} FOR UPDATE) AS chaoskit_locked"
        ).format(qualified(self.params.table), sql.SQL(where))
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(ms(timeout))))
        row = conn.execute(stmt).fetchone()
        return int(row[0]) if row else 0

    def _begin_first(self, conn: psycopg.Connection, where: str) -> int:
        try:
            conn.execute("BEGIN")
            n = self._lock_rows(conn, where, self.params.lock_timeout)
        except psycopg.errors.LockNotAvailable:
            rollback_quietly(conn)
            raise FaultError(
                f"{self.name}: rows {where!r} are locked by someone else (lock_timeout "
                f"{ms(self.params.lock_timeout)})"
            ) from None
        except psycopg.Error as exc:
            rollback_quietly(conn)
            raise self.error(f"locking rows {where!r} failed", exc) from None
        if n == 0:
            rollback_quietly(conn)
            raise FaultError(f"{self.name}: {where!r} matched no rows in {self.params.table}")
        return n

    def _app_waiters(self, holder: int) -> list[tuple[int, str, str]]:
        """Application backends (not chaoskit) waiting on a lock ``holder`` holds."""
        assert self.monitor is not None
        return [
            (r[0], r[1], r[2])
            for r in self.monitor.execute(
                """
                select a.pid, a.application_name, left(a.query, 200)
                from pg_stat_activity a
                where %s = any(pg_blocking_pids(a.pid))
                  and coalesce(a.application_name, '') not like 'chaoskit%%'
                """,
                (holder,),
            ).fetchall()
        ]

    def _confirm(self, expect: int) -> int:
        """Poll the deadlocks counter until it reached ``expect`` or confirm_within passed."""
        assert self.monitor is not None
        deadline = time.monotonic() + self.params.confirm_within
        after = database_deadlocks(self.monitor)
        while after < expect and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.1)
            after = database_deadlocks(self.monitor)
        return after

    # -- lifecycle ---------------------------------------------------------------------------

    def apply(self) -> dict[str, Any]:
        p = self.params
        try:
            self.monitor = self.open()
            self.before = database_deadlocks(self.monitor)
            raw = self.monitor.execute("select setting::int from pg_settings where name = 'deadlock_timeout'").fetchone()
            self.deadlock_timeout_ms = int(raw[0]) if raw else 1000
            self.a = self.open()
            first_rows = self._begin_first(self.a, p.first)
            evidence: dict[str, Any] = {
                "server": self.server(),
                "mode": p.mode,
                "table": p.table,
                "application_name": self.app_name,
                "deadlocks_before": self.before,
                "deadlock_timeout_ms": self.deadlock_timeout_ms,
                "first": {"where": p.first, "rows_locked": first_rows, "pid": self.a.info.backend_pid},
            }
            if p.mode == "hold":
                self.b = self.open()
                second_rows = self._begin_first(self.b, p.second)
                evidence["second"] = {"where": p.second, "rows_locked": second_rows, "pid": self.b.info.backend_pid}
        except FaultError:
            self.close_all()
            raise
        self._applied = True
        if p.mode == "hold":
            holders = {self.a.info.backend_pid, self.b.info.backend_pid} if self.b else set()
            self.sampler = Sampler(self.monitor, holders, 0.05, self.ctx, self.name).start()
        else:
            self._thread = threading.Thread(target=self._cycle_loop, name="chaoskit-db.deadlock", daemon=True)
            self._thread.start()
        self.ctx.event("db.deadlock.armed", **evidence)
        return evidence

    def _cycle_loop(self) -> None:
        try:
            self._cycles()
        except psycopg.Error as exc:
            if not self._stop.is_set():
                self._error = clean_error(exc, self.params.dsn)
        finally:
            self._done.set()

    def _cycles(self) -> None:
        """mode app: wait for an application waiter on ``first``, then close the cycle."""
        p = self.params
        assert self.a is not None and self.monitor is not None
        a = self.a
        a_pid = a.info.backend_pid
        # the cycle must close well inside the app's deadlock_timeout, or A becomes the victim
        poll = min(p.poll_every, self.deadlock_timeout_ms / 1000 / 5)
        while len(self.cycles) < p.deadlocks and not self._stop.is_set():
            waiters = self._app_waiters(a_pid)
            if not waiters:
                self._stop.wait(poll)
                continue
            t = time.monotonic()
            victim = "none"
            try:
                # well beyond deadlock_timeout so that the server, not lock_timeout, decides
                self._lock_rows(a, p.second, max(p.lock_timeout, self.deadlock_timeout_ms / 1000 * 5 + 2))
            except psycopg.errors.DeadlockDetected as exc:
                victim = "chaoskit"
                sqlstate = exc.sqlstate
            except psycopg.errors.LockNotAvailable:
                victim = "none"
                sqlstate = "55P03"
            else:
                sqlstate = None
            waited_ms = round((time.monotonic() - t) * 1000)
            if self._stop.is_set() and victim == "none":
                return
            still = {w[0] for w in self._app_waiters(a_pid)} if victim == "none" else set()
            if victim == "none" and sqlstate is None:
                # A got the rows. They were free (no cycle) if A did not wait and the app's
                # transaction is still queued on A; otherwise the app's transaction was aborted
                # (it may already be queued again, retrying, hence the wait test).
                waited_long = waited_ms >= self.deadlock_timeout_ms * 0.25
                victim = "app" if waited_long or waiters[0][0] not in still else "none"
            cycle = {
                "n": len(self.cycles) + 1,
                "victim": victim,
                "app_pid": waiters[0][0],
                "app_application_name": waiters[0][1],
                "app_query": self.ctx.redactor.text(waiters[0][2] or ""),
                "sqlstate_seen_by_chaoskit": sqlstate,
                "chaoskit_waited_ms": waited_ms,
            }
            if victim == "none":
                cycle["why"] = "the waiting transaction did not hold the second rows: no cycle"
            rollback_quietly(a)  # let the app (or its retry) through
            if victim == "chaoskit":
                a.execute("select pg_stat_force_next_flush()")
            self.cycles.append(cycle)
            self.ctx.event("db.deadlock.cycle", **cycle)
            if len(self.cycles) < p.deadlocks and not self._stop.is_set():
                try:
                    self._begin_first(a, p.first)
                except FaultError as exc:
                    self._error = str(exc)
                    return

    def wait(self, timeout: float) -> bool:
        """Block until mode ``app`` produced all its deadlocks (tests, scripted steps)."""
        return self._done.wait(timeout)

    def revert(self) -> dict[str, Any] | None:
        if self._reverted is not None:
            return self._reverted
        if not self._applied:
            self.close_all()
            self._reverted = {"released": False, "reason": "not applied"}
            return self._reverted
        p = self.params
        waiters: dict[str, Any] = {}
        if p.mode == "hold":
            rollback_quietly(self.a)  # release both queues at once: the apps now collide
            rollback_quietly(self.b)
            waiters = self.sampler.stop() if self.sampler else {}
        else:
            self._stop.set()
            if self._thread is not None and self._thread.is_alive() and self.a is not None:
                self.a.cancel()  # A may be queued on the second rows
                self._thread.join(timeout=5)
            rollback_quietly(self.a)
        expected = self.before + max(1, sum(c["victim"] != "none" for c in self.cycles))
        self._stop.clear()
        after = self._confirm(expected) if self.monitor is not None else self.before
        seen = [c for c in self.cycles if c["victim"] != "none"]
        ev: dict[str, Any] = {
            "mode": p.mode,
            "deadlocks_before": self.before,
            "deadlocks_after": after,
            "deadlock_detected": after > self.before or bool(seen),
            "counter_raised": after > self.before,
        }
        if p.mode == "app":
            ev["cycles"] = self.cycles
            ev["victims"] = sorted({c["victim"] for c in seen})
            ev["sqlstate"] = "40P01" if seen else None
        else:
            ev["waiters"] = waiters
        if self._error:
            ev["error"] = self._error
        ev["sessions_left"] = self.close_all(self.monitor)
        self._reverted = ev
        return ev
