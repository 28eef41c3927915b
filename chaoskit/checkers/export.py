"""Full export of ledger tables as CSV (PostgreSQL's own COPY ... CSV HEADER), with a manifest of
row counts and SHA-256 per file, so an auditor can re-check the evidence offline."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import psycopg

from chaoskit.checkers.sqlutil import CheckerError, ident


def export_tables(conn: psycopg.Connection, tables: list[str], out_dir: Path) -> dict[str, Any]:
    """Export inside the caller's consistent read, so the CSVs are the state the audit judged."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    for t in tables:
        path = out_dir / f"{t}.csv"
        h = hashlib.sha256()
        size = 0
        try:
            with conn.cursor() as cur, path.open("wb") as f:
                order = _order(conn, t)
                q = f"copy (select * from {ident(t)}{order}) to stdout with (format csv, header)"
                with cur.copy(q) as cp:
                    for block in cp:
                        b = bytes(block)
                        f.write(b)
                        h.update(b)
                        size += len(b)
                rows = cur.execute(f"select count(*) from {ident(t)}").fetchone()
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckerError(f"export of {t} failed: {first}") from None
        manifest[t] = {"file": path.name, "rows": rows[0] if rows else 0, "bytes": size,
                       "sha256": h.hexdigest()}
    return manifest


def _order(conn: psycopg.Connection, table: str) -> str:
    """Order by the primary key, so two exports of the same state are byte-identical."""
    rows = conn.execute(
        "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
        "and a.attnum = any(i.indkey) where i.indrelid = to_regclass(%s) and i.indisprimary "
        "order by array_position(i.indkey::int2[], a.attnum)", (ident(table),)).fetchall()
    return f" order by {', '.join(ident(r[0]) for r in rows)}" if rows else ""
