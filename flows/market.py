"""The market stage, keyed by chain: every protocol's market part applies the whole block, then
prices are routed once, then each position shard gets what its subjects need.

    for each protocol (registry order): its part's step(block)   pools, reserves, comets, ...
    roots = the parts' price roots (oracles) + the config's feeds; routes through pools
    for each protocol: its part's priced(block, changed prices)  fan-out, balances valued

A price change thereby reaches every dependent subject within the block, and no single key holds
every position of a market. Pure: `market_step(state, batch) -> (state, output)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocols.base import DeadLetter
from protocols.prices import Anchor, feed_anchors, merged_roots, rooted_prices
from protocols.registry import PLUGINS
from protocols.spec import MarketBlock, MarketPart, ShardInput
from protocols.windows import crosses_boundary
from schemas.chain import BlockBatch, TokenInfo
from schemas.chain_config import ChainConfig
from schemas.errors import ConfigError
from schemas.positions import BlockRef, TokenPrice


@dataclass(slots=True)
class MarketOutput:
    block: BlockRef
    head: int
    live: bool
    log_count: int
    new_tokens: list[TokenInfo]
    prices: list[TokenPrice]  # the USD prices this block changed
    dead_letters: list[DeadLetter]
    shard_inputs: dict[int, ShardInput]
    parts: dict[str, Any] = field(default_factory=dict)  # protocol -> its output


# The shape of the stages' saved state. Raise it whenever a stage's state changes shape
# (MarketState, a protocol's market part): a slots dataclass is pickled as its field values in
# order, so an old recovery directory would load into the wrong fields. One saved under
# another format is refused at start (check_protocols) instead. 2: the Uniswap part keeps the
# incremental price router.
STATE_FORMAT = 2


@dataclass(slots=True)
class MarketState:
    chain_id: int
    usd_tokens: tuple[str, ...]
    shards: int
    # protocol -> its market part, in registry order (only the protocols the config names)
    parts: dict[str, MarketPart] = field(default_factory=dict)
    # Pools shallower than this (USD within ±2% of their price) price no token.
    min_depth_usd: float = 0
    tokens: dict[str, TokenInfo] = field(default_factory=dict)
    prices: dict[str, TokenPrice] = field(default_factory=dict)
    # The config's [pricing] feeds, (token, feed), and their anchors as last read.
    feeds: tuple[tuple[str, str], ...] = ()
    feed_anchors: dict[str, Anchor] = field(default_factory=dict)
    # The roots prices were last routed from (the parts' and the feeds'), and the fills.
    roots: dict[str, Anchor] = field(default_factory=dict)
    fills: dict[str, Anchor] = field(default_factory=dict)
    routed: bool = False  # prices were routed once (the USD tokens priced)
    # Shards that ever got work: each hears from the market at every checkpoint block, so
    # what it left unvalued during backfill is valued at the end of the range.
    active_shards: set[int] = field(default_factory=set)
    last_block: int = -1
    # The last block with logs: window boundaries are crossed between such blocks only, so a
    # backfill (which never sees empty blocks) and a live run cross the same ones.
    window_block: BlockRef | None = None
    # Last, so that a state saved before it existed lacks it (see STATE_FORMAT).
    state_format: int = STATE_FORMAT

    def part(self, name: str) -> Any:
        """A protocol's market part (None when the chain config does not name it)."""
        return self.parts.get(name)


def market_state(config: ChainConfig, shards: int) -> MarketState:
    """A chain's market stage before its first block: a part for each protocol it names."""
    parts = {}
    for plugin in PLUGINS:
        part = plugin.market(config, shards)
        if part is not None:
            parts[plugin.name] = part
    return MarketState(
        chain_id=config.chain_id,
        usd_tokens=config.usd_tokens,
        shards=shards,
        parts=parts,
        min_depth_usd=config.min_depth_usd,
        feeds=config.feeds,
    )


def check_protocols(state: MarketState, config: ChainConfig) -> None:
    """A market stage restored from a recovery directory runs the protocols it started with:
    one the chain config added or dropped since would start mid-history (missing what came
    before) or linger. State saved by a defimon whose state had another shape (STATE_FORMAT)
    cannot be read at all. Both are refused with what to do instead."""
    saved = getattr(state, "state_format", 1)  # absent: saved before formats were numbered
    if saved != STATE_FORMAT:
        raise ConfigError(
            f"chain {state.chain_id}: the recovery directory holds flow state saved by another "
            f"defimon version (state format {saved}; this one reads {STATE_FORMAT}); delete "
            "the data directory's recovery directory and the flow reads the chain again from "
            "its start block, writing the same rows"
        )
    named = {p.name for p in PLUGINS if p.market(config, state.shards) is not None}
    if named != set(state.parts):
        raise ConfigError(
            f"chain {config.chain_id}: the recovery directory holds a flow of "
            f"{', '.join(sorted(state.parts)) or 'no protocol'}, but the chain config names "
            f"{', '.join(sorted(named)) or 'none'}; to follow the new set, start afresh "
            "(delete the data directory's recovery and store, or use another data directory)"
        )


def market_step(state: MarketState, batch: BlockBatch) -> tuple[MarketState, MarketOutput]:
    """Apply one whole block to every protocol's market part and split the position work by
    shard."""
    header = batch.header
    block = BlockRef(header.chain_id, header.number, header.hash, header.timestamp)
    ctx = MarketBlock(batch, block, state.tokens, state.shards, state.prices)
    ctx.new_tokens = [t for a, t in batch.tokens.items() if a not in state.tokens]
    state.tokens.update(batch.tokens)
    out = MarketOutput(
        block, batch.head, batch.live, len(batch.logs), ctx.new_tokens, [], ctx.dead_letters, {}
    )

    if batch.logs:
        # Windows: a new minute began. Every shard observes its subjects as of the last block,
        # before this block changes anything.
        boundary = crosses_boundary(state.window_block, block.timestamp)
        if boundary is not None:
            ctx.boundary = boundary
            for shard in state.active_shards:
                ctx.shard(shard).boundary = boundary
            for part in state.parts.values():
                part.window_boundary(ctx)
        state.window_block = block

    for name, part in state.parts.items():
        result = part.step(ctx)
        if result is not None:
            out.parts[name] = result
    if batch.seeds is not None:
        # Wallet watch mode: the tokens of what was seeded at the end of this block.
        ctx.new_tokens += [t for a, t in batch.seeds.tokens.items() if a not in state.tokens]
        state.tokens.update(batch.seeds.tokens)

    # Prices: the parts' roots (oracles win over routes), the config's feeds after them, then
    # routes through pools; fills price only what nothing else priced.
    if state.feeds and batch.price_reads:
        state.feed_anchors = feed_anchors(
            state.feeds, batch.price_reads, state.feed_anchors, block.number
        )
    primary: list[dict[str, Anchor]] = []
    fills: list[dict[str, Anchor]] = []
    for part in state.parts.values():
        given = part.price_roots()
        if given is not None:
            primary.append(dict(given.roots))
            fills.append(dict(given.fills))
    roots = merged_roots(*primary, state.feed_anchors)
    filled = merged_roots(*fills)
    # The first block with logs routes too: the USD tokens are roots before any pool or
    # oracle moves. With logs: a backfill (which sees no empty block) and a live run route
    # at the same one.
    first = not state.routed and bool(batch.logs)
    changed: list[TokenPrice] = []
    if ctx.reroute or roots != state.roots or filled != state.fills or first:
        state.routed = True
        state.roots, state.fills = roots, filled
        prices: dict[str, TokenPrice] | None = None
        for part in state.parts.values():
            prices = part.route(ctx, state.usd_tokens, roots, state.min_depth_usd)
            if prices is not None:
                break
        if prices is None:
            prices = rooted_prices(state.usd_tokens, roots)
        for token, (_usd, price) in filled.items():
            prices.setdefault(token, price)
        changed = [p for t, p in sorted(prices.items()) if state.prices.get(t) != p]
        state.prices = prices
    out.prices = changed
    ctx.prices = state.prices
    for name, part in state.parts.items():
        result = part.priced(ctx, out.parts.get(name), changed)
        if result is not None:
            out.parts[name] = result

    if batch.checkpoint:
        for shard in state.active_shards:
            ctx.shard(shard)
    out.shard_inputs = ctx.inputs
    state.active_shards.update(ctx.inputs)
    state.last_block = block.number
    return state, out
