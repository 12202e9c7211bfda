"""Uniswap V3 integer math, ported line by line from the Solidity libraries.

Everything here works on Python ints with the contracts' own rounding, so the results are
equal to what the chain computes, to the wei. References:
- v3-core `contracts/libraries/TickMath.sol`, `FullMath.sol`, `SqrtPriceMath.sol`, `Tick.sol`
- v3-periphery `contracts/libraries/LiquidityAmounts.sol`
"""

from __future__ import annotations

import math
from functools import lru_cache

MIN_TICK = -887272
MAX_TICK = -MIN_TICK
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
Q96 = 1 << 96
Q128 = 1 << 128
Q192 = 1 << 192
UINT256 = 1 << 256
MAX_UINT256 = UINT256 - 1

# The magic constants of TickMath.getSqrtRatioAtTick: 1/sqrt(1.0001)^(2^i) in Q128.128.
_TICK_FACTORS = (
    (0x2, 0xFFF97272373D413259A46990580E213A),
    (0x4, 0xFFF2E50F5F656932EF12357CF3C7FDCC),
    (0x8, 0xFFE5CACA7E10E4E61C3624EAA0941CD0),
    (0x10, 0xFFCB9843D60F6159C9DB58835C926644),
    (0x20, 0xFF973B41FA98C081472E6896DFB254C0),
    (0x40, 0xFF2EA16466C96A3843EC78B326B52861),
    (0x80, 0xFE5DEE046A99A2A811C461F1969C3053),
    (0x100, 0xFCBE86C7900A88AEDCFFC83B479AA3A4),
    (0x200, 0xF987A7253AC413176F2B074CF7815E54),
    (0x400, 0xF3392B0822B70005940C7A398E4B70F3),
    (0x800, 0xE7159475A2C29B7443B29C7FA6E889D9),
    (0x1000, 0xD097F3BDFD2022B8845AD8F792AA5825),
    (0x2000, 0xA9F746462D870FDF8A65DC1F90E061E5),
    (0x4000, 0x70D869A156D2A1B890BB3DF62BAF32F7),
    (0x8000, 0x31BE135F97D08FD981231505542FCFA6),
    (0x10000, 0x9AA508B5B7A84E1C677DE54F3E99BC9),
    (0x20000, 0x5D6AF8DEDB81196699C329225EE604),
    (0x40000, 0x2216E584F5FA1EA926041BEDFE98),
    (0x80000, 0x48A170391F7DC42444E8FA2),
)


_TWO_OVER_LN_1_0001 = 2 / math.log(1.0001)


class MathError(ArithmeticError):
    """An input outside the domain the contracts accept (they would revert)."""


@lru_cache(maxsize=1 << 16)
def get_sqrt_ratio_at_tick(tick: int) -> int:
    """sqrt(1.0001^tick) * 2^96, rounded up to the next Q64.96 as the contract does."""
    abs_tick = -tick if tick < 0 else tick
    if abs_tick > MAX_TICK:
        raise MathError(f"tick {tick} out of range")
    ratio = (
        0xFFFCB933BD6FAD37AA2D162D1A594001
        if abs_tick & 0x1
        else 0x100000000000000000000000000000000
    )
    for bit, factor in _TICK_FACTORS:
        if abs_tick & bit:
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = MAX_UINT256 // ratio
    # Q128.128 -> Q128.96, rounding up so getTickAtSqrtRatio stays consistent.
    return (ratio >> 32) + (0 if ratio % (1 << 32) == 0 else 1)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """The greatest tick whose ratio is <= the price (TickMath.getTickAtSqrtRatio)."""
    if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
        raise MathError(f"sqrtPriceX96 {sqrt_price_x96} out of range")
    # The contract's answer is, by definition, the greatest tick whose ratio is <= the price.
    # A float logarithm lands within a tick or two of it; exact checks settle it.
    guess = math.floor(math.log(sqrt_price_x96 / Q96) * _TWO_OVER_LN_1_0001)
    guess = max(MIN_TICK, min(MAX_TICK - 1, guess))
    for _ in range(4):
        if get_sqrt_ratio_at_tick(guess) > sqrt_price_x96:
            guess -= 1
        elif guess < MAX_TICK and get_sqrt_ratio_at_tick(guess + 1) <= sqrt_price_x96:
            guess += 1
        else:
            return guess
    # Never reached in practice; an exact binary search keeps the function total.
    lo, hi = MIN_TICK, MAX_TICK
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if get_sqrt_ratio_at_tick(mid) <= sqrt_price_x96:
            lo = mid
        else:
            hi = mid - 1
    return lo


def mul_div(a: int, b: int, denominator: int) -> int:
    """floor(a*b/denominator) with full precision (FullMath.mulDiv); reverts on overflow."""
    if denominator == 0:
        raise MathError("mulDiv by zero")
    result = a * b // denominator
    if result > MAX_UINT256:
        raise MathError("mulDiv overflow")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """ceil(a*b/denominator) (FullMath.mulDivRoundingUp)."""
    if denominator == 0:
        raise MathError("mulDiv by zero")
    result = -(-(a * b) // denominator)
    if result > MAX_UINT256:
        raise MathError("mulDiv overflow")
    return result


def _div_rounding_up(x: int, y: int) -> int:
    return -(-x // y)


def get_amount0_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """SqrtPriceMath.getAmount0Delta for an unsigned liquidity."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if sqrt_a <= 0:
        raise MathError("sqrt price must be positive")
    numerator1 = liquidity << 96
    numerator2 = sqrt_b - sqrt_a
    if round_up:
        return _div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b), sqrt_a)
    return mul_div(numerator1, numerator2, sqrt_b) // sqrt_a


def get_amount1_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """SqrtPriceMath.getAmount1Delta for an unsigned liquidity."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b - sqrt_a, Q96)
    return mul_div(liquidity, sqrt_b - sqrt_a, Q96)


def amounts_for_liquidity(
    sqrt_price_x96: int, sqrt_a: int, sqrt_b: int, liquidity: int
) -> tuple[int, int]:
    """LiquidityAmounts.getAmountsForLiquidity: the amounts a position holds, rounded down."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if sqrt_price_x96 <= sqrt_a:
        return get_amount0_delta(sqrt_a, sqrt_b, liquidity, False), 0
    if sqrt_price_x96 < sqrt_b:
        return (
            get_amount0_delta(sqrt_price_x96, sqrt_b, liquidity, False),
            get_amount1_delta(sqrt_a, sqrt_price_x96, liquidity, False),
        )
    return 0, get_amount1_delta(sqrt_a, sqrt_b, liquidity, False)


def position_amounts(
    sqrt_price_x96: int, tick: int, tick_lower: int, tick_upper: int, liquidity: int
) -> tuple[int, int]:
    """What burning all of `liquidity` returns, as UniswapV3Pool._modifyPosition computes it.

    The pool picks the case by the *tick* (not the price, as LiquidityAmounts does); both agree on
    the amounts, but following the pool keeps this equal to `decreaseLiquidity` by construction.
    """
    sqrt_a = get_sqrt_ratio_at_tick(tick_lower)
    sqrt_b = get_sqrt_ratio_at_tick(tick_upper)
    if tick < tick_lower:
        return get_amount0_delta(sqrt_a, sqrt_b, liquidity, False), 0
    if tick < tick_upper:
        return (
            get_amount0_delta(sqrt_price_x96, sqrt_b, liquidity, False),
            get_amount1_delta(sqrt_a, sqrt_price_x96, liquidity, False),
        )
    return 0, get_amount1_delta(sqrt_a, sqrt_b, liquidity, False)


def in_range(tick: int, tick_lower: int, tick_upper: int) -> bool:
    """The pool's active-liquidity rule: a position earns fees iff tickLower <= tick < tickUpper."""
    return tick_lower <= tick < tick_upper


def fee_growth_inside(
    tick_current: int,
    tick_lower: int,
    tick_upper: int,
    lower_outside: int,
    upper_outside: int,
    global_growth: int,
) -> int:
    """Tick.getFeeGrowthInside for one token; all subtraction modulo 2^256, as in the contract."""
    below = (
        lower_outside if tick_current >= tick_lower else (global_growth - lower_outside) % UINT256
    )
    above = (
        upper_outside if tick_current < tick_upper else (global_growth - upper_outside) % UINT256
    )
    return (global_growth - below - above) % UINT256


def fees_owed(liquidity: int, inside_now: int, inside_last: int) -> int:
    """PositionValue._fees / Position.update: floor(L * (inside - last mod 2^256) / 2^128)."""
    return mul_div((inside_now - inside_last) % UINT256, liquidity, Q128)


def encode_sqrt_ratio_x96(amount1: int, amount0: int) -> int:
    """The SDK's encodeSqrtRatioX96: floor(sqrt(amount1 / amount0) * 2^96)."""
    from math import isqrt

    return isqrt((amount1 << 192) // amount0)
