"""Bytewax sinks at the edge: the ClickHouse store and the broadcast bus."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from functools import partial
from typing import Any, Protocol, TypeVar

import structlog
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from flows.rows import COLUMNS, Row, SinkBatch, retraction_statements
from ports.bus import Bus
from ports.metrics import METRICS
from ports.status import FlowStatus
from ports.store import Store
from protocols.aave_v3.events import LiquidationCall
from protocols.aave_v3.state import AccountUpdate, account_id
from protocols.compound_v3.state import CometAccountUpdate
from protocols.erc20.book import BalanceChange
from protocols.uniswap_v3.state import MarketOutput, PositionUpdate, ShardOutput
from protocols.windows import WindowRow, window_json
from schemas.balances import balance_json
from schemas.chain import RawLog, Rewind
from schemas.lending import account_json
from schemas.liquidations import liquidation_json
from schemas.positions import BlockRef, position_json
from schemas.stream import BusEvent

log = structlog.get_logger("defimon.sink")

FLUSH_ROWS = 250_000
FLUSH_SECONDS = 2.0
STORE_PARTITION = "store"
BACKFILL_PUBLISH_SECONDS = 3.0


class _StageOutput(Protocol):
    live: bool


X = TypeVar("X", bound=_StageOutput)


class _StorePartition(StatefulSinkPartition[SinkBatch, None]):
    """Buffers rows per table and inserts them in large batches.

    Backfill produces many small blocks; one insert per block would cost more than the rows
    themselves (chDB: ~8 ms per insert). Live blocks flush at once, so the store is never more
    than a block behind the stream. Every epoch's snapshot flushes too: Bytewax commits the
    source cursor only after that, so a crash can replay rows (they collapse by key) but
    never lose them.
    """

    def __init__(self, store: Store, status: FlowStatus, rewind_paths: int, bus: Bus) -> None:
        self._store = store
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
            self.flush()

    def flush(self) -> None:
        started = time.monotonic()
        for table, rows in self._buffer.items():
            if rows:
                columns = COLUMNS[table]
                name = table.split(".")[-1]
                with METRICS.sink_insert_seconds.labels(table=name).time():
                    self._store.insert(table, columns, list(zip(*rows, strict=True)))
                METRICS.rows_written.labels(table=name).inc(len(rows))
        if self._buffered:
            METRICS.sink_flush_seconds.observe(time.monotonic() - started)
        self._buffer.clear()
        self._buffered = 0
        self._first_at = None
        for item in self._stored:
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
        self._stored.clear()
        for progress in self._status.chains():
            METRICS.processed_block.labels(chain_id=str(progress.chain_id)).set(progress.processed)

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
        # reloads on it reads the canonical chain.
        self._bus.publish([reorg_event(rewind)])

    def snapshot(self) -> None:
        self.flush()

    def close(self) -> None:
        self.flush()
        self._store.close()


class StoreSink(FixedPartitionedSink[SinkBatch, None]):
    """One partition: with chDB the store lives in this process anyway. Rows are keyed by
    nothing that matters for correctness (every table dedups by its natural key), so more
    partitions can be added for a ClickHouse server without changing the rows."""

    def __init__(
        self, open_store: Callable[[], Store], status: FlowStatus, bus: Bus, rewind_paths: int = 1
    ) -> None:
        self._open_store = open_store
        self._status = status
        self._bus = bus
        self._rewind_paths = rewind_paths

    def list_parts(self) -> list[str]:
        return [STORE_PARTITION]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StorePartition:
        return _StorePartition(self._open_store(), self._status, self._rewind_paths, self._bus)


# Bus events. Each builder makes one event; the partitions below decide when it is built.


def _event(kind: str, block: BlockRef, data: dict[str, Any], owners: tuple[str, ...]) -> BusEvent:
    return BusEvent(kind, block.chain_id, block.number, block.hash, data, owners, time.time())


def position_event(u: PositionUpdate) -> BusEvent:
    # A transferred position concerns both its new and its previous owner.
    owners = (
        (u.position.owner,) if u.previous_owner is None else (u.position.owner, u.previous_owner)
    )
    return _event(
        "position", u.block, position_json(u.position, u.value, u.block, u.updated_block), owners
    )


def account_event(u: AccountUpdate) -> BusEvent:
    data = account_json(u.account, u.value, u.reserves, u.block, u.updated_block)
    return _event("account", u.block, data, (u.account.user,))


def comet_account_event(u: CometAccountUpdate) -> BusEvent:
    """Compound V3 accounts go out in the lending account shape."""
    return _event("account", u.block, u.json(), (u.account.user,))


def window_event(w: WindowRow, block: BlockRef) -> BusEvent:
    return _event("window", block, window_json(w), (w.subject.owner,))


def balance_event(c: BalanceChange, b: BlockRef) -> BusEvent:
    data = balance_json(
        b.chain_id,
        c.wallet,
        c.token,
        c.balance,
        c.price,
        c.price_block,
        c.value_usd,
        b,
        c.updated_block,
    )
    return _event("balance", b, data, (c.wallet,))


def liquidation_event(out: MarketOutput, lg: RawLog, e: LiquidationCall) -> BusEvent:
    b = out.block
    data = liquidation_json(
        account_id=account_id(b.chain_id, out.aave_pool, e.user),
        chain_id=b.chain_id,
        pool=out.aave_pool,
        block_number=b.number,
        block_hash=b.hash,
        block_time=b.timestamp,
        tx_hash=lg.tx_hash,
        log_index=lg.log_index,
        user=e.user,
        collateral_asset=e.collateral_asset,
        debt_asset=e.debt_asset,
        debt_to_cover=e.debt_to_cover,
        liquidated_collateral=e.liquidated_collateral,
        liquidator=e.liquidator,
        receive_a_token=e.receive_a_token,
    )
    return _event("liquidation", b, data, (e.user,))


def account_events(updates: Iterable[AccountUpdate]) -> list[BusEvent]:
    """An `account` event per lending account update."""
    return [account_event(u) for u in updates]


# What a stage output has for the bus: (coalescing key, event builder). A key says the event
# is a subject's latest state, which a backfill may coalesce; None says it happened once and
# belongs to live blocks only (a backfill's windows and liquidations are history: the store
# has them).
BusEntry = tuple[Hashable | None, Callable[[], BusEvent]]


def shard_entries(item: ShardOutput) -> Iterator[BusEntry]:
    for u in item.updates:
        yield u.position.position_id, partial(position_event, u)
    for a in item.account_updates:
        yield a.account.account_id, partial(account_event, a)
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
    if item.comet is not None:
        for u in item.comet.updates:
            yield u.account.account_id, partial(comet_account_event, u)
    for c in item.balances:
        yield (item.block.chain_id, c.wallet, c.token), partial(balance_event, c, item.block)
    if item.aave is not None:
        for lg, e in item.aave.liquidations:
            yield None, partial(liquidation_event, item, lg, e)


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

    def _publish_pending(self) -> None:
        if self._pending:
            self._bus.publish([make() for make in self._pending.values()])
            self._pending.clear()
        self._last_publish = time.monotonic()

    def write_batch(self, items: list[X]) -> None:
        for item in items:
            entries = self._entries(item)
            if item.live:
                self._publish_pending()
                events = [make() for _, make in entries]
                if events:
                    self._bus.publish(events)
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
    """The market stage's: Compound V3 accounts, ERC-20 balances and Aave liquidations."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> _BusPartition[MarketOutput]:
        return _BusPartition(self._bus, market_entries)
