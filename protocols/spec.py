"""The interface every protocol implements, and the types its stages exchange with the flow.

The flow has two stateful stages (flows/market.py, flows/shards.py). Each protocol takes part in
both through a `Plugin` (listed in protocols/registry.py):

- its **market part** (`MarketPart`, one per chain, on the market stage) reads the block's logs in
  order and keeps protocol-wide state (pools, reserves, comets); it may contribute price roots
  (an oracle's answers) or route prices (pools), and sends each position shard the work for its
  subjects through `MarketBlock.part`;
- its **shard part** (`ShardPart`, on each `chain:shard` key) keeps per-position or per-account
  state and values it once per checkpoint block;
- its **rows** (the tables it writes, declared once in `TABLES`: the DDL lives in
  `protocols/<name>/tables.sql`, checked against these columns by a test) and its **bus events**.

Every step is pure: `step(state, inputs) -> outputs` on plain data, no I/O. Undo for reorgs is
the flow's (flows/rewind.py keeps copies of the whole stage state).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from protocols.base import DeadLetter
from protocols.prices import Anchor
from protocols.windows import WindowBook, WindowBoundary, WindowRow
from schemas.chain import BlockBatch, TokenInfo
from schemas.chain_config import ChainConfig
from schemas.positions import BlockRef, TokenPrice
from schemas.stream import BusEvent

Row = tuple[Any, ...]
Rows = dict[str, list[Row]]  # table -> rows
# What a stage output has for the bus: (coalescing key, event builder). A key says the event is
# a subject's latest state, which a backfill may coalesce; None says it happened once and
# belongs to live blocks only (the store has a backfill's history).
BusEntry = tuple[Hashable | None, Callable[[], BusEvent]]

P = TypeVar("P")


def bus_event(
    kind: str, block: BlockRef, data: dict[str, Any], owners: tuple[str, ...]
) -> BusEvent:
    """A stream event about `owners`' subjects at the block."""
    return BusEvent(kind, block.chain_id, block.number, block.hash, data, owners, time.time())


@dataclass(slots=True)
class ShardInput:
    """What one position shard gets from the market for one block: each protocol's part."""

    block: BlockRef
    live: bool
    shard: int
    checkpoint: bool = True
    final_block: int | None = None  # as on the BlockBatch: for undo (flows/rewind.py)
    # A minute ended before this block: observe as of the last block, then close windows.
    boundary: WindowBoundary | None = None
    parts: dict[str, Any] = field(default_factory=dict)  # protocol -> its shard input


@dataclass(slots=True)
class ShardOutput:
    block: BlockRef
    live: bool
    shard: int
    windows: list[WindowRow] = field(default_factory=list)
    parts: dict[str, Any] = field(default_factory=dict)  # protocol -> its shard output


@dataclass(slots=True)
class MarketBlock:
    """One block as the market parts see it, and where they put their work.

    Parts run in registry order; each reads the block (`batch`) and the chain's tokens, appends
    dead letters, marks `reroute` when what prices depend on changed, and hands each shard its
    part of the block's work through `part(shard, name, make)`."""

    batch: BlockBatch
    block: BlockRef
    tokens: dict[str, TokenInfo]
    shards: int
    # USD prices: before routing, as of the previous block; after it, as of this one.
    prices: Mapping[str, TokenPrice]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    new_tokens: list[TokenInfo] = field(default_factory=list)
    boundary: WindowBoundary | None = None
    reroute: bool = False
    inputs: dict[int, ShardInput] = field(default_factory=dict)

    def shard(self, shard: int) -> ShardInput:
        item = self.inputs.get(shard)
        if item is None:
            b = self.batch
            item = self.inputs[shard] = ShardInput(
                self.block, b.live, shard, b.checkpoint, final_block=b.final_block
            )
        return item

    def part(self, shard: int, name: str, make: Callable[[], P]) -> P:
        """The protocol's part of a shard's input for this block (made on first use)."""
        parts = self.shard(shard).parts
        found = parts.get(name)
        if found is None:
            found = parts[name] = make()
        return found

    def token(self, address: str) -> TokenInfo:
        # A token whose metadata could not be read still gets a row: 18 decimals is the ERC-20
        # default and the symbol says what happened.
        return self.tokens.get(address) or TokenInfo(address, "???", 18)


@dataclass(frozen=True, slots=True)
class PriceRoots:
    """Prices a protocol knows without routing: `roots` win over every route (an oracle's own
    answers); `fills` price only what nothing else priced (a comet's feeds)."""

    roots: Mapping[str, Anchor] = field(default_factory=dict)
    fills: Mapping[str, Anchor] = field(default_factory=dict)


class MarketPart:
    """A protocol's state on the market stage of one chain. Subclasses are dataclasses."""

    def step(self, ctx: MarketBlock) -> Any:
        """Apply the block (logs in order, reads, watch-mode seeds); the block's output, for
        this protocol's rows and bus events (None: nothing)."""
        raise NotImplementedError

    def window_boundary(self, ctx: MarketBlock) -> None:
        """A minute ended before this block (before `step`): send the shards what they need to
        observe their subjects as of the last block."""

    def price_roots(self) -> PriceRoots | None:
        """Prices this protocol knows as roots (None: none). Asked after every `step`."""
        return None

    def route(
        self,
        ctx: MarketBlock,
        usd_tokens: Sequence[str],
        roots: Mapping[str, Anchor],
        min_depth_usd: float,
    ) -> dict[str, TokenPrice] | None:
        """USD prices routed through this protocol's pools from the roots (None: it routes
        nothing). Asked when a part marked `reroute` or the roots changed."""
        return None

    def priced(self, ctx: MarketBlock, out: Any, changed: Sequence[TokenPrice]) -> Any:
        """After routing (`ctx.prices` is current): send the shards the prices their subjects
        depend on, value what depends on prices here. Returns the output (maybe updated)."""
        return out


class ShardPart:
    """A protocol's per-position (or per-account) state on one `chain:shard` key."""

    def step(self, item: Any | None, block: BlockRef, checkpoint: bool) -> Any:
        """Apply this block's input (None: the market sent nothing, a checkpoint still values
        what was left unvalued); the block's output (None: nothing)."""
        raise NotImplementedError

    def observe(self, item: Any | None, windows: WindowBook, boundary: WindowBoundary) -> set[str]:
        """Observe every changed subject as of the boundary's last block into the window book;
        the ids observed."""
        return set()

    def after_windows(self) -> None:
        """The windows closed: forget subjects that ended."""


@dataclass(frozen=True, slots=True)
class Plugin:
    """One protocol, as the flow sees it."""

    name: str
    # The market part for a chain, or None when the chain config does not name the protocol.
    market: Callable[[ChainConfig, int], MarketPart | None]
    shard: Callable[[], ShardPart] | None = None
    # Its tables: name -> columns in insert order (the DDL is tables.sql in its folder).
    tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    market_rows: Callable[[Any, BlockRef, datetime, int], Rows] | None = None
    shard_rows: Callable[[Any, BlockRef, datetime, int], Rows] | None = None
    market_bus: Callable[[Any, BlockRef], Iterator[BusEntry]] | None = None
    shard_bus: Callable[[Any, BlockRef], Iterator[BusEntry]] | None = None
    # How many subjects an output updated (for /metrics' position_updates).
    market_updates: Callable[[Any], int] | None = None
    shard_updates: Callable[[Any], int] | None = None
