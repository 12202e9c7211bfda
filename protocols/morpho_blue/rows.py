"""Morpho Blue's tables: their columns (the DDL is tables.sql beside this, checked against
these by tests/unit/test_table_shapes.py) and the rows of its stage outputs (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from protocols.spec import Rows
from schemas.positions import BlockRef

if TYPE_CHECKING:
    from protocols.morpho_blue.plugin import MorphoOutput, MorphoShardOutput

TABLES: dict[str, tuple[str, ...]] = {
    "defimon.morpho_markets": (
        "chain_id",
        "morpho",
        "market",
        "block_number",
        "block_hash",
        "loan_token",
        "collateral_token",
        "oracle",
        "irm",
        "lltv",
        "version",
    ),
    "defimon.morpho_market_states": (
        "chain_id",
        "market",
        "block_number",
        "block_hash",
        "block_time",
        "total_supply_assets",
        "total_supply_shares",
        "total_borrow_assets",
        "total_borrow_shares",
        "last_update",
        "fee",
        "prev_borrow_rate",
        "fee_recipient",
        "version",
    ),
    "defimon.morpho_market_reads": (
        "chain_id",
        "market",
        "block_number",
        "block_hash",
        "block_time",
        "price",
        "borrow_rate",
        "stale",
        "version",
    ),
    "defimon.morpho_positions": (
        "chain_id",
        "account_id",
        "morpho",
        "market",
        "owner",
        "block_number",
        "log_index",
        "block_hash",
        "block_time",
        "tx_hash",
        "event",
        "supply_shares",
        "borrow_shares",
        "collateral",
        "version",
    ),
}


def market_rows(out: MorphoOutput, b: BlockRef, when: datetime, version: int) -> Rows:
    return {
        "defimon.morpho_markets": [
            (
                b.chain_id,
                out.morpho,
                m.market,
                b.number,
                b.hash,
                m.loan_token,
                m.collateral_token,
                m.oracle,
                m.irm,
                m.lltv,
                version,
            )
            for m in out.new_markets
        ],
        "defimon.morpho_market_states": [
            (
                b.chain_id,
                market,
                b.number,
                b.hash,
                when,
                m.totals.total_supply_assets,
                m.totals.total_supply_shares,
                m.totals.total_borrow_assets,
                m.totals.total_borrow_shares,
                m.totals.last_update,
                m.totals.fee,
                m.prev_borrow_rate,
                fee_recipient,
                version,
            )
            for market, m, fee_recipient in out.states
        ],
        "defimon.morpho_market_reads": [
            (b.chain_id, market, b.number, b.hash, when, price, rate, stale, version)
            for market, price, rate, stale in out.reads
        ],
    }


def shard_rows(out: MorphoShardOutput, b: BlockRef, when: datetime, version: int) -> Rows:
    return {
        "defimon.morpho_positions": [
            (
                b.chain_id,
                v.account_id,
                v.account_id.split(":")[1],
                v.market,
                v.user,
                b.number,
                v.log_index,
                b.hash,
                when,
                v.tx_hash,
                v.event,
                v.position.supply_shares,
                v.position.borrow_shares,
                v.position.collateral,
                version,
            )
            for v in out.versions
        ]
    }
