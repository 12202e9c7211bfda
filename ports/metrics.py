"""Prometheus metrics, one registry for the process (served at /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    logs_read: Counter
    blocks_processed: Counter
    rows_written: Counter
    dead_letters: Counter
    sink_flush_seconds: Histogram
    processed_block: Gauge
    head_block: Gauge
    head_lag_blocks: Gauge
    sse_clients: Gauge
    sse_events_sent: Counter
    sse_dropped_clients: Counter
    bus_lag_seconds: Histogram
    reorgs: Counter
    reorg_depth: Histogram
    head_stalls: Counter
    bus_published_events: Counter
    bus_dropped_events: Counter
    # JSON-RPC (flows/rpc.py); endpoint labels are redacted URLs (no keys).
    rpc_requests: Counter
    rpc_retries: Counter
    rpc_gave_up: Counter
    rpc_request_seconds: Histogram
    rpc_endpoint_rate: Gauge
    rpc_archive_required: Counter
    rpc_log_limit: Gauge
    watch_seeds: Counter
    watch_seed_calls: Counter
    head_lag_seconds: Gauge
    position_updates: Counter
    sink_insert_seconds: Histogram
    flow_stage_seconds: Histogram


def _build() -> Metrics:
    r = CollectorRegistry()
    return Metrics(
        registry=r,
        logs_read=Counter(
            "defimon_logs_read", "Logs read from the chain", ["chain_id"], registry=r
        ),
        blocks_processed=Counter(
            "defimon_blocks_processed", "Blocks through the market stage", ["chain_id"], registry=r
        ),
        rows_written=Counter("defimon_rows_written", "Rows inserted", ["table"], registry=r),
        dead_letters=Counter(
            "defimon_dead_letters", "Logs sent to the dead-letter table", ["chain_id"], registry=r
        ),
        sink_flush_seconds=Histogram(
            "defimon_sink_flush_seconds", "Store sink batch insert latency", registry=r
        ),
        processed_block=Gauge(
            "defimon_processed_block", "Last block stored", ["chain_id"], registry=r
        ),
        head_block=Gauge("defimon_head_block", "Chain head seen", ["chain_id"], registry=r),
        head_lag_blocks=Gauge(
            "defimon_head_lag_blocks", "Head minus processed block", ["chain_id"], registry=r
        ),
        sse_clients=Gauge("defimon_sse_clients", "Connected stream clients", registry=r),
        sse_events_sent=Counter("defimon_sse_events_sent", "Events queued to clients", registry=r),
        sse_dropped_clients=Counter(
            "defimon_sse_dropped_clients", "Clients dropped for lagging", registry=r
        ),
        bus_lag_seconds=Histogram(
            "defimon_bus_lag_seconds",
            "From the flow producing an event to the hub receiving it",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        ),
        reorgs=Counter(
            "defimon_reorgs", "Chain reorganisations rolled back", ["chain_id"], registry=r
        ),
        reorg_depth=Histogram(
            "defimon_reorg_depth_blocks",
            "Blocks retracted per reorganisation",
            ["chain_id"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        ),
        head_stalls=Counter(
            "defimon_head_stalls",
            "Times the head stopped moving for longer than head_timeout_seconds",
            ["chain_id"],
            registry=r,
        ),
        bus_published_events=Counter(
            "defimon_bus_published_events", "Events acked by the NATS stream", registry=r
        ),
        bus_dropped_events=Counter(
            "defimon_bus_dropped_events",
            "Events dropped because the NATS publish buffer was full",
            registry=r,
        ),
        rpc_requests=Counter(
            "defimon_rpc_requests",
            "JSON-RPC requests by outcome (ok, error, range_too_large, or the fault)",
            ["endpoint", "method", "outcome"],
            registry=r,
        ),
        rpc_retries=Counter(
            "defimon_rpc_retries",
            "JSON-RPC faults retried (rate_limited, timeout, connection, http_5xx, malformed, ...)",
            ["endpoint", "reason"],
            registry=r,
        ),
        rpc_gave_up=Counter(
            "defimon_rpc_gave_up",
            "JSON-RPC calls that failed after their whole retry budget",
            ["method"],
            registry=r,
        ),
        rpc_request_seconds=Histogram(
            "defimon_rpc_request_seconds",
            "JSON-RPC request latency, per attempt",
            ["endpoint", "method"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        ),
        rpc_endpoint_rate=Gauge(
            "defimon_rpc_endpoint_rate",
            "Adaptive request-rate limit of an endpoint (requests per second)",
            ["endpoint"],
            registry=r,
        ),
        rpc_archive_required=Counter(
            "defimon_rpc_archive_required",
            "State reads refused because the node has pruned the block's state (an archive "
            "node is needed); what needed them is dead-lettered",
            ["method", "kind"],
            registry=r,
        ),
        rpc_log_limit=Gauge(
            "defimon_rpc_log_limit",
            "eth_getLogs limits learned from an endpoint's refusals (max_span in blocks, "
            "max_results in logs, max_addresses per filter)",
            ["endpoint", "limit"],
            registry=r,
        ),
        watch_seeds=Counter(
            "defimon_watch_seeds", "Wallet watch mode seeds read", ["chain_id"], registry=r
        ),
        watch_seed_calls=Counter(
            "defimon_watch_seed_calls",
            "JSON-RPC calls made to seed watched wallets (batch items count one each)",
            ["chain_id"],
            registry=r,
        ),
        head_lag_seconds=Gauge(
            "defimon_head_lag_seconds",
            "Wall clock minus the timestamp of the last processed block (0 if the chain's "
            "clock runs ahead)",
            ["chain_id"],
            registry=r,
        ),
        position_updates=Counter(
            "defimon_position_updates",
            "Position and lending account states produced (new versions and revaluations)",
            ["chain_id", "protocol"],
            registry=r,
        ),
        sink_insert_seconds=Histogram(
            "defimon_sink_insert_seconds",
            "Store sink insert latency per table (one insert per table per flush)",
            ["table"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        ),
        flow_stage_seconds=Histogram(
            "defimon_flow_stage_seconds",
            "Time per call of each piece of work on the live path, to find what holds a block "
            "up: market, shard (the steps), undo_copy, recovery_snapshot, store_flush, "
            "bus_publish, gc_gen0/1/2 (collections, in any thread: they hold the GIL)",
            ["stage"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        ),
    )


METRICS = _build()
