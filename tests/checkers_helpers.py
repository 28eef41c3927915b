"""A small, correct reference ledger built straight in SQL (same semantics as
compose/ledger/ledger-api), its workload history, and the defects the mutation corpus injects."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "compose" / "ledger" / "schema.sql"

DEPOSIT = 10_000_000


def load_schema(conn: psycopg.Connection) -> None:
    path = SCHEMA
    conn.execute(path.read_text())


class Builder:
    """Writes trades the way ledger-api does: trade + fills + entries + events + position."""

    def __init__(self, conn: psycopg.Connection):
        self.c = conn
        self.pos: dict[tuple[str, str], dict[str, int]] = {}
        self.fill_no = 0

    def load_positions(self) -> None:
        """Continue a ledger written by another Builder."""
        for a, i, q, c, r, v in self.c.execute(
                "select account_id, instrument, qty, cost_cents, realized_pnl_cents, version "
                "from positions").fetchall():
            self.pos[(a, i)] = {"qty": q, "cost_cents": c, "realized_pnl_cents": r, "version": v}

    def setup(self, customers: int = 3) -> None:
        c = self.c
        c.execute("insert into accounts (id, kind, currency) values "
                  "('funding:USD', 'funding', 'USD'), ('broker:USD', 'broker', 'USD')")
        for i in range(customers):
            a = f"c{i}"
            c.execute("insert into accounts (id, kind, currency) values (%s, 'customer', 'USD')", (a,))
            c.execute("insert into accounts (id, kind, owner_id, currency) values "
                      "(%s, 'margin', %s, 'USD')", (f"{a}:margin", a))
            key = f"seed:deposit:{a}"
            c.execute("insert into idempotency_keys (key, op, request, status_code, response) "
                      "values (%s, 'deposit', '{}', 200, '{}')", (key,))
            c.execute("insert into entries (txn_id, account_id, amount_cents, currency, kind) values "
                      "(%s, %s, %s, 'USD', 'deposit'), (%s, 'funding:USD', %s, 'USD', 'deposit')",
                      (key, a, DEPOSIT, key, -DEPOSIT))

    def _event(self, agg: str, version: int, etype: str, payload: dict[str, Any]) -> None:
        self.c.execute("insert into events (aggregate_id, version, type, payload) values "
                       "(%s, %s, %s, %s)", (agg, version, etype, Jsonb(payload)))

    def _save_position(self, account: str, instrument: str, reason: str, ref: str) -> None:
        p = self.pos.setdefault((account, instrument), {"qty": 0, "cost_cents": 0,
                                                         "realized_pnl_cents": 0, "version": 0})
        p["avg_price_cents"] = abs(p["cost_cents"]) // abs(p["qty"]) if p["qty"] else 0
        p["version"] += 1
        self.c.execute(
            "insert into positions (account_id, instrument, qty, cost_cents, avg_price_cents, "
            "realized_pnl_cents, margin_cents, version) values (%s, %s, %s, %s, %s, %s, 0, %s) "
            "on conflict (account_id, instrument) do update set qty = excluded.qty, "
            "cost_cents = excluded.cost_cents, avg_price_cents = excluded.avg_price_cents, "
            "realized_pnl_cents = excluded.realized_pnl_cents, version = excluded.version",
            (account, instrument, p["qty"], p["cost_cents"], p["avg_price_cents"],
             p["realized_pnl_cents"], p["version"]))
        self._event(f"position:{account}:{instrument}", p["version"], "position.changed",
                    {"qty": p["qty"], "cost_cents": p["cost_cents"],
                     "avg_price_cents": p["avg_price_cents"],
                     "realized_pnl_cents": p["realized_pnl_cents"], "margin_cents": 0,
                     "reason": reason, "ref": ref})

    def _book(self, trade_id: int, coid: str, account: str, instrument: str, side: str,
              fills: list[tuple[int, int]], kind: str, txn: str, version: int) -> int:
        for n, (q, price) in enumerate(fills):
            self.fill_no += 1
            fid = f"bf-{self.fill_no}"
            self.c.execute("insert into fills (trade_id, broker_fill_id, kind, qty, price_cents) "
                           "values (%s, %s, %s, %s, %s)", (trade_id, fid, kind, q, price))
            cash = -q * price if (side == "buy") == (kind == "open") else q * price
            tx = f"{txn}:{n}"
            self.c.execute(
                "insert into entries (txn_id, account_id, amount_cents, currency, trade_id, kind) "
                "values (%s, %s, %s, 'USD', %s, 'fill'), (%s, 'broker:USD', %s, 'USD', %s, 'fill')",
                (tx, account, cash, trade_id, tx, -cash, trade_id))
            version += 1
            self._event(f"trade:{coid}", version, "trade.filled",
                        {"broker_fill_id": fid, "kind": kind, "qty": q, "price_cents": price,
                         "account_id": account, "instrument": instrument, "side": side})
        return version

    def trade(self, i: int, coid: str | None = None, close: bool | None = None) -> dict[str, Any]:
        coid = coid or f"o{i}"
        account, instrument = f"c{i % 3}", ("AAPL", "MSFT")[i % 2]
        side = ("buy", "sell")[(i // 2) % 2]
        s = 1 if side == "buy" else -1
        fills = [(4, 10_000 + i), (6, 10_050 + i)] if i % 3 else [(10, 9_990 + i)]
        qty = sum(q for q, _ in fills)
        open_cost = sum(q * p for q, p in fills)
        vwap = open_cost // qty
        tid = self.c.execute(
            "insert into trades (client_order_id, account_id, instrument, side, qty, filled_qty, "
            "status, open_price_cents) values (%s, %s, %s, %s, %s, %s, 'open', %s) returning id",
            (coid, account, instrument, side, qty, qty, vwap)).fetchone()[0]  # type: ignore[index]
        self.c.execute("insert into idempotency_keys (key, op, request, status_code, response) "
                       "values (%s, 'trade.open', '{}', 200, '{}')", (coid,))
        p = self.pos.setdefault((account, instrument), {"qty": 0, "cost_cents": 0,
                                                         "realized_pnl_cents": 0, "version": 0})
        p["qty"] += s * qty
        p["cost_cents"] += s * open_cost
        self._save_position(account, instrument, "open", coid)
        version = 1
        self._event(f"trade:{coid}", 1, "trade.opened",
                    {"client_order_id": coid, "account_id": account, "instrument": instrument,
                     "side": side, "qty": qty, "currency": "USD"})
        version = self._book(tid, coid, account, instrument, side, fills, "open", f"{coid}:open",
                             version)
        out = {"open": coid, "close": None}
        if close if close is not None else i % 2 == 0:
            ccoid = f"{coid}-close"
            cprice = 10_100 + 7 * i
            cfills = [(qty, cprice)]
            pnl = s * (qty * cprice - open_cost)
            version = self._book(tid, coid, account, instrument, side, cfills, "close",
                                 f"{ccoid}:close", version)
            version += 1
            self._event(f"trade:{coid}", version, "trade.closed",
                        {"client_order_id": ccoid, "qty": qty, "realized_pnl_cents": pnl})
            self.c.execute("update trades set status = 'closed', close_price_cents = %s, "
                           "close_client_order_id = %s, realized_pnl_cents = %s, closed_at = now() "
                           "where id = %s", (cprice, ccoid, pnl, tid))
            self.c.execute("insert into idempotency_keys (key, op, request, status_code, response) "
                           "values (%s, 'trade.close', '{}', 200, '{}')", (ccoid,))
            p["qty"] -= s * qty
            p["cost_cents"] -= s * open_cost
            p["realized_pnl_cents"] += pnl
            self._save_position(account, instrument, "close", ccoid)
            out["close"] = ccoid
        self.c.execute("update trades set version = %s where id = %s", (version, tid))
        return out


def build_clean(dsn: str, trades: int = 24, old: int = 3,
                before: Callable[[], Any] | None = None) -> list[dict[str, Any]]:
    """A correct ledger: ``old`` trades from an earlier run, then ``before()`` (the checker's
    snapshot), then ``trades`` trades written by "the workload"; returns those ({open, close})."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        load_schema(conn)
        b = Builder(conn)
        with conn.transaction():
            b.setup()
            for i in range(old):
                b.trade(1000 + i, coid=f"old{i}")
        if before is not None:
            before()
        with conn.transaction():
            return [b.trade(i) for i in range(trades)]


def history_for(made: list[dict[str, Any]], *, extra: list[tuple[str, str, str]] = (),
                outcome: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """invoke/ok pairs for every trade written; ``outcome`` overrides one op's completion,
    ``extra`` adds (op, id, completion) operations."""
    outcome = outcome or {}
    recs: list[dict[str, Any]] = []
    t = 0
    ops = [("open", m["open"]) for m in made] + [("close", m["close"]) for m in made if m["close"]]
    for n, (opname, oid) in enumerate([*ops, *[(o, i) for o, i, _ in extra]]):
        done = outcome.get(oid) or next((c for o, i, c in extra if i == oid), "ok")
        t += 1
        recs.append({"type": "invoke", "process": n % 4, "op": opname, "id": oid, "time": t,
                     "value": {"qty": 10}})
        t += 1
        if done != "none":
            recs.append({"type": done, "process": n % 4, "op": opname, "id": oid, "time": t,
                         "value": {"qty": 10}, "error": None if done == "ok" else "timeout"})
    return recs


def write_history(path: Path, recs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path
