#!/usr/bin/env python3
"""ledger-api: the trading ledger under test.

Small on purpose, honest where it matters: every mutating request carries a client_order_id
that is written to idempotency_keys in the SAME transaction as its effects, so a retry has
exactly one effect and an unknown outcome can be resolved by a read (GET /ops/<key>). Money is
integer cents. Each operation logs `<op>.begin id=...` before its real work (broker call + db
transaction) and `<op>.end id=... status=...` after, flushed at once, so triggers can aim
inside it. LEDGER_STEP_DELAY_MS widens that window; LEDGER_BUG switches on deliberate bugs
(no_idempotency, non_atomic_open, cent_off) that chaos scenarios must catch.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4

import httpx
import psycopg
from psycopg.types.json import Jsonb

DSN = os.environ.get("LEDGER_DSN", "postgresql://ledger:ledger@postgres:5432/ledger")
BROKER_URL = os.environ.get("BROKER_URL", "http://broker:8090")
PORT = int(os.environ.get("LEDGER_PORT", "8080"))
STEP_DELAY = float(os.environ.get("LEDGER_STEP_DELAY_MS", "0") or 0) / 1000.0
BUGS = {b.strip() for b in os.environ.get("LEDGER_BUG", "").split(",") if b.strip()}
SEED = int(os.environ.get("LEDGER_SEED", "0") or 0)
BROKER_TIMEOUT = float(os.environ.get("LEDGER_BROKER_TIMEOUT_S", "5"))
POOL_SIZE = int(os.environ.get("LEDGER_DB_POOL", "16"))
SCHEMA = os.environ.get("LEDGER_SCHEMA", "/app/schema.sql")
ACCOUNTS = os.environ.get(
    "LEDGER_ACCOUNTS", "acct-1:USD,acct-2:USD,acct-3:USD,acct-4:USD,acct-5:EUR,acct-6:EUR"
)
DEPOSIT_CENTS = int(os.environ.get("LEDGER_DEPOSIT_CENTS", "100000000"))
MARGIN_BPS = int(os.environ.get("LEDGER_MARGIN_BPS", "1000"))  # required margin: 10% of cost
RECON_SETTLE_S = float(os.environ.get("LEDGER_RECON_SETTLE_S", "30"))  # > any op's broker-to-commit time
SCHEMA_LOCK = 727101
KNOWN_BUGS = {"no_idempotency", "non_atomic_open", "cent_off"}
KEY_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")

_log_lock = threading.Lock()
_bug_rng = random.Random(SEED)
_bug_lock = threading.Lock()


def log(line: str) -> None:
    """One line per call, flushed now: a SIGKILL must not eat a begin line that was 'printed'."""
    with _log_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _Replay(Exception):
    """The key is already committed: answer with the stored response."""


class Pool:
    """A tiny connection pool (psycopg_pool is not packaged in bookworm). Broken connections are
    dropped, so a restarted PostgreSQL is picked up without restarting the API."""

    def __init__(self, dsn: str, size: int):
        self.dsn = dsn
        self.idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self.slots = threading.BoundedSemaphore(size)

    @contextmanager
    def conn(self):
        if not self.slots.acquire(timeout=10):
            raise ApiError(503, "database pool exhausted")
        c = None
        try:
            try:
                c = self.idle.get_nowait()
            except queue.Empty:
                c = None
            if c is None or c.closed or c.broken:
                try:
                    c = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
                except psycopg.Error as exc:
                    raise ApiError(503, f"database unavailable: {str(exc).strip()[:200]}") from exc
            yield c
        finally:
            if c is not None:
                if c.closed or c.broken or c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    try:
                        c.close()
                    except Exception:  # noqa: BLE001
                        pass
                else:
                    self.idle.put(c)
            self.slots.release()


pool = Pool(DSN, POOL_SIZE)


def _broker_client() -> httpx.Client:
    """httpx writes request headers and body separately; with Nagle on, the body then waits for
    the broker's delayed ACK (~40 ms per call, measured). Set TCP_NODELAY on its sockets."""
    try:
        import socket

        import httpcore
        from httpcore.backends.sync import SyncBackend

        class NoDelay(SyncBackend):
            def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
                stream = super().connect_tcp(*args, **kwargs)
                stream.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return stream

        transport = httpx.HTTPTransport()
        transport._pool = httpcore.ConnectionPool(max_connections=64, max_keepalive_connections=64,
                                                  network_backend=NoDelay())
        return httpx.Client(base_url=BROKER_URL, timeout=BROKER_TIMEOUT, transport=transport)
    except (ImportError, AttributeError, TypeError):  # another httpcore: correct, only slower
        return httpx.Client(base_url=BROKER_URL, timeout=BROKER_TIMEOUT)


broker = _broker_client()


def step_delay() -> None:
    if STEP_DELAY > 0:
        time.sleep(STEP_DELAY)


def broker_call(method: str, path: str, body: dict | None = None) -> dict:
    """Broker errors are 502 to our client: the broker may have acted, so the outcome is unknown."""
    try:
        r = broker.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise ApiError(502, f"broker unreachable: {type(exc).__name__}") from exc
    if r.status_code == 409:
        raise ApiError(409, f"broker: {r.json().get('error', 'conflict')}")
    if r.status_code >= 400:
        raise ApiError(502, f"broker error {r.status_code}: {r.text[:200]}")
    return r.json()


# ---------------------------------------------------------------- schema and seed data


def init_db() -> None:
    """Apply schema.sql and seed accounts once, under an advisory lock (race-free on restarts)."""
    ddl = open(SCHEMA).read()
    delay = 0.2
    while True:
        try:
            with psycopg.connect(DSN, autocommit=True, connect_timeout=3) as c:
                c.execute("select pg_advisory_lock(%s)", (SCHEMA_LOCK,))
                try:
                    c.execute(ddl)
                    seed_accounts(c)
                finally:
                    c.execute("select pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
            return
        except psycopg.OperationalError as exc:
            log(f"db.wait error={str(exc).strip().splitlines()[0][:120]!r}")
            time.sleep(delay)
            delay = min(2.0, delay * 2)


def seed_accounts(c: psycopg.Connection) -> None:
    for spec in ACCOUNTS.split(","):
        acct, _, cur = spec.strip().partition(":")
        cur = (cur or "USD").upper()
        with c.transaction():
            for sys_kind in ("broker", "funding"):
                c.execute(
                    "insert into accounts (id, kind, currency) values (%s, %s, %s) on conflict do nothing",
                    (f"{sys_kind}:{cur}", sys_kind, cur),
                )
            c.execute(
                "insert into accounts (id, kind, currency) values (%s, 'customer', %s) on conflict do nothing",
                (acct, cur),
            )
            c.execute(
                "insert into accounts (id, kind, owner_id, currency) values (%s, 'margin', %s, %s) "
                "on conflict do nothing",
                (f"{acct}:margin", acct, cur),
            )
            key = f"seed:deposit:{acct}"
            got = c.execute(
                "insert into idempotency_keys (key, op, request, status_code, response) "
                "values (%s, 'deposit', %s, 200, %s) on conflict do nothing returning key",
                (key, Jsonb({"account_id": acct}), Jsonb({"amount_cents": DEPOSIT_CENTS})),
            ).fetchone()
            if got:
                c.execute(
                    "insert into entries (txn_id, account_id, amount_cents, currency, kind) values "
                    "(%s, %s, %s, %s, 'deposit'), (%s, %s, %s, %s, 'deposit')",
                    (key, acct, DEPOSIT_CENTS, cur, key, f"funding:{cur}", -DEPOSIT_CENTS, cur),
                )


# ---------------------------------------------------------------- building blocks (inside a txn)


def sign(side: str) -> int:
    return 1 if side == "buy" else -1


def add_event(cur: psycopg.Cursor, aggregate: str, version: int, etype: str, payload: dict) -> None:
    cur.execute(
        "insert into events (aggregate_id, version, type, payload) values (%s, %s, %s, %s)",
        (aggregate, version, etype, Jsonb(payload)),
    )


def lock_position(cur: psycopg.Cursor, account: str, instrument: str) -> dict:
    cur.execute(
        "insert into positions (account_id, instrument) values (%s, %s) on conflict do nothing",
        (account, instrument),
    )
    row = cur.execute(
        "select qty, cost_cents, realized_pnl_cents, margin_cents, version from positions "
        "where account_id = %s and instrument = %s for update",
        (account, instrument),
    ).fetchone()
    return dict(
        account_id=account, instrument=instrument, qty=row[0], cost_cents=row[1],
        realized_pnl_cents=row[2], margin_cents=row[3], version=row[4],
    )


def save_position(cur: psycopg.Cursor, pos: dict, reason: str, ref: str) -> None:
    pos["avg_price_cents"] = abs(pos["cost_cents"]) // abs(pos["qty"]) if pos["qty"] else 0
    pos["version"] += 1
    cur.execute(
        "update positions set qty = %s, cost_cents = %s, avg_price_cents = %s, realized_pnl_cents = %s, "
        "margin_cents = %s, version = %s, updated_at = now() where account_id = %s and instrument = %s",
        (pos["qty"], pos["cost_cents"], pos["avg_price_cents"], pos["realized_pnl_cents"],
         pos["margin_cents"], pos["version"], pos["account_id"], pos["instrument"]),
    )
    etype = "position.margin" if reason == "margin" else "position.changed"
    add_event(cur, f"position:{pos['account_id']}:{pos['instrument']}", pos["version"], etype,
              {**{k: pos[k] for k in ("qty", "cost_cents", "avg_price_cents", "realized_pnl_cents",
                                      "margin_cents")}, "reason": reason, "ref": ref})


TRADE_COLS = ("id, client_order_id, account_id, instrument, side, qty, filled_qty, status, "
              "open_price_cents, close_price_cents, close_client_order_id, realized_pnl_cents, version")


def trade_dict(row: tuple) -> dict:
    names = [n.strip() for n in TRADE_COLS.split(",")]
    return dict(zip(names, row, strict=True))


def get_trade(cur: psycopg.Cursor, ref: str, lock: bool = False) -> dict:
    row = cur.execute(
        f"select {TRADE_COLS} from trades where client_order_id = %s" + (" for update" if lock else ""),
        (ref,),
    ).fetchone()
    if row is None:
        raise ApiError(404, f"no trade {ref}")
    return trade_dict(row)


def insert_fills(cur: psycopg.Cursor, trade: dict, fills: list[dict], kind: str) -> list[dict]:
    """Fill rows only (not money, not events); a fill seen before is skipped (unique broker id)."""
    new = []
    for f in fills:
        got = cur.execute(
            "insert into fills (trade_id, broker_fill_id, kind, qty, price_cents) values (%s, %s, %s, %s, %s) "
            "on conflict (broker_fill_id) do nothing returning id",
            (trade["id"], f["fill_id"], kind, int(f["qty"]), int(f["price_cents"])),
        ).fetchone()
        if got:
            new.append({**f, "kind": kind})
    return new


def book_fills(cur: psycopg.Cursor, trade: dict, fills: list[dict], currency: str, txn_id: str) -> None:
    """Money lines and trade.filled events for fills already inserted."""
    for n, f in enumerate(fills):
        notional = int(f["qty"]) * int(f["price_cents"])
        cash = -notional if (trade["side"] == "buy") == (f["kind"] == "open") else notional
        broker_side = -cash
        if "cent_off" in BUGS:
            with _bug_lock:
                if _bug_rng.random() < 0.05:
                    broker_side += 1
        tx = f"{txn_id}:{n}"
        cur.execute(
            "insert into entries (txn_id, account_id, amount_cents, currency, trade_id, kind) values "
            "(%s, %s, %s, %s, %s, 'fill'), (%s, %s, %s, %s, %s, 'fill')",
            (tx, trade["account_id"], cash, currency, trade["id"],
             tx, f"broker:{currency}", broker_side, currency, trade["id"]),
        )
        trade["version"] += 1
        add_event(cur, f"trade:{trade['client_order_id']}", trade["version"], "trade.filled", {
            "broker_fill_id": f["fill_id"], "kind": f["kind"], "qty": int(f["qty"]),
            "price_cents": int(f["price_cents"]), "account_id": trade["account_id"],
            "instrument": trade["instrument"], "side": trade["side"],
        })


def vwap(fills: list[dict]) -> int | None:
    q = sum(int(f["qty"]) for f in fills)
    return sum(int(f["qty"]) * int(f["price_cents"]) for f in fills) // q if q else None


def account_currency(cur: psycopg.Cursor, account: str) -> str:
    row = cur.execute("select currency from accounts where id = %s and kind = 'customer'", (account,)).fetchone()
    if row is None:
        raise ApiError(404, f"no customer account {account}")
    return row[0]


def public_trade(t: dict) -> dict:
    return {k: v for k, v in t.items() if k != "id"}


# ---------------------------------------------------------------- the idempotent frame


def idempotent(op: str, key: str, request: dict, work) -> dict:
    """Run ``work(cur)`` in one transaction that starts by claiming ``key``. A concurrent request
    with the same key blocks on the key row and then gets the stored response."""
    with pool.conn() as conn:
        try:
            with conn.transaction():
                cur = conn.cursor()
                if "no_idempotency" in BUGS:
                    cur.execute(
                        "insert into idempotency_keys (key, op, request, status_code, response) "
                        "values (%s, %s, %s, 0, '{}') on conflict (key) do update set request = excluded.request",
                        (key, op, Jsonb(request)),
                    )
                else:
                    got = cur.execute(
                        "insert into idempotency_keys (key, op, request, status_code, response) "
                        "values (%s, %s, %s, 0, '{}') on conflict (key) do nothing returning key",
                        (key, op, Jsonb(request)),
                    ).fetchone()
                    if got is None:
                        raise _Replay()
                resp = work(cur)
                cur.execute(
                    "update idempotency_keys set status_code = 200, response = %s where key = %s",
                    (Jsonb(resp), key),
                )
            return resp
        except _Replay:
            pass
        row = conn.execute(
            "select op, request, response from idempotency_keys where key = %s", (key,)
        ).fetchone()
    if row is None:
        raise ApiError(503, "idempotency key vanished; retry")
    if row[0] != op or row[1] != request:
        raise ApiError(422, f"client_order_id {key} was already used for a different request")
    return {**row[2], "replayed": True}


# ---------------------------------------------------------------- operations


def need(body: dict, name: str, kind: type = str) -> Any:
    v = body.get(name)
    if kind is int:
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ApiError(422, f"{name} must be a positive integer")
    elif not isinstance(v, str) or not v:
        raise ApiError(422, f"{name} must be a non-empty string")
    return v


def op_key(body: dict) -> str:
    key = need(body, "client_order_id")
    if not KEY_RE.match(key):
        raise ApiError(422, "client_order_id: 1-128 chars of [A-Za-z0-9._:@-]")
    return key


def trade_open(body: dict) -> dict:
    key = op_key(body)
    account, instrument = need(body, "account_id"), need(body, "instrument")
    side, qty = need(body, "side"), need(body, "qty", int)
    if side not in ("buy", "sell"):
        raise ApiError(422, "side must be buy or sell")
    request = {"client_order_id": key, "account_id": account, "instrument": instrument, "side": side, "qty": qty}
    broker_key = f"{key}:{uuid4().hex[:8]}" if "no_idempotency" in BUGS else key

    def rows(cur: psycopg.Cursor) -> tuple[dict, dict, list[dict], str]:
        currency = account_currency(cur, account)
        pos = lock_position(cur, account, instrument)
        order = broker_call("POST", "/orders", {**request, "client_order_id": broker_key})
        step_delay()
        fills = order["fills"]
        filled = sum(int(f["qty"]) for f in fills)
        row = cur.execute(
            f"insert into trades (client_order_id, account_id, instrument, side, qty, filled_qty, status, "
            f"open_price_cents) values (%s, %s, %s, %s, %s, %s, 'open', %s) "
            f"on conflict (client_order_id) do update set qty = trades.qty + excluded.qty, "
            f"filled_qty = trades.filled_qty + excluded.filled_qty returning {TRADE_COLS}",
            (key, account, instrument, side, qty, filled, vwap(fills)),
        ).fetchone()
        trade = trade_dict(row)
        new = insert_fills(cur, trade, fills, "open")
        s = sign(side)
        pos["qty"] += s * sum(int(f["qty"]) for f in new)
        pos["cost_cents"] += s * sum(int(f["qty"]) * int(f["price_cents"]) for f in new)
        save_position(cur, pos, "open", key)
        return trade, pos, new, currency

    def money(cur: psycopg.Cursor, trade: dict, new: list[dict], currency: str) -> dict:
        trade["version"] += 1
        add_event(cur, f"trade:{key}", trade["version"], "trade.opened", {**request, "currency": currency})
        book_fills(cur, trade, new, currency, f"{key}:open")
        cur.execute("update trades set version = %s where id = %s", (trade["version"], trade["id"]))
        return {"trade": public_trade(trade), "fills": [f["fill_id"] for f in new]}

    if "non_atomic_open" in BUGS:
        # BUG on purpose: trade and position in one transaction, money and events in another,
        # with the step delay as the window between them.
        with pool.conn() as conn:
            with conn.transaction():
                trade, pos, new, currency = rows(conn.cursor())
        step_delay()

        def rest(cur: psycopg.Cursor) -> dict:
            return money(cur, trade, new, currency)

        return idempotent("trade.open", key, request, rest)

    def work(cur: psycopg.Cursor) -> dict:
        trade, pos, new, currency = rows(cur)
        return money(cur, trade, new, currency)

    return idempotent("trade.open", key, request, work)


def trade_close(ref: str, body: dict) -> dict:
    key = op_key(body)
    request = {"client_order_id": key, "trade": ref}

    def work(cur: psycopg.Cursor) -> dict:
        t0 = get_trade(cur, ref)
        currency = account_currency(cur, t0["account_id"])
        pos = lock_position(cur, t0["account_id"], t0["instrument"])
        trade = get_trade(cur, ref, lock=True)
        if trade["status"] != "open":
            raise ApiError(409, f"trade {ref} is already closed")
        opens = [
            {"qty": q, "price_cents": p}
            for q, p in cur.execute(
                "select qty, price_cents from fills where trade_id = %s and kind = 'open'", (trade["id"],)
            ).fetchall()
        ]
        open_cost = sum(f["qty"] * f["price_cents"] for f in opens)
        new: list[dict] = []
        if trade["filled_qty"] > 0:
            order = broker_call("POST", "/orders", {
                "client_order_id": key, "account_id": trade["account_id"], "instrument": trade["instrument"],
                "side": "sell" if trade["side"] == "buy" else "buy", "qty": trade["filled_qty"], "close": True,
            })
            step_delay()
            new = insert_fills(cur, trade, order["fills"], "close")
            if sum(int(f["qty"]) for f in new) != trade["filled_qty"]:
                raise ApiError(502, "broker did not fill the whole close order")
        close_cash = sum(int(f["qty"]) * int(f["price_cents"]) for f in new)
        s = sign(trade["side"])
        pnl = s * (close_cash - open_cost)
        book_fills(cur, trade, new, currency, f"{key}:close")
        trade["version"] += 1
        add_event(cur, f"trade:{ref}", trade["version"], "trade.closed", {
            "client_order_id": key, "qty": trade["filled_qty"], "open_cost_cents": s * open_cost,
            "close_price_cents": vwap(new), "realized_pnl_cents": pnl,
            "account_id": trade["account_id"], "instrument": trade["instrument"], "side": trade["side"],
        })
        cur.execute(
            "update trades set status = 'closed', close_price_cents = %s, close_client_order_id = %s, "
            "realized_pnl_cents = %s, version = %s, closed_at = now() where id = %s",
            (vwap(new), key, pnl, trade["version"], trade["id"]),
        )
        trade.update(status="closed", close_price_cents=vwap(new), close_client_order_id=key, realized_pnl_cents=pnl)
        pos["qty"] -= s * trade["filled_qty"]
        pos["cost_cents"] -= s * open_cost
        pos["realized_pnl_cents"] += pnl
        save_position(cur, pos, "close", key)
        return {"trade": public_trade(trade), "fills": [f["fill_id"] for f in new]}

    return idempotent("trade.close", key, request, work)


def trade_fill(ref: str, body: dict) -> dict:
    """Ask the broker for the next fill of a partially filled order and apply it."""
    key = op_key(body)
    request = {"client_order_id": key, "trade": ref}

    def work(cur: psycopg.Cursor) -> dict:
        t0 = get_trade(cur, ref)
        currency = account_currency(cur, t0["account_id"])
        pos = lock_position(cur, t0["account_id"], t0["instrument"])
        trade = get_trade(cur, ref, lock=True)
        if trade["status"] != "open":
            raise ApiError(409, f"trade {ref} is closed")
        if trade["filled_qty"] >= trade["qty"]:
            raise ApiError(409, f"trade {ref} is fully filled")
        got = broker_call("POST", f"/orders/{ref}/fills", {"fill_key": key})
        step_delay()
        new = insert_fills(cur, trade, got["fills"], "open")
        q = sum(int(f["qty"]) for f in new)
        cost = sum(int(f["qty"]) * int(f["price_cents"]) for f in new)
        all_open = cur.execute(
            "select qty, price_cents from fills where trade_id = %s and kind = 'open'", (trade["id"],)
        ).fetchall()
        trade["filled_qty"] += q
        trade["open_price_cents"] = vwap([{"qty": a, "price_cents": b} for a, b in all_open])
        book_fills(cur, trade, new, currency, f"{key}:fill")
        cur.execute(
            "update trades set filled_qty = %s, open_price_cents = %s, version = %s where id = %s",
            (trade["filled_qty"], trade["open_price_cents"], trade["version"], trade["id"]),
        )
        s = sign(trade["side"])
        pos["qty"] += s * q
        pos["cost_cents"] += s * cost
        save_position(cur, pos, "fill", key)
        return {"trade": public_trade(trade), "fills": [f["fill_id"] for f in new]}

    return idempotent("trade.fill", key, request, work)


def margin_update(body: dict) -> dict:
    """Move cash between the customer account and its margin account so the position holds
    MARGIN_BPS of its cost (or an explicit margin_cents)."""
    key = op_key(body)
    request = {k: body[k] for k in ("client_order_id", "trade", "account_id", "instrument", "margin_cents") if k in body}
    explicit = body.get("margin_cents")
    if explicit is not None and (not isinstance(explicit, int) or isinstance(explicit, bool) or explicit < 0):
        raise ApiError(422, "margin_cents must be a non-negative integer")

    def work(cur: psycopg.Cursor) -> dict:
        if "trade" in body:
            t = get_trade(cur, need(body, "trade"))
            account, instrument = t["account_id"], t["instrument"]
        else:
            account, instrument = need(body, "account_id"), need(body, "instrument")
        currency = account_currency(cur, account)
        exists = cur.execute(
            "select 1 from positions where account_id = %s and instrument = %s", (account, instrument)
        ).fetchone()
        if not exists:
            raise ApiError(404, f"no position {account}/{instrument}")
        pos = lock_position(cur, account, instrument)
        step_delay()
        required = explicit if explicit is not None else abs(pos["cost_cents"]) * MARGIN_BPS // 10000
        delta = required - pos["margin_cents"]
        if delta:
            cur.execute(
                "insert into entries (txn_id, account_id, amount_cents, currency, kind) values "
                "(%s, %s, %s, %s, 'margin'), (%s, %s, %s, %s, 'margin')",
                (f"{key}:margin", account, -delta, currency, f"{key}:margin", f"{account}:margin", delta, currency),
            )
            pos["margin_cents"] = required
            save_position(cur, pos, "margin", key)
        return {"account_id": account, "instrument": instrument, "margin_cents": required, "delta_cents": delta}

    return idempotent("margin.update", key, request, work)


def recon_run(body: dict) -> dict:
    """Fill-level reconciliation: every broker fill older than the settle window must be in the
    ledger, and every ledger fill must be known to the broker."""
    key = op_key(body)
    request = {"client_order_id": key}

    def work(cur: psycopg.Cursor) -> dict:
        cutoff = time.time() - RECON_SETTLE_S
        broker_fills = broker_call("GET", "/fills")["fills"]
        step_delay()
        ours = {r[0] for r in cur.execute("select broker_fill_id from fills").fetchall()}
        theirs = {f["fill_id"] for f in broker_fills}
        missing = sorted(f["fill_id"] for f in broker_fills if f["ts"] < cutoff and f["fill_id"] not in ours)
        unknown = sorted(ours - theirs)
        status = "matched" if not missing and not unknown else "mismatch"
        diffs = {"missing_in_ledger": missing[:100], "unknown_at_broker": unknown[:100],
                 "missing_count": len(missing), "unknown_count": len(unknown)}
        cur.execute(
            "insert into recon_runs (client_order_id, status, checked, diffs) values (%s, %s, %s, %s)",
            (key, status, len(theirs), Jsonb(diffs)),
        )
        add_event(cur, f"recon:{key}", 1, "recon.completed", {"status": status, "checked": len(theirs), **diffs})
        return {"status": status, "checked": len(theirs), **diffs}

    return idempotent("recon.run", key, request, work)


def replay_positions(cur: psycopg.Cursor) -> dict[tuple[str, str], dict]:
    """Rebuild the positions projection from the event log alone."""
    proj: dict[tuple[str, str], dict] = {}

    def p(a: str, i: str) -> dict:
        return proj.setdefault((a, i), {"qty": 0, "cost_cents": 0, "realized_pnl_cents": 0, "margin_cents": 0})

    for aggregate, etype, pl in cur.execute(
        "select aggregate_id, type, payload from events "
        "where type in ('trade.filled', 'trade.closed', 'position.margin') order by id"
    ):
        if etype == "trade.filled" and pl["kind"] == "open":
            pos, s = p(pl["account_id"], pl["instrument"]), sign(pl["side"])
            pos["qty"] += s * pl["qty"]
            pos["cost_cents"] += s * pl["qty"] * pl["price_cents"]
        elif etype == "trade.closed":
            pos = p(pl["account_id"], pl["instrument"])
            pos["qty"] -= sign(pl["side"]) * pl["qty"]
            pos["cost_cents"] -= pl["open_cost_cents"]
            pos["realized_pnl_cents"] += pl["realized_pnl_cents"]
        elif etype == "position.margin":
            _, account, instrument = aggregate.split(":", 2)
            p(account, instrument)["margin_cents"] = pl["margin_cents"]
    for pos in proj.values():
        pos["avg_price_cents"] = abs(pos["cost_cents"]) // abs(pos["qty"]) if pos["qty"] else 0
    return proj


def events_replay(body: dict) -> dict:
    key = op_key(body)
    apply = bool(body.get("apply", False))
    request = {"client_order_id": key, "apply": apply}
    fields = ("qty", "cost_cents", "avg_price_cents", "realized_pnl_cents", "margin_cents")
    with pool.conn() as conn:
        # One snapshot for events and positions, so concurrent trades cannot fake a mismatch.
        # With apply, lock positions first: the snapshot is taken after the lock is granted.
        # (autocommit connection, so BEGIN/COMMIT are ours to send.)
        conn.execute("begin isolation level repeatable read")
        try:
            if apply:
                conn.execute("lock table positions in exclusive mode")
            cur = conn.cursor()
            got = cur.execute(
                "insert into idempotency_keys (key, op, request, status_code, response) "
                "values (%s, 'events.replay', %s, 0, '{}') on conflict (key) do nothing returning key",
                (key, Jsonb(request)),
            ).fetchone()
            if got is None:
                conn.execute("rollback")
                row = conn.execute("select response from idempotency_keys where key = %s", (key,)).fetchone()
                return {**row[0], "replayed": True}
            step_delay()
            proj = replay_positions(cur)
            stored = {
                (r[0], r[1]): dict(zip(fields, r[2:], strict=True))
                for r in cur.execute(f"select account_id, instrument, {', '.join(fields)} from positions")
            }
            zero = dict.fromkeys(fields, 0)
            mismatches = []
            for k in sorted(set(proj) | set(stored)):
                a, b = proj.get(k, zero), stored.get(k, zero)
                if a != b:
                    mismatches.append({"account_id": k[0], "instrument": k[1], "events": a, "stored": b})
                    if apply:
                        cur.execute(
                            "update positions set qty = %s, cost_cents = %s, avg_price_cents = %s, "
                            "realized_pnl_cents = %s, margin_cents = %s where account_id = %s and instrument = %s",
                            (*[a[f] for f in fields], k[0], k[1]),
                        )
            resp = {"positions": len(proj), "mismatches": mismatches[:50], "mismatch_count": len(mismatches),
                    "applied": apply and bool(mismatches)}
            cur.execute("update idempotency_keys set status_code = 200, response = %s where key = %s",
                        (Jsonb(resp), key))
            conn.execute("commit")
            return resp
        finally:
            if not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("rollback")


# ---------------------------------------------------------------- reads


def read(sql: str, args: tuple = ()) -> list[dict]:
    with pool.conn() as conn:
        cur = conn.execute(sql, args)
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def get_trade_view(ref: str) -> dict:
    rows = read(f"select {TRADE_COLS} from trades where client_order_id = %s", (ref,))
    if not rows:
        raise ApiError(404, f"no trade {ref}")
    t = rows[0]
    t["fills"] = read(
        "select broker_fill_id, kind, qty, price_cents from fills where trade_id = %s order by id", (t["id"],)
    )
    return public_trade(t)


def get_op(key: str) -> dict:
    rows = read("select key, op, status_code, request, response from idempotency_keys where key = %s", (key,))
    if not rows or rows[0]["status_code"] != 200:
        raise ApiError(404, f"no committed operation {key}")
    return rows[0]


# ---------------------------------------------------------------- HTTP

ROUTES = [
    ("POST", re.compile(r"^/trades$"), "trade.open", lambda m, b: trade_open(b)),
    ("POST", re.compile(r"^/trades/([^/]+)/close$"), "trade.close", lambda m, b: trade_close(m.group(1), b)),
    ("POST", re.compile(r"^/trades/([^/]+)/fills$"), "trade.fill", lambda m, b: trade_fill(m.group(1), b)),
    ("POST", re.compile(r"^/margin$"), "margin.update", lambda m, b: margin_update(b)),
    ("POST", re.compile(r"^/recon$"), "recon.run", lambda m, b: recon_run(b)),
    ("POST", re.compile(r"^/replay$"), "events.replay", lambda m, b: events_replay(b)),
    ("GET", re.compile(r"^/trades/([^/]+)$"), None, lambda m, b: get_trade_view(m.group(1))),
    ("GET", re.compile(r"^/ops/([^/]+)$"), None, lambda m, b: get_op(m.group(1))),
    ("GET", re.compile(r"^/positions$"), None, lambda m, b: {"positions": read(
        "select account_id, instrument, qty, cost_cents, avg_price_cents, realized_pnl_cents, margin_cents, "
        "version from positions order by 1, 2")}),
    ("GET", re.compile(r"^/accounts$"), None, lambda m, b: {"accounts": read(
        "select a.id, a.kind, a.currency, coalesce(sum(e.amount_cents), 0)::bigint as balance_cents "
        "from accounts a left join entries e on e.account_id = a.id group by a.id order by a.id")}),
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ledger-api/1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - access log off: begin/end lines suffice
        pass

    def _send(self, status: int, obj: Any) -> None:
        data = json.dumps(obj, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        body: Any = {}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path == "/health" and method == "GET":
            try:
                with pool.conn() as conn:
                    conn.execute("select 1")
                self._send(200, {"status": "ok", "bugs": sorted(BUGS), "step_delay_ms": STEP_DELAY * 1000})
            except (ApiError, psycopg.Error) as exc:
                self._send(503, {"status": "db down", "error": str(exc)[:200]})
            return
        for m_, rx, op, fn in ROUTES:  # noqa: B007 - the match is used after the loop
            m = rx.match(path)
            if m and m_ == method:
                break
        else:
            self._send(404, {"error": f"no route {method} {path}"})
            return
        t0 = time.monotonic()
        status = "error"
        key = "-"
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise ApiError(400, "body is not JSON") from exc
                if not isinstance(body, dict):
                    raise ApiError(400, "body must be a JSON object")
            if op:
                key = str(body.get("client_order_id", "-"))[:128]
                extra = " ".join(f"{k}={body[k]}" for k in ("account_id", "instrument", "side", "qty") if k in body)
                ref = f" trade={m.group(1)}" if m.groups() else ""
                log(f"{op}.begin id={key}{ref} {extra}".rstrip())
            result = fn(m, body)
            status = "ok"
            self._send(200, result)
        except ApiError as exc:
            status = f"{exc.status}"
            self._send(exc.status, {"error": exc.message})
        except psycopg.errors.UniqueViolation as exc:
            status = "409"
            self._send(409, {"error": f"conflict: {str(exc).splitlines()[0]}"})
        except psycopg.OperationalError as exc:
            status = "503"
            self._send(503, {"error": f"database: {str(exc).strip().splitlines()[0][:200]}"})
        except Exception as exc:  # noqa: BLE001 - a bug must answer 500, not kill the thread silently
            status = "500"
            log(f"error op={op} id={key} {type(exc).__name__}: {exc}")
            self._send(500, {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            if op:
                log(f"{op}.end id={key} status={status} ms={(time.monotonic() - t0) * 1000:.1f}")

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line, not a traceback: a client that hung up (healthcheck timeout) is routine."""
        exc = sys.exc_info()[1]
        log(f"http.error client={client_address[0]} error={type(exc).__name__}: {exc}")


def main() -> None:
    unknown = BUGS - KNOWN_BUGS
    if unknown:
        sys.exit(f"LEDGER_BUG: unknown {sorted(unknown)}; known: {sorted(KNOWN_BUGS)}")
    init_db()
    log(f"ledger-api.ready port={PORT} bugs={','.join(sorted(BUGS)) or 'none'} step_delay_ms={STEP_DELAY * 1000:g}")
    Server(("0.0.0.0", PORT), Handler).serve_forever()


if __name__ == "__main__":
    main()
