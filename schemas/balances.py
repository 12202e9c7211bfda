"""ERC-20 balances of tracked wallets: the wire format the portfolio endpoint and the stream
share (`balance` events)."""

from __future__ import annotations

from typing import Any

from schemas.chain import TokenInfo
from schemas.positions import BlockRef, TokenPrice


def balance_json(
    chain_id: int,
    wallet: str,
    token: TokenInfo,
    balance: int,
    price: TokenPrice | None,
    price_block: int | None,
    value_usd: float | None,
    as_of: BlockRef,
    updated_block: int | None,
) -> dict[str, Any]:
    """On-chain integers are decimal strings (JSON numbers lose precision past 2^53)."""
    return {
        "chain_id": chain_id,
        "wallet": wallet,
        "token": token.address,
        "symbol": token.symbol,
        "decimals": token.decimals,
        "amount": str(balance),
        "price_usd": price.usd if price is not None else None,
        "value_usd": value_usd,
        "price_source": price.source if price is not None else None,
        "price_block": price_block,
        "updated_block": updated_block,
        "block_number": as_of.number,
        "block_hash": as_of.hash,
        "block_time": as_of.time_iso(),
    }
