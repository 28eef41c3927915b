"""PostgreSQL probes: ``db.activity`` and ``db.replication_lag``.

Each read opens a short session (application_name ``chaoskit:probe:<name>``) and closes it, so a
probe never leaves a session behind to be mistaken for a leftover fault; the probe's own session
is excluded from what it reports.

``db.replication_lag`` on a primary reports every standby in pg_stat_replication; on a standby
it reports its own replay lag. On a primary with no standby it raises ProbeError ("no replica"):
a lag check against a stack without replicas is a mistake in the experiment, not a value.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pydantic import ConfigDict, Field, field_validator

from chaoskit import registry
from chaoskit.errors import FaultError, ProbeError
from chaoskit.faults.db.common import check_dsn, clean_error, close_quietly, connect, protect
from chaoskit.probes.base import Probe, ProbeParams
from chaoskit.units import Duration


class DbProbeParams(ProbeParams):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    dsn: str = Field(description="PostgreSQL DSN; its password never reaches the journal")
    connect_timeout: Duration = Field(5.0, description="give up connecting after this long")

    @field_validator("dsn")
    @classmethod
    def _dsn_ok(cls, v: str) -> str:
        return check_dsn(v)


class ActivityParams(DbProbeParams):
    database: str | None = Field(None, description="count only backends of this database")


class LagParams(DbProbeParams):
    replica: str | None = Field(None, description="only the standby with this application_name")


class _DbProbe(Probe):
    params: DbProbeParams

    def __init__(self, params: DbProbeParams, ctx: Any):
        super().__init__(params, ctx)
        protect(params.dsn, ctx)

    def _query(self, fn: Any) -> Any:
        try:
            conn = connect(self.params.dsn, f"chaoskit:probe:{self.name}", connect_timeout=self.params.connect_timeout)
        except FaultError as exc:
            raise ProbeError(str(exc)) from None
        try:
            return fn(conn)
        except psycopg.Error as exc:
            raise ProbeError(f"{self.name}: {clean_error(exc, self.params.dsn)}") from None
        finally:
            close_quietly(conn)


@registry.probes.register("db.activity")
class DbActivity(_DbProbe):
    """{by_state, total, longest_xact_ms, waiting_locks, waiting_backends, chaoskit_sessions}
    over client backends (of ``database`` if given), the probe's own session excluded."""

    name = "db.activity"
    summary = "PostgreSQL backends by state, longest transaction, waiting locks"
    Params = ActivityParams
    params: ActivityParams

    def read(self) -> dict[str, Any]:
        db = self.params.database

        def run(conn: psycopg.Connection) -> dict[str, Any]:
            rows = conn.execute(
                """
                select coalesce(state, 'unknown'), count(*),
                       max(extract(epoch from clock_timestamp() - xact_start) * 1000),
                       count(*) filter (where application_name like 'chaoskit%%'),
                       count(*) filter (where wait_event_type = 'Lock')
                from pg_stat_activity
                where backend_type = 'client backend' and pid <> pg_backend_pid()
                  and (%(db)s::text is null or datname = %(db)s)
                group by 1
                """,
                {"db": db},
            ).fetchall()
            locks = conn.execute(
                """
                select count(*) from pg_locks l left join pg_database d on d.oid = l.database
                where not l.granted and (%(db)s::text is null or d.datname = %(db)s or l.database is null)
                """,
                {"db": db},
            ).fetchone()
            return {
                "by_state": {r[0]: int(r[1]) for r in rows},
                "total": sum(int(r[1]) for r in rows),
                "longest_xact_ms": max([round(float(r[2])) for r in rows if r[2] is not None], default=0),
                "waiting_locks": int(locks[0]) if locks else 0,
                "waiting_backends": sum(int(r[4]) for r in rows),
                "chaoskit_sessions": sum(int(r[3]) for r in rows),
            }

        return self._query(run)


@registry.probes.register("db.replication_lag")
class DbReplicationLag(_DbProbe):
    """Primary: {role: primary, replicas, max_lag_seconds, max_lag_bytes, by_replica};
    standby: {role: standby, lag_seconds, lag_bytes}. ProbeError when a primary has no replica
    (or not the one named by ``replica``)."""

    name = "db.replication_lag"
    summary = "replication lag in seconds and bytes"
    Params = LagParams
    params: LagParams

    def read(self) -> dict[str, Any]:
        want = self.params.replica

        def run(conn: psycopg.Connection) -> dict[str, Any]:
            standby = conn.execute("select pg_is_in_recovery()").fetchone()
            if standby and standby[0]:
                row = conn.execute(
                    """
                    select coalesce(extract(epoch from clock_timestamp() - pg_last_xact_replay_timestamp()), 0),
                           coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)
                    """
                ).fetchone()
                assert row is not None
                return {"role": "standby", "lag_seconds": round(float(row[0]), 3), "lag_bytes": int(row[1])}
            rows = conn.execute(
                """
                select application_name, host(client_addr), state,
                       coalesce(extract(epoch from replay_lag), 0),
                       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)
                from pg_stat_replication
                where %(name)s::text is null or application_name = %(name)s
                """,
                {"name": want},
            ).fetchall()
            if not rows:
                which = f"named {want!r} " if want else ""
                raise ProbeError(f"{self.name}: no replica {which}in pg_stat_replication: this server has no standby")
            by = [
                {"name": r[0], "client_addr": r[1], "state": r[2], "lag_seconds": round(float(r[3]), 3), "lag_bytes": int(r[4])}
                for r in rows
            ]
            return {
                "role": "primary",
                "replicas": len(by),
                "max_lag_seconds": max(b["lag_seconds"] for b in by),
                "max_lag_bytes": max(b["lag_bytes"] for b in by),
                "by_replica": by,
            }

        return self._query(run)
