"""Domain outputs -> table rows (pure). The one place that knows the tables' column order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from protocols.compound_v3.state import CometOutput
from protocols.uniswap_v3.state import MarketOutput, ShardOutput
from protocols.windows import WindowRow
from schemas.chain import BlockBatch, Rewind
from schemas.positions import PROTOCOL_UNISWAP_V3, BlockRef

COLUMNS: dict[str, tuple[str, ...]] = {
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
    "defimon.pools": (
        "chain_id",
        "pool",
        "protocol",
        "token0",
        "token1",
        "fee",
        "tick_spacing",
        "created_block",
        "version",
    ),
    "defimon.tokens": ("chain_id", "address", "symbol", "decimals", "version"),
    "defimon.pool_states": (
        "chain_id",
        "pool",
        "block_number",
        "block_hash",
        "block_time",
        "sqrt_price_x96",
        "tick",
        "liquidity",
        "version",
        "fee_growth_global0_x128",
        "fee_growth_global1_x128",
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
    "defimon.position_versions": (
        "chain_id",
        "position_id",
        "protocol",
        "block_number",
        "log_index",
        "block_hash",
        "block_time",
        "tx_hash",
        "event",
        "owner",
        "position_manager",
        "token_id",
        "pool",
        "token0",
        "token1",
        "symbol0",
        "symbol1",
        "decimals0",
        "decimals1",
        "fee",
        "tick_lower",
        "tick_upper",
        "liquidity",
        "deposited0",
        "deposited1",
        "withdrawn0",
        "withdrawn1",
        "collected0",
        "collected1",
        "burned",
        "version",
        "fee_inside_last0",
        "fee_inside_last1",
        "tokens_owed0",
        "tokens_owed1",
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
}

COLUMNS.update(
    {
        "defimon.pool_ticks": (
            "chain_id",
            "pool",
            "tick",
            "block_number",
            "block_hash",
            "initialized",
            "liquidity_gross",
            "liquidity_net",
            "fee_growth_outside0_x128",
            "fee_growth_outside1_x128",
            "version",
        ),
        "defimon.pool_positions": (
            "chain_id",
            "pool",
            "owner",
            "tick_lower",
            "tick_upper",
            "block_number",
            "block_hash",
            "liquidity",
            "fee_inside_last0",
            "fee_inside_last1",
            "tokens_owed0",
            "tokens_owed1",
            "version",
        ),
        "defimon.aave_reserves": (
            "chain_id",
            "pool",
            "asset",
            "block_number",
            "block_hash",
            "a_token",
            "stable_debt_token",
            "variable_debt_token",
            "symbol",
            "decimals",
            "ltv",
            "liquidation_threshold",
            "liquidation_bonus",
            "emode_category",
            "reserve_id",
            "version",
        ),
        "defimon.aave_reserve_rates": (
            "chain_id",
            "pool",
            "asset",
            "block_number",
            "block_hash",
            "block_time",
            "liquidity_rate",
            "stable_borrow_rate",
            "variable_borrow_rate",
            "liquidity_index",
            "variable_borrow_index",
            "last_update",
            "version",
        ),
        "defimon.aave_emode_categories": (
            "chain_id",
            "pool",
            "category",
            "block_number",
            "block_hash",
            "ltv",
            "liquidation_threshold",
            "liquidation_bonus",
            "price_source",
            "collateral_bitmap",
            "borrowable_bitmap",
            "ltvzero_bitmap",
            "isolated",
            "version",
        ),
        "defimon.aave_pool_versions": (
            "chain_id",
            "pool",
            "block_number",
            "block_hash",
            "revision",
            "aave_version",
            "version",
        ),
        "defimon.oracle_prices": (
            "chain_id",
            "asset",
            "block_number",
            "block_hash",
            "block_time",
            "feed",
            "answer",
            "round_id",
            "updated_at",
            "version",
            "stale",
        ),
        "defimon.account_versions": (
            "chain_id",
            "account_id",
            "protocol",
            "pool",
            "owner",
            "asset",
            "block_number",
            "log_index",
            "block_hash",
            "block_time",
            "tx_hash",
            "event",
            "emode",
            "scaled_supply",
            "scaled_variable_debt",
            "stable_principal",
            "stable_rate",
            "stable_updated",
            "collateral",
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
        "defimon.liquidations": (
            "chain_id",
            "pool",
            "block_number",
            "log_index",
            "block_hash",
            "block_time",
            "tx_hash",
            "owner",
            "collateral_asset",
            "debt_asset",
            "debt_to_cover",
            "liquidated_collateral",
            "liquidator",
            "receive_a_token",
            "version",
        ),
    }
)

COLUMNS.update(
    {
        "defimon.comet_configs": (
            "chain_id",
            "comet",
            "block_number",
            "block_hash",
            "base_token",
            "base_symbol",
            "base_token_price_feed",
            "base_scale",
            "supply_kink",
            "supply_per_second_interest_rate_base",
            "supply_per_second_interest_rate_slope_low",
            "supply_per_second_interest_rate_slope_high",
            "borrow_kink",
            "borrow_per_second_interest_rate_base",
            "borrow_per_second_interest_rate_slope_low",
            "borrow_per_second_interest_rate_slope_high",
            "store_front_price_factor",
            "base_borrow_min",
            "version",
        ),
        "defimon.comet_assets": (
            "chain_id",
            "comet",
            "block_number",
            "block_hash",
            "asset_offset",
            "asset",
            "symbol",
            "price_feed",
            "scale",
            "borrow_collateral_factor",
            "liquidate_collateral_factor",
            "liquidation_factor",
            "supply_cap",
            "version",
        ),
        "defimon.comet_totals": (
            "chain_id",
            "comet",
            "block_number",
            "block_hash",
            "block_time",
            "base_supply_index",
            "base_borrow_index",
            "tracking_supply_index",
            "tracking_borrow_index",
            "total_supply_base",
            "total_borrow_base",
            "last_accrual_time",
            "pause_flags",
            "version",
        ),
        "defimon.comet_prices": (
            "chain_id",
            "comet",
            "feed",
            "block_number",
            "block_hash",
            "block_time",
            "price",
            "version",
        ),
        "defimon.comet_account_versions": (
            "chain_id",
            "account_id",
            "comet",
            "owner",
            "asset",
            "block_number",
            "log_index",
            "block_hash",
            "block_time",
            "tx_hash",
            "event",
            "amount",
            "counterparty",
            "principal",
            "assets_in",
            "collateral",
            "version",
        ),
        "defimon.comet_liquidations": (
            "chain_id",
            "comet",
            "block_number",
            "log_index",
            "block_hash",
            "block_time",
            "tx_hash",
            "kind",
            "actor",
            "borrower",
            "asset",
            "amount",
            "value",
            "version",
        ),
    }
)
COLUMNS["defimon.token_balances"] = (
    "chain_id",
    "wallet",
    "token",
    "block_number",
    "block_hash",
    "block_time",
    "balance",
    "version",
)

Row = tuple[Any, ...]

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


def market_rows(out: MarketOutput | Rewind) -> SinkBatch:
    if isinstance(out, Rewind):
        return rewind_marker(out)
    b = out.block
    when, version = _time(b.timestamp), _version()
    rows: dict[str, list[Row]] = {
        "defimon.pools": [
            (
                b.chain_id,
                p.address,
                PROTOCOL_UNISWAP_V3,
                p.token0,
                p.token1,
                p.fee,
                p.tick_spacing,
                p.created_block,
                version,
            )
            for p in out.new_pools
        ],
        "defimon.tokens": [
            (b.chain_id, t.address, t.symbol, t.decimals, version) for t in out.new_tokens
        ],
        "defimon.pool_states": [
            (
                b.chain_id,
                s.pool,
                b.number,
                b.hash,
                when,
                s.sqrt_price_x96,
                s.tick,
                s.liquidity,
                version,
                s.fee_growth_global0_x128,
                s.fee_growth_global1_x128,
            )
            for s in out.pool_snapshots
        ],
        "defimon.pool_ticks": [
            (
                b.chain_id,
                pool,
                tick,
                b.number,
                b.hash,
                int(info is not None),
                *(info if info is not None else (0, 0, 0, 0)),
                version,
            )
            for pool, tick, info in out.ticks
        ],
        "defimon.pool_positions": [
            (b.chain_id, pool, owner, lower, upper, b.number, b.hash, *position, version)
            for pool, (owner, lower, upper), position in out.pool_positions
        ],
        "defimon.token_prices": [
            (b.chain_id, p.token, b.number, b.hash, when, p.usd, p.source, p.hops, version)
            for p in out.prices
        ],
        "defimon.dead_letters": [
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
        ],
    }
    rows["defimon.token_balances"] = [
        (b.chain_id, c.wallet, c.token.address, b.number, b.hash, when, c.balance, version)
        for c in out.balances
        if c.moved
    ]
    if out.aave is not None:
        for table, more in _aave_market_rows(out, when, version).items():
            rows.setdefault(table, []).extend(more)
    if out.comet is not None:
        for table, more in comet_rows(out.block, out.comet, when, version).items():
            rows.setdefault(table, []).extend(more)
    return SinkBatch(
        b.chain_id,
        b.number,
        out.live,
        rows,
        expects_shards=tuple(sorted(out.shard_inputs)),
        block_time=b.timestamp,
    )


def _aave_market_rows(out: MarketOutput, when: datetime, version: int) -> dict[str, list[Row]]:
    b, aave = out.block, out.aave
    assert aave is not None
    pool = out.aave_pool
    dead = [
        (
            b.chain_id,
            lg.block_number,
            lg.block_hash,
            lg.log_index,
            lg.tx_hash,
            lg.address,
            list(lg.topics),
            lg.data,
            "aave_v3",
            reason,
            version,
        )
        for lg, reason in aave.dead
    ]
    return {
        "defimon.aave_reserves": [
            (
                b.chain_id,
                pool,
                r.asset,
                b.number,
                b.hash,
                r.a_token,
                r.stable_debt_token,
                r.variable_debt_token,
                r.symbol,
                r.decimals,
                r.ltv,
                r.liquidation_threshold,
                r.liquidation_bonus,
                r.emode_category,
                r.reserve_id,
                version,
            )
            for r in aave.reserves
        ],
        "defimon.aave_reserve_rates": [
            (
                b.chain_id,
                pool,
                r.asset,
                b.number,
                b.hash,
                when,
                r.liquidity_rate,
                r.stable_borrow_rate,
                r.variable_borrow_rate,
                r.liquidity_index,
                r.variable_borrow_index,
                r.last_update,
                version,
            )
            for r in aave.rates
        ],
        "defimon.aave_emode_categories": [
            (
                b.chain_id,
                pool,
                e.category,
                b.number,
                b.hash,
                e.ltv,
                e.liquidation_threshold,
                e.liquidation_bonus,
                e.price_source,
                e.collateral_bitmap,
                e.borrowable_bitmap,
                e.ltvzero_bitmap,
                int(e.isolated),
                version,
            )
            for e in aave.emode
        ],
        "defimon.aave_pool_versions": [
            (b.chain_id, pool, b.number, b.hash, revision, aave_version, version)
            for revision, aave_version in ([aave.version] if aave.version else [])
        ],
        "defimon.oracle_prices": [
            (
                b.chain_id,
                p.asset,
                b.number,
                b.hash,
                when,
                p.feed,
                p.answer,
                p.round_id,
                p.updated_at,
                version,
                p.stale,
            )
            for p in aave.prices
        ],
        "defimon.liquidations": [
            (
                b.chain_id,
                pool,
                lg.block_number,
                lg.log_index,
                lg.block_hash,
                when,
                lg.tx_hash,
                e.user,
                e.collateral_asset,
                e.debt_asset,
                e.debt_to_cover,
                e.liquidated_collateral,
                e.liquidator,
                int(e.receive_a_token),
                version,
            )
            for lg, e in aave.liquidations
        ],
        "defimon.dead_letters": dead,
    }


def shard_rows(out: ShardOutput | Rewind) -> SinkBatch:
    if isinstance(out, Rewind):
        return rewind_marker(out)
    b = out.block
    when, version = _time(b.timestamp), _version()
    rows = []
    for v in out.versions:
        p = v.position
        rows.append(
            (
                p.chain_id,
                p.position_id,
                p.protocol,
                v.block.number,
                v.log_index,
                v.block.hash,
                when,
                v.tx_hash,
                v.event,
                p.owner,
                p.position_manager,
                p.token_id,
                p.pool,
                p.token0,
                p.token1,
                p.symbol0,
                p.symbol1,
                p.decimals0,
                p.decimals1,
                p.fee,
                p.tick_lower,
                p.tick_upper,
                p.liquidity,
                p.deposited0,
                p.deposited1,
                p.withdrawn0,
                p.withdrawn1,
                p.collected0,
                p.collected1,
                int(p.burned),
                version,
                p.fee_inside_last0,
                p.fee_inside_last1,
                p.tokens_owed0,
                p.tokens_owed1,
            )
        )
    accounts = []
    for av in out.account_versions:
        a = av.account
        held = a.reserves.get(av.asset)
        accounts.append(
            (
                a.chain_id,
                a.account_id,
                a.protocol,
                a.pool,
                a.user,
                av.asset,
                b.number,
                av.log_index,
                b.hash,
                when,
                av.tx_hash,
                av.event,
                a.emode,
                held.scaled_supply if held else 0,
                held.scaled_variable_debt if held else 0,
                held.stable_principal if held else 0,
                held.stable_rate if held else 0,
                held.stable_updated if held else 0,
                int(held.collateral) if held else 0,
                version,
            )
        )
    tables: dict[str, list[Row]] = {
        "defimon.position_versions": rows,
        "defimon.account_versions": accounts,
    }
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


def comet_rows(
    b: BlockRef, comet: CometOutput, when: datetime, version: int
) -> dict[str, list[Row]]:
    """Compound V3 rows of one block (the market stage's CometOutput)."""
    return {
        "defimon.comet_configs": [
            (
                b.chain_id,
                c.comet,
                b.number,
                b.hash,
                c.base_token,
                c.base_symbol,
                c.base_token_price_feed,
                c.base_scale,
                c.supply_kink,
                c.supply_per_second_interest_rate_base,
                c.supply_per_second_interest_rate_slope_low,
                c.supply_per_second_interest_rate_slope_high,
                c.borrow_kink,
                c.borrow_per_second_interest_rate_base,
                c.borrow_per_second_interest_rate_slope_low,
                c.borrow_per_second_interest_rate_slope_high,
                c.store_front_price_factor,
                c.base_borrow_min,
                version,
            )
            for c in comet.configs
        ],
        "defimon.comet_assets": [
            (
                b.chain_id,
                c.comet,
                b.number,
                b.hash,
                a.offset,
                a.asset,
                a.symbol,
                a.price_feed,
                a.scale,
                a.borrow_collateral_factor,
                a.liquidate_collateral_factor,
                a.liquidation_factor,
                a.supply_cap,
                version,
            )
            for c in comet.configs
            for a in c.assets
        ],
        "defimon.comet_totals": [
            (
                b.chain_id,
                address,
                b.number,
                b.hash,
                when,
                t.base_supply_index,
                t.base_borrow_index,
                t.tracking_supply_index,
                t.tracking_borrow_index,
                t.total_supply_base,
                t.total_borrow_base,
                t.last_accrual_time,
                t.pause_flags,
                version,
            )
            for address, t in comet.totals
        ],
        "defimon.comet_prices": [
            (b.chain_id, address, feed, b.number, b.hash, when, price, version)
            for address, feed, price in comet.prices
        ],
        "defimon.comet_account_versions": [
            (
                b.chain_id,
                v.account.account_id,
                v.account.comet,
                v.account.user,
                v.asset,
                b.number,
                v.log_index,
                b.hash,
                when,
                v.tx_hash,
                v.event,
                v.amount,
                v.counterparty,
                v.account.principal,
                v.account.assets_in,
                v.account.collateral.get(v.asset, 0) if v.asset else 0,
                version,
            )
            for v in comet.versions
        ],
        "defimon.comet_liquidations": [
            (
                b.chain_id,
                liq.comet,
                b.number,
                liq.log.log_index,
                b.hash,
                when,
                liq.log.tx_hash,
                liq.kind,
                liq.actor,
                liq.borrower,
                liq.asset,
                liq.amount,
                liq.value,
                version,
            )
            for liq in comet.liquidations
        ],
    }
