"""Value a position: exact token amounts, in-range flag, USD value and impermanent loss (pure).

IL follows the Revert convention: the position's value minus the value, at the same prices, of
holding what went in (deposits minus principal withdrawn), fees excluded. Withdrawing does not
move IL, and a position that was never touched by price has IL 0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from fractions import Fraction

from flows.uniswap_v3.math import Q192, in_range, position_amounts
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


def route_prices(
    pools: dict[str, tuple[str, str, int, int]],
    states: dict[str, PoolSnapshot],
    usd_tokens: tuple[str, ...],
    anchors: Mapping[str, tuple[Fraction, TokenPrice]] | None = None,
) -> dict[str, TokenPrice]:
    """USD prices for every token reachable from a USD stablecoin through initialised pools.

    Breadth first, so each token is priced by its shortest route; among the pools one hop from
    already-priced tokens, the one with the most in-range liquidity wins (ties: lowest address),
    which makes the choice deterministic on replay. `pools` maps address -> (token0, token1,
    decimals0, decimals1). `anchors` are tokens with an on-chain oracle price (exact USD per
    whole token, and how to report it): they are roots too, and win over any pool route.
    """
    exact: dict[str, Fraction] = {t: Fraction(1) for t in usd_tokens}
    out: dict[str, TokenPrice] = {t: TokenPrice(t, 1.0, "usd", 0) for t in usd_tokens}
    for token, (value, reported) in (anchors or {}).items():
        exact[token], out[token] = value, reported
    frontier = deque(exact)
    hops = 0
    while frontier:
        hops += 1
        best: dict[str, tuple[int, str, Fraction, str]] = {}
        for address in sorted(pools):
            token0, token1, dec0, dec1 = pools[address]
            state = states.get(address)
            if state is None or state.sqrt_price_x96 == 0:
                continue
            for priced, other in ((token0, token1), (token1, token0)):
                if priced not in exact or other in exact:
                    continue
                rate = pool_rate(state.sqrt_price_x96, dec0, dec1)  # token1 per token0
                # USD(token0) = USD(token1) * rate; USD(token1) = USD(token0) / rate.
                if priced == token1:
                    price = exact[priced] * rate
                else:
                    price = exact[priced] / rate
                current = best.get(other)
                if current is None or state.liquidity > current[0]:
                    best[other] = (state.liquidity, address, price, out[priced].stale)
        frontier = deque()
        for token in sorted(best):
            _liquidity, address, price, stale = best[token]
            exact[token] = price
            out[token] = TokenPrice(token, float(price), address, hops, stale=stale)
            frontier.append(token)
    return out
