"""``db.exhaust``: take connections until only ``reserve`` slots of max_connections are left.

The application then meets "too many clients" on new connections while its pooled ones keep
working. A non-superuser cannot use the superuser_reserved_connections slots, so for such a
DSN the target is lowered to what it can really take. Sessions carry the server-side idle
timeouts (``max_hold``, default duration + 60 s) so a frozen runner cannot hold them forever.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from pydantic import Field, model_validator

from chaoskit import registry
from chaoskit.errors import FaultError
from chaoskit.faults.db.common import DbFault, DbParams
from chaoskit.units import Duration


class ExhaustParams(DbParams):
    reserve: int = Field(5, description="client slots of max_connections left free")
    max: int | None = Field(None, description="never hold more than this many connections")
    duration: Duration | None = Field(None, description="hold this long, then release")

    @model_validator(mode="after")
    def _check(self) -> ExhaustParams:
        if self.reserve < 0:
            raise ValueError("reserve cannot be negative")
        if self.max is not None and self.max < 2:
            raise ValueError("max must be at least 2 (one session watches the others)")
        return self


@registry.faults.register("db.exhaust")
class DbExhaust(DbFault):
    name = "db.exhaust"
    summary = "hold PostgreSQL connections up to max_connections minus a reserve"
    Params = ExhaustParams
    params: ExhaustParams

    def __init__(self, params: ExhaustParams, target: Any, ctx: Any):
        super().__init__(params, target, ctx)
        self.monitor: psycopg.Connection | None = None
        self.info: dict[str, Any] = {}
        self._applied = False

    def _client_backends(self) -> int:
        assert self.monitor is not None
        row = self.monitor.execute(
            "select count(*) from pg_stat_activity where backend_type = 'client backend'"
        ).fetchone()
        return int(row[0]) if row else 0

    def apply(self) -> dict[str, Any]:
        p = self.params
        self.monitor = self.open()
        try:
            row = self.monitor.execute(
                """
                select current_setting('max_connections')::int,
                       current_setting('superuser_reserved_connections')::int,
                       (select rolsuper from pg_roles where rolname = current_user)
                """
            ).fetchone()
        except psycopg.Error as exc:
            self.close_all()
            raise self.error("reading max_connections failed", exc) from None
        assert row is not None
        max_conn, su_reserved, is_super = int(row[0]), int(row[1]), bool(row[2])
        before = self._client_backends()  # includes our monitor session
        limit = max_conn - p.reserve
        if not is_super:
            limit = min(limit, max_conn - su_reserved)
        want = limit - before
        if p.max is not None:
            want = min(want, p.max - 1)  # the monitor session counts towards max
        if want <= 0:
            self.close_all()
            raise FaultError(
                f"{self.name}: {before} client connections already, limit {limit} "
                f"(max_connections {max_conn} - reserve {p.reserve}): nothing to take"
            )
        t = time.monotonic()
        refused: str | None = None
        opened = 0
        for _ in range(max(0, want)):
            if self.ctx.stop.is_set():  # interrupted: the runner reverts what was taken so far
                break
            try:
                self.open()
            except FaultError as exc:  # the server ran out before our count did: exhausted anyway
                refused = str(exc)
                break
            opened += 1
        after = self._client_backends()
        self.info = {
            "server": self.server(),
            "application_name": self.app_name,
            "max_connections": max_conn,
            "superuser_reserved_connections": su_reserved,
            "superuser": is_super,
            "reserve": p.reserve,
            "client_connections_before": before - 1,
            "taken": opened + 1,
            "client_connections_now": after,
            "free_now": max_conn - after,
            "open_ms": round((time.monotonic() - t) * 1000),
        }
        if refused:
            self.info["stopped_early"] = refused
        self.info["took_effect"] = opened > 0
        self._applied = True
        self.ctx.event("db.exhaust.holding", taken=opened + 1, free_now=max_conn - after)
        return self.info

    def revert(self) -> dict[str, Any] | None:
        if self._reverted is not None:
            return self._reverted
        taken = len(self._conns)
        left = self.close_all(self.monitor)
        self._reverted = {"released": taken, "sessions_left": left}
        return self._reverted
