-- Per-position windows (protocols/windows.py): one row per subject (LP position or lending
-- account), window length and start, written when the window closes. Closing is driven by
-- block time, so a replay of the same chain writes the same rows. USD figures are Float64
-- (they are derived, not on-chain integers); fees earned stay exact token amounts.
CREATE TABLE IF NOT EXISTS defimon.position_windows
(
    chain_id          UInt64,
    subject_id        String,        -- position id or lending account id
    protocol          LowCardinality(String),
    owner             String,
    window            LowCardinality(String),  -- 1m | 1h | 1d
    window_start      DateTime('UTC'),
    window_end        DateTime('UTC'),
    value_open        Nullable(Float64),
    value_high        Nullable(Float64),
    value_low         Nullable(Float64),
    value_close       Nullable(Float64),
    il_open           Nullable(Float64),
    il_high           Nullable(Float64),
    il_low            Nullable(Float64),
    il_close          Nullable(Float64),
    hf_open           Nullable(Float64),  -- null: no debt (or not a lending account)
    hf_high           Nullable(Float64),
    hf_low            Nullable(Float64),
    hf_close          Nullable(Float64),
    fees_earned0      Nullable(Int256),   -- token0 units; LP positions only
    fees_earned1      Nullable(Int256),
    fees_earned_usd   Nullable(Float64),  -- at the window's closing prices
    close_block       UInt64,             -- the last block of the window: what was observed
    close_block_hash  String,
    version           UInt64,
    is_deleted        UInt8 DEFAULT 0,
    INDEX owner_idx owner TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (chain_id, subject_id, window, window_start)
-- Minute windows of every position are many rows a day; keep 90 days of them.
TTL window_start + INTERVAL 90 DAY DELETE WHERE window = '1m';
