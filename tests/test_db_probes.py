"""db.activity and db.replication_lag against real PostgreSQL 15 (a real standby included)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from pydantic import ValidationError

from chaoskit import registry
from chaoskit.errors import ProbeError
from chaoskit.faults.db import DbLock
from chaoskit.faults.db.lock import LockParams
from chaoskit.probes.db import ActivityParams, DbActivity, DbReplicationLag, LagParams
from chaoskit.runner.context import RunContext

pytestmark = pytest.mark.timeout(120)


def ctx() -> RunContext:
    return RunContext(run_id="t1", seed=1)


def test_registered() -> None:
    assert registry.probes.get("db.activity") is DbActivity
    assert registry.probes.get("db.replication_lag") is DbReplicationLag


def test_activity_sees_states_long_transactions_and_lock_waits(fresh_db: str) -> None:
    dbname = fresh_db.rsplit("/", 1)[1]
    probe = DbActivity(ActivityParams(dsn=fresh_db, database=dbname), ctx())
    quiet = probe.read()
    assert quiet == {
        "by_state": {},
        "total": 0,
        "longest_xact_ms": 0,
        "waiting_locks": 0,
        "waiting_backends": 0,
        "chaoskit_sessions": 0,
    }
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("create table t (id int primary key, v int)")
        c.execute("insert into t values (1, 0)")
    holder = psycopg.connect(fresh_db, application_name="holder")
    holder.execute("update t set v = 1 where id = 1")  # idle in transaction, holding the row
    waiter = psycopg.connect(fresh_db, application_name="waiter", autocommit=True)
    t = threading.Thread(target=lambda: waiter.execute("update t set v = 2 where id = 1"), daemon=True)
    t.start()
    elsewhere = psycopg.connect(fresh_db.rsplit("/", 1)[0] + "/postgres")  # other database: not counted
    elsewhere.execute("select 1")
    time.sleep(0.4)
    v = probe.read()
    assert v["by_state"] == {"idle in transaction": 1, "active": 1}
    assert v["total"] == 2
    assert v["longest_xact_ms"] >= 400
    assert v["waiting_locks"] >= 1 and v["waiting_backends"] == 1
    assert v["chaoskit_sessions"] == 0
    holder.rollback()
    t.join(5)

    lock = DbLock(LockParams(dsn=fresh_db, table="t"), None, ctx())
    lock.apply()
    assert probe.read()["chaoskit_sessions"] == 2
    lock.revert()
    assert probe.read()["chaoskit_sessions"] == 0
    # the probe's own session is short-lived: none left behind
    with psycopg.connect(fresh_db, autocommit=True) as c:
        assert c.execute("select count(*) from pg_stat_activity where application_name like 'chaoskit%'").fetchone() == (0,)
    for c in (holder, waiter, elsewhere):
        c.close()


def test_activity_unreachable_is_a_probe_error_without_password() -> None:
    probe = DbActivity(ActivityParams(dsn="postgresql://u:pr0bepw@127.0.0.1:1/x", connect_timeout=1), ctx())
    with pytest.raises(ProbeError, match="cannot connect") as e:
        probe.read()
    assert "pr0bepw" not in str(e.value)
    with pytest.raises(ValidationError, match="Extra inputs"):
        ActivityParams(dsn="host=x", databse="y")


def test_replication_lag_without_replica_is_a_probe_error(postgres: str) -> None:
    probe = DbReplicationLag(LagParams(dsn=postgres), ctx())
    with pytest.raises(ProbeError, match="no replica"):
        probe.read()


STANDBY = (
    "set -e; rm -rf /tmp/standby; "
    "su postgres -c 'pg_basebackup -D /tmp/standby -R -h 127.0.0.1 -p 5432 -U postgres -X stream'; "
    "su postgres -c \"/usr/lib/postgresql/15/bin/pg_ctl -D /tmp/standby -l /tmp/standby.log -w "
    "-o '-p 5433 -c listen_addresses=* -c hot_standby=on' start\""
)


@pytest.fixture(scope="module")
def primary_with_standby(docker_client, base_image, test_network) -> Iterator[tuple[str, str]]:
    """Its own PostgreSQL container plus a streaming standby (port 5433) inside it."""
    from conftest import start_postgres

    c, dsn = start_postgres(docker_client, base_image, test_network)
    try:
        code, out = c.exec_run(["bash", "-c", STANDBY])
        assert code == 0, out.decode()[-2000:]
        standby = dsn.replace(":5432/", ":5433/")
        deadline = time.monotonic() + 30
        while True:
            with psycopg.connect(dsn, autocommit=True) as conn:
                if conn.execute("select count(*) from pg_stat_replication where state = 'streaming'").fetchone() == (1,):
                    break
            assert time.monotonic() < deadline, "standby did not start streaming"
            time.sleep(0.2)
        yield dsn, standby
    finally:
        c.remove(force=True)


def test_replication_lag_with_a_real_standby(primary_with_standby: tuple[str, str]) -> None:
    primary, standby = primary_with_standby
    table = f"lag_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(primary, autocommit=True) as c:
        c.execute(f"create table {table} as select g from generate_series(1, 1000) g")
    v = DbReplicationLag(LagParams(dsn=primary), ctx()).read()
    assert v["role"] == "primary" and v["replicas"] == 1
    assert v["by_replica"][0]["state"] == "streaming"
    assert v["max_lag_bytes"] >= 0 and v["max_lag_seconds"] >= 0
    with pytest.raises(ProbeError, match="named 'nope'"):
        DbReplicationLag(LagParams(dsn=primary, replica="nope"), ctx()).read()
    # the table reaches the standby; the standby's own view of its lag then settles
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(standby, autocommit=True) as s:
            if s.execute("select count(*) from pg_class where relname = %s", (table,)).fetchone() == (1,):
                break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    sv = DbReplicationLag(LagParams(dsn=standby), ctx()).read()
    assert sv["role"] == "standby" and sv["lag_bytes"] == 0
    assert 0 <= sv["lag_seconds"] < 60
