"""Uniswap V3's tables: their columns (the DDL is tables.sql beside this, checked by
tests/unit/test_table_shapes.py) and the rows of its stage outputs (pure)."""

from __future__ import annotations

from datetime import datetime

from protocols.spec import Rows
from protocols.uniswap_v3.state import UniswapOutput, UniswapShardOutput
from schemas.positions import PROTOCOL_UNISWAP_V3, BlockRef

TABLES: dict[str, tuple[str, ...]] = {
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
}


def market_rows(out: UniswapOutput, b: BlockRef, when: datetime, version: int) -> Rows:
    return {
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
    }


def shard_rows(out: UniswapShardOutput, b: BlockRef, when: datetime, version: int) -> Rows:
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
    return {"defimon.position_versions": rows}
