-- chaoskit reference trading ledger: invariants of a correct ledger.
-- Each block starts with "-- name: <name>" (and "-- why: ..."), then ONE query that returns
-- ZERO ROWS when the ledger is correct; every row returned is a violation, described by its
-- columns. A checker splits this file on the "-- name:" headers and runs the queries one by
-- one, read-only, all in one snapshot. See schema.sql for the tables; money is bigint cents.
--
-- A block with "-- checks: a, b, ..." is a GROUP: one pass over the big tables checks several
-- invariants at once, and the first column, check_name, says which one a row violates. On a
-- 10M-entry ledger, grouping events, fills and entries once instead of once per invariant is
-- what keeps the whole file in seconds (bench/verify.py).
--
-- Helper: a trade's customer cash effect from its fills. buy: open fills pay (-), close fills
-- receive (+); sell: the reverse. For a closed trade that is exactly its realized PnL.

-- name: entries_by_transaction
-- why: double entry, per transaction and per currency. The per-transaction sums come from an
-- index-only scan of entries_txn_balance in (txn_id, currency) order, grouped as they stream by.
-- checks: balance_equation, txn_balanced, entry_currency_matches_account, fill_entries_have_trade
--   balance_equation: all lines of the ledger sum to zero in every currency (balanced
--     transactions add nothing, so the unbalanced ones are the whole imbalance).
--   txn_balanced: every transaction on its own sums to zero per currency (no half-written transfer).
--   entry_currency_matches_account: a line in the wrong currency breaks the balance silently.
--   fill_entries_have_trade: no orphan money: every fill line belongs to a trade.
with unbalanced as materialized (
    select txn_id, currency, sum(amount_cents) as imbalance_cents, count(*) as lines
    from entries
    group by txn_id, currency
    having sum(amount_cents) <> 0
), bad_lines as (
    select e.id, e.txn_id, e.currency, e.account_id, a.currency as account_currency, e.kind,
           array[a.currency is distinct from e.currency, e.kind = 'fill' and e.trade_id is null] as flags
    from entries e left join accounts a on a.id = e.account_id
    where a.currency is distinct from e.currency or (e.kind = 'fill' and e.trade_id is null)
)
select 'txn_balanced' as check_name, txn_id, currency::text, imbalance_cents, lines,
       null::bigint as entry_id, null::text as account_id, null::text as account_currency
from unbalanced
union all
select 'balance_equation', null, currency, sum(imbalance_cents), sum(lines), null, null, null
from unbalanced group by currency having sum(imbalance_cents) <> 0
union all
select c.check_name, b.txn_id, b.currency, null, null, b.id, b.account_id, b.account_currency
from bad_lines b, unnest(array['entry_currency_matches_account', 'fill_entries_have_trade'], b.flags)
                  as c(check_name, violated)
where c.violated;

-- name: trades_and_their_events
-- why: every trade against its event stream, in one grouping of the event log (held in memory:
-- about 300 bytes per aggregate, so 1GB covers ~3M trades before it spills to disk).
-- settings: work_mem=1GB
-- checks: version_gap, orphan_event, trade_has_opened_event, event_coverage
-- checks: closed_trade_has_closed_event, aggregate_version_matches_events, pnl_mismatch
--   version_gap: versions run 1..n per aggregate (a gap is a lost event; a repeated version is
--     impossible under unique (aggregate_id, version), so min = 1 and max = count is exact).
--   orphan_event: a trade aggregate in the event log without its trade row.
--   trade_has_opened_event: exactly one trade.opened event (missing = lost, 2 = duplicate open).
--   event_coverage: a trade with no trade.opened event at all (the audit's coverage, per trade).
--   closed_trade_has_closed_event: a closed trade has exactly one trade.closed event, an open one none.
--   aggregate_version_matches_events: the row's version is its last event's version.
--   pnl_mismatch: stored realized PnL equals PnL replayed from the trade.filled events.
with ev as (
    -- trades ride along in the same grouping as the events of their aggregate: one hash table,
    -- no join of 2.5M trades against 2.5M aggregates on a text key
    select aggregate_id, count(version) as events, min(version) as first_version,
           max(version) as last_version,
           count(*) filter (where type = 'trade.opened') as opened,
           count(*) filter (where type = 'trade.closed') as closed,
           coalesce(sum((case when (payload ->> 'side' = 'buy') = (payload ->> 'kind' = 'open')
                              then -1 else 1 end)
                        * (payload ->> 'qty')::bigint * (payload ->> 'price_cents')::bigint)
                    filter (where type = 'trade.filled'), 0) as replayed_pnl_cents,
           count(trade_status) as trades, max(trade_status) as status,
           max(trade_version) as version, max(trade_pnl_cents) as realized_pnl_cents
    from (select aggregate_id, version, type, payload, null::text as trade_status,
                 null::int as trade_version, null::bigint as trade_pnl_cents
          from events
          union all
          select 'trade:' || client_order_id, null, null, null, status, version, realized_pnl_cents
          from trades) u
    group by aggregate_id
), flagged as (
    select * from (select ev.*, array[
        ev.events > 0 and (ev.first_version <> 1 or ev.last_version <> ev.events),
        ev.trades = 0 and ev.aggregate_id like 'trade:%',
        ev.trades = 1 and ev.opened <> 1,
        ev.trades = 1 and ev.opened = 0,
        ev.trades = 1 and ev.closed <> (case when ev.status = 'closed' then 1 else 0 end),
        ev.trades = 1 and ev.version <> coalesce(ev.last_version, 0),
        ev.trades = 1 and ev.realized_pnl_cents
            <> (case when ev.closed > 0 then ev.replayed_pnl_cents else 0 end)] as flags
    from ev) x
    where true = any(flags)
)
select c.check_name, f.aggregate_id, f.status, f.version, f.events, f.first_version,
       f.last_version, f.opened, f.closed, f.realized_pnl_cents, f.replayed_pnl_cents
from flagged f, unnest(array['version_gap', 'orphan_event', 'trade_has_opened_event',
                             'event_coverage', 'closed_trade_has_closed_event',
                             'aggregate_version_matches_events', 'pnl_mismatch'], f.flags)
                as c(check_name, violated)
where c.violated;

-- name: trades_and_their_money
-- why: every trade against its fills and its money lines. Trades (by primary key), fills and fill
-- lines (by the covering indexes fills_trade_amounts and entries_trade_lines) all stream in
-- trade order, grouped and merge-joined as they come: no hash table of 2.5M trades.
-- settings: enable_hashjoin=off
-- checks: fills_match_trade, pnl_from_fills, trade_cash_matches_fills, orphan_entry, fill_has_entries
--   fills_match_trade: open fills add up to filled_qty <= qty; a closed trade's close fills equal it.
--   pnl_from_fills: stored realized PnL equals PnL recomputed from the fills (0 while open).
--   trade_cash_matches_fills: the customer's fill lines equal what the fills cost or paid.
--   orphan_entry: money lines beyond the trade's fills (each fill is booked as one customer
--     line and one broker line; fills_and_fill_events ties every fill to its event).
--   fill_has_entries: a fill whose money lines are missing.
with fl as (
    select trade_id, count(*) as fills, sum(qty) filter (where kind = 'open') as open_fill_qty,
           sum(qty) filter (where kind = 'close') as close_fill_qty,
           sum(case when kind = 'open' then -qty * price_cents else qty * price_cents end) as buy_cash
    from fills
    group by trade_id
), en as (
    select e.trade_id, count(*) as fill_lines, count(*) filter (where a.kind = 'customer') as customer_lines,
           sum(e.amount_cents) filter (where a.kind = 'customer') as entry_cash_cents
    from entries e join accounts a on a.id = e.account_id
    where e.kind = 'fill' and e.trade_id is not null
    group by e.trade_id
), j as (
    select t.client_order_id as key, t.status, t.qty, t.filled_qty, t.realized_pnl_cents,
           coalesce(fl.fills, 0) as fills, coalesce(fl.open_fill_qty, 0) as open_fill_qty,
           coalesce(fl.close_fill_qty, 0) as close_fill_qty,
           (case when t.side = 'buy' then 1 else -1 end) * coalesce(fl.buy_cash, 0) as fill_cash_cents,
           coalesce(en.fill_lines, 0) as fill_lines, coalesce(en.customer_lines, 0) as customer_lines,
           coalesce(en.entry_cash_cents, 0) as entry_cash_cents
    from trades t
    left join fl on fl.trade_id = t.id
    left join en on en.trade_id = t.id
), flagged as (
    select * from (select j.*, array[
        j.filled_qty > j.qty or j.filled_qty <> j.open_fill_qty
            or j.close_fill_qty <> (case when j.status = 'closed' then j.filled_qty else 0 end),
        j.realized_pnl_cents <> (case when j.status = 'closed' then j.fill_cash_cents else 0 end),
        j.fill_cash_cents <> j.entry_cash_cents,
        j.customer_lines > j.fills or j.fill_lines > 2 * j.fills,
        j.customer_lines < j.fills or j.fill_lines < 2 * j.fills] as flags
    from j) x
    where true = any(flags)
)
select c.check_name, f.key, f.status, f.qty, f.filled_qty, f.open_fill_qty, f.close_fill_qty,
       f.realized_pnl_cents, f.fill_cash_cents, f.entry_cash_cents, f.fills, f.fill_lines,
       f.customer_lines
from flagged f, unnest(array['fills_match_trade', 'pnl_from_fills', 'trade_cash_matches_fills',
                             'orphan_entry', 'fill_has_entries'], f.flags) as c(check_name, violated)
where c.violated;

-- name: fills_and_fill_events
-- why: every applied broker fill has exactly one trade.filled event, and every such event names
-- a fill that exists (no orphan events). One join finds the unmatched on both sides; since
-- broker_fill_id is unique in fills, "no fill has two events" is then a matter of counts, and
-- the events are grouped per fill id only when the counts say some fill has two.
-- settings: work_mem=1GB
-- checks: fill_has_event, fill_event_has_fill
with fe as (
    select payload ->> 'broker_fill_id' as broker_fill_id, aggregate_id
    from events where type = 'trade.filled'
), unmatched as materialized (
    select f.broker_fill_id as fill_id, fe.broker_fill_id as event_fill_id, fe.aggregate_id
    from fills f full join fe on fe.broker_fill_id = f.broker_fill_id
    where f.broker_fill_id is null or fe.broker_fill_id is null
), n as (
    select (select count(*) from fills) - (select count(*) from unmatched where event_fill_id is null)
               as fills_with_events,
           (select count(*) from events where type = 'trade.filled')
               - (select count(*) from unmatched where fill_id is null) as matched_events
)
select case when fill_id is null then 'fill_event_has_fill' else 'fill_has_event' end as check_name,
       coalesce(fill_id, event_fill_id) as broker_fill_id,
       case when fill_id is null then 1 else 0 end as fill_events, aggregate_id
from unmatched
union all
select 'fill_has_event', broker_fill_id, count(*), min(aggregate_id)
from fe
where (select matched_events > fills_with_events from n)
group by broker_fill_id
having count(*) > 1 and broker_fill_id in (select broker_fill_id from fills);

-- name: idempotency_keys_and_effects
-- why: the key is written in the same transaction as the effect: an effect without its key was
-- committed non-atomically (or without the idempotency check); an acknowledged open/close key
-- without its trade means the effect was lost.
-- checks: trade_has_idempotency_key, idempotency_key_has_effect
with effect as (
    select client_order_id as key, 'trade.open' as op, true as needs_key from trades
    union all
    select close_client_order_id, 'trade.close', status = 'closed' from trades
    where close_client_order_id is not null
), k as (
    select key, op, status_code from idempotency_keys where op in ('trade.open', 'trade.close')
)
select case when k.key is null then 'trade_has_idempotency_key' else 'idempotency_key_has_effect' end
           as check_name,
       coalesce(effect.key, k.key) as key, coalesce(effect.op, k.op) as op, k.status_code
from effect full join k on k.key = effect.key and k.op = effect.op
where (k.key is null and effect.needs_key) or (effect.key is null and k.status_code = 200);

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
