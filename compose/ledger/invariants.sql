-- chaoskit reference trading ledger: invariants of a correct ledger.
-- Each block starts with "-- name: <name>" (and "-- why: ..."), then ONE query that returns
-- ZERO ROWS when the ledger is correct; every row returned is a violation, described by its
-- columns. A checker splits this file on the "-- name:" headers and runs the queries one by
-- one, read-only. See schema.sql for the tables; money is bigint cents.
--
-- Helper: a trade's customer cash effect from its fills. buy: open fills pay (-), close fills
-- receive (+); sell: the reverse. For a closed trade that is exactly its realized PnL.

-- name: balance_equation
-- why: double entry: all lines of the ledger sum to zero in every currency.
select currency, sum(amount_cents) as imbalance_cents
from entries
group by currency
having sum(amount_cents) <> 0;

-- name: txn_balanced
-- why: every transaction on its own sums to zero per currency (no half-written transfers).
select txn_id, currency, sum(amount_cents) as imbalance_cents
from entries
group by txn_id, currency
having sum(amount_cents) <> 0;

-- name: entry_currency_matches_account
-- why: a line in the wrong currency breaks the per-currency balance silently.
select e.id, e.account_id, e.currency, a.currency as account_currency
from entries e join accounts a on a.id = e.account_id
where e.currency <> a.currency;

-- name: fill_entries_have_trade
-- why: no orphan money: every fill line belongs to a trade.
select id, txn_id from entries where kind = 'fill' and trade_id is null;

-- name: trade_has_opened_event
-- why: every trade has exactly one trade.opened event (missing = lost event, 2 = duplicate open).
select t.client_order_id, count(e.id) as opened_events
from trades t
left join events e on e.aggregate_id = 'trade:' || t.client_order_id and e.type = 'trade.opened'
group by t.client_order_id
having count(e.id) <> 1;

-- name: closed_trade_has_closed_event
-- why: a closed trade has exactly one trade.closed event, an open trade none.
select t.client_order_id, t.status, count(e.id) as closed_events
from trades t
left join events e on e.aggregate_id = 'trade:' || t.client_order_id and e.type = 'trade.closed'
group by t.client_order_id, t.status
having count(e.id) <> (case when t.status = 'closed' then 1 else 0 end);

-- name: fill_has_event
-- why: every applied broker fill has exactly one trade.filled event.
select f.broker_fill_id, count(e.id) as fill_events
from fills f
left join events e on e.type = 'trade.filled' and e.payload ->> 'broker_fill_id' = f.broker_fill_id
group by f.broker_fill_id
having count(e.id) <> 1;

-- name: fill_event_has_fill
-- why: no orphan events: every trade.filled event names a fill that exists.
select e.aggregate_id, e.version, e.payload ->> 'broker_fill_id' as broker_fill_id
from events e
where e.type = 'trade.filled'
  and not exists (select 1 from fills f where f.broker_fill_id = e.payload ->> 'broker_fill_id');

-- name: orphan_events
-- why: every trade/position aggregate in the event log has its row.
select e.aggregate_id, count(*) as events
from events e
where (e.aggregate_id like 'trade:%'
       and not exists (select 1 from trades t where 'trade:' || t.client_order_id = e.aggregate_id))
   or (e.aggregate_id like 'position:%'
       and not exists (select 1 from positions p
                       where 'position:' || p.account_id || ':' || p.instrument = e.aggregate_id))
group by e.aggregate_id;

-- name: no_duplicate_events
-- why: (aggregate_id, version) is unique (also a constraint; kept for dumps restored without it).
select aggregate_id, version, count(*) as copies
from events
group by aggregate_id, version
having count(*) > 1;

-- name: event_versions_contiguous
-- why: versions run 1..n per aggregate; a gap means a lost event.
select aggregate_id, min(version) as first_version, max(version) as last_version, count(*) as events
from events
group by aggregate_id
having min(version) <> 1 or max(version) <> count(*);

-- name: aggregate_version_matches_events
-- why: the row's version is the last event's version (projection and log agree).
select 'trade:' || t.client_order_id as aggregate_id, t.version,
       coalesce(max(e.version), 0) as last_event_version
from trades t
left join events e on e.aggregate_id = 'trade:' || t.client_order_id
group by t.client_order_id, t.version
having t.version <> coalesce(max(e.version), 0)
union all
select 'position:' || p.account_id || ':' || p.instrument, p.version, coalesce(max(e.version), 0)
from positions p
left join events e on e.aggregate_id = 'position:' || p.account_id || ':' || p.instrument
group by p.account_id, p.instrument, p.version
having p.version <> coalesce(max(e.version), 0);

-- name: trade_has_idempotency_key
-- why: the key is written in the same transaction as the effect: an effect without its key was
-- committed non-atomically (or without the idempotency check).
select t.client_order_id as key, 'trade.open' as op
from trades t
where not exists (select 1 from idempotency_keys k where k.key = t.client_order_id and k.op = 'trade.open')
union all
select t.close_client_order_id, 'trade.close'
from trades t
where t.status = 'closed'
  and not exists (select 1 from idempotency_keys k
                  where k.key = t.close_client_order_id and k.op = 'trade.close');

-- name: idempotency_key_has_effect
-- why: an acknowledged open/close key without its trade means the effect was lost.
select k.key, k.op
from idempotency_keys k
where k.status_code = 200
  and ((k.op = 'trade.open' and not exists (select 1 from trades t where t.client_order_id = k.key))
    or (k.op = 'trade.close' and not exists (select 1 from trades t where t.close_client_order_id = k.key)));

-- name: fills_match_trade
-- why: open fills add up to filled_qty <= qty; a closed trade's close fills equal filled_qty.
select t.client_order_id, t.status, t.qty, t.filled_qty,
       coalesce(sum(f.qty) filter (where f.kind = 'open'), 0) as open_fill_qty,
       coalesce(sum(f.qty) filter (where f.kind = 'close'), 0) as close_fill_qty
from trades t
left join fills f on f.trade_id = t.id
group by t.id
having t.filled_qty > t.qty
    or t.filled_qty <> coalesce(sum(f.qty) filter (where f.kind = 'open'), 0)
    or coalesce(sum(f.qty) filter (where f.kind = 'close'), 0)
       <> (case when t.status = 'closed' then t.filled_qty else 0 end);

-- name: trade_cash_matches_fills
-- why: the customer's fill lines for a trade equal what its fills cost or paid, to the cent.
with fill_cash as (
    select t.id, t.client_order_id,
           coalesce(sum(case when (t.side = 'buy') = (f.kind = 'open') then -1 else 1 end
                        * f.qty * f.price_cents), 0) as cash_cents
    from trades t left join fills f on f.trade_id = t.id
    group by t.id
), entry_cash as (
    select e.trade_id, sum(e.amount_cents) as cash_cents
    from entries e join accounts a on a.id = e.account_id and a.kind = 'customer'
    where e.kind = 'fill'
    group by e.trade_id
)
select fc.client_order_id, fc.cash_cents as from_fills_cents,
       coalesce(ec.cash_cents, 0) as from_entries_cents
from fill_cash fc left join entry_cash ec on ec.trade_id = fc.id
where fc.cash_cents <> coalesce(ec.cash_cents, 0);

-- name: pnl_from_fills
-- why: stored realized PnL equals PnL recomputed from fills (closed trades); 0 while open.
select t.client_order_id, t.status, t.realized_pnl_cents as stored_cents,
       coalesce(sum(case when (t.side = 'buy') = (f.kind = 'open') then -1 else 1 end
                    * f.qty * f.price_cents), 0) as recomputed_cents
from trades t left join fills f on f.trade_id = t.id
group by t.id
having t.realized_pnl_cents <> (case when t.status = 'closed' then
           coalesce(sum(case when (t.side = 'buy') = (f.kind = 'open') then -1 else 1 end
                        * f.qty * f.price_cents), 0) else 0 end);

-- name: position_matches_trades
-- why: no orphan positions: qty, cost, average price and realized PnL of a position are the
-- sums of its trades.
with agg as (
    select t.account_id, t.instrument,
           coalesce(sum(case when t.side = 'buy' then t.filled_qty else -t.filled_qty end)
                    filter (where t.status = 'open'), 0) as qty,
           coalesce(sum((select coalesce(sum(f.qty * f.price_cents), 0) from fills f
                         where f.trade_id = t.id and f.kind = 'open')
                        * case when t.side = 'buy' then 1 else -1 end)
                    filter (where t.status = 'open'), 0) as cost_cents
    from trades t
    group by t.account_id, t.instrument
), pnl as (
    select account_id, instrument, sum(realized_pnl_cents) as realized_pnl_cents
    from trades where status = 'closed' group by account_id, instrument
)
select p.account_id, p.instrument, p.qty, a.qty as trades_qty, p.cost_cents, a.cost_cents as trades_cost_cents,
       p.avg_price_cents, p.realized_pnl_cents, coalesce(pn.realized_pnl_cents, 0) as trades_pnl_cents
from positions p
full join agg a on a.account_id = p.account_id and a.instrument = p.instrument
left join pnl pn on pn.account_id = coalesce(p.account_id, a.account_id)
                and pn.instrument = coalesce(p.instrument, a.instrument)
where p.account_id is null
   or a.account_id is null and (p.qty <> 0 or p.cost_cents <> 0 or p.realized_pnl_cents <> 0)
   or p.qty <> coalesce(a.qty, 0)
   or p.cost_cents <> coalesce(a.cost_cents, 0)
   or p.realized_pnl_cents <> coalesce(pn.realized_pnl_cents, 0)
   or p.avg_price_cents <> (case when p.qty = 0 then 0 else abs(p.cost_cents) / abs(p.qty) end);

-- name: margin_account_matches_positions
-- why: the money in a customer's margin account is the margin its positions hold.
with held as (
    select account_id, sum(margin_cents) as margin_cents from positions group by account_id
), bal as (
    select a.owner_id as account_id, coalesce(sum(e.amount_cents), 0) as balance_cents
    from accounts a left join entries e on e.account_id = a.id
    where a.kind = 'margin'
    group by a.owner_id
)
select coalesce(h.account_id, b.account_id) as account_id,
       coalesce(h.margin_cents, 0) as positions_margin_cents,
       coalesce(b.balance_cents, 0) as margin_account_cents
from held h full join bal b on b.account_id = h.account_id
where coalesce(h.margin_cents, 0) <> coalesce(b.balance_cents, 0);
