"""Incremental routing (`PriceRouter`) gives exactly `route_prices`' answer after every change.

Random pool graphs over a few tokens (so routes share tokens, compete and tie), then random
sequences of what blocks do: a pool's price moves, its depth moves (across the threshold both
ways), a pool is uninitialised or initialised, a new pool appears, an oracle root appears,
moves, goes stale or disappears. After every step the router's dict must equal the reference
walk's (every token's float, source pool, hops and staleness), and the router must survive a
pickle round trip (the market stage's state is pickled for undo and recovery).
"""

from __future__ import annotations

import pickle
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.uniswap_v3.router import PriceRouter, RoutePool
from protocols.uniswap_v3.valuation import route_prices
from schemas.positions import PoolSnapshot, TokenPrice

TOKENS = [f"0x{n:040x}" for n in range(1, 9)]
USD = (TOKENS[0], TOKENS[1])
Q96 = 1 << 96
# Few distinct prices and depths, so equal depths (ties) and shared thresholds happen often.
PRICES = (0, Q96, Q96 * 3 // 2, Q96 // 2, Q96 * 7, Q96 * 10**6, Q96 // 10**6)
AMOUNTS = ((0, 0), (10**6, 10**6), (10**18, 10**18), (10**18, 10**6), (10**6, 10**18), (5, 7))
VALUES = (Fraction(1), Fraction(2000), Fraction(1, 3), Fraction(10**9))
THRESHOLDS = (0, 1, Fraction(1, 10**6), 10**6)


def pool_address(n: int) -> str:
    return f"0x{0xA000 + n:040x}"


pool_st = st.tuples(
    st.integers(0, len(TOKENS) - 1),
    st.integers(0, len(TOKENS) - 1),
    st.sampled_from(PRICES),
    st.sampled_from(AMOUNTS),
)
step_st = st.one_of(
    st.tuples(st.just("price"), st.integers(0, 99), st.sampled_from(PRICES)),
    st.tuples(st.just("depth"), st.integers(0, 99), st.sampled_from(AMOUNTS)),
    st.tuples(st.just("new"), pool_st),
    st.tuples(
        st.just("anchor"),
        st.integers(0, len(TOKENS) - 1),
        st.none() | st.sampled_from(VALUES),
        st.sampled_from(("", "feed unreadable")),
    ),
    st.tuples(st.just("batch"), st.lists(st.tuples(st.integers(0, 99), pool_st), max_size=4)),
)


class Market:
    """The inputs of both routers, kept as the market stage keeps them."""

    def __init__(self, decimals: list[int]) -> None:
        self.decimals = dict(zip(TOKENS, decimals, strict=True))
        self.table: dict[str, tuple[str, str, int, int]] = {}
        self.states: dict[str, PoolSnapshot] = {}
        self.depths: dict[str, tuple[int, int]] = {}
        self.anchors: dict[str, tuple[Fraction, TokenPrice]] = {}

    def add(self, a: int, b: int, sqrt_price: int, amounts: tuple[int, int]) -> str:
        if a == b:
            b = (a + 1) % len(TOKENS)
        token0, token1 = sorted((TOKENS[a], TOKENS[b]))
        address = pool_address(len(self.table))
        self.table[address] = (token0, token1, self.decimals[token0], self.decimals[token1])
        self.states[address] = PoolSnapshot(address, sqrt_price, 0, 1)
        self.depths[address] = amounts
        return address

    def entry(self, address: str) -> RoutePool:
        return (*self.table[address], self.states[address].sqrt_price_x96, self.depths[address])


@settings(max_examples=300, deadline=None)
@given(
    decimals=st.lists(st.sampled_from((6, 8, 18)), min_size=len(TOKENS), max_size=len(TOKENS)),
    initial=st.lists(pool_st, max_size=14),
    threshold=st.sampled_from(THRESHOLDS),
    steps=st.lists(step_st, max_size=12),
)
def test_incremental_routing_equals_route_prices_after_every_change(
    decimals: list[int],
    initial: list[tuple[int, int, int, tuple[int, int]]],
    threshold: Fraction | int,
    steps: list[tuple],
) -> None:
    market = Market(decimals)
    for a, b, sqrt_price, amounts in initial:
        market.add(a, b, sqrt_price, amounts)
    router = PriceRouter()

    def check(changed: set[str]) -> None:
        nonlocal router
        got = router.update(
            {p: market.entry(p) for p in sorted(changed)}, USD, market.anchors, threshold
        )
        want = route_prices(
            market.table,
            market.states,
            USD,
            market.anchors,
            depths=market.depths,
            min_depth_usd=threshold,
        )
        assert got == want
        router = pickle.loads(pickle.dumps(router))

    check(set(market.table))
    for step in steps:
        changed: set[str] = set()
        kind = step[0]
        if kind in ("price", "depth") and market.table:
            address = pool_address(step[1] % len(market.table))
            if kind == "price":
                market.states[address] = PoolSnapshot(address, step[2], 0, 1)
            else:
                market.depths[address] = step[2]
            changed.add(address)
        elif kind == "new":
            changed.add(market.add(*step[1]))
        elif kind == "anchor":
            token, value, stale = TOKENS[step[1]], step[2], step[3]
            if value is None:
                market.anchors.pop(token, None)
            else:
                market.anchors[token] = (
                    value,
                    TokenPrice(token, float(value), "feed", 0, 7, stale),
                )
        elif kind == "batch":
            # Several pools in one block, some new, some moved.
            for index, (a, b, sqrt_price, amounts) in step[1]:
                if market.table and index % 2:
                    address = pool_address(index % len(market.table))
                    market.states[address] = PoolSnapshot(address, sqrt_price, 0, 1)
                    market.depths[address] = amounts
                else:
                    address = market.add(a, b, sqrt_price, amounts)
                changed.add(address)
        check(changed)
    assert router.full_walks == 1  # level changes never needed a full walk


def test_a_new_threshold_or_usd_set_walks_again() -> None:
    market = Market([6, 18, 18, 18, 6, 8, 18, 18])
    deep = market.add(0, 2, Q96 * 10**6, (10**18, 10**18))
    market.add(2, 3, Q96, (10**6, 10**6))
    router = PriceRouter()
    router.update({p: market.entry(p) for p in market.table}, USD, None, 0)
    for usd, threshold in ((USD, 10**6), (USD[:1], 10**6), (USD[:1], 0)):
        want = route_prices(
            market.table, market.states, usd, depths=market.depths, min_depth_usd=threshold
        )
        assert router.update({}, usd, None, threshold) == want
    assert router.full_walks == 4
    assert router.prices[TOKENS[2]].source == deep


def route_both(market: Market, router: PriceRouter, changed: set[str]) -> dict[str, TokenPrice]:
    got = router.update({p: market.entry(p) for p in sorted(changed)}, USD[:1], None, 1)
    want = route_prices(market.table, market.states, USD[:1], depths=market.depths, min_depth_usd=1)
    assert got == want
    return got


# 18-decimal tokens at one USD each: (a, a) at price 1 is 2a/1e18 USD deep; the threshold is $1.
DEEP, MEDIUM, SHALLOW = (10**20, 10**20), (10**19, 10**19), (10**15, 10**15)
U, A, P, X, Y = range(5)


def test_a_token_that_lost_its_route_is_found_again_further_out() -> None:
    """X loses its one-hop pool; its three-hop route goes through a token whose own route did
    not change, so only the lost-token rule re-decides X at level 3."""
    market = Market([18] * len(TOKENS))
    ux = market.add(U, X, Q96, DEEP)
    market.add(U, A, Q96, DEEP)
    market.add(A, Y, Q96, DEEP)
    yx = market.add(Y, X, Q96, MEDIUM)
    router = PriceRouter()
    assert route_both(market, router, set(market.table))[TOKENS[X]].hops == 1
    market.depths[ux] = SHALLOW
    prices = route_both(market, router, {ux})
    assert (prices[TOKENS[X]].hops, prices[TOKENS[X]].source) == (3, yx)


def test_a_token_moving_nearer_the_root_re_decides_what_it_priced_where_it_was() -> None:
    """P moves from level 2 to 1 at a far lower price, so the pool that priced X from it is
    now too thin: X, decided at level 3 before, must be re-decided there and lose its price."""
    market = Market([18] * len(TOKENS))
    market.add(U, A, Q96, DEEP)
    market.add(A, P, Q96, DEEP)
    market.add(P, X, Q96, DEEP)
    router = PriceRouter()
    assert route_both(market, router, set(market.table))[TOKENS[X]].hops == 3
    # token1 (P) per token0 (U) = 1e6 raw: P is worth a millionth of a dollar, $200 deep in U.
    direct = market.add(U, P, Q96 * 1000, (10**20, 10**26))
    prices = route_both(market, router, {direct})
    assert prices[TOKENS[P]].hops == 1
    assert TOKENS[X] not in prices
