"""What the chain source emits: raw logs grouped into whole blocks, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from schemas.prices import SourceRead

if TYPE_CHECKING:
    from schemas.watch import WatchSeed


class RawLog(NamedTuple):
    """One log as the node returned it; hex fields are lower-case 0x strings.

    A NamedTuple, not a frozen dataclass: as immutable, and about three times cheaper to build.
    """

    chain_id: int
    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str
    tx_index: int
    address: str
    topics: tuple[str, ...]
    data: str

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.chain_id, self.block_number, self.log_index)


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: int
    number: int
    hash: str
    parent_hash: str
    timestamp: int  # seconds since the epoch, from the block itself


@dataclass(frozen=True, slots=True)
class TokenInfo:
    address: str
    symbol: str
    decimals: int


@dataclass(slots=True)
class BlockBatch:
    """One block, processed whole: its header, its watched logs in log-index order.

    `head` is the chain head the source knew when it read this block (for lag), and `live` says
    the block was read while following the head rather than during backfill. `tokens` carries
    ERC-20 metadata the source looked up for tokens first seen in this block. `checkpoint`
    marks a block after which derived values must be current: every live block, and the last
    block of each backfill range.
    """

    header: BlockHeader
    logs: list[RawLog]
    head: int
    live: bool
    tokens: dict[str, TokenInfo] = field(default_factory=dict)
    checkpoint: bool = True
    # oracle source -> what the reader read from it with eth_call at the end of this block
    # (flows/prices_reader.py: where it was announced, at checkpoints, when inputs changed)
    price_reads: dict[str, SourceRead] = field(default_factory=dict)
    # protocol -> what its reader read with eth_call at this block (protocols/<name>/reader.py:
    # the Aave Pool's revision, the comets' state, ...)
    reads: dict[str, Any] = field(default_factory=dict)
    # (wallet, token) -> balanceOf at the end of this block, read with eth_call when the pair
    # became tracked; its Transfer logs up to this block are already in it.
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    # (wallet, token) -> why balanceOf could not be read at this block (the node has pruned
    # its state: an archive node is needed); the pair stays untracked and is dead-lettered.
    unreadable_balances: dict[tuple[str, str], str] = field(default_factory=dict)
    # Wallet watch mode: state read with eth_call at the end of this block for wallets that
    # start being watched here; the market applies it after the block's logs.
    seeds: WatchSeed | None = None
    # Blocks at or below this number can no longer be reorganised (head - finality depth when
    # read); None: treat this block as final (no undo information is kept for it).
    final_block: int | None = None

    @property
    def chain_id(self) -> int:
        return self.header.chain_id


@dataclass(frozen=True, slots=True)
class Rewind:
    """The chain reorganised: blocks from `fork_block` on (the `orphaned` ones, by number and
    hash) are no longer canonical. Every stage rolls back to the state after `fork_block - 1`;
    the canonical blocks follow this item, in order, as usual."""

    chain_id: int
    fork_block: int
    orphaned: tuple[tuple[int, str], ...]
    old_head: int  # the last block processed on the orphaned branch
    new_head: int  # the canonical head when the reorg was found

    @property
    def depth(self) -> int:
        return self.old_head - self.fork_block + 1


SourceItem = BlockBatch | Rewind
