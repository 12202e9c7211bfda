"""Value a position: exact token amounts, in-range flag, USD value and impermanent loss (pure).

IL follows the Revert convention: the position's value minus the value, at the same prices, of
holding what went in (deposits minus principal withdrawn), fees excluded. Withdrawing does not
move IL, and a position that was never touched by price has IL 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from math import isqrt

from protocols.uniswap_v3.math import (
    MAX_SQRT_RATIO,
    MIN_SQRT_RATIO,
    Q192,
    get_amount0_delta,
    get_amount1_delta,
    in_range,
    position_amounts,
)
from protocols.uniswap_v3.replica import PoolReplica
from schemas.positions import PoolSnapshot, PositionValue, TokenPrice, UniswapPosition


def usd(amount: int, decimals: int, price: TokenPrice | None) -> float | None:
    if price is None:
        return None
    return amount * price.usd / 10**decimals


def value_position(
    pos: UniswapPosition,
    pool: PoolSnapshot | None,
    price0: TokenPrice | None,
    price1: TokenPrice | None,
    uncollected: tuple[int, int] | None = None,
) -> PositionValue:
    """Amounts, range, USD value (principal plus what collect would pay) and fee-free IL."""
    if pool is None or pool.sqrt_price_x96 == 0:
        return PositionValue(0, 0, False, 0, None, None, None, None, None, None)
    amount0, amount1 = position_amounts(
        pool.sqrt_price_x96, pool.tick, pos.tick_lower, pos.tick_upper, pos.liquidity
    )
    v0, v1 = usd(amount0, pos.decimals0, price0), usd(amount1, pos.decimals1, price1)
    h0 = usd(pos.deposited0 - pos.withdrawn0, pos.decimals0, price0)
    h1 = usd(pos.deposited1 - pos.withdrawn1, pos.decimals1, price1)
    principal = None if v0 is None or v1 is None else v0 + v1
    hodl = None if h0 is None or h1 is None else h0 + h1
    il = None if principal is None or hodl is None else principal - hodl
    il_pct = il / hodl if il is not None and hodl else None
    owed_usd = None
    if uncollected is not None:
        f0, f1 = (
            usd(uncollected[0], pos.decimals0, price0),
            usd(uncollected[1], pos.decimals1, price1),
        )
        owed_usd = None if f0 is None or f1 is None else f0 + f1
    value = principal if principal is None or owed_usd is None else principal + owed_usd
    return PositionValue(
        amount0=amount0,
        amount1=amount1,
        in_range=in_range(pool.tick, pos.tick_lower, pos.tick_upper) and pos.liquidity > 0,
        tick=pool.tick,
        price0_usd=price0.usd if price0 else None,
        price1_usd=price1.usd if price1 else None,
        value_usd=value,
        hodl_usd=hodl,
        il_usd=il,
        il_pct=il_pct,
        uncollected0=None if uncollected is None else uncollected[0],
        uncollected1=None if uncollected is None else uncollected[1],
        uncollected_usd=owed_usd,
    )


def pool_rate(sqrt_price_x96: int, decimals0: int, decimals1: int) -> Fraction:
    """Whole token1 per whole token0 at the pool's price, exactly."""
    return Fraction(sqrt_price_x96 * sqrt_price_x96 * 10**decimals0, Q192 * 10**decimals1)


DEPTH_BAND_PERCENT = 2  # a pool's depth counts what it holds within this far of its price


def depth_band(sqrt_price_x96: int) -> tuple[int, int]:
    """The sqrt prices DEPTH_BAND_PERCENT below and above the price (floored, inside TickMath's
    range): a percentage of the price, so the band means the same for any token decimals."""
    square = sqrt_price_x96 * sqrt_price_x96
    lower = isqrt(square * (100 - DEPTH_BAND_PERCENT) // 100)
    upper = isqrt(square * (100 + DEPTH_BAND_PERCENT) // 100)
    return max(lower, MIN_SQRT_RATIO), min(upper, MAX_SQRT_RATIO)


def pool_depth(pool: PoolSnapshot, replica: PoolReplica | None = None) -> tuple[int, int]:
    """A pool's depth near its price, in its own tokens' base units: (token0, token1).

    The ±2% depth: the token0 the pool holds from its price up to +2% and the token1 from -2%
    up to its price, i.e. what a trader takes out moving the price 2% either way (fees aside),
    walked over the replica's initialised ticks (`PoolReplica.reserves_within`). Without a
    replica that agrees with the snapshot (none kept, or one left behind by a log it could not
    apply), the in-range liquidity is taken as spanning the band. Pure integer math, rounded
    down as a swap's output is.
    """
    price, liquidity = pool.sqrt_price_x96, pool.liquidity
    if price == 0:
        return 0, 0
    lower, upper = depth_band(price)
    if (
        replica is not None
        and replica.sqrt_price_x96 == price
        and replica.liquidity == liquidity
        and replica.tick == pool.tick
    ):
        return replica.reserves_within(lower, upper)
    if liquidity <= 0:
        return 0, 0
    return (
        get_amount0_delta(price, upper, liquidity, False),
        get_amount1_delta(lower, price, liquidity, False),
    )


def depth_usd(
    amounts: tuple[int, int], sqrt_price_x96: int, priced: int, usd_per_unit: Fraction
) -> Fraction:
    """A pool's depth in USD: twice the value of its thinner side, both sides valued at the
    pool's own price in units of the `priced` side (0: token0, 1: token1), whose base unit is
    worth `usd_per_unit`. Exact, but for the floor of converting one side at the pool's price.

    For liquidity spread evenly around the price both sides are worth about the same, so this
    is the value of both. Counting the thinner side twice keeps a pool from looking deep on
    tokens it prices itself: whoever adds liquidity to a pool they alone trade in sets the
    price of the unpriced token, so only what they lock of the priced one is a real stake.
    """
    amount0, amount1 = amounts
    square = sqrt_price_x96 * sqrt_price_x96  # token1 base units per token0 base unit, * 2^192
    if priced == 0:
        thinner = min(amount0, amount1 * Q192 // square)
    else:
        thinner = min(amount1, amount0 * square // Q192)
    return 2 * thinner * usd_per_unit


def root_prices(
    usd_tokens: Iterable[str], anchors: Mapping[str, tuple[Fraction, TokenPrice]] | None
) -> dict[str, tuple[Fraction, TokenPrice]]:
    """The roots of a route, exact and as reported: the USD tokens at 1, then the anchors
    (which win)."""
    roots = {t: (Fraction(1), TokenPrice(t, 1.0, "usd", 0)) for t in usd_tokens}
    roots.update(anchors or {})
    return roots


def route_prices(
    pools: dict[str, tuple[str, str, int, int]],
    states: dict[str, PoolSnapshot],
    usd_tokens: tuple[str, ...],
    anchors: Mapping[str, tuple[Fraction, TokenPrice]] | None = None,
    *,
    depths: Mapping[str, tuple[int, int]] | None = None,
    min_depth_usd: Fraction | int | float = 0,
) -> dict[str, TokenPrice]:
    """USD prices for every token reachable from a USD stablecoin through initialised pools.

    Breadth first, outward from the roots, so each token is priced by its shortest route; among
    the pools one hop from already-priced tokens, the one deepest in USD near its price wins
    (`pool_depth` valued by `depth_usd` at the known price of its priced side; ties: lowest
    address), which makes the choice deterministic on replay. Raw in-range liquidity is not
    compared: it is not comparable across token decimals (a $100 pool of two 18-decimal tokens
    has more `L` than a $10M USDC pool). A pool shallower than `min_depth_usd` prices nothing;
    a token only such pools reach stays unpriced.

    `pools` maps address -> (token0, token1, decimals0, decimals1). `depths` maps a pool to its
    `pool_depth` (the caller keeps them, recomputed when a pool changes); a pool missing there
    is measured from its snapshot alone. `anchors` are tokens with an on-chain oracle price
    (exact USD per whole token, and how to report it): they are roots too, and win over any
    pool route.
    """
    roots = root_prices(usd_tokens, anchors)
    exact: dict[str, Fraction] = {t: value for t, (value, _) in roots.items()}
    out: dict[str, TokenPrice] = {t: reported for t, (_, reported) in roots.items()}
    depths = depths or {}
    threshold = Fraction(min_depth_usd)
    # Only a pool of a token priced at the last level can price something new: one whose
    # priced side was priced earlier was weighed then, at the same depth.
    by_token: dict[str, list[str]] = {}
    for address, (token0, token1, _, _) in pools.items():
        by_token.setdefault(token0, []).append(address)
        by_token.setdefault(token1, []).append(address)
    frontier = list(exact)
    hops = 0
    while frontier:
        hops += 1
        # USD per base unit of each priced token, for this level's depths
        unit_usd: dict[tuple[str, int], Fraction] = {}
        best: dict[str, tuple[Fraction, str, int, str]] = {}
        for address in sorted({a for t in frontier for a in by_token.get(t, ())}):
            token0, token1, dec0, dec1 = pools[address]
            state = states.get(address)
            if state is None or state.sqrt_price_x96 == 0:
                continue
            for side, priced, other, decimals in (
                (0, token0, token1, dec0),
                (1, token1, token0, dec1),
            ):
                if priced not in exact or other in exact:
                    continue
                unit = unit_usd.get((priced, decimals))
                if unit is None:
                    unit = unit_usd[priced, decimals] = exact[priced] / 10**decimals
                amounts = depths.get(address)
                if amounts is None:
                    amounts = pool_depth(state)
                depth = depth_usd(amounts, state.sqrt_price_x96, side, unit)
                if depth < threshold:
                    continue
                current = best.get(other)
                if current is None or depth > current[0]:
                    best[other] = (depth, address, side, out[priced].stale)
        frontier = []
        for token in sorted(best):
            _depth, address, side, stale = best[token]
            token0, token1, dec0, dec1 = pools[address]
            rate = pool_rate(states[address].sqrt_price_x96, dec0, dec1)  # token1 per token0
            # USD(token0) = USD(token1) * rate; USD(token1) = USD(token0) / rate.
            price = exact[token1] * rate if side == 1 else exact[token0] / rate
            exact[token] = price
            out[token] = TokenPrice(token, float(price), address, hops, stale=stale)
            frontier.append(token)
    return out
