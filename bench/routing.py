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

Then, side by side in the same run, at each of `--sizes` pools (2,000 and 20,000: mainnet has
tens of thousands of Uniswap V3 pools), what the market stage pays per block for routing: the
full walk (`route_prices`) against the incremental router (`PriceRouter.update`, what
`UniswapMarket.route` runs), on the same blocks, whose answers must be equal (checked every
block). A hub token (think WETH) has an oracle price, so it is a root. Blocks move the price
(±0.5%, and so the depth) of 1, 10 or 100 random pools, or move the hub's oracle price
(`changed` = "root": every token routed through it is re-priced):
- `routing_full_block_ms` / `routing_incremental_block_ms`: p50 (p99 in `p99_ms`), with the
  tokens the router re-decided (p50) and how many of its updates fell back to a full walk.

Run: `python -m bench.routing [--pools 2000] [--changed 20] [--runs 15] [--min-depth-usd N]
[--sizes 2000,20000] [--blocks 20]` (the threshold defaults to the chain configs' default,
10,000).
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
from protocols.uniswap_v3.router import PriceRouter, RoutePool
from protocols.uniswap_v3.valuation import pool_depth, route_prices
from schemas.chain_config import DEFAULT_MIN_DEPTH_USD
from schemas.positions import PoolSnapshot, TokenPrice

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
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--blocks", type=int, default=20)
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
    for size in (int(n) for n in args.sizes.split(",") if n):
        incremental_blocks(size, args.blocks, args.min_depth_usd)


def incremental_blocks(size: int, blocks: int, min_depth_usd: float) -> None:
    """Full walk and incremental router side by side on the same blocks of a `size`-pool
    market (see the module docstring)."""
    table, replicas, roots, rng = synthetic_market(size)
    snapshots = {
        a: PoolSnapshot(a, r.sqrt_price_x96, r.tick, r.liquidity) for a, r in replicas.items()
    }
    depths = {a: pool_depth(snapshots[a], replicas[a]) for a in table}
    hub = _address(100)  # the first non-USD hub of synthetic_market
    first = route_prices(table, snapshots, roots, depths=depths, min_depth_usd=min_depth_usd)
    hub_usd = Fraction(first[hub].usd)

    def anchor() -> dict[str, tuple[Fraction, TokenPrice]]:
        return {hub: (hub_usd, TokenPrice(hub, float(hub_usd), "feed", 0))}

    def entry(a: str) -> RoutePool:
        return (*table[a], snapshots[a].sqrt_price_x96, depths[a])

    router = PriceRouter()
    router.update({a: entry(a) for a in table}, roots, anchor(), min_depth_usd)
    walks = router.full_walks
    addresses = sorted(table)
    for changed in ("1", "10", "100", "root"):
        full_ms: list[float] = []
        update_ms: list[float] = []
        decided: list[float] = []
        for _ in range(blocks):
            moved: list[str] = []
            if changed == "root":
                hub_usd = hub_usd * rng.randint(995, 1005) / 1000
            else:
                moved = rng.sample(addresses, int(changed))
            for a in moved:
                snap = snapshots[a]
                price = snap.sqrt_price_x96 * rng.randint(995, 1005) // 1000
                snapshots[a] = PoolSnapshot(a, price, snap.tick, snap.liquidity)
                depths[a] = pool_depth(snapshots[a])  # in-range liquidity over the band
            started = time.process_time()
            want = route_prices(
                table, snapshots, roots, anchor(), depths=depths, min_depth_usd=min_depth_usd
            )
            full_ms.append((time.process_time() - started) * 1e3)
            started = time.process_time()
            got = router.update({a: entry(a) for a in moved}, roots, anchor(), min_depth_usd)
            update_ms.append((time.process_time() - started) * 1e3)
            decided.append(router.decided)
            if got != want:
                raise AssertionError(f"incremental routing differs from route_prices ({changed})")
        params = {
            "pools": len(table),
            "changed": changed,
            "blocks": blocks,
            "priced": len(want),
            "min_depth_usd": min_depth_usd,
        }
        emit(
            "routing_full_block_ms",
            percentile(full_ms, 50),
            "ms",
            p99_ms=round(percentile(full_ms, 99), 3),
            **params,
        )
        emit(
            "routing_incremental_block_ms",
            percentile(update_ms, 50),
            "ms",
            p99_ms=round(percentile(update_ms, 99), 3),
            decided=percentile(decided, 50),
            full_walks=router.full_walks - walks,
            **params,
        )


if __name__ == "__main__":
    main()
