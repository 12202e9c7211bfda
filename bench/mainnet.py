"""Per-block processing time on synthetic mainnet-size state (issue 12).

The state is built through the real steps as the dataflow wires them (`market_mapper`, keyed by
chain, then `to_shards` and `shard_step`, keyed by `chain:shard`), each wrapped in
`flows.rewind.rewindable` as `flows.dataflow.build_flow` wraps them, from synthetic but
well-formed logs (encoders of `bench.fanout`):

- `--pools` Uniswap V3 pools (factory `PoolCreated`, pool `Initialize` at price 1) between 400
  tokens of 18 decimals and a USD root (DAI), 60% of them against a hub;
- `--positions` positions minted through the position manager (pool `Mint`, NFT `Transfer`,
  `IncreaseLiquidity`), spread over the pools, owned by `--wallets` wallets; each wallet's DAI
  and one other token's balance is tracked (opening `balanceOf` with its first position);
- `--accounts` Aave V3 accounts (`bench.fanout.SyntheticMarket`: supply WETH, borrow USDC).

Built in bulk backfill blocks (final, so no undo is kept), the last one a checkpoint a day
later (everything valued, windows open). Then `--blocks` live blocks of 300 logs each, 12 s
apart, unfinalised (final block = number - 64, as at the head: undo copies are kept), each a
checkpoint: 40 swaps on `--hot` busy pools with the swapper's two token `Transfer`s, 10 new
positions and 8 liquidity decreases (pool `Burn` + `DecreaseLiquidity`) with their transfers,
10 position NFT transfers between wallets, 4 Aave supply-and-borrows, a WETH `AnswerUpdated`
every 25 blocks (revaluing every Aave account), and DAI transfers between tracked wallets for the
rest. Swaps, mints and burns are produced by a copy of the flow's own pool replica, so every
log is one the pool would emit (dead letters must stay 0).

Measured, in one thread: wall time per live block (market + every shard, undo included), p50,
p99 and max; memory per position as the growth of the process's resident memory over the build
(gc'd; the whole flow state over positions: pools, wallets' balances and Aave accounts included);
build time; and a cProfile of the live blocks (cumulative ms of the top functions).

Defaults: the issue's 20,000 pools and 100,000 wallets, but 100,000 positions rather than its
1,000,000: building those would take about 6 minutes alone (and ~6 GB; extrapolated from
100,000), and each undo copy of the state grows with it, so the default run would not finish in
`make bench`'s few minutes.

Run: `python -m bench.mainnet [--pools N] [--positions N] [--wallets N] [--accounts N]
[--blocks N] [--hot N]`.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pickle
import pstats
import sys
import time
from collections.abc import Iterator
from random import Random
from typing import Any

from bench.common import emit, percentile
from bench.fanout import CHAIN_ID, ERC20_TRANSFER, SyntheticMarket, _address, _Block, _data, _topic
from bench.memory_per_position import TICK_SPACING, _rss, mint_amounts
from defimon.logs import configure
from defimon.runtime import tune_gc
from flows.dataflow import market_mapper, to_shards
from flows.market import MarketOutput, MarketState
from flows.rewind import History, rewindable, undo_copy
from flows.shards import ShardState, shard_step
from ports.settings import Settings
from protocols.aave_v3.plugin import AaveShardPart
from protocols.spec import ShardInput, ShardOutput
from protocols.uniswap_v3 import events as ev
from protocols.uniswap_v3.replica import PoolReplica
from protocols.uniswap_v3.state import UniswapMarket, UniswapShard
from protocols.uniswap_v3.swap_math import ReplicaError
from schemas.chain import BlockBatch, TokenInfo
from schemas.chain_config import ChainConfig, UniswapV3Config

TOKENS = 400
HUBS = 10
FEE = 3000
Q96 = 2**96
POOLS_PER_BLOCK = 2_000
POSITIONS_PER_BLOCK = 5_000
OPENING = 10**30  # every tracked balance: more than any transfer of the run moves
FINALITY = 64  # Ethereum: about two epochs
FEED_EVERY = 25
# The live block's mix (logs: swaps 3 each, mints 5, decreases 4, NFT transfers 1, Aave 10).
SWAPS, MINTS, DECREASES, NFT_TRANSFERS, AAVE_USERS = 40, 10, 8, 10, 4
LOGS_PER_BLOCK = 300
ISSUE_POSITIONS = 1_000_000


class MainnetChain:
    """The synthetic chain: Uniswap pools and positions, tracked wallets, an Aave market."""

    def __init__(self, pools: int, positions: int, wallets: int, accounts: int, hot: int) -> None:
        self.rng = Random(12)
        self.aave = SyntheticMarket(accounts)  # its block counter and clock are the chain's
        self.factory = _address("UniswapV3Factory")
        self.npm = _address("NonfungiblePositionManager")
        self.dai = _address("asset DAI")
        self.tokens = [_address(f"token {i}") for i in range(TOKENS)]
        self.pools = [_address(f"pool {i}") for i in range(pools)]
        self.pairs: list[tuple[str, str]] = []
        for _ in range(pools):
            a = self.rng.choice(self.tokens)
            b = self.dai if self.rng.random() < 0.3 else self.rng.choice(self.tokens[:HUBS])
            if self.rng.random() < 0.4 or a == b:
                b = self.rng.choice([t for t in self.tokens if t != a])
            self.pairs.append((min(a, b), max(a, b)))
        self.positions = positions
        self.wallets = [_address(f"wallet {i}") for i in range(wallets)]
        self.hot = self.pools[: min(hot, pools)]
        self.index = {p: i for i, p in enumerate(self.hot)}
        # Hot pools' positions (token id, lower, upper, liquidity), for live decreases; their
        # replicas (copies of the flow's, taken after the build) produce the live pool logs.
        self.hot_positions: dict[str, list[tuple[int, int, int, int]]] = {p: [] for p in self.hot}
        self.replicas: dict[str, PoolReplica] = {}
        self.next_token_id = 1
        self.next_user = accounts

    @property
    def config(self) -> ChainConfig:
        return ChainConfig(
            chain_id=CHAIN_ID,
            uniswap_v3=UniswapV3Config(self.factory, self.npm),
            name="mainnet-bench",
            usd_tokens=(self.dai, self.aave.usdc.asset),
            aave_v3=self.aave.config.aave_v3,
        )

    def build_blocks(self) -> Iterator[BlockBatch]:
        """The backfill, one block at a time (only the state outlives them)."""
        setup = self.aave.setup_blocks()
        setup[-1].checkpoint = False
        yield from setup
        del setup
        tokens = {t: TokenInfo(t, f"T{i}", 18) for i, t in enumerate(self.tokens)}
        tokens[self.dai] = TokenInfo(self.dai, "DAI", 18)
        for start in range(0, len(self.pools), POOLS_PER_BLOCK):
            block = self.aave._next_block()
            for pool, (token0, token1) in list(zip(self.pools, self.pairs, strict=True))[
                start : start + POOLS_PER_BLOCK
            ]:
                block.tx()
                block.log(
                    self.factory,
                    (ev.POOL_CREATED, _topic(token0), _topic(token1), _topic(FEE)),
                    _data(TICK_SPACING, pool),
                )
                block.log(pool, (ev.INITIALIZE,), _data(Q96, 0))
            yield block.batch(live=False, checkpoint=False, tokens=tokens)
            tokens = {}
        while self.next_token_id <= self.positions:
            block = self.aave._next_block()
            openings: dict[tuple[str, str], int] = {}
            end = min(self.next_token_id + POSITIONS_PER_BLOCK, self.positions + 1)
            for token_id in range(self.next_token_id, end):
                pool_index = token_id % len(self.pools)
                owner = self.wallets[token_id % len(self.wallets)]
                if token_id <= len(self.wallets):  # the wallet's first position
                    openings[(owner, self.dai)] = OPENING
                    openings[(owner, self.pairs[pool_index][0])] = OPENING
                self._mint(block, pool_index, token_id, owner, None)
            self.next_token_id = end
            last = end > self.positions
            if last:
                # A new minute, hour and day: every subject observed, as in a running flow.
                block.timestamp += 86_400
                self.aave.number = block.number
            yield block.batch(live=False, checkpoint=last, balances=openings)

    def _mint(
        self, block: _Block, pool_index: int, token_id: int, owner: str, replica: PoolReplica | None
    ) -> list[int]:
        pool = self.pools[pool_index]
        lower = self.rng.randint(-100, 90) * TICK_SPACING
        upper = lower + self.rng.randint(2, 20) * TICK_SPACING
        liquidity = self.rng.randint(10**21, 10**23)
        if replica is None:
            amount0, amount1 = mint_amounts(lower, upper, liquidity)
        else:
            amount0, amount1 = replica.modify_amounts(lower, upper, liquidity)
            replica.mint(lower, upper, liquidity, owner=self.npm)
        if pool in self.hot_positions:
            self.hot_positions[pool].append((token_id, lower, upper, liquidity))
        block.tx()
        block.log(
            pool,
            (ev.MINT, _topic(self.npm), _topic(lower), _topic(upper)),
            _data(self.npm, liquidity, amount0, amount1),
        )
        block.log(self.npm, (ev.TRANSFER, _topic(0), _topic(owner), _topic(token_id)))
        block.log(
            self.npm, (ev.INCREASE_LIQUIDITY, _topic(token_id)), _data(liquidity, amount0, amount1)
        )
        return [amount0, amount1]

    def go_live(self, market: UniswapMarket) -> None:
        """Copies of the flow's replicas of the hot pools: they write the live pool logs."""
        self.replicas = {p: market.replicas[p].copy() for p in self.hot}

    def _transfer(
        self, block: _Block, token: str, sender: str, recipient: str, amount: int
    ) -> None:
        block.log(token, (ERC20_TRANSFER, _topic(sender), _topic(recipient)), _data(amount))

    def live_block(self) -> BlockBatch:
        rng, block = self.rng, self.aave._next_block()
        for r in self.aave.reserves:
            r.accrue(block.timestamp)
        for _ in range(SWAPS):
            pool = rng.choice(self.hot)
            index = self.index[pool]
            token0, token1 = self.pairs[index]
            wallet = rng.choice(self.wallets)
            replica = self.replicas[pool]
            # Random, but back towards price 1 once away from it: a thin pool swapped one
            # way runs out of ranges (its price at the end of the curve: the next swap reverts).
            far = abs(replica.tick) > 20 * TICK_SPACING
            zero_for_one = replica.tick > 0 if far else rng.random() < 0.5
            try:
                swap = replica.swap(zero_for_one, rng.randint(10**17, 10**20))
            except ReplicaError:
                zero_for_one = not zero_for_one
                swap = replica.swap(zero_for_one, rng.randint(10**17, 10**20))
            block.tx()
            paid, got = (token0, token1) if zero_for_one else (token1, token0)
            amount_in = swap.amount0 if zero_for_one else swap.amount1
            amount_out = -(swap.amount1 if zero_for_one else swap.amount0)
            self._transfer(block, got, pool, wallet, amount_out)
            self._transfer(block, paid, wallet, pool, amount_in)
            block.log(
                pool,
                (ev.SWAP, _topic(wallet), _topic(wallet)),
                _data(swap.amount0, swap.amount1, swap.sqrt_price_x96, swap.liquidity, swap.tick),
            )
        for _ in range(MINTS):
            pool = rng.choice(self.hot)
            index = self.index[pool]
            owner = rng.choice(self.wallets)
            amounts = self._mint(block, index, self.next_token_id, owner, self.replicas[pool])
            self.next_token_id += 1
            for token, amount in zip(self.pairs[index], amounts, strict=True):
                self._transfer(block, token, owner, pool, amount)
        for _ in range(DECREASES):
            pool = rng.choice(self.hot)
            if not self.hot_positions[pool]:
                continue
            token_id, lower, upper, liquidity = self.hot_positions[pool].pop()
            amount0, amount1 = self.replicas[pool].modify_amounts(lower, upper, -liquidity)
            self.replicas[pool].burn(lower, upper, liquidity, owner=self.npm)
            block.tx()
            block.log(
                pool,
                (ev.BURN, _topic(self.npm), _topic(lower), _topic(upper)),
                _data(liquidity, amount0, amount1),
            )
            block.log(
                self.npm,
                (ev.DECREASE_LIQUIDITY, _topic(token_id)),
                _data(liquidity, amount0, amount1),
            )
        for _ in range(NFT_TRANSFERS):
            token_id = rng.randint(1, self.positions)
            owner = self.wallets[token_id % len(self.wallets)]
            # back and forth in one tx: the position keeps its owner for the next pick
            other = rng.choice(self.wallets)
            block.tx()
            block.log(self.npm, (ev.TRANSFER, _topic(owner), _topic(other), _topic(token_id)))
            block.log(self.npm, (ev.TRANSFER, _topic(other), _topic(owner), _topic(token_id)))
        for _ in range(AAVE_USERS):
            self.aave._supply_and_borrow(block, _address(f"user {self.next_user}"))
            self.next_user += 1
        if block.number % FEED_EVERY == 0:
            weth = self.aave.weth
            weth.answer = max(1, round(weth.answer * (1 + rng.gauss(0, 0.005))))
            block.tx()
            self.aave._answer(block, weth)
        while len(block.logs) < LOGS_PER_BLOCK:
            block.tx()
            a, b = rng.sample(self.wallets, 2)
            self._transfer(block, self.dai, a, b, rng.randint(1, 10**20))
        batch = block.batch(live=True, checkpoint=True)
        batch.final_block = block.number - FINALITY
        return batch


class UndoablePipeline:
    """The dataflow's two stateful stages, each in `rewindable` as `build_flow` wraps them,
    called in order in one thread."""

    def __init__(self, config: ChainConfig, shards: int) -> None:
        self.market_step = rewindable(
            market_mapper({config.chain_id: config}, shards),
            lambda b: b.header.number,
            lambda b: b.final_block,
        )
        self.shard_step = rewindable(shard_step, lambda i: i.block.number, lambda i: i.final_block)
        self.market: History[MarketState, BlockBatch] | None = None
        self.shards: dict[str, History[ShardState, ShardInput]] = {}
        self.dead_letters = 0

    def feed(self, batch: BlockBatch) -> list[ShardOutput]:
        self.market, out = self.market_step(self.market, batch)
        assert isinstance(out, MarketOutput)
        self.dead_letters += len(out.dead_letters)
        outs = []
        for key, item in to_shards(out):
            self.shards[key], shard_out = self.shard_step(self.shards.get(key), item)
            assert isinstance(shard_out, ShardOutput)
            outs.append(shard_out)
        return outs

    def state(self) -> tuple[MarketState, list[ShardState]]:
        assert self.market is not None and self.market.state is not None
        return self.market.state, [h.state for h in self.shards.values() if h.state is not None]


def undo_costs(pipeline: UndoablePipeline) -> dict[str, float]:
    """One undo copy of every stage's state by deltas, and the same states pickled whole."""
    market, shards = pipeline.state()
    states: list[object] = [market, *shards]
    started = time.perf_counter()
    copies = [undo_copy(s) for s in states]
    copy_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    whole = [pickle.dumps(s, pickle.HIGHEST_PROTOCOL) for s in states]
    whole_ms = (time.perf_counter() - started) * 1e3
    return {
        "copy_ms": copy_ms,
        "whole_ms": whole_ms,
        "copy_bytes": sum(len(c.skeleton) for c in copies),
        "whole_bytes": sum(map(len, whole)),
    }


def profile_top(profile: cProfile.Profile, blocks: int, top: int) -> list[dict[str, Any]]:
    """The functions with the most cumulative time over the live blocks, ms per block."""
    stats = pstats.Stats(profile)
    rows = []
    for (path, line, name), (_cc, calls, _tt, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = path.split("site-packages/", 1)[-1]
        where = os.path.relpath(where) if where.startswith(os.getcwd()) else where
        rows.append((cumulative, f"{where}:{line}:{name}", calls))
    rows.sort(reverse=True)
    return [
        {"function": f, "cumulative_ms_per_block": round(c / blocks * 1e3, 2), "calls": n}
        for c, f, n in rows[:top]
    ]


def run(args: argparse.Namespace) -> None:
    tune_gc()
    shards = Settings().shards
    chain = MainnetChain(args.pools, args.positions, args.wallets, args.accounts, args.hot)
    pipeline = UndoablePipeline(chain.config, shards)
    gc.collect()
    rss_before = _rss()
    started = time.perf_counter()
    build_logs = 0
    for batch in chain.build_blocks():
        build_logs += len(batch.logs)
        pipeline.feed(batch)
    built = time.perf_counter() - started
    gc.collect()
    rss = _rss() - rss_before
    market, states = pipeline.state()
    positions = sum(
        len(p.positions) for s in states if isinstance(p := s.part("uniswap_v3"), UniswapShard)
    )
    accounts = sum(
        len(p.accounts.accounts)
        for s in states
        if isinstance(p := s.part("aave_v3"), AaveShardPart)
    )
    if positions != args.positions or accounts != args.accounts or pipeline.dead_letters:
        raise AssertionError(
            f"built {positions} positions, {accounts} accounts, "
            f"{pipeline.dead_letters} dead letters"
        )
    print(
        f"# mainnet build: {build_logs} logs in {built:.1f} s, state RSS {rss / 1e6:.0f} MB",
        file=sys.stderr,
        flush=True,
    )
    uniswap = market.part("uniswap_v3")
    assert isinstance(uniswap, UniswapMarket)
    chain.go_live(uniswap)
    times: list[float] = []
    logs = 0
    for _ in range(args.blocks):
        batch = chain.live_block()
        logs += len(batch.logs)
        started = time.perf_counter()
        pipeline.feed(batch)
        times.append((time.perf_counter() - started) * 1e3)
    # Profiled apart, after the timed blocks: cProfile slows the steps down.
    profile = cProfile.Profile()
    profiled: list[float] = []
    for _ in range(args.profile_blocks):
        batch = chain.live_block()
        started = time.perf_counter()
        profile.enable()
        pipeline.feed(batch)
        profile.disable()
        profiled.append((time.perf_counter() - started) * 1e3)
    if pipeline.dead_letters:
        raise AssertionError(f"{pipeline.dead_letters} dead letters in the live blocks")
    undo = undo_costs(pipeline)
    params = {
        "pools": args.pools,
        "positions": args.positions,
        "wallets": args.wallets,
        "aave_accounts": args.accounts,
        "hot_pools": len(chain.hot),
        "blocks": args.blocks,
        "logs_per_block": round(logs / args.blocks),
        "shards": shards,
        "finality_blocks": FINALITY,
        "build_seconds": round(built, 1),
        "build_logs": build_logs,
        # The default run is scaled to finish in `make bench`: the issue's 1,000,000
        # positions would take about 6 minutes to build alone (--positions 1000000 runs them).
        "issue_positions": ISSUE_POSITIONS,
    }
    emit("mainnet_block_p50_ms", percentile(times, 50), "ms", **params)
    emit("mainnet_block_p99_ms", percentile(times, 99), "ms", target_ms=50.0, **params)
    emit("mainnet_block_max_ms", max(times), "ms", **params)
    emit(
        "mainnet_memory_per_position_bytes",
        rss / args.positions,
        "bytes",
        measure="RSS growth over the build (gc'd; whole flow state: pools, positions, "
        "balances, Aave accounts) / positions",
        rss_bytes=rss,
        **params,
    )
    emit(
        "mainnet_undo_copy_ms",
        undo["copy_ms"],
        "ms",
        whole_state_pickle_ms=undo["whole_ms"],
        copy_bytes=undo["copy_bytes"],
        whole_state_bytes=undo["whole_bytes"],
        note="value: one undo copy of every stage as flows/rewind.py keeps it (the state "
        "without its journaled dicts); whole_state_pickle_ms: the same states pickled whole, "
        "as undo copies were before deltas; side by side, after the live blocks",
        **params,
    )
    if profiled:
        emit(
            "mainnet_profile_top",
            sum(profiled) / len(profiled),
            "ms",
            profiled_blocks=len(profiled),
            top=profile_top(profile, len(profiled), args.top),
            note="value: mean ms per block under cProfile (the blocks after the timed ones); "
            "top: cumulative ms per block",
            **params,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=20_000)
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--wallets", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--hot", type=int, default=500, help="pools the live swaps hit")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--profile-blocks", type=int, default=20, help="0: no profile")
    args = parser.parse_args(argv)
    configure("warning")
    run(args)


if __name__ == "__main__":
    main()
