"""Read whole blocks of watched logs from a node (I/O only; no Bytewax, no domain logic).

The watched set is the protocols' fixed contracts plus every child a parent announced: pools
from the Uniswap factory, aTokens and debt tokens from the Aave configurator, price feeds from
the Aave oracle. A child can be announced and used in the same range, so each read first takes
the known set, then reads again for the children that range announced (from their block on).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import structlog

from flows.aave_v3.events import ASSET_SOURCE_UPDATED, RESERVE_INITIALIZED, UPGRADED
from flows.balance_reader import BalanceTracker, TrackedRead
from flows.compound_v3.reader import CometReader
from flows.rpc import RpcClient
from flows.uniswap_v3.events import POOL_CREATED
from schemas.chain import BlockBatch, BlockHeader, RawLog, TokenInfo
from schemas.chain_config import ChainConfig
from schemas.errors import RpcError, RpcTransportError

log = structlog.get_logger("defimon.source")

_DECIMALS = "0x313ce567"  # decimals()
_SYMBOL = "0x95d89b41"  # symbol()
_LATEST_ROUND_DATA = "0xfeaf968c"  # latestRoundData()
_POOL_REVISION = "0x0148170e"  # POOL_REVISION(): the Aave Pool's implementation revision
_HEADER_BATCH = 200
_LOG_INDEX = itemgetter(3)  # RawLog.log_index


@dataclass(slots=True)
class RangeRead:
    batches: list[BlockBatch]
    log_count: int


@dataclass(frozen=True, slots=True)
class Child:
    """A contract a watched parent announced: a pool, an aToken or debt token, a price feed."""

    block: int
    address: str
    tokens: tuple[str, ...]  # ERC-20s whose metadata the flow needs because of it
    kind: str = ""  # "feed" for a price feed, whose current answer is read on discovery


def _word_address(word: str) -> str:
    return "0x" + word[-40:].lower()


def children_of(item: dict[str, Any], parents: dict[str, str]) -> list[Child]:
    """Contracts announced by one raw log of a parent (factory, configurator, oracle)."""
    kind = parents.get(str(item.get("address", "")).lower())
    topics = item.get("topics")
    if kind is None or not isinstance(topics, list) or not topics:
        return []
    data = str(item.get("data", ""))
    try:
        block = int(str(item["blockNumber"]), 16)
        if kind == "factory" and topics[0] == POOL_CREATED and len(topics) == 4:
            if len(data) == 2 + 128:
                tokens = (_word_address(topics[1]), _word_address(topics[2]))
                return [Child(block, _word_address(data), tokens)]
        elif kind == "configurator" and topics[0] == RESERVE_INITIALIZED and len(topics) == 3:
            if len(data) == 2 + 192:
                asset = _word_address(topics[1])
                announced = [
                    _word_address(topics[2]),
                    *(_word_address(w) for w in (data[2:66], data[66:130])),
                ]
                # Reserves listed since 3.2 have no stable debt token: stableDebtToken = 0x0.
                return [
                    Child(block, token, (asset,) if i == 0 else ())
                    for i, token in enumerate(announced)
                    if int(token, 16)
                ]
        elif kind == "oracle" and topics[0] == ASSET_SOURCE_UPDATED and len(topics) == 3:
            return [Child(block, _word_address(topics[2]), (_word_address(topics[1]),), "feed")]
    except (KeyError, ValueError):
        return []  # malformed: the market stage dead-letters the log itself
    return []


class ChainReader:
    def __init__(
        self,
        rpc: RpcClient,
        config: ChainConfig,
        children: Iterable[str] = (),
        wallets: Iterable[str] = (),
        tokens: Iterable[str] = (),
    ) -> None:
        self.rpc = rpc
        self.config = config
        self.chain_id = config.chain_id
        # Parents announce children (pools, reserve tokens, feeds) that are watched from then on.
        self.parents: dict[str, str] = {config.uniswap_v3.factory: "factory"}
        self.fixed = [config.uniswap_v3.factory, config.uniswap_v3.position_manager]
        # The Aave Pool whose revision is read (none when the config pins the version): at
        # the first block read, and at each block where its proxy logs `Upgraded`.
        self._aave_pool: str | None = None
        self._revision_read = False
        self._revisions: dict[int, int] = {}
        if config.aave_v3 is not None:
            aave = config.aave_v3
            if aave.version is None:
                self._aave_pool = aave.pool
            self.parents[aave.pool_configurator] = "configurator"
            self.parents[aave.oracle] = "oracle"
            self.fixed += [aave.pool, aave.pool_configurator, aave.oracle]
        self.fixed += [feed for _token, feed in config.feeds]
        # Comets: their logs, and their state read with eth_call at the blocks that need it.
        self.comet: CometReader | None = None
        if config.compound_v3 is not None and config.compound_v3.comets:
            self.fixed += list(config.compound_v3.comets)
            self.comet = CometReader(rpc, config.compound_v3.comets, self.token_infos)
        self.children: set[str] = set(children)
        self._tokens_seen: set[str] = set()
        self._token_info: dict[str, TokenInfo] = {}
        self._feed_answers: dict[int, dict[str, tuple[int, int, int]]] = {}
        self._initial_tokens = {t for t, _feed in config.feeds}
        # ERC-20 balances of tracked wallets: their Transfer logs join the watched logs.
        self.balances = BalanceTracker(rpc, config, wallets, tokens)
        self._announced: list[Child] = []

    @property
    def pools(self) -> set[str]:  # the source's cursor still calls them pools
        return self.children

    # Logs -----------------------------------------------------------------------------------

    def prefetch(self, headers: Iterable[BlockHeader]) -> None:
        """Start reading these blocks' logs ahead, as `read_block` will ask for them if the
        watched set does not change before (a read that changed it asks anew)."""
        watched = set(self.fixed) | self.children
        filters: list[dict[str, Any]] = []
        for header in headers:
            base: dict[str, object] = {"blockHash": header.hash}
            filters.append(self._watched_filter(base))
            filters += self.balances.next_filters(base, watched)
        self.rpc.prefetch_logs(filters)

    def _watched_filter(self, base: dict[str, object]) -> dict[str, Any]:
        return {**base, "address": self.fixed + sorted(self.children)}

    def _fetch(self, base: dict[str, object]) -> tuple[list[dict], set[str]]:
        """Logs of the watched set for one filter, following children announced inside it."""
        raw = self.rpc.get_logs(self._watched_filter(base))
        new_tokens: set[str] = set(self._initial_tokens)
        self._initial_tokens = set()
        announced = [c for item in raw for c in children_of(item, self.parents)]
        self._announced = announced
        # A feed's answers before it was announced are not in the logs read from then on, so
        # its current answer is read at the announcement block (also for a feed seen before).
        for child in announced:
            if child.kind == "feed":
                self._read_feed(child)
        created = [c for c in announced if c.address not in self.children]
        if created:
            new_children = sorted({c.address for c in created})
            self.children.update(new_children)
            for child in created:
                new_tokens.update(child.tokens)
            flt = dict(base)
            if "fromBlock" in flt:
                flt["fromBlock"] = hex(min(c.block for c in created))
            # Each child from its own announcement on, as a live run reads it: otherwise its
            # earlier logs would be stored or not depending on where the range began.
            since: dict[str, int] = {}
            for c in created:
                since[c.address] = min(c.block, since.get(c.address, c.block))
            raw += [
                item
                for item in self.rpc.get_logs({**flt, "address": new_children})
                if int(item["blockNumber"], 16) >= since[item["address"].lower()]
            ]
            raw.sort(key=lambda x: (int(str(x["blockNumber"]), 16), int(str(x["logIndex"]), 16)))
        return raw, new_tokens - self._tokens_seen

    def _read_feed(self, child: Child) -> None:
        try:
            out = self.rpc.call(
                "eth_call", [{"to": child.address, "data": _LATEST_ROUND_DATA}, hex(child.block)]
            )
            words = [int(out[2 + 64 * i : 66 + 64 * i], 16) for i in range(5)]
        except RpcTransportError:
            raise  # a fault, not an answer: the source reads the range again
        except (RpcError, ValueError, TypeError) as exc:
            log.warning("feed.unreadable", feed=child.address, error=str(exc))
            return
        answer = words[1] - (1 << 256) if words[1] >> 255 else words[1]
        self._feed_answers.setdefault(child.block, {})[child.address] = (
            answer,
            words[0],
            words[3],
        )

    def _take_feed_answers(self, batches: list[BlockBatch]) -> None:
        for batch in batches:
            found = self._feed_answers.pop(batch.header.number, None)
            if found:
                batch.feed_answers = found
        self._take_revisions(batches)

    # The Aave Pool's revision ---------------------------------------------------------------

    def _read_revisions(self, raw: list[dict], first: int) -> None:
        """POOL_REVISION() at the first block this reader reads (or, while the pool has no
        code yet, at its first log) and at every block where the Pool proxy was upgraded."""
        pool = self._aave_pool
        if pool is None:
            return
        logs = [
            (int(str(item["blockNumber"]), 16), (item.get("topics") or [None])[0])
            for item in raw
            if str(item.get("address", "")).lower() == pool
        ]
        if not self._revision_read and not self._read_revision(first) and logs:
            self._read_revision(min(block for block, _t0 in logs))
        for block in sorted({block for block, t0 in logs if t0 == UPGRADED} - set(self._revisions)):
            self._read_revision(block)

    def _read_revision(self, block: int) -> bool:
        try:
            out = self.rpc.call(
                "eth_call", [{"to": self._aave_pool, "data": _POOL_REVISION}, hex(block)]
            )
        except RpcTransportError:
            raise  # a fault, not an answer: the source reads the range again
        except RpcError as exc:
            log.warning("aave.revision_unreadable", pool=self._aave_pool, error=str(exc))
            return False
        revision = _decode_uint(out)
        if not revision:
            return False  # no pool there yet (no code): the rules stay as they are
        self._revisions[block] = revision
        self._revision_read = True
        return True

    def _take_revisions(self, batches: list[BlockBatch]) -> None:
        """Each revision goes with the first batch at or after the block it was read at (a
        block with no watched logs has no batch, and nothing in between needs the rules)."""
        for block in sorted(self._revisions):
            batch = next((b for b in batches if b.header.number >= block), None)
            if batch is not None:
                batch.aave_revision = self._revisions.pop(block)

    @contextmanager
    def _all_or_nothing(self) -> Iterator[None]:
        """A read that fails part-way (a provider fault: the source reads it again) leaves no
        trace. Otherwise what it had announced (pools, their tokens, feed answers, wallets
        that became tracked) would count as done and never reach a batch: a token priced
        with the default 18 decimals, say."""
        saved = (
            set(self.children),
            set(self._initial_tokens),
            set(self._tokens_seen),
            {block: dict(answers) for block, answers in self._feed_answers.items()},
        )
        revisions = (self._revision_read, dict(self._revisions))
        tracker = self.balances.checkpoint()
        try:
            yield
        except BaseException:
            self.children, self._initial_tokens, self._tokens_seen, self._feed_answers = saved
            self._revision_read, self._revisions = revisions
            self.balances.rollback(tracker)
            raise

    def read_range(self, start: int, end: int, *, head: int, live: bool) -> RangeRead:
        """Every watched log in [start, end], as one BlockBatch per block that has logs.

        The last block of the range is always emitted, logs or not, so progress reaches it.
        """
        with self._all_or_nothing():
            return self._read_range(start, end, head=head, live=live)

    def _read_range(self, start: int, end: int, *, head: int, live: bool) -> RangeRead:
        flt: dict[str, object] = {"fromBlock": hex(start), "toBlock": hex(end)}
        raw, new_tokens = self._fetch(flt)
        self._read_revisions(raw, start)
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
            by_block.keys() | tracked.openings.keys() | tracked.unreadable.keys() | {end}
        )
        # Logs that carry blockTimestamp (anvil, reth, recent geth) spare the header reads;
        # the range's last block is always read, so progress and parent hashes stay anchored.
        to_read = [n for n in numbers if n not in stamps or n == end]
        headers = self.headers(to_read)
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
        self._take_feed_answers(batches)
        for batch in batches:
            batch.balances = tracked.openings.get(batch.header.number, {})
            batch.unreadable_balances = tracked.unreadable.get(batch.header.number, {})
        self.balances.commit(tracked)
        if self.comet is not None:
            self.comet.read(batches)
        return RangeRead(batches, len(raw) + len(tracked.logs))

    def read_block(self, header: BlockHeader, *, head: int) -> BlockBatch:
        """One block, whole, by hash (so a reorg cannot mix two blocks' logs)."""
        with self._all_or_nothing():
            return self._read_block(header, head=head)

    def _read_block(self, header: BlockHeader, *, head: int) -> BlockBatch:
        flt: dict[str, object] = {"blockHash": header.hash}
        raw, new_tokens = self._fetch(flt)
        self._read_revisions(raw, header.number)
        tracked = self._track_balances(raw, flt, header.number)
        by_block = {header.number: [self._to_log(item) for item in raw]}
        self._add_transfers(tracked.logs, by_block, {})
        logs = by_block[header.number]
        batch = BlockBatch(header, logs, head, True, self.token_infos(new_tokens))
        self._take_feed_answers([batch])
        batch.balances = tracked.openings.get(header.number, {})
        batch.unreadable_balances = tracked.unreadable.get(header.number, {})
        self.balances.commit(tracked)
        if self.comet is not None:
            self.comet.read([batch])
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
