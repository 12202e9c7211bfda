"""The oracle's price sources, read with eth_call (I/O; the chain reader calls it).

Each source the Aave oracle announces (`AssetSourceUpdated`, or a watch-mode seed), and
each of the chain config's `[pricing] feeds` (announced at the first block read; its answers
are a price root of their own, protocols/prices.py), is classified once, at its block, by
one JSON-RPC batch (schemas/prices.py says what each kind is). From then on its answer is
read with `latestAnswer()` (never `latestRoundData`: the oracle itself uses `latestAnswer`,
and adapters have nothing else) at *read points*, in one batch per range, and rides on the
block's `BlockBatch.price_reads`; the market step applies it (protocols/aave_v3/state.py
`AaveMarket.read_prices`). Every source is read at a read point:

- where it is announced (its price before then is not in the logs read from then on);
- live, every block (a silent change, below, shows in the block it happened);
- in backfill, ``on_change`` (default): every block with a log of a followed aggregator or
  feed (an answer changed), of a polled source or one of its inputs (a CAPO adapter's base
  feed and ratio provider, the aggregator behind that base), and the first block of each new
  minute among the blocks read (the window boundaries), and the last block of each range
  read (so a change inside a range is found within it). A proxy's `aggregator()` is read with
  its answer, so a silent aggregator swap (a new phase) shows at the next read point; the new
  aggregator's logs are then read from the read point before, so its answers are read points
  too. What stays unseen until the next read point is a change with no log at all in a
  block of its own: the swap's own block when it moves the price, and an adapter whose
  answer moves with time alone (a cap growing with time);
- in backfill, ``every_block``: every block (a block whose reads differ from the block
  before becomes a batch of its own): exact at every block whatever the source, at the
  cost below.

RPC cost: a read point is one `eth_call` per source plus one more per proxy (`aggregator()`),
all in the range's batches, plus one `AaveOracle.getAssetPrice` per asset whose source
answered <= 0 (the fallback oracle). Classification is up to four calls per new source.
Reads are at past blocks during backfill: a node that keeps historical state (an archive
node) for a backfill; live reads are at the head and need none.

The reader's own state (classified sources, the addresses followed because of them) only
grows, is restored by the chain reader when a read fails part-way, and is kept in the
source cursor; everything that must follow a reorg (which aggregator a proxy points at,
prices) is the market step's, which compares each read with its own state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace

import structlog

from flows.rpc import RpcClient
from protocols.abi import selector
from schemas.errors import RpcError
from schemas.prices import ZERO, PriceSource, SourceRead

log = structlog.get_logger("defimon.prices")

POLICIES = ("on_change", "every_block")
_AGGREGATOR = selector("aggregator()")
_LATEST_ROUND_DATA = selector("latestRoundData()")
_LATEST_ANSWER = selector("latestAnswer()")
_BASE_TO_USD = selector("BASE_TO_USD_AGGREGATOR()")
_RATIO_PROVIDER = selector("RATIO_PROVIDER()")
_GET_ASSET_PRICE = selector("getAssetPrice(address)")
_BATCH = 200  # calls per JSON-RPC batch
_AHEAD_KEPT = 64  # live blocks whose reads may be in flight or waiting
_MINUTE = 60


Reads = dict[int, dict[str, SourceRead]]  # block -> source -> its read


@dataclass(frozen=True, slots=True)
class BlockLogs:
    """What the read plan needs of one block: its time and the addresses that logged in it."""

    number: int
    timestamp: int
    addresses: frozenset[str]


def read_plan(
    blocks: list[BlockLogs],
    announced: Mapping[int, set[str]],
    triggers: set[str],
    *,
    live: bool,
    last_timestamp: int | None,
    end: int | None = None,
) -> list[int]:
    """The blocks (of those read) at which every source is read: live, all of them (each
    block is read on its own); in backfill, under ``on_change``."""
    if live:
        return [b.number for b in blocks]
    points = []
    previous = last_timestamp
    for b in blocks:
        boundary = previous is not None and b.timestamp // _MINUTE > previous // _MINUTE
        if b.addresses or b.number in announced:
            previous = b.timestamp  # only blocks with logs count for windows (flows/windows)
        if (
            b.number in announced
            or b.number == end
            or not triggers.isdisjoint(b.addresses)
            or (boundary and b.addresses)
        ):
            points.append(b.number)
    return points


def state_read_blocks(
    blocks: list[BlockLogs], triggers: set[str], *, live: bool, every_block: bool = False
) -> set[int]:
    """The blocks of those read (in order) at which a lending market's whole state (its
    oracle's price, its totals and rate) is read whatever its own logs say (a reader adds
    the blocks with its own logs): live, every block (the head: an oracle moves without a
    log of the market's); under ``every_block``, every block too. In backfill:

    - a block where a followed price source or one of its inputs logged (`triggers`: a
      market's oracle reads such feeds; which ones is not known, so any of them);
    - among the blocks with logs (only those count for windows, flows/market.py), the last
      one before each minute boundary, and the range's last one (the next range may begin a
      new minute): windows close on its state;
    - the range's last block (what the flow emits last is current).

    An oracle that moves with no log at all (a mock's setter, a rate that grows with time)
    is seen at the next of these, as `read_plan`'s polled sources are."""
    if live or every_block:
        return {b.number for b in blocks}
    out = {blocks[-1].number} if blocks else set()
    previous: BlockLogs | None = None  # the last block with logs
    for b in blocks:
        if not b.addresses:
            continue
        if not triggers.isdisjoint(b.addresses):
            out.add(b.number)
        if previous is not None and b.timestamp // _MINUTE > previous.timestamp // _MINUTE:
            out.add(previous.number)
        previous = b
    if previous is not None:
        out.add(previous.number)
    return out


def _word(value: object) -> int | None:
    if not isinstance(value, str) or len(value) < 66:
        return None
    try:
        return int(value[2:66], 16)
    except ValueError:
        return None


def _address(value: object) -> str | None:
    word = _word(value)
    if word is None or word == 0 or word >> 160:
        return None
    return "0x" + f"{word:040x}"


def _int256(word: int) -> int:
    return word - (1 << 256) if word >> 255 else word


def _why(value: object) -> str:
    if isinstance(value, RpcError):
        return f"reverted ({value})"[:200]
    if value == "0x":
        return "no answer (no contract code?)"
    return f"malformed answer {str(value)[:80]}"


class PriceReader:
    def __init__(
        self,
        rpc: RpcClient,
        oracle: str,
        policy: str = "on_change",
        known: Iterable[PriceSource] = (),
    ) -> None:
        self.rpc = rpc
        self.oracle = oracle
        self.policy = policy
        self.sources: dict[str, PriceSource] = {s.address: s for s in known}
        self.last_timestamp: int | None = None
        self.last_reads: dict[str, SourceRead] = {}
        # Live blocks read ahead: block -> (its hash, the sources then, the read)
        self._ahead: dict[int, tuple[str, tuple[PriceSource, ...], Future[Reads]]] = {}

    # State -------------------------------------------------------------------------------------

    @property
    def snapshot(self) -> tuple[PriceSource, ...]:
        return tuple(self.sources[a] for a in sorted(self.sources))

    def checkpoint(self) -> tuple[dict[str, PriceSource], int | None, dict[str, SourceRead]]:
        return dict(self.sources), self.last_timestamp, dict(self.last_reads)

    def rollback(self, saved: tuple[dict[str, PriceSource], int | None, dict]) -> None:
        self.sources, self.last_timestamp, self.last_reads = saved

    @property
    def watched(self) -> set[str]:
        """Addresses whose logs the chain reader must read because of the sources: each
        proxy's aggregators, each feed, each polled source and its inputs."""
        out: set[str] = set()
        for s in self.sources.values():
            if s.kind != "none":
                out.add(s.address)
            out.update(s.inputs)
        return out

    @property
    def triggers(self) -> set[str]:
        """Addresses whose logs make a read point: everything watched because of prices."""
        return self.watched

    # Classification ------------------------------------------------------------------------------

    def announce(self, announced: Iterable[tuple[int, str, str]]) -> dict[str, int]:
        """Sources named at blocks, as (block, source, asset): classify the new ones at their
        block. Returns the addresses to follow from now on, with the block to start at."""
        start: dict[str, int] = {}
        for block, source, asset in sorted(announced):
            known = self.sources.get(source)
            if known is not None:
                if asset not in known.assets:
                    self.sources[source] = replace(known, assets=(*known.assets, asset))
                continue
            found = self._classify(source, asset, block)
            self.sources[source] = found
            log.info(
                "price.source",
                source=source,
                kind=found.kind,
                asset=asset,
                block=block,
                inputs=list(found.inputs),
            )
            for address in (found.address, *found.inputs):
                if found.kind != "none":
                    start.setdefault(address, block)
        return start

    def _classify(self, source: str, asset: str, block: int) -> PriceSource:
        if source == ZERO:
            return PriceSource(source, "none", (asset,))
        at = hex(block)
        probe = [
            ("eth_call", [{"to": source, "data": data}, at])
            for data in (_AGGREGATOR, _LATEST_ROUND_DATA, _BASE_TO_USD, _RATIO_PROVIDER)
        ]
        aggregator, round_data, base, ratio = self.rpc.batch_each(probe)
        behind = _address(aggregator)
        if behind is not None:
            return PriceSource(source, "proxy", (asset,), (behind,))
        if isinstance(round_data, str) and len(round_data) >= 2 + 64 * 5:
            return PriceSource(source, "feed", (asset,))
        inputs = [a for a in (_address(base), _address(ratio)) if a is not None]
        base_address = _address(base)
        if base_address is not None:
            # A base feed that is a proxy: its aggregator's answers are the base's changes.
            (under,) = self.rpc.batch_each(
                [("eth_call", [{"to": base_address, "data": _AGGREGATOR}, at])]
            )
            if (agg := _address(under)) is not None:
                inputs.append(agg)
        return PriceSource(source, "polled", (asset,), tuple(sorted(set(inputs))))

    # Reads -------------------------------------------------------------------------------------

    def plan(
        self, blocks: list[BlockLogs], announced: Mapping[int, set[str]], live: bool
    ) -> list[int]:
        if self.policy == "every_block":
            return [b.number for b in blocks]
        return read_plan(
            blocks,
            announced,
            self.triggers,
            live=live,
            last_timestamp=self.last_timestamp,
            end=blocks[-1].number if blocks else None,
        )

    def prefetch(self, blocks: Mapping[int, str]) -> None:
        """Live blocks (number -> hash) about to be read: start reading every source at each
        now, several in flight, as the blocks' logs are, so a fast chain's blocks do not each
        wait a round trip for their prices. `read` takes an answer for the same block hash
        and the same sources; anything else is read anew."""
        if not self.sources or not blocks:
            return
        sources = self.snapshot
        for n, block_hash in sorted(blocks.items()):
            if n not in self._ahead:
                self._ahead[n] = (block_hash, sources, self.rpc.ahead(self._read, [n]))
        while len(self._ahead) > _AHEAD_KEPT:
            self._ahead.pop(next(iter(self._ahead)))[2].cancel()

    def read(self, numbers: list[int], block_hash: str | None = None) -> Reads:
        """Every source's answer (and each proxy's aggregator) at the end of each block."""
        if len(numbers) == 1:
            ahead = self._ahead.pop(numbers[0], None)
            if ahead is not None and ahead[:2] == (block_hash, self.snapshot):
                return ahead[2].result()
        return self._read(numbers)

    def _read(self, numbers: list[int]) -> Reads:
        order = sorted(self.sources)
        calls: list[tuple[str, list]] = []
        index: list[tuple[int, str, str]] = []
        for n in numbers:
            for source in order:
                kind = self.sources[source].kind
                if kind == "none":
                    continue
                calls.append(("eth_call", [{"to": source, "data": _LATEST_ANSWER}, hex(n)]))
                index.append((n, source, "answer"))
                if kind == "proxy":
                    calls.append(("eth_call", [{"to": source, "data": _AGGREGATOR}, hex(n)]))
                    index.append((n, source, "aggregator"))
        results = self._batched(calls)
        raw: dict[tuple[int, str], dict[str, object]] = {}
        for (n, source, what), value in zip(index, results, strict=True):
            raw.setdefault((n, source), {})[what] = value
        out: dict[int, dict[str, SourceRead]] = {n: {} for n in numbers}
        fallback: list[tuple[int, str, str]] = []
        for n in numbers:
            for source in order:
                info = self.sources[source]
                if info.kind == "none":
                    out[n][source] = SourceRead(source, "none", None)
                    fallback += [(n, source, a) for a in info.assets]
                    continue
                got = raw[(n, source)]
                word = _word(got["answer"])
                answer = None if word is None else _int256(word)
                error = "" if answer is not None else _why(got["answer"])
                aggregator = _address(got.get("aggregator")) or ""
                out[n][source] = SourceRead(source, info.kind, answer, error, aggregator)
                if answer is not None and answer <= 0:
                    fallback += [(n, source, a) for a in info.assets]
        if fallback and self.oracle:
            # AaveOracle.getAssetPrice asks its fallback oracle itself when the source gives
            # no positive answer (or is 0x0): one call answers for the asset exactly. (With
            # no Aave oracle the sources are the config's feeds, which have no fallback.)
            values = self._batched(
                [
                    (
                        "eth_call",
                        [{"to": self.oracle, "data": _GET_ASSET_PRICE + "0" * 24 + a[2:]}, hex(n)],
                    )
                    for n, _s, a in fallback
                ]
            )
            extra: dict[tuple[int, str], list[tuple[str, int | None]]] = {}
            for (n, source, asset), value in zip(fallback, values, strict=True):
                extra.setdefault((n, source), []).append((asset, _word(value)))
            for (n, source), pairs in extra.items():
                out[n][source] = replace(out[n][source], fallback=tuple(sorted(pairs)))
        return out

    def _batched(self, calls: list[tuple[str, list]]) -> list[object]:
        results: list[object] = []
        for i in range(0, len(calls), _BATCH):
            # A revert is an answer (the source is unreadable); a fault raises and the whole
            # range is read again.
            results += self.rpc.batch_each(calls[i : i + _BATCH])
        return results

    def new_aggregators(self, reads: Mapping[int, Mapping[str, SourceRead]]) -> dict[str, int]:
        """Aggregators a proxy points at that are not followed yet (a new phase), with the
        first block they were seen at; they are followed from then on."""
        start: dict[str, int] = {}
        for n in sorted(reads):
            for source, read in reads[n].items():
                info = self.sources.get(source)
                if info is None or not read.aggregator or read.aggregator in info.inputs:
                    continue
                self.sources[source] = replace(info, inputs=(*info.inputs, read.aggregator))
                start.setdefault(read.aggregator, n)
                log.info("price.new_phase", proxy=source, aggregator=read.aggregator, block=n)
        return start
