-- Aave V3's tables: lending and oracle prices (declared with its code; the store applies
-- protocols/*/tables.sql after sql/). Same conventions as sql/001_core.sql. Every statement is
-- idempotent (ALTER ... IF NOT EXISTS upgrades stores created before a column was added).

-- A reserve's configuration, one row per block in which it changed.
CREATE TABLE IF NOT EXISTS defimon.aave_reserves
(
    chain_id               UInt64,
    pool                   String,
    asset                  String,
    block_number           UInt64,
    block_hash             String,
    a_token                String,
    stable_debt_token      String,
    variable_debt_token    String,
    symbol                 String,
    decimals               UInt8,
    ltv                    UInt16,
    liquidation_threshold  UInt16,
    liquidation_bonus      UInt16,
    emode_category         UInt8,
    version                UInt64,
    is_deleted             UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, pool, asset, block_number, block_hash);

-- Rates and indices from ReserveDataUpdated, one row per block in which they changed.
CREATE TABLE IF NOT EXISTS defimon.aave_reserve_rates
(
    chain_id               UInt64,
    pool                   String,
    asset                  String,
    block_number           UInt64,
    block_hash             String,
    block_time             DateTime64(3, 'UTC'),
    liquidity_rate         UInt256,
    stable_borrow_rate     UInt256,
    variable_borrow_rate   UInt256,
    liquidity_index        UInt256,
    variable_borrow_index  UInt256,
    last_update            UInt64,
    version                UInt64,
    is_deleted             UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, pool, asset, block_number, block_hash);

CREATE TABLE IF NOT EXISTS defimon.aave_emode_categories
(
    chain_id               UInt64,
    pool                   String,
    category               UInt8,
    block_number           UInt64,
    block_hash             String,
    ltv                    UInt16,
    liquidation_threshold  UInt16,
    liquidation_bonus      UInt16,
    price_source           String,
    version                UInt64,
    is_deleted             UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, pool, category, block_number, block_hash);

-- Every answer of a feed an oracle uses, per asset: the price, its round and its time.
CREATE TABLE IF NOT EXISTS defimon.oracle_prices
(
    chain_id      UInt64,
    asset         String,
    block_number  UInt64,
    block_hash    String,
    block_time    DateTime64(3, 'UTC'),
    feed          String,
    answer        Int256,
    round_id      UInt256,
    updated_at    UInt64,
    version       UInt64,
    is_deleted    UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, asset, block_number, block_hash);

-- One row per change of an account's position in one reserve (or of its eMode, asset = '').
CREATE TABLE IF NOT EXISTS defimon.account_versions
(
    chain_id              UInt64,
    account_id            String,
    protocol              LowCardinality(String),
    pool                  String,
    owner                 String,
    asset                 String,
    block_number          UInt64,
    log_index             UInt32,
    block_hash            String,
    block_time            DateTime64(3, 'UTC'),
    tx_hash               String,
    event                 LowCardinality(String),
    emode                 UInt8,
    scaled_supply         UInt256,
    scaled_variable_debt  UInt256,
    stable_principal      UInt256,
    stable_rate           UInt256,
    stable_updated        UInt64,
    collateral            UInt8,
    version               UInt64,
    is_deleted            UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, owner, account_id, asset, block_number, log_index, block_hash);

-- Liquidations, as the Pool reported them.
CREATE TABLE IF NOT EXISTS defimon.liquidations
(
    chain_id               UInt64,
    pool                   String,
    block_number           UInt64,
    log_index              UInt32,
    block_hash             String,
    block_time             DateTime64(3, 'UTC'),
    tx_hash                String,
    owner                  String,
    collateral_asset       String,
    debt_asset             String,
    debt_to_cover          UInt256,
    liquidated_collateral  UInt256,
    liquidator             String,
    receive_a_token        UInt8,
    version                UInt64,
    is_deleted             UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, owner, block_number, log_index, block_hash);
-- Aave as deployed (3.2+): reserve ids, eMode bitmaps and the Pool version in force.
-- (ALTER ... IF NOT EXISTS upgrades stores created before this file.)

-- The reserve's index in the pool's reserves list: its bit in eMode bitmaps (-1: unknown).
ALTER TABLE defimon.aave_reserves ADD COLUMN IF NOT EXISTS reserve_id Int16 DEFAULT -1;

-- 3.2+: the reserves a category applies to, as bitmaps over reserve ids; 3.6+: those with
-- LTV 0 inside it; 3.7: isolated categories.
ALTER TABLE defimon.aave_emode_categories ADD COLUMN IF NOT EXISTS collateral_bitmap UInt128 DEFAULT 0;
ALTER TABLE defimon.aave_emode_categories ADD COLUMN IF NOT EXISTS borrowable_bitmap UInt128 DEFAULT 0;
ALTER TABLE defimon.aave_emode_categories ADD COLUMN IF NOT EXISTS ltvzero_bitmap UInt128 DEFAULT 0;
ALTER TABLE defimon.aave_emode_categories ADD COLUMN IF NOT EXISTS isolated UInt8 DEFAULT 0;

-- The Aave release whose rules apply from a block on: from the Pool's POOL_REVISION() read at
-- the first block the flow read and at each upgrade of the Pool proxy (revision 0: pinned by
-- the chain config). Time travel values accounts with the version in force at the block.
CREATE TABLE IF NOT EXISTS defimon.aave_pool_versions
(
    chain_id      UInt64,
    pool          String,
    block_number  UInt64,
    block_hash    String,
    revision      UInt64,
    aave_version  String,
    version       UInt64,
    is_deleted    UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, pool, block_number, block_hash);
-- Oracle prices that could not be read (issue 10): `stale` says why ('' when the answer is
-- current); `answer` is then the last good one. Upgrades stores created before this file.
ALTER TABLE defimon.oracle_prices ADD COLUMN IF NOT EXISTS stale String DEFAULT '';
