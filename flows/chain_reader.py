"""Read whole blocks of watched logs from a node (I/O only; no Bytewax, no domain logic).

The watched set is the protocols' fixed contracts plus every child a parent announced (each
protocol's reader says which: protocols/<name>/reader.py; pools from a factory, reserve tokens
from a configurator, price feeds from an oracle). A child can be announced and used in the same
range, so each read first takes the known set, then reads again for the children that range
announced (from their block on). Each reader also reads the state its protocol needs at the
blocks read (`BlockBatch.reads`), checkpointed with the rest around a read that may fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Any, TypeVar

import structlog

from flows.balance_reader import BalanceTracker, TrackedRead
from flows.prices_reader import BlockLogs, PriceReader, state_read_blocks
from flows.rpc import RpcClient
from protocols.registry import PLUGINS
from protocols.spec import Child, ProtocolReader
from schemas.chain import BlockBatch, BlockHeader, RawLog, TokenInfo
from schemas.chain_config import ChainConfig
from schemas.errors import RpcError, RpcTransportError
from schemas.prices import PriceSource, SourceRead

log = structlog.get_logger("defimon.source")

_DECIMALS = "0x313ce567"  # decimals()
_SYMBOL = "0x95d89b41"  # symbol()
_HEADER_BATCH = 200
_LOG_INDEX = itemgetter(3)  # RawLog.log_index


@dataclass(slots=True)
class RangeRead:
    batches: list[BlockBatch]
    log_count: int


_T = TypeVar("_T", RangeRead, BlockBatch)


def _position(item: dict[str, Any]) -> tuple[int, int]:
    return int(str(item["blockNumber"]), 16), int(str(item["logIndex"]), 16)


def children_of(
    item: dict[str, Any], parents: dict[str, tuple[str, ProtocolReader]]
) -> list[Child]:
    """Contracts announced by one raw log of a parent (a protocol reader's `parents`)."""
    parent = parents.get(str(item.get("address", "")).lower())
    topics = item.get("topics")
    if parent is None or not isinstance(topics, list) or not topics:
        return []
    kind, reader = parent
    try:
        return reader.children(kind, item)
    except (KeyError, ValueError):
        return []  # malformed: the market stage dead-letters the log itself


class _TAgain(Exception):
    """The head moved while its state was read, on a node that may then answer for the
    next block (see `ChainReader._read_at_head`)."""


class ChainReader:
    def __init__(
        self,
        rpc: RpcClient,
        config: ChainConfig,
        children: Iterable[str] = (),
        wallets: Iterable[str] = (),
        tokens: Iterable[str] = (),
        prices: Iterable[PriceSource] = (),
        resumed: Iterable[tuple[str, Any]] = (),
    ) -> None:
        self.rpc = rpc
        self.config = config
        self.chain_id = config.chain_id
        self.children: set[str] = set(children)
        self._tokens_seen: set[str] = set()
        self._token_info: dict[str, TokenInfo] = {}
        # The readers of the protocols the config names (any subset of them), in registry
        # order: their contracts are watched, and their state read at the blocks they need.
        self.readers: list[ProtocolReader] = []
        for plugin in PLUGINS:
            reader = plugin.reader(config, rpc, self) if plugin.reader is not None else None
            if reader is not None:
                self.readers.append(reader)
        for name, saved in resumed:
            for reader in self.readers:
                if reader.name == name:
                    reader.resume(saved)
        # Parents announce children (pools, reserve tokens, feeds) that are watched from then on.
        self.parents: dict[str, str] = {}
        self._announcers: dict[str, tuple[str, ProtocolReader]] = {}
        self.fixed: list[str] = []
        oracle = None
        for reader in self.readers:
            self.fixed += reader.addresses()
            for address, kind in reader.parents().items():
                self.parents[address] = kind
                self._announcers[address] = (kind, reader)
            oracle = oracle or reader.price_oracle()
        self.fixed += [feed for _token, feed in config.feeds]
        # The oracle's price sources: classified, followed and read (flows/prices_reader.py).
        self.prices = PriceReader(
            rpc, oracle[0] if oracle else "", oracle[1] if oracle else "on_change", prices
        )
        self._announced_sources: dict[int, set[str]] = {}
        self._initial_tokens = {t for t, _feed in config.feeds}
        # The config's own feeds are price sources like the oracle's (classified, followed,
        # read at read points: protocols/prices.py), announced at the first block read.
        self._initial_feeds = set(config.feeds)
        # ERC-20 balances of tracked wallets: their Transfer logs join the watched logs.
        self.balances = BalanceTracker(rpc, config, wallets, tokens, self.readers)
        self._announced: list[Child] = []
        self._racy_head: bool | None = None  # learned from web3_clientVersion, once
        self._protocol_reads: dict[str, Any] = {}  # each reader's latest reads (_remember_reads)

    @property
    def pools(self) -> set[str]:  # the source's cursor still calls them pools
        return self.children

    def reader(self, name: str) -> ProtocolReader | None:
        """A protocol's reader (None when the config does not name it)."""
        return next((r for r in self.readers if r.name == name), None)

    # What the protocols' readers ask of it (protocols.spec.ReaderHost) ----------------------

    def follows(self, address: str) -> bool:
        return address in self.children

    def read_sources(
        self, sources: Sequence[tuple[int, str, str]], block: int
    ) -> dict[str, SourceRead]:
        self.prices.announce(sources)
        return self.prices.read([block])[block]

    def state_read_blocks(self, batches: Sequence[BlockBatch]) -> set[int]:
        blocks = [
            BlockLogs(b.header.number, b.header.timestamp, frozenset(lg.address for lg in b.logs))
            for b in batches
        ]
        return state_read_blocks(
            blocks,
            self.prices.triggers,
            live=any(b.live for b in batches),
            every_block=self.prices.policy == "every_block",
        )

    # Logs -----------------------------------------------------------------------------------

    def _watched(self) -> list[str]:
        extra = (self.children | self.prices.watched) - set(self.fixed)
        return self.fixed + sorted(extra)

    def prefetch(self, headers: Iterable[BlockHeader]) -> None:
        """Start reading these blocks' logs and price sources ahead, as `read_block` will ask
        for them if the watched set does not change before (a read that changed it asks anew)."""
        headers = list(headers)
        self.prices.prefetch({h.number: h.hash for h in headers})
        watched = set(self._watched())
        filters: list[dict[str, Any]] = []
        for header in headers:
            base: dict[str, object] = {"blockHash": header.hash}
            filters.append(self._watched_filter(base))
            filters += self.balances.next_filters(base, watched)
        self.rpc.prefetch_logs(filters)
        for reader in self.readers:
            reader.prefetch([(h.number, h.hash) for h in headers])

    def _watched_filter(self, base: dict[str, object]) -> dict[str, Any]:
        return {**base, "address": sorted(set(self._watched()))}

    def _fetch(self, base: dict[str, object], first: int) -> tuple[list[dict], set[str]]:
        """Logs of the watched set for one filter (from block `first`), following children
        announced inside it."""
        before = set(self._watched())
        raw = self.rpc.get_logs(self._watched_filter(base))
        new_tokens: set[str] = set(self._initial_tokens)
        self._initial_tokens = set()
        announced = [c for item in raw for c in children_of(item, self._announcers)]
        announced += [Child(first, f, (t,), "feed") for t, f in sorted(self._initial_feeds)]
        self._initial_feeds = set()
        self._announced = announced
        # A source's answers before it was announced are not in the logs read from then on,
        # so it is classified and read at the announcement block (also one seen before).
        sources = [(c.block, c.address, c.tokens[0]) for c in announced if c.kind == "feed"]
        self._announced_sources = {}
        for block, source, _asset in sources:
            self._announced_sources.setdefault(block, set()).add(source)
        since = self.prices.announce(sources)
        created = [c for c in announced if c.address not in self.children]
        if created:
            self.children.update(c.address for c in created)
            for child in created:
                new_tokens.update(child.tokens)
                since[child.address] = min(child.block, since.get(child.address, child.block))
        later = self._logs_since(base, {a: b for a, b in since.items() if a not in before})
        if later:
            raw += later
            raw.sort(key=_position)
        return raw, new_tokens - self._tokens_seen

    def _logs_since(self, base: dict[str, object], since: dict[str, int]) -> list[dict]:
        """Logs of newly followed contracts, each from its own block on, as a live run reads
        them: otherwise its earlier logs would be stored or not depending on the range."""
        if not since:
            return []
        flt = dict(base)
        if "fromBlock" in flt:
            flt["fromBlock"] = hex(max(min(since.values()), int(str(flt["fromBlock"]), 16)))
        return [
            item
            for item in self.rpc.get_logs({**flt, "address": sorted(since)})
            if int(item["blockNumber"], 16) >= since[item["address"].lower()]
        ]

    def _price_reads(
        self, raw: list[dict], base: dict[str, object], start: int, end: int, live: bool
    ) -> tuple[dict[int, dict[str, SourceRead]], dict[int, BlockHeader]]:
        """The sources read at this range's read points (flows/prices_reader.py). A proxy
        found pointing at an aggregator not followed yet (a new phase) has that aggregator's
        logs read from there on (added to `raw`), and the points are planned again."""
        headers: dict[int, BlockHeader] = {}
        reads: dict[int, dict[str, SourceRead]] = {}
        if not self.prices.sources:
            return reads, headers
        announced = {b: s for b, s in self._announced_sources.items() if start <= b <= end}
        discovered: dict[str, str] = {}  # new aggregator -> its proxy
        for _attempt in range(4):
            stamps: dict[int, int] = {}
            addresses: dict[int, set[str]] = {}
            for item in raw:
                n = int(str(item["blockNumber"]), 16)
                addresses.setdefault(n, set()).add(str(item["address"]).lower())
                stamp = item.get("blockTimestamp")
                if isinstance(stamp, str):
                    stamps[n] = int(stamp, 16)
            if live or self.prices.policy == "every_block":
                numbers = list(range(start, end + 1))
            else:
                numbers = sorted(addresses.keys() | announced.keys() | {end})
                headers.update(self.headers([n for n in numbers if n not in stamps | headers]))
                for n, h in headers.items():
                    stamps.setdefault(n, h.timestamp)
            blocks = [
                BlockLogs(n, stamps.get(n, 0), frozenset(addresses.get(n, ()))) for n in numbers
            ]
            block_hash = base.get("blockHash")
            reads = self.prices.read(
                self.prices.plan(blocks, announced, live),
                block_hash if isinstance(block_hash, str) else None,
            )
            found = self.prices.new_aggregators(reads)
            if not found:
                break
            for got in reads.values():
                for source, read in got.items():
                    if read.aggregator in found:
                        discovered[read.aggregator] = source
            # The swap happened after the read point before (which still saw the old
            # aggregator): the new one's answers from there on are read points too.
            points = sorted(reads)
            since = {
                aggregator: max((p for p in points if p < n), default=start - 1) + 1
                for aggregator, n in found.items()
            }
            raw += self._logs_since(base, since)
            raw.sort(key=_position)
        if discovered:
            # A live run follows a new aggregator from the block its proxy points at it: its
            # logs from before (its first rounds, read by the look-back) are dropped, so both
            # runs store the same logs.
            since = {
                aggregator: min(
                    (n for n, got in reads.items() if got[proxy].aggregator == aggregator),
                    default=end + 1,
                )
                for aggregator, proxy in discovered.items()
            }
            raw[:] = [
                item
                for item in raw
                if int(str(item["blockNumber"]), 16)
                >= since.get(str(item["address"]).lower(), start)
            ]
            addresses = {}
            for item in raw:
                n = int(str(item["blockNumber"]), 16)
                addresses.setdefault(n, set()).add(str(item["address"]).lower())
        with_logs = addresses.keys() | announced.keys()
        if with_logs and max(with_logs) in stamps:
            # Where the next range's first window boundary is counted from.
            self.prices.last_timestamp = stamps[max(with_logs)]
        # every_block: a block whose reads equal the block before's adds nothing.
        kept: dict[int, dict[str, SourceRead]] = {}
        previous = self.prices.last_reads
        for n in sorted(reads):
            if reads[n] != previous or n in addresses or n in announced or n == end:
                kept[n] = reads[n]
            previous = reads[n]
        self.prices.last_reads = previous
        return kept, headers

    @contextmanager
    def _all_or_nothing(self) -> Iterator[None]:
        """A read that fails part-way (a provider fault: the source reads it again) leaves no
        trace. Otherwise what it had announced (pools, their tokens, feed answers, wallets
        that became tracked) would count as done and never reach a batch: a token priced
        with the default 18 decimals, say."""
        saved = (
            set(self.children),
            set(self._initial_tokens),
            set(self._initial_feeds),
            set(self._tokens_seen),
        )
        tracker = self.balances.checkpoint()
        prices = self.prices.checkpoint()
        readers = [r.checkpoint() for r in self.readers]
        try:
            yield
        except BaseException:
            self.children, self._initial_tokens, self._initial_feeds, self._tokens_seen = saved
            self.balances.rollback(tracker)
            self.prices.rollback(prices)
            for reader, cp in zip(self.readers, readers, strict=True):
                reader.rollback(cp)
            raise

    def _racy_node(self) -> bool:
        """Anvil answers an `eth_call` at its newest block (by number or by hash) with the
        next block's state when that block is mined during the call (measured: 896 of 3,955
        reads while a block was mined per transaction). Nodes that keep state per block
        (geth, reth, erigon, the providers) answer for the block asked."""
        if self._racy_head is None:
            try:
                version = str(self.rpc.call("web3_clientVersion"))
            except RpcTransportError:
                raise  # asked again with the read
            except RpcError:
                version = ""  # a node that does not say is taken at its word
            self._racy_head = version.lower().startswith("anvil")
        return self._racy_head

    def _read_at_head(self, read: Callable[[], _T], block: int, head: int) -> _T:
        """A read whose state calls (prices, balances, comets) are at `block`. When `block`
        is the head, on a racy node, and the chain grew meanwhile, the read is undone and
        made again: `block` is then an older block, whose state every node serves exactly
        (the head check after the read caught 893 of the 896 racy reads measured; the rest
        is the node's). A block below the head is read once."""
        if block < head:
            with self._all_or_nothing():
                return self._remembered(read())
        try:
            with self._all_or_nothing():
                reads_before = self.prices.last_reads
                protocols_before = {
                    name: dict(got) if isinstance(got, dict) else got
                    for name, got in self._protocol_reads.items()
                }
                out = read()
                if (
                    self._state_read_at(out, block, reads_before, protocols_before)
                    and self._racy_node()
                    and self.rpc.block_number() > block
                ):
                    raise _TAgain
                return self._remembered(out)
        except _TAgain:
            log.debug("read.again_head_moved", chain_id=self.chain_id, block=block)
            with self._all_or_nothing():
                return self._remembered(read())

    def _remembered(self, out: _T) -> _T:
        self._remember_reads(out)
        return out

    def _state_read_at(
        self,
        out: RangeRead | BlockBatch,
        block: int,
        reads_before: dict[str, SourceRead],
        protocols_before: dict[str, Any],
    ) -> bool:
        """Whether the read took state at `block` that a racy answer could have changed:
        prices that moved from the block before's (an answer from the next block that moved
        nothing is the right answer) and the protocols' reads that did (a comet's state, a
        Morpho market's oracle price, a pool's revision: read at every live block, they would
        otherwise send every head block on a fast chain to be read twice). Opening balances
        are not checked: a wallet's balance of a token is read once, when it becomes tracked,
        and is wrong only if the very next block moves that token for that wallet; checking
        them cost a fast chain a block of lag at every new wallet
        (tests/integration/test_fast_chain.py)."""
        batches = out.batches if isinstance(out, RangeRead) else [out]
        return self.prices.last_reads != reads_before or any(
            _moved(got, protocols_before.get(name))
            for b in batches
            if b.header.number == block
            for name, got in b.reads.items()
        )

    def _remember_reads(self, out: RangeRead | BlockBatch) -> None:
        """The protocols' latest reads (per key where a read is a dict: a market, a comet),
        which the next head read is compared with."""
        for batch in out.batches if isinstance(out, RangeRead) else [out]:
            for name, got in batch.reads.items():
                last = self._protocol_reads.get(name)
                if isinstance(got, dict) and isinstance(last, dict):
                    last.update(got)
                else:
                    self._protocol_reads[name] = dict(got) if isinstance(got, dict) else got

    def read_range(self, start: int, end: int, *, head: int, live: bool) -> RangeRead:
        """Every watched log in [start, end], as one BlockBatch per block that has logs.

        The last block of the range is always emitted, logs or not, so progress reaches it.
        """
        if live:
            read = partial(self._read_range, start, end, head=head, live=live)
            return self._read_at_head(read, end, head)
        with self._all_or_nothing():
            return self._remembered(self._read_range(start, end, head=head, live=live))

    def _read_range(self, start: int, end: int, *, head: int, live: bool) -> RangeRead:
        flt: dict[str, object] = {"fromBlock": hex(start), "toBlock": hex(end)}
        raw, new_tokens = self._fetch(flt, start)
        reads, price_headers = self._price_reads(raw, flt, start, end, live)
        tracked = self._track_balances(raw, flt, start)
        by_block: dict[int, list[RawLog]] = {}
        stamps: dict[int, int] = {}
        for item in raw:
            lg = self._to_log(item)
            logs_of_block = by_block.get(lg.block_number)
            if logs_of_block is None:
                logs_of_block = by_block[lg.block_number] = []
                stamp = item.get("blockTimestamp")
                if isinstance(stamp, str):
                    stamps[lg.block_number] = int(stamp, 16)
            logs_of_block.append(lg)
        self._add_transfers(tracked.logs, by_block, stamps)
        numbers = sorted(
            by_block.keys()
            | tracked.openings.keys()
            | tracked.unreadable.keys()
            | reads.keys()
            | {end}
        )
        # Logs that carry blockTimestamp (anvil, reth, recent geth) spare the header reads;
        # the range's last block is always read, so progress and parent hashes stay anchored.
        to_read = [n for n in numbers if (n not in stamps or n == end) and n not in price_headers]
        headers = {**price_headers, **self.headers(to_read)}
        tokens = self.token_infos(new_tokens)
        batches = []
        for n in numbers:
            logs = by_block.get(n, [])
            header = headers.get(n)
            if header is None:
                header = BlockHeader(self.chain_id, n, logs[0].block_hash, "", stamps[n])
            elif logs and logs[0].block_hash != header.hash:
                # The chain moved under us between the two reads; the caller retries the range.
                raise RpcError(f"block {n} changed while reading (reorg?)")
            batches.append(BlockBatch(header, logs, head, live, checkpoint=n == end))
        if batches and tokens:
            batches[0].tokens = tokens
        for batch in batches:
            batch.price_reads = reads.get(batch.header.number, {})
            batch.balances = tracked.openings.get(batch.header.number, {})
            batch.unreadable_balances = tracked.unreadable.get(batch.header.number, {})
        self.balances.commit(tracked)
        for reader in self.readers:
            reader.read(batches)
        return RangeRead(batches, len(raw) + len(tracked.logs))

    def read_block(self, header: BlockHeader, *, head: int) -> BlockBatch:
        """One block, whole, by hash (so a reorg cannot mix two blocks' logs)."""
        read = partial(self._read_block, header, head=head)
        return self._read_at_head(read, header.number, head)

    def _read_block(self, header: BlockHeader, *, head: int) -> BlockBatch:
        flt: dict[str, object] = {"blockHash": header.hash}
        raw, new_tokens = self._fetch(flt, header.number)
        reads, _headers = self._price_reads(raw, flt, header.number, header.number, True)
        tracked = self._track_balances(raw, flt, header.number)
        by_block = {header.number: [self._to_log(item) for item in raw]}
        self._add_transfers(tracked.logs, by_block, {})
        logs = by_block[header.number]
        batch = BlockBatch(header, logs, head, True, self.token_infos(new_tokens))
        batch.price_reads = reads.get(header.number, {})
        batch.balances = tracked.openings.get(header.number, {})
        batch.unreadable_balances = tracked.unreadable.get(header.number, {})
        self.balances.commit(tracked)
        for reader in self.readers:
            reader.read([batch])
        return batch

    def _track_balances(self, raw: list[dict], flt: dict[str, object], start: int) -> TrackedRead:
        """The tracked wallets' Transfer logs and opening balances for these watched logs."""
        tokens = [(t, c.block) for c in self._announced for t in c.tokens]
        watched = set(self.fixed) | self.children
        return self.balances.read(raw, tokens, watched, flt, start)

    def _add_transfers(
        self, raw: list[dict], by_block: dict[int, list[RawLog]], stamps: dict[int, int]
    ) -> None:
        """Merge Transfer logs into their blocks, in log-index order."""
        touched: set[int] = set()
        for item in raw:
            lg = self._to_log(item)
            number = lg.block_number
            if number not in by_block:
                by_block[number] = []
                stamp = item.get("blockTimestamp")
                if isinstance(stamp, str):
                    stamps[number] = int(stamp, 16)
            by_block[number].append(lg)
            touched.add(number)
        for number in touched:
            by_block[number].sort(key=_LOG_INDEX)

    def _to_log(self, item: dict) -> RawLog:
        try:
            # Positional and with map(): this runs for every log, so every call counts.
            return RawLog(
                self.chain_id,
                int(item["blockNumber"], 16),
                item["blockHash"],
                int(item["logIndex"], 16),
                item["transactionHash"],
                int(item["transactionIndex"], 16),
                item["address"].lower(),
                tuple(map(str.lower, item["topics"])),
                item["data"].lower(),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A log without its coordinates cannot be placed anywhere: a provider fault.
            raise RpcError(f"malformed log from the node: {exc}: {str(item)[:200]}") from exc

    # Headers and tokens -----------------------------------------------------------------------

    def headers(self, numbers: list[int]) -> dict[int, BlockHeader]:
        out: dict[int, BlockHeader] = {}
        for i in range(0, len(numbers), _HEADER_BATCH):
            chunk = numbers[i : i + _HEADER_BATCH]
            results = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk])
            for n, block in zip(chunk, results, strict=True):
                if not isinstance(block, dict):
                    raise RpcError(f"block {n} not found")
                out[n] = self.header_from_json(block)
        return out

    def header_by_number(self, number: int) -> BlockHeader:
        return self.headers([number])[number]

    def latest_header(self) -> BlockHeader:
        block = self.rpc.call("eth_getBlockByNumber", ["latest", False])
        if not isinstance(block, dict):
            raise RpcError("the node has no latest block")
        return self.header_from_json(block)

    def header_from_json(self, block: dict) -> BlockHeader:
        try:
            return BlockHeader(
                chain_id=self.chain_id,
                number=int(block["number"], 16),
                hash=block["hash"].lower(),
                parent_hash=block["parentHash"].lower(),
                timestamp=int(block["timestamp"], 16),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RpcError(f"malformed block header: {exc}") from exc

    def resume_states(self) -> tuple[tuple[str, Any], ...]:
        """Each reader's knowledge a restarted flow needs (ProtocolReader.resume_state)."""
        states = ((r.name, r.resume_state()) for r in self.readers)
        return tuple((name, state) for name, state in states if state is not None)

    def token_infos(self, addresses: Iterable[str]) -> dict[str, TokenInfo]:
        """Metadata of the tokens not announced before: each goes out once, on the batch
        that first names it."""
        return self.token_info(set(addresses) - self._tokens_seen)

    def knows_token(self, address: str) -> bool:
        return address in self._tokens_seen

    def token_info(self, addresses: Iterable[str]) -> dict[str, TokenInfo]:
        """decimals() and symbol() of each token, read once (at the head) and kept; they count
        as announced from then on."""
        wanted = sorted(set(addresses) - self._tokens_seen)
        calls = []
        for a in wanted:
            calls.append(("eth_call", [{"to": a, "data": _DECIMALS}, "latest"]))
            calls.append(("eth_call", [{"to": a, "data": _SYMBOL}, "latest"]))
        # A fault raises (never a token with made-up decimals); a refused call is unreadable.
        results = self.rpc.batch_each(calls) if calls else []
        for i, address in enumerate(wanted):
            decimals = _decode_uint(results[2 * i])
            symbol = _decode_symbol(results[2 * i + 1])
            if decimals is None or decimals > 77:
                log.warning("token.decimals_unreadable", token=address)
                decimals = 18
            self._token_info[address] = TokenInfo(address, symbol or "???", decimals)
            self._tokens_seen.add(address)
        return {a: self._token_info[a] for a in sorted(set(addresses))}


def _decode_uint(value: object) -> int | None:
    if not isinstance(value, str) or len(value) < 3:
        return None
    try:
        return int(value[:66], 16)
    except ValueError:
        return None


def _decode_symbol(value: object) -> str | None:
    """ABI string, or bytes32 (old tokens such as MKR)."""
    if not isinstance(value, str) or not value.startswith("0x"):
        return None
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        return None
    text: bytes
    if len(raw) >= 64:
        length = int.from_bytes(raw[32:64], "big")
        text = raw[64 : 64 + length] if length <= len(raw) - 64 else b""
    elif len(raw) == 32:
        text = raw.rstrip(b"\0")
    else:
        return None
    decoded = text.decode("utf-8", errors="replace").strip()
    return decoded[:32] or None


def _moved(got: Any, last: Any) -> bool:
    """Whether a protocol's read differs from the latest before it (a dict: any key's)."""
    if isinstance(got, dict) and isinstance(last, dict):
        return any(key not in last or last[key] != value for key, value in got.items())
    return True
