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
