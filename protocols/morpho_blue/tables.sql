-- Morpho Blue's tables (declared with its code; the store applies protocols/*/tables.sql after
-- sql/). Same conventions as sql/001_core.sql: ReplacingMergeTree(version, is_deleted) keyed with
-- the block hash, read with FINAL; on-chain integers as on chain. "Account at block N" = the
-- latest position version, market state and market read at or before N, accrued to N's time.

-- A market as CreateMarket announced it (idToMarketParams).
CREATE TABLE IF NOT EXISTS defimon.morpho_markets
(
    chain_id         UInt64,
    morpho           String,
    market           String,
    block_number     UInt64,
    block_hash       String,
    loan_token       String,
    collateral_token String,
    oracle           String,
    irm              String,
    lltv             UInt256,
    version          UInt64,
    is_deleted       UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, market, block_number, block_hash);

-- market(id) at the end of every block in which it changed (the totals as stored: interest
-- is accrued to a later time by the reader of these rows), with the fee recipient then.
CREATE TABLE IF NOT EXISTS defimon.morpho_market_states
(
    chain_id            UInt64,
    market              String,
    block_number        UInt64,
    block_hash          String,
    block_time          DateTime64(3, 'UTC'),
    total_supply_assets UInt128,
    total_supply_shares UInt128,
    total_borrow_assets UInt128,
    total_borrow_shares UInt128,
    last_update         UInt128,
    fee                 UInt128,
    prev_borrow_rate    UInt256,
    fee_recipient       String,
    version             UInt64,
    is_deleted          UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, market, block_number, block_hash);

-- What the reader read at the block: the market oracle's price() and the IRM's
-- borrowRateView for the stored totals (`stale`: why the price is the last good one).
CREATE TABLE IF NOT EXISTS defimon.morpho_market_reads
(
    chain_id     UInt64,
    market       String,
    block_number UInt64,
    block_hash   String,
    block_time   DateTime64(3, 'UTC'),
    price        UInt256,
    borrow_rate  UInt256,
    stale        String,
    version      UInt64,
    is_deleted   UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, market, block_number, block_hash);

-- position(id, user) after every event that changed it (one version per event).
CREATE TABLE IF NOT EXISTS defimon.morpho_positions
(
    chain_id      UInt64,
    account_id    String,
    morpho        String,
    market        String,
    owner         String,
    block_number  UInt64,
    log_index     UInt32,
    block_hash    String,
    block_time    DateTime64(3, 'UTC'),
    tx_hash       String,
    event         LowCardinality(String),
    supply_shares UInt256,
    borrow_shares UInt128,
    collateral    UInt128,
    version       UInt64,
    is_deleted    UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, owner, account_id, block_number, log_index, block_hash);
