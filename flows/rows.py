"""Stage outputs -> table rows (pure). The core tables are declared here; each protocol
declares its own (protocols/<name>/rows.py `TABLES`) and builds their rows, and `COLUMNS` is
the union: the one place that knows every table's column order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flows.market import MarketOutput
from protocols.registry import PLUGINS
from protocols.spec import Row, Rows, ShardOutput
from protocols.windows import WindowRow
from schemas.chain import BlockBatch, Rewind

# The tables every chain has, whatever protocols it runs.
CORE_COLUMNS: dict[str, tuple[str, ...]] = {
    "defimon.blocks": (
        "chain_id",
        "number",
        "hash",
        "parent_hash",
        "block_time",
        "log_count",
        "version",
    ),
    "defimon.raw_logs": (
        "chain_id",
        "block_number",
        "block_hash",
        "log_index",
        "tx_hash",
        "tx_index",
        "address",
        "topics",
        "data",
        "block_time",
        "version",
    ),
    "defimon.tokens": (
        "chain_id",
        "address",
        "symbol",
        "decimals",
        "version",
    ),
    "defimon.token_prices": (
        "chain_id",
        "token",
        "block_number",
        "block_hash",
        "block_time",
        "price_usd",
        "source",
        "hops",
        "version",
    ),
    "defimon.dead_letters": (
        "chain_id",
        "block_number",
        "block_hash",
        "log_index",
        "tx_hash",
        "address",
        "topics",
        "data",
        "stage",
        "reason",
        "version",
    ),
    "defimon.position_windows": (
        "chain_id",
        "subject_id",
        "protocol",
        "owner",
        "window",
        "window_start",
        "window_end",
        "value_open",
        "value_high",
        "value_low",
        "value_close",
        "il_open",
        "il_high",
        "il_low",
        "il_close",
        "hf_open",
        "hf_high",
        "hf_low",
        "hf_close",
        "fees_earned0",
        "fees_earned1",
        "fees_earned_usd",
        "close_block",
        "close_block_hash",
        "version",
    ),
}

COLUMNS: dict[str, tuple[str, ...]] = dict(CORE_COLUMNS)
for _plugin in PLUGINS:
    for _table, _columns in _plugin.tables.items():
        if _table in COLUMNS:
            raise RuntimeError(f"{_table} is declared twice (again by {_plugin.name})")
        COLUMNS[_table] = _columns


# Tables whose rows belong to one block, with the columns naming it. A reorg retracts the rows
# of the orphaned blocks: the same key again with is_deleted = 1 and a newer version, so FINAL
# (every query reads with it) no longer sees them, and a canonical block that later comes back
# under the same hash is written with a newer version still and shows again.
# pools and tokens are metadata keyed without a block; an orphaned pool stays listed, unused.
_BLOCK_OF: dict[str, tuple[str, str]] = {
    "defimon.blocks": ("number", "hash"),
    "defimon.position_windows": ("close_block", "close_block_hash"),
}
RETRACTABLE: dict[str, tuple[str, str]] = {
    table: _BLOCK_OF.get(table, ("block_number", "block_hash"))
    for table in COLUMNS
    if table not in ("defimon.pools", "defimon.tokens")
}


def retraction_statements(rewind: Rewind, version: int) -> list[tuple[str, dict[str, Any]]]:
    """Parameterised statements that retract a reorg's orphaned rows, table by table."""
    params = {
        "chain": rewind.chain_id,
        "fork": rewind.fork_block,
        "hashes": sorted({h for _, h in rewind.orphaned}),
        "version": version,
    }
    out = []
    for table, (number, block_hash) in RETRACTABLE.items():
        # Identifiers come from COLUMNS (code), never from input; values are parameters.
        kept = [c for c in COLUMNS[table] if c != "version"]
        columns = ", ".join([*kept, "version", "is_deleted"])
        sql = (
            f"INSERT INTO {table} ({columns}) "
            f"SELECT {', '.join(kept)}, {{version:UInt64}}, 1 FROM {table} FINAL "
            f"WHERE chain_id = {{chain:UInt64}} AND {number} >= {{fork:UInt64}} "
            f"AND {block_hash} IN {{hashes:Array(String)}}"
        )
        out.append((sql, params))
    return out


@dataclass(slots=True)
class SinkBatch:
    """Rows for several tables from one block, plus where that block stands."""

    chain_id: int
    block_number: int
    live: bool
    rows: dict[str, list[Row]]
    # The market stage's batch names the shards that owe rows for this block; a shard's batch
    # names its shard. The sink reports both once stored, and a block counts as processed when
    # the market and all its shards are in (ports.status).
    expects_shards: tuple[int, ...] | None = None
    shard: int | None = None
    rewind: Rewind | None = None  # a reorg passed this path: see rewind_marker
    block_time: int | None = None  # the block's timestamp (market batches): head lag in seconds


def _time(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _version() -> int:
    # Replays of the same row carry a newer version; the content is identical, so either wins.
    return time.time_ns()


def rewind_marker(item: Rewind) -> SinkBatch:
    """What each path to the store sends when a Rewind passes: the sink retracts once every
    path has (each path is in order, so by then every orphaned row has reached it)."""
    return SinkBatch(item.chain_id, item.fork_block - 1, True, {}, rewind=item)


def chain_rows(item: BlockBatch | Rewind) -> SinkBatch:
    if isinstance(item, Rewind):
        return rewind_marker(item)
    batch = item
    h = batch.header
    when, version = _time(h.timestamp), _version()
    # RawLog's fields are raw_logs' leading columns, in order: a row is the log plus two.
    tail = (when, version)
    logs = [lg + tail for lg in batch.logs]
    block = [(h.chain_id, h.number, h.hash, h.parent_hash, when, len(batch.logs), version)]
    return SinkBatch(
        h.chain_id, h.number, batch.live, {"defimon.blocks": block, "defimon.raw_logs": logs}
    )


def _merge(into: Rows, more: Rows) -> None:
    for table, rows in more.items():
        into.setdefault(table, []).extend(rows)


def market_rows(out: MarketOutput | Rewind) -> SinkBatch:
    if isinstance(out, Rewind):
        return rewind_marker(out)
    b = out.block
    when, version = _time(b.timestamp), _version()
    rows: Rows = {
        "defimon.tokens": [
            (b.chain_id, t.address, t.symbol, t.decimals, version) for t in out.new_tokens
        ],
        "defimon.token_prices": [
            (b.chain_id, p.token, b.number, b.hash, when, p.usd, p.source, p.hops, version)
            for p in out.prices
        ],
    }
    for plugin in PLUGINS:
        part = out.parts.get(plugin.name)
        if part is not None and plugin.market_rows is not None:
            _merge(rows, plugin.market_rows(part, b, when, version))
    # Last: the protocols' steps appended theirs to the block's dead letters.
    rows["defimon.dead_letters"] = [
        (
            b.chain_id,
            d.log.block_number,
            d.log.block_hash,
            d.log.log_index,
            d.log.tx_hash,
            d.log.address,
            list(d.log.topics),
            d.log.data,
            d.stage,
            d.reason,
            version,
        )
        for d in out.dead_letters
    ]
    return SinkBatch(
        b.chain_id,
        b.number,
        out.live,
        rows,
        expects_shards=tuple(sorted(out.shard_inputs)),
        block_time=b.timestamp,
    )


def shard_rows(out: ShardOutput | Rewind) -> SinkBatch:
    if isinstance(out, Rewind):
        return rewind_marker(out)
    b = out.block
    when, version = _time(b.timestamp), _version()
    tables: Rows = {}
    for plugin in PLUGINS:
        part = out.parts.get(plugin.name)
        if part is not None and plugin.shard_rows is not None:
            _merge(tables, plugin.shard_rows(part, b, when, version))
    if out.windows:
        tables["defimon.position_windows"] = [_window_row(w, version) for w in out.windows]
    return SinkBatch(b.chain_id, b.number, out.live, tables, shard=out.shard)


def _window_row(w: WindowRow, version: int) -> Row:
    s = w.subject
    return (
        s.chain_id,
        s.subject_id,
        s.protocol,
        s.owner,
        w.window,
        _time(w.start),
        _time(w.end),
        w.value.open,
        w.value.high,
        w.value.low,
        w.value.close,
        w.il.open,
        w.il.high,
        w.il.low,
        w.il.close,
        w.health_factor.open,
        w.health_factor.high,
        w.health_factor.low,
        w.health_factor.close,
        w.fees0,
        w.fees1,
        w.fees_usd,
        w.close_block.number,
        w.close_block.hash,
        version,
    )
