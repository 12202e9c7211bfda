"""Bulk chain history for the benchmarks: a block of ~200 transactions per JSON-RPC batch.

Automine is off while it runs; every block is one `eth_sendTransaction` batch (explicit
nonces and gas, so anvil neither estimates nor reorders) and one `evm_mine`. Swaps use the
extreme price limits, so they cannot hit a limit and revert; their sizes are small against
the liquidity and their directions lean back toward the start price, so prices stay near it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from random import Random
from typing import Any

from devnet.contracts import (
    DEADLINE,
    DECREASE_LIQUIDITY_TOPIC,
    INCREASE_LIQUIDITY_TOPIC,
    MAX_UINT128,
    NPM_COLLECT,
    NPM_DECREASE_LIQUIDITY,
    NPM_INCREASE_LIQUIDITY,
    NPM_MINT,
    POOL_SLOT0,
    ROUTER_EXACT_INPUT_SINGLE,
    TRANSFER_TOPIC,
    ZERO_TOPIC,
)
from devnet.deploy import TOKEN_SPECS, Deployment, Pool
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


@dataclass(slots=True)
class _Position:
    owner: str
    pool: Pool
    liquidity: int


@dataclass(frozen=True, slots=True)
class _Action:
    kind: str  # "swap", "mint", "increase", "decrease", "collect"
    pool: Pool
    token_id: int = 0


def generate_history(
    rpc_url: str, deployment: Deployment, target_logs: int, seed: int = 11, txs_per_block: int = 200
) -> int:
    """Mine blocks of swaps and position changes until at least `target_logs` logs exist.

    Returns the number of logs emitted by the generated blocks. Automine is on again afterwards.
    """
    started = time.perf_counter()
    with RpcClient(rpc_url, timeout=120.0) as rpc:
        latest = rpc.call("eth_getBlockByNumber", ["latest", False])
        gas_limit = int(latest["gasLimit"], 16)
        first_block = int(latest["number"], 16) + 1
        # the sum of the transactions' gas limits must fit in a block, not only the gas they use
        rpc.call("evm_setBlockGasLimit", [hex(max(gas_limit, txs_per_block * POSITION_GAS))])
        try:
            generator = _HistoryGenerator(rpc, deployment, Random(seed), txs_per_block)
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
        self, rpc: RpcClient, deployment: Deployment, rng: Random, txs_per_block: int
    ) -> None:
        self.rpc = rpc
        self.deployment = deployment
        self.rng = rng
        self.txs_per_block = txs_per_block
        self.tx_count = 0
        self.wallets = deployment.wallets
        self.nonces = pending_nonces(rpc, self.wallets)
        self.positions: dict[int, _Position] = {}
        self.usd_price = {
            token.address: TOKEN_SPECS[token.symbol][1] / 10**token.decimals
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
        for _ in range(self.txs_per_block):
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
        if action.kind == "swap":
            return
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


def _word(value: int) -> str:
    return format(value, "064x")
