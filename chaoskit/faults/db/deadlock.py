"""``db.deadlock``: make the application's own transactions deadlock on chosen rows.

mode ``app`` (default): chaoskit session A locks the ``first`` rows and watches, server-side
(a DO block polling pg_locks every ``poll_every``), for an application backend to queue behind
it; that transaction is expected to hold the ``second`` rows already (it takes them in the
opposite order). A then asks for ``second`` in the same statement: the cycle is closed a few
ms after the app began waiting. PostgreSQL runs the deadlock check in the backend whose
``deadlock_timeout`` expires first, which is the application's (it began waiting earlier), so
the application's transaction gets 40P01 and A gets the rows. If A is chosen instead (the
cycle closed later than deadlock_timeout, on a badly overloaded server), A sees 40P01 itself;
both outcomes are recorded as evidence. Two things tilt it towards the app: A only closes the
cycle on rows the waiter alone holds (its xid in xmax) when there are such rows, so A waits on
nobody else first; and, when the DSN may (superuser), A's own deadlock_timeout is raised to
3x the server's for that wait, so the app's check runs first. Checked against the reference
ledger (fills hold FOR KEY SHARE on the customer account, then want the broker account):
``first: "id = 'broker:USD'"``, ``second: "kind = 'customer'"`` aborts the app's fill.

mode ``hold``: two chaoskit sessions lock ``first`` and ``second`` and hold them while
application transactions that take the rows in opposite orders queue behind them. On revert
``first`` is released, chaoskit waits until its waiters queue again (on ``second``), then
releases ``second``: the two application transactions now hold one row each and want the
other's, every time (releasing both at once lets one take both rows first: no deadlock).
Hold mode needs application transactions that take *conflicting* locks on both rows (UPDATE,
FOR UPDATE). Transactions that only reference the rows (foreign keys: FOR KEY SHARE, which
do not conflict with each other) never deadlock each other; for those use mode ``app``,
where chaoskit's own FOR UPDATE on ``second`` is the conflicting lock.

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
from pydantic import Field, model_validator

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

    table: str = Field(description="table or schema.table holding the rows")
    first: str = Field(description="SQL condition: rows chaoskit locks first")
    second: str = Field(description="SQL condition: rows the app holds while it waits for first")
    mode: Literal["app", "hold"] = Field(
        "app", description="app: chaoskit closes the cycle with the app; hold: the apps deadlock each other"
    )
    deadlocks: int = Field(1, description="mode app: how many deadlocks to produce")
    duration: Duration | None = Field(None, description="arm (app) or hold (hold) this long")
    lock_timeout: Duration = Field(2.0, description="fail apply if the rows are not free within this")
    confirm_within: Duration = Field(3.0, description="wait this long for pg_stat_database.deadlocks to rise")
    poll_every: Duration = Field(0.005, description="server-side poll for app waiters (mode app)")

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
        self.attempts = 0
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
            try:  # a typo in ``second`` must fail now, not when the app finally waits on us
                self.monitor.execute(
                    sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE {}").format(qualified(p.table), sql.SQL(p.second))
                )
            except psycopg.Error as exc:
                raise self.error(f"second {p.second!r} is not a valid condition on {p.table}", exc) from None
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

    def _close_cycle_sql(self, conn: psycopg.Connection, chunk: float) -> sql.Composable:
        """A DO block run by A: watch pg_locks server-side (no client round trip, no GIL) for a
        non-chaoskit backend queued on A, then at once ask for the ``second`` rows. Closing the
        cycle within a few ms of the app starting to wait is what makes the app's
        deadlock_timeout expire first, so the app, not A, is the one PostgreSQL aborts."""
        p = self.params
        lt = max(p.lock_timeout, self.deadlock_timeout_ms / 1000 * 5 + 2)
        body = sql.SQL(
            """
DECLARE w int; wx xid; w_any int; n bigint; t1 timestamptz; q text; app text; r record; age int;
        deadline timestamptz := clock_timestamp() + {chunk}::interval;
BEGIN
  LOOP
    PERFORM pg_stat_clear_snapshot();
    w := NULL; wx := NULL; w_any := NULL;
    -- prefer a waiter that alone holds some of the second rows (its xid in xmax): A then waits
    -- only on a transaction already waiting on A, so the app's deadlock_timeout expires first
    FOR r IN SELECT l.pid, a.backend_xid AS x
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE NOT l.granted AND l.pid <> pg_backend_pid()
                AND pg_backend_pid() = ANY (pg_blocking_pids(l.pid))
                AND coalesce(a.application_name, '') NOT LIKE 'chaoskit%'
    LOOP
      w_any := coalesce(w_any, r.pid);
      IF r.x IS NOT NULL AND EXISTS (SELECT 1 FROM {table} WHERE ({second}) AND xmax = r.x) THEN
        w := r.pid; wx := r.x; EXIT;
      END IF;
    END LOOP;
    EXIT WHEN w IS NOT NULL;
    IF clock_timestamp() > deadline THEN
      EXIT WHEN w_any IS NOT NULL;  -- rows shared by several lockers: close the cycle on all of them
      RETURN;
    END IF;
    PERFORM pg_sleep({poll});
  END LOOP;
  w := coalesce(w, w_any);
  SELECT left(a.query, 200), a.application_name INTO q, app FROM pg_stat_activity a WHERE a.pid = w;
  SELECT round(extract(epoch FROM clock_timestamp() - min(l.waitstart)) * 1000) INTO age
    FROM pg_locks l WHERE l.pid = w AND NOT l.granted;
  RAISE NOTICE 'chaoskit-waiter %', w;
  RAISE NOTICE 'chaoskit-age %', coalesce(age, -1);
  RAISE NOTICE 'chaoskit-precise %', (wx IS NOT NULL);
  RAISE NOTICE 'chaoskit-app %', coalesce(app, '');
  RAISE NOTICE 'chaoskit-query %', coalesce(q, '');
  PERFORM set_config('lock_timeout', {lt}, true);
  -- and let the app's deadlock check run first: A's own check waits longer (superuser only;
  -- without the privilege A keeps the server's deadlock_timeout and may be the victim)
  BEGIN
    PERFORM set_config('deadlock_timeout', {own_dt}, true);
  EXCEPTION WHEN insufficient_privilege THEN NULL;
  END;
  t1 := clock_timestamp();
  IF wx IS NOT NULL THEN
    SELECT count(*) INTO n FROM (SELECT 1 FROM {table} WHERE ({second}) AND xmax = wx FOR UPDATE) AS chaoskit_locked;
  ELSE
    SELECT count(*) INTO n FROM (SELECT 1 FROM {table} WHERE {second} FOR UPDATE) AS chaoskit_locked;
  END IF;
  RAISE NOTICE 'chaoskit-locked % %', n, round(extract(epoch FROM clock_timestamp() - t1) * 1000);
END
"""
        ).format(
            chunk=sql.Literal(ms(chunk)),
            poll=sql.Literal(p.poll_every),
            lt=sql.Literal(ms(lt)),
            own_dt=sql.Literal(ms(self.deadlock_timeout_ms / 1000 * 3)),
            table=qualified(p.table),
            second=sql.SQL(p.second),
        )
        return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))

    def _cycles(self) -> None:
        """mode app: wait for an application waiter on ``first``, then close the cycle."""
        p = self.params
        assert self.a is not None and self.monitor is not None
        a = self.a
        a_pid = a.info.backend_pid
        notes: list[str] = []
        a.add_notice_handler(lambda d: notes.append(d.message_primary or ""))
        stmt = self._close_cycle_sql(a, 1.0)
        # an app transaction that queued on A without holding ``second`` closes no cycle: that
        # attempt is recorded and A tries again with the next waiter, until ``deadlocks`` real ones
        while self._produced() < p.deadlocks and not self._stop.is_set():
            notes.clear()
            sqlstate: str | None = None
            try:
                a.execute(stmt)
            except psycopg.errors.DeadlockDetected as exc:
                sqlstate = exc.sqlstate
            except psycopg.errors.LockNotAvailable:
                sqlstate = "55P03"
            waiter = next((int(n.split()[1]) for n in notes if n.startswith("chaoskit-waiter ")), None)
            if waiter is None:  # nobody queued on A within this chunk: watch again
                continue
            locked = next((n.split()[1:] for n in notes if n.startswith("chaoskit-locked ")), None)
            waited_ms = int(float(locked[1])) if locked else None
            # who waited, as seen the moment it queued (by now it may have rolled back)
            seen = {n.split(" ", 1)[0]: (n.split(" ", 1) + [""])[1] for n in notes}
            if sqlstate == "40P01":
                victim = "chaoskit"
            elif sqlstate is None:
                # A got the rows. They were free (no cycle) if A did not wait and the app's
                # transaction is still queued on A; otherwise the app's transaction was aborted
                # (it may already be queued again, retrying, hence the wait test).
                still = {w[0] for w in self._app_waiters(a_pid)}
                waited_long = (waited_ms or 0) >= self.deadlock_timeout_ms * 0.25
                victim = "app" if waited_long or waiter not in still else "none"
            else:
                victim = "none"
            cycle: dict[str, Any] = {
                "n": self.attempts + 1,
                "victim": victim,
                "app_pid": waiter,
                "app_application_name": seen.get("chaoskit-app"),
                "app_query": self.ctx.redactor.text(seen.get("chaoskit-query", "")),
                "precise": seen.get("chaoskit-precise") == "t",
                "app_waiting_ms_when_closed": int(seen.get("chaoskit-age") or -1),
                "sqlstate_seen_by_chaoskit": sqlstate,
                "chaoskit_waited_ms": waited_ms,
            }
            if victim == "none":
                cycle["why"] = "the waiting transaction did not hold the second rows: no cycle"
            rollback_quietly(a)  # let the app (or its retry) through
            if victim == "chaoskit":
                a.execute("select pg_stat_force_next_flush()")
            self.attempts += 1
            if victim != "none" or len(self.cycles) < 20:
                self.cycles.append(cycle)
            self.ctx.event("db.deadlock.cycle", **cycle)
            if self._produced() < p.deadlocks and not self._stop.is_set():
                try:
                    self._begin_first(a, p.first)
                except FaultError as exc:
                    self._error = str(exc)
                    return

    def _produced(self) -> int:
        return sum(c["victim"] != "none" for c in self.cycles)

    def wait(self, timeout: float) -> bool:
        """Block until mode ``app`` produced all its deadlocks (tests, scripted steps)."""
        return self._done.wait(timeout)

    def _release_staggered(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Release ``first``, wait until the transactions queued on it queue again (on the
        ``second`` rows, behind B or the other app transaction), then release ``second``.
        Releasing both at once would let one app transaction take both rows before the other
        wakes up: no deadlock. Staggered, the cycle closes every time."""
        assert self.a is not None and self.b is not None and self.monitor is not None
        a_pid = self.a.info.backend_pid
        queued = {w[0] for w in self._app_waiters(a_pid)}
        t = time.monotonic()
        rollback_quietly(self.a)
        deadline = t + 1.0
        settled = False
        while queued and time.monotonic() < deadline:
            rows = self.monitor.execute(
                """
                select a.pid, a.state, pg_blocking_pids(a.pid) from pg_stat_activity a
                where a.pid = any(%s)
                """,
                (list(queued),),
            ).fetchall()
            self.monitor.execute("select pg_stat_clear_snapshot()")
            if all(r[1] != "active" or (r[2] and a_pid not in r[2]) for r in rows):
                settled = True
                break
            time.sleep(0.005)
        stagger = round((time.monotonic() - t) * 1000)
        rollback_quietly(self.b)
        waiters = self.sampler.stop() if self.sampler else {}
        return waiters, {"order": ["first", "second"], "queued_on_first": sorted(queued),
                         "stagger_ms": stagger, "requeued": settled}

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
            waiters, release = self._release_staggered()
            ev_release = {"release": release}
        else:
            ev_release = {}
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
        ev["took_effect"] = ev["deadlock_detected"]
        if p.mode == "app":
            ev["cycles"] = self.cycles
            ev["attempts"] = self.attempts
            ev["victims"] = sorted({c["victim"] for c in seen})
            ev["sqlstate"] = "40P01" if seen else None
        else:
            ev["waiters"] = waiters
            ev.update(ev_release)
        if self._error:
            ev["error"] = self._error
        ev["sessions_left"] = self.close_all(self.monitor)
        self._reverted = ev
        return ev
