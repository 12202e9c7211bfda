"""Price routing by value: a hop's pool is the deepest in USD near its price, not the one with
the most raw liquidity, and pools thinner than the chain's threshold price nothing.

The pools are real `PoolReplica`s (the port of UniswapV3Pool, exact to the wei against the
chain in test_replica.py and the exactness tests) with positions minted through it, so their
±2% depth is walked over real ticks; that walk is checked against the pool's own swap loop.
"""

from __future__ import annotations

from fractions import Fraction
from math import isqrt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.uniswap_v3.math import (
    MAX_TICK,
    MIN_TICK,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
)
from protocols.uniswap_v3.replica import PoolReplica
from protocols.uniswap_v3.valuation import depth_band, depth_usd, pool_depth, route_prices
from schemas.positions import PoolSnapshot, TokenPrice

USDC, DAI, WETH, TKN = (f"0x{n:040x}" for n in (1, 2, 3, 4))
DECIMALS = {USDC: 6, DAI: 18, WETH: 18, TKN: 18}
INT256_MAX = (1 << 255) - 1


def sqrt_price(token0: str, token1: str, usd0: Fraction, usd1: Fraction) -> int:
    """Q64.96 sqrt of raw token1 per raw token0 for these USD prices."""
    ratio = usd0 / 10 ** DECIMALS[token0] / (usd1 / 10 ** DECIMALS[token1])
    return isqrt(ratio.numerator * (1 << 192) // ratio.denominator)


def make_pool(
    token0: str,
    token1: str,
    usd0: Fraction,
    usd1: Fraction,
    ranges: list[tuple[int, int, int]],
    spacing: int = 60,
) -> PoolReplica:
    """A pool at these prices with positions (tickLower, tickUpper, liquidity) minted; ticks
    beyond the spacing-aligned limits are clamped to them (MIN_TICK, MAX_TICK: full range)."""
    price = sqrt_price(token0, token1, usd0, usd1)
    replica = PoolReplica(3000, spacing)
    replica.initialize(price, get_tick_at_sqrt_ratio(price))
    floor, ceiling = (MIN_TICK // spacing + 1) * spacing, MAX_TICK // spacing * spacing
    for lower, upper, liquidity in ranges:
        replica.mint(max(lower, floor), min(upper, ceiling), liquidity)
    return replica


def full_range(amount0: int, amount1: int) -> tuple[int, int, int]:
    """A full-range position holding about these amounts (L = sqrt(x * y))."""
    return MIN_TICK, MAX_TICK, isqrt(amount0 * amount1)


def snapshot(address: str, replica: PoolReplica) -> PoolSnapshot:
    return PoolSnapshot(address, replica.sqrt_price_x96, replica.tick, replica.liquidity)


def route(
    market: dict[str, tuple[str, str, PoolReplica]], min_depth_usd: Fraction | int
) -> dict[str, TokenPrice]:
    pools = {a: (t0, t1, DECIMALS[t0], DECIMALS[t1]) for a, (t0, t1, _) in market.items()}
    snaps = {a: snapshot(a, r) for a, (_, _, r) in market.items()}
    depths = {a: pool_depth(snaps[a], r) for a, (_, _, r) in market.items()}
    return route_prices(pools, snaps, (USDC, DAI), depths=depths, min_depth_usd=min_depth_usd)


def usd_of(market: dict[str, tuple[str, str, PoolReplica]], address: str) -> Fraction:
    """The pool's depth in USD, its token0 at its true price (the pool's price converts the
    other side)."""
    t0, _, replica = market[address]
    amounts = pool_depth(snapshot(address, replica), replica)
    true = {USDC: Fraction(1), DAI: Fraction(1), WETH: Fraction(3000), TKN: Fraction(2)}
    return depth_usd(amounts, replica.sqrt_price_x96, 0, true[t0] / 10 ** DECIMALS[t0])


# A $10M WETH/USDC pool (token0 USDC) and a $100 WETH/DAI pool at a wrong price (30 DAI per
# WETH) whose raw L is 100 times larger: 18 decimals on both sides inflate it.
DEEP, THIN = "0x" + "d0" * 20, "0x" + "70" * 20


def deep_and_thin() -> dict[str, tuple[str, str, PoolReplica]]:
    deep = make_pool(
        USDC, WETH, Fraction(1), Fraction(3000), [full_range(5_000_000 * 10**6, 1_667 * 10**18)]
    )
    thin = make_pool(
        DAI, WETH, Fraction(1), Fraction(30), [full_range(50 * 10**18, 10**18 * 50 // 30)]
    )
    return {DEEP: (USDC, WETH, deep), THIN: (DAI, WETH, thin)}


def test_a_thin_pool_with_huge_liquidity_does_not_set_the_price() -> None:
    market = deep_and_thin()
    deep, thin = market[DEEP][2], market[THIN][2]
    # What the old rule compared: the thin pool has far more raw in-range liquidity.
    assert thin.liquidity > 50 * deep.liquidity
    # Full range, each holds about 1% of either side within ±2% of its price.
    assert usd_of(market, THIN) < 2
    assert 90_000 < usd_of(market, DEEP) < 110_000

    prices = route(market, min_depth_usd=0)
    weth = prices[WETH]
    assert weth.source == DEEP
    assert weth.usd == pytest.approx(3000, rel=1e-9)
    # And the same without the tick walk (depths from the snapshots' in-range liquidity).
    pools = {a: (t0, t1, DECIMALS[t0], DECIMALS[t1]) for a, (t0, t1, _) in market.items()}
    snaps = {a: snapshot(a, r) for a, (_, _, r) in market.items()}
    assert route_prices(pools, snaps, (USDC, DAI))[WETH].source == DEEP


def test_the_threshold_excludes_a_thin_pool_and_a_deeper_route_takes_over() -> None:
    # TKN ($2) is one hop from USDC through a $1,000 pool, and two hops through a deep WETH pool.
    near = "0x" + "a1" * 20
    far = "0x" + "a2" * 20
    market = deep_and_thin()
    market[near] = (
        USDC,
        TKN,
        make_pool(USDC, TKN, Fraction(1), Fraction(1, 2), [full_range(500 * 10**6, 250 * 10**18)]),
    )
    market[far] = (
        WETH,
        TKN,
        make_pool(
            WETH,
            TKN,
            Fraction(3000),
            Fraction(2),
            [full_range(1_000 * 10**18, 1_500_000 * 10**18)],
        ),
    )
    near_depth = usd_of(market, near)
    assert 0 < near_depth < 10_000

    trusting = route(market, min_depth_usd=0)
    assert trusting[TKN].source == near and trusting[TKN].hops == 1
    assert trusting[TKN].usd == pytest.approx(0.5, rel=1e-9)

    guarded = route(market, min_depth_usd=10_000)
    assert guarded[TKN].source == far and guarded[TKN].hops == 2
    assert guarded[TKN].usd == pytest.approx(2, rel=1e-9)
    assert guarded[WETH].source == DEEP

    # Without the far pool, the thin one alone leaves TKN unpriced (never a price of 0).
    del market[far]
    assert TKN not in route(market, min_depth_usd=10_000)

    # The threshold is inclusive, on the exact depth the route measured (USDC, token0 here, is
    # $1 per 10^6 base units).
    replica = market[near][2]
    snap = snapshot(near, replica)
    amounts = pool_depth(snap, replica)
    exact = depth_usd(amounts, snap.sqrt_price_x96, 0, Fraction(1, 10**6))
    assert TKN in route(market, min_depth_usd=exact)
    assert TKN not in route(market, min_depth_usd=exact + Fraction(1, 10**9))


def test_depth_counts_the_thinner_side_twice() -> None:
    # One-sided liquidity just above the price: all token0, nothing to sell into on the way
    # down. Counting both sides at the pool's price would call it deep; it prices nothing.
    replica = make_pool(USDC, TKN, Fraction(1), Fraction(1, 2), [])
    tick = replica.tick // 60 * 60
    replica.mint(tick + 60, tick + 120, 10**24)
    amounts = pool_depth(snapshot("0x" + "b1" * 20, replica), replica)
    assert amounts[0] > 0 and amounts[1] == 0
    assert depth_usd(amounts, replica.sqrt_price_x96, 0, Fraction(1, 10**6)) == 0
    assert depth_usd(amounts, replica.sqrt_price_x96, 1, Fraction(2, 10**18)) == 0


@settings(max_examples=80, deadline=None)
@given(
    spacing=st.sampled_from([1, 10, 60, 200]),
    price_tick=st.integers(-200_000, 200_000),
    positions=st.lists(
        st.tuples(st.integers(-300, 300), st.integers(1, 50), st.integers(1, 10**24)),
        min_size=0,
        max_size=8,
    ),
)
def test_band_reserves_equal_what_the_pools_swap_takes_out(
    spacing: int, price_tick: int, positions: list[tuple[int, int, int]]
) -> None:
    """`reserves_within` against the pool's own swap loop: a swap to each band edge with an
    unbounded input pays out exactly the reserves the walk counts (each step rounded down)."""
    replica = PoolReplica(3000, spacing)
    price = get_sqrt_ratio_at_tick(price_tick) + 12345
    replica.initialize(price, get_tick_at_sqrt_ratio(price))
    base = replica.tick // spacing * spacing
    for offset, width, liquidity in positions:
        lower = (base + offset) // spacing * spacing  # within or around the ±198-tick band
        replica.mint(lower, lower + width * spacing, liquidity)
    lower_edge, upper_edge = depth_band(replica.sqrt_price_x96)
    amount0, amount1 = replica.reserves_within(lower_edge, upper_edge)

    down = replica.copy().swap(True, INT256_MAX, lower_edge)
    up = replica.copy().swap(False, INT256_MAX, upper_edge)
    assert (amount0, amount1) == (-up.amount0, -down.amount1)
    # The snapshot path agrees when the replica matches it.
    snap = snapshot("0x" + "c1" * 20, replica)
    assert pool_depth(snap, replica) == (amount0, amount1)
