-- Uniswap V3's tables (declared with its code; the store applies protocols/*/tables.sql after
-- sql/). Same conventions as sql/001_core.sql: ReplacingMergeTree(version, is_deleted) keyed with
-- the block hash, read with FINAL; on-chain integers as on chain. Every statement is idempotent
-- (ALTER ... IF NOT EXISTS upgrades stores created before a column was added).

-- Pools discovered from the factories' PoolCreated.
CREATE TABLE IF NOT EXISTS defimon.pools
(
    chain_id      UInt64,
    pool          String,
    protocol      LowCardinality(String),
    token0        String,
    token1        String,
    fee           UInt32,
    tick_spacing  Int32,
    created_block UInt64,
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (chain_id, pool);

-- A pool's price state at the end of every block in which it changed.
CREATE TABLE IF NOT EXISTS defimon.pool_states
(
    chain_id        UInt64,
    pool            String,
    block_number    UInt64,
    block_hash      String,
    block_time      DateTime64(3, 'UTC'),
    sqrt_price_x96  UInt256,
    tick            Int32,
    liquidity       UInt128,
    version         UInt64,
    is_deleted      UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, pool, block_number, block_hash);

-- One row per structural change of a position, keyed by (block, log index).
-- "Positions at block N" = the latest version at or before N per position (see read.py here).
CREATE TABLE IF NOT EXISTS defimon.position_versions
(
    chain_id          UInt64,
    position_id       String,
    protocol          LowCardinality(String),
    block_number      UInt64,
    log_index         UInt32,
    block_hash        String,
    block_time        DateTime64(3, 'UTC'),
    tx_hash           String,
    event             LowCardinality(String),
    owner             String,
    position_manager  String,
    token_id          UInt256,
    pool              String,
    token0            String,
    token1            String,
    symbol0           String,
    symbol1           String,
    decimals0         UInt8,
    decimals1         UInt8,
    fee               UInt32,
    tick_lower        Int32,
    tick_upper        Int32,
    liquidity         UInt128,
    deposited0        UInt256,
    deposited1        UInt256,
    withdrawn0        UInt256,
    withdrawn1        UInt256,
    collected0        UInt256,
    collected1        UInt256,
    burned            UInt8,
    version           UInt64,
    is_deleted        UInt8 DEFAULT 0,
    -- "which positions did this wallet ever hold" without a second table.
    PROJECTION by_owner (SELECT owner, chain_id, position_id ORDER BY (owner, chain_id, position_id))
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, position_id, block_number, log_index, block_hash)
SETTINGS deduplicate_merge_projection_mode = 'rebuild';

-- Exact Uniswap V3 fees at any block: the fee state a pool replica changes, as it changes.
-- (ALTER ... IF NOT EXISTS upgrades stores created before this file.)

ALTER TABLE defimon.pool_states ADD COLUMN IF NOT EXISTS fee_growth_global0_x128 UInt256;
ALTER TABLE defimon.pool_states ADD COLUMN IF NOT EXISTS fee_growth_global1_x128 UInt256;

ALTER TABLE defimon.position_versions ADD COLUMN IF NOT EXISTS fee_inside_last0 UInt256;
ALTER TABLE defimon.position_versions ADD COLUMN IF NOT EXISTS fee_inside_last1 UInt256;
ALTER TABLE defimon.position_versions ADD COLUMN IF NOT EXISTS tokens_owed0 UInt128;
ALTER TABLE defimon.position_versions ADD COLUMN IF NOT EXISTS tokens_owed1 UInt128;

-- A tick's fee growth outside and liquidity, at the end of every block in which a swap crossed
-- it or a mint or burn updated it (initialised = 0: cleared).
CREATE TABLE IF NOT EXISTS defimon.pool_ticks
(
    chain_id                  UInt64,
    pool                      String,
    tick                      Int32,
    block_number              UInt64,
    block_hash                String,
    initialized               UInt8,
    liquidity_gross           UInt128,
    liquidity_net             Int128,
    fee_growth_outside0_x128  UInt256,
    fee_growth_outside1_x128  UInt256,
    version                   UInt64,
    is_deleted                UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, pool, tick, block_number, block_hash);

-- The position manager's pool positions (one per range), as the pool keeps them.
CREATE TABLE IF NOT EXISTS defimon.pool_positions
(
    chain_id          UInt64,
    pool              String,
    owner             String,
    tick_lower        Int32,
    tick_upper        Int32,
    block_number      UInt64,
    block_hash        String,
    liquidity         UInt128,
    fee_inside_last0  UInt256,
    fee_inside_last1  UInt256,
    tokens_owed0      UInt128,
    tokens_owed1      UInt128,
    version           UInt64,
    is_deleted        UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, pool, owner, tick_lower, tick_upper, block_number, block_hash);
