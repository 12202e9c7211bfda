"""What an LP position's numbers say to do (pure): its value and IL across a grid of moves of
token0's price against token1 (the pool moved there as stress.py moves it, valued by
`value_position`), the pool prices at which it leaves its range, how long it was in range
over a lookback, what it earned per day, and a plain statement of where it stands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from protocols.uniswap_v3.math import get_sqrt_ratio_at_tick, in_range
from protocols.uniswap_v3.stress import moved_price, shocked_pool
from protocols.uniswap_v3.valuation import pool_rate, value_position
from schemas.positions import PoolSnapshot, TokenPrice, UniswapPosition

# token0's price against token1, in basis points: -50 % to +100 %.
GRID_BPS = (-5_000, -2_500, -1_000, -500, 0, 500, 1_000, 2_500, 5_000, 10_000)
LOOKBACK_SECONDS = 7 * 86_400


def price_grid(
    pos: UniswapPosition,
    pool: PoolSnapshot,
    price0: TokenPrice | None,
    price1: TokenPrice | None,
    owed: tuple[int, int] | None,
) -> list[dict[str, Any]]:
    out = []
    for bps in GRID_BPS:
        moved = value_position(
            pos, shocked_pool(pool, bps, 0), moved_price(price0, bps), price1, owed
        )
        out.append(
            {
                "move_bps": bps,
                "amount0": str(moved.amount0),
                "amount1": str(moved.amount1),
                "value_usd": moved.value_usd,
                "il_usd": moved.il_usd,
                "il_pct": moved.il_pct,
                "in_range": moved.in_range,
            }
        )
    return out


def range_exits(pos: UniswapPosition, pool: PoolSnapshot) -> dict[str, Any]:
    """token1 per token0 (whole tokens) now and at the range's ends, and how far each end is
    (the position earns while tick_lower <= tick < tick_upper)."""
    now = pool_rate(pool.sqrt_price_x96, pos.decimals0, pos.decimals1)
    lower = pool_rate(get_sqrt_ratio_at_tick(pos.tick_lower), pos.decimals0, pos.decimals1)
    upper = pool_rate(get_sqrt_ratio_at_tick(pos.tick_upper), pos.decimals0, pos.decimals1)
    return {
        "price": float(now),
        "lower_price": float(lower),
        "upper_price": float(upper),
        "to_lower_pct": float((lower / now - 1) * 100) if now else None,
        "to_upper_pct": float((upper / now - 1) * 100) if now else None,
    }


def seconds_in_range(
    ticks: Sequence[tuple[int, int]], start: int, end: int, lower: int, upper: int
) -> tuple[int, int]:
    """(seconds in range, seconds observed) between `start` and `end`, from the pool's tick
    changes `(time, tick)` in order, the first at or before `start` (none: unobserved then)."""
    inside = observed = 0
    for i, (at, tick) in enumerate(ticks):
        since = max(at, start)
        until = min(ticks[i + 1][0] if i + 1 < len(ticks) else end, end)
        if until <= since:
            continue
        observed += until - since
        if in_range(tick, lower, upper):
            inside += until - since
    return inside, observed


def statement(pos: UniswapPosition, pool: PoolSnapshot, exits: dict[str, Any]) -> str:
    symbols = f"{pos.symbol1} per {pos.symbol0}"
    if pos.liquidity == 0:
        return "The position holds no liquidity: it earns nothing until liquidity is added."
    if not in_range(pool.tick, pos.tick_lower, pos.tick_upper):
        side = "below" if pool.tick < pos.tick_lower else "above"
        end = "lower" if side == "below" else "upper"
        to, edge = exits[f"to_{end}_pct"], exits[f"{end}_price"]
        return (
            f"Out of range ({side} it) and earning nothing: the price is {exits['price']:.6g} "
            f"{symbols}; it earns again at {edge:.6g} ({to:+.2f}%)."
        )
    return (
        f"In range and earning: it leaves the range at {exits['lower_price']:.6g} "
        f"({exits['to_lower_pct']:+.2f}%) or {exits['upper_price']:.6g} "
        f"({exits['to_upper_pct']:+.2f}%) {symbols}."
    )
