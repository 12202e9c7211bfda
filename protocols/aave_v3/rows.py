"""Aave V3's tables: their columns (the DDL is tables.sql beside this, checked against these by
tests/unit/test_table_shapes.py) and the rows of its stage outputs (pure)."""

from __future__ import annotations

from datetime import datetime

from protocols.aave_v3.state import AaveMarketOutput, AccountVersion
from protocols.spec import Rows
from schemas.positions import BlockRef

TABLES: dict[str, tuple[str, ...]] = {
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


def market_rows(aave: AaveMarketOutput, b: BlockRef, when: datetime, version: int) -> Rows:
    pool = aave.pool
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
    }


def shard_rows(versions: list[AccountVersion], b: BlockRef, when: datetime, version: int) -> Rows:
    accounts = []
    for av in versions:
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
    return {"defimon.account_versions": accounts}
