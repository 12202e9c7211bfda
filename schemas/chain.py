"""What the chain source emits: raw logs grouped into whole blocks, in order."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field, fields
from itertools import chain, islice, repeat
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

    # A block is pickled whenever it crosses from one Bytewax process to another (the source
    # and the market stage may sit in different ones). Pickled one by one, its logs cost about
    # 10 us each there and back (every string an object of its own): as columns (the
    # integers in arrays, the strings joined) they cost a fraction of that.
    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(
            pack_logs(self.logs) if name == "logs" else getattr(self, name)
            for name in _BATCH_FIELDS
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if len(state) == 2 and state[0] is None and isinstance(state[1], dict):
            # Pickled before the packing (Python's own form for slots: no dict, the slots'
            # values by name): the market's undo history in a recovery directory holds the
            # unfinalised blocks, so such a directory still loads.
            for name, value in state[1].items():
                object.__setattr__(self, name, value)
            return
        for name, value in zip(_BATCH_FIELDS, state, strict=True):
            object.__setattr__(self, name, unpack_logs(value) if name == "logs" else value)


_BATCH_FIELDS = tuple(f.name for f in fields(BlockBatch))
_INT_COLUMNS = (0, 1, 3, 5)  # chain_id, block_number, log_index, tx_index
_STR_COLUMNS = (2, 4, 6, 8)  # block_hash, tx_hash, address, data
_SEP = "\n"  # in no hex string; checked all the same


@dataclass(frozen=True, slots=True)
class PackedLogs:
    """RawLogs as columns: what `pack_logs` makes and `unpack_logs` reads back."""

    count: int
    ints: tuple[bytes, ...]  # int64 arrays, in _INT_COLUMNS order
    strs: tuple[str, ...]  # _SEP-joined, in _STR_COLUMNS order
    topic_counts: bytes
    topics: str  # every log's topics, _SEP-joined


def pack_logs(logs: list[RawLog]) -> PackedLogs | list[tuple[Any, ...]]:
    """`logs` as columns; as plain tuples when a value does not fit one (an int beyond
    64 bits, a string holding the separator, more than 255 topics)."""
    if not logs:
        return []
    columns = list(zip(*logs, strict=True))
    try:
        ints = tuple(array("q", columns[i]).tobytes() for i in _INT_COLUMNS)
        strs = tuple(_SEP.join(columns[i]) for i in _STR_COLUMNS)
        counts = bytes(map(len, columns[7]))
        topics = _SEP.join(chain.from_iterable(columns[7]))
    except (OverflowError, ValueError, TypeError):
        return list(map(tuple, logs))
    n = len(logs)
    if any(s.count(_SEP) != n - 1 for s in strs) or topics.count(_SEP) != max(sum(counts) - 1, 0):
        return list(map(tuple, logs))
    return PackedLogs(n, ints, strs, counts, topics)


def unpack_logs(packed: PackedLogs | list[tuple[Any, ...]]) -> list[RawLog]:
    if isinstance(packed, list):
        return list(map(tuple.__new__, repeat(RawLog), packed))
    columns: list[Any] = [None] * 9
    for i, raw in zip(_INT_COLUMNS, packed.ints, strict=True):
        values = array("q")
        values.frombytes(raw)
        columns[i] = values.tolist()
    for i, joined in zip(_STR_COLUMNS, packed.strs, strict=True):
        columns[i] = joined.split(_SEP)
    flat = iter(packed.topics.split(_SEP) if packed.topics or sum(packed.topic_counts) else ())
    # Each log's topics: its count's worth of the flat list, taken in C (no loop in Python).
    columns[7] = list(map(tuple, map(islice, repeat(flat), packed.topic_counts)))
    return list(map(tuple.__new__, repeat(RawLog), zip(*columns, strict=True)))


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
