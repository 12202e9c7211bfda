"""Bulk chain history for the benchmarks: a block of ~200 transactions per JSON-RPC batch.

Automine is off while it runs; every block is one `eth_sendTransaction` batch (explicit
nonces and gas, so anvil neither estimates nor reorders) and one `evm_mine`. Swaps use the
extreme price limits, so they cannot hit a limit and revert; their sizes are small against
the liquidity and their directions lean back toward the start price, so prices stay near it.

With `aave=True` (a deployment with Aave), every wallet first supplies all four reserves, then
a share of the transactions are Aave supplies, borrows, repays and withdrawals, and every
block carries a feed update. Nothing is estimated, so validity comes from bookkeeping: the
generator tracks what each wallet supplied and borrowed and keeps every wallet's debt well
under its borrowing power and every reserve's debt well under its cash.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from random import Random
from typing import Any

from devnet.aave import COLLATERAL_PARAMS, feed_answer
from devnet.contracts import (
    AAVE_BORROW,
    AAVE_REPAY,
    AAVE_SUPPLY,
    AAVE_WITHDRAW,
    DEADLINE,
    DECREASE_LIQUIDITY_TOPIC,
    FEED_SET_ANSWER,
    INCREASE_LIQUIDITY_TOPIC,
    INTEREST_RATE_VARIABLE,
    MAX_UINT128,
    MAX_UINT256,
    NPM_COLLECT,
    NPM_DECREASE_LIQUIDITY,
    NPM_INCREASE_LIQUIDITY,
    NPM_MINT,
    POOL_SLOT0,
    ROUTER_EXACT_INPUT_SINGLE,
    TRANSFER_TOPIC,
    ZERO_TOPIC,
)
from devnet.deploy import ALL_TOKEN_SPECS, Deployment, Pool
from devnet.oracles import FEED
from devnet.rpc import RpcClient
from devnet.txs import Tx, TxFailed, pending_nonces, tx_params
from devnet.univ3math import MAX_SQRT_RATIO, MIN_SQRT_RATIO, floor_tick

log = logging.getLogger("defimon.devnet")

SWAP_GAS = 400_000  # a router swap uses 100-200k, more when it crosses ticks
POSITION_GAS = 700_000  # an NPM mint uses up to ~500k
SWAP_SHARE = 0.9  # the rest are position actions: mint, increase, decrease, collect
BASE_LIQUIDITY_USD = 20_000_000  # per pool, over ±BASE_RANGE_SPACINGS
BASE_RANGE_SPACINGS = 100
SWAP_SIZE = (0.0005, 0.003)  # of BASE_LIQUIDITY_USD
LEAN_BAND_SPACINGS = 20  # at this distance from the start price, 95% of swaps push back
AAVE_GAS = 600_000  # supply/borrow/repay/withdraw use 150-350k
AAVE_SHARE = 0.3  # of the transactions, with aave=True
AAVE_SUPPLY_USD = 2_000_000  # every wallet supplies this much of every reserve at the start
AAVE_BOOTSTRAP_TXS_PER_BLOCK = 40  # 40 x AAVE_GAS fits anvil's default 30M block
AAVE_ACTION_USD = (1_000, 30_000)
AAVE_MAX_DEBT_SHARE = 0.4  # of a wallet's borrowing power (collateral x LTV), at reference prices
AAVE_MAX_UTILIZATION = 0.6  # of what was supplied to a reserve
FEED_STEP = 0.002  # standard deviation of one feed update (log-price); pulled back to reference
FEED_GAS = 120_000


@dataclass(slots=True)
class _Position:
    owner: str
    pool: Pool
    liquidity: int


@dataclass(frozen=True, slots=True)
class _Action:
    kind: str  # "swap", "mint", "increase", "decrease", "collect", "aave"
    pool: Pool | None  # None for Aave actions
    token_id: int = 0


_AAVE_ACTION = _Action("aave", None)


def generate_history(
    rpc_url: str,
    deployment: Deployment,
    target_logs: int,
    seed: int = 11,
    txs_per_block: int = 200,
    *,
    aave: bool = False,
) -> int:
    """Mine blocks of swaps and position changes until at least `target_logs` logs exist.

    With `aave`, AAVE_SHARE of the transactions are Aave actions and every block updates a
    price feed; this expects a deployment whose wallets have no Aave positions yet.
    Returns the number of logs emitted by the generated blocks. Automine is on again afterwards.
    """
    if aave and deployment.aave is None:
        raise ValueError("generate_history(aave=True) needs a deployment with Aave")
    started = time.perf_counter()
    with RpcClient(rpc_url, timeout=120.0) as rpc:
        latest = rpc.call("eth_getBlockByNumber", ["latest", False])
        gas_limit = int(latest["gasLimit"], 16)
        first_block = int(latest["number"], 16) + 1
        # the sum of the transactions' gas limits must fit in a block, not only the gas they use
        rpc.call("evm_setBlockGasLimit", [hex(max(gas_limit, txs_per_block * POSITION_GAS))])
        try:
            generator = _HistoryGenerator(rpc, deployment, Random(seed), txs_per_block, aave)
            logs = generator.run(target_logs)
        finally:
            rpc.call("evm_setAutomine", [True])
            rpc.call("evm_setBlockGasLimit", [hex(gas_limit)])
        last_block = int(rpc.call("eth_blockNumber"), 16)
    elapsed = time.perf_counter() - started
    log.info(
        "history: %d logs, %d txs in blocks %d-%d in %.1f s (%.0f logs/s)",
        logs,
        generator.tx_count,
        first_block,
        last_block,
        elapsed,
        logs / elapsed if elapsed else 0.0,
    )
    return logs


class _HistoryGenerator:
    def __init__(
        self, rpc: RpcClient, deployment: Deployment, rng: Random, txs_per_block: int, aave: bool
    ) -> None:
        self.rpc = rpc
        self.deployment = deployment
        self.rng = rng
        self.txs_per_block = txs_per_block
        self.tx_count = 0
        self.wallets = deployment.wallets
        self.nonces = pending_nonces(rpc, [*self.wallets, deployment.deployer])
        self.aave = deployment.aave if aave else None
        self.lending = _LendingBook(deployment) if self.aave is not None else None
        self.positions: dict[int, _Position] = {}
        self.usd_price = {
            token.address: ALL_TOKEN_SPECS[token.symbol][1] / 10**token.decimals
            for token in deployment.tokens.values()
        }  # USD per base unit
        self.ticks = self._read_ticks()
        self.center = dict(self.ticks)
        self.swap_prefix: dict[tuple[str, bool, str], str] = {}
        self.swap_suffix = {
            True: _word(0) + _word(MIN_SQRT_RATIO + 1),
            False: _word(0) + _word(MAX_SQRT_RATIO - 1),
        }

    def run(self, target_logs: int) -> int:
        rpc = self.rpc
        rpc.call("evm_setAutomine", [False])
        logs = self._mine(self._bootstrap_block())
        if self.lending is not None:
            supplies = self.lending.bootstrap()
            for start in range(0, len(supplies), AAVE_BOOTSTRAP_TXS_PER_BLOCK):
                logs += self._mine(supplies[start : start + AAVE_BOOTSTRAP_TXS_PER_BLOCK])
        while logs < target_logs:
            logs += self._mine(self._random_block())
        return logs

    # -- blocks ---------------------------------------------------------------------------

    def _bootstrap_block(self) -> list[tuple[Tx, _Action]]:
        """Deep liquidity around every price, so the swaps that follow move prices only a little."""
        block = []
        for index, pool in enumerate(self.deployment.pools):
            wallet = self.wallets[index % len(self.wallets)]
            spacing = pool.tick_spacing
            base = floor_tick(self.ticks[pool.address], spacing)
            lower, upper = (
                base - BASE_RANGE_SPACINGS * spacing,
                base + BASE_RANGE_SPACINGS * spacing,
            )
            block.append(self._mint_tx(pool, wallet, lower, upper, BASE_LIQUIDITY_USD))
            for _ in range(4):
                block.append(self._random_mint(pool))
        return block

    def _random_block(self) -> list[tuple[Tx, _Action]]:
        rng = self.rng
        pools = self.deployment.pools
        touched: set[int] = set()  # one action per position per block keeps each one valid
        block = []
        lending = self.lending
        if lending is not None:
            lending.new_block()
            block.append(lending.feed_update(rng))
        while len(block) < self.txs_per_block:
            if lending is not None and rng.random() < AAVE_SHARE:
                block.append(lending.action(rng))
                continue
            pool = rng.choice(pools)
            if rng.random() < SWAP_SHARE or len(self.positions) < 10:
                block.append(self._swap_tx(pool))
                continue
            roll = rng.random()
            token_id = rng.choice(list(self.positions))
            if roll < 0.3 or token_id in touched:
                block.append(self._random_mint(pool))
                continue
            touched.add(token_id)
            position = self.positions[token_id]
            owner = position.owner
            if roll < 0.55:
                amount0, amount1 = self._amounts(position.pool, 10 ** rng.uniform(3, 5))
                data = NPM_INCREASE_LIQUIDITY.encode((token_id, amount0, amount1, 0, 0, DEADLINE))
                action = _Action("increase", position.pool, token_id)
            elif roll < 0.8 and position.liquidity > 0:
                liquidity = max(1, position.liquidity * rng.randint(5, 30) // 100)
                data = NPM_DECREASE_LIQUIDITY.encode((token_id, liquidity, 0, 0, DEADLINE))
                action = _Action("decrease", position.pool, token_id)
            else:
                data = NPM_COLLECT.encode((token_id, owner, MAX_UINT128, MAX_UINT128))
                action = _Action("collect", position.pool, token_id)
            block.append((Tx(owner, self.deployment.position_manager, data, POSITION_GAS), action))
        return block

    def _swap_tx(self, pool: Pool) -> tuple[Tx, _Action]:
        rng = self.rng
        spacing = pool.tick_spacing
        offset = (self.ticks[pool.address] - self.center[pool.address]) / (
            LEAN_BAND_SPACINGS * spacing
        )
        down = rng.random() < 0.5 + 0.45 * max(-1.0, min(1.0, offset))
        token_in, token_out = (pool.token0, pool.token1) if down else (pool.token1, pool.token0)
        wallet = rng.choice(self.wallets)
        key = (pool.address, down, wallet)
        prefix = self.swap_prefix.get(key)
        if prefix is None:
            # the call's arguments are all static words: everything but the amount is fixed per key
            prefix = (
                ROUTER_EXACT_INPUT_SINGLE.selector
                + "".join(
                    (
                        _word(int(token_in, 16)),
                        _word(int(token_out, 16)),
                        _word(pool.fee),
                        _word(int(wallet, 16)),
                    )
                )
                + _word(DEADLINE)
            )
            self.swap_prefix[key] = prefix
        usd = BASE_LIQUIDITY_USD * rng.uniform(*SWAP_SIZE)
        amount_in = int(usd / self.usd_price[token_in])
        data = prefix + _word(amount_in) + self.swap_suffix[down]
        return Tx(wallet, self.deployment.swap_router, data, SWAP_GAS), _Action("swap", pool)

    def _random_mint(self, pool: Pool) -> tuple[Tx, _Action]:
        rng = self.rng
        spacing = pool.tick_spacing
        base = floor_tick(self.ticks[pool.address], spacing)
        lower = base - spacing * rng.randint(0, 10)
        upper = base + spacing * rng.randint(1, 10)
        return self._mint_tx(
            pool, rng.choice(self.wallets), lower, upper, 10 ** rng.uniform(4, 5.7)
        )

    def _mint_tx(
        self, pool: Pool, wallet: str, lower: int, upper: int, usd: float
    ) -> tuple[Tx, _Action]:
        amount0, amount1 = self._amounts(pool, usd)
        params = (
            pool.token0,
            pool.token1,
            pool.fee,
            lower,
            upper,
            amount0,
            amount1,
            0,
            0,
            wallet,
            DEADLINE,
        )
        return Tx(
            wallet, self.deployment.position_manager, NPM_MINT.encode(params), POSITION_GAS
        ), _Action("mint", pool)

    # -- chain access ---------------------------------------------------------------------

    def _mine(self, block: list[tuple[Tx, _Action]]) -> int:
        """Send and mine one block; returns its log count and updates positions and prices."""
        calls = []
        for tx, _ in block:
            calls.append(("eth_sendTransaction", [tx_params(tx, self.nonces[tx.sender])]))
            self.nonces[tx.sender] += 1
        hashes = self.rpc.batch(calls)
        self.tx_count += len(hashes)
        action_of = dict(zip(hashes, (action for _, action in block), strict=True))
        self.rpc.call("evm_mine", [])
        receipts: list[dict[str, Any]] = self.rpc.call("eth_getBlockReceipts", ["latest"])
        if len(receipts) != len(block):
            raise TxFailed(f"sent {len(block)} transactions but the block holds {len(receipts)}")
        logs = 0
        failed = 0
        for receipt in receipts:
            logs += len(receipt["logs"])
            if receipt["status"] != "0x1":
                failed += 1
                continue
            self._apply_logs(receipt["logs"], action_of[receipt["transactionHash"]])
        if failed:
            log.warning(
                "history: %d of %d transactions reverted in one block", failed, len(receipts)
            )
        self.ticks = self._read_ticks()
        return logs

    def _apply_logs(self, logs: list[dict[str, Any]], action: _Action) -> None:
        if action.pool is None or action.kind == "swap":
            return  # Aave actions and swaps change no position
        npm = self.deployment.position_manager
        for entry in logs:
            if entry["address"].lower() != npm:
                continue
            topics = entry["topics"]
            if topics[0] == TRANSFER_TOPIC and topics[1] == ZERO_TOPIC:
                self.positions[int(topics[3], 16)] = _Position(
                    "0x" + topics[2][-40:], action.pool, 0
                )
            elif topics[0] == INCREASE_LIQUIDITY_TOPIC:
                self.positions[int(topics[1], 16)].liquidity += int(entry["data"][2:66], 16)
            elif topics[0] == DECREASE_LIQUIDITY_TOPIC:
                self.positions[int(topics[1], 16)].liquidity -= int(entry["data"][2:66], 16)

    def _read_ticks(self) -> dict[str, int]:
        pools = self.deployment.pools
        answers = self.rpc.batch(
            ("eth_call", [{"to": pool.address, "data": POOL_SLOT0.encode()}, "latest"])
            for pool in pools
        )
        return {
            pool.address: POOL_SLOT0.decode(answer)[1]
            for pool, answer in zip(pools, answers, strict=True)
        }

    def _amounts(self, pool: Pool, usd: float) -> tuple[int, int]:
        return int(usd / self.usd_price[pool.token0]), int(usd / self.usd_price[pool.token1])


class _LendingBook:
    """Aave transactions that stay valid without estimation, from the generator's own books.

    Amounts are tracked at the reference prices (feeds only wander ±~1% around them) and
    without interest, which only makes actual debts larger than tracked: so repays are partial
    (at most half the tracked debt) or type(uint256).max, and the debt limits leave room.
    """

    def __init__(self, deployment: Deployment) -> None:
        assert deployment.aave is not None
        if any(source.kind != FEED for source in deployment.aave.sources.values()):
            # it pre-encodes PriceFeed.setAnswer for every reserve; proxies and adapters differ
            raise ValueError(
                "generate_history moves PriceFeed sources only: deploy with layout='feeds', "
                f"not {deployment.layout!r}"
            )
        self.aave = deployment.aave
        self.deployer = deployment.deployer
        self.wallets = deployment.wallets
        self.symbols = list(self.aave.reserves)
        self.usd_price = {  # USD per base unit
            symbol: ALL_TOKEN_SPECS[symbol][1] / 10**reserve.decimals
            for symbol, reserve in self.aave.reserves.items()
        }
        self.reference = {
            symbol: feed_answer(ALL_TOKEN_SPECS[symbol][1]) for symbol in self.symbols
        }
        self.answers = dict(self.reference)  # assumes the feeds were not moved before
        self.supplied: dict[tuple[str, str], int] = {}  # (wallet, symbol) -> amount
        self.debt: dict[tuple[str, str], int] = {}
        self.reserve_supplied = dict.fromkeys(self.symbols, 0)
        self.reserve_debt = dict.fromkeys(self.symbols, 0)
        self.touched: set[tuple[str, str]] = set()  # one action per (wallet, reserve) per block

    def new_block(self) -> None:
        self.touched.clear()

    def bootstrap(self) -> list[tuple[Tx, _Action]]:
        return [
            self._supply(wallet, symbol, AAVE_SUPPLY_USD)
            for wallet in self.wallets
            for symbol in self.symbols
        ]

    def feed_update(self, rng: Random) -> tuple[Tx, _Action]:
        # Only a reserve with a PriceFeed of its own takes setAnswer (the mainnet layout's
        # proxy and adapter are moved by the lending simulator); the same draws for "feeds".
        symbol = rng.choice([s for s in self.symbols if s in self.aave.feeds])
        current = math.log(self.answers[symbol])
        pull = 0.1 * (math.log(self.reference[symbol]) - current)
        answer = max(1, round(math.exp(current + pull + rng.gauss(0, FEED_STEP))))
        self.answers[symbol] = answer
        data = FEED_SET_ANSWER.encode(answer)
        return Tx(self.deployer, self.aave.feeds[symbol], data, FEED_GAS), _AAVE_ACTION

    def action(self, rng: Random) -> tuple[Tx, _Action]:
        wallet = rng.choice(self.wallets)
        symbol = rng.choice(self.symbols)
        key = (wallet, symbol)
        usd = rng.uniform(*AAVE_ACTION_USD)
        roll = rng.random()
        if key in self.touched:
            return self._supply(wallet, symbol, usd)  # a supply is valid whatever came before
        self.touched.add(key)
        amount = int(usd / self.usd_price[symbol])
        if roll < 0.35 and self.debt.get(key, 0) > 0:
            return self._repay(wallet, symbol, rng)
        if roll < 0.75 and self._may_borrow(wallet, symbol, amount):
            self.debt[key] = self.debt.get(key, 0) + amount
            self.reserve_debt[symbol] += amount
            reserve = self.aave.reserves[symbol]
            data = AAVE_BORROW.encode(reserve.asset, amount, INTEREST_RATE_VARIABLE, 0, wallet)
            return Tx(wallet, self.aave.pool, data, AAVE_GAS), _AAVE_ACTION
        if roll < 0.85 and self._may_withdraw(wallet, symbol, amount):
            self.supplied[key] -= amount
            self.reserve_supplied[symbol] -= amount
            data = AAVE_WITHDRAW.encode(self.aave.reserves[symbol].asset, amount, wallet)
            return Tx(wallet, self.aave.pool, data, AAVE_GAS), _AAVE_ACTION
        return self._supply(wallet, symbol, usd)

    def _supply(self, wallet: str, symbol: str, usd: float) -> tuple[Tx, _Action]:
        amount = int(usd / self.usd_price[symbol])
        key = (wallet, symbol)
        self.supplied[key] = self.supplied.get(key, 0) + amount
        self.reserve_supplied[symbol] += amount
        data = AAVE_SUPPLY.encode(self.aave.reserves[symbol].asset, amount, wallet, 0)
        return Tx(wallet, self.aave.pool, data, AAVE_GAS), _AAVE_ACTION

    def _repay(self, wallet: str, symbol: str, rng: Random) -> tuple[Tx, _Action]:
        key = (wallet, symbol)
        debt = self.debt[key]
        # interest only adds to the debt, so half the tracked debt is always there to repay
        amount = MAX_UINT256 if rng.random() < 0.3 else max(1, debt // 2)
        repaid = debt if amount == MAX_UINT256 else amount
        self.debt[key] = debt - repaid
        self.reserve_debt[symbol] -= repaid
        asset = self.aave.reserves[symbol].asset
        data = AAVE_REPAY.encode(asset, amount, INTEREST_RATE_VARIABLE, wallet)
        return Tx(wallet, self.aave.pool, data, AAVE_GAS), _AAVE_ACTION

    def _usd(self, holdings: dict[tuple[str, str], int], wallet: str, ltv: bool) -> float:
        total = 0.0
        for symbol in self.symbols:
            value = holdings.get((wallet, symbol), 0) * self.usd_price[symbol]
            total += value * COLLATERAL_PARAMS[symbol][0] / 10_000 if ltv else value
        return total

    def _may_borrow(self, wallet: str, symbol: str, amount: int) -> bool:
        power = self._usd(self.supplied, wallet, ltv=True)
        debt = self._usd(self.debt, wallet, ltv=False) + amount * self.usd_price[symbol]
        reserve_debt = self.reserve_debt[symbol] + amount
        return (
            debt <= AAVE_MAX_DEBT_SHARE * power
            and reserve_debt <= AAVE_MAX_UTILIZATION * self.reserve_supplied[symbol]
        )

    def _may_withdraw(self, wallet: str, symbol: str, amount: int) -> bool:
        key = (wallet, symbol)
        if self.supplied.get(key, 0) < 2 * amount:
            return False
        # the reserve keeps its cash for the debt, and the wallet its borrowing power
        left = self.reserve_supplied[symbol] - amount
        if self.reserve_debt[symbol] > AAVE_MAX_UTILIZATION * left:
            return False
        power_after = self._usd(self.supplied, wallet, ltv=True) - (
            amount * self.usd_price[symbol] * COLLATERAL_PARAMS[symbol][0] / 10_000
        )
        return self._usd(self.debt, wallet, ltv=False) <= AAVE_MAX_DEBT_SHARE * power_after


def _word(value: int) -> str:
    return format(value, "064x")
