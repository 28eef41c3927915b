"""Helpers for tests that run the reference ledger stack: its invariants, and a stack per test
module with a unique project name and random host ports (parallel runs never collide)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import psycopg

LEDGER_DIR = Path(__file__).resolve().parent.parent / "compose" / "ledger"
INVARIANTS = LEDGER_DIR / "invariants.sql"
TEST_ENV = {"LEDGER_API_PORT": "", "BROKER_PORT": "", "LEDGER_PG_PORT": "", "LEDGER_RECON_SETTLE_S": "2"}


def load_invariants(path: Path = INVARIANTS) -> list[tuple[str, str]]:
    """Split invariants.sql on its ``-- name:`` headers into (name, query)."""
    text = path.read_text()
    parts = re.split(r"^-- name:\s*(\S+)\s*$", text, flags=re.M)
    out = []
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--")).strip()
        out.append((name, sql.rstrip(";")))
    return out


def violations(dsn: str, path: Path = INVARIANTS) -> dict[str, list[tuple[Any, ...]]]:
    """Every invariant that returns rows, with (up to 5 of) its rows. Empty dict: all hold."""
    bad: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set default_transaction_read_only = on")
        for name, sql in load_invariants(path):
            rows = conn.execute(sql).fetchall()
            if rows:
                bad[name] = rows[:5]
    return bad


def project_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"
