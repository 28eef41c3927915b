"""The preset for the reference ledger (compose/ledger/schema.sql).

Everything schema-specific lives here as plain config, so a team with another schema writes the
same keys in its own YAML (``chaoskit verify --config``, ``chaoskit audit --config``) instead of
touching code. The named invariants come from compose/ledger/invariants.sql when it can be found
(it is the schema owner's list); ``AUDIT_INVARIANTS`` is the built-in minimum used otherwise and
by the audit, which must not depend on a checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# trade cash from a fill: buy opens pay, sell opens receive; closes the reverse
_TCASH = "(case when (t.side = 'buy') = (f.kind = 'open') then -1 else 1 end) * f.qty * f.price_cents"

AUDIT_INVARIANTS: list[dict[str, Any]] = [
    {"name": "balance_equation", "why": "all lines sum to zero per currency, to the cent",
     "query": "select currency, sum(amount_cents) as imbalance_cents from entries "
              "group by currency having sum(amount_cents) <> 0"},
    {"name": "txn_balanced", "why": "every transaction sums to zero per currency (no partial txn)",
     "query": "select txn_id, currency, sum(amount_cents) as imbalance_cents, count(*) as lines "
              "from entries group by txn_id, currency having sum(amount_cents) <> 0"},
    {"name": "fill_entries_have_trade", "why": "no orphan money",
     "query": "select id, txn_id from entries where kind = 'fill' and trade_id is null"},
    {"name": "pnl_from_fills", "why": "stored realized PnL equals PnL recomputed from fills",
     "query": "select t.client_order_id, t.realized_pnl_cents as stored_cents, "
              f"coalesce(sum({_TCASH}), 0) as recomputed_cents "
              "from trades t left join fills f on f.trade_id = t.id group by t.id "
              "having t.realized_pnl_cents <> case when t.status = 'closed' then "
              f"coalesce(sum({_TCASH}), 0) else 0 end"},
]

SNAPSHOT: dict[str, Any] = {
    "tables": ["accounts", "trades", "fills", "positions", "entries", "events", "idempotency_keys"],
    "exclude": {"*": ["created_at", "updated_at"]},
    "append_only": ["entries", "events", "fills"],
}

_FILL_EVENT_CASH = (
    "(case when (e.payload->>'side' = 'buy') = (e.payload->>'kind' = 'open') then -1 else 1 end)"
    " * (e.payload->>'qty')::bigint * (e.payload->>'price_cents')::bigint")

EVENTS: dict[str, Any] = {
    "table": "events", "aggregate": "aggregate_id", "version": "version",
    "links": [
        {"name": "trades <-> trade events", "events_where": "e.aggregate_id like 'trade:%'",
         "event_key": "e.aggregate_id", "rows_from": "trades r",
         "row_key": "'trade:' || r.client_order_id"},
        {"name": "fills <-> trade.filled events", "events_where": "e.type = 'trade.filled'",
         "event_key": "e.payload->>'broker_fill_id'", "rows_from": "fills r",
         "row_key": "r.broker_fill_id"},
        {"name": "fill entries <-> trade.filled events", "mode": "count",
         "events_where": "e.type = 'trade.filled'", "event_key": "e.aggregate_id",
         "rows_from": "entries r join trades t on t.id = r.trade_id", "rows_where": "r.kind = 'fill'",
         "row_key": "'trade:' || t.client_order_id", "row_unit": "r.txn_id"},
        {"name": "positions <-> position events", "events_where": "e.aggregate_id like 'position:%'",
         "event_key": "e.aggregate_id", "rows_from": "positions r",
         "rows_where": "r.version > 0",
         "row_key": "'position:' || r.account_id || ':' || r.instrument"},
    ],
    "projections": [
        {"name": "positions replayed from events", "key": ["aggregate_id"],
         "rebuilt": "select distinct on (aggregate_id) aggregate_id, "
                    "(payload->>'qty')::bigint as qty, (payload->>'cost_cents')::bigint as cost_cents, "
                    "(payload->>'avg_price_cents')::bigint as avg_price_cents, "
                    "(payload->>'realized_pnl_cents')::bigint as realized_pnl_cents, "
                    "(payload->>'margin_cents')::bigint as margin_cents, version "
                    "from events where aggregate_id like 'position:%' "
                    "order by aggregate_id, version desc",
         "stored": "select 'position:' || account_id || ':' || instrument as aggregate_id, qty, "
                   "cost_cents, avg_price_cents, realized_pnl_cents, margin_cents, version "
                   "from positions where version > 0"},
    ],
    "coverage": [
        {"name": "trades with a trade.opened event",
         "covered": "select count(*) from trades t where exists (select 1 from events e "
                    "where e.aggregate_id = 'trade:' || t.client_order_id and e.type = 'trade.opened')",
         "total": "select count(*) from trades", "defect": "event_coverage"},
        {"name": "fills with a trade.filled event",
         "covered": "select count(*) from fills f where exists (select 1 from events e "
                    "where e.type = 'trade.filled' and e.payload->>'broker_fill_id' = f.broker_fill_id)",
         "total": "select count(*) from fills", "defect": "event_coverage"},
    ],
}

PNL: list[dict[str, Any]] = [
    {"name": "realized PnL replayed from fill events", "key": ["aggregate_id"],
     "defect": "pnl_mismatch",
     "rebuilt": "select e.aggregate_id, case when bool_or(e.type = 'trade.closed') then "
                f"coalesce(sum({_FILL_EVENT_CASH}) filter (where e.type = 'trade.filled'), 0) "
                "else 0 end as realized_pnl_cents from events e "
                "where e.aggregate_id like 'trade:%' group by e.aggregate_id",
     "stored": "select 'trade:' || client_order_id as aggregate_id, realized_pnl_cents from trades"},
    {"name": "realized PnL recomputed from fills", "key": ["client_order_id"],
     "defect": "pnl_mismatch",
     "rebuilt": "select t.client_order_id, case when t.status = 'closed' then "
                f"coalesce(sum({_TCASH}), 0) else 0 end as realized_pnl_cents "
                "from trades t left join fills f on f.trade_id = t.id group by t.id",
     "stored": "select client_order_id, realized_pnl_cents from trades"},
]

HISTORY: list[dict[str, Any]] = [
    {"name": "trade opens", "op": ["open", "trade.open"], "table": "events",
     "id_column": "substr(aggregate_id, 7)", "where": "type = 'trade.opened'"},
    {"name": "trade closes", "op": ["close", "trade.close"], "table": "trades",
     "id_column": "close_client_order_id", "where": "close_client_order_id is not null"},
    {"name": "reconciliations", "op": ["recon", "recon.run"], "table": "recon_runs",
     "id_column": "client_order_id"},
    # every other mutating op (fill, margin, replay, ...): its idempotency key is written in the
    # same transaction as its effects, so the key's presence is the op's presence
    {"name": "other operations", "table": "idempotency_keys", "id_column": "key",
     "where": "status_code = 200 and op not in ('deposit', 'trade.open', 'trade.close', 'recon.run')"},
]

EXPORT_TABLES = ["accounts", "trades", "fills", "positions", "entries", "events",
                 "idempotency_keys", "recon_runs"]


def find_invariants_file(base: Path | None = None) -> Path | None:
    """compose/ledger/invariants.sql next to the experiment or in a parent directory."""
    for start in [p for p in (base, Path.cwd()) if p is not None]:
        for d in [start.resolve(), *start.resolve().parents]:
            cand = d / "compose" / "ledger" / "invariants.sql"
            if cand.is_file():
                return cand
    return None


# With invariants.sql, its groups already check versions, trade and fill events both ways,
# coverage and both PnL replays in one pass per table; only the position checks stay generic.
EVENTS_WITH_FILE: dict[str, Any] = {
    **{k: v for k, v in EVENTS.items() if k not in ("links", "coverage")}, "versions": False,
    "links": [link for link in EVENTS["links"] if link["rows_from"] == "positions r"],
}


def reference(base: Path | None = None) -> dict[str, Any]:
    """The whole ``verify.ledger`` block for the reference stack, minus the DSN."""
    inv = find_invariants_file(base)
    out: dict[str, Any] = {"snapshot": SNAPSHOT, "history": HISTORY}
    if inv is not None:
        out.update(invariants_file=str(inv), events=EVENTS_WITH_FILE, pnl=[])
    else:
        out.update(invariants=AUDIT_INVARIANTS, events=EVENTS, pnl=PNL)
    return out
