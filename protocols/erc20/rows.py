"""ERC-20 balances' table: its columns (the DDL is tables.sql beside this, checked by
tests/unit/test_table_shapes.py) and the rows of a block's balance changes (pure)."""

from __future__ import annotations

from datetime import datetime

from protocols.erc20.book import BalanceChange
from protocols.spec import Rows
from schemas.positions import BlockRef

TABLES: dict[str, tuple[str, ...]] = {
    "defimon.token_balances": (
        "chain_id",
        "wallet",
        "token",
        "block_number",
        "block_hash",
        "block_time",
        "balance",
        "version",
    ),
}


def market_rows(changes: list[BalanceChange], b: BlockRef, when: datetime, version: int) -> Rows:
    return {
        "defimon.token_balances": [
            (b.chain_id, c.wallet, c.token.address, b.number, b.hash, when, c.balance, version)
            for c in changes
            if c.moved
        ]
    }
