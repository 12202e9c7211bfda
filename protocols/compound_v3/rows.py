"""Compound V3's tables: their columns (the DDL is tables.sql beside this, checked by
tests/unit/test_table_shapes.py) and the rows of its stage outputs (pure)."""

from __future__ import annotations

from datetime import datetime

from protocols.compound_v3.state import CometOutput
from protocols.spec import Rows
from schemas.positions import BlockRef

TABLES: dict[str, tuple[str, ...]] = {
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


def market_rows(comet: CometOutput, b: BlockRef, when: datetime, version: int) -> Rows:
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
