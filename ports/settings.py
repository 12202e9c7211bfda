"""Settings from the environment (DEFIMON_*) and the command line; one object per process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEFIMON_", extra="ignore")

    data_dir: Path = Field(Path(".defimon"), description="chDB data and Bytewax recovery")
    clickhouse_url: str | None = Field(
        None, description="http://user:pass@host:8123 for a ClickHouse server; chDB if unset"
    )
    clickhouse_analyst_url: str | None = Field(
        None,
        description="http://analyst:pass@host:8123, a read-only ClickHouse user for analyst SQL",
    )
    # Scale-out (defimon flow / defimon api): the bus between them, and the flow's store over
    # ClickHouse's HTTP interface when the store is the flow's embedded chDB.
    nats_url: str | None = Field(None, description="nats://host:4222; the bus is NATS when set")
    nats_stream: str = "DEFIMON"
    nats_max_msgs: int = Field(1_000_000, ge=1, description="events the stream keeps at most")
    nats_max_age_seconds: float = Field(86_400.0, gt=0, description="how long it keeps them")
    nats_duplicate_window_seconds: float = Field(
        120.0, gt=0, description="resends with the same Nats-Msg-Id within this are dropped"
    )
    nats_buffer_events: int = Field(
        100_000, ge=1, description="events the flow buffers for NATS before dropping"
    )
    store_http_user: str = "defimon"
    store_http_password: str = Field("", description="the store HTTP server's writer password")
    store_http_analyst_user: str = "analyst"
    store_http_analyst_password: str | None = Field(
        None, description="password of the store HTTP server's read-only user (none: no such user)"
    )
    host: str = "127.0.0.1"
    api_keys_file: Path | None = Field(
        None, description="hashed API keys (defimon keys); default <data_dir>/api_keys.json"
    )
    port: int = 8000
    shards: int = Field(8, ge=1, le=4096, description="position shards per chain")
    epoch_seconds: float = Field(
        5.0, gt=0, description="Bytewax snapshot interval; the store flushes at each"
    )
    poll_interval: float = Field(0.05, gt=0, description="head polling without a ws URL")
    reorg_check_seconds: float = Field(
        2.0, gt=0, description="re-check the newest stored block's hash this often (reorgs)"
    )
    head_timeout_seconds: float = Field(
        120.0, gt=0, description="no new head this long: a stall (logged, counted, reconnect)"
    )
    sse_ping_seconds: float = Field(15.0, gt=0)
    sse_queue_size: int = Field(1024, ge=8, description="events buffered per stream client")
    sse_replay: int = Field(10_000, ge=0, description="recent events kept for Last-Event-ID")
    ready_lag_blocks: int = Field(2, ge=0, description="/readyz tolerates this much head lag")
    log_level: str = "info"
    log_format: Literal["console", "json"] = "console"
    # Alerts (api/alerts): delivery retries, webhooks, backtests and the SMTP server for email.
    alert_retry_base_seconds: float = Field(1.0, gt=0, description="first retry delay")
    alert_retry_cap_seconds: float = Field(300.0, gt=0, description="longest retry delay")
    alert_max_age_seconds: float = Field(
        86_400.0, gt=0, description="give up delivering an alert this long after it fired"
    )
    alert_webhook_timeout: float = Field(10.0, gt=0)
    # A replayed block costs about what /v1/positions?at= does (50-75 ms on the devnet).
    alert_backtest_max_blocks: int = Field(
        1000, ge=1, description="indexed blocks one backtest may replay"
    )
    smtp_host: str | None = Field(None, description="SMTP server for email alerts")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "defimon@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = Field(10.0, gt=0)

    # Analyst SQL (POST /v1/sql, `defimon sql`): every query runs read-only under these limits.
    sql_max_execution_seconds: float = Field(30.0, gt=0, description="wall-clock limit per query")
    sql_max_rows_to_read: int = Field(500_000_000, ge=1, description="rows a query may scan")
    sql_max_bytes_to_read: int = Field(20 * 2**30, ge=1, description="bytes a query may scan")
    sql_max_result_rows: int = Field(100_000, ge=1, description="rows a query may return")
    sql_max_result_bytes: int = Field(256 * 2**20, ge=1, description="bytes a query may return")
    sql_max_memory_bytes: int = Field(2 * 2**30, ge=2**20, description="memory per query")

    # JSON-RPC (flows/rpc.py): per-endpoint adaptive rate limits and the retry budget per call.
    rpc_timeout_seconds: float = Field(30.0, gt=0, description="per HTTP request")
    rpc_rate_initial: float = Field(50.0, gt=0, description="requests/s per endpoint at start")
    rpc_rate_max: float = Field(500.0, gt=0, description="the adaptive rate never goes above")
    rpc_attempts: int = Field(8, ge=1, description="tries per call, over all endpoints")
    rpc_budget_seconds: float = Field(60.0, gt=0, description="time per call, waits included")

    @property
    def keys_path(self) -> Path:
        return self.api_keys_file or self.data_dir / "api_keys.json"
