"""Price helpers for setting up and driving the devnet, on top of defimon's own TickMath port."""

from __future__ import annotations

from fractions import Fraction
from math import isqrt

from protocols.uniswap_v3.math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    Q96,
)
from protocols.uniswap_v3.math import get_sqrt_ratio_at_tick as sqrt_ratio_at_tick
from protocols.uniswap_v3.math import get_tick_at_sqrt_ratio as tick_at_sqrt_ratio

__all__ = [
    "MAX_SQRT_RATIO",
    "MAX_TICK",
    "MIN_SQRT_RATIO",
    "MIN_TICK",
    "Q96",
    "floor_tick",
    "price_from_sqrt_price_x96",
    "sqrt_price_x96_from_price",
    "sqrt_ratio_at_tick",
    "tick_at_sqrt_ratio",
]


def sqrt_price_x96_from_price(price: Fraction, decimals0: int, decimals1: int) -> int:
    """sqrtPriceX96 for `price` = human units of token1 per one token0, exact (floored)."""
    raw = price * Fraction(10**decimals1, 10**decimals0)  # token1 base units per token0 base unit
    return isqrt(raw.numerator * 2**192 // raw.denominator)


def price_from_sqrt_price_x96(sqrt_price_x96: int, decimals0: int, decimals1: int) -> Fraction:
    """Human units of token1 per one token0."""
    return Fraction(sqrt_price_x96**2, 2**192) * Fraction(10**decimals0, 10**decimals1)


def floor_tick(tick: int, spacing: int) -> int:
    """The usable tick (a multiple of `spacing`) at or below `tick`, kept inside the tick range."""
    floored = (tick // spacing) * spacing
    lowest = -(MAX_TICK // spacing) * spacing
    return max(lowest, min(floored, (MAX_TICK // spacing) * spacing))
