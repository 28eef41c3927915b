"""Helpers for tests that run the reference ledger stack: its invariants, and a stack per test
module with a unique project name and random host ports (parallel runs never collide)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg

LEDGER_DIR = Path(__file__).resolve().parent.parent / "compose" / "ledger"
INVARIANTS = LEDGER_DIR / "invariants.sql"
TEST_ENV = {"LEDGER_API_PORT": "", "BROKER_PORT": "", "LEDGER_PG_PORT": "", "LEDGER_RECON_SETTLE_S": "2"}


def violations(dsn: str, path: Path = INVARIANTS) -> dict[str, list[tuple[Any, ...]]]:
    """Every invariant that returns rows, with (up to 5 of) its rows; a group's rows go to the
    invariant their check_name column names. Empty dict: all hold."""
    from chaoskit.checkers.invariants import load_invariants_file

    bad: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set default_transaction_read_only = on")
        for inv in load_invariants_file(path):
            for row in conn.execute(inv.query).fetchall():
                name = row[0] if inv.checks else inv.name
                if len(bad.setdefault(name, [])) < 5:
                    bad[name].append(row)
    return bad


def project_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"
