"""The chain source: a Bytewax FixedPartitionedSource, one partition per chain.

A background thread does the reading, so `next_batch` never blocks (Bytewax's rule) and the
node's serving overlaps with the dataflow's processing:

- backfill: `eth_getLogs` over adaptive block ranges (shrink on provider refusals or when a
  range returns too many logs, grow while ranges are sparse), then
- live: one block at a time, by hash, on every new head (WebSocket `newHeads` when a ws URL is
  given, HTTP polling otherwise).

The snapshot is the cursor (next block, last hash, the pools known, the wallets and tokens whose
balances are tracked), so a restart resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import structlog
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.chain_reader import ChainReader
from flows.endpoint import ChainEndpoint
from flows.log_limits import TARGET_LOGS
from flows.rpc import RpcClient
from flows.watch import WatchReader, merge_seeds
from ports.metrics import METRICS
from ports.status import FlowStatus
from ports.watch import WatchRequests
from schemas.chain import BlockBatch, BlockHeader, Rewind, SourceItem
from schemas.errors import RangeTooLarge, ReorgTooDeep, RpcError
from schemas.prices import PriceSource
from schemas.watch import WatchSeed

log = structlog.get_logger("defimon.source")
T = TypeVar("T")
Tracked = tuple[tuple[str, ...], tuple[str, ...]]  # (wallets, tokens) whose balances are tracked
Watched = tuple[tuple[str, int], ...]  # watch mode: (wallet, block it was seeded at)
# items, next block, last hash, (tracked, watched) after them, recent hashes after them
_Item = tuple[
    list[SourceItem], int, str | None, tuple[Tracked, Watched], tuple[tuple[int, str], ...]
]

MIN_SPAN, MAX_SPAN, FIRST_SPAN = 1, 100_000, 8
# Once backfill has reached the head it read, fewer new blocks than this go to live following.
LIVE_GAP = 16


@dataclass(frozen=True, slots=True)
class SourceCursor:
    next_block: int
    last_hash: str | None
    pools: tuple[str, ...]
    # As of next_block (not the reader's read-ahead): a wallet in here has its opening
    # balances in the state, so a restart must not read them again nor forget them.
    wallets: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()
    # (number, hash) of the unfinalised blocks emitted: what a reorg is detected against,
    # also one that happened while the process was down.
    recent: tuple[tuple[int, str], ...] = ()
    # Wallet watch mode: the wallets seeded so far, with the block each was seeded at.
    watched: tuple[tuple[str, int], ...] = ()
    # Oracle price sources as classified (flows/prices_reader.py), with what they follow.
    prices: tuple[PriceSource, ...] = ()
    # The protocol readers' knowledge learned from logs (ProtocolReader.resume_state).
    readers: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class HeadFollowing:
    """How the source follows the head once backfill is done."""

    poll_interval: float = 0.05  # seconds between eth_blockNumber polls without a ws URL
    # Re-read the newest stored block's hash this often: a reorg to a branch of the same
    # height announces no new height.
    recheck_seconds: float = 2.0
    # No new head this long: count a stall, log it and reconnect the subscription.
    head_timeout: float = 120.0


def next_span(span: int, logs: int, target: int = TARGET_LOGS) -> int:
    """Adaptive range: scale towards `target` logs per range (below the providers' 10,000-log
    caps, and half any cap learned from a refusal), at most halving or doubling at a time
    (log density changes along a chain's history)."""
    wanted = span * 2 if logs == 0 else span * target // logs
    return max(MIN_SPAN, min(MAX_SPAN, span * 2, max(span // 2, wanted)))


class _Reader(threading.Thread):
    """Reads ahead into a bounded queue of (batches, next_block) items."""

    def __init__(
        self,
        endpoint: ChainEndpoint,
        cursor: SourceCursor,
        status: FlowStatus,
        stop: threading.Event,
        following: HeadFollowing,
        requests: WatchRequests | None = None,
    ) -> None:
        super().__init__(name=f"chain-reader-{endpoint.config.chain_id}", daemon=True)
        self.endpoint = endpoint
        self.rpc = RpcClient(
            endpoint.http_urls,
            options=endpoint.rpc_options,
            chain_id=endpoint.config.chain_id,
            stop=stop,
        )
        self.reader = ChainReader(
            self.rpc,
            endpoint.config,
            cursor.pools,
            cursor.wallets,
            cursor.tokens,
            cursor.prices,
            getattr(cursor, "readers", ()),  # (absent from a cursor saved before it existed)
        )
        self.next_block = cursor.next_block
        self.last_hash = cursor.last_hash
        self.status = status
        self.stop = stop
        self.poll_interval = following.poll_interval
        self.out: queue.Queue[_Item] = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.live = False
        self.chain_id = endpoint.config.chain_id
        self.depth = endpoint.config.finality_depth
        self.recent: dict[int, str] = dict(cursor.recent)
        # tracked wallets and tokens after each recent block, to restore on a rewind
        self.tracked_at: dict[int, Tracked] = {
            cursor.next_block - 1: (cursor.wallets, cursor.tokens)
        }
        self.head = -1
        self.recheck_seconds = following.recheck_seconds
        self.head_timeout = following.head_timeout
        self._last_check = time.monotonic()
        # Wallets to add at runtime (POST /v1/watch): seeded in watch mode, else their
        # ERC-20 balances are tracked.
        self.requests = requests or WatchRequests()
        self.watch: WatchReader | None = None
        if endpoint.watch is not None:
            self.watch = WatchReader(self.rpc, self.reader, cursor.watched)
            self.reader.balances.discover = False
            self.requests.started(self.chain_id, dict(cursor.watched))
            for wallet in endpoint.watch:
                self.requests.add(self.chain_id, wallet)

    def run(self) -> None:
        try:
            # The client checks every endpoint's chain id before its first use (flows/rpc.py).
            self._retrying(self._check_recent)  # a reorg while we were down
            if self.next_block < 0:
                # A fresh watch-mode start: from the head, no history; the head block comes
                # at once with the wallets' seeds (before any head subscription).
                head = self._retrying(self.rpc.block_number)
                self.next_block = head
                self._emit_up_to(self._retrying(lambda: self.reader.header_by_number(head)))
            self._backfill()
            self.live = True
            if self.endpoint.ws_url:
                asyncio.run(self._follow_ws(self.endpoint.ws_url))
            else:
                self._follow_polling()
        except BaseException as exc:  # surfaced to Bytewax through next_batch
            if not self.stop.is_set():
                self.error = exc
        finally:
            self.rpc.close()

    def _put(self, items: Sequence[SourceItem], next_block: int) -> None:
        last = self.last_hash
        for item in items:
            if isinstance(item, BlockBatch):
                h = item.header
                last = h.hash
                self.head = max(self.head, item.head)
                item.final_block = item.head - self.depth
                if h.number > self.head - self.depth:
                    self.recent[h.number] = h.hash
        tracked = self.reader.balances.snapshot
        if items and isinstance(items[-1], BlockBatch):
            # Exact per block when live (one block per put); per range in backfill.
            self.tracked_at[items[-1].header.number] = tracked
        self._prune_recent()
        recent = tuple(sorted(self.recent.items()))
        while not self.stop.is_set():
            try:
                watched = tuple(sorted(self.watch.watched.items())) if self.watch else ()
                self.out.put(
                    (list(items), next_block, last, (tracked, watched), recent), timeout=0.1
                )
                self.next_block, self.last_hash = next_block, last
                return
            except queue.Full:
                continue

    def _prune_recent(self) -> None:
        # Keep the blocks a reorg may still replace, plus the newest final one as the anchor
        # a fork is found against (and the tracked set as of it).
        floor = self.head - self.depth
        for table in (self.recent, self.tracked_at):
            anchor = max((n for n in table if n <= floor), default=None)
            for n in [n for n in table if n < floor and n != anchor]:
                del table[n]

    def _retrying(self, fn: Callable[[], T]) -> T:
        delay = 0.2
        while not self.stop.is_set():
            try:
                return fn()
            except RpcError as exc:
                log.warning("rpc.retry", chain_id=self.chain_id, error=str(exc), delay=delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 10.0)
        raise _Stopped()

    def _backfill(self) -> None:
        span = FIRST_SPAN
        start = self.next_block
        t0, blocks_done = time.monotonic(), 0
        last_report = t0
        head = self._retrying(self.rpc.block_number)
        failures = 0  # in a row: each waits longer (a refused or failing read is not hammered)
        while not self.stop.is_set():
            if self.next_block > head:
                head = self._retrying(self.rpc.block_number)
                self.status.saw_head(self.chain_id, head)
                # Caught up with the head read before: the few blocks mined meanwhile are
                # left to live following, which reads them pipelined. Chasing a fast chain's
                # head range by range (several round trips one after another) never ends.
                if head - self.next_block < LIVE_GAP:
                    self._retrying(partial(self._anchor, head))
                    log.info(
                        "backfill.done",
                        chain_id=self.chain_id,
                        blocks=blocks_done,
                        seconds=round(time.monotonic() - t0, 2),
                    )
                    return
            self.status.saw_head(self.chain_id, head)
            if self.recent and time.monotonic() - self._last_check >= self.recheck_seconds:
                self._retrying(self._check_recent)  # near the head: blocks may still change
            if self.watch is None:
                self._take_requests(self.next_block)
            end = min(self.next_block + span - 1, head)
            caught_up = end == head
            try:
                read = self.reader.read_range(self.next_block, end, head=head, live=caught_up)
            except RpcError as exc:
                # The client already cut refused filters to fit (flows/log_limits.py): what
                # reaches here is a refusal it could not resolve, or a fault through its whole
                # budget. A smaller range, after a wait that doubles with each failure.
                failures += 1
                hint = exc.hint if isinstance(exc, RangeTooLarge) else None
                span = _span_from_hint(hint, span)
                delay = min(0.2 * 2 ** (failures - 1), 30.0)
                log.warning(
                    "backfill.read_failed",
                    chain_id=self.chain_id,
                    error=str(exc)[:300],
                    span=span,
                    failures=failures,
                    retry_in=delay,
                )
                self.stop.wait(delay)
                continue
            failures = 0
            blocks_done += end - self.next_block + 1
            self._seed_new_tokens(read.batches)
            self._put(read.batches, end + 1)
            span = next_span(span, read.log_count, self.rpc.log_limits().target_logs())
            now = time.monotonic()
            if now - last_report >= 2.0 or caught_up:
                rate = blocks_done / max(now - t0, 1e-6)
                remaining = head - end
                log.info(
                    "backfill.progress",
                    chain_id=self.chain_id,
                    block=end,
                    head=head,
                    done_pct=round(100 * (end - start + 1) / max(head - start + 1, 1), 1),
                    blocks_per_s=round(rate, 1),
                    eta_s=round(remaining / rate, 1) if rate else None,
                    span=span,
                )
                last_report = now

    def _emit_up_to(self, header: BlockHeader) -> None:
        """Emit every block from next_block to `header`, each whole, in order; first roll back
        whatever `header` shows was reorganised away, then read the canonical blocks."""
        while self._emit_once(header):
            header = self._retrying(lambda: self.reader.header_by_number(self.rpc.block_number()))

    def _emit_once(self, header: BlockHeader) -> bool:
        """True if it rolled back instead (the canonical blocks are still to be read)."""
        self.status.saw_head(self.chain_id, header.number)
        self.head = max(self.head, header.number)
        if header.number < self.next_block:
            # The same height again or lower: a duplicate notification, a lagging node, or a
            # replacement branch (anvil_reorg, evm_revert). Only a changed hash says which.
            known = self.recent.get(header.number)
            if known is not None and known != header.hash:
                self._rewind(header.number)
                return True
            return False
        missing = list(range(self.next_block, header.number))
        known_headers = self._retrying(lambda: self.reader.headers(missing)) if missing else {}
        headers = [known_headers[n] for n in missing] + [header]
        if self.last_hash and headers[0].parent_hash != self.last_hash:
            self._rewind(headers[0].number - 1)
            return True
        for previous, h in itertools.pairwise(headers):
            if h.parent_hash != previous.hash:
                return False  # the chain moved while we read: the next head starts again
        # Pipelined: every block's logs are read at once, several in flight; each block is
        # then applied in order (a fast chain keeps up however long the round trip).
        self.reader.prefetch(headers)
        for h in headers:
            seeds = self._take_requests(h.number)
            batch = self._retrying(partial(self.reader.read_block, h, head=header.number))
            batch.seeds = seeds
            self._seed_new_tokens([batch])
            self._put([batch], h.number + 1)
        return False

    def _anchor(self, head: int) -> None:
        """Backfill kept the hashes of blocks with logs only; a fork below all of them would
        look too deep. Keep the hash of the newest final block too."""
        number = min(max(head - self.depth, 0), self.next_block - 1)
        if number < 0 or any(n <= number for n in self.recent):
            return
        self.recent[number] = self.reader.header_by_number(number).hash

    def _check_recent(self) -> bool:
        """The periodic check: does the node still have our newest block? A reorg to a branch
        of the same height sends no new height, and no node sends `removed` logs for it. Also
        run on start, for a reorg that happened while the process was down. True if it rolled
        back (the caller reads the canonical blocks)."""
        self._last_check = time.monotonic()
        if not self.recent:
            return False
        head = self.rpc.block_number()
        below = [n for n in self.recent if n <= min(max(self.recent), head)]
        if not below:  # every block we hold is above the node's head now
            self._rewind(min(self.recent))
            return True
        number = max(below)
        if self.reader.header_by_number(number).hash != self.recent[number]:
            self._rewind(number)
            return True
        return False

    def _check_and_catch_up(self) -> None:
        if self._check_recent():
            self._emit_up_to(self.reader.header_by_number(self.rpc.block_number()))

    def _rewind(self, changed: int) -> None:
        """Block `changed` (or one before it) is no longer ours: find the last block both
        branches share, roll every stage back to it, and continue from the block after."""
        head = self.rpc.block_number()
        numbers = sorted((n for n in self.recent if n <= min(head, changed)), reverse=True)
        canonical = self._retrying(lambda: self.reader.headers(numbers)) if numbers else {}
        ancestor = next((n for n in numbers if canonical[n].hash == self.recent[n]), None)
        if ancestor is None:
            oldest = min(self.recent) if self.recent else self.next_block
            METRICS.reorgs.labels(chain_id=str(self.chain_id)).inc()
            raise ReorgTooDeep(self.chain_id, oldest, oldest)
        orphaned = tuple(sorted((n, h) for n, h in self.recent.items() if n > ancestor))
        old_head = self.next_block - 1
        rewind = Rewind(self.chain_id, ancestor + 1, orphaned, old_head, head)
        for n in [n for n in self.recent if n > ancestor]:
            del self.recent[n]
        restore = max((n for n in self.tracked_at if n <= ancestor), default=None)
        for n in [n for n in self.tracked_at if n > ancestor]:
            del self.tracked_at[n]
        if restore is not None:
            self.reader.balances.restore(self.tracked_at[restore], restore)
        if self.watch is not None:
            # A wallet seeded on the orphaned branch lost its seed with it: seed it again.
            for wallet, block in list(self.watch.watched.items()):
                if block > ancestor:
                    del self.watch.watched[wallet]
                    self.requests.add(self.chain_id, wallet)
        log.warning(
            "reorg.detected",
            chain_id=self.chain_id,
            fork_block=rewind.fork_block,
            depth=rewind.depth,
            old_head=old_head,
            new_head=head,
        )
        METRICS.reorgs.labels(chain_id=str(self.chain_id)).inc()
        METRICS.reorg_depth.labels(chain_id=str(self.chain_id)).observe(rewind.depth)
        self.last_hash = self.recent[ancestor]
        self._put([rewind], ancestor + 1)

    def _seed_new_tokens(self, batches: list[BlockBatch]) -> None:
        """Watch mode: what these blocks' logs brought the watched wallets that the logs
        cannot show is seeded at its block (an NFT minted or moved to one: the manager's fee
        checkpoint cannot come from a partial replica)."""
        if self.watch is None:
            return
        for batch in batches:
            extra = self._retrying(partial(self.watch.seed_logs, batch.logs, batch.header.number))
            if extra is not None:
                batch.seeds = merge_seeds(batch.seeds, extra)

    def _take_requests(self, block: int) -> WatchSeed | None:
        """Wallets asked for since the last block: in watch mode, their seed at the end of
        `block` (read before the block's logs, so its new contracts are read with them);
        otherwise their ERC-20 balances from this block on."""
        if not self.requests.pending(self.chain_id):
            return None
        wallets = self.requests.take(self.chain_id)
        if self.watch is None:
            self.reader.balances.track(wallets, ())
            self.requests.started(self.chain_id, dict.fromkeys(wallets, block))
            return None
        watch = self.watch
        seed = self._retrying(partial(watch.seed, wallets, block))
        self.requests.started(
            self.chain_id, {w: watch.watched[w] for w in wallets if w in watch.watched}
        )
        return seed

    def _seed_idle(self) -> None:
        """No new block, wallets waiting: seed them at the last block read and emit that
        block again with the seed only (nothing else in it changes), so a wallet shows within
        a second, not a block time later."""
        if not self.requests.pending(self.chain_id):
            return
        last = self.next_block - 1
        if self.watch is None or self.last_hash is None or last < 0:
            self._take_requests(self.next_block)
            return
        header = self._retrying(lambda: self.reader.header_by_number(last))
        if header.hash != self.last_hash:
            return  # the chain moved under us: the next head seeds them
        seeds = self._take_requests(last)
        batch = BlockBatch(header, [], last, True, seeds=seeds)
        watched = set(self.reader.fixed) | self.reader.children
        batch.balances, batch.unreadable_balances = self._retrying(
            lambda: self.reader.balances.open_pending(last, watched)
        )
        self._put([batch], last + 1)

    def _follow_polling(self) -> None:
        last_move = time.monotonic()
        while not self.stop.is_set():
            try:
                # The head's header in one round trip (not its number, then its header).
                latest = self.reader.latest_header()
                if latest.number >= self.next_block:
                    self._emit_up_to(latest)
                    last_move = time.monotonic()
                    continue
                if time.monotonic() - self._last_check >= self.recheck_seconds:
                    self._check_and_catch_up()
                if time.monotonic() - last_move >= self.head_timeout:
                    self._stalled()
                    last_move = time.monotonic()
                self._seed_idle()
            except RpcError as exc:
                log.warning("head.poll_failed", chain_id=self.chain_id, error=str(exc))
            self.stop.wait(self.poll_interval)

    def _stalled(self) -> None:
        METRICS.head_stalls.labels(chain_id=str(self.chain_id)).inc()
        log.warning(
            "head.stalled",
            chain_id=self.chain_id,
            seconds=self.head_timeout,
            head=self.head,
            note="no new block; reconnecting (check the node or provider)",
        )

    async def _follow_ws(self, ws_url: str) -> None:
        from web3 import AsyncWeb3, WebSocketProvider
        from web3.exceptions import Web3Exception
        from websockets.exceptions import WebSocketException

        while not self.stop.is_set():
            try:
                async with AsyncWeb3(WebSocketProvider(ws_url)) as w3:
                    await w3.eth.subscribe("newHeads")
                    # Heads that arrived while (re)connecting, and any reorg meanwhile.
                    head = self.rpc.block_number()
                    await asyncio.to_thread(self._emit_up_to, self.reader.header_by_number(head))
                    await self._consume_heads(aiter(w3.socket.process_subscriptions()))
            except _Stopped:
                return
            except _HeadStalled:
                self._stalled()
            except (OSError, TimeoutError, RpcError, Web3Exception, WebSocketException) as exc:
                # A dropped socket: reconnect (the gap is read on reconnect). Anything else is
                # a bug and stops the flow visibly.
                if self.stop.is_set():
                    return
                log.warning("head.ws_failed", chain_id=self.chain_id, error=str(exc))
                await asyncio.sleep(0.5)

    async def _consume_heads(self, messages: AsyncIterator[Any]) -> None:
        waiting: asyncio.Future[Any] | None = None
        last_head = time.monotonic()
        try:
            while not self.stop.is_set():
                # Wait in short slices (without cancelling the read, which would end the
                # subscription's generator) so a stop is noticed when no block comes, the
                # recent blocks are re-checked, and a head that stops moving is noticed.
                if waiting is None:
                    waiting = asyncio.ensure_future(anext(messages))
                done, _ = await asyncio.wait({waiting}, timeout=0.25)
                if not done:
                    now = time.monotonic()
                    if now - self._last_check >= self.recheck_seconds:
                        await asyncio.to_thread(self._check_and_catch_up)
                    if now - last_head >= self.head_timeout:
                        raise _HeadStalled()
                    if self.requests.pending(self.chain_id):
                        await asyncio.to_thread(self._seed_idle)
                    continue
                last_head = time.monotonic()
                message, waiting = waiting.result(), None
                raw = message["result"]
                header = self.reader.header_from_json(
                    {k: _hex(raw.get(k)) for k in ("number", "hash", "parentHash", "timestamp")}
                )
                await asyncio.to_thread(self._emit_up_to, header)
        finally:
            if waiting is not None:
                waiting.cancel()
                with contextlib.suppress(BaseException):
                    await waiting


def _hex(value: object) -> str:
    """web3 hands headers back with ints and HexBytes; the reader wants JSON-RPC hex."""
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    return str(value)


def _span_from_hint(hint: tuple[int, int] | None, span: int) -> int:
    if hint is None:
        return max(MIN_SPAN, span // 2)
    return max(MIN_SPAN, min(span - 1, hint[1] - hint[0] + 1))


class _Stopped(Exception):
    pass


class _HeadStalled(Exception):
    """No new head for head_timeout seconds: the subscription is reconnected."""


class ChainPartition(StatefulSourcePartition[SourceItem, SourceCursor]):
    def __init__(self, reader: _Reader, cursor: SourceCursor, stop: threading.Event) -> None:
        self._reader = reader
        self._cursor = cursor
        self._stop = stop
        reader.start()

    def next_batch(self) -> list[SourceItem]:
        if self._stop.is_set():
            raise StopIteration()
        try:
            items, next_block, last_hash, (tracked, watched), recent = self._reader.out.get_nowait()
        except queue.Empty:
            if self._reader.error is not None:
                log.error(
                    "source.failed",
                    chain_id=self._reader.chain_id,
                    error=f"{type(self._reader.error).__name__}: {self._reader.error}",
                )
                raise self._reader.error from None
            if not self._reader.is_alive() and self._reader.out.empty():
                raise StopIteration() from None
            return []
        self._cursor = SourceCursor(
            next_block,
            last_hash,
            tuple(sorted(self._reader.reader.pools)),
            *tracked,
            recent=recent,
            watched=watched,
            prices=self._reader.reader.prices.snapshot,
            readers=self._reader.reader.resume_states(),
        )
        return items

    def next_awake(self) -> datetime | None:
        if not self._reader.out.empty():
            return None
        # Polling our own queue is cheap; 2 ms keeps block-to-stream latency low.
        return datetime.now(UTC) + timedelta(milliseconds=2)

    def snapshot(self) -> SourceCursor:
        return self._cursor

    def close(self) -> None:
        self._stop.set()
        self._reader.join(timeout=5)


class ChainSource(FixedPartitionedSource[SourceItem, SourceCursor]):
    def __init__(
        self,
        endpoints: list[ChainEndpoint],
        status: FlowStatus,
        stop: threading.Event,
        following: HeadFollowing | None = None,
        requests: WatchRequests | None = None,
    ) -> None:
        self._endpoints = {f"chain-{e.config.chain_id}": e for e in endpoints}
        self._requests = requests or WatchRequests()
        self._status = status
        self._stop = stop
        self._following = following or HeadFollowing()

    def list_parts(self) -> list[str]:
        return sorted(self._endpoints)

    def build_part(
        self, step_id: str, for_part: str, resume_state: SourceCursor | None
    ) -> ChainPartition:
        endpoint = self._endpoints[for_part]
        if resume_state is None:
            start = endpoint.from_block
            if start is None:
                start = endpoint.config.start_block
            if endpoint.watch is not None:
                start = -1  # the head, read when the reader starts
            resume_state = SourceCursor(start, None, ())
            log.info("source.start", chain_id=endpoint.config.chain_id, from_block=start)
        else:
            log.info(
                "source.resume",
                chain_id=endpoint.config.chain_id,
                from_block=resume_state.next_block,
            )
        reader = _Reader(
            endpoint, resume_state, self._status, self._stop, self._following, self._requests
        )
        return ChainPartition(reader, resume_state, self._stop)
