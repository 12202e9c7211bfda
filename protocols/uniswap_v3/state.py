"""Uniswap V3 on the flow's two stages (protocols/spec.py), as pure steps.

- `UniswapMarket` (per chain, on the market stage): reads the block's pool, factory and position
  manager logs in order, keeps the pools (price, tick, in-range liquidity) and their exact fee
  replicas, resolves each position NFT to its pool (the pool's `Mint` from the position manager
  precedes the NFT events in the same transaction), routes USD prices through the pools, and
  sends each position shard its positions' events and the pool snapshots and prices that changed
  for the pools and tokens it holds.
- `UniswapShard` (per `chain:shard`): applies position events (one version per event) and
  revalues, once per block, every position whose pool, prices or own state changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocols.aave_v3.state import SEED_LOG_INDEX
from protocols.base import ZERO_ADDRESS, DeadLetter, shard_of
from protocols.journal import JournaledDict, JournaledObjects
from protocols.prices import Anchor
from protocols.spec import MarketBlock, MarketPart, ShardPart
from protocols.uniswap_v3 import events as ev
from protocols.uniswap_v3.events import decode_pool_extra
from protocols.uniswap_v3.fee_tracker import NpmFeeTracker, NpmPosition
from protocols.uniswap_v3.math import MathError
from protocols.uniswap_v3.replica import PoolPosition, PoolReplica, ReplicaError, TickInfo
from protocols.uniswap_v3.router import PriceRouter, RoutePool
from protocols.uniswap_v3.valuation import pool_depth, value_position
from protocols.windows import Observation, Subject, WindowBook, WindowBoundary
from schemas.chain import RawLog
from schemas.chain_config import ChainConfig
from schemas.positions import (
    BlockRef,
    PoolSnapshot,
    PositionValue,
    TokenPrice,
    UniswapPosition,
)
from schemas.watch import UniswapSeed

NAME = "uniswap_v3"


def position_id(chain_id: int, position_manager: str, token_id: int) -> str:
    return f"{chain_id}:{position_manager}:{token_id}"


# ---------------------------------------------------------------------------------------------
# Stage 1: the market (per chain)


@dataclass(frozen=True, slots=True)
class PoolInfo:
    address: str
    token0: str
    token1: str
    fee: int
    tick_spacing: int
    created_block: int


@dataclass(slots=True)
class PoolState:
    sqrt_price_x96: int = 0
    tick: int = 0
    liquidity: int = 0

    def snapshot(self, pool: str, replica: PoolReplica | None = None) -> PoolSnapshot:
        if replica is None:
            return PoolSnapshot(pool, self.sqrt_price_x96, self.tick, self.liquidity)
        return PoolSnapshot(
            pool,
            self.sqrt_price_x96,
            self.tick,
            self.liquidity,
            replica.fee_growth_global0_x128,
            replica.fee_growth_global1_x128,
        )


@dataclass(frozen=True, slots=True)
class PositionEvent:
    """One position-manager event, resolved to its pool. `kind` names the state change."""

    kind: str  # mint | increase | decrease | collect | transfer | burn
    position_id: str
    log_index: int
    tx_hash: str
    liquidity: int = 0
    amount0: int = 0
    amount1: int = 0
    owner: str = ""
    created: UniswapPosition | None = None
    npm_fees: NpmPosition | None = None  # the manager's fee checkpoint after this event


@dataclass(slots=True)
class UniswapShardInput:
    """A shard's Uniswap work for one block."""

    events: list[PositionEvent] = field(default_factory=list)
    pools: dict[str, PoolSnapshot] = field(default_factory=dict)
    prices: dict[str, TokenPrice] = field(default_factory=dict)
    # position id -> what a static collect(max, max) returns now (fees and owed principal)
    fees: dict[str, tuple[int, int]] = field(default_factory=dict)
    # At a window boundary: the fees as of the boundary's last block.
    boundary_fees: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(slots=True)
class UniswapOutput:
    """The market stage's Uniswap output for one block (its rows: protocols/uniswap_v3/rows.py)."""

    block: BlockRef
    new_pools: list[PoolInfo] = field(default_factory=list)
    pool_snapshots: list[PoolSnapshot] = field(default_factory=list)
    # fee state for time travel: (pool, tick, info or None if cleared), (pool, key, position)
    ticks: list[tuple[str, int, TickInfo | None]] = field(default_factory=list)
    pool_positions: list[tuple[str, tuple[str, int, int], PoolPosition]] = field(
        default_factory=list
    )
    # Pools whose state changed (the snapshots' pools) and pools a shard saw an event for.
    changed: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _PendingMint:
    """The position manager's latest pool `Mint` in the current transaction."""

    tx_hash: str
    pool: str
    mint: ev.PoolMint


def _track_fees(
    state: UniswapMarket,
    pool: str,
    token_id: int,
    event: ev.IncreaseLiquidity | ev.DecreaseLiquidity | ev.Collect | ev.Transfer,
    pending: _PendingMint | None,
    dead: list[DeadLetter],
    log: RawLog,
) -> NpmPosition | None:
    """Apply a manager event to its fee checkpoints (after the pool logs before it)."""
    if state.fee_tracker is None:
        state.fee_tracker = NpmFeeTracker(state.position_manager)
    tracker, replica = state.fee_tracker, state.replicas.get(pool)
    if replica is None:
        return None
    try:
        if isinstance(event, ev.IncreaseLiquidity):
            if token_id in tracker.positions:
                tracker.on_increase(replica, token_id, event.liquidity)
            else:
                assert pending is not None
                tracker.on_mint(
                    replica,
                    token_id,
                    pending.mint.tick_lower,
                    pending.mint.tick_upper,
                    event.liquidity,
                )
        elif isinstance(event, ev.DecreaseLiquidity):
            tracker.on_decrease(replica, token_id, event.liquidity, event.amount0, event.amount1)
        elif isinstance(event, ev.Collect):
            tracker.on_collect(replica, token_id, event.amount0, event.amount1)
        elif event.recipient == ZERO_ADDRESS:
            tracker.on_burn(token_id)
            return None
        else:
            return tracker.positions.get(token_id)
    except (ReplicaError, MathError, AssertionError) as exc:
        dead.append(DeadLetter(log, f"fee tracking: {exc}"))
        return None
    return tracker.positions.get(token_id)


@dataclass(slots=True)
class UniswapMarket(MarketPart):
    chain_id: int
    factory: str
    position_manager: str
    shards: int
    pools: dict[str, PoolInfo] = field(default_factory=JournaledDict)
    pool_states: dict[str, PoolState] = field(default_factory=JournaledObjects)
    # token id -> pool; the only per-position memory this stage keeps.
    position_pools: dict[int, str] = field(default_factory=JournaledDict)
    pool_shards: dict[str, set[int]] = field(default_factory=JournaledObjects)
    token_pools: dict[str, set[str]] = field(default_factory=JournaledObjects)
    # pool -> its ±2% depth in its own tokens (valuation.pool_depth), kept for routing and
    # recomputed only for the pools a block changed: the tick walk is the costly part.
    depths: dict[str, tuple[int, int]] = field(default_factory=JournaledDict)
    # Prices routed incrementally: the router keeps the last walk, and the pools whose price,
    # depth or existence changed since it last ran are what it re-decides from.
    router: PriceRouter = field(default_factory=PriceRouter)
    route_dirty: set[str] = field(default_factory=set)
    # Exact fee state: a replica per pool, the manager's per-token checkpoints, which tokens
    # live in which pool, and what changed since the last checkpoint block.
    replicas: dict[str, PoolReplica] = field(default_factory=JournaledObjects)
    fee_tracker: NpmFeeTracker | None = None
    pool_tokens: dict[str, set[int]] = field(default_factory=JournaledObjects)
    dirty_pools: set[str] = field(default_factory=set)
    fee_dirty: set[int] = field(default_factory=set)
    # Wallet watch mode (set by the first seed): the wallets watched; None in full-protocol
    # mode. Position-manager events of NFTs no watched wallet holds are then not tracked.
    watched: set[str] | None = None

    def role_of(self, address: str) -> ev.Role | None:
        if address in self.pools:
            return ev.Role.POOL
        if address == self.position_manager:
            return ev.Role.POSITION_MANAGER
        if address == self.factory:
            return ev.Role.FACTORY
        return None

    def window_boundary(self, ctx: MarketBlock) -> None:
        # Uncollected fees as of the boundary's last block (before this block moves them).
        for pid, fees in _settle_fees(self).items():
            self._input(ctx, shard_of(pid, self.shards)).boundary_fees[pid] = fees

    def _input(self, ctx: MarketBlock, shard: int) -> UniswapShardInput:
        return ctx.part(shard, NAME, UniswapShardInput)

    def step(self, ctx: MarketBlock) -> UniswapOutput:
        state, batch, block = self, ctx.batch, ctx.block
        out = UniswapOutput(block)
        changed_pools, touched_pools = out.changed, out.touched
        pending: _PendingMint | None = None

        def shard_input(shard: int) -> UniswapShardInput:
            return self._input(ctx, shard)

        if batch.seeds is not None and state.watched is None:
            # Watch mode from the first block on: other wallets' NFTs are never opened.
            state.watched = set()

        for log in batch.logs:
            role = state.role_of(log.address)
            if role is None:
                continue
            try:
                event: Any = ev.decode(role, log)
                if event is None and role is ev.Role.POOL:
                    event = decode_pool_extra(log)  # flash, fee protocol, collects: fee state
            except ev.DecodeError as exc:
                ctx.dead_letters.append(DeadLetter(log, str(exc)))
                continue
            if event is None:
                continue
            if role is ev.Role.POOL:
                replica = state.replicas.get(log.address)
                if replica is not None:
                    try:
                        replica.apply(event)
                    except (ReplicaError, MathError) as exc:
                        ctx.dead_letters.append(DeadLetter(log, f"fee replica: {exc}"))
                state.dirty_pools.add(log.address)
                if not isinstance(event, ev.Initialize | ev.Swap | ev.PoolMint | ev.PoolBurn):
                    continue
            if isinstance(event, ev.PoolCreated):
                info = PoolInfo(
                    event.pool,
                    event.token0,
                    event.token1,
                    event.fee,
                    event.tick_spacing,
                    block.number,
                )
                if event.pool not in state.pools:
                    state.pools[event.pool] = info
                    state.pool_states[event.pool] = PoolState()
                    state.replicas[event.pool] = PoolReplica(event.fee, event.tick_spacing)
                    state.token_pools.setdefault(event.token0, set()).add(event.pool)
                    state.token_pools.setdefault(event.token1, set()).add(event.pool)
                    out.new_pools.append(info)
                continue
            if isinstance(event, ev.Initialize | ev.Swap | ev.PoolMint | ev.PoolBurn):
                pool_state = state.pool_states[log.address]
                if isinstance(event, ev.Initialize):
                    pool_state.sqrt_price_x96, pool_state.tick = event.sqrt_price_x96, event.tick
                elif isinstance(event, ev.Swap):
                    pool_state.sqrt_price_x96, pool_state.tick = event.sqrt_price_x96, event.tick
                    pool_state.liquidity = event.liquidity
                else:
                    # Active liquidity moves only for ranges that contain the current tick.
                    if event.tick_lower <= pool_state.tick < event.tick_upper:
                        sign = 1 if isinstance(event, ev.PoolMint) else -1
                        pool_state.liquidity += sign * event.amount
                    if isinstance(event, ev.PoolMint) and event.owner == state.position_manager:
                        pending = _PendingMint(log.tx_hash, log.address, event)
                changed_pools.add(log.address)
                continue
            # Position-manager events.
            assert isinstance(
                event, ev.IncreaseLiquidity | ev.DecreaseLiquidity | ev.Collect | ev.Transfer
            )
            token_id = event.token_id
            pid = position_id(state.chain_id, state.position_manager, token_id)
            pool = state.position_pools.get(token_id)
            if isinstance(event, ev.Transfer) and event.sender == ZERO_ADDRESS:
                if state.watched is not None and (
                    event.recipient not in state.watched
                    or pending is None
                    or pending.tx_hash != log.tx_hash
                ):
                    # Watch mode: another wallet's new NFT, or one in a pool not followed yet
                    # (the reader seeds a watched wallet's new NFTs at their block).
                    continue
                if pending is None or pending.tx_hash != log.tx_hash:
                    ctx.dead_letters.append(
                        DeadLetter(log, f"position {token_id} minted without a pool Mint in its tx")
                    )
                    continue
                pool = pending.pool
                info = state.pools[pool]
                t0, t1 = ctx.token(info.token0), ctx.token(info.token1)
                created = UniswapPosition(
                    chain_id=state.chain_id,
                    position_id=pid,
                    position_manager=state.position_manager,
                    token_id=token_id,
                    pool=pool,
                    token0=info.token0,
                    token1=info.token1,
                    symbol0=t0.symbol,
                    symbol1=t1.symbol,
                    decimals0=t0.decimals,
                    decimals1=t1.decimals,
                    fee=info.fee,
                    owner=event.recipient,
                    tick_lower=pending.mint.tick_lower,
                    tick_upper=pending.mint.tick_upper,
                )
                state.position_pools[token_id] = pool
                state.pool_tokens.setdefault(pool, set()).add(token_id)
                shard = shard_of(pid, state.shards)
                state.pool_shards.setdefault(pool, set()).add(shard)
                item = shard_input(shard)
                item.events.append(
                    PositionEvent(
                        "mint",
                        pid,
                        log.log_index,
                        log.tx_hash,
                        owner=event.recipient,
                        created=created,
                    )
                )
                touched_pools.add(pool)
                continue
            if pool is None:
                if state.watched is not None:
                    continue  # watch mode: an NFT no watched wallet held when it was seeded
                ctx.dead_letters.append(
                    DeadLetter(
                        log, f"position {token_id} is not known (created before the start block?)"
                    )
                )
                continue
            item = shard_input(shard_of(pid, state.shards))
            npm_fees = _track_fees(state, pool, token_id, event, pending, ctx.dead_letters, log)
            if isinstance(event, ev.IncreaseLiquidity | ev.DecreaseLiquidity):
                kind = "increase" if isinstance(event, ev.IncreaseLiquidity) else "decrease"
                pe = PositionEvent(
                    kind,
                    pid,
                    log.log_index,
                    log.tx_hash,
                    event.liquidity,
                    event.amount0,
                    event.amount1,
                    npm_fees=npm_fees,
                )
            elif isinstance(event, ev.Collect):
                pe = PositionEvent(
                    "collect",
                    pid,
                    log.log_index,
                    log.tx_hash,
                    0,
                    event.amount0,
                    event.amount1,
                    owner=event.recipient,
                    npm_fees=npm_fees,
                )
            else:
                kind = "burn" if event.recipient == ZERO_ADDRESS else "transfer"
                pe = PositionEvent(kind, pid, log.log_index, log.tx_hash, owner=event.recipient)
                if kind == "burn":
                    del state.position_pools[token_id]
                    state.pool_tokens.get(pool, set()).discard(token_id)
            item.events.append(pe)
            touched_pools.add(pool)
            state.fee_dirty.add(token_id)

        if batch.seeds is not None:
            # The block's seeds as one (a wallet's, then the NFTs its logs brought).
            parts: list[UniswapSeed] = batch.seeds.parts.get(NAME, [])
            seed = UniswapSeed(
                tuple(p for part in parts for p in part.pools),
                tuple(p for part in parts for p in part.positions),
            )
            changed_pools |= _apply_seed(state, batch.seeds.wallets, seed, out, shard_input)

        for pool in sorted(changed_pools | state.dirty_pools):
            replica = state.replicas.get(pool)
            if replica is None:
                continue
            ticks, keys = replica.drain_changes()
            out.ticks += [(pool, t, replica.ticks.get(t)) for t in sorted(ticks)]
            out.pool_positions += [
                (pool, k, replica.position(*k))
                for k in sorted(keys)
                if k[0] == state.position_manager
            ]
        if batch.checkpoint:
            for pid, fees in _settle_fees(state).items():
                shard_input(shard_of(pid, state.shards)).fees[pid] = fees
        out.pool_snapshots = [
            state.pool_states[p].snapshot(p, state.replicas.get(p)) for p in sorted(changed_pools)
        ]
        for snap in out.pool_snapshots:
            state.depths[snap.pool] = pool_depth(snap, state.replicas.get(snap.pool))
        if changed_pools or out.new_pools:
            ctx.reroute = True
            state.route_dirty |= changed_pools
            state.route_dirty.update(p.address for p in out.new_pools)
        return out

    def route(
        self,
        ctx: MarketBlock,
        usd_tokens: Sequence[str],
        roots: Mapping[str, Anchor],
        min_depth_usd: float,
    ) -> dict[str, TokenPrice]:
        """`route_prices` over every pool, computed incrementally (router.py) from the pools
        that changed since the last route. A token announced in this block may give a pool
        known before other decimals (its metadata could not be read until now): its pools are
        re-read too."""
        # A new set: `route_dirty` is reset below, after the route, not grown here.
        dirty = set(self.route_dirty if self.router.built else self.pools)
        announced = list(ctx.batch.tokens)
        if ctx.batch.seeds is not None:
            announced += list(ctx.batch.seeds.tokens)
        for token in announced:
            dirty |= self.token_pools.get(token, set())
        changed = {a: self._route_pool(ctx, a) for a in sorted(dirty) if a in self.pools}
        self.route_dirty = set()
        return self.router.update(changed, usd_tokens, roots, min_depth_usd)

    def _route_pool(self, ctx: MarketBlock, address: str) -> RoutePool:
        """A pool as routing weighs it (what `route_prices` reads of it)."""
        info, state = self.pools[address], self.pool_states.get(address)
        snapshot = PoolSnapshot(address, 0, 0, 0) if state is None else state.snapshot(address)
        depth = self.depths.get(address)
        return (
            info.token0,
            info.token1,
            ctx.token(info.token0).decimals,
            ctx.token(info.token1).decimals,
            snapshot.sqrt_price_x96,
            pool_depth(snapshot) if depth is None else depth,
        )

    def priced(
        self, ctx: MarketBlock, out: UniswapOutput | None, changed: Sequence[TokenPrice]
    ) -> UniswapOutput | None:
        """Fan-out: changed pools to the shards that hold positions in them, changed prices to
        the shards that hold positions in any pool of that token, and the full current view of
        every pool a shard saw an event for (a new position needs it even if the pool did not
        move)."""
        if out is not None:
            for pool in out.changed:
                snap = self.pool_states[pool].snapshot(pool)
                for shard in self.pool_shards.get(pool, ()):
                    self._input(ctx, shard).pools[pool] = snap
        for price in changed:
            for pool in self.token_pools.get(price.token, ()):
                for shard in self.pool_shards.get(pool, ()):
                    self._input(ctx, shard).prices[price.token] = price
        for item in ctx.inputs.values():
            mine = item.parts.get(NAME)
            if mine is None:
                continue
            for pe in mine.events:
                if pe.created is None:
                    continue
                created_in = pe.created.pool
                mine.pools[created_in] = self.pool_states[created_in].snapshot(created_in)
                info = self.pools[created_in]
                for token in (info.token0, info.token1):
                    if token in ctx.prices:
                        mine.prices[token] = ctx.prices[token]
        return out


def uniswap_market(config: ChainConfig, shards: int) -> UniswapMarket | None:
    uniswap = config.uniswap_v3
    if uniswap is None:
        return None
    return UniswapMarket(config.chain_id, uniswap.factory, uniswap.position_manager, shards)


def _apply_seed(
    state: UniswapMarket,
    wallets: tuple[str, ...],
    seed: UniswapSeed,
    out: UniswapOutput,
    shard_input: Callable[[int], UniswapShardInput],
) -> set[str]:
    """Wallet watch mode: take the pools and NFTs read with eth_call at the end of this block
    (after its logs). A pool the flow does not follow yet gets a replica of its whole tick map
    and the position manager's positions for the NFTs' ranges, so swaps replay exactly from the
    next block on; each NFT opens with the manager's own fee checkpoint. Returns the pools whose
    state the block's output must carry."""
    watched = state.watched if state.watched is not None else set()
    state.watched = watched
    watched.update(wallets)
    changed: set[str] = set()
    for p in seed.pools:
        replica = state.replicas.get(p.pool)
        if p.full and p.pool not in state.pools:
            info = PoolInfo(p.pool, p.token0, p.token1, p.fee, p.tick_spacing, out.block.number)
            state.pools[p.pool] = info
            state.pool_states[p.pool] = PoolState(p.sqrt_price_x96, p.tick, p.liquidity)
            replica = PoolReplica(
                p.fee,
                p.tick_spacing,
                p.sqrt_price_x96,
                p.tick,
                p.liquidity,
                p.fee_growth_global0_x128,
                p.fee_growth_global1_x128,
                p.fee_protocol,
                p.protocol_fees0,
                p.protocol_fees1,
                kept_keys=set(),
            )
            for t in p.ticks:
                replica.ticks[t.tick] = TickInfo(
                    t.liquidity_gross,
                    t.liquidity_net,
                    t.fee_growth_outside0_x128,
                    t.fee_growth_outside1_x128,
                )
                compressed = t.tick // p.tick_spacing
                word = compressed >> 8
                replica.bitmap[word] = replica.bitmap.get(word, 0) | (1 << (compressed & 0xFF))
                replica.changed_ticks.add(t.tick)
            state.replicas[p.pool] = replica
            state.token_pools.setdefault(p.token0, set()).add(p.pool)
            state.token_pools.setdefault(p.token1, set()).add(p.pool)
            out.new_pools.append(info)
            changed.add(p.pool)
        if replica is None:
            continue
        for pp in p.positions:
            key = (pp.owner, pp.tick_lower, pp.tick_upper)
            # A replica from the pool's creation keeps every position already, and a key kept
            # since an earlier seed is current from its logs.
            if replica.kept_keys is None or key in replica.kept_keys:
                continue
            replica.kept_keys.add(key)
            replica.seed_position(
                key,
                PoolPosition(
                    pp.liquidity,
                    pp.fee_growth_inside0_last_x128,
                    pp.fee_growth_inside1_last_x128,
                    pp.tokens_owed0,
                    pp.tokens_owed1,
                ),
            )
            state.dirty_pools.add(p.pool)
    if state.fee_tracker is None:
        state.fee_tracker = NpmFeeTracker(state.position_manager)
    for pos in seed.positions:
        # Also for an NFT this block's logs minted or moved to a watched wallet: the seed is
        # the manager's own state at the end of the block, which those logs led to.
        if pos.pool not in state.pools:
            continue
        state.position_pools[pos.token_id] = pos.pool
        state.pool_tokens.setdefault(pos.pool, set()).add(pos.token_id)
        state.fee_tracker.positions[pos.token_id] = NpmPosition(
            pos.tick_lower,
            pos.tick_upper,
            pos.liquidity,
            pos.fee_inside_last0,
            pos.fee_inside_last1,
            pos.tokens_owed0,
            pos.tokens_owed1,
        )
        shard = shard_of(pos.position_id, state.shards)
        state.pool_shards.setdefault(pos.pool, set()).add(shard)
        shard_input(shard).events.append(
            PositionEvent("watch", pos.position_id, SEED_LOG_INDEX, "", created=pos)
        )
        state.fee_dirty.add(pos.token_id)
    return changed


def _settle_fees(state: UniswapMarket) -> dict[str, tuple[int, int]]:
    """What a static collect returns now, for every position whose fees may have moved since
    the last settlement: those in pools that changed and those with own events.

    Uncollected fees move with every swap in range, so they are settled at checkpoints and
    window boundaries only, not after every log.
    """
    settled: dict[str, tuple[int, int]] = {}
    due = set(state.fee_dirty)
    for dirty in state.dirty_pools:
        due |= state.pool_tokens.get(dirty, set())
    state.dirty_pools.clear()
    state.fee_dirty.clear()
    tracker = state.fee_tracker
    if tracker is None:
        return settled
    for token_id in sorted(due):
        pool = state.position_pools.get(token_id)
        if pool is None or token_id not in tracker.positions:
            continue
        pid = position_id(state.chain_id, state.position_manager, token_id)
        settled[pid] = tracker.uncollected(state.replicas[pool], token_id)
    return settled


# ---------------------------------------------------------------------------------------------
# The position shards


@dataclass(frozen=True, slots=True)
class PositionVersion:
    position: UniswapPosition
    block: BlockRef
    log_index: int
    tx_hash: str
    event: str


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    """A position's state at the end of a block, valued; what the stream sends."""

    position: UniswapPosition
    value: PositionValue
    block: BlockRef
    previous_owner: str | None
    updated_block: int


@dataclass(slots=True)
class UniswapShardOutput:
    versions: list[PositionVersion] = field(default_factory=list)
    updates: list[PositionUpdate] = field(default_factory=list)


def apply_event(pos: UniswapPosition, pe: PositionEvent) -> UniswapPosition:
    replace = dataclasses.replace
    if pe.kind == "increase":
        return replace(
            pos,
            liquidity=pos.liquidity + pe.liquidity,
            deposited0=pos.deposited0 + pe.amount0,
            deposited1=pos.deposited1 + pe.amount1,
        )
    if pe.kind == "decrease":
        return replace(
            pos,
            liquidity=pos.liquidity - pe.liquidity,
            withdrawn0=pos.withdrawn0 + pe.amount0,
            withdrawn1=pos.withdrawn1 + pe.amount1,
        )
    if pe.kind == "collect":
        return replace(
            pos, collected0=pos.collected0 + pe.amount0, collected1=pos.collected1 + pe.amount1
        )
    if pe.kind == "transfer":
        return replace(pos, owner=pe.owner)
    if pe.kind == "burn":
        return replace(pos, burned=True)
    raise ValueError(f"unknown position event {pe.kind!r}")


@dataclass(slots=True)
class UniswapShard(ShardPart):
    positions: dict[str, UniswapPosition] = field(default_factory=JournaledDict)
    updated_block: dict[str, int] = field(default_factory=JournaledDict)
    pool_positions: dict[str, set[str]] = field(default_factory=JournaledObjects)
    token_positions: dict[str, set[str]] = field(default_factory=JournaledObjects)
    pools: dict[str, PoolSnapshot] = field(default_factory=JournaledDict)
    prices: dict[str, TokenPrice] = field(default_factory=dict)
    # Positions changed since they were last valued, and owners they had before a transfer.
    unvalued: set[str] = field(default_factory=set)
    previous_owner: dict[str, str] = field(default_factory=dict)
    fees: dict[str, tuple[int, int]] = field(default_factory=JournaledDict)
    # Positions whose inputs changed since the last window boundary; burned ones observed.
    window_dirty: set[str] = field(default_factory=set)
    ended: list[str] = field(default_factory=list)

    def step(
        self, item: UniswapShardInput | None, block: BlockRef, checkpoint: bool
    ) -> UniswapShardOutput | None:
        state = self
        out = UniswapShardOutput()
        item = item or UniswapShardInput()
        state.pools.update(item.pools)
        state.prices.update(item.prices)
        changed: set[str] = set()
        for pe in item.events:
            if pe.created is not None:
                pos = pe.created
                state.pool_positions.setdefault(pos.pool, set()).add(pe.position_id)
                for token in (pos.token0, pos.token1):
                    state.token_positions.setdefault(token, set()).add(pe.position_id)
            else:
                found = state.positions.get(pe.position_id)
                if found is None:  # cannot happen: the market stage only routes known positions
                    continue
                if pe.kind == "transfer":
                    state.previous_owner.setdefault(pe.position_id, found.owner)
                pos = apply_event(found, pe)
            if pe.npm_fees is not None:
                fees = pe.npm_fees
                pos = dataclasses.replace(
                    pos,
                    fee_inside_last0=fees.fee_growth_inside0_last_x128,
                    fee_inside_last1=fees.fee_growth_inside1_last_x128,
                    tokens_owed0=fees.tokens_owed0,
                    tokens_owed1=fees.tokens_owed1,
                )
            state.positions[pe.position_id] = pos
            state.updated_block[pe.position_id] = block.number
            out.versions.append(PositionVersion(pos, block, pe.log_index, pe.tx_hash, pe.kind))
            changed.add(pe.position_id)
            if pos.burned:
                _unindex(state, pos)
        for pid, owed in item.fees.items():
            state.fees[pid] = owed
            changed.add(pid)
        for pool in item.pools:
            changed |= state.pool_positions.get(pool, set())
        for token in item.prices:
            changed |= state.token_positions.get(token, set())
        state.unvalued |= changed
        state.window_dirty |= changed
        if not checkpoint:
            # Backfill: the stream keeps only each position's latest state per batch anyway, so
            # value what changed once, at the batch's last block, not at every block.
            return out if out.versions else None
        burned = []
        for pid in sorted(state.unvalued):
            pos = state.positions[pid]
            out.updates.append(
                PositionUpdate(
                    pos,
                    _value(state, pos),
                    block,
                    state.previous_owner.get(pid),
                    state.updated_block.get(pid, block.number),
                )
            )
            if pos.burned:
                burned.append(pid)
        state.unvalued.clear()
        state.previous_owner.clear()
        for pid in burned:
            _forget(state, pid)
        return out if out.versions or out.updates else None

    def observe(
        self, item: UniswapShardInput | None, windows: WindowBook, boundary: WindowBoundary
    ) -> set[str]:
        """Observe every changed position as of the boundary's last block, with the fees the
        market settled then."""
        state = self
        for pid, owed in (item.boundary_fees if item is not None else {}).items():
            state.fees[pid] = owed
            state.unvalued.add(pid)
            state.window_dirty.add(pid)
        observed: set[str] = set()
        for pid in sorted(state.window_dirty):
            pos = state.positions.get(pid)
            if pos is None:
                continue
            value = _value(state, pos)
            fees_now = _owed(state, pos)
            windows.observe(
                Subject(pos.chain_id, pid, pos.protocol, pos.owner),
                Observation(
                    value_usd=value.value_usd,
                    il_usd=value.il_usd,
                    fees0=None
                    if fees_now is None
                    else pos.collected0 + fees_now[0] - pos.withdrawn0,
                    fees1=None
                    if fees_now is None
                    else pos.collected1 + fees_now[1] - pos.withdrawn1,
                    price0_usd=value.price0_usd,
                    price1_usd=value.price1_usd,
                    decimals0=pos.decimals0,
                    decimals1=pos.decimals1,
                    final=pos.burned,
                ),
            )
            observed.add(pid)
            if pos.burned:
                state.ended.append(pid)
        state.window_dirty.clear()
        return observed

    def after_windows(self) -> None:
        for pid in self.ended:
            _forget(self, pid)
        self.ended.clear()


def _owed(state: UniswapShard, pos: UniswapPosition) -> tuple[int, int] | None:
    # A burned NFT owes nothing: the manager burns only cleared positions, and a fee figure
    # settled before its last collect would be stale.
    return (0, 0) if pos.burned else state.fees.get(pos.position_id)


def _value(state: UniswapShard, pos: UniswapPosition) -> PositionValue:
    return value_position(
        pos,
        state.pools.get(pos.pool),
        state.prices.get(pos.token0),
        state.prices.get(pos.token1),
        _owed(state, pos),
    )


def _unindex(state: UniswapShard, pos: UniswapPosition) -> None:
    """A burned NFT can never change again: stop routing pool and price changes to it."""
    pid = pos.position_id
    state.fees.pop(pid, None)
    state.pool_positions.get(pos.pool, set()).discard(pid)
    for token in (pos.token0, pos.token1):
        state.token_positions.get(token, set()).discard(pid)


def _forget(state: UniswapShard, pid: str) -> None:
    """Drop a burned position once both its last update and its last windows are out, so
    memory tracks live positions only."""
    if pid in state.unvalued or pid in state.window_dirty:
        return
    state.positions.pop(pid, None)
    state.updated_block.pop(pid, None)
