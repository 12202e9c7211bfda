"""Uniswap V3 math against the published test vectors (v3-core and v3-sdk test suites)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.uniswap_v3 import math as m

# v3-sdk src/entities/position.test.ts: DAI/USDC 0.01% pool at encodeSqrtRatioX96(100e6, 100e18).
SQRT_START = m.encode_sqrt_ratio_x96(100 * 10**6, 100 * 10**18)
TICK_START = m.get_tick_at_sqrt_ratio(SQRT_START)
SPACING = 10


def nearest_usable_tick(tick: int, spacing: int) -> int:
    # The SDK's Math.round: halves round up (towards +infinity).
    rounded = math.floor(tick / spacing + 0.5) * spacing
    return max(min(rounded, m.MAX_TICK), m.MIN_TICK)


NEAR = nearest_usable_tick(TICK_START, SPACING)


def amounts(lower: int, upper: int, liquidity: int) -> tuple[int, int]:
    return m.amounts_for_liquidity(
        SQRT_START, m.get_sqrt_ratio_at_tick(lower), m.get_sqrt_ratio_at_tick(upper), liquidity
    )


def test_sdk_in_range_amounts() -> None:
    assert amounts(NEAR - 2 * SPACING, NEAR + 2 * SPACING, 100 * 10**18) == (
        120054069145287995769396,
        79831926242,
    )


def test_sdk_price_above_range_is_all_token0() -> None:
    assert amounts(NEAR + SPACING, NEAR + 2 * SPACING, 100 * 10**12) == (49949961958869841, 0)


def test_sdk_price_below_range_is_all_token1() -> None:
    assert amounts(NEAR - 2 * SPACING, NEAR - SPACING, 100 * 10**18) == (0, 49970077052)


def test_sdk_mint_amounts_round_up() -> None:
    lo, hi = NEAR - 2 * SPACING, NEAR + 2 * SPACING
    a, b = m.get_sqrt_ratio_at_tick(lo), m.get_sqrt_ratio_at_tick(hi)
    liquidity = 100 * 10**18
    assert m.get_amount0_delta(SQRT_START, b, liquidity, True) == 120054069145287995769397
    assert m.get_amount1_delta(a, SQRT_START, liquidity, True) == 79831926243


@pytest.mark.parametrize(
    ("tick", "ratio"),
    [
        # v3-core test/TickMath.spec.ts
        (m.MIN_TICK, 4295128739),
        (m.MIN_TICK + 1, 4295343490),
        (m.MAX_TICK - 1, 1461373636630004318706518188784493106690254656249),
        (m.MAX_TICK, 1461446703485210103287273052203988822378723970342),
        (0, 1 << 96),
    ],
)
def test_tickmath_spec_vectors(tick: int, ratio: int) -> None:
    assert m.get_sqrt_ratio_at_tick(tick) == ratio


def test_tickmath_rejects_out_of_range() -> None:
    with pytest.raises(m.MathError):
        m.get_sqrt_ratio_at_tick(m.MAX_TICK + 1)
    with pytest.raises(m.MathError):
        m.get_tick_at_sqrt_ratio(m.MAX_SQRT_RATIO)


def test_tick_at_sqrt_ratio_spec_vectors() -> None:
    assert m.get_tick_at_sqrt_ratio(m.MIN_SQRT_RATIO) == m.MIN_TICK
    assert m.get_tick_at_sqrt_ratio(4295343490) == m.MIN_TICK + 1
    assert m.get_tick_at_sqrt_ratio(1461373636630004318706518188784493106690254656249) == (
        m.MAX_TICK - 1
    )
    assert m.get_tick_at_sqrt_ratio(m.MAX_SQRT_RATIO - 1) == m.MAX_TICK - 1


@given(st.integers(min_value=m.MIN_TICK, max_value=m.MAX_TICK - 1))
def test_tick_round_trip(tick: int) -> None:
    ratio = m.get_sqrt_ratio_at_tick(tick)
    assert m.get_tick_at_sqrt_ratio(ratio) == tick
    assert m.get_sqrt_ratio_at_tick(tick + 1) > ratio


# v3-sdk src/utils/tickLibrary.test.ts and position.test.ts (getTokensOwed).
def test_fee_growth_inside_uninitialised_ticks_tick_inside() -> None:
    assert m.fee_growth_inside(0, -2, 2, 0, 0, 15) == 15


def test_fee_growth_inside_tick_above_and_below() -> None:
    assert m.fee_growth_inside(4, -2, 2, 0, 0, 15) == 0
    assert m.fee_growth_inside(-4, -2, 2, 0, 0, 15) == 0


def test_fee_growth_inside_one_side() -> None:
    assert m.fee_growth_inside(0, -2, 2, 2, 3, 15) == 10


def test_fee_growth_inside_wraps_modulo_2_256() -> None:
    # global 2^128 with lower outside 2^127 -> 2^127 inside when the tick is inside.
    assert m.fee_growth_inside(0, -2, 2, 1 << 127, 0, 1 << 128) == 1 << 127
    # Subtractions that underflow wrap as the contract's unchecked arithmetic does.
    assert m.fee_growth_inside(0, -2, 2, 5, 10, 3) == (3 - 5 - 10) % (1 << 256)


def test_fees_owed() -> None:
    assert m.fees_owed(1, 1 << 128, 0) == 1
    assert m.fees_owed(2, 1 << 128, 0) == 2
    # A position whose "last" checkpoint is ahead (negative-looking) still owes the wrapped diff.
    assert m.fees_owed(1, 0, (1 << 256) - (1 << 128)) == 1


def test_mul_div_matches_fullmath() -> None:
    assert m.mul_div(m.Q128, 50 * m.Q128 // 100, 150 * m.Q128 // 100) == m.Q128 // 3
    # v3-core test/FullMath.spec.ts
    q = m.Q128
    assert m.mul_div_rounding_up(q, 50 * q // 100, 150 * q // 100) == q // 3 + 1
    assert m.mul_div(m.MAX_UINT256, m.MAX_UINT256, m.MAX_UINT256) == m.MAX_UINT256
    assert m.mul_div_rounding_up(m.MAX_UINT256, m.MAX_UINT256, m.MAX_UINT256) == m.MAX_UINT256
    with pytest.raises(m.MathError):
        m.mul_div(m.MAX_UINT256, m.MAX_UINT256, 1)


@given(
    st.integers(min_value=-887220, max_value=887220),
    st.integers(min_value=1, max_value=2000),
    st.integers(min_value=0, max_value=(1 << 128) - 1),
    st.integers(min_value=-887272, max_value=887271),
)
def test_position_amounts_agree_with_liquidity_amounts(
    lower: int, width: int, liquidity: int, tick: int
) -> None:
    upper = min(lower + width, m.MAX_TICK)
    if upper <= lower:
        return
    sqrt_p = m.get_sqrt_ratio_at_tick(tick)
    a, b = m.get_sqrt_ratio_at_tick(lower), m.get_sqrt_ratio_at_tick(upper)
    assert m.position_amounts(sqrt_p, tick, lower, upper, liquidity) == m.amounts_for_liquidity(
        sqrt_p, a, b, liquidity
    )
