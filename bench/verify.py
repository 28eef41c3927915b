"""Ledger verification at scale, chaoskit's way next to the naive way, in one run.

  history   1,000,000 operations (2,000,000 JSON lines) checked against a 1M-row table:
            streaming parse + one set-based final read (COPY) + one classification pass,
            in a child process so its peak RSS is measured alone.
            naive: stdlib json per line, one `select count(*) ... = %(id)s` per operation
            (timed on a sample and extrapolated).
  snapshot  fingerprint of the 10,000,000-row `entries` table (bucket sums computed in
            PostgreSQL, two connections reading half the pages each), then a before/after diff
            after changing 3 rows, drilling down into the changed buckets only (key ranges: an
            index range scan). naive: every row pulled into Python, hashed, compared.
  suite     the full invariant suite on the 10,000,000-entry reference ledger (`preset:
            reference`): every invariant of compose/ledger/invariants.sql (its groups check
            versions, trade and fill events both ways, coverage and both PnL replays) and the
            preset's position link and projection, on 2 connections sharing one snapshot.

Targets (issue 4): history < 5 s and < 500 MB; snapshot < 3 s; diff < 5 s; suite < 30 s.

    python bench/verify.py                    # own PostgreSQL container, removed at the end
    python bench/verify.py --dsn DSN --keep   # reuse a server that already holds the data
    python bench/verify.py --naive-rows 10000000   # the naive snapshot over the whole table

The data is generated inside PostgreSQL with generate_series (2.5M closed trades: 5M fills,
10M entries, 10M events, 5M idempotency keys): 387 s here, once; --dsn reuses it.
Figures of the last run: chaoskit/checkers/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The data directory is a bind mount of a host directory: the container's own layer is
# fuse-overlayfs on this machine, several times slower for PostgreSQL's writes.
PG_CMD = (
    "set -e; mkdir -p /run/postgresql && chown postgres /run/postgresql /pgdata; "
    "su postgres -c '/usr/lib/postgresql/15/bin/initdb -D /pgdata/pg -A trust -U postgres >/dev/null'; "
    "echo \"host all all 0.0.0.0/0 trust\" >> /pgdata/pg/pg_hba.conf; "
    "exec su postgres -c \"/usr/lib/postgresql/15/bin/postgres -D /pgdata/pg -c listen_addresses='*' "
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=2GB "
    "-c work_mem=256MB -c maintenance_work_mem=512MB -c max_wal_size=8GB "
    "-c max_parallel_workers_per_gather=2\""
)

TRADES = 2_500_000


def start_pg(data_dir: Path) -> tuple[Any, Any, str]:
    import docker

    from chaoskit.images import ensure_base_image

    client = docker.from_env()
    image = ensure_base_image(client)
    tag = uuid.uuid4().hex[:8]
    labels = {"chaoskit.bench": "1", "chaoskit.test": "1"}
    net = client.networks.create(f"chaoskit-bench-{tag}", driver="bridge", labels=labels)
    data_dir.mkdir(parents=True, exist_ok=True)
    c = client.containers.run(image, ["bash", "-c", PG_CMD], name=f"chaoskit-bench-pg-{tag}",
                              detach=True, network=net.name, labels=labels, shm_size="2g",
                              volumes={str(data_dir): {"bind": "/pgdata", "mode": "rw"}})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        c.reload()
        ip = c.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
        if ip:
            try:
                with psycopg.connect(f"postgresql://postgres@{ip}/postgres", connect_timeout=1):
                    return c, net, f"postgresql://postgres@{ip}/postgres"
            except psycopg.OperationalError:
                pass
        time.sleep(0.3)
    raise SystemExit("bench postgres did not start")


GEN = f"""
insert into accounts (id, kind, currency) values ('funding:USD', 'funding', 'USD'),
  ('broker:USD', 'broker', 'USD');
insert into accounts (id, kind, currency) select 'c' || g, 'customer', 'USD' from generate_series(0, 99) g;
insert into accounts (id, kind, owner_id, currency)
  select 'c' || g || ':margin', 'margin', 'c' || g, 'USD' from generate_series(0, 99) g;
insert into entries (txn_id, account_id, amount_cents, currency, kind)
  select 'seed:' || g, case when s = 1 then 'c' || g else 'funding:USD' end,
         s * 100000000, 'USD', 'deposit'
  from generate_series(0, 99) g, (values (1), (-1)) v(s);
create temp table gen as
  select g, 'o' || g as coid, 'c' || (g % 100) as acct, 'I' || (g % 10) as instr,
         case when g % 2 = 0 then 'buy' else 'sell' end as side,
         case when g % 2 = 0 then 1 else -1 end as s,
         (10000 + g % 100)::bigint as op, (10000 + (g % 37) * 3)::bigint as cp
  from generate_series(1, {TRADES}) g;
insert into trades (id, client_order_id, account_id, instrument, side, qty, filled_qty, status,
  open_price_cents, close_price_cents, close_client_order_id, realized_pnl_cents, version)
  select g, coid, acct, instr, side, 10, 10, 'closed', op, cp, coid || '-close',
         s * (10 * cp - 10 * op), 4 from gen;
insert into fills (trade_id, broker_fill_id, kind, qty, price_cents)
  select g, 'bf-o-' || g, 'open', 10, op from gen union all
  select g, 'bf-c-' || g, 'close', 10, cp from gen;
insert into entries (txn_id, account_id, amount_cents, currency, trade_id, kind)
  select coid || ':open:0', acct, -s * 10 * op, 'USD', g, 'fill' from gen union all
  select coid || ':open:0', 'broker:USD', s * 10 * op, 'USD', g, 'fill' from gen union all
  select coid || '-close:close:0', acct, s * 10 * cp, 'USD', g, 'fill' from gen union all
  select coid || '-close:close:0', 'broker:USD', -s * 10 * cp, 'USD', g, 'fill' from gen;
insert into events (aggregate_id, version, type, payload)
  select 'trade:' || coid, 1, 'trade.opened', jsonb_build_object('client_order_id', coid,
         'account_id', acct, 'instrument', instr, 'side', side, 'qty', 10) from gen union all
  select 'trade:' || coid, 2, 'trade.filled', jsonb_build_object('broker_fill_id', 'bf-o-' || g,
         'kind', 'open', 'qty', 10, 'price_cents', op, 'side', side) from gen union all
  select 'trade:' || coid, 3, 'trade.filled', jsonb_build_object('broker_fill_id', 'bf-c-' || g,
         'kind', 'close', 'qty', 10, 'price_cents', cp, 'side', side) from gen union all
  select 'trade:' || coid, 4, 'trade.closed', jsonb_build_object('client_order_id', coid || '-close',
         'realized_pnl_cents', s * (10 * cp - 10 * op)) from gen;
insert into idempotency_keys (key, op, request, status_code, response)
  select coid, 'trade.open', '{{}}'::jsonb, 200, '{{}}'::jsonb from gen union all
  select coid || '-close', 'trade.close', '{{}}'::jsonb, 200, '{{}}'::jsonb from gen;
insert into positions (account_id, instrument, realized_pnl_cents)
  select acct, instr, sum(s * (10 * cp - 10 * op)) from gen group by 1, 2;
select setval('trades_id_seq', {TRADES});
create table history_ops (client_order_id text primary key);
insert into history_ops select 'op-' || g from generate_series(0, 999999) g where g % 50 <> 7;
"""


def ensure_data(dsn: str) -> str:
    """Create the `bench_ledger` database with the reference schema and 10M entries once
    (a half-generated one from an interrupted run is dropped and made again)."""
    ldsn = dsn.rsplit("/", 1)[0] + "/bench_ledger"
    with psycopg.connect(dsn, autocommit=True) as c:
        if c.execute("select 1 from pg_database where datname = 'bench_ledger'").fetchone():
            with psycopg.connect(ldsn, autocommit=True) as lc:
                row = lc.execute("select to_regclass('history_ops') is not null").fetchone()
                if row and row[0]:
                    # indexes added to the schema since the data was generated ("if not exists")
                    lc.execute("set maintenance_work_mem = '1GB'")
                    lc.execute((REPO / "compose" / "ledger" / "schema.sql").read_text())
                    return ldsn
            c.execute("drop database bench_ledger with (force)")
        c.execute("create database bench_ledger")
    with psycopg.connect(ldsn, autocommit=True) as c:
        t = time.monotonic()
        print("generating the 10M-entry ledger inside PostgreSQL ...", flush=True)
        schema = (REPO / "compose" / "ledger" / "schema.sql").read_text()
        c.execute(schema)
        # load first, build the secondary indexes after: several times faster
        idx = [r[0] for r in c.execute(
            "select indexname from pg_indexes where schemaname = 'public' and indexdef not like "
            "'%UNIQUE%'").fetchall()]
        for name in idx:
            c.execute(f'drop index "{name}"')
        for stmt in [s.strip() for s in GEN.split(";\n") if s.strip()]:
            t1 = time.monotonic()
            c.execute(stmt)
            print(f"  {time.monotonic() - t1:6.1f} s  {stmt.splitlines()[0][:70]}", flush=True)
        c.execute(schema)  # recreates the dropped indexes ("if not exists")
        c.execute("vacuum analyze")
        print(f"  generated in {time.monotonic() - t:.0f} s", flush=True)
    return ldsn


def write_history(path: Path, n: int = 1_000_000) -> None:
    """2 lines per op; 98% ok, 1% fail (absent in the table), 1% info (half present)."""
    with open(path, "w") as f:
        for i in range(n):
            oid = f"op-{i}"
            inv = {"type": "invoke", "process": i % 32, "op": "open", "id": oid,
                   "time": 2 * i, "wall": 1764576000.0 + i / 1000, "value": {"qty": 10, "amount_cents": 1234}}
            f.write(json.dumps(inv) + "\n")
            t = "fail" if i % 50 == 7 else "info" if i % 100 == 3 else "ok"
            f.write(json.dumps({**inv, "type": t, "time": 2 * i + 1,
                                "error": None if t == "ok" else "timeout"}) + "\n")


CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from chaoskit.checkers import history as h
    from chaoskit.checkers.ledger import LedgerChecker, LedgerParams
    dsn, path = sys.argv[1], sys.argv[2]
    spec = {"table": "history_ops", "id_column": "client_order_id", "op": "open"}
    checker = LedgerChecker(LedgerParams.model_validate({"dsn": dsn, "history": spec}))
    t0 = time.perf_counter()
    res = checker.verify(Path(path))  # the runner's path: parse overlapped with the final read
    total = time.perf_counter() - t0
    t1 = time.perf_counter()
    parsed = h.parse_history(path, [h.HistorySpec(**spec)])
    parse = time.perf_counter() - t1
    print(json.dumps({"total": total, "parse": parse, "lines": parsed.lines, "ok": res.ok,
                      "rss_mb": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                    resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024,
                      "counts": {k: v for k, v in res.info.items() if k.startswith("history:")},
                      "orjson": h._loads is not None}))
""")


def bench_history(dsn: str, tmp: Path, sample: int) -> dict[str, Any]:
    path = tmp / "history.jsonl"
    if not path.exists():
        write_history(path)
    out = subprocess.run([sys.executable, "-c", CHILD, dsn, str(path)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    r = json.loads(out.stdout)
    # naive: stdlib json per line + one query per operation (sampled)
    t = time.perf_counter()
    states: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if d["type"] != "invoke":
                states[d["id"]] = d["type"]
    naive_parse = time.perf_counter() - t
    ids = list(states)[:sample]
    with psycopg.connect(dsn) as c:
        t = time.perf_counter()
        for oid in ids:
            c.execute("select count(*) from history_ops where client_order_id = %(id)s", {"id": oid}).fetchone()
        per_q = (time.perf_counter() - t) / len(ids)
    r["naive_parse"] = naive_parse
    r["naive_queries_est"] = per_q * len(states)
    r["naive_per_query_ms"] = per_q * 1000
    return r


def bench_snapshot(dsn: str, naive_rows: int) -> dict[str, Any]:
    from chaoskit.checkers import snapshot as snap
    from chaoskit.checkers.sqlutil import connect, consistent_read

    spec = snap.SnapshotSpec(tables=["entries"], exclude=["created_at"])
    r: dict[str, Any] = {}
    with connect(dsn) as conn:
        t = time.perf_counter()
        with consistent_read(conn):
            before = snap.take_snapshot(conn, spec, dsn=dsn, parallel=2)
        r["snapshot"] = time.perf_counter() - t
        r["rows"] = before["tables"]["entries"]["rows"]
        r["buckets"] = before["tables"]["entries"]["buckets"]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("update entries set amount_cents = amount_cents + 1 where id = 4242")
        gone = c.execute("delete from entries where id = 777777 returning *").fetchone()
        c.execute("insert into entries (txn_id, account_id, amount_cents, currency, kind) "
                  "values ('bench-extra', 'c1', 0, 'USD', 'deposit')")
    try:
        with connect(dsn) as conn:
            t = time.perf_counter()
            with consistent_read(conn):
                after = snap.take_snapshot(conn, spec, like=before, dsn=dsn, parallel=2)
                d = snap.diff_snapshots(before, after, conn)["entries"]
            r["diff"] = time.perf_counter() - t
        r["diff_named"] = {k: d[k] for k in ("changed", "vanished", "appeared")}
        r["changed_buckets"] = d["changed_buckets"]
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("update entries set amount_cents = amount_cents - 1 where id = 4242")
            c.execute("delete from entries where txn_id = 'bench-extra'")
            if gone:
                c.execute("insert into entries values (%s, %s, %s, %s, %s, %s, %s, %s)", gone)
    # naive: pull rows into Python, hash each, build a dict key -> hash (what a diff would need)
    cols = "id, txn_id, account_id, amount_cents, currency, trade_id, kind"
    with psycopg.connect(dsn) as c:
        t = time.perf_counter()
        seen: dict[int, bytes] = {}
        with c.cursor(name="naive") as cur:
            cur.itersize = 50_000
            cur.execute(f"select {cols} from entries order by id limit %s", (naive_rows,))
            for row in cur:
                seen[row[0]] = hashlib.blake2b(repr(row).encode(), digest_size=8).digest()
        el = time.perf_counter() - t
    r["naive_rows"] = len(seen)
    r["naive_snapshot_est"] = el * r["rows"] / max(1, len(seen))
    return r


def bench_suite(dsn: str) -> dict[str, Any]:
    from chaoskit.checkers.ledger import LedgerChecker, LedgerParams

    params = LedgerParams.model_validate({"dsn": dsn, "preset": "reference", "history": [],
                                          "snapshot": None, "parallel": 2})
    checker = LedgerChecker(params)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    res = checker.verify()
    total = time.perf_counter() - t
    timings["total"] = total
    slow = sorted(((f.get("seconds", 0), f["name"]) for f in res.findings), reverse=True)
    return {"total": total, "ok": res.ok, "checks": len(res.findings),
            "failures": [f["name"] for f in res.failures], "slowest": slow[:8]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="use this server (data is generated once into bench_ledger)")
    ap.add_argument("--keep", action="store_true", help="keep the container started here")
    ap.add_argument("--sample", type=int, default=5000, help="naive per-id queries actually run")
    ap.add_argument("--naive-rows", type=int, default=1_000_000, help="rows the naive snapshot pulls")
    ap.add_argument("--only", choices=["history", "snapshot", "suite"], action="append")
    ap.add_argument("--data-dir", type=Path, help="host directory for PostgreSQL's data "
                    "(default: a new temporary directory, removed at the end)")
    args = ap.parse_args()
    container = net = None
    dsn = args.dsn
    data_dir = args.data_dir
    if dsn is None:
        data_dir = data_dir or Path(tempfile.mkdtemp(prefix="chaoskit-bench-pg-", dir="/var/tmp"))
        container, net, dsn = start_pg(data_dir)
    try:
        ldsn = ensure_data(dsn)
        only = set(args.only or ["history", "snapshot", "suite"])
        load = os.getloadavg()[0]
        print(f"load average at start: {load:.1f} on {os.cpu_count()} cores")
        with tempfile.TemporaryDirectory() as tmp:
            if "history" in only:
                h = bench_history(ldsn, Path(tmp), args.sample)
                print(f"history  1M ops / {h['lines']:,} lines: {h['total']:.2f} s, parse alone "
                      f"{h['parse']:.2f} s ({'orjson' if h['orjson'] else 'stdlib json'}), "
                      f"peak RSS {h['rss_mb']:.0f} MB   [target < 5 s, < 500 MB]")
                print(f"  naive: json.loads per line {h['naive_parse']:.2f} s + one query per op "
                      f"{h['naive_per_query_ms']:.2f} ms x 1M = {h['naive_queries_est']:.0f} s (est.)"
                      f"  -> {(h['naive_parse'] + h['naive_queries_est']) / h['total']:.0f}x slower")
                print(f"  counts: {h['counts']}")
            if "snapshot" in only:
                s = bench_snapshot(ldsn, args.naive_rows)
                print(f"snapshot {s['rows']:,} rows, {s['buckets']} buckets: {s['snapshot']:.2f} s  "
                      f"[target < 3 s]")
                print(f"diff     after 3 changes: {s['diff']:.2f} s, {s['changed_buckets']} buckets "
                      f"drilled, named {s['diff_named']}  [target < 5 s]")
                print(f"  naive: rows pulled into Python and hashed: {s['naive_rows']:,} rows -> "
                      f"{s['naive_snapshot_est']:.1f} s for the table (est.)  -> "
                      f"{s['naive_snapshot_est'] / s['snapshot']:.1f}x slower; a naive diff pulls both "
                      f"sides: {2 * s['naive_snapshot_est']:.1f} s -> "
                      f"{2 * s['naive_snapshot_est'] / s['diff']:.1f}x slower")
            if "suite" in only:
                r = bench_suite(ldsn)
                print(f"suite    {r['checks']} checks on the 10M-entry ledger: {r['total']:.2f} s, "
                      f"ok={r['ok']} {r['failures'] or ''}  [target < 30 s]")
                print("  slowest: " + ", ".join(f"{n} {t:.1f} s" for t, n in r["slowest"]))
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        if container is not None and not args.keep:
            container.remove(force=True)
            net.remove()
            if args.data_dir is None and data_dir is not None:
                import shutil

                shutil.rmtree(data_dir, ignore_errors=True)
        elif container is not None:
            print(f"kept: {dsn} (container {container.name}, data in {data_dir})")


if __name__ == "__main__":
    main()
