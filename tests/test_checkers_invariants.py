"""Invariants: exact expectations (int/Decimal, never float), zero-rows reports with the
violating rows, invariants files, and one consistent snapshot for all invariants of a run."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from chaoskit.checkers import invariants as inv
from chaoskit.checkers.ledger import LedgerChecker, LedgerParams
from chaoskit.checkers.sqlutil import CheckerError, consistent_read


def _setup(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("create table entries (id bigserial primary key, txn_id text, "
                  "amount_cents bigint, fee numeric(12, 4), rate double precision)")
        c.execute("insert into entries (txn_id, amount_cents, fee, rate) values "
                  "('t1', 500, 0.1000, 0.5), ('t1', -500, 0.2000, 0.5), ('t2', 7, 0, 0)")


def _check(dsn: str, items: list[dict]) -> dict[str, dict]:
    invs = [inv.Invariant(**i) for i in items]
    with psycopg.connect(dsn) as c, consistent_read(c):
        res = inv.check_invariants(c, invs)
    return {f["name"]: f for f in res.findings}


def test_expectations_are_exact(fresh_db: str) -> None:
    _setup(fresh_db)
    got = _check(fresh_db, [
        {"name": "balance", "query": "select sum(amount_cents) from entries", "equals": 7},
        {"name": "balance_off", "query": "select sum(amount_cents) from entries", "equals": 0},
        {"name": "fees", "query": "select sum(fee) from entries", "equals": "0.3"},
        {"name": "fees_yaml_float", "query": "select sum(fee) from entries", "equals": 0.3},
        {"name": "in_range", "query": "select count(*) from entries", "range": [1, 3]},
        {"name": "open_range", "query": "select count(*) from entries", "expect": {"range": [4, None]}},
        {"name": "unbalanced_txns", "query": "select txn_id, sum(amount_cents) as off from entries "
                                             "group by 1 having sum(amount_cents) <> 0"},
    ])
    assert got["balance"]["ok"] and got["balance"]["value"] == 7
    assert not got["balance_off"]["ok"] and "value 7 (expected 0)" in got["balance_off"]["message"]
    assert got["fees"]["ok"] and got["fees_yaml_float"]["ok"]
    assert got["in_range"]["ok"] and not got["open_range"]["ok"]
    u = got["unbalanced_txns"]
    assert not u["ok"] and u["count"] == 1 and u["examples"] == [{"txn_id": "t2", "off": 7}]


def test_floats_from_the_database_are_refused(fresh_db: str) -> None:
    _setup(fresh_db)
    with pytest.raises(CheckerError, match="float"):
        _check(fresh_db, [{"name": "f", "query": "select sum(rate) from entries", "equals": 1}])
    assert inv.Invariant(name="d", query="x", equals="0.10").equals == Decimal("0.10")


def test_bad_invariants_are_clear_errors(fresh_db: str) -> None:
    _setup(fresh_db)
    with pytest.raises(ValueError, match="one of equals, range, zero_rows"):
        inv.Invariant(name="x", query="select 1", equals=0, zero_rows=True)
    with pytest.raises(CheckerError, match="invariant broken: SQL failed: .*nope"):
        _check(fresh_db, [{"name": "broken", "query": "select * from nope"}])
    with pytest.raises(CheckerError, match="one value"):
        _check(fresh_db, [{"name": "two", "query": "select 1, 2", "equals": 1}])


def test_invariants_file(tmp_path: Path) -> None:
    p = tmp_path / "inv.sql"
    p.write_text("-- header comment\n\n-- name: a\n-- why: first\nselect 1 where false;\n\n"
                 "-- name: b\n-- expect: equals 3\nselect 3;\n-- name: c\n-- expect: range 1 null\n"
                 "select 2\n")
    got = {i.name: i for i in inv.load_invariants_file(p)}
    assert got["a"].zero_rows and got["a"].why == "first" and got["a"].query == "select 1 where false"
    assert got["b"].equals == 3 and got["c"].range == [1, None]
    p.write_text("-- name: a\nselect 1;\n-- name: a\nselect 2;\n")
    with pytest.raises(CheckerError, match="duplicate"):
        inv.load_invariants_file(p)
    p.write_text("-- name: a\n-- expect: sometimes\nselect 1;\n")
    with pytest.raises(CheckerError, match="inv.sql:1: expect"):
        inv.load_invariants_file(p)


def test_all_invariants_read_one_consistent_snapshot(fresh_db: str) -> None:
    """A write landing between two invariants must not make them disagree."""
    _setup(fresh_db)
    params = LedgerParams.model_validate({"dsn": fresh_db, "invariants": [
        {"name": "first", "query": "select count(*) from entries, (select pg_sleep(0.8)) s",
         "equals": 3},
        {"name": "second", "query": "select count(*) from entries", "equals": 3},
    ]})

    def writer() -> None:
        with psycopg.connect(fresh_db, autocommit=True) as c:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # wait until the first invariant is running
                if c.execute("select count(*) from pg_stat_activity where state = 'active' "
                             "and query like '%%pg_sleep(0.8)%%' and pid <> pg_backend_pid()"
                             ).fetchone() == (1,):
                    break
                time.sleep(0.02)
            c.execute("insert into entries (txn_id, amount_cents) values ('late', 0)")

    th = threading.Thread(target=writer)
    th.start()
    res = LedgerChecker(params).verify()
    th.join()
    assert res.ok, res.summary()
    with psycopg.connect(fresh_db) as c:
        assert c.execute("select count(*) from entries").fetchone() == (4,)


GROUP_SQL = """-- name: txn_group
-- why: one grouping, two invariants
-- checks: unbalanced, tiny_txn
--   unbalanced: every transaction sums to zero.
--   tiny_txn: no transaction has a single line.
-- settings: enable_hashjoin=off, work_mem=64MB
with tx as (select txn_id, sum(amount_cents) as off, count(*) as lines from entries group by 1)
select 'unbalanced' as check_name, txn_id, off, null::bigint as lines from tx where off <> 0
union all
select 'tiny_txn', txn_id, null, lines from tx where lines = 1;
"""


def test_a_group_reports_each_of_its_invariants(fresh_db: str, tmp_path: Path) -> None:
    """One query, several named invariants: each is reported with its own count, examples and
    why; one that no row names passes; planner settings hold for that query only."""
    _setup(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("insert into entries (txn_id, amount_cents) values ('t3', 1), ('t3', 2)")
    f = tmp_path / "g.sql"
    f.write_text(GROUP_SQL + "-- name: fine\nselect 1 where false;\n")
    invs = inv.load_invariants_file(f)
    assert [i.names() for i in invs] == [["unbalanced", "tiny_txn"], ["fine"]]
    with psycopg.connect(fresh_db) as c, consistent_read(c):
        before = c.execute("show work_mem").fetchone()
        res = inv.check_invariants(c, invs)
        assert c.execute("show work_mem").fetchone() == before  # put back after the query
    got = {x["name"]: x for x in res.findings}
    assert set(got) == {"unbalanced", "tiny_txn", "fine"}
    assert not got["unbalanced"]["ok"] and got["unbalanced"]["count"] == 2
    assert {e["txn_id"] for e in got["unbalanced"]["examples"]} == {"t2", "t3"}
    assert got["unbalanced"]["why"] == "every transaction sums to zero."
    assert not got["tiny_txn"]["ok"] and got["tiny_txn"]["examples"] == [{"txn_id": "t2", "lines": 1}]
    assert got["fine"]["ok"]
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("delete from entries where txn_id in ('t2', 't3')")
    with psycopg.connect(fresh_db) as c, consistent_read(c):
        assert inv.check_invariants(c, invs).ok


def test_group_errors_are_clear(fresh_db: str, tmp_path: Path) -> None:
    _setup(fresh_db)
    f = tmp_path / "g.sql"
    f.write_text(GROUP_SQL.replace("'tiny_txn', txn_id", "'typo', txn_id"))
    with psycopg.connect(fresh_db) as c, consistent_read(c), \
            pytest.raises(CheckerError, match="rows name 'typo', which is not in its checks"):
        inv.check_invariants(c, inv.load_invariants_file(f))
    f.write_text(GROUP_SQL + "-- name: unbalanced\nselect 1 where false;\n")
    with pytest.raises(CheckerError, match=r"duplicate invariant names \['unbalanced'\]"):
        inv.load_invariants_file(f)
    f.write_text(GROUP_SQL.replace("enable_hashjoin=off", "statement_timeout=0"))
    with pytest.raises(CheckerError, match="g.sql:1: settings: expected name=value"):
        inv.load_invariants_file(f)
    with pytest.raises(ValueError, match="every row is a violation"):
        inv.Invariant(name="g", query="select 1", checks=["a"], equals=1)
