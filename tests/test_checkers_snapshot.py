"""Snapshots and diffs on real PostgreSQL: fingerprints are order-independent, duplicates do not
cancel out, and a diff names the rows that appeared, vanished or changed, both from per-row
detail (small tables) and by decoding bucket sums (large tables, detail off)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from chaoskit.checkers import snapshot as snap
from chaoskit.checkers.sqlutil import CheckerError, consistent_read


def _db(dsn: str, rows: int = 500) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("create table t (id bigint primary key, acct text, amount_cents bigint, "
                  "note jsonb, j json, updated_at timestamptz default now())")
        c.execute("insert into t (id, acct, amount_cents, note, j) select g, 'a' || (g %% 7), g * 100, "
                  "jsonb_build_object('g', g), json_build_object('g', g) "
                  "from generate_series(1, %s) g", (rows,))
        c.execute("create table nopk (a text, b bigint)")
        c.execute("insert into nopk values ('x', 1), ('x', 1)")


def _take(dsn: str, spec: snap.SnapshotSpec, like: dict | None = None) -> dict:
    with psycopg.connect(dsn) as c, consistent_read(c):
        return snap.take_snapshot(c, spec, like=like)


def _diff(dsn: str, spec: snap.SnapshotSpec, before: dict) -> dict:
    with psycopg.connect(dsn) as c, consistent_read(c):
        after = snap.take_snapshot(c, spec, like=before)
        return snap.diff_snapshots(before, after, c)["t"]


MUTATE = [
    "update t set amount_cents = amount_cents + 1 where id = 17",       # one cent off
    "delete from t where id = 250",
    "insert into t (id, acct, amount_cents) values (9001, 'z', 5)",
]


@pytest.mark.parametrize("detail_rows", [100_000, 0], ids=["row-detail", "bucket-decode"])
def test_diff_names_changed_vanished_and_appeared_rows(fresh_db: str, detail_rows: int) -> None:
    _db(fresh_db)
    spec = snap.SnapshotSpec(tables=["t"], exclude=["updated_at"], detail_rows=detail_rows,
                             buckets=256, append_only=["t"])
    before = _take(fresh_db, spec)
    assert ("detail" in before["tables"]["t"]) == bool(detail_rows)
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("update t set updated_at = now() + interval '1 day'")  # volatile: ignored
    assert _diff(fresh_db, spec, before)["changed_buckets"] == 0
    with psycopg.connect(fresh_db, autocommit=True) as c:
        for s in MUTATE:
            c.execute(s)
    d = _diff(fresh_db, spec, before)
    assert d["changed"] == [["17"]]
    assert d["vanished"] == [["250"]]
    assert d["appeared"] == [["9001"]]
    assert (d["rows_before"], d["rows_after"]) == (500, 500)
    res = snap.diff_findings({"t": d}, spec)
    assert res.defects() == {"rows_changed_or_vanished"}


def test_fingerprint_is_order_independent_and_duplicates_do_not_cancel(fresh_db: str) -> None:
    _db(fresh_db, rows=50)
    spec = snap.SnapshotSpec(tables=["nopk"], key={"nopk": ["a"]}, buckets=4)
    one = _take(fresh_db, spec)["tables"]["nopk"]
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("insert into nopk values ('x', 1), ('x', 1)")  # XOR would cancel these out
    two = _take(fresh_db, spec)["tables"]["nopk"]
    assert one["fingerprint"] != two["fingerprint"]
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("create table t2 as select * from t order by id desc")
        c.execute("alter table t2 add primary key (id)")
    spec2 = snap.SnapshotSpec(tables=["t", "t2"], exclude=["updated_at"], buckets=16)
    s = _take(fresh_db, spec2)["tables"]
    assert s["t"]["fingerprint"] == s["t2"]["fingerprint"]
    assert s["t"]["bucket_data"] == s["t2"]["bucket_data"]


def test_snapshot_file_round_trip_and_bad_input(fresh_db: str, tmp_path: Path) -> None:
    _db(fresh_db, rows=20)
    spec = snap.SnapshotSpec(tables=["t"])
    s = _take(fresh_db, spec)
    p = tmp_path / "s.json"
    snap.save_snapshot(s, p)
    assert snap.load_snapshot(p) == s
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    with pytest.raises(CheckerError, match="not a chaoskit snapshot"):
        snap.load_snapshot(tmp_path / "bad.json")
    with pytest.raises(CheckerError, match="does not exist"):
        _take(fresh_db, snap.SnapshotSpec(tables=["nope"]))
    with pytest.raises(CheckerError, match="no primary key"):
        _take(fresh_db, snap.SnapshotSpec(tables=["nopk"]))
    with pytest.raises(CheckerError, match="no columns"):
        _take(fresh_db, snap.SnapshotSpec(tables=["t"], columns={"t": ["id", "ghost"]}))
