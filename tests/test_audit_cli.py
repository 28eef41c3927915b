"""``chaoskit audit``, ``chaoskit snapshot`` and ``chaoskit verify`` end to end on a real
reference ledger: exit 0 on a correct ledger, 1 with a named discrepancy, 2 with one clear line
on bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import psycopg
from checkers_helpers import build_clean, history_for, write_history
from click.testing import CliRunner

from chaoskit.cli import main


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_audit_passes_on_a_correct_ledger_and_exports_everything(fresh_db: str, tmp_path: Path) -> None:
    build_clean(fresh_db, trades=8)
    code, out, err = run("audit", "--dsn", fresh_db, "-o", str(tmp_path / "a"))
    assert code == 0, out + err
    assert "ledger audit: PASS" in out and "balance USD: 0 cents" in out
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["ok"] and report["discrepancies"] == []
    assert report["balances"]["USD"]["sum_cents"] == 0
    cov = [f for f in report["checks"] if f["name"] == "event_coverage"]
    assert cov and all(f["percent"] == "100.0000" for f in cov)
    exp = report["export"]["tables"]
    with psycopg.connect(fresh_db) as c:
        n = c.execute("select count(*) from entries").fetchone()[0]  # type: ignore[index]
    assert exp["entries"]["rows"] == n
    with open(tmp_path / "a" / "export" / "entries.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n and sum(int(r["amount_cents"]) for r in rows) == 0


def test_audit_names_a_cent_off_and_exits_1(fresh_db: str, tmp_path: Path) -> None:
    build_clean(fresh_db, trades=8)
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("update entries set amount_cents = amount_cents - 1 where id = "
                  "(select max(id) from entries where kind = 'fill')")
        c.execute("insert into events (aggregate_id, version, type, payload) "
                  "values ('trade:o1', 50, 'trade.note', '{}')")
    code, out, err = run("audit", "--dsn", fresh_db, "-o", str(tmp_path / "a"), "--no-export")
    assert code == 1, out + err
    assert "USD is off by -1 cents" in out
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    names = {d["name"] for d in report["discrepancies"]}
    assert {"balance_per_currency", "balance_per_transaction", "txn_balanced",
            "version_gap"} <= names
    assert "export" not in report


def test_audit_config_overrides_the_preset(fresh_db: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("create table lines (id serial primary key, tx text, cents bigint, ccy text)")
        c.execute("insert into lines (tx, cents, ccy) values ('a', 5, 'EUR'), ('a', -5, 'EUR'), "
                  "('b', 3, 'EUR')")
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(f"dsn: {fresh_db}\npreset: null\nexport: [lines]\n"
                   "balance: {table: lines, amount: cents, currency: ccy, txn: tx}\n")
    code, out, _ = run("audit", "--config", str(cfg), "-o", str(tmp_path / "o"))
    assert code == 1 and "EUR is off by 3 cents" in out
    assert (tmp_path / "o" / "export" / "lines.csv").is_file()


def test_snapshot_then_verify_with_history(fresh_db: str, tmp_path: Path) -> None:
    snapfile = tmp_path / "before.json"
    cfg = tmp_path / "ledger.yaml"
    cfg.write_text("verify:\n  ledger:\n    preset: reference\n"
                   "    snapshot: {tables: [entries, events], append_only: [entries, events]}\n")

    def before() -> None:
        code, out, err = run("snapshot", "--dsn", fresh_db, "-t", "entries,events",
                             "-o", str(snapfile))
        assert code == 0, err
        assert "entries: 6 rows" in out

    made = build_clean(fresh_db, trades=6, old=0, before=before)
    hist = write_history(tmp_path / "h.jsonl", history_for(made))
    code, out, err = run("verify", "--config", str(cfg), "--dsn", fresh_db, "--before",
                         str(snapfile), "--history", str(hist), "--json", str(tmp_path / "r.json"))
    assert code == 0, out + err
    assert "ledger verification: PASS" in out
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("delete from entries where txn_id = 'seed:deposit:c0'")
    code, out, err = run("verify", "--config", str(cfg), "--dsn", fresh_db, "--before",
                         str(snapfile), "--history", str(hist), "--json", str(tmp_path / "r.json"))
    assert code == 1
    assert "FAIL snapshot/rows_changed_or_vanished: entries" in out
    r = json.loads((tmp_path / "r.json").read_text())
    vanished = [f for f in r["findings"] if f["name"] == "rows_changed_or_vanished" and not f["ok"]]
    assert vanished[0]["vanished_count"] == 2


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("dsn: [unclosed\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("dsn: postgresql://x@127.0.0.1:1/x\ninvariant: []\n")
    cases = [
        ("verify",),
        ("verify", "--config", str(tmp_path / "missing.yaml")),
        ("verify", "--config", str(bad_yaml)),
        ("verify", "--config", str(typo)),
        ("audit", "--dsn", "postgresql://nobody:s3cret@127.0.0.1:1/x", "--no-export",
         "-o", str(tmp_path / "o")),
        ("snapshot", "--dsn", "postgresql://x@127.0.0.1:1/x", "-t", "t", "-o", "x", "--key", "t"),
        ("snapshot", "--dsn", "postgresql://x@127.0.0.1:1/x", "-t", "t", "-o", "x", "--buckets", "3"),
    ]
    for args in cases:
        code, out, err = run(*args)
        assert code == 2, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"chaoskit {args[0]}: "), (args, err)
        assert "Traceback" not in err and "s3cret" not in err
    _, _, err = run("verify", "--config", str(typo))
    assert "invariant" in err and "Extra inputs" in err


def test_verify_an_experiment_file(fresh_db: str, tmp_path: Path) -> None:
    build_clean(fresh_db, trades=4)
    (tmp_path / "inv.sql").write_text("-- name: positive_qty\nselect id from trades where qty <= 0;\n")
    exp = tmp_path / "e.yaml"
    exp.write_text(
        "chaoskit: 1\ntitle: t\nvars:\n  dsn: postgresql://nobody@127.0.0.1:1/x\n"
        "method: [{pause: 1}]\nverify:\n  ledger:\n    dsn: '${dsn}'\n    invariants_file: inv.sql\n"
        "    invariants:\n      - {name: balance, query: 'select coalesce(sum(amount_cents), 0) "
        "from entries', equals: 0}\n")
    code, out, err = run("verify", str(exp), "--var", f"dsn={fresh_db}")
    assert code == 0, out + err
    assert "ok   invariant/balance: value 0 (expected 0)" in out
    assert "ok   invariant/positive_qty" in out
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("update entries set amount_cents = amount_cents + 2 where id = 1")
    code, out, _ = run("verify", str(exp), "--var", f"dsn={fresh_db}")
    assert code == 1 and "FAIL invariant/balance: value 2 (expected 0)" in out
