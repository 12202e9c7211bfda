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
