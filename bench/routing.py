"""Price routing: what one block's `route_prices` costs on a 2,000-pool market.

`route_prices` runs on every block in which any pool changed (or a new pool or oracle price
arrived), over every pool of the chain, so its cost is paid per block whatever the block
holds. This builds a synthetic but well-formed market in memory: 400 tokens of 6, 8 and 18
decimals at random USD prices, three USD roots, and 2,000 pools between them, each a real
`PoolReplica` initialised at the pair's price and holding a few minted ranges (one wide, some
narrow) worth $100 to $10M near the price, so depths span the thin and the deep.

Measured in one thread on the pure functions (no I/O, no Bytewax), as the process's CPU time:
the work is single-threaded and CPU-bound, and on a shared machine wall time would count the
time other processes held the core.
- `routing_route_prices_ms`: one `route_prices` over all 2,000 pools (median of the runs);
- `routing_pool_depth_us`: the ±2% depth of one pool, walked over its initialised ticks
  (what `market_step` recomputes for each pool a block changed);
- `routing_block_ms`: a block that changed `--changed` pools: their depths, then the route.

Run: `python -m bench.routing [--pools 2000] [--changed 20] [--runs 15] [--min-depth-usd N]`
(the threshold defaults to the chain configs' default, 10,000).
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction
from math import isqrt
from random import Random

from bench.common import emit, percentile
from protocols.uniswap_v3.math import MAX_TICK, MIN_TICK, Q96, get_tick_at_sqrt_ratio
from protocols.uniswap_v3.replica import PoolReplica
from protocols.uniswap_v3.valuation import pool_depth, route_prices
from schemas.chain_config import DEFAULT_MIN_DEPTH_USD
from schemas.positions import PoolSnapshot

TOKENS = 400
ROOTS = (("usdc", 6), ("usdt", 6), ("dai", 18))
SPACING = 60
FEE = 3000


def _address(n: int) -> str:
    return f"0x{n:040x}"


def synthetic_market(
    pools: int, seed: int = 11
) -> tuple[dict[str, tuple[str, str, int, int]], dict[str, PoolReplica], tuple[str, ...], Random]:
    """(pools as route_prices takes them, a replica per pool, the USD roots, the rng)."""
    rng = Random(seed)
    roots = tuple(_address(i + 1) for i in range(len(ROOTS)))
    decimals = {root: d for root, (_, d) in zip(roots, ROOTS, strict=True)}
    usd = dict.fromkeys(roots, 1.0)
    others = [_address(100 + i) for i in range(TOKENS)]
    for token in others:
        decimals[token] = rng.choice((6, 8, 18, 18))
        usd[token] = 10 ** rng.uniform(-3, 4.5)
    hubs = list(roots) + others[:10]
    table: dict[str, tuple[str, str, int, int]] = {}
    replicas: dict[str, PoolReplica] = {}
    for n in range(pools):
        a = rng.choice(others)
        b = rng.choice(hubs) if rng.random() < 0.6 else rng.choice(others)
        if a == b:
            b = roots[0]
        token0, token1 = sorted((a, b))
        d0, d1 = decimals[token0], decimals[token1]
        # raw token1 per raw token0, then its square root in Q64.96
        ratio = Fraction(usd[token0]) / 10**d0 / (Fraction(usd[token1]) / 10**d1)
        sqrt_price = isqrt(ratio.numerator * (1 << 192) // ratio.denominator)
        try:
            tick = get_tick_at_sqrt_ratio(sqrt_price)
        except ArithmeticError:
            continue  # a pair too far apart for Uniswap's price range
        replica = PoolReplica(FEE, SPACING)
        replica.initialize(sqrt_price, tick)
        # L for a $depth band: token1 in a ±2% band is ~1% of L * sqrtP (raw token1 units)
        depth_usd = 10 ** rng.uniform(2, 7)
        unit1 = usd[token1] / 10**d1
        liquidity = int(depth_usd / unit1 / (sqrt_price / Q96 * 0.01))
        base = tick // SPACING * SPACING
        ranges = [(base - 40 * SPACING, base + 40 * SPACING, liquidity)]
        for _ in range(rng.randint(1, 6)):
            lo = base - SPACING * rng.randint(0, 8)
            ranges.append((lo, lo + SPACING * rng.randint(1, 8), liquidity // rng.randint(1, 5)))
        floor, ceiling = (MIN_TICK // SPACING + 1) * SPACING, MAX_TICK // SPACING * SPACING
        try:
            for lower, upper, amount in ranges:
                if 0 < amount < 1 << 127 and max(lower, floor) < min(upper, ceiling):
                    replica.mint(max(lower, floor), min(upper, ceiling), amount)
        except ArithmeticError:
            continue
        address = _address(10_000 + n)
        table[address] = (token0, token1, d0, d1)
        replicas[address] = replica
    return table, replicas, roots, rng


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=2_000)
    parser.add_argument("--changed", type=int, default=20)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--min-depth-usd", type=float, default=DEFAULT_MIN_DEPTH_USD)
    args = parser.parse_args()
    table, replicas, roots, rng = synthetic_market(args.pools)
    snapshots = {
        a: PoolSnapshot(a, r.sqrt_price_x96, r.tick, r.liquidity) for a, r in replicas.items()
    }

    started = time.process_time()
    depths = {a: pool_depth(snapshots[a], replicas[a]) for a in table}
    depth_us = (time.process_time() - started) / len(table) * 1e6

    route_ms: list[float] = []
    block_ms: list[float] = []
    priced = 0
    addresses = sorted(table)
    for _ in range(args.runs):
        started = time.process_time()
        prices = route_prices(
            table, snapshots, roots, depths=depths, min_depth_usd=args.min_depth_usd
        )
        route_ms.append((time.process_time() - started) * 1e3)
        priced = len(prices)
        changed = rng.sample(addresses, min(args.changed, len(addresses)))
        started = time.process_time()
        for a in changed:
            depths[a] = pool_depth(snapshots[a], replicas[a])
        route_prices(table, snapshots, roots, depths=depths, min_depth_usd=args.min_depth_usd)
        block_ms.append((time.process_time() - started) * 1e3)

    params = {
        "pools": len(table),
        "tokens": TOKENS + len(ROOTS),
        "priced": priced,
        "min_depth_usd": args.min_depth_usd,
    }
    emit("routing_route_prices_ms", percentile(route_ms, 50), "ms", **params)
    emit("routing_pool_depth_us", depth_us, "us", **params)
    emit(
        "routing_block_ms",
        percentile(block_ms, 50),
        "ms",
        changed=args.changed,
        **params,
    )


if __name__ == "__main__":
    main()
