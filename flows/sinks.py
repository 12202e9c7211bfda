"""Bytewax sinks at the edge: the ClickHouse store and the broadcast bus."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import structlog
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from defimon.bus import Bus
from defimon.metrics import METRICS
from defimon.status import FlowStatus
from defimon.store import Store
from flows.aave_v3.state import AccountUpdate, account_id
from flows.compound_v3.state import CometAccountUpdate
from flows.rows import COLUMNS, Row, SinkBatch
from flows.uniswap_v3.state import MarketOutput, PositionUpdate, ShardOutput
from flows.windows import window_json
from schemas.balances import balance_json
from schemas.lending import account_json
from schemas.liquidations import liquidation_json
from schemas.positions import position_json
from schemas.stream import BusEvent

log = structlog.get_logger("defimon.sink")

FLUSH_ROWS = 250_000
FLUSH_SECONDS = 2.0
STORE_PARTITION = "store"
BACKFILL_PUBLISH_SECONDS = 3.0


class _StorePartition(StatefulSinkPartition[SinkBatch, None]):
    """Buffers rows per table and inserts them in large batches.

    Backfill produces many small blocks; one insert per block would cost more than the rows
    themselves (chDB: ~8 ms per insert). Live blocks flush at once, so the store is never more
    than a block behind the stream. Every epoch's snapshot flushes too: Bytewax commits the
    source cursor only after that, so a crash can replay rows (they collapse by key) but
    never lose them.
    """

    def __init__(self, store: Store, status: FlowStatus) -> None:
        self._store = store
        self._status = status
        self._buffer: dict[str, list[Row]] = {}
        self._buffered = 0
        self._first_at: float | None = None
        self._stored: list[SinkBatch] = []

    def write_batch(self, values: list[SinkBatch]) -> None:
        live = False
        for item in values:
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
                self._store.insert(table, columns, list(zip(*rows, strict=True)))
                METRICS.rows_written.labels(table=table.split(".")[-1]).inc(len(rows))
        if self._buffered:
            METRICS.sink_flush_seconds.observe(time.monotonic() - started)
        self._buffer.clear()
        self._buffered = 0
        self._first_at = None
        for item in self._stored:
            if item.expects_shards is not None:
                self._status.market_stored(
                    item.chain_id, item.block_number, item.live, item.expects_shards
                )
            elif item.shard is not None:
                self._status.shard_stored(item.chain_id, item.block_number, item.shard)
        self._stored.clear()
        for progress in self._status.chains():
            METRICS.processed_block.labels(chain_id=str(progress.chain_id)).set(progress.processed)

    def snapshot(self) -> None:
        self.flush()

    def close(self) -> None:
        self.flush()
        self._store.close()


class StoreSink(FixedPartitionedSink[SinkBatch, None]):
    """One partition: with chDB the store lives in this process anyway. Rows are keyed by
    nothing that matters for correctness (every table dedups by its natural key), so more
    partitions can be added for a ClickHouse server without changing the rows."""

    def __init__(self, open_store: Callable[[], Store], status: FlowStatus) -> None:
        self._open_store = open_store
        self._status = status

    def list_parts(self) -> list[str]:
        return [STORE_PARTITION]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StorePartition:
        return _StorePartition(self._open_store(), self._status)


def account_events(updates: Iterable[AccountUpdate]) -> list[BusEvent]:
    """An `account` event per lending account update."""
    now = time.time()
    return [
        BusEvent(
            kind="account",
            chain_id=u.block.chain_id,
            block_number=u.block.number,
            block_hash=u.block.hash,
            data=account_json(u.account, u.value, u.reserves, u.block, u.updated_block),
            owners=(u.account.user,),
            produced_at=now,
        )
        for u in updates
    ]


def window_events(item: ShardOutput) -> list[BusEvent]:
    """A `window` event per window the block closed."""
    now, b = time.time(), item.block
    return [
        BusEvent(
            kind="window",
            chain_id=b.chain_id,
            block_number=b.number,
            block_hash=b.hash,
            data=window_json(w),
            owners=(w.subject.owner,),
            produced_at=now,
        )
        for w in item.windows
    ]


def bus_events(updates: Iterable[PositionUpdate]) -> list[BusEvent]:
    """A `position` event per position update (pure but for the wall-clock stamp)."""
    now = time.time()
    events = []
    for u in updates:
        owners = (
            (u.position.owner,)
            if u.previous_owner is None
            else (u.position.owner, u.previous_owner)
        )
        events.append(
            BusEvent(
                kind="position",
                chain_id=u.block.chain_id,
                block_number=u.block.number,
                block_hash=u.block.hash,
                data=position_json(u.position, u.value, u.block, u.updated_block),
                owners=owners,
                produced_at=now,
            )
        )
    return events


class _BusPartition(StatelessSinkPartition[ShardOutput]):
    """Live blocks are published as they come. Backfill is coalesced: subscribers only need
    each position's latest state, so it is published at most every BACKFILL_PUBLISH_SECONDS
    (and before the first live block, to keep the order)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._pending: dict[str, PositionUpdate] = {}
        self._pending_accounts: dict[str, AccountUpdate] = {}
        self._last_publish = time.monotonic()

    def _publish_pending(self) -> None:
        if self._pending:
            self._bus.publish(bus_events(self._pending.values()))
            self._pending.clear()
        if self._pending_accounts:
            self._bus.publish(account_events(self._pending_accounts.values()))
            self._pending_accounts.clear()
        self._last_publish = time.monotonic()

    def write_batch(self, items: list[ShardOutput]) -> None:
        for item in items:
            if item.live:
                self._publish_pending()
                if item.updates:
                    self._bus.publish(bus_events(item.updates))
                if item.account_updates:
                    self._bus.publish(account_events(item.account_updates))
                # Windows closed during a backfill are history: the store has them, and
                # the stream carries the live ones.
                if item.windows:
                    self._bus.publish(window_events(item))
            else:
                for update in item.updates:
                    self._pending[update.position.position_id] = update
                for account in item.account_updates:
                    self._pending_accounts[account.account.account_id] = account
        if time.monotonic() - self._last_publish >= BACKFILL_PUBLISH_SECONDS:
            self._publish_pending()

    def close(self) -> None:
        self._publish_pending()


class BusSink(DynamicSink[ShardOutput]):
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _BusPartition:
        return _BusPartition(self._bus)


def comet_account_events(updates: Iterable[CometAccountUpdate]) -> list[BusEvent]:
    """An `account` event per Compound V3 account update (the lending account shape)."""
    now = time.time()
    return [
        BusEvent(
            kind="account",
            chain_id=u.block.chain_id,
            block_number=u.block.number,
            block_hash=u.block.hash,
            data=u.json(),
            owners=(u.account.user,),
            produced_at=now,
        )
        for u in updates
    ]


class _CometBusPartition(StatelessSinkPartition[MarketOutput]):
    """Compound V3 accounts are valued on the market stage; published like the shards' (live
    at once, backfill coalesced to each account's latest state)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._pending: dict[str, CometAccountUpdate] = {}
        self._last_publish = time.monotonic()

    def _publish_pending(self) -> None:
        if self._pending:
            self._bus.publish(comet_account_events(self._pending.values()))
            self._pending.clear()
        self._last_publish = time.monotonic()

    def write_batch(self, items: list[MarketOutput]) -> None:
        for item in items:
            updates = item.comet.updates if item.comet is not None else []
            if item.live:
                self._publish_pending()
                if updates:
                    self._bus.publish(comet_account_events(updates))
            else:
                for update in updates:
                    self._pending[update.account.account_id] = update
        if time.monotonic() - self._last_publish >= BACKFILL_PUBLISH_SECONDS:
            self._publish_pending()

    def close(self) -> None:
        self._publish_pending()


class CometBusSink(DynamicSink[MarketOutput]):
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CometBusPartition:
        return _CometBusPartition(self._bus)


def liquidation_events(out: MarketOutput) -> list[BusEvent]:
    """A `liquidation` event per Aave LiquidationCall of the block (for liquidation alerts)."""
    if out.aave is None or not out.aave.liquidations:
        return []
    now, b = time.time(), out.block
    return [
        BusEvent(
            kind="liquidation",
            chain_id=b.chain_id,
            block_number=b.number,
            block_hash=b.hash,
            data=liquidation_json(
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
            ),
            owners=(e.user,),
            produced_at=now,
        )
        for lg, e in out.aave.liquidations
    ]


class _MarketBusPartition(StatelessSinkPartition[MarketOutput]):
    """Liquidations of live blocks; those of a backfill are history (the store has them)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def write_batch(self, items: list[MarketOutput]) -> None:
        for item in items:
            if item.live:
                events = liquidation_events(item)
                if events:
                    self._bus.publish(events)


class MarketBusSink(DynamicSink[MarketOutput]):
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MarketBusPartition:
        return _MarketBusPartition(self._bus)


def balance_events(out: MarketOutput) -> list[BusEvent]:
    """A `balance` event per changed ERC-20 balance of a tracked wallet."""
    now, b = time.time(), out.block
    return [
        BusEvent(
            kind="balance",
            chain_id=b.chain_id,
            block_number=b.number,
            block_hash=b.hash,
            data=balance_json(
                b.chain_id,
                c.wallet,
                c.token,
                c.balance,
                c.price,
                c.price_block,
                c.value_usd,
                b,
                c.updated_block,
            ),
            owners=(c.wallet,),
            produced_at=now,
        )
        for c in out.balances
    ]


class _BalanceBusPartition(StatelessSinkPartition[MarketOutput]):
    """Like the position partition: live blocks at once, backfill coalesced to each
    (chain, wallet, token)'s latest balance."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._pending: dict[tuple[int, str, str], BusEvent] = {}
        self._last_publish = time.monotonic()

    def _publish_pending(self) -> None:
        if self._pending:
            self._bus.publish(list(self._pending.values()))
            self._pending.clear()
        self._last_publish = time.monotonic()

    def write_batch(self, items: list[MarketOutput]) -> None:
        for item in items:
            if not item.balances:
                continue
            events = balance_events(item)
            if item.live:
                self._publish_pending()
                self._bus.publish(events)
            else:
                for event in events:
                    key = (event.chain_id, event.data["wallet"], event.data["token"])
                    self._pending.pop(key, None)  # re-insert: publish in block order
                    self._pending[key] = event
        if time.monotonic() - self._last_publish >= BACKFILL_PUBLISH_SECONDS:
            self._publish_pending()

    def close(self) -> None:
        self._publish_pending()


class BalanceBusSink(DynamicSink[MarketOutput]):
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _BalanceBusPartition:
        return _BalanceBusPartition(self._bus)
