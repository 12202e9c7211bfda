"""Position valuation and pool depth (protocols/uniswap_v3/valuation.py) against values known
without the code under test: full-range and half-range positions whose bounds are TickMath's
own constants (MIN/MAX_SQRT_RATIO, and 2^96 at tick 0), where the amounts follow from the
whitepaper's formulas (6.29, 6.30) in exact rationals, and the ±2% depth band against
1 - 1/sqrt(1.02) and 1 - sqrt(0.98) at 40 digits.
"""

from __future__ import annotations

from decimal import Decimal, getcontext
from fractions import Fraction
from math import floor

import pytest

from protocols.uniswap_v3.math import MAX_SQRT_RATIO, MAX_TICK, MIN_SQRT_RATIO, MIN_TICK
from protocols.uniswap_v3.replica import PoolReplica
from protocols.uniswap_v3.valuation import depth_band, pool_depth, pool_rate, value_position
from schemas.positions import PoolSnapshot, PositionValue, TokenPrice, UniswapPosition

Q96 = 2**96
L = 10**18
E18 = 10**18
TOKEN0, TOKEN1 = "0x" + "a0" * 20, "0x" + "b0" * 20


def amount0(liquidity: int, sqrt_a: int, sqrt_b: int) -> int:
    """Whitepaper 6.30: L * (sqrt_b - sqrt_a) / (sqrt_a * sqrt_b), prices as Q64.96, floored."""
    return floor(Fraction(liquidity * Q96 * (sqrt_b - sqrt_a), sqrt_a * sqrt_b))


def amount1(liquidity: int, sqrt_a: int, sqrt_b: int) -> int:
    """Whitepaper 6.29: L * (sqrt_b - sqrt_a), floored."""
    return floor(Fraction(liquidity * (sqrt_b - sqrt_a), Q96))


def position(
    lower: int,
    upper: int,
    liquidity: int = L,
    deposited: tuple[int, int] = (0, 0),
    withdrawn: tuple[int, int] = (0, 0),
) -> UniswapPosition:
    return UniswapPosition(
        1,
        "1:0xnpm:1",
        "0xnpm",
        1,
        "0xpool",
        TOKEN0,
        TOKEN1,
        "A",
        "B",
        18,
        18,
        3000,
        "0xme",
        lower,
        upper,
        liquidity=liquidity,
        deposited0=deposited[0],
        deposited1=deposited[1],
        withdrawn0=withdrawn[0],
        withdrawn1=withdrawn[1],
    )


def price(token: str, usd: float) -> TokenPrice:
    return TokenPrice(token, usd, "usd", 0)


def test_full_range_amounts_at_price_one_and_four() -> None:
    # At 2^96 (price 1) a full-range position holds L of each, less the rounding down.
    at_one = amount0(L, Q96, MAX_SQRT_RATIO), amount1(L, MIN_SQRT_RATIO, Q96)
    assert at_one == (L - 1, L - 1)
    full = position(MIN_TICK, MAX_TICK, deposited=(L - 1, L - 1))
    v = value_position(
        full, PoolSnapshot("0xpool", Q96, 0, L), price(TOKEN0, 1.0), price(TOKEN1, 1.0)
    )
    assert (v.amount0, v.amount1, v.in_range, v.tick) == (L - 1, L - 1, True, 0)
    # What went in is what it holds: no impermanent loss.
    assert v.value_usd == v.hodl_usd == pytest.approx(2.0, rel=1e-15)
    assert (v.il_usd, v.il_pct) == (0.0, 0.0)
    # At price 4 (sqrt 2, tick floor(log_1.0001 4) = 13863): L/2 token0 and 2L token1.
    at_four = value_position(
        full, PoolSnapshot("0xpool", 2 * Q96, 13863, L), price(TOKEN0, 4.0), price(TOKEN1, 1.0)
    )
    assert (at_four.amount0, at_four.amount1) == (
        amount0(L, 2 * Q96, MAX_SQRT_RATIO),
        amount1(L, MIN_SQRT_RATIO, 2 * Q96),
    )
    assert (at_four.amount0, at_four.amount1) == (L // 2 - 1, 2 * L - 1)
    # Held: 1 token0 (4 USD) + 1 token1; the position: 0.5 * 4 + 2 = 4. IL is 2*sqrt(4)/5 - 1.
    assert at_four.value_usd == pytest.approx(4.0, rel=1e-15)
    assert at_four.hodl_usd == pytest.approx(5.0, rel=1e-15)
    assert at_four.il_usd == pytest.approx(-1.0, rel=1e-15)
    assert at_four.il_pct == pytest.approx(-0.2, rel=1e-15)
    assert (at_four.price0_usd, at_four.price1_usd) == (4.0, 1.0)


def test_half_ranges_on_either_side_of_tick_zero() -> None:
    below, above = position(MIN_TICK, 0), position(0, MAX_TICK)
    at_zero = PoolSnapshot("0xpool", Q96, 0, L)
    # The pool's rule: lower <= tick < upper. At tick 0 [0, MAX) is in range, [MIN, 0) is not.
    v_above = value_position(above, at_zero, None, None)
    assert (v_above.amount0, v_above.amount1, v_above.in_range) == (L - 1, 0, True)
    v_below = value_position(below, at_zero, None, None)
    assert (v_below.amount0, v_below.amount1, v_below.in_range) == (0, L - 1, False)
    # One tick lower, [0, MAX) is out of range and all token0, whatever the price.
    just_below = PoolSnapshot("0xpool", Q96 - 1, -1, L)
    v = value_position(above, just_below, None, None)
    assert (v.amount0, v.amount1, v.in_range) == (amount0(L, Q96, MAX_SQRT_RATIO), 0, False)
    # Unpriced tokens: amounts, but no USD figure.
    assert (v.value_usd, v.hodl_usd, v.il_usd, v.il_pct, v.price0_usd) == (None,) * 5


def test_fees_owed_add_to_value_but_not_to_il() -> None:
    full = position(MIN_TICK, MAX_TICK, deposited=(L - 1, L - 1))
    pool = PoolSnapshot("0xpool", Q96, 0, L)
    p0, p1 = price(TOKEN0, 4.0), price(TOKEN1, 1.0)
    bare = value_position(full, pool, p0, p1)
    owed = value_position(full, pool, p0, p1, (E18 // 4, E18 // 2))
    assert (owed.uncollected0, owed.uncollected1, owed.uncollected_usd) == (E18 // 4, E18 // 2, 1.5)
    assert bare.value_usd is not None and owed.value_usd == bare.value_usd + 1.5
    assert (owed.il_usd, owed.hodl_usd) == (bare.il_usd, bare.hodl_usd)
    assert (bare.uncollected0, bare.uncollected_usd) == (None, None)


def test_withdrawn_principal_leaves_the_held_amount() -> None:
    half = position(
        MIN_TICK,
        MAX_TICK,
        liquidity=L // 2,
        deposited=(E18, E18),
        withdrawn=(E18 // 2, E18 // 2),
    )
    v = value_position(
        half, PoolSnapshot("0xpool", Q96, 0, L), price(TOKEN0, 2.0), price(TOKEN1, 1.0)
    )
    assert v.hodl_usd == 1.5  # half a token of each at 2 and 1


def test_no_pool_state_and_empty_positions() -> None:
    full = position(MIN_TICK, MAX_TICK)
    nothing = PositionValue(0, 0, False, 0, None, None, None, None, None, None)
    assert value_position(full, None, None, None) == nothing
    assert value_position(full, PoolSnapshot("0xpool", 0, 0, 0), None, None) == nothing
    emptied = value_position(
        position(MIN_TICK, MAX_TICK, liquidity=0), PoolSnapshot("0xpool", Q96, 0, L), None, None
    )
    assert (emptied.amount0, emptied.amount1, emptied.in_range) == (0, 0, False)


def test_pool_rate_is_exact() -> None:
    # Whole token1 per whole token0: the raw price (sqrt squared) scaled by the decimals.
    assert pool_rate(2 * Q96, 18, 18) == 4
    assert pool_rate(2 * Q96, 18, 6) == 4 * 10**12
    assert pool_rate(Q96, 6, 18) == Fraction(1, 10**12)
    assert pool_rate(Q96 + 1, 18, 18) == Fraction((Q96 + 1) ** 2, Q96**2)


def test_the_depth_band_is_two_percent_of_the_price_floored() -> None:
    lower, upper = depth_band(Q96)
    square = Q96 * Q96
    assert lower**2 <= square * 98 // 100 < (lower + 1) ** 2
    assert upper**2 <= square * 102 // 100 < (upper + 1) ** 2
    # Clamped to TickMath's range at its ends.
    assert depth_band(MIN_SQRT_RATIO)[0] == MIN_SQRT_RATIO
    assert depth_band(MAX_SQRT_RATIO - 1)[1] == MAX_SQRT_RATIO


def test_pool_depth_of_liquidity_spanning_the_band() -> None:
    getcontext().prec = 40
    snap = PoolSnapshot("0xpool", Q96, 0, L)
    depth = pool_depth(snap)
    # Token0 from price 1 up to 1.02, token1 from 0.98 up to 1, for L = 1e18.
    up = Decimal(L) * (1 - 1 / Decimal("1.02").sqrt())
    down = Decimal(L) * (1 - Decimal("0.98").sqrt())
    assert abs(depth[0] - up) < 2 and abs(depth[1] - down) < 2
    assert depth == (9852457023325690, 10050506338833465)
    # A replica of one full-range position walks to the same amounts.
    replica = PoolReplica(fee=3000, tick_spacing=60)
    replica.initialize(Q96, 0)
    replica.mint(-887220, 887220, L, owner="0x" + "01" * 20)
    assert pool_depth(snap, replica) == depth


def test_pool_depth_counts_only_the_liquidity_a_replica_holds_in_the_band() -> None:
    # [-60, 60] is about ±0.6%: all of it lies within ±2%, and nothing else is there.
    replica = PoolReplica(fee=3000, tick_spacing=60)
    replica.initialize(Q96, 0)
    replica.mint(-60, 60, L, owner="0x" + "01" * 20)
    snap = PoolSnapshot("0xpool", Q96, 0, L)
    held = value_position(position(-60, 60), snap, None, None)
    assert pool_depth(snap, replica) == (held.amount0, held.amount1)
    # Without the replica the same in-range liquidity is taken to span the band: deeper.
    assert pool_depth(snap) == (9852457023325690, 10050506338833465)
    # A replica that disagrees with the snapshot (a log it could not apply) is not used.
    moved = PoolSnapshot("0xpool", Q96, 0, 2 * L)
    assert pool_depth(moved, replica) == pool_depth(moved) == (19704914046651381, 20101012677666931)
    assert pool_depth(PoolSnapshot("0xpool", Q96, 0, 0)) == (0, 0)
    assert pool_depth(PoolSnapshot("0xpool", 0, 0, L)) == (0, 0)
