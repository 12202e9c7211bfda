"""A seeded market on the devnet: LPs open, change and close positions, traders swap.

Prices follow a bounded, mean-reverting random walk in tick space. Each swap is an
`exactInputSingle` with a generous input and a `sqrtPriceLimitX96` at the walk's next target,
so it stops exactly there: prices cross ticks and positions drift in and out of range,
whatever the liquidity.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from random import Random
from typing import Any

from devnet.contracts import (
    COLLECT_TOPIC,
    DEADLINE,
    DECREASE_LIQUIDITY_TOPIC,
    ERC20_BALANCE_OF,
    INCREASE_LIQUIDITY_TOPIC,
    MAX_UINT128,
    NPM_BURN,
    NPM_COLLECT,
    NPM_DECREASE_LIQUIDITY,
    NPM_INCREASE_LIQUIDITY,
    NPM_MINT,
    NPM_POSITIONS,
    NPM_SAFE_TRANSFER_FROM,
    NPM_TRANSFER_FROM,
    POOL_SLOT0,
    ROUTER_EXACT_INPUT_SINGLE,
    TRANSFER_TOPIC,
    ZERO_TOPIC,
)
from devnet.deploy import ALL_TOKEN_SPECS, Deployment, Pool
from devnet.loop import run_every
from devnet.rpc import RpcClient, RpcError, RpcTransportError
from devnet.txs import wait_receipts
from devnet.univ3math import MAX_TICK, MIN_TICK, floor_tick, sqrt_ratio_at_tick

log = logging.getLogger("defimon.devnet")

WALK_STEP_SPACINGS = 2.5  # standard deviation of one swap's move, in tick spacings
WALK_REVERSION = 0.15  # share of the distance to the start price a swap walks back
WALK_BAND_SPACINGS = 40  # the walk stays within start ± this many tick spacings
SWAP_INPUT_CAP_USD = 5_000_000  # enough to reach the target through the liquidity minted here
MIN_OPEN_PER_POOL = 2  # every pool keeps this many positions with liquidity
MAX_OPEN_POSITIONS = 60  # above this, LPs close more than they open
GAS_MARGIN = 1.25
_POSITION_TOPICS = frozenset(
    {TRANSFER_TOPIC, INCREASE_LIQUIDITY_TOPIC, DECREASE_LIQUIDITY_TOPIC, COLLECT_TOPIC}
)


@dataclass(slots=True)
class _Position:
    token_id: int
    pool: Pool
    owner: str
    tick_lower: int
    tick_upper: int
    liquidity: int
    needs_collect: bool  # tokens may be owed: burn() reverts until they are collected


class MarketSimulator:
    """Drives the deployment's pools from its wallets; deterministic for a seed and chain state."""

    def __init__(self, rpc_url: str, deployment: Deployment, seed: int = 7) -> None:
        self.deployment = deployment
        self._rpc = RpcClient(rpc_url)
        self._rng = Random(seed)
        self._lock = threading.Lock()  # swap() may be called from another thread while run() loops
        self._pools_by_key = {
            (pool.token0, pool.token1, pool.fee): pool for pool in deployment.pools
        }
        self._usd_price = {
            token.address: ALL_TOKEN_SPECS[token.symbol][1] / 10**token.decimals
            for token in deployment.tokens.values()
        }  # USD per base unit
        self._positions: dict[int, _Position] = {}
        self._pending_mint: tuple[Pool, int, int] | None = None
        self._center_tick = {pool.address: self._slot0(pool)[1] for pool in deployment.pools}
        self._sync_positions()

    def close(self) -> None:
        self._rpc.close()

    # -- public API -----------------------------------------------------------------------

    def step(self) -> list[int]:
        """One round: every pool gets a swap, plus a few LP actions; returns the blocks mined."""
        with self._lock:
            rng = self._rng
            pools = self.deployment.pools
            setup: list[tuple[str, Pool | None]] = []
            for pool in pools:
                # the router reverts swaps that only cross empty ticks, so keep the band covered
                if not self._band_covered(pool):
                    setup.append(("base", pool))
                open_count = sum(
                    1 for p in self._positions.values() if p.pool == pool and p.liquidity > 0
                )
                setup += [("mint", pool)] * max(0, MIN_OPEN_PER_POOL - open_count)
            actions: list[tuple[str, Pool | None]] = [("swap", pool) for pool in pools]
            actions += [("lp", None)] * rng.randint(1, 3)
            rng.shuffle(actions)
            blocks = []
            for kind, target in setup + actions:
                if kind == "swap" and target is not None:
                    block = self._swap(target, None)
                elif kind in ("mint", "base") and target is not None:
                    block = self._mint(target, kind="base" if kind == "base" else None)
                else:
                    block = self._random_lp_action()
                if block is not None:
                    blocks.append(block)
            return blocks

    def swap(self, pool: Pool | None = None, zero_for_one: bool | None = None) -> int:
        """One swap transaction (a random pool and direction unless given); returns its block."""
        with self._lock:
            chosen = pool if pool is not None else self._rng.choice(self.deployment.pools)
            block = self._swap(chosen, zero_for_one)
            if block is None:
                raise RpcError(f"swap in {self.deployment.pool_label(chosen)} failed (see the log)")
            return block

    def swap_to(self, pool: Pool, sqrt_price_x96: int, wallet: str) -> int | None:
        """Swap `pool` to exactly `sqrt_price_x96` (the swap's price limit), from `wallet`
        with all it holds of the token going in; the block (None: the price is there)."""
        with self._lock:
            sqrt_price = self._slot0(pool)[0]
            if sqrt_price == sqrt_price_x96:
                return None
            down = sqrt_price_x96 < sqrt_price
            token_in, token_out = (pool.token0, pool.token1) if down else (pool.token1, pool.token0)
            call = {"to": token_in, "data": ERC20_BALANCE_OF.encode(wallet)}
            balance = ERC20_BALANCE_OF.decode(self._rpc.call("eth_call", [call, "latest"]))[0]
            params = (token_in, token_out, pool.fee, wallet, DEADLINE, balance, 0, sqrt_price_x96)
            what = f"swap {self.deployment.pool_label(pool)} to sqrtPriceX96 {sqrt_price_x96}"
            return self._send(
                wallet, self.deployment.swap_router, ROUTER_EXACT_INPUT_SINGLE.encode(params), what
            )

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """step() every `interval` s until `stop` is set; RPC errors are logged, not raised."""
        run_every(self.step, stop, interval, "market simulator")

    def positions_of(self, wallet: str) -> list[int]:
        wallet = wallet.lower()
        return sorted(token_id for token_id, p in self._positions.items() if p.owner == wallet)

    def all_positions(self) -> dict[int, str]:
        """Token id -> owner of every position that exists (not burned)."""
        return {token_id: p.owner for token_id, p in sorted(self._positions.items())}

    # -- actions --------------------------------------------------------------------------

    def _swap(self, pool: Pool, zero_for_one: bool | None) -> int | None:
        rng = self._rng
        spacing = pool.tick_spacing
        sqrt_price, tick = self._slot0(pool)[:2]
        center = self._center_tick[pool.address]
        if zero_for_one is None:
            move = -WALK_REVERSION * (tick - center) + rng.gauss(0, WALK_STEP_SPACINGS * spacing)
            low, high = center - WALK_BAND_SPACINGS * spacing, center + WALK_BAND_SPACINGS * spacing
            target = max(low, min(high, tick + round(move)))
            if abs(target - tick) < spacing:  # always move at least a tick spacing
                target = tick - spacing if target < tick or tick >= high else tick + spacing
        else:
            distance = spacing * rng.randint(1, 4)
            target = tick - distance if zero_for_one else tick + distance
        down = target < tick
        # a swap that stopped on a tick boundary going down leaves tick = boundary - 1, so a
        # target of tick + 1 would be no move at all: the pool rejects that limit ('SPL')
        if not down and sqrt_ratio_at_tick(target) <= sqrt_price:
            target += spacing
        # keep the limit strictly inside TickMath's range
        target = max(MIN_TICK + 1, min(MAX_TICK - 1, target))
        token_in, token_out = (pool.token0, pool.token1) if down else (pool.token1, pool.token0)
        wallet = rng.choice(self.deployment.wallets)
        amount_in = int(SWAP_INPUT_CAP_USD / self._usd_price[token_in])
        params = (
            token_in,
            token_out,
            pool.fee,
            wallet,
            DEADLINE,
            amount_in,
            0,
            sqrt_ratio_at_tick(target),
        )
        what = f"swap {self.deployment.pool_label(pool)} tick {tick} -> {target}"
        return self._send(
            wallet, self.deployment.swap_router, ROUTER_EXACT_INPUT_SINGLE.encode(params), what
        )

    def _band_covered(self, pool: Pool) -> bool:
        reach = WALK_BAND_SPACINGS * pool.tick_spacing
        center = self._center_tick[pool.address]
        return any(
            p.pool == pool
            and p.liquidity > 0
            and p.tick_lower <= center - reach
            and p.tick_upper >= center + reach
            for p in self._positions.values()
        )

    def mint_for(self, wallet: str, pool: Pool, kind: str = "medium") -> int | None:
        """A mint by (and to) this wallet; the block, None if it would revert."""
        with self._lock:
            return self._mint(pool, kind, wallet)

    def transfer(self, token_id: int, receiver: str) -> int | None:
        """Move a position NFT from its owner to `receiver`; the block."""
        with self._lock:
            owner = self._positions[token_id].owner
            data = NPM_TRANSFER_FROM.encode(owner, receiver, token_id)
            return self._send(owner, self.deployment.position_manager, data, f"move #{token_id}")

    def _mint(self, pool: Pool, kind: str | None = None, wallet: str | None = None) -> int | None:
        rng = self._rng
        spacing = pool.tick_spacing
        tick = self._slot0(pool)[1]
        base = floor_tick(tick, spacing)
        if kind is None:
            kind = rng.choices(
                ["narrow", "medium", "wide", "full", "below", "above"], [3, 3, 2, 0.5, 1, 1]
            )[0]
        if kind == "base":  # covers the whole band of the price walk, and a margin
            center = floor_tick(self._center_tick[pool.address], spacing)
            lower = center - (WALK_BAND_SPACINGS + 10) * spacing
            upper = center + (WALK_BAND_SPACINGS + 10) * spacing
        elif kind == "narrow":
            lower = base - spacing * rng.randint(0, 2)
            upper = base + spacing * rng.randint(1, 3)
        elif kind == "medium":
            lower = base - spacing * rng.randint(3, 15)
            upper = base + spacing * rng.randint(3, 15)
        elif kind == "wide":
            lower = base - spacing * rng.randint(30, 200)
            upper = base + spacing * rng.randint(30, 200)
        elif kind == "full":
            lower, upper = floor_tick(MIN_TICK + spacing, spacing), floor_tick(MAX_TICK, spacing)
        elif kind == "below":  # only token1; comes into range when the price falls
            upper = base - spacing * rng.randint(1, 8)
            lower = upper - spacing * rng.randint(2, 10)
        else:  # above: only token0; comes into range when the price rises
            lower = base + spacing * rng.randint(2, 8)
            upper = lower + spacing * rng.randint(2, 10)
        lower, upper = floor_tick(lower, spacing), floor_tick(upper, spacing)
        if lower >= upper:
            upper = lower + spacing
        wallet = wallet or rng.choice(self.deployment.wallets)
        usd = 10 ** rng.uniform(6, 6.5) if kind == "base" else 10 ** rng.uniform(3, 6)
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
        self._pending_mint = (pool, lower, upper)
        what = f"mint {kind} [{lower}, {upper}] in {self.deployment.pool_label(pool)}"
        try:
            return self._send(
                wallet, self.deployment.position_manager, NPM_MINT.encode(params), what
            )
        finally:
            self._pending_mint = None

    def _random_lp_action(self) -> int | None:
        rng = self._rng
        positions = list(self._positions.values())
        open_positions = [p for p in positions if p.liquidity > 0]
        closing = [p for p in positions if p.liquidity == 0 and p.needs_collect]
        burnable = [p for p in positions if p.liquidity == 0 and not p.needs_collect]
        crowded = len(open_positions) > MAX_OPEN_POSITIONS
        weighted: list[tuple[str, float]] = [
            ("mint", 0.5 if crowded else 3.0),
            ("increase", 2.0 if positions else 0.0),
            ("decrease_partial", 2.0 if open_positions else 0.0),
            ("decrease_full", (4.0 if crowded else 1.5) if open_positions else 0.0),
            ("collect", (6.0 if closing else 1.0) if positions else 0.0),
            ("burn", 5.0 if burnable else 0.0),
            ("transfer", 1.5 if positions else 0.0),
        ]
        kind = rng.choices([name for name, _ in weighted], [weight for _, weight in weighted])[0]
        npm = self.deployment.position_manager
        if kind == "mint":
            return self._mint(rng.choice(self.deployment.pools))
        if kind == "increase":
            position = rng.choice(positions)
            amount0, amount1 = self._amounts(position.pool, 10 ** rng.uniform(3, 5.5))
            params = (position.token_id, amount0, amount1, 0, 0, DEADLINE)
            data = NPM_INCREASE_LIQUIDITY.encode(params)
        elif kind in ("decrease_partial", "decrease_full"):
            position = rng.choice(open_positions)
            share = 1.0 if kind == "decrease_full" else rng.uniform(0.1, 0.7)
            liquidity = (
                position.liquidity if share == 1.0 else max(1, int(position.liquidity * share))
            )
            data = NPM_DECREASE_LIQUIDITY.encode((position.token_id, liquidity, 0, 0, DEADLINE))
        elif kind == "collect":
            position = rng.choice(closing or positions)
            data = NPM_COLLECT.encode((position.token_id, position.owner, MAX_UINT128, MAX_UINT128))
        elif kind == "burn":
            position = rng.choice(burnable)
            data = NPM_BURN.encode(position.token_id)
        else:
            position = rng.choice(positions)
            receiver = rng.choice([w for w in self.deployment.wallets if w != position.owner])
            transfer = NPM_SAFE_TRANSFER_FROM if rng.random() < 0.5 else NPM_TRANSFER_FROM
            data = transfer.encode(position.owner, receiver, position.token_id)
        return self._send(position.owner, npm, data, f"{kind} #{position.token_id}")

    # -- chain access ---------------------------------------------------------------------

    def _amounts(self, pool: Pool, usd: float) -> tuple[int, int]:
        """Desired amounts worth `usd` of each token; NPM takes what the range needs."""
        return int(usd / self._usd_price[pool.token0]), int(usd / self._usd_price[pool.token1])

    def _slot0(self, pool: Pool) -> tuple[Any, ...]:
        data = self._rpc.call(
            "eth_call", [{"to": pool.address, "data": POOL_SLOT0.encode()}, "latest"]
        )
        return POOL_SLOT0.decode(data)

    def _send(self, sender: str, to: str, data: str, what: str) -> int | None:
        """One transaction, mined by automine; None (and a log line) if it would revert."""
        tx = {"from": sender, "to": to, "data": data}
        try:
            # estimating first surfaces the revert reason instead of mining a failed tx
            gas = int(self._rpc.call("eth_estimateGas", [tx]), 16)
        except RpcTransportError:
            raise
        except RpcError as exc:
            log.warning("%s skipped: %s", what, str(exc)[:200])
            return None
        tx["gas"] = hex(int(gas * GAS_MARGIN))
        tx_hash = self._rpc.call("eth_sendTransaction", [tx])
        receipt = wait_receipts(self._rpc, [tx_hash])[0]
        block = int(receipt["blockNumber"], 16)
        if receipt["status"] != "0x1":
            log.warning("%s reverted in block %d", what, block)
            return block
        self._apply_logs(receipt["logs"])
        log.debug("%s in block %d", what, block)
        return block

    def _apply_logs(self, logs: list[dict[str, Any]]) -> None:
        """Follow the position manager's events, so the Python view matches the chain."""
        npm = self.deployment.position_manager
        for entry in logs:
            topics = entry["topics"]
            if entry["address"].lower() != npm or topics[0] not in _POSITION_TOPICS:
                continue  # token transfers, pool events, NFT approvals
            token_id = int(topics[1 if topics[0] != TRANSFER_TOPIC else 3], 16)
            position = self._positions.get(token_id)
            if topics[0] == TRANSFER_TOPIC:
                receiver = "0x" + topics[2][-40:]
                if topics[1] == ZERO_TOPIC:
                    if self._pending_mint is None:
                        raise RuntimeError(
                            f"position #{token_id} minted by a transaction that is not a mint"
                        )
                    pool, lower, upper = self._pending_mint
                    self._positions[token_id] = _Position(
                        token_id, pool, receiver, lower, upper, 0, False
                    )
                elif topics[2] == ZERO_TOPIC:
                    self._positions.pop(token_id, None)
                elif position is not None:
                    position.owner = receiver
            elif position is None:
                continue
            elif topics[0] == INCREASE_LIQUIDITY_TOPIC:
                position.liquidity += int(entry["data"][2:66], 16)
                position.needs_collect = True
            elif topics[0] == DECREASE_LIQUIDITY_TOPIC:
                position.liquidity -= int(entry["data"][2:66], 16)
                position.needs_collect = True
            elif topics[0] == COLLECT_TOPIC:
                position.needs_collect = False

    def _sync_positions(self) -> None:
        """Load the positions that already exist (e.g. from generate_history) from the chain."""
        transfers = self._rpc.call(
            "eth_getLogs",
            [
                {
                    "address": self.deployment.position_manager,
                    "topics": [TRANSFER_TOPIC],
                    "fromBlock": hex(self.deployment.start_block),
                    "toBlock": "latest",
                }
            ],
        )
        owners: dict[int, str] = {}
        for entry in transfers:
            token_id = int(entry["topics"][3], 16)
            if entry["topics"][2] == ZERO_TOPIC:
                owners.pop(token_id, None)
            else:
                owners[token_id] = "0x" + entry["topics"][2][-40:]
        token_ids = sorted(owners)
        answers = self._rpc.batch(
            (
                "eth_call",
                [
                    {
                        "to": self.deployment.position_manager,
                        "data": NPM_POSITIONS.encode(token_id),
                    },
                    "latest",
                ],
            )
            for token_id in token_ids
        )
        for token_id, answer in zip(token_ids, answers, strict=True):
            fields = NPM_POSITIONS.decode(answer)
            token0, token1, fee, lower, upper, liquidity = (
                fields[2].lower(),
                fields[3].lower(),
                *fields[4:8],
            )
            owed = fields[10] > 0 or fields[11] > 0
            self._positions[token_id] = _Position(
                token_id,
                self._pools_by_key[(token0, token1, fee)],
                owners[token_id],
                lower,
                upper,
                liquidity,
                owed,
            )
        if token_ids:
            log.info("simulator found %d existing positions", len(token_ids))
