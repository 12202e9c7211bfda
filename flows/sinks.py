"""Bytewax sinks at the edge: the ClickHouse store and the broadcast bus."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

import structlog
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from flows.market import MarketOutput
from flows.rows import COLUMNS, Row, SinkBatch, retraction_statements
from ports.bus import Bus
from ports.metrics import METRICS
from ports.status import FlowStatus
from ports.store import Store
from protocols.registry import PLUGINS
from protocols.spec import BusEntry, ShardOutput, bus_event
from protocols.windows import WindowRow, window_json
from schemas.chain import Rewind
from schemas.head_feed import rows_events
from schemas.positions import BlockRef
from schemas.stream import BusEvent

log = structlog.get_logger("defimon.sink")

FLUSH_ROWS = 250_000
FLUSH_SECONDS = 2.0
STORE_PARTITION = "store"
BACKFILL_PUBLISH_SECONDS = 3.0


class _StageOutput(Protocol):
    live: bool


X = TypeVar("X", bound=_StageOutput)


@dataclass(slots=True)
class _Flush:
    """One hand-off to the store writer: rows per table, and the batches to report stored."""

    tables: dict[str, list[Row]]
    rows: int
    stored: list[SinkBatch]


def _merged(flushes: list[_Flush]) -> _Flush:
    if len(flushes) == 1:
        return flushes[0]
    tables: dict[str, list[Row]] = {}
    for flush in flushes:
        for table, rows in flush.tables.items():
            tables.setdefault(table, []).extend(rows)
    return _Flush(
        tables,
        sum(f.rows for f in flushes),
        [item for f in flushes for item in f.stored],
    )


class _StoreWriter:
    """Inserts the sink's flushes in a thread of its own, in order.

    A live block's insert into chDB takes 15-30 ms (more on a loaded machine); on the flow's
    thread it held every following block up, and the sink's Bytewax step with it. chDB runs an
    insert mostly without the interpreter lock, so here it overlaps the next block's steps.
    A block is reported stored (ports.status: `processed`, /readyz) once its insert is done,
    as before. Backfill, which flushes large batches, waits for the writer once a batch is
    waiting already, rather than piling batches up in memory. An insert that fails stops the
    writer; the flow's thread raises it at its next hand-off or drain.
    """

    def __init__(self, store: Store, status: FlowStatus, head_feed: Bus | None = None) -> None:
        self._store = store
        self._status = status
        # Where the stored rows go for the API's head view (schemas/head_feed.py), if anywhere.
        self._head_feed = head_feed
        self._jobs: queue.Queue[_Flush | None] = queue.Queue()
        # Rows handed off and not yet stored; at FLUSH_ROWS a hand-off waits (backfill).
        self._pending_rows = 0
        self._room = threading.Condition()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="defimon-store-writer", daemon=True)
        self._thread.start()

    def submit(self, job: _Flush) -> None:
        with self._room:
            while self._pending_rows >= FLUSH_ROWS and self._failed is None:
                self._room.wait()
            self._pending_rows += job.rows
        self._raise_failure()
        self._jobs.put(job)

    def drain(self) -> None:
        """Back once every flush handed off is stored."""
        self._jobs.join()
        self._raise_failure()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failed is not None:
            raise self._failed

    def _run(self) -> None:
        while True:
            jobs = [self._jobs.get()]
            # Whatever queued up while the last insert ran goes in one insert per table: a
            # writer that fell behind catches up instead of staying a few blocks late.
            while jobs[-1] is not None:
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            try:
                flushes = [job for job in jobs if job is not None]
                if flushes and self._failed is None:  # after a failure nothing more is stored
                    self._write(_merged(flushes))
            except BaseException as exc:
                self._failed = exc
            finally:
                with self._room:
                    self._pending_rows -= sum(job.rows for job in jobs if job is not None)
                    self._room.notify_all()
                for _ in jobs:
                    self._jobs.task_done()
            if jobs[-1] is None:
                return

    def _write(self, job: _Flush) -> None:
        started = time.monotonic()
        for table, rows in job.tables.items():
            if rows:
                columns = COLUMNS[table]
                name = table.split(".")[-1]
                with METRICS.sink_insert_seconds.labels(table=name).time():
                    self._store.insert(table, columns, list(zip(*rows, strict=True)))
                METRICS.rows_written.labels(table=name).inc(len(rows))
        if job.rows:
            took = time.monotonic() - started
            METRICS.sink_flush_seconds.observe(took)
            METRICS.flow_stage_seconds.labels(stage="store_flush").observe(took)
        for item in job.stored:
            if item.expects_shards is not None:
                self._status.market_stored(
                    item.chain_id,
                    item.block_number,
                    item.live,
                    item.expects_shards,
                    item.block_time,
                )
            elif item.shard is not None:
                self._status.shard_stored(item.chain_id, item.block_number, item.shard)
        for progress in self._status.chains():
            METRICS.processed_block.labels(chain_id=str(progress.chain_id)).set(progress.processed)
        if self._head_feed is not None:
            # After the insert, never before: see schemas/head_feed.py.
            self._head_feed.publish(self._feed(job))

    def _feed(self, job: _Flush) -> list[BusEvent]:
        by_chain: dict[int, dict[str, list[Row]]] = {item.chain_id: {} for item in job.stored}
        for table, rows in job.tables.items():
            at = COLUMNS[table].index("chain_id")
            for row in rows:
                by_chain.setdefault(row[at], {}).setdefault(table, []).append(row)
        return [
            event
            for chain, tables in sorted(by_chain.items())
            for event in rows_events(chain, tables, COLUMNS, self._status.chain(chain).processed)
        ]


class _StorePartition(StatefulSinkPartition[SinkBatch, None]):
    """Buffers rows per table and inserts them in large batches, through a writer thread.

    Backfill produces many small blocks; one insert per block would cost more than the rows
    themselves (chDB: ~8 ms per insert). Live blocks are handed to the writer at once, so the
    store is never more than a block behind the stream, and the flow's thread does not wait
    for the insert (`_StoreWriter`). Every epoch's snapshot waits until everything handed
    off is stored: Bytewax commits the source cursor only after that, so a crash can replay
    rows (they collapse by key) but never lose them.
    """

    def __init__(
        self,
        store: Store,
        status: FlowStatus,
        rewind_paths: int,
        bus: Bus,
        head_feed: Bus | None = None,
    ) -> None:
        self._store = store
        self._writer = _StoreWriter(store, status, head_feed)
        self._head_feed = head_feed
        self._status = status
        self._rewind_paths = rewind_paths
        self._rewinds_seen: dict[Rewind, int] = {}
        self._bus = bus
        self._buffer: dict[str, list[Row]] = {}
        self._buffered = 0
        self._first_at: float | None = None
        self._stored: list[SinkBatch] = []

    def write_batch(self, values: list[SinkBatch]) -> None:
        live = False
        for item in values:
            if item.rewind is not None:
                r = item.rewind
                seen = self._rewinds_seen[r] = self._rewinds_seen.get(r, 0) + 1
                if seen == self._rewind_paths:
                    del self._rewinds_seen[r]
                    # Every orphaned row is here now, some still buffered: store them first,
                    # so the retraction (a newer version of each) covers them too.
                    self.flush()
                    self._retract(r)
                continue
            for table, rows in item.rows.items():
                if rows:
                    self._buffer.setdefault(table, []).extend(rows)
                    self._buffered += len(rows)
            if item.expects_shards is not None or item.shard is not None:
                self._stored.append(item)
            live = live or item.live
        if self._first_at is None:
            self._first_at = time.monotonic()
        if (
            live
            or self._buffered >= FLUSH_ROWS
            or time.monotonic() - self._first_at >= FLUSH_SECONDS
        ):
            self._hand_off()

    def _hand_off(self) -> None:
        """The buffer to the writer thread (waits only while a backfill-sized batch is
        still waiting for its insert)."""
        with METRICS.flow_stage_seconds.labels(stage="store_hand_off").time():
            if self._buffered or self._stored:
                self._writer.submit(_Flush(self._buffer, self._buffered, self._stored))
            self._buffer = {}
            self._buffered = 0
            self._first_at = None
            self._stored = []

    def flush(self) -> None:
        """Everything buffered, stored."""
        self._hand_off()
        with METRICS.flow_stage_seconds.labels(stage="store_drain").time():
            self._writer.drain()

    def _retract(self, rewind: Rewind) -> None:
        started = time.monotonic()
        version = time.time_ns()
        for sql, params in retraction_statements(rewind, version):
            self._store.command(sql, params)
        self._status.rewound(rewind.chain_id, rewind.fork_block)
        log.warning(
            "reorg.retracted",
            chain_id=rewind.chain_id,
            fork_block=rewind.fork_block,
            blocks=len(rewind.orphaned),
            seconds=round(time.monotonic() - started, 3),
        )
        # Announced once the store no longer shows the orphaned blocks, so a client that
        # reloads on it reads the canonical chain (and a head view rebuilds from it).
        self._bus.publish([reorg_event(rewind)])
        if self._head_feed is not None:
            self._head_feed.publish([reorg_event(rewind)])

    def snapshot(self) -> None:
        self.flush()

    def close(self) -> None:
        try:
            self._hand_off()
        finally:
            try:
                self._writer.close()
            finally:
                self._store.close()


class StoreSink(FixedPartitionedSink[SinkBatch, None]):
    """One partition: with chDB the store lives in this process anyway. Rows are keyed by
    nothing that matters for correctness (every table dedups by its natural key), so more
    partitions can be added for a ClickHouse server without changing the rows."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        status: FlowStatus,
        bus: Bus,
        rewind_paths: int = 1,
        head_feed: Bus | None = None,
    ) -> None:
        self._open_store = open_store
        self._status = status
        self._bus = bus
        self._rewind_paths = rewind_paths
        # Where the stored rows go for API head views (schemas/head_feed.py), if anywhere.
        self._head_feed = head_feed

    def list_parts(self) -> list[str]:
        return [STORE_PARTITION]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StorePartition:
        return _StorePartition(
            self._open_store(), self._status, self._rewind_paths, self._bus, self._head_feed
        )


# Bus events: each protocol's come from its plugin (protocols/<name>/plugin.py); the windows
# and reorgs are the flow's. Entries are (coalescing key, builder): see protocols.spec.BusEntry.


def window_event(w: WindowRow, block: BlockRef) -> BusEvent:
    return bus_event("window", block, window_json(w), (w.subject.owner,))


def shard_entries(item: ShardOutput) -> Iterator[BusEntry]:
    for plugin in PLUGINS:
        part = item.parts.get(plugin.name)
        if part is not None and plugin.shard_bus is not None:
            yield from plugin.shard_bus(part, item.block)
    for w in item.windows:
        yield None, partial(window_event, w, item.block)


def reorg_event(r: Rewind) -> BusEvent:
    """Names the retracted blocks; every subscriber gets it (no owners: see api/hub.py)."""
    data = {
        "chain_id": r.chain_id,
        "retracted_from": r.fork_block,
        "retracted_to": r.old_head,
        "depth": r.depth,
        "orphaned": [{"number": n, "hash": h} for n, h in r.orphaned],
        "new_head": r.new_head,
    }
    return BusEvent("reorg", r.chain_id, r.fork_block - 1, "", data, (), time.time())


def market_entries(item: MarketOutput) -> Iterator[BusEntry]:
    for plugin in PLUGINS:
        part = item.parts.get(plugin.name)
        if part is not None and plugin.market_bus is not None:
            yield from plugin.market_bus(part, item.block)


class _BusPartition(StatelessSinkPartition[X]):
    """Live blocks are published as they come. Backfill is coalesced: subscribers only need
    each subject's latest state, so it is published at most every BACKFILL_PUBLISH_SECONDS
    (and before the first live block, to keep the order), and its events are built only
    then: superseded states never become JSON."""

    def __init__(self, bus: Bus, entries: Callable[[X], Iterable[BusEntry]]) -> None:
        self._bus = bus
        self._entries = entries
        self._pending: dict[Hashable, Callable[[], BusEvent]] = {}
        self._last_publish = time.monotonic()

    def _publish(self, events: list[BusEvent]) -> None:
        with METRICS.flow_stage_seconds.labels(stage="bus_publish").time():
            self._bus.publish(events)

    def _publish_pending(self) -> None:
        if self._pending:
            self._publish([make() for make in self._pending.values()])
            self._pending.clear()
        self._last_publish = time.monotonic()

    def write_batch(self, items: list[X]) -> None:
        for item in items:
            entries = self._entries(item)
            if item.live:
                self._publish_pending()
                events = [make() for _, make in entries]
                if events:
                    self._publish(events)
                continue
            for key, make in entries:
                if key is not None:
                    self._pending.pop(key, None)  # re-insert: publish in block order
                    self._pending[key] = make
        if time.monotonic() - self._last_publish >= BACKFILL_PUBLISH_SECONDS:
            self._publish_pending()

    def close(self) -> None:
        self._publish_pending()


class BusSink(DynamicSink[ShardOutput]):
    """The position shards' updates and closed windows."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> _BusPartition[ShardOutput]:
        return _BusPartition(self._bus, shard_entries)


class MarketBusSink(DynamicSink[MarketOutput]):
    """The market stage's events (accounts valued there, balances, liquidations)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> _BusPartition[MarketOutput]:
        return _BusPartition(self._bus, market_entries)
