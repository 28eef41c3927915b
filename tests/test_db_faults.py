"""db.* faults against a real PostgreSQL 15 container (deadlock_timeout=200ms)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from chaoskit import registry
from chaoskit.errors import FaultError
from chaoskit.faults.db import DbDeadlock, DbExhaust, DbLock, DbSlow, DbTerminate
from chaoskit.faults.db.deadlock import DeadlockParams
from chaoskit.faults.db.exhaust import ExhaustParams
from chaoskit.faults.db.lock import LockParams
from chaoskit.faults.db.slow import SlowParams
from chaoskit.faults.db.terminate import TerminateParams
from chaoskit.runner.context import RunContext
from chaoskit.runner.journal import Journal, load_journal
from chaoskit.secrets import Redactor

pytestmark = pytest.mark.timeout(120)


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture()
def ctx(tmp_path: Path) -> RunContext:
    red = Redactor()
    journal = Journal(tmp_path / "j.json", red, run_id="t1")
    return RunContext(run_id="t1", seed=1, journal=journal, redactor=red)


@pytest.fixture()
def accounts(fresh_db: str) -> str:
    """A small ledger-like table: accounts 1..4 with integer cents."""
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("create table accounts (id int primary key, balance_cents bigint not null)")
        c.execute("insert into accounts select g, 10000 from generate_series(1, 4) g")
    return fresh_db


def app_conn(dsn: str, name: str = "app", **kw: Any) -> psycopg.Connection:
    return psycopg.connect(dsn, application_name=name, **kw)


def chaoskit_sessions(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn, autocommit=True, application_name="observer") as c:
        return c.execute(
            "select pid, application_name from pg_stat_activity where application_name like 'chaoskit%'"
        ).fetchall()


def locks_of(dsn: str, pids: list[int]) -> int:
    with psycopg.connect(dsn, autocommit=True, application_name="observer") as c:
        row = c.execute("select count(*) from pg_locks where pid = any(%s)", (pids,)).fetchone()
    return int(row[0]) if row else 0


def assert_clean(dsn: str, fault: Any) -> None:
    """The 'after rollback' condition: no chaoskit session, no lock held by the fault's pids."""
    assert chaoskit_sessions(dsn) == []
    assert locks_of(dsn, fault.record()["pids"]) == 0


class Client(threading.Thread):
    """An app-like client running one transaction in a thread, timing when it finished."""

    def __init__(self, dsn: str, body: Callable[[psycopg.Connection], Any], name: str = "app"):
        super().__init__(daemon=True)
        self.conn = app_conn(dsn, name)
        self.pid = self.conn.info.backend_pid
        self.body = body
        self.done_at: float | None = None
        self.error: BaseException | None = None
        self.result: Any = None

    def run(self) -> None:
        try:
            self.result = self.body(self.conn)
            self.done_at = time.monotonic()  # the statements went through; commit is the app's own cost
            self.conn.commit()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            self.error = exc
            if not self.conn.broken:
                self.conn.rollback()
        finally:
            self.done_at = self.done_at or time.monotonic()

    def close(self) -> None:
        self.conn.close()


def wait_for(pred: Callable[[], Any], timeout: float = 5.0, step: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met in time")


def is_waiting(dsn: str, pid: int) -> bool:
    with psycopg.connect(dsn, autocommit=True, application_name="observer") as c:
        row = c.execute("select wait_event_type from pg_stat_activity where pid = %s", (pid,)).fetchone()
    return bool(row and row[0] == "Lock")


# -- db.lock ---------------------------------------------------------------------------------


def test_registered() -> None:
    for name, cls in [
        ("db.lock", DbLock),
        ("db.terminate", DbTerminate),
        ("db.deadlock", DbDeadlock),
        ("db.slow", DbSlow),
        ("db.exhaust", DbExhaust),
    ]:
        assert registry.faults.get(name) is cls
        assert cls.needs_target is False


def test_row_lock_blocks_update_and_releases_within_100ms(accounts: str, ctx: RunContext) -> None:
    fault = DbLock(LockParams(dsn=accounts, table="accounts", where="id = 1", duration="5s"), None, ctx)
    fault.prepare()
    ev = fault.apply()
    assert ev["lock"]["rows_locked"] == 1 and ev["lock"]["mode"] == "FOR UPDATE"
    assert [a for _, a in chaoskit_sessions(accounts)] == [fault.app_name] * 2

    client = Client(accounts, lambda c: c.execute("update accounts set balance_cents = balance_cents + 100 where id = 1"))
    client.start()
    wait_for(lambda: is_waiting(accounts, client.pid))
    time.sleep(0.3)
    assert client.done_at is None, "the UPDATE must block while the lock is held"

    t_revert = time.monotonic()
    out = fault.revert()
    client.join(5)
    assert client.error is None and client.done_at is not None
    unblock_ms = (client.done_at - t_revert) * 1000
    assert unblock_ms < 100, f"UPDATE proceeded {unblock_ms:.1f} ms after revert"

    assert out is not None and out["released"] is True and out["took_effect"] is True
    w = out["waiters"]
    assert "error" not in w, w.get("error")
    assert w["distinct_waiters"] == 1 and w["max_concurrent"] == 1
    assert w["waiters"][0]["pid"] == client.pid
    assert w["waiters"][0]["application_name"] == "app"
    assert "update accounts" in w["waiters"][0]["query"]
    assert w["longest_wait_ms"] >= 250
    assert w["samples"] >= 5
    # the journal shows the waiter (event written during the hold) and, via the runner, the evidence
    with ctx.journal.step("method", "fault", "db.lock") as rec:  # type: ignore[union-attr]
        rec["evidence"] = {"apply": ev, "revert": out}
    j = load_journal(ctx.journal.path)  # type: ignore[union-attr]
    waiter_events = [e for e in j["events"] if e["kind"] == "db.lock.waiter"]
    assert [e["pid"] for e in waiter_events] == [client.pid]
    assert j["steps"][0]["evidence"]["revert"]["waiters"]["distinct_waiters"] == 1
    assert_clean(accounts, fault)
    client.close()
    with psycopg.connect(accounts) as c:
        assert c.execute("select balance_cents from accounts where id = 1").fetchone() == (10100,)
    assert fault.revert() is out  # idempotent


def test_table_lock_counts_queued_waiters(accounts: str, ctx: RunContext) -> None:
    fault = DbLock(LockParams(dsn=accounts, table="public.accounts", mode="EXCLUSIVE"), None, ctx)
    ev = fault.apply()
    assert ev["lock"] == ev["lock"] | {"kind": "table", "mode": "EXCLUSIVE", "relation": "public.accounts"}
    # reads pass an EXCLUSIVE lock, writes queue behind it
    with app_conn(accounts, "reader", autocommit=True) as r:
        assert r.execute("select count(*) from accounts").fetchone() == (4,)
    clients = [
        Client(accounts, lambda c, i=i: c.execute("update accounts set balance_cents = 0 where id = %s", (i,)), f"w{i}")
        for i in (1, 2, 3)
    ]
    for c in clients:
        c.start()
    wait_for(lambda: all(is_waiting(accounts, c.pid) for c in clients))
    time.sleep(0.15)
    out = fault.revert()
    for c in clients:
        c.join(5)
        assert c.error is None
        c.close()
    assert out is not None
    assert out["waiters"]["max_concurrent"] == 3
    assert {w["pid"] for w in out["waiters"]["waiters"]} == {c.pid for c in clients}
    assert_clean(accounts, fault)


def test_advisory_lock(accounts: str, ctx: RunContext) -> None:
    fault = DbLock(LockParams(dsn=accounts, key=[7, 42]), None, ctx)
    assert fault.apply()["lock"]["key"] == [7, 42]
    with app_conn(accounts, "app", autocommit=True) as c:
        assert c.execute("select pg_try_advisory_lock(7, 42)").fetchone() == (False,)
        out = fault.revert()
        assert c.execute("select pg_try_advisory_lock(7, 42)").fetchone() == (True,)
    assert out is not None and out["took_effect"] is False  # nobody waited: it proved nothing
    assert_clean(accounts, fault)


def test_lock_fails_clearly_when_it_cannot_get_the_lock(accounts: str, ctx: RunContext) -> None:
    with app_conn(accounts) as other:
        other.execute("select * from accounts where id = 2 for update")
        fault = DbLock(LockParams(dsn=accounts, table="accounts", where="id = 2", lock_timeout="200ms"), None, ctx)
        t = time.monotonic()
        with pytest.raises(FaultError, match="lock_timeout 200ms"):
            fault.apply()
        assert time.monotonic() - t < 2
        other.rollback()
    assert_clean(accounts, fault)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"table": "accounts", "where": "id = 999"}, "matched no rows"),
        ({"table": "nope"}, "does not exist"),
        ({"table": "accounts", "where": "id = = 1"}, "syntax error"),
    ],
)
def test_lock_bad_input_is_a_clear_fault_error(accounts: str, ctx: RunContext, params: dict, match: str) -> None:
    fault = DbLock(LockParams(dsn=accounts, **params), None, ctx)
    with pytest.raises(FaultError, match=match):
        fault.apply()
    assert_clean(accounts, fault)


def test_params_reject_bad_values() -> None:
    with pytest.raises(ValidationError, match="unknown table lock mode"):
        LockParams(dsn="host=x", table="t", mode="mega")
    with pytest.raises(ValidationError, match="needs table"):
        LockParams(dsn="host=x")
    with pytest.raises(ValidationError, match="Extra inputs"):
        LockParams(dsn="host=x", table="t", tabel="t")
    with pytest.raises(ValidationError, match="refusing to drop every connection"):
        TerminateParams(dsn="host=x")
    with pytest.raises(ValidationError, match="not an IP address"):
        TerminateParams(dsn="host=x", client_addr="nowhere")
    with pytest.raises(ValidationError) as e:
        LockParams(dsn="postgresql://u:hunter22@h/db?sslmode=bogus%", table="t", mode="x")
    assert "hunter22" not in str(e.value)


def test_unreachable_server_is_a_clear_error_without_password(ctx: RunContext) -> None:
    fault = DbLock(LockParams(dsn="postgresql://app:s3cretpw@127.0.0.1:1/db", table="t", connect_timeout=1), None, ctx)
    with pytest.raises(FaultError, match="cannot connect to PostgreSQL at app@127.0.0.1:1/db") as e:
        fault.apply()
    assert "s3cretpw" not in str(e.value)


# -- crash rollback ----------------------------------------------------------------------------


def test_revert_record_after_the_fault_object_is_gone(accounts: str, ctx: RunContext) -> None:
    """A dead runner: only the ledger record is left, yet the lock and its sessions go."""
    fault = DbLock(LockParams(dsn=accounts, table="accounts", where="id = 3"), None, ctx)
    # what the runner's ledger holds: written *before* apply, so no pids yet; the names suffice
    record = json.loads(json.dumps(fault.record()))
    assert record["pids"] == [] and record["application_names"] == [fault.app_name]
    fault.apply()
    pids = fault.record()["pids"]
    conns = list(fault._conns)
    if fault.sampler:
        fault.sampler._stop.set()
    del fault  # the Python object is thrown away; its sessions stay open on the server
    assert len(chaoskit_sessions(accounts)) == 2
    with app_conn(accounts, autocommit=True) as c:
        c.execute("set lock_timeout = '100ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            c.execute("update accounts set balance_cents = 1 where id = 3")

    out = DbLock.revert_record(record, RunContext(run_id="rollback", seed=0))
    assert out is not None
    assert sorted(s["pid"] for s in out["sessions_ended"]) == sorted(pids)
    assert all(s["ended"] for s in out["sessions_ended"])
    assert chaoskit_sessions(accounts) == []
    assert locks_of(accounts, pids) == 0
    with app_conn(accounts, autocommit=True) as c:
        c.execute("set lock_timeout = '1s'")
        c.execute("update accounts set balance_cents = 1 where id = 3")
    assert DbLock.revert_record(record, None) == {"sessions_ended": []}  # idempotent
    for c in conns:
        c.close()


def test_password_never_in_evidence_or_journal(accounts: str, tmp_path: Path) -> None:
    role = f"r_{uuid.uuid4().hex[:8]}"
    pw = f"pw-{uuid.uuid4().hex}"
    with psycopg.connect(accounts, autocommit=True) as c:
        c.execute(f"create role {role} login password '{pw}'")
        c.execute(f"grant all on accounts to {role}")
    dsn = accounts.replace("postgresql://postgres@", f"postgresql://{role}:{pw}@")
    red = Redactor()
    journal = Journal(tmp_path / "j.json", red, run_id="pw")
    ctx = RunContext(run_id="pw", seed=1, journal=journal, redactor=red)
    try:
        lock = DbLock(LockParams(dsn=dsn, table="accounts", where="id = 4", duration="1s"), None, ctx)
        client = Client(accounts, lambda c: c.execute(f"update accounts set balance_cents = 5 where id = 4 and '{pw}' <> ''"))
        ev = lock.apply()
        client.start()
        wait_for(lambda: is_waiting(accounts, client.pid))
        time.sleep(0.1)
        out = lock.revert()
        client.join(5)
        client.close()
        term = DbTerminate(TerminateParams(dsn=dsn, application_name="nobody", require_match=False), None, ctx)
        ev2 = term.apply()
        out2 = term.revert()
        everything = json.dumps([ev, out, ev2, out2, lock.describe()])
        assert role in everything and pw not in everything
        with journal.step("method", "fault", "db.lock") as rec:
            rec["evidence"] = {"apply": ev, "revert": out, "dsn": dsn}
        text = Path(journal.path).read_text()
        assert "db.lock.waiter" in text and pw not in text
        assert pw in json.dumps(lock.record())  # the private ledger keeps it, for rollback
    finally:
        with psycopg.connect(accounts, autocommit=True) as c:
            c.execute(f"drop owned by {role}")
            c.execute(f"drop role {role}")


# -- db.terminate ------------------------------------------------------------------------------


def alive(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("select 1")
        return True
    except psycopg.OperationalError:
        return False


def test_terminate_drops_exactly_the_matching_backends(accounts: str, ctx: RunContext) -> None:
    targets = [app_conn(accounts, f"app-{i}", autocommit=True) for i in (1, 2)]
    bystander = app_conn(accounts, "bystander", autocommit=True)
    lookalike = app_conn(accounts, "app_3", autocommit=True)  # '_' must not act as a wildcard
    pids = {c.info.backend_pid for c in targets}
    fault = DbTerminate(TerminateParams(dsn=accounts, application_name="app-*"), None, ctx)
    ev = fault.apply()
    assert {t["pid"] for t in ev["terminated"]} == pids
    assert all(t["terminated"] and t["application_name"].startswith("app-") for t in ev["terminated"])
    assert {t["user"] for t in ev["terminated"]} == {"postgres"}
    assert all(t["client_addr"] for t in ev["terminated"])
    assert not any(alive(c) for c in targets)
    assert alive(bystander) and alive(lookalike)
    out = fault.revert()
    assert out is not None and out["terminated_total"] == 2
    assert_clean(accounts, fault)
    for c in [*targets, bystander, lookalike]:
        c.close()


def test_terminate_by_query_user_database_and_client_addr(accounts: str, postgres: str, ctx: RunContext) -> None:
    sleeper = Client(accounts, lambda c: c.execute("select pg_sleep(30)"), name="worker")
    idle = app_conn(accounts, "worker", autocommit=True)
    other_db = app_conn(postgres, "worker", autocommit=True)
    sleeper.start()
    wait_for(lambda: chaoskit_sessions(accounts) == [] and sleeper.conn.info.backend_pid)
    time.sleep(0.2)
    ev = DbTerminate(TerminateParams(dsn=accounts, query=r"pg_sleep\(", state=["active"]), None, ctx).apply()
    assert [t["pid"] for t in ev["terminated"]] == [sleeper.pid]
    sleeper.join(5)
    assert isinstance(sleeper.error, psycopg.OperationalError)
    assert alive(idle) and alive(other_db)

    dbname = accounts.rsplit("/", 1)[1]
    ev = DbTerminate(TerminateParams(dsn=accounts, database=dbname, user="postgres"), None, ctx).apply()
    assert [t["pid"] for t in ev["terminated"]] == [idle.info.backend_pid]
    assert alive(other_db)

    addr = ev["terminated"][0]["client_addr"]
    miss = DbTerminate(
        TerminateParams(dsn=postgres, client_addr="10.255.0.0/16", application_name="worker", require_match=False),
        None,
        ctx,
    )
    assert miss.apply()["terminated"] == []
    with pytest.raises(FaultError, match="no connection matched"):
        DbTerminate(TerminateParams(dsn=postgres, client_addr="10.255.0.0/16", application_name="worker"), None, ctx).apply()
    ev = DbTerminate(TerminateParams(dsn=postgres, client_addr=f"{addr}/32", application_name="worker"), None, ctx).apply()
    assert [t["pid"] for t in ev["terminated"]] == [other_db.info.backend_pid]
    miss.revert()
    assert chaoskit_sessions(accounts) == [] and chaoskit_sessions(postgres) == []
    for c in (idle, other_db):
        c.close()
    sleeper.close()


def test_terminate_keeps_dropping_for_a_window(accounts: str, ctx: RunContext) -> None:
    """An app that reconnects is dropped again every `every` until the window ends."""
    stop = threading.Event()
    drops: list[int] = []

    def app() -> None:
        conn = app_conn(accounts, "reconnecting", autocommit=True)
        while not stop.is_set():
            if not alive(conn):
                drops.append(conn.info.backend_pid)
                conn.close()
                conn = app_conn(accounts, "reconnecting", autocommit=True)
            time.sleep(0.02)
        conn.close()

    t = threading.Thread(target=app, daemon=True)
    t.start()
    time.sleep(0.2)
    fault = DbTerminate(
        TerminateParams(dsn=accounts, application_name="reconnecting", duration="1s", every="200ms"), None, ctx
    )
    fault.apply()
    time.sleep(1.4)  # the window ends by itself after 1 s
    n_after_window = len(drops)
    out = fault.revert()
    time.sleep(0.3)
    stop.set()
    t.join(5)
    assert out is not None
    assert 4 <= out["passes"] <= 6  # t = 0, 0.2, ... 0.8 s (1.0 s may just miss the end)
    assert out["terminated_total"] >= 3
    assert len(drops) == n_after_window  # nothing dropped once the window is over
    assert len(set(t_["pid"] for t_ in out["terminated"])) == out["terminated_total"]
    assert_clean(accounts, fault)


def test_terminate_reports_what_the_role_may_not_drop(accounts: str, app_role: str, ctx: RunContext) -> None:
    """A role that sees a superuser's session (pg_read_all_stats) but may not end it: the pass
    goes on, drops what it may, and lists the refusal."""
    weak = accounts.replace("postgres@", f"{app_role}@")
    with psycopg.connect(accounts, autocommit=True) as c:
        c.execute(f"grant pg_read_all_stats to {app_role}")
    su = app_conn(accounts, "worker", autocommit=True)  # a superuser's session
    mine = app_conn(weak, "worker", autocommit=True)  # the fault role's own session
    ev = DbTerminate(TerminateParams(dsn=weak, application_name="worker"), None, ctx).apply()
    by_pid = {t["pid"]: t for t in ev["terminated"]}
    assert set(by_pid) == {su.info.backend_pid, mine.info.backend_pid}
    assert by_pid[mine.info.backend_pid]["terminated"] is True
    assert by_pid[su.info.backend_pid]["terminated"] is False
    assert by_pid[su.info.backend_pid]["refused"] == "not permitted for this role"
    assert alive(su) and not alive(mine)
    with pytest.raises(FaultError, match="none may be terminated"):
        DbTerminate(TerminateParams(dsn=weak, application_name="worker"), None, ctx).apply()
    assert chaoskit_sessions(accounts) == []
    su.close()
    mine.close()
    with psycopg.connect(accounts, autocommit=True) as c:
        c.execute(f"revoke pg_read_all_stats from {app_role}")


def test_terminate_repeat_counts_passes(accounts: str, ctx: RunContext) -> None:
    conns = [app_conn(accounts, "batch", autocommit=True)]
    fault = DbTerminate(TerminateParams(dsn=accounts, application_name="batch", repeat=3, every="500ms"), None, ctx)
    assert len(fault.apply()["terminated"]) == 1
    conns.append(app_conn(accounts, "batch", autocommit=True))  # reconnects: pass 2 or 3 drops it
    time.sleep(1.3)  # passes at 0, 0.5 and 1.0 s, then no more
    out = fault.revert()
    assert out is not None and out["passes"] == 3 and out["terminated_total"] == 2
    assert not any(alive(c) for c in conns)
    assert_clean(accounts, fault)
    for c in conns:
        c.close()


# -- db.deadlock -------------------------------------------------------------------------------


def test_deadlock_app_mode_gives_the_client_40P01(accounts: str, ctx: RunContext) -> None:
    def txn(c: psycopg.Connection) -> None:
        c.execute("update accounts set balance_cents = balance_cents - 500 where id = 2")
        c.execute("update accounts set balance_cents = balance_cents + 500 where id = 1")

    client = Client(accounts, txn)
    time.sleep(1.0)  # see the counter note in db.deadlock: the victim flushes stats at most 1/s
    fault = DbDeadlock(DeadlockParams(dsn=accounts, table="accounts", first="id = 1", second="id = 2"), None, ctx)
    ev = fault.apply()
    assert ev["first"]["rows_locked"] == 1 and ev["deadlock_timeout_ms"] == 200
    client.start()
    assert fault.wait(10)
    client.join(5)
    assert isinstance(client.error, psycopg.errors.DeadlockDetected)
    assert client.error.sqlstate == "40P01"
    out = fault.revert()
    assert out is not None
    assert out["victims"] == ["app"] and out["sqlstate"] == "40P01"
    assert out["cycles"][0]["app_pid"] == client.pid
    assert out["cycles"][0]["app_application_name"] == "app"
    assert out["cycles"][0]["precise"] is True  # A waited only on the app's own row lock
    assert "update accounts" in out["cycles"][0]["app_query"]
    assert out["deadlock_detected"] and out["counter_raised"]
    assert out["deadlocks_after"] == out["deadlocks_before"] + 1
    j = load_journal(ctx.journal.path)  # type: ignore[union-attr]
    assert [e["victim"] for e in j["events"] if e["kind"] == "db.deadlock.cycle"] == ["app"]
    assert_clean(accounts, fault)
    with psycopg.connect(accounts) as c:  # the aborted transfer left no trace: books balance
        assert c.execute("select sum(balance_cents) from accounts").fetchone() == (40000,)
    client.close()


def test_deadlock_app_mode_with_foreign_key_share_locks(accounts: str, ctx: RunContext) -> None:
    """The reference ledger's shape: a transaction that only *references* both accounts (double
    entry rows, FK checks take FOR KEY SHARE) still deadlocks in mode app, because chaoskit's
    own FOR UPDATE on the second account conflicts with the app's key-share lock."""
    with psycopg.connect(accounts, autocommit=True) as c:
        c.execute("create table entries (id serial primary key, account_id int not null references accounts, amount_cents bigint not null)")

    client = Client(accounts, lambda c: c.execute("insert into entries (account_id, amount_cents) values (2, -700), (1, 700)"))
    time.sleep(1.0)  # see the counter note in db.deadlock
    fault = DbDeadlock(DeadlockParams(dsn=accounts, table="accounts", first="id = 1", second="id = 2"), None, ctx)
    fault.apply()
    client.start()
    assert fault.wait(10)
    client.join(5)
    assert isinstance(client.error, psycopg.errors.DeadlockDetected)
    out = fault.revert()
    assert out is not None and out["victims"] == ["app"] and out["took_effect"] is True
    assert "insert into entries" in out["cycles"][0]["app_query"]
    with psycopg.connect(accounts) as c:
        assert c.execute("select count(*), coalesce(sum(amount_cents), 0) from entries").fetchone() == (0, 0)
    assert_clean(accounts, fault)
    client.close()


def test_deadlock_app_mode_retries_when_a_waiter_closes_no_cycle(accounts: str, ctx: RunContext) -> None:
    plain = Client(accounts, lambda c: c.execute("update accounts set balance_cents = 1 where id = 1"), "plain")
    crossing = Client(
        accounts,
        lambda c: (c.execute("update accounts set balance_cents = 2 where id = 2"), c.execute("update accounts set balance_cents = 3 where id = 1")),
        "crossing",
    )
    time.sleep(1.0)  # see the counter note in db.deadlock
    fault = DbDeadlock(DeadlockParams(dsn=accounts, table="accounts", first="id = 1", second="id = 2"), None, ctx)
    fault.apply()
    plain.start()  # queues on A but holds nothing A wants: no cycle, it must just go through
    plain.join(10)
    assert plain.error is None
    crossing.start()
    assert fault.wait(10)
    crossing.join(5)
    assert isinstance(crossing.error, psycopg.errors.DeadlockDetected)
    out = fault.revert()
    assert out is not None
    assert [c["victim"] for c in out["cycles"]] == ["none", "app"] and out["attempts"] == 2
    assert [c["app_application_name"] for c in out["cycles"]] == ["plain", "crossing"]
    assert out["victims"] == ["app"] and out["took_effect"] is True
    assert_clean(accounts, fault)
    plain.close()
    crossing.close()


def test_deadlock_bad_conditions_fail_at_apply(accounts: str, ctx: RunContext) -> None:
    for first, second, match in [("id = 1", "idd = 2", "second 'idd = 2' is not a valid"), ("id = 99", "id = 2", "matched no rows")]:
        fault = DbDeadlock(DeadlockParams(dsn=accounts, table="accounts", first=first, second=second), None, ctx)
        with pytest.raises(FaultError, match=match):
            fault.apply()
    assert chaoskit_sessions(accounts) == []


def test_deadlock_hold_mode_makes_app_transactions_deadlock_each_other(accounts: str, ctx: RunContext) -> None:
    def transfer(a: int, b: int) -> Callable[[psycopg.Connection], None]:
        def body(c: psycopg.Connection) -> None:
            c.execute("update accounts set balance_cents = balance_cents - 1 where id = %s", (a,))
            c.execute("update accounts set balance_cents = balance_cents + 1 where id = %s", (b,))

        return body

    t1, t2 = Client(accounts, transfer(1, 2), "t1"), Client(accounts, transfer(2, 1), "t2")
    time.sleep(1.0)  # like a long-running app: its last stats flush is > 1 s old (see db.deadlock)
    fault = DbDeadlock(
        DeadlockParams(dsn=accounts, table="accounts", first="id = 1", second="id = 2", mode="hold"), None, ctx
    )
    ev = fault.apply()
    assert ev["second"]["rows_locked"] == 1
    t1.start()
    t2.start()
    wait_for(lambda: is_waiting(accounts, t1.pid) and is_waiting(accounts, t2.pid))
    time.sleep(0.1)
    out = fault.revert()
    t1.join(5)
    t2.join(5)
    errors = [c.error for c in (t1, t2) if c.error is not None]
    assert len(errors) == 1, (t1.is_alive(), t2.is_alive(), t1.error, t2.error, out)
    assert isinstance(errors[0], psycopg.errors.DeadlockDetected)
    assert out is not None and out["waiters"]["max_concurrent"] == 2
    assert out["deadlock_detected"] and out["deadlocks_after"] == out["deadlocks_before"] + 1
    assert_clean(accounts, fault)
    for c in (t1, t2):
        c.close()


# -- db.slow -----------------------------------------------------------------------------------


def test_slow_lock_stalls_writes_and_stops_on_revert(accounts: str, ctx: RunContext) -> None:
    fault = DbSlow(SlowParams(dsn=accounts, tables=["accounts"], stall="300ms", period="400ms"), None, ctx)
    with app_conn(accounts, "app", autocommit=True) as c:
        def update_ms() -> float:
            t = time.monotonic()
            c.execute("update accounts set balance_cents = balance_cents where id = 1")
            return (time.monotonic() - t) * 1000

        base = max(update_ms() for _ in range(3))
        fault.apply()
        during = []
        t_end = time.monotonic() + 1.2
        while time.monotonic() < t_end:
            during.append(update_ms())
            time.sleep(0.05)
        out = fault.revert()
        after = max(update_ms() for _ in range(3))
    assert max(during) >= 150, during
    assert sum(during) >= 400  # ~3 stalls of 300 ms in 1.2 s, each costing the app up to 300 ms
    assert after < 100 and base < 100
    assert out is not None and out["stalls"]["count"] >= 2
    assert out["stalls"]["waiters"]["distinct_waiters"] >= 1
    assert_clean(accounts, fault)


@pytest.fixture()
def app_role(accounts: str) -> Iterator[str]:
    role = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(accounts, autocommit=True) as c:
        c.execute(f"create role {role} login")
        c.execute(f"alter role {role} set work_mem = '1MB'")
    yield role
    with psycopg.connect(accounts, autocommit=True) as c:
        c.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (role,))
        c.execute(f"drop role {role}")


def role_settings(dsn: str, role: str) -> dict[str, str]:
    with psycopg.connect(dsn.replace("postgres@", f"{role}@"), autocommit=True) as c:
        return {k: c.execute(f"show {k}").fetchone()[0] for k in ("work_mem", "enable_seqscan")}  # type: ignore[index]


def test_slow_role_settings_applied_and_restored(accounts: str, app_role: str, ctx: RunContext) -> None:
    assert role_settings(accounts, app_role) == {"work_mem": "1MB", "enable_seqscan": "on"}
    existing = psycopg.connect(accounts.replace("postgres@", f"{app_role}@"), autocommit=True)
    fault = DbSlow(
        SlowParams(dsn=accounts, role=app_role, settings={"work_mem": "64kB", "enable_seqscan": False}, reconnect=True),
        None,
        ctx,
    )
    fault.prepare()
    rec = fault.record()
    assert rec["previous_settings"] == {"work_mem": "1MB", "enable_seqscan": None}
    ev = fault.apply()
    assert ev["settings"]["work_mem"] == {"before": "1MB", "now": "64kB"}
    assert ev["reconnected"] == [existing.info.backend_pid]
    assert not alive(existing)
    assert role_settings(accounts, app_role) == {"work_mem": "64kB", "enable_seqscan": "off"}
    out = fault.revert()
    assert out is not None and out["settings_restored"] == {"work_mem": {"set": "1MB"}, "enable_seqscan": {"reset": True}}
    assert role_settings(accounts, app_role) == {"work_mem": "1MB", "enable_seqscan": "on"}
    assert_clean(accounts, fault)

    # crash path: apply, lose the object, restore from the ledger record alone
    fault2 = DbSlow(SlowParams(dsn=accounts, role=app_role, settings={"work_mem": "64kB"}), None, ctx)
    fault2.prepare()
    record = json.loads(json.dumps(fault2.record()))
    fault2.apply()
    del fault2
    assert role_settings(accounts, app_role)["work_mem"] == "64kB"
    back = DbSlow.revert_record(record, None)
    assert back is not None and back["settings_restored"] == {"work_mem": {"set": "1MB"}}
    assert role_settings(accounts, app_role)["work_mem"] == "1MB"
    assert chaoskit_sessions(accounts) == []
    existing.close()


def test_slow_settings_without_privilege_is_a_clear_error(accounts: str, app_role: str, ctx: RunContext) -> None:
    weak = accounts.replace("postgres@", f"{app_role}@")
    fault = DbSlow(SlowParams(dsn=weak, role="postgres", settings={"work_mem": "64kB"}), None, ctx)
    fault.prepare()
    with pytest.raises(FaultError, match="not allowed to ALTER ROLE postgres"):
        fault.apply()
    assert chaoskit_sessions(accounts) == []


# -- db.exhaust --------------------------------------------------------------------------------


def client_backends(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("select count(*) from pg_stat_activity where backend_type = 'client backend'").fetchone()
    return int(row[0]) if row else 0


def test_exhaust_takes_connections_up_to_max_minus_reserve(accounts: str, app_role: str, ctx: RunContext) -> None:
    fault = DbExhaust(ExhaustParams(dsn=accounts, reserve=85), None, ctx)
    ev = fault.apply()
    assert ev["max_connections"] == 100
    assert ev["client_connections_now"] == 100 - 85
    assert client_backends(accounts) == 100 - 85 + 1  # + this observer
    out = fault.revert()
    assert out is not None and out["released"] == ev["taken"]
    assert_clean(accounts, fault)


def test_exhaust_with_no_reserve_locks_out_the_app(accounts: str, app_role: str, ctx: RunContext) -> None:
    """A non-superuser fault DSN takes every slot it can; the app role then cannot connect."""
    weak = accounts.replace("postgres@", f"{app_role}@")
    fault = DbExhaust(ExhaustParams(dsn=weak, reserve=0), None, ctx)
    ev = fault.apply()
    assert ev["superuser"] is False
    assert ev["client_connections_now"] == 100 - ev["superuser_reserved_connections"]
    with pytest.raises(psycopg.OperationalError, match="reserved|too many"):
        psycopg.connect(weak, application_name="app", connect_timeout=2)
    fault.revert()
    with psycopg.connect(weak, application_name="app") as c:
        assert c.execute("select 1").fetchone() == (1,)
    assert_clean(accounts, fault)


# -- a runner that freezes or dies --------------------------------------------------------------

CHILD = """
import json, os, sys, time
from chaoskit.faults.db import DbLock
from chaoskit.faults.db.lock import LockParams
from chaoskit.runner.context import RunContext
params = LockParams(dsn=sys.argv[1], table="accounts", where="id = 1", **json.loads(sys.argv[3]))
fault = DbLock(params, None, RunContext(run_id="child", seed=1))
fault.apply()
with open(sys.argv[2] + ".tmp", "w") as fh:
    json.dump(fault.record(), fh)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
time.sleep(600)
"""


def update_blocked(dsn: str) -> bool:
    with app_conn(dsn, autocommit=True) as c:
        c.execute("set lock_timeout = '100ms'")
        try:
            c.execute("update accounts set balance_cents = balance_cents where id = 1")
        except psycopg.errors.LockNotAvailable:
            return True
    return False


@pytest.mark.parametrize("how", ["sigstop+revert_record", "sigkill", "sigstop+max_hold"])
def test_lock_is_released_when_the_runner_freezes_or_dies(accounts: str, tmp_path: Path, how: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    rec_path = tmp_path / "record.json"
    extra = {"max_hold": "1s"} if how.endswith("max_hold") else {}
    child = subprocess.Popen([sys.executable, "-c", CHILD, accounts, str(rec_path), json.dumps(extra)])
    try:
        wait_for(rec_path.exists, timeout=30, step=0.05)
        record = json.loads(rec_path.read_text())
        assert update_blocked(accounts)
        if how == "sigkill":
            child.kill()
            child.wait(5)
            wait_for(lambda: chaoskit_sessions(accounts) == [], timeout=3)
        else:
            os.kill(child.pid, signal.SIGSTOP)
            time.sleep(0.1)
            if how == "sigstop+max_hold":  # the server ends the silent sessions by itself
                wait_for(lambda: chaoskit_sessions(accounts) == [], timeout=5, step=0.1)
            else:
                assert len(chaoskit_sessions(accounts)) == 2
                out = DbLock.revert_record(record, None)
                assert out is not None and len(out["sessions_ended"]) == 2
        assert chaoskit_sessions(accounts) == []
        assert locks_of(accounts, record["pids"]) == 0
        assert not update_blocked(accounts)
    finally:
        child.kill()
        child.wait(5)
