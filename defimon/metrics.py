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
    head_lag_seconds: Gauge
    position_updates: Counter
    sink_insert_seconds: Histogram


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
    )


METRICS = _build()
