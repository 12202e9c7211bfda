-- Compound V3 (Comet). Same conventions as 001/002: ReplacingMergeTree keyed with the block
-- hash, read with FINAL; on-chain integers as on chain. Everything here was read from the
-- comet with eth_call at the block (configuration, totals, prices, principal, collateral) or
-- emitted by it (events), so time travel replays the contract's own state.

-- A comet's immutables, one row per block where they were read (first seen, proxy upgrades).
CREATE TABLE IF NOT EXISTS defimon.comet_configs
(
    chain_id                                    UInt64,
    comet                                       String,
    block_number                                UInt64,
    block_hash                                  String,
    base_token                                  String,
    base_symbol                                 String,
    base_token_price_feed                       String,
    base_scale                                  UInt64,
    supply_kink                                 UInt64,
    supply_per_second_interest_rate_base        UInt64,
    supply_per_second_interest_rate_slope_low   UInt64,
    supply_per_second_interest_rate_slope_high  UInt64,
    borrow_kink                                 UInt64,
    borrow_per_second_interest_rate_base        UInt64,
    borrow_per_second_interest_rate_slope_low   UInt64,
    borrow_per_second_interest_rate_slope_high  UInt64,
    store_front_price_factor                    UInt64,
    base_borrow_min                             UInt256,
    version                                     UInt64,
    is_deleted                                  UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, comet, block_number, block_hash);

-- getAssetInfo(i) for every asset, written with each configuration row (same block).
CREATE TABLE IF NOT EXISTS defimon.comet_assets
(
    chain_id                     UInt64,
    comet                        String,
    block_number                 UInt64,
    block_hash                   String,
    asset_offset                 UInt8,
    asset                        String,
    symbol                       String,
    price_feed                   String,
    scale                        UInt64,
    borrow_collateral_factor     UInt64,
    liquidate_collateral_factor  UInt64,
    liquidation_factor           UInt64,
    supply_cap                   UInt128,
    version                      UInt64,
    is_deleted                   UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, comet, block_number, asset_offset, block_hash);

-- totalsBasic() at the end of each block where it changed.
CREATE TABLE IF NOT EXISTS defimon.comet_totals
(
    chain_id               UInt64,
    comet                  String,
    block_number           UInt64,
    block_hash             String,
    block_time             DateTime64(3, 'UTC'),
    base_supply_index      UInt64,
    base_borrow_index      UInt64,
    tracking_supply_index  UInt64,
    tracking_borrow_index  UInt64,
    total_supply_base      UInt256,
    total_borrow_base      UInt256,
    last_accrual_time      UInt64,
    pause_flags            UInt8,
    version                UInt64,
    is_deleted             UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, comet, block_number, block_hash);

-- getPrice(feed) as the comet answered it, at each block where it changed (8 decimals).
CREATE TABLE IF NOT EXISTS defimon.comet_prices
(
    chain_id      UInt64,
    comet         String,
    feed          String,
    block_number  UInt64,
    block_hash    String,
    block_time    DateTime64(3, 'UTC'),
    price         UInt256,
    version       UInt64,
    is_deleted    UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, comet, feed, block_number, block_hash);

-- One row per account event: the event (why), and the account's end-of-block state (what):
-- the signed base principal and assetsIn from userBasic, and for a collateral event (asset
-- set; '' for base events) that asset's userCollateral balance.
CREATE TABLE IF NOT EXISTS defimon.comet_account_versions
(
    chain_id      UInt64,
    account_id    String,
    comet         String,
    owner         String,
    asset         String,
    block_number  UInt64,
    log_index     UInt32,
    block_hash    String,
    block_time    DateTime64(3, 'UTC'),
    tx_hash       String,
    event         LowCardinality(String),
    amount        UInt256,
    counterparty  String,
    principal     Int256,
    assets_in     UInt32,
    collateral    UInt256,
    version       UInt64,
    is_deleted    UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, owner, account_id, asset, block_number, log_index, block_hash);

-- AbsorbDebt, AbsorbCollateral and BuyCollateral as the comet emitted them.
CREATE TABLE IF NOT EXISTS defimon.comet_liquidations
(
    chain_id      UInt64,
    comet         String,
    block_number  UInt64,
    log_index     UInt32,
    block_hash    String,
    block_time    DateTime64(3, 'UTC'),
    tx_hash       String,
    kind          LowCardinality(String),
    actor         String,
    borrower      String,
    asset         String,
    amount        UInt256,
    value         UInt256,
    version       UInt64,
    is_deleted    UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, comet, block_number, log_index, block_hash);
