"""Uniswap V3 positions under a stress scenario (schemas/stress.py): the pool's price moved to
the shocked ratio of its two tokens, the position valued there by `value_position`, the
function that values it live (amounts as the pool would pay them on a burn, range, value,
IL), and each token's USD price moved by its own shock.

The shocked pool price is `sqrtPriceX96' = isqrt(sqrtPriceX96^2 * (10,000 + bp0) /
(10,000 + bp1))`: token1 per token0 moves by token0's shock over token1's, and a swap with
that `sqrtPriceLimitX96` leaves the pool exactly there. Uncollected fees stay what they were
at the block (the swaps that would move the price earn fees of their own, not counted).
"""

from __future__ import annotations

import dataclasses
from math import isqrt

from protocols.uniswap_v3.math import MAX_SQRT_RATIO, MIN_SQRT_RATIO, get_tick_at_sqrt_ratio
from protocols.uniswap_v3.valuation import value_position
from schemas.positions import PoolSnapshot, PositionValue, TokenPrice, UniswapPosition
from schemas.stress import BPS, Scenario


def shocked_sqrt_price(sqrt_price_x96: int, bps0: int, bps1: int) -> int:
    """The pool's sqrtPriceX96 with token0 moved by bps0 and token1 by bps1 (TickMath's range)."""
    moved = isqrt(sqrt_price_x96 * sqrt_price_x96 * (BPS + bps0) // (BPS + bps1))
    return max(MIN_SQRT_RATIO, min(MAX_SQRT_RATIO - 1, moved))


def shocked_pool(pool: PoolSnapshot, bps0: int, bps1: int) -> PoolSnapshot:
    if (not bps0 and not bps1) or pool.sqrt_price_x96 == 0:
        return pool
    sqrt_price = shocked_sqrt_price(pool.sqrt_price_x96, bps0, bps1)
    return dataclasses.replace(
        pool, sqrt_price_x96=sqrt_price, tick=get_tick_at_sqrt_ratio(sqrt_price)
    )


def moved_price(price: TokenPrice | None, bps: int) -> TokenPrice | None:
    if price is None or not bps:
        return price
    return dataclasses.replace(price, usd=price.usd * (BPS + bps) / BPS)


def stress_position(
    pos: UniswapPosition,
    pool: PoolSnapshot | None,
    price0: TokenPrice | None,
    price1: TokenPrice | None,
    uncollected: tuple[int, int] | None,
    scenario: Scenario,
) -> tuple[PositionValue, PositionValue, PoolSnapshot | None, dict[str, int]]:
    """The position now and under the scenario; the shocked pool; the moves applied."""
    bps0 = scenario.bps(pos.token0, pos.symbol0)
    bps1 = scenario.bps(pos.token1, pos.symbol1)
    now = value_position(pos, pool, price0, price1, uncollected)
    moved_pool = None if pool is None else shocked_pool(pool, bps0, bps1)
    stressed = value_position(
        pos, moved_pool, moved_price(price0, bps0), moved_price(price1, bps1), uncollected
    )
    moves = {token: bps for token, bps in ((pos.token0, bps0), (pos.token1, bps1)) if bps}
    return now, stressed, moved_pool, moves
