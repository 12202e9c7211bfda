-- ERC-20 balances of the wallets defimon tracks (position owners, Aave users, the config's
-- watch list). Same conventions as 001: ReplacingMergeTree keyed with the block hash, read
-- with FINAL. One row per (wallet, token) per block in which the balance changed, the first
-- being the opening balance read with balanceOf when the pair became tracked (zero openings
-- are not stored: a pair without a row holds nothing). "Balance at block N" = the latest row
-- at or before N.
CREATE TABLE IF NOT EXISTS defimon.token_balances
(
    chain_id      UInt64,
    wallet        String,
    token         String,
    block_number  UInt64,
    block_hash    String,
    block_time    DateTime64(3, 'UTC'),
    balance       UInt256,
    version       UInt64,
    is_deleted    UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, wallet, token, block_number, block_hash);
