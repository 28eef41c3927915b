"""Small SQL helpers shared by the checkers: identifiers from config, consistent read-only reads,
exact numbers.

Config names tables and columns; a plain (optionally dotted) name is quoted as an identifier,
anything else (``payload->>'trade_id'``) is taken as an SQL expression written by the experiment
author, who already holds the DSN and so gains nothing by injecting.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg

from chaoskit.errors import ChaoskitError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


class CheckerError(ChaoskitError):
    """The checker could not look (bad config, unreachable DB, broken SQL). Not a violation."""

    exit_code = 2


def ident(name: str) -> str:
    """Quote a (dotted) identifier; pass an expression through unchanged."""
    parts = name.split(".")
    if all(_IDENT.match(p) for p in parts):
        return ".".join('"' + p.replace('"', '""') + '"' for p in parts)
    return name


def is_plain(name: str) -> bool:
    return all(_IDENT.match(p) for p in name.split("."))


def connect(dsn: str, **kw: Any) -> psycopg.Connection:
    """Connect or raise CheckerError with the DSN's password stripped from the message."""
    try:
        conn = psycopg.connect(dsn, connect_timeout=10, **kw)
        # JIT compiling the wide one-shot aggregates of the checks cost minutes on a 10M-row
        # ledger here (trade_cash_matches_fills: 16 s without JIT, > 150 s with); never pays off
        conn.execute("set jit = off")
        if not conn.autocommit:
            conn.commit()
        return conn
    except psycopg.Error as exc:
        from chaoskit.secrets import Redactor

        msg = Redactor([]).text(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        raise CheckerError(f"cannot connect to the ledger database: {msg}") from None


@contextmanager
def consistent_read(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """One REPEATABLE READ, READ ONLY transaction: every query inside sees the same snapshot,
    so invariants cannot disagree because a write landed between two of them."""
    conn.autocommit = False
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        with conn.transaction():
            yield conn
    finally:
        conn.read_only = False
        conn.isolation_level = None


def exact(value: Any) -> Any:
    """Money never becomes float: floats from the DB are refused, ints stay ints,
    numerics stay Decimal (integral Decimals become ints so 0 == Decimal('0') prints as 0)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        raise CheckerError(
            "a query returned a float; cast money to bigint or numeric (floats are never exact)"
        )
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    return value


def to_exact_number(value: Any, what: str) -> int | Decimal:
    """Parse an expectation bound from config without passing through float."""
    if isinstance(value, bool):
        raise CheckerError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, int | Decimal):
        return value
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except ArithmeticError:
            raise CheckerError(f"{what}: expected a number, got {value!r}") from None
        return int(d) if d == d.to_integral_value() else d
    if isinstance(value, float):
        d = Decimal(repr(value))  # the shortest repr is what the user typed in YAML
        return int(d) if d == d.to_integral_value() else d
    raise CheckerError(f"{what}: expected a number, got {value!r}")


def run_sql(conn: psycopg.Connection, query: str, params: dict[str, Any] | None = None,
            what: str = "query") -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one query; SQL errors become CheckerError naming the check (inside a savepoint so one
    broken query does not poison the whole consistent read)."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            if cur.description is None:
                return [], []
            cols = [d.name for d in cur.description]
            return cols, cur.fetchall()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckerError(f"{what}: SQL failed: {first}") from None


def copy_rows(conn: psycopg.Connection, query: str) -> Iterator[list[str]]:
    """Stream a query's rows as text fields via COPY: the cheapest way to move a million rows."""
    try:
        with conn.cursor() as cur, cur.copy(f"copy ({query}) to stdout") as cp:
            tail = b""
            for block in cp:
                data = tail + bytes(block)
                lines = data.split(b"\n")
                tail = lines.pop()
                for line in lines:
                    yield [_unescape(f) for f in line.split(b"\t")]
            if tail:
                yield [_unescape(f) for f in tail.split(b"\t")]
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckerError(f"SQL failed: {first}") from None


_ESC = {b"\\\\": b"\\", b"\\t": b"\t", b"\\n": b"\n", b"\\r": b"\r"}


def _unescape(field: bytes) -> str:
    if field == b"\\N":
        return ""
    if b"\\" in field:
        field = re.sub(rb"\\[\\tnr]", lambda m: _ESC[m.group(0)], field)
    return field.decode()


_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f-]+$")


def run_tasks(conn: psycopg.Connection, dsn: str, tasks: list[Callable[[psycopg.Connection], Any]],
              parallel: int = 1) -> list[Any]:
    """Run read-only tasks on ``conn`` and, when ``parallel > 1``, on extra connections that
    import ``conn``'s snapshot (``pg_export_snapshot``, as pg_dump -j does): more cores, still
    one consistent instant. Results come back in task order; the first error is raised."""
    n = min(max(1, parallel), len(tasks))
    if n <= 1:
        return [t(conn) for t in tasks]
    # the connections already keep every core busy; parallel workers on top would rebuild each
    # hash join's inner side once per worker (the plan's non-parallel Hash under a Gather)
    conn.execute("set local max_parallel_workers_per_gather = 0")
    row = conn.execute("select pg_export_snapshot()").fetchone()
    snap_id = str(row[0]) if row else ""
    if not _SNAPSHOT_ID.match(snap_id):
        raise CheckerError(f"unexpected snapshot id {snap_id!r}")
    extra: list[psycopg.Connection] = []
    try:
        for _ in range(n - 1):
            c = connect(dsn, autocommit=True)
            c.execute("begin isolation level repeatable read read only")
            c.execute(f"set transaction snapshot '{snap_id}'")
            c.execute("set local max_parallel_workers_per_gather = 0")
            extra.append(c)
        results: list[Any] = [None] * len(tasks)
        errors: list[BaseException] = []
        lock = threading.Lock()
        todo = iter(range(len(tasks)))

        def work(c: psycopg.Connection) -> None:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None or errors:
                    return
                try:
                    results[i] = tasks[i](c)
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in extra]
        for t in threads:
            t.start()
        work(conn)
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results
    finally:
        for c in extra:
            try:
                c.execute("rollback")
                c.close()
            except psycopg.Error:
                pass
