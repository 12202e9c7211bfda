"""Memory of the flow's state per tracked Uniswap V3 position and per Aave V3 account.

The state is built by the real steps (`market_mapper`, `to_shards`, `shard_step`, called in
order as the dataflow wires them: `bench.fanout.Pipeline`) from synthetic but well-formed logs:

- Uniswap V3: one WETH/USDC pool (factory `PoolCreated`, pool `Initialize`), then N positions,
  each minted as the position manager does it (pool `Mint` owned by the manager, the NFT's
  `Transfer` from zero, `IncreaseLiquidity`) in a range of its own, for an owner of its own;
- Aave V3: `bench.fanout.SyntheticMarket`: N accounts that supply WETH and borrow USDC.

Blocks hold 500 positions or accounts (1 s apart for positions, 12 s for accounts; see
POSITION_BLOCK_SECONDS), the last one a checkpoint (everything
valued, windows open), as a backfill reads them. Each (kind, N) runs in a fresh process. What
is measured: the Python heap the state keeps (tracemalloc: allocated while building it and
still alive once the logs and outputs are dropped), the process's resident memory growth (an
upper bound: freed memory is not always returned), and the pickled size of the state (what
Bytewax writes to a recovery snapshot). Bytes per position are the state at N over N, and the
slope between the two sizes (which leaves out the fixed part: pools, reserves, prices).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from random import Random
from typing import Any

from bench.common import emit
from bench.fanout import (
    CHAIN_ID,
    GENESIS_TIME,
    Pipeline,
    SyntheticMarket,
    _address,
    _Block,
    _data,
    _topic,
)
from defimon.logs import configure
from defimon.runtime import tune_gc
from ports.settings import Settings
from protocols.aave_v3.plugin import AaveShardPart
from protocols.uniswap_v3 import events as ev
from protocols.uniswap_v3.math import get_amount0_delta, get_amount1_delta, get_sqrt_ratio_at_tick
from protocols.uniswap_v3.state import UniswapShard
from schemas.chain import BlockBatch, TokenInfo
from schemas.chain_config import ChainConfig, UniswapV3Config

SIZES = (10_000, 100_000)
PER_BLOCK = 500
# Every mint changes the pool, so each minute boundary revalues every position of the pool
# (windows close on the values at their last block): with one pool holding them all, 12 s
# blocks would make building 100,000 positions quadratic (minutes). Blocks 1 s apart keep
# the boundaries few; the state per position is the same.
POSITION_BLOCK_SECONDS = 1
TICK_SPACING = 60
Q96 = 2**96


class SyntheticPositions:
    """One Uniswap V3 pool and `positions` positions minted through the position manager."""

    def __init__(self, positions: int, seed: int = 7) -> None:
        self.positions = positions
        self.rng = Random(seed)
        self.factory = _address("UniswapV3Factory")
        self.npm = _address("NonfungiblePositionManager")
        self.pool = _address("pool WETH/USDC 3000")
        self.weth = _address("asset WETH")
        self.usdc = _address("asset USDC")
        self.number = 100
        self.clock = GENESIS_TIME

    @property
    def config(self) -> ChainConfig:
        return ChainConfig(
            chain_id=CHAIN_ID,
            uniswap_v3=UniswapV3Config(self.factory, self.npm),
            name="memory-bench",
            usd_tokens=(self.usdc,),
        )

    def _next_block(self, later: int = 0) -> _Block:
        self.number += 1
        self.clock += POSITION_BLOCK_SECONDS + later
        return _Block(self.number, self.clock)

    def blocks(self) -> Iterator[BlockBatch]:
        """Built one at a time, so only the state outlives them."""
        token0, token1 = sorted((self.weth, self.usdc))
        block = self._next_block()
        block.tx()
        block.log(
            self.factory,
            (ev.POOL_CREATED, _topic(token0), _topic(token1), _topic(3000)),
            _data(TICK_SPACING, self.pool),
        )
        block.tx()
        block.log(self.pool, (ev.INITIALIZE,), _data(Q96, 0))
        tokens = {
            self.weth: TokenInfo(self.weth, "WETH", 18),
            self.usdc: TokenInfo(self.usdc, "USDC", 6),
        }
        yield block.batch(live=False, checkpoint=False, tokens=tokens)
        for start in range(1, self.positions + 1, PER_BLOCK):
            last = start + PER_BLOCK > self.positions
            # The last block starts a new minute, hour and day: every position is observed and
            # holds its windows, as in a flow that has run a while.
            block = self._next_block(later=86_400 if last else 0)
            for token_id in range(start, min(start + PER_BLOCK, self.positions + 1)):
                self._mint(block, token_id)
            yield block.batch(live=False, checkpoint=last)

    def _mint(self, block: _Block, token_id: int) -> None:
        lower = self.rng.randint(-200, 190) * TICK_SPACING
        upper = lower + self.rng.randint(1, 20) * TICK_SPACING
        liquidity = self.rng.randint(10**15, 10**18)
        amount0, amount1 = mint_amounts(lower, upper, liquidity)
        owner = _address(f"owner {token_id}")
        block.tx()
        block.log(
            self.pool,
            (ev.MINT, _topic(self.npm), _topic(lower), _topic(upper)),
            _data(self.npm, liquidity, amount0, amount1),
        )
        block.log(self.npm, (ev.TRANSFER, _topic(0), _topic(owner), _topic(token_id)))
        block.log(
            self.npm,
            (ev.INCREASE_LIQUIDITY, _topic(token_id)),
            _data(liquidity, amount0, amount1),
        )


def mint_amounts(lower: int, upper: int, liquidity: int) -> tuple[int, int]:
    """What UniswapV3Pool.mint takes at tick 0 (price 1): rounded up, cased by the tick."""
    sqrt_a, sqrt_b = get_sqrt_ratio_at_tick(lower), get_sqrt_ratio_at_tick(upper)
    if lower > 0:
        return get_amount0_delta(sqrt_a, sqrt_b, liquidity, True), 0
    if upper > 0:
        return (
            get_amount0_delta(Q96, sqrt_b, liquidity, True),
            get_amount1_delta(sqrt_a, Q96, liquidity, True),
        )
    return 0, get_amount1_delta(sqrt_a, sqrt_b, liquidity, True)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(kind: str, size: int) -> dict[str, Any]:
    """Build the state for `size` positions or accounts in this process; what it costs."""
    tune_gc()
    shards = Settings().shards
    gc.collect()
    rss_before = _rss()
    tracemalloc.start()
    started = time.perf_counter()
    if kind == "uniswap_v3":
        positions = SyntheticPositions(size)
        pipeline = Pipeline(positions.config, shards)
        for batch in positions.blocks():
            pipeline.feed(batch)
    else:
        market = SyntheticMarket(size)
        pipeline = Pipeline(market.config, shards)
        setup = market.setup_blocks()
        for batch in setup:
            pipeline.feed(batch)
        del setup
    built = time.perf_counter() - started
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss = _rss() - rss_before
    states = list(pipeline.shards.values())
    tracked = (
        sum(len(p.positions) for s in states if isinstance(p := s.part("uniswap_v3"), UniswapShard))
        if kind == "uniswap_v3"
        else sum(
            len(p.accounts.accounts)
            for s in states
            if isinstance(p := s.part("aave_v3"), AaveShardPart)
        )
    )
    if tracked != size or pipeline.dead_letters:
        raise AssertionError(f"{tracked} of {size} tracked, {pipeline.dead_letters} dead letters")
    snapshot = len(pickle.dumps(pipeline.market)) + sum(len(pickle.dumps(s)) for s in states)
    return {
        "kind": kind,
        "size": size,
        "heap_bytes": heap,
        "rss_bytes": rss,
        "snapshot_bytes": snapshot,
        "build_seconds": round(built, 2),
    }


def run() -> None:
    for kind in ("uniswap_v3", "aave_v3"):
        results = []
        for size in SIZES:
            child = subprocess.run(
                [sys.executable, "-m", "bench.memory_per_position", "--one", kind, str(size)],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        small, large = results
        slope = (large["heap_bytes"] - small["heap_bytes"]) / (large["size"] - small["size"])
        for r in results:
            emit(
                "memory_per_position_bytes" if kind == "uniswap_v3" else "memory_per_account_bytes",
                r["heap_bytes"] / r["size"],
                "bytes",
                protocol=kind,
                tracked=r["size"],
                heap_bytes=r["heap_bytes"],
                rss_per_item_bytes=round(r["rss_bytes"] / r["size"]),
                snapshot_per_item_bytes=round(r["snapshot_bytes"] / r["size"]),
                heap_slope_bytes=round(slope),
                shards=Settings().shards,
                build_seconds=r["build_seconds"],
                measure="tracemalloc heap kept by the flow state / tracked",
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure("warning")
    if args.one:
        kind, size = args.one
        print(json.dumps(measure(kind, int(size))), flush=True)
        return
    run()


if __name__ == "__main__":
    main()
