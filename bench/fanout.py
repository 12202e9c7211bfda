"""Fan-out: one oracle price update that revalues 10,000 Aave accounts.

A synthetic but well-formed chain (every log encoded as the contracts emit it, topics from
`protocols.aave_v3.events`) builds one Aave V3 market: WETH and USDC reserves (configurator
`ReserveInitialized` and `CollateralConfigurationChanged`), their feeds (oracle
`AssetSourceUpdated`, feed `AnswerUpdated`), rates (pool `ReserveDataUpdated`), and N accounts
that each supply WETH as collateral (aToken `Mint`, `ReserveUsedAsCollateralEnabled`) and borrow
USDC (variable debt `Mint`). The blocks go through the real steps as the dataflow wires them:
`market_mapper` (keyed by chain), `to_shards`, `shard_step` (keyed by `chain:shard`).

Then each measured block holds a single WETH `AnswerUpdated`; the clock runs from handing that
block to the market step until every account has been revalued (N account updates out of the
shards). Measured on the pure steps in one thread and, with `--bytewax`, through a small Bytewax
flow of the same steps: 1 worker, 2 worker threads in one process, and 2 processes of one
worker each (the only way a second core helps GIL-bound Python steps).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from random import Random
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main
from eth_utils import keccak

from bench.common import emit, percentile
from defimon.logs import configure
from defimon.runtime import tune_gc
from devnet.anvil import free_port
from flows.dataflow import DEFAULT_SHARDS, market_mapper, to_shards
from flows.market import MarketState
from flows.shards import ShardState, shard_step
from ports.settings import Settings
from protocols.aave_v3 import events as ev
from protocols.aave_v3 import math as am
from protocols.aave_v3.plugin import account_event
from protocols.aave_v3.state import AccountUpdate
from protocols.spec import ShardOutput
from schemas.chain import BlockBatch, BlockHeader, RawLog, TokenInfo
from schemas.chain_config import AaveV3Config, ChainConfig, UniswapV3Config
from schemas.prices import SourceRead

CHAIN_ID = 31337
ACCOUNTS = 10_000
REPEATS = 20
SHARDS = DEFAULT_SHARDS  # the runtime default (Settings.shards)
ACCOUNTS_PER_BLOCK = 500
BLOCK_SECONDS = 12
GENESIS_TIME = 1_700_000_000
RAY = 10**27
FEED_UNIT = 10**8
TARGET_MS = 200.0
ERC20_TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
VARIABLE_RATE_MODE = 2


def _hash(text: str) -> str:
    return "0x" + keccak(text=text).hex()


def _address(tag: str) -> str:
    """A distinct, stable, lower-case address for a synthetic contract or wallet."""
    return _hash(tag)[:42]


def _word(value: int | str) -> str:
    if isinstance(value, str):  # an address
        return "0" * 24 + value[2:]
    return f"{value % (1 << 256):064x}"


def _topic(value: int | str) -> str:
    return "0x" + _word(value)


def _data(*words: int | str) -> str:
    return "0x" + "".join(_word(w) for w in words)


def _ray_per_year(percent: float) -> int:
    return round(percent / 100 * RAY)


@dataclass(slots=True)
class _Reserve:
    symbol: str
    decimals: int
    usd: int  # reference price, whole dollars
    ltv: int  # basis points
    liquidation_threshold: int
    liquidation_bonus: int
    liquidity_rate: int  # ray per year
    stable_rate: int
    variable_rate: int
    asset: str = ""
    a_token: str = ""
    stable_debt: str = ""
    variable_debt: str = ""
    feed: str = ""
    strategy: str = ""
    liquidity_index: int = RAY
    variable_index: int = RAY
    last_update: int = GENESIS_TIME
    answer: int = 0
    round_id: int = 0

    def __post_init__(self) -> None:
        s = self.symbol
        self.asset = _address(f"asset {s}")
        self.a_token = _address(f"aToken {s}")
        self.stable_debt = _address(f"stableDebtToken {s}")
        self.variable_debt = _address(f"variableDebtToken {s}")
        self.feed = _address(f"feed {s}")
        self.strategy = _address(f"rate strategy {s}")
        self.answer = self.usd * FEED_UNIT

    def accrue(self, timestamp: int) -> None:
        """ReserveLogic.updateState: the indices move to their values at this block."""
        self.liquidity_index = am.normalized_income(
            self.liquidity_index, self.liquidity_rate, self.last_update, timestamp
        )
        self.variable_index = am.normalized_variable_debt(
            self.variable_index, self.variable_rate, self.last_update, timestamp
        )
        self.last_update = timestamp


@dataclass(slots=True)
class _Block:
    """A block being written: logs in order, grouped into transactions."""

    number: int
    timestamp: int
    logs: list[RawLog] = field(default_factory=list)
    tx_index: int = -1
    tx_hash: str = ""

    @property
    def hash(self) -> str:
        return _hash(f"block {self.number}")

    def tx(self) -> None:
        self.tx_index += 1
        self.tx_hash = _hash(f"tx {self.number} {self.tx_index}")

    def log(self, address: str, topics: tuple[str, ...], data: str = "0x") -> None:
        self.logs.append(
            RawLog(
                CHAIN_ID,
                self.number,
                self.hash,
                len(self.logs),
                self.tx_hash,
                self.tx_index,
                address,
                topics,
                data,
            )
        )

    def batch(self, *, live: bool, checkpoint: bool, **extra: Any) -> BlockBatch:
        header = BlockHeader(
            CHAIN_ID, self.number, self.hash, _hash(f"block {self.number - 1}"), self.timestamp
        )
        return BlockBatch(header, self.logs, self.number, live, checkpoint=checkpoint, **extra)


class SyntheticMarket:
    """One Aave V3 pool with WETH and USDC reserves and `accounts` borrowers, as logs."""

    def __init__(self, accounts: int, seed: int = 7) -> None:
        self.accounts = accounts
        self.rng = Random(seed)
        self.pool = _address("Pool")
        self.configurator = _address("PoolConfigurator")
        self.oracle = _address("AaveOracle")
        pct = _ray_per_year
        # rates: liquidity, stable borrow, variable borrow (per year)
        self.weth = _Reserve("WETH", 18, 3000, 8000, 8250, 10500, pct(1.5), pct(4.0), pct(2.5))
        self.usdc = _Reserve("USDC", 6, 1, 7700, 8000, 10450, pct(3.5), pct(6.0), pct(5.0))
        self.reserves = (self.weth, self.usdc)
        self.number = 100

    @property
    def config(self) -> ChainConfig:
        return ChainConfig(
            chain_id=CHAIN_ID,
            uniswap_v3=UniswapV3Config(_address("UniswapV3Factory"), _address("NPM")),
            name="fanout-bench",
            usd_tokens=(self.usdc.asset,),
            aave_v3=AaveV3Config(self.pool, self.configurator, self.oracle),
        )

    def _next_block(self) -> _Block:
        self.number += 1
        return _Block(self.number, GENESIS_TIME + BLOCK_SECONDS * self.number)

    def _answer(self, block: _Block, reserve: _Reserve) -> None:
        reserve.round_id += 1
        block.log(
            reserve.feed,
            (ev.ANSWER_UPDATED, _topic(reserve.answer), _topic(reserve.round_id)),
            _data(block.timestamp),
        )

    def _reserve_data(self, block: _Block, reserve: _Reserve) -> None:
        block.log(
            self.pool,
            (ev.RESERVE_DATA_UPDATED, _topic(reserve.asset)),
            _data(
                reserve.liquidity_rate,
                reserve.stable_rate,
                reserve.variable_rate,
                reserve.liquidity_index,
                reserve.variable_index,
            ),
        )

    def setup_blocks(self) -> list[BlockBatch]:
        """The market, then the accounts, ACCOUNTS_PER_BLOCK a block, as a backfill reads them
        (only the last block a checkpoint)."""
        block = self._next_block()
        block.tx()  # AaveOracle's constructor registers the feeds
        for r in self.reserves:
            block.log(self.oracle, (ev.ASSET_SOURCE_UPDATED, _topic(r.asset), _topic(r.feed)))
        block.tx()  # PoolConfigurator.initReserves, then the risk parameters
        for r in self.reserves:
            block.log(
                self.configurator,
                (ev.RESERVE_INITIALIZED, _topic(r.asset), _topic(r.a_token)),
                _data(r.stable_debt, r.variable_debt, r.strategy),
            )
        for r in self.reserves:
            block.log(
                self.configurator,
                (ev.COLLATERAL_CONFIGURATION_CHANGED, _topic(r.asset)),
                _data(r.ltv, r.liquidation_threshold, r.liquidation_bonus),
            )
        for r in self.reserves:
            block.tx()
            self._answer(block, r)
            block.tx()  # the first supply of the reserve: rates and indices
            self._reserve_data(block, r)
        tokens = {r.asset: TokenInfo(r.asset, r.symbol, r.decimals) for r in self.reserves}
        # The feeds as the source reads them (eth_call) when AssetSourceUpdated names them.
        reads = {r.feed: SourceRead(r.feed, "feed", r.answer) for r in self.reserves}
        batches = [block.batch(live=False, checkpoint=False, tokens=tokens, price_reads=reads)]

        users = [_address(f"user {i}") for i in range(self.accounts)]
        for start in range(0, len(users), ACCOUNTS_PER_BLOCK):
            block = self._next_block()
            for r in self.reserves:
                r.accrue(block.timestamp)
            for user in users[start : start + ACCOUNTS_PER_BLOCK]:
                self._supply_and_borrow(block, user)
            batches.append(block.batch(live=False, checkpoint=False))
        batches[-1].checkpoint = True  # the end of the backfill range: everything is valued
        return batches

    def _supply_and_borrow(self, block: _Block, user: str) -> None:
        weth, usdc = self.weth, self.usdc
        supplied = int(self.rng.uniform(0.5, 20.0) * 10**weth.decimals)
        borrow_usd = supplied / 10**weth.decimals * weth.usd * weth.ltv / 10_000
        borrowed = int(borrow_usd * self.rng.uniform(0.2, 0.95) * 10**usdc.decimals)
        # Pool.supply: rates, the aToken's Transfer and Mint, collateral on, Supply.
        block.tx()
        self._reserve_data(block, weth)
        block.log(weth.a_token, (ERC20_TRANSFER, _topic(0), _topic(user)), _data(supplied))
        block.log(
            weth.a_token,
            (ev.SCALED_MINT, _topic(user), _topic(user)),
            _data(supplied, 0, weth.liquidity_index),
        )
        block.log(self.pool, (ev.COLLATERAL_ENABLED, _topic(weth.asset), _topic(user)))
        block.log(
            self.pool,
            (ev.SUPPLY, _topic(weth.asset), _topic(user), _topic(0)),
            _data(user, supplied),
        )
        # Pool.borrow (variable): rates, the debt token's Transfer and Mint, Borrow.
        block.tx()
        self._reserve_data(block, usdc)
        block.log(usdc.variable_debt, (ERC20_TRANSFER, _topic(0), _topic(user)), _data(borrowed))
        block.log(
            usdc.variable_debt,
            (ev.SCALED_MINT, _topic(user), _topic(user)),
            _data(borrowed, 0, usdc.variable_index),
        )
        block.log(
            self.pool,
            (ev.BORROW, _topic(usdc.asset), _topic(user), _topic(0)),
            _data(user, borrowed, VARIABLE_RATE_MODE, usdc.variable_rate),
        )

    def price_block(self) -> BlockBatch:
        """A live block with one new WETH answer (a step of about 1%, around the reference)."""
        block = self._next_block()
        weth = self.weth
        drift = 1.0 + self.rng.gauss(0.0, 0.01) - 0.1 * (weth.answer / (weth.usd * FEED_UNIT) - 1)
        weth.answer = max(1, round(weth.answer * drift))
        block.tx()
        self._answer(block, weth)
        return block.batch(live=True, checkpoint=True)


def account_updates(out: ShardOutput) -> list[AccountUpdate]:
    part = out.parts.get("aave_v3")
    return part.updates if part is not None else []


class Pipeline:
    """The dataflow's steps called in order in one thread: market, to_shards, every shard."""

    def __init__(self, config: ChainConfig, shards: int) -> None:
        self.market_step = market_mapper({config.chain_id: config}, shards)
        self.market: MarketState | None = None
        self.shards: dict[str, ShardState] = {}
        self.dead_letters = 0  # logs the steps could not read: must stay 0

    def feed(self, batch: BlockBatch) -> tuple[float, list[tuple[float, ShardOutput]]]:
        """(market seconds, [(shard seconds, output)]) for one block."""
        started = time.perf_counter()
        self.market, out = self.market_step(self.market, batch)
        market_s = time.perf_counter() - started
        self.dead_letters += len(out.dead_letters)
        outs = []
        for key, item in to_shards(out):
            started = time.perf_counter()
            self.shards[key], shard_out = shard_step(self.shards.get(key), item)
            outs.append((time.perf_counter() - started, shard_out))
        return market_s, outs


def _setup(market: SyntheticMarket, pipeline: Pipeline) -> None:
    started = time.perf_counter()
    setup = market.setup_blocks()
    built = time.perf_counter() - started
    logs = sum(len(b.logs) for b in setup)
    started = time.perf_counter()
    updated = 0
    for batch in setup:
        _, outs = pipeline.feed(batch)
        updated = sum(len(account_updates(o)) for _, o in outs)
    fed = time.perf_counter() - started
    if updated != market.accounts or pipeline.dead_letters:
        raise AssertionError(
            f"setup valued {updated} accounts (expected {market.accounts}), "
            f"{pipeline.dead_letters} dead letters"
        )
    print(
        f"# fanout setup: {len(setup)} blocks, {logs} logs built in {built:.2f} s, "
        f"through the steps in {fed:.2f} s",
        file=sys.stderr,
        flush=True,
    )


def run_pure(accounts: int, shards: int, repeats: int) -> None:
    """The steps in one thread, as one Bytewax worker would run them, without Bytewax."""
    market = SyntheticMarket(accounts)
    pipeline = Pipeline(market.config, shards)
    _setup(market, pipeline)
    totals: list[float] = []
    markets: list[float] = []
    slowest: list[float] = []
    publish: list[float] = []
    inputs = 0
    for _ in range(repeats):
        batch = market.price_block()
        started = time.perf_counter()
        market_s, outs = pipeline.feed(batch)
        total = time.perf_counter() - started
        updated = sum(len(account_updates(o)) for _, o in outs)
        if updated != accounts:
            raise AssertionError(f"{updated} account updates, expected {accounts}")
        totals.append(total * 1000)
        markets.append(market_s * 1000)
        slowest.append(max(s for s, _ in outs) * 1000)
        inputs = len(outs)
        # Not in the figure: what the bus sink then does with them (JSON for the stream).
        started = time.perf_counter()
        for _, out in outs:
            [account_event(u) for u in account_updates(out)]
        publish.append((time.perf_counter() - started) * 1000)
    p50 = percentile(totals, 50)
    emit(
        "price_fanout_10k_accounts_ms",
        p50,
        "ms",
        p50=round(p50, 3),
        max=round(max(totals), 3),
        target_ms=TARGET_MS,
        accounts=accounts,
        shards=shards,
        shards_with_input=inputs,
        repeats=repeats,
        market_step_ms_p50=round(percentile(markets, 50), 3),
        slowest_shard_ms_p50=round(percentile(slowest, 50), 3),
        bus_events_ms_p50=round(percentile(publish, 50), 3),
        path="pure steps, one thread",
    )


# ---------------------------------------------------------------------------------------------
# The same steps in a Bytewax flow. Processes share progress through small files: the source
# emits the next price block only when every account of the previous one came out, and the
# latency is (last arrival at the sink) - (emission), on the wall clock of one machine.


class _Progress:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}
        self._counts: dict[int, int] = {}

    def emitted(self, number: int) -> None:
        with (self.directory / "emitted.txt").open("a") as f:
            f.write(f"{number} {time.time()!r}\n")

    def count(self, number: int) -> int:
        """Account updates of block `number` that reached a sink so far (any process)."""
        for path in self.directory.glob("arrivals-*.txt"):
            with path.open() as f:
                f.seek(self._offsets.get(path, 0))
                text = f.read()
            end = text.rfind("\n") + 1
            self._offsets[path] = self._offsets.get(path, 0) + end
            for line in text[:end].splitlines():
                block, _shard, count, _at = line.split()
                self._counts[int(block)] = self._counts.get(int(block), 0) + int(count)
        return self._counts.get(number, 0)

    @staticmethod
    def latencies(directory: Path, accounts: int) -> tuple[list[float], dict[int, set[int]]]:
        """Milliseconds per price block, and the shards each worker valued."""
        emitted = {}
        for line in (directory / "emitted.txt").read_text().splitlines():
            number, at = line.split()
            emitted[int(number)] = float(at)
        last: dict[int, float] = {}
        counts: dict[int, int] = {}
        workers: dict[int, set[int]] = {}
        for path in directory.glob("arrivals-*.txt"):
            worker = int(path.stem.split("-")[1])
            for line in path.read_text().splitlines():
                block_s, shard, count, at = line.split()
                block = int(block_s)
                last[block] = max(last.get(block, 0.0), float(at))
                counts[block] = counts.get(block, 0) + int(count)
                workers.setdefault(worker, set()).add(int(shard))
        for block in emitted:
            if counts.get(block) != accounts:
                raise AssertionError(f"block {block}: {counts.get(block)} account updates")
        return [(last[b] - at) * 1000 for b, at in sorted(emitted.items())], workers


class _PacedPartition(StatefulSourcePartition[BlockBatch, None]):
    def __init__(self, accounts: int, repeats: int, progress: _Progress) -> None:
        self.market = SyntheticMarket(accounts)
        self.setup: list[BlockBatch] | None = self.market.setup_blocks()
        self.remaining = repeats
        self.progress = progress
        self.waiting_for: int | None = None

    def next_batch(self) -> list[BlockBatch]:
        if self.waiting_for is not None:
            if self.progress.count(self.waiting_for) < self.market.accounts:
                return []  # Bytewax calls again after a millisecond
            self.waiting_for = None
        if self.setup is not None:
            batches, self.setup = self.setup, None
            self.waiting_for = batches[-1].header.number
            return batches
        if self.remaining == 0:
            raise StopIteration
        self.remaining -= 1
        batch = self.market.price_block()
        self.waiting_for = batch.header.number
        self.progress.emitted(batch.header.number)
        return [batch]

    def snapshot(self) -> None:
        return None


class _PacedSource(FixedPartitionedSource[BlockBatch, None]):
    def __init__(self, accounts: int, repeats: int, directory: Path) -> None:
        self.accounts, self.repeats, self.directory = accounts, repeats, directory

    def list_parts(self) -> list[str]:
        return ["blocks"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PacedPartition:
        return _PacedPartition(self.accounts, self.repeats, _Progress(self.directory))


class _ArrivalPartition(StatelessSinkPartition[ShardOutput]):
    def __init__(self, path: Path) -> None:
        self.file = path.open("a")

    def write_batch(self, items: list[ShardOutput]) -> None:
        now = time.time()
        lines = "".join(
            f"{o.block.number} {o.shard} {len(account_updates(o))} {now!r}\n"
            for o in items
            if account_updates(o)
        )
        if lines:
            self.file.write(lines)
            self.file.flush()

    def close(self) -> None:
        self.file.close()


class _ArrivalSink(DynamicSink[ShardOutput]):
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ArrivalPartition:
        return _ArrivalPartition(self.directory / f"arrivals-{worker_index}.txt")


def bench_flow(accounts: int, shards: int, repeats: int, directory: Path) -> Dataflow:
    """`flows.dataflow.build_flow`'s market and shard stages, fed by the synthetic chain."""
    config = SyntheticMarket(accounts).config
    flow = Dataflow("fanout_bench")
    blocks = op.input("chain", flow, _PacedSource(accounts, repeats, directory))
    by_chain = op.key_on("by_chain", blocks, lambda b: str(b.header.chain_id))
    market = op.map(
        "market_out",
        op.stateful_map("market", by_chain, market_mapper({CHAIN_ID: config}, shards)),
        lambda kv: kv[1],
    )
    shard_inputs = op.flat_map("to_shards", market, to_shards)
    positions = op.map(
        "positions_out",
        op.stateful_map("positions", shard_inputs, shard_step),
        lambda kv: kv[1],
    )
    op.output("done", positions, _ArrivalSink(directory))
    return flow


def run_bytewax(
    accounts: int, shards: int, repeats: int, processes: int, workers_per_process: int
) -> None:
    """Each process its own interpreter (`python -m bench.fanout --process I ...`)."""
    directory = Path(tempfile.mkdtemp(prefix="defimon-fanout-"))
    addresses = ",".join(f"localhost:{free_port()}" for _ in range(processes))
    children: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(processes):
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.fanout",
                    f"--accounts={accounts}",
                    f"--shards={shards}",
                    f"--repeats={repeats}",
                    f"--process={index}",
                    f"--processes={processes}",
                    f"--workers-per-process={workers_per_process}",
                    f"--addresses={addresses}",
                    f"--progress={directory}",
                ]
            )
            children.append(child)
        for child in children:
            if child.wait(timeout=900) != 0:
                raise RuntimeError(f"a flow process exited with {child.returncode}")
        latencies, workers = _Progress.latencies(directory, accounts)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        shutil.rmtree(directory, ignore_errors=True)
    p50 = percentile(latencies, 50)
    emit(
        "price_fanout_10k_accounts_ms",
        p50,
        "ms",
        p50=round(p50, 3),
        max=round(max(latencies), 3),
        target_ms=TARGET_MS,
        accounts=accounts,
        shards=shards,
        repeats=repeats,
        path="bytewax",
        processes=processes,
        workers=processes * workers_per_process,
        shards_per_worker=[len(workers.get(w, ())) for w in range(processes * workers_per_process)],
    )


def _flow_process(args: argparse.Namespace) -> None:
    flow = bench_flow(args.accounts, args.shards, args.repeats, Path(args.progress))
    many = args.processes > 1
    cli_main(
        flow,
        workers_per_process=args.workers_per_process,
        process_id=args.process if many else None,
        addresses=args.addresses.split(",") if many else None,
        epoch_interval=timedelta(seconds=Settings().epoch_seconds),
    )


def run(accounts: int, shards: int, repeats: int, *, bytewax: bool) -> None:
    tune_gc()  # as the runtime does
    run_pure(accounts, shards, repeats)
    if bytewax:
        for processes, workers_per_process in ((1, 1), (1, 2), (2, 1)):
            run_bytewax(accounts, shards, repeats, processes, workers_per_process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=ACCOUNTS)
    parser.add_argument("--shards", type=int, default=SHARDS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--bytewax", action="store_true", help="also through Bytewax flows")
    # internal: one process of a Bytewax run
    parser.add_argument("--process", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--workers-per-process", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--addresses", default="", help=argparse.SUPPRESS)
    parser.add_argument("--progress", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.process is not None:
        _flow_process(args)
        return
    configure("warning")
    run(args.accounts, args.shards, args.repeats, bytewax=args.bytewax)


if __name__ == "__main__":
    main()
