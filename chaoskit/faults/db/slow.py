"""``db.slow``: slow chosen queries without touching the application.

Two levers, usable together:

- lock stalls: every ``period`` a chaoskit session locks ``tables`` in ``mode`` for ``stall``;
  every query touching them waits up to ``stall`` (EXCLUSIVE lets plain reads through,
  ACCESS EXCLUSIVE stalls reads too);
- role settings: ``ALTER ROLE role [IN DATABASE db] SET name = value`` for each of
  ``settings`` (e.g. ``enable_indexscan: off``, ``work_mem: 64kB``), the user's explicit
  opt-in. They apply to sessions started afterwards (``reconnect: true`` ends the role's
  current sessions so that its pool reconnects with them). The previous values are read in
  ``prepare()`` so that they are in the fault ledger before anything changes, and put back
  (SET to the old value, or RESET) on revert and by ``revert_record`` after a crash.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import psycopg
from psycopg import sql
from pydantic import Field, field_validator, model_validator

from chaoskit import registry
from chaoskit.errors import FaultError
from chaoskit.faults.db.common import (
    DbFault,
    DbParams,
    Sampler,
    clean_error,
    close_quietly,
    connect,
    make_app_name,
    ms,
    protect,
    qualified,
    rollback_quietly,
)
from chaoskit.faults.db.lock import table_mode
from chaoskit.units import Duration

_GUC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def guc(name: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))


def setting_value(v: str | int | float | bool) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)


def _role_clause(role: str, database: str | None) -> sql.Composable:
    if database:
        return sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(role), sql.Identifier(database))
    return sql.SQL("ALTER ROLE {}").format(sql.Identifier(role))


def read_role_settings(conn: psycopg.Connection, role: str, database: str | None) -> dict[str, str]:
    """The role's own per-role (or per-role-and-database) settings, as pg_db_role_setting holds them."""
    if conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone() is None:
        raise FaultError(f"db.slow: role {role!r} does not exist")
    if database and conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone() is None:
        raise FaultError(f"db.slow: database {database!r} does not exist")
    row = conn.execute(
        """
        select s.setconfig from pg_db_role_setting s
        join pg_roles r on r.oid = s.setrole
        where r.rolname = %s
          and s.setdatabase = coalesce((select oid from pg_database where datname = %s), 0)
        """,
        (role, database),
    ).fetchone()
    out: dict[str, str] = {}
    for item in (row[0] if row and row[0] else []):
        k, _, v = item.partition("=")
        out[k] = v
    return out


def restore_settings(
    conn: psycopg.Connection, role: str, database: str | None, previous: dict[str, str | None]
) -> dict[str, Any]:
    """Put each setting back to what it was (None: it was not set, so RESET)."""
    head = _role_clause(role, database)
    done: dict[str, Any] = {}
    for k, v in previous.items():
        if v is None:
            conn.execute(sql.SQL("{} RESET {}").format(head, guc(k)))
            done[k] = {"reset": True}
        else:
            conn.execute(sql.SQL("{} SET {} = {}").format(head, guc(k), sql.Literal(v)))
            done[k] = {"set": v}
    return done


class SlowParams(DbParams):
    tables: list[str] | None = Field(None, description="tables whose queries stall")
    mode: str = Field("exclusive", description="lock mode of a stall (access exclusive stalls reads too)")
    stall: Duration = Field(0.2, description="how long each stall holds the lock")
    period: Duration = Field(1.0, description="one stall every period")
    role: str | None = Field(None, description="role whose new sessions get settings")
    database: str | None = Field(None, description="ALTER ROLE ... IN DATABASE this one only")
    settings: dict[str, str | int | float | bool] | None = Field(
        None, description="ALTER ROLE ... SET name = value, restored on revert (explicit opt-in)"
    )
    reconnect: bool = Field(False, description="end the role's current sessions so they reconnect with settings")
    duration: Duration | None = Field(None, description="keep slowing this long")
    lock_timeout: Duration = Field(1.0, description="skip a stall whose lock is not free within this")

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        return table_mode(v)

    @field_validator("settings")
    @classmethod
    def _names(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        for k in v or {}:
            if not _GUC.match(k):
                raise ValueError(f"{k!r} is not a setting name")
        return v

    @model_validator(mode="after")
    def _check(self) -> SlowParams:
        if not self.tables and not self.settings:
            raise ValueError("give tables (lock stalls) and/or settings (ALTER ROLE ... SET)")
        if self.settings and not self.role:
            raise ValueError("settings need role: the role whose sessions get them")
        if self.reconnect and not self.role:
            raise ValueError("reconnect needs role")
        if self.tables is not None and not self.tables:
            raise ValueError("tables is empty")
        if self.tables and not 0 < self.stall <= self.period:
            raise ValueError("stall must be positive and not longer than period")
        return self


@registry.faults.register("db.slow")
class DbSlow(DbFault):
    name = "db.slow"
    summary = "stall queries on chosen tables with short locks, or change a role's settings"
    Params = SlowParams
    params: SlowParams

    def __init__(self, params: SlowParams, target: Any, ctx: Any):
        super().__init__(params, target, ctx)
        self.previous: dict[str, str | None] | None = None
        self.monitor: psycopg.Connection | None = None
        self.holder: psycopg.Connection | None = None
        self.sampler: Sampler | None = None
        self.changed: dict[str, Any] = {}
        self.stalls = 0
        self.stall_ms = 0.0
        self.missed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._applied = False

    def prepare(self) -> None:
        super().prepare()
        self._read_previous()

    def _read_previous(self) -> None:
        p = self.params
        if self.previous is not None or not p.settings or not p.role:
            return
        conn = connect(p.dsn, self.app_name, connect_timeout=p.connect_timeout)
        try:
            now = read_role_settings(conn, p.role, p.database)
        except psycopg.Error as exc:
            raise self.error("reading the role's settings failed", exc) from None
        finally:
            close_quietly(conn)
        self.previous = {k: now.get(k) for k in p.settings}

    def record(self) -> dict[str, Any]:
        self._read_previous()
        rec = super().record()
        if self.params.settings:
            rec.update(role=self.params.role, database=self.params.database, previous_settings=self.previous)
        return rec

    def apply(self) -> dict[str, Any]:
        p = self.params
        self._read_previous()
        try:
            self.monitor = self.open()
            ev: dict[str, Any] = {"server": self.server(), "application_name": self.app_name}
            if p.settings and p.role:
                ev["settings"] = self._change_settings()
                if p.reconnect:
                    ev["reconnected"] = self._reconnect()
            if p.tables:
                self.holder = self.open()
                # the first stall starts here, so a table that cannot be locked fails apply clearly
                first = self._lock_tables()
                self.sampler = Sampler(
                    self.monitor, {self.holder.info.backend_pid}, 0.05, self.ctx, self.name
                ).start()
                self._thread = threading.Thread(
                    target=self._loop, args=(first,), name="chaoskit-db.slow", daemon=True
                )
                self._thread.start()
                ev["stalls"] = {"tables": p.tables, "mode": p.mode.upper(), "stall_ms": round(p.stall * 1000), "period_ms": round(p.period * 1000)}
        except FaultError:
            self._undo_settings()
            self.close_all()
            raise
        self._applied = True
        return ev

    def _change_settings(self) -> dict[str, Any]:
        p = self.params
        assert self.monitor is not None and p.settings and p.role and self.previous is not None
        head = _role_clause(p.role, p.database)
        out: dict[str, Any] = {}
        for k, v in p.settings.items():
            try:
                self.monitor.execute(
                    sql.SQL("{} SET {} = {}").format(head, guc(k), sql.Literal(setting_value(v)))
                )
            except psycopg.errors.InsufficientPrivilege as exc:
                raise self.error(
                    f"not allowed to ALTER ROLE {p.role} (use a DSN of a superuser or of a role with "
                    "CREATEROLE/ownership)",
                    exc,
                ) from None
            except psycopg.Error as exc:
                raise self.error(f"cannot set {k} = {setting_value(v)!r}", exc) from None
            self.changed[k] = self.previous.get(k)
            out[k] = {"before": self.previous.get(k), "now": setting_value(v)}
        return out

    def _reconnect(self) -> list[int]:
        assert self.monitor is not None
        rows = self.monitor.execute(
            """
            select pid from pg_stat_activity
            where usename = %s and backend_type = 'client backend' and pid <> pg_backend_pid()
              and coalesce(application_name, '') not like 'chaoskit%%'
              and (%s::text is null or datname = %s) and pg_terminate_backend(pid, 1000)
            """,
            (self.params.role, self.params.database, self.params.database),
        ).fetchall()
        return [r[0] for r in rows]

    def _undo_settings(self) -> dict[str, Any]:
        p = self.params
        if not self.changed or not p.role or self.monitor is None or self.monitor.closed:
            return {}
        try:
            done = restore_settings(self.monitor, p.role, p.database, dict(self.changed))
        except psycopg.Error as exc:
            raise self.error("restoring the role's settings failed", exc) from None
        self.changed.clear()
        return done

    def _lock_tables(self) -> bool:
        """Begin one stall: lock the tables. False when they were not free within lock_timeout."""
        p = self.params
        assert self.holder is not None and p.tables
        names = sql.SQL(", ").join(qualified(t) for t in p.tables)
        try:
            self.holder.execute("BEGIN")
            self.holder.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(ms(p.lock_timeout))))
            self.holder.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(names, sql.SQL(p.mode.upper())))
        except psycopg.errors.LockNotAvailable:
            rollback_quietly(self.holder)
            self.missed += 1
            return False
        except psycopg.Error as exc:
            rollback_quietly(self.holder)
            raise self.error("locking the tables failed", exc) from None
        return True

    def _loop(self, locked: bool) -> None:
        """A stall starts every ``period`` (fixed rate: time spent queueing for the lock behind
        busy writers counts inside the period) and holds for ``stall``."""
        p = self.params
        t0 = time.monotonic()
        end = t0 + p.duration if p.duration is not None else None
        assert self.holder is not None
        k = 0
        while True:
            if locked:
                t = time.monotonic()
                stopped = self._stop.wait(p.stall)
                rollback_quietly(self.holder)
                self.stalls += 1
                self.stall_ms += (time.monotonic() - t) * 1000
                if stopped:
                    return
            k += 1
            next_start = t0 + k * p.period
            if self._stop.wait(max(0.0, next_start - time.monotonic())):
                return
            if end is not None and time.monotonic() >= end:
                return
            try:
                locked = self._lock_tables()
            except FaultError as exc:
                self._error = str(exc)
                return

    def revert(self) -> dict[str, Any] | None:
        if self._reverted is not None:
            return self._reverted
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        rollback_quietly(self.holder)
        ev: dict[str, Any] = {}
        if self.params.tables and self._applied:
            ev["stalls"] = {
                "count": self.stalls,
                "held_ms_total": round(self.stall_ms),
                "missed": self.missed,
                "waiters": self.sampler.stop() if self.sampler else {},
            }
        if self.params.settings:
            ev["settings_restored"] = self._undo_settings()
        if self._error:
            ev["error"] = self._error
        stalled = bool(ev.get("stalls", {}).get("waiters", {}).get("distinct_waiters"))
        ev["took_effect"] = stalled or bool(ev.get("settings_restored"))
        ev["sessions_left"] = self.close_all(self.monitor)
        self._reverted = ev
        return ev

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
        out = super().revert_record(record, ctx) or {}
        previous = record.get("previous_settings")
        role = record.get("role")
        dsn = record.get("dsn")
        if previous and role and dsn:
            protect(dsn, ctx)
            run_id = ctx.run_id if ctx is not None else "rollback"
            conn = connect(dsn, make_app_name(run_id, "rollback", "slow"))
            try:
                out["settings_restored"] = restore_settings(conn, role, record.get("database"), previous)
            except psycopg.Error as exc:
                raise FaultError(f"db.slow: restoring settings of role {role}: {clean_error(exc, dsn)}") from None
            finally:
                close_quietly(conn)
        return out
