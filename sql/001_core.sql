-- defimon core tables. Applied at start-up; every statement is idempotent.
--
-- Versioned tables are ReplacingMergeTree(version, is_deleted) keyed by their natural key
-- *including the block hash*: a replayed row (crash recovery) collapses into its twin, and a row
-- of an orphaned block can be retracted (is_deleted = 1, higher version) without touching the
-- canonical row that replaces it. Read them with FINAL.
-- On-chain integers are UInt256/UInt128/Int32 as on chain; USD figures are Float64.

CREATE DATABASE IF NOT EXISTS defimon;

-- One row per block the flow processed (during backfill: blocks with watched logs).
-- parent_hash is empty for backfilled blocks whose logs carried blockTimestamp: no header
-- read was needed for them.
CREATE TABLE IF NOT EXISTS defimon.blocks
(
    chain_id     UInt64,
    number       UInt64,
    hash         String,
    parent_hash  String,
    block_time   DateTime64(3, 'UTC'),
    log_count    UInt32,
    version      UInt64,
    is_deleted   UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, number, hash);

-- Every log from a watched address, as the node returned it.
CREATE TABLE IF NOT EXISTS defimon.raw_logs
(
    chain_id     UInt64,
    block_number UInt64,
    block_hash   String,
    log_index    UInt32,
    tx_hash      String,
    tx_index     UInt32,
    address      String,
    topics       Array(String),
    data         String,
    block_time   DateTime64(3, 'UTC'),
    version      UInt64,
    is_deleted   UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY intDiv(block_number, 10000000)
ORDER BY (chain_id, block_number, log_index, block_hash);

CREATE TABLE IF NOT EXISTS defimon.tokens
(
    chain_id  UInt64,
    address   String,
    symbol    String,
    decimals  UInt8,
    version   UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (chain_id, address);

-- USD per whole token at the end of every block in which it changed, and where it came from.
CREATE TABLE IF NOT EXISTS defimon.token_prices
(
    chain_id      UInt64,
    token         String,
    block_number  UInt64,
    block_hash    String,
    block_time    DateTime64(3, 'UTC'),
    price_usd     Float64,
    source        String,
    hops          UInt8,
    version       UInt64,
    is_deleted    UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, token, block_number, block_hash);

-- Logs the flow could not read, with the reason; the flow goes on without them.
CREATE TABLE IF NOT EXISTS defimon.dead_letters
(
    chain_id      UInt64,
    block_number  UInt64,
    block_hash    String,
    log_index     UInt32,
    tx_hash       String,
    address       String,
    topics        Array(String),
    data          String,
    stage         LowCardinality(String),
    reason        String,
    version       UInt64,
    is_deleted    UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, block_number, log_index, block_hash);

-- Which DDL files were applied to this store, and when.
CREATE TABLE IF NOT EXISTS defimon.schema_info
(
    file        String,
    applied_at  DateTime64(3, 'UTC'),
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY file;
