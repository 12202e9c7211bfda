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
the flow's (flows/rewind.py keeps copies of the stage state by deltas): a part keeps its large
per-subject maps (one entry per position, account, pool, wallet) in journaled dicts
(protocols/journal.py: `JournaledDict` when values are replaced, `JournaledObjects` when they
change in place), or every undo copy pickles them whole.

The source's edge is the protocol's **reader** (`ProtocolReader`, one per chain, on the chain
reader's thread; I/O through the `ports.rpc.JsonRpc` port): the contracts it watches and those
they announce, the state it reads with eth_call at the blocks it needs (`BlockBatch.reads`), the
logs that name a wallet whose ERC-20 balances are tracked, and wallet watch mode's seeds
(`WatchSeed.parts`). flows/chain_reader.py, balance_reader.py and watch.py only iterate them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ports.rpc import JsonRpc
from protocols.base import DeadLetter
from protocols.prices import Anchor
from protocols.read_side import ReadSide
from protocols.windows import WindowBook, WindowBoundary, WindowRow
from schemas.chain import BlockBatch, RawLog, TokenInfo
from schemas.chain_config import ChainConfig
from schemas.positions import BlockRef, TokenPrice
from schemas.prices import SourceRead
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


# The reader's side ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Child:
    """A contract a watched parent announced: a pool, an aToken or debt token, a price feed."""

    block: int
    address: str
    tokens: tuple[str, ...]  # ERC-20s whose metadata the flow needs because of it
    kind: str = ""  # "feed" for a price source, classified and read where announced


class ReaderHost(Protocol):
    """What the chain reader (flows/chain_reader.py) offers the protocols' readers."""

    def token_infos(self, addresses: Iterable[str]) -> dict[str, TokenInfo]:
        """Metadata of the tokens not announced before (each goes out once, on the batch
        that first names it)."""
        ...

    def follows(self, address: str) -> bool:
        """Whether the source already follows this announced contract (a pool, a token)."""
        ...

    def read_sources(
        self, sources: Sequence[tuple[int, str, str]], block: int
    ) -> dict[str, SourceRead]:
        """Announce price sources (block, source, asset) to the price service, which follows
        them from then on, and read every source at `block`."""
        ...

    def state_read_blocks(self, batches: Sequence[BlockBatch]) -> set[int]:
        """The blocks of these (one range, in order) at which a lending market's state is
        read whatever its own logs say: every live block; in backfill where a followed price
        feed moved, before each window boundary and at the range's end
        (flows/prices_reader.py `state_read_blocks`). A reader adds its own logs' blocks."""
        ...


@dataclass(slots=True)
class SeedCost:
    """JSON-RPC requests (HTTP round trips) and calls (batched calls count one each)."""

    requests: int = 0
    calls: int = 0


class Seeding(Protocol):
    """What a reader seeding wallets (watch mode) reads through: counted calls at a block
    and topic-filtered logs over a range (flows/watch.py implements it)."""

    cost: SeedCost

    def calls(self, to_data: Sequence[tuple[str, str]], block: int) -> list[Any]:
        """eth_call each (to, data) at `block`; a reverting call gives None, a fault raises
        (the whole seed is read again)."""
        ...

    def logs(self, base: dict[str, Any], start: int, end: int) -> list[dict[str, Any]]:
        """The logs of a topic filter over [start, end], the range split where refused."""
        ...

    def token_info(self, addresses: Iterable[str]) -> dict[str, TokenInfo]:
        """decimals() and symbol() of each token (read once, kept)."""
        ...


@dataclass(slots=True)
class Seeded:
    """What a reader read for watched wallets at a block: its part of the seed, the tokens
    the part names (metadata on the batch, balances tracked) and the contracts the source
    follows from the next block on."""

    part: Any
    tokens: set[str] = field(default_factory=set)
    follow: set[str] = field(default_factory=set)


class ProtocolReader:
    """A protocol's reading side on one chain (I/O through `ports.rpc.JsonRpc`).

    The chain reader watches every reader's `addresses()` plus the children its `parents()`
    announce (`children`), asks `read` for state read with eth_call at the blocks it emits
    (`BlockBatch.reads[name]`), checkpoints it around a read that may fail part-way and be
    read again, and asks `wallets` which wallets a log names (their ERC-20s get tracked).
    Watch mode asks `seed` for newly watched wallets and `seed_logs` for what a block's logs
    brought them. Every part has a do-nothing default."""

    name: str = ""

    def addresses(self) -> list[str]:
        """Contracts watched from the start (their logs are read)."""
        return []

    def parents(self) -> dict[str, str]:
        """Watched contracts that announce children: address -> kind (for `children`)."""
        return {}

    def children(self, kind: str, item: dict[str, Any]) -> list[Child]:
        """The contracts one raw log of a `kind` parent announces (none if malformed: the
        market stage dead-letters the log itself)."""
        return []

    def price_oracle(self) -> tuple[str, str] | None:
        """An oracle whose price sources the price service reads, and its read policy
        (flows/prices_reader.py), or None."""
        return None

    def read(self, batches: list[BlockBatch]) -> None:
        """Read the state these blocks need with eth_call and put it on each batch as
        `batch.reads[self.name]` (only where there is something)."""

    def prefetch(self, blocks: Sequence[tuple[int, str]]) -> None:
        """Live blocks (number, hash) about to be read one by one: start their reads now
        (`JsonRpc.ahead`), so a fast chain's blocks do not each wait the round trips in turn.
        `read` takes what was started only for the same block hash and the same knowledge."""

    def checkpoint(self) -> Any:
        return None

    def rollback(self, saved: Any) -> None:
        """Back to a checkpoint: the read after it failed and is read again."""

    def resume_state(self) -> Any:
        """What a restarted flow needs of this reader's knowledge (learned from logs before
        the block it resumes at), kept in the source's recovery snapshot; None: nothing.
        Taken while the reader reads ahead: knowledge from a later block must be harmless."""
        return None

    def resume(self, saved: Any) -> None:
        """Take back what `resume_state` gave, before the first read after a restart."""

    def wallet_topics(self) -> frozenset[str]:
        """topic0 of the logs that may name a wallet (`wallets` is asked about those only)."""
        return frozenset()

    def wallets(self, item: dict[str, Any]) -> list[str]:
        """The wallets one raw watched log names (their ERC-20 balances are tracked)."""
        return []

    def seed(self, wallets: list[str], block: int, seeding: Seeding) -> Seeded | None:
        """Watch mode: what the market part needs to show these wallets exactly from the end
        of `block` on (None: nothing). Idempotent: a failed seed is read again."""
        return None

    def seed_logs(
        self, logs: Sequence[RawLog], watched: Mapping[str, int], block: int, seeding: Seeding
    ) -> Seeded | None:
        """Watch mode: what this block's logs brought to the `watched` wallets that their
        logs alone cannot show (an NFT's fee checkpoint, say), read at `block`."""
        return None


ReaderFactory = Callable[[ChainConfig, JsonRpc, ReaderHost], ProtocolReader | None]


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
    # Its read side: subjects at a block, read back from the store (protocols/read_side.py).
    read: ReadSide | None = None
    # How many subjects an output updated (for /metrics' position_updates).
    market_updates: Callable[[Any], int] | None = None
    shard_updates: Callable[[Any], int] | None = None
    # Its reader for a chain (None: nothing to read, or the config does not name it).
    reader: ReaderFactory | None = None
