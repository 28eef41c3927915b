#!/usr/bin/env python3
"""broker: a market-order simulator the ledger places orders with.

Idempotent by client_order_id (and by fill_key for follow-up fills), fills fully or partially
from a seeded RNG per order (so a replay of the same keys gets the same fills), and keeps its
own record of orders and fills in an append-only file on a volume: the ledger reconciles
against it, and a broker restart forgets nothing.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PORT = int(os.environ.get("BROKER_PORT", "8090"))
SEED = int(os.environ.get("BROKER_SEED", "0") or 0)
DATA = os.environ.get("BROKER_DATA", "/data/broker.jsonl")
DELAY = float(os.environ.get("BROKER_DELAY_MS", "0") or 0) / 1000.0
FULL_FILL_P = float(os.environ.get("BROKER_FULL_FILL_P", "0.6"))
PRICES = {"AAPL": 19000, "MSFT": 41000, "TSLA": 25000, "SAP": 18000, "ASML": 70000, "NVDA": 12000}

lock = threading.Lock()
orders: dict[str, dict] = {}
fill_keys: dict[str, list[dict]] = {}
all_fills: list[dict] = []
_out = None


def _persist(rec: dict) -> None:
    _out.write(json.dumps(rec) + "\n")
    _out.flush()


def _apply(rec: dict) -> None:
    if rec["t"] == "order":
        o = rec["order"]
        orders[o["client_order_id"]] = {**o, "fills": []}
    elif rec["t"] == "fills":
        o = orders[rec["order"]]
        for f in rec["fills"]:
            o["fills"].append(f)
            o["filled_qty"] = o.get("filled_qty", 0) + f["qty"]
            all_fills.append({**f, "client_order_id": o["client_order_id"], "account_id": o["account_id"],
                              "instrument": o["instrument"], "side": o["side"]})
        if rec.get("fill_key"):
            fill_keys[rec["fill_key"]] = rec["fills"]


def record(rec: dict) -> None:
    _persist(rec)
    _apply(rec)


def load() -> None:
    global _out
    os.makedirs(os.path.dirname(DATA) or ".", exist_ok=True)
    if os.path.exists(DATA):
        with open(DATA) as fh:
            for line in fh:
                try:
                    _apply(json.loads(line))
                except (ValueError, KeyError):
                    pass  # a torn last line after a kill: the write never completed
    _out = open(DATA, "a")


def rng_for(key: str) -> random.Random:
    return random.Random(f"{SEED}:{key}")


def price(rng: random.Random, instrument: str) -> int:
    base = PRICES.get(instrument) or 10000 + (sum(map(ord, instrument)) % 50) * 1000
    return base + rng.randint(-base // 50, base // 50)


def make_fills(rng: random.Random, key: str, instrument: str, qty: int, full: bool) -> list[dict]:
    if not full and qty >= 2 and rng.random() >= FULL_FILL_P:
        qty = rng.randint(1, qty - 1)
    parts = [qty] if qty < 2 or rng.random() < 0.7 else [qty // 2, qty - qty // 2]
    now = time.time()
    return [{"fill_id": f"F-{key}-{n}", "qty": q, "price_cents": price(rng, instrument), "ts": now}
            for n, q in enumerate(parts)]


def view(o: dict) -> dict:
    return {**o, "remaining": o["qty"] - o.get("filled_qty", 0)}


class Err(Exception):
    def __init__(self, status: int, msg: str):
        super().__init__(msg)
        self.status, self.msg = status, msg


def new_order(body: dict) -> dict:
    key = body.get("client_order_id")
    qty = body.get("qty")
    if not isinstance(key, str) or not key:
        raise Err(422, "client_order_id required")
    if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
        raise Err(422, "qty must be a positive integer")
    if body.get("side") not in ("buy", "sell") or not isinstance(body.get("instrument"), str):
        raise Err(422, "side buy|sell and instrument required")
    with lock:
        o = orders.get(key)
        if o is not None:
            if (o["qty"], o["side"], o["instrument"]) != (qty, body["side"], body["instrument"]):
                raise Err(409, f"order {key} exists with different terms")
            return view(o)
        rng = rng_for(key)
        order = {"client_order_id": key, "account_id": body.get("account_id"), "instrument": body["instrument"],
                 "side": body["side"], "qty": qty, "filled_qty": 0, "close": bool(body.get("close"))}
        record({"t": "order", "order": order})
        record({"t": "fills", "order": key, "fills": make_fills(rng, key, body["instrument"], qty, order["close"])})
        return view(orders[key])


def more_fills(key: str, body: dict) -> dict:
    fk = body.get("fill_key")
    if not isinstance(fk, str) or not fk:
        raise Err(422, "fill_key required")
    with lock:
        if fk in fill_keys:
            return {"fills": fill_keys[fk], "order": view(orders[key])}
        o = orders.get(key)
        if o is None:
            raise Err(404, f"no order {key}")
        remaining = o["qty"] - o.get("filled_qty", 0)
        if remaining <= 0:
            raise Err(409, "nothing left to fill")
        fills = make_fills(rng_for(f"{key}/{fk}"), f"{key}.{len(o['fills'])}", o["instrument"], remaining, False)
        record({"t": "fills", "order": key, "fills": fills, "fill_key": fk})
        return {"fills": fills, "order": view(o)}


def positions() -> dict:
    with lock:
        pos: dict[str, int] = {}
        for f in all_fills:
            k = f"{f['account_id']}|{f['instrument']}"
            pos[k] = pos.get(k, 0) + (f["qty"] if f["side"] == "buy" else -f["qty"])
    return {"positions": [{"account_id": k.split("|")[0], "instrument": k.split("|")[1], "qty": v}
                          for k, v in sorted(pos.items())]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else the body waits for the client's delayed ACK

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if DELAY and path != "/health":
            time.sleep(DELAY)
        try:
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise Err(400, "body must be a JSON object")
            if method == "GET" and path == "/health":
                out = {"status": "ok", "orders": len(orders)}
            elif method == "POST" and path == "/orders":
                out = new_order(body)
            elif method == "POST" and (m := re.match(r"^/orders/([^/]+)/fills$", path)):
                out = more_fills(m.group(1), body)
            elif method == "GET" and (m := re.match(r"^/orders/([^/]+)$", path)):
                with lock:
                    if m.group(1) not in orders:
                        raise Err(404, "no such order")
                    out = view(orders[m.group(1)])
            elif method == "GET" and path == "/fills":
                with lock:
                    out = {"fills": list(all_fills)}
            elif method == "GET" and path == "/positions":
                out = positions()
            else:
                raise Err(404, f"no route {method} {path}")
            self._send(200, out)
        except Err as e:
            self._send(e.status, {"error": e.msg})
        except ValueError:
            self._send(400, {"error": "body is not JSON"})

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line, not a traceback: a client that hung up (healthcheck timeout) is routine."""
        exc = sys.exc_info()[1]
        print(f"http.error client={client_address[0]} error={type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    load()
    print(f"broker.ready port={PORT} orders={len(orders)} seed={SEED}", flush=True)
    sys.stdout.flush()
    Server(("0.0.0.0", PORT), Handler).serve_forever()
