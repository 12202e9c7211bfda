"""Exact integer Uniswap V3 price math (ports of TickMath) used to set up and drive the devnet."""

from __future__ import annotations

from fractions import Fraction
from math import isqrt

MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
Q96 = 2**96

# TickMath.getSqrtRatioAtTick magic numbers: 2^128 / sqrt(1.0001)^(2^i), i = 0..19
_TICK_FACTORS = (
    0xFFF97272373D413259A46990580E213A,
    0xFFF2E50F5F656932EF12357CF3C7FDCC,
    0xFFE5CACA7E10E4E61C3624EAA0941CD0,
    0xFFCB9843D60F6159C9DB58835C926644,
    0xFF973B41FA98C081472E6896DFB254C0,
    0xFF2EA16466C96A3843EC78B326B52861,
    0xFE5DEE046A99A2A811C461F1969C3053,
    0xFCBE86C7900A88AEDCFFC83B479AA3A4,
    0xF987A7253AC413176F2B074CF7815E54,
    0xF3392B0822B70005940C7A398E4B70F3,
    0xE7159475A2C29B7443B29C7FA6E889D9,
    0xD097F3BDFD2022B8845AD8F792AA5825,
    0xA9F746462D870FDF8A65DC1F90E061E5,
    0x70D869A156D2A1B890BB3DF62BAF32F7,
    0x31BE135F97D08FD981231505542FCFA6,
    0x9AA508B5B7A84E1C677DE54F3E99BC9,
    0x5D6AF8DEDB81196699C329225EE604,
    0x2216E584F5FA1EA926041BEDFE98,
    0x48A170391F7DC42444E8FA2,
)


def sqrt_ratio_at_tick(tick: int) -> int:
    """sqrt(1.0001^tick) * 2^96, bit-exact with TickMath.getSqrtRatioAtTick."""
    abs_tick = abs(tick)
    if abs_tick > MAX_TICK:
        raise ValueError(f"tick {tick} out of range")
    ratio = 0xFFFCB933BD6FAD37AA2D162D1A594001 if abs_tick & 1 else 1 << 128
    for bit, factor in enumerate(_TICK_FACTORS, start=1):
        if abs_tick & (1 << bit):
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = (2**256 - 1) // ratio
    return (ratio >> 32) + (0 if ratio % (1 << 32) == 0 else 1)


def tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """The greatest tick whose sqrt ratio is <= the given one (TickMath.getTickAtSqrtRatio)."""
    if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
        raise ValueError("sqrt price out of range")
    low, high = MIN_TICK, MAX_TICK
    while low < high:
        middle = (low + high + 1) // 2
        if sqrt_ratio_at_tick(middle) <= sqrt_price_x96:
            low = middle
        else:
            high = middle - 1
    return low


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
