-- chaoskit reference trading ledger: schema.
-- Applied by ledger-api at start, under pg_advisory_lock(727101), so restarts and replicas never
-- race. Idempotent: every statement is "if not exists". Names here are a contract with the
-- verification checkers (chaoskit/checkers) and with invariants.sql: keep them stable.
--
-- Money is integer minor units (bigint cents) everywhere. Quantities are integer units.
-- Signs: entries are + for debit-side increase of the account's balance, - for decrease; every
-- transaction (txn_id) sums to zero per currency, so the whole table sums to zero per currency.

-- Customer trading accounts ('customer'), their margin sub-accounts ('margin', owner_id = the
-- customer account), and per-currency system accounts: 'broker:<CUR>' (clearing with the broker)
-- and 'funding:<CUR>' (where seed deposits come from).
create table if not exists accounts (
    id          text primary key,
    kind        text not null check (kind in ('customer', 'margin', 'broker', 'funding')),
    owner_id    text references accounts (id),
    currency    char(3) not null,
    created_at  timestamptz not null default now()
);

-- One row per mutating request, keyed by the client's client_order_id, written in the SAME
-- transaction as the request's effects: present <=> the effects are committed. A retry finds
-- the row and gets the stored response back (exactly one effect). op is one of trade.open,
-- trade.close, trade.fill, margin.update, recon.run, events.replay, deposit.
create table if not exists idempotency_keys (
    key          text primary key,
    op           text not null,
    request      jsonb not null,
    status_code  int not null,
    response     jsonb not null,
    created_at   timestamptz not null default now()
);

-- A trade: one market order at the broker (open), later closed by an opposite order for the
-- filled quantity. Prices are volume-weighted averages of the fills, rounded down; exact PnL is
-- recomputed from fills (see invariants.sql).
create table if not exists trades (
    id                     bigserial primary key,
    client_order_id        text not null unique,
    account_id             text not null references accounts (id),
    instrument             text not null,
    side                   text not null check (side in ('buy', 'sell')),
    qty                    bigint not null check (qty > 0),
    filled_qty             bigint not null default 0 check (filled_qty >= 0),
    status                 text not null check (status in ('open', 'closed')),
    open_price_cents       bigint,
    close_price_cents      bigint,
    close_client_order_id  text unique,
    realized_pnl_cents     bigint not null default 0,
    version                int not null default 0,     -- last event version of 'trade:<client_order_id>'
    opened_at              timestamptz not null default now(),
    closed_at              timestamptz
);
create index if not exists trades_account_instrument on trades (account_id, instrument);

-- Broker fills. broker_fill_id is the broker's id, unique: a fill can be applied once only.
create table if not exists fills (
    id              bigserial primary key,
    trade_id        bigint not null references trades (id),
    broker_fill_id  text not null unique,
    kind            text not null check (kind in ('open', 'close')),
    qty             bigint not null check (qty > 0),
    price_cents     bigint not null check (price_cents > 0),
    created_at      timestamptz not null default now()
);
create index if not exists fills_trade_amounts on fills (trade_id) include (kind, qty, price_cents);

-- Projection per (account, instrument). qty is signed (buy +, sell -); cost_cents is the signed
-- open notional of the trades still open; avg_price_cents = |cost| / |qty| (0 when flat);
-- realized_pnl_cents sums closed trades; margin_cents is held in the account's margin account.
create table if not exists positions (
    account_id          text not null references accounts (id),
    instrument          text not null,
    qty                 bigint not null default 0,
    cost_cents          bigint not null default 0,
    avg_price_cents     bigint not null default 0,
    realized_pnl_cents  bigint not null default 0,
    margin_cents        bigint not null default 0 check (margin_cents >= 0),
    version             int not null default 0,        -- last event version of 'position:<account>:<instrument>'
    updated_at          timestamptz not null default now(),
    primary key (account_id, instrument)
);

-- Double-entry lines. kind: deposit | fill | margin. trade_id is set for fill lines.
create table if not exists entries (
    id            bigserial primary key,
    txn_id        text not null,
    account_id    text not null references accounts (id),
    amount_cents  bigint not null,
    currency      char(3) not null,
    trade_id      bigint references trades (id),
    kind          text not null check (kind in ('deposit', 'fill', 'margin')),
    created_at    timestamptz not null default now()
);
-- (txn_id, currency) with the amount: per-transaction balances by an index-only scan, in
-- order, without a hash table of every transaction (invariants.sql: entries_by_transaction)
create index if not exists entries_txn_balance on entries (txn_id, currency) include (amount_cents);
-- covering indexes: per-trade sums stream in trade order (invariants.sql: trades_and_their_money)
create index if not exists entries_trade_lines on entries (trade_id) include (kind, account_id, amount_cents);
create index if not exists entries_account on entries (account_id);

-- Append-only event log. aggregate_id is 'trade:<client_order_id>',
-- 'position:<account_id>:<instrument>' or 'recon:<client_order_id>'; versions start at 1 and
-- are contiguous per aggregate, so gaps and duplicates are detectable.
-- types: trade.opened, trade.filled (payload has broker_fill_id, kind, qty, price_cents),
-- trade.closed, position.changed, position.margin, recon.completed.
create table if not exists events (
    id            bigserial primary key,
    aggregate_id  text not null,
    version       int not null check (version > 0),
    type          text not null,
    payload       jsonb not null,
    created_at    timestamptz not null default now(),
    unique (aggregate_id, version)
);
create index if not exists events_type on events (type);

-- One row per reconciliation run against the broker's own positions.
create table if not exists recon_runs (
    id               bigserial primary key,
    client_order_id  text not null unique,
    status           text not null check (status in ('matched', 'mismatch')),
    checked          int not null,
    diffs            jsonb not null,
    created_at       timestamptz not null default now()
);
