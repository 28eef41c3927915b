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


@pytest.mark.parametrize("bucketing", ["range", "hash"])
def test_bucket_decode_in_both_bucket_kinds(fresh_db: str, bucketing: str) -> None:
    """Range buckets (integer key, drilled by key range) and hash buckets name the same rows."""
    _db(fresh_db)
    spec = snap.SnapshotSpec(tables=["t"], exclude=["updated_at"], detail_rows=0, buckets=64,
                             bucketing=bucketing)
    before = _take(fresh_db, spec)
    t = before["tables"]["t"]
    assert t["mode"] == bucketing
    if bucketing == "range":
        assert t["shift"] == 3 and len(t["bucket_data"]) == 63  # keys 1..500 in ranges of 8
    with psycopg.connect(fresh_db, autocommit=True) as c:
        for s in MUTATE:
            c.execute(s)
        c.execute("update t set note = null where id = 401")  # NULL differs from any value
    d = _diff(fresh_db, spec, before)
    assert sorted(d["changed"]) == [["17"], ["401"]]
    assert d["vanished"] == [["250"]] and d["appeared"] == [["9001"]]


def test_text_key_hash_buckets_and_range_refused(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("create table acc (id text primary key, bal bigint not null)")
        c.execute("insert into acc select 'a' || g, g from generate_series(1, 300) g")
    spec = snap.SnapshotSpec(tables=["acc"], detail_rows=0, buckets=32)
    before = _take(fresh_db, spec)
    assert before["tables"]["acc"]["mode"] == "hash"
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("update acc set bal = bal + 1 where id = 'a77'")
    with psycopg.connect(fresh_db) as c, consistent_read(c):
        d = snap.diff_snapshots(before, snap.take_snapshot(c, spec, like=before), c)["acc"]
    assert d["changed"] == [["a77"]]
    with pytest.raises(CheckerError, match="range buckets need one integer key"):
        _take(fresh_db, snap.SnapshotSpec(tables=["acc"], bucketing="range"))


def test_page_ranges_over_several_connections_give_the_same_snapshot(
        fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parallel read (page ranges, one exported snapshot) adds up to the one-scan result,
    and a row written after the snapshot began is in neither."""
    _db(fresh_db, rows=5000)
    spec = snap.SnapshotSpec(tables=["t"], exclude=["updated_at"], detail_rows=0)
    one = _take(fresh_db, spec)["tables"]["t"]
    monkeypatch.setattr(snap, "_CHUNK_MIN_PAGES", 1)
    with psycopg.connect(fresh_db) as c:
        assert len(snap._chunks(c, "t", 3)) == 3
    with psycopg.connect(fresh_db) as c, consistent_read(c):
        c.execute("select 1")  # the snapshot starts here
        with psycopg.connect(fresh_db, autocommit=True) as w:
            w.execute("insert into t (id, acct, amount_cents) values (99999, 'late', 1)")
        par = snap.take_snapshot(c, spec, dsn=fresh_db, parallel=3)["tables"]["t"]
    assert par["bucket_data"] == one["bucket_data"] and par["rows"] == 5000


def test_not_null_shortcut_hashes_like_the_nullable_form(fresh_db: str) -> None:
    """NOT NULL columns skip the NULL handling; a snapshot taken before `drop not null` must
    still compare equal after it (the fingerprint depends on values, not on constraints)."""
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("create table nn (id bigint primary key, amt bigint not null, who text not null)")
        c.execute("insert into nn select g, g * 7, 'w' || g from generate_series(1, 200) g")
    spec = snap.SnapshotSpec(tables=["nn"], detail_rows=0, buckets=16)
    before = _take(fresh_db, spec)
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("alter table nn alter column amt drop not null, alter column who drop not null")
    after = _take(fresh_db, spec, like=before)
    assert after["tables"]["nn"]["fingerprint"] == before["tables"]["nn"]["fingerprint"]
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("update nn set amt = null where id = 5")
    assert _diff_nn(fresh_db, spec, before)["changed"] == [["5"]]


def _diff_nn(dsn: str, spec: snap.SnapshotSpec, before: dict) -> dict:
    with psycopg.connect(dsn) as c, consistent_read(c):
        return snap.diff_snapshots(before, snap.take_snapshot(c, spec, like=before), c)["nn"]
