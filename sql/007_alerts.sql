-- Alerts (api/alerts): rules, the alerts they fired, each delivery attempt, and the rules'
-- hysteresis state per subject. Same conventions as the other tables: ReplacingMergeTree
-- (version, is_deleted), read with FINAL.

-- One row per version of a rule; DELETE writes a higher version with is_deleted = 1.
-- `filter` is the filter grammar's canonical query (schemas/filters.py Filter.query) as JSON;
-- `params` and `delivery` are JSON objects (delivery holds the webhook secret: the engine
-- signs with it, the API never returns it).
CREATE TABLE IF NOT EXISTS defimon.alert_rules
(
    rule_id     String,
    name        String,
    kind        LowCardinality(String),
    filter      String,
    params      String,
    delivery    String,
    enabled     UInt8,
    created_at  DateTime64(3, 'UTC'),
    version     UInt64,
    is_deleted  UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY rule_id;

-- One row per fired alert. alert_id is derived from (rule, subject, block), so a replayed
-- evaluation collapses into the same row. `data` is the alert as the stream and webhooks
-- carry it.
CREATE TABLE IF NOT EXISTS defimon.alerts
(
    alert_id      String,
    rule_id       String,
    kind          LowCardinality(String),
    chain_id      UInt64,
    subject_id    String,
    owner         String,
    block_number  UInt64,
    block_hash    String,
    block_time    DateTime64(3, 'UTC'),
    value         Float64,
    threshold     Float64,
    message       String,
    data          String,
    fired_at      DateTime64(3, 'UTC'),  -- wall clock, informative
    version       UInt64,
    is_deleted    UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (rule_id, alert_id);

-- The delivery log: one row per attempt per channel. status: delivered | failed (will
-- retry) | rejected (the receiver refused for good) | expired (past the maximum age).
CREATE TABLE IF NOT EXISTS defimon.alert_deliveries
(
    alert_id    String,
    rule_id     String,
    channel     LowCardinality(String),  -- webhook | email
    target      String,
    attempt     UInt32,
    status      LowCardinality(String),
    code        Int32,                   -- HTTP status or SMTP reply code; 0: none
    error       String,
    at          DateTime64(3, 'UTC'),
    version     UInt64,
    is_deleted  UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (alert_id, channel, attempt);

-- A rule's hysteresis and cooldown state per subject, written on every change, so a restart
-- neither fires again for a condition that already fired nor forgets a cooldown.
CREATE TABLE IF NOT EXISTS defimon.alert_states
(
    rule_id     String,
    subject_id  String,
    armed       UInt8,
    last_fired  Nullable(Int64),  -- block time (unix seconds) of the last alert
    version     UInt64,
    is_deleted  UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (rule_id, subject_id);
