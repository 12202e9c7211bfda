"""The Bytewax dataflow: wiring only. The logic lives in pure functions it calls.

    chain ─┬─ chain_rows ───────────────────────────────┐
           └─ by_chain ─ market ─┬─ market_rows ────────────┼─ store
                                 └─ to_shards               │
                                    └─ positions ───────────┼─ shard_rows
                                                            └─ bus
    (market ─ market_bus: what the market parts publish: accounts valued there, balances,
     live liquidations)
Every protocol takes part in both stages through its plugin (protocols/registry.py).
The source may emit a Rewind (a reorg) between blocks: chain_rows turns it into the retraction of
the orphaned rows, both stateful stages roll back (flows/rewind.py), and the store sink announces
it on the bus once every path has delivered it and the orphaned rows are retracted.
Step ids are part of the recovery store's keys: renaming one orphans its saved state (the
runtime refuses a recovery directory holding retired ids: defimon/recovery.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source

from flows.endpoint import ChainEndpoint
from flows.market import (
    MarketOutput,
    MarketState,
    check_protocols,
    market_state,
    market_step,
)
from flows.rewind import rewindable
from flows.rows import chain_rows, market_rows, shard_rows
from flows.shards import ShardState, shard_step
from flows.sinks import STORE_PARTITION, BusSink, MarketBusSink, StoreSink
from flows.source import ChainSource, HeadFollowing
from ports.bus import Bus
from ports.metrics import METRICS
from ports.status import FlowStatus
from ports.store import Store
from ports.watch import WatchRequests
from protocols.registry import PLUGINS
from protocols.spec import ShardInput, ShardOutput
from schemas.chain import BlockBatch, Rewind
from schemas.chain_config import ChainConfig

DEFAULT_SHARDS = 8


def market_mapper(
    configs: dict[int, ChainConfig], shards: int
) -> Callable[[MarketState | None, BlockBatch], tuple[MarketState, MarketOutput]]:
    checked: set[int] = set()

    def step(state: MarketState | None, batch: BlockBatch) -> tuple[MarketState, MarketOutput]:
        if state is None:
            state = market_state(configs[batch.header.chain_id], shards)
            checked.add(batch.header.chain_id)
        elif batch.header.chain_id not in checked:
            # restored from a recovery directory: once per chain and process
            check_protocols(state, configs[batch.header.chain_id])
            checked.add(batch.header.chain_id)
        with METRICS.flow_stage_seconds.labels(stage="market").time():
            state, out = market_step(state, batch)
        chain = str(batch.header.chain_id)
        METRICS.logs_read.labels(chain_id=chain).inc(len(batch.logs))
        METRICS.blocks_processed.labels(chain_id=chain).inc()
        if out.dead_letters:
            METRICS.dead_letters.labels(chain_id=chain).inc(len(out.dead_letters))
        _count_updates(chain, out.parts, market=True)
        return state, out

    return step


def _count_updates(chain: str, parts: dict[str, Any], *, market: bool) -> None:
    """Subjects updated, per protocol, for /metrics (positions per second)."""
    for plugin in PLUGINS:
        part = parts.get(plugin.name)
        count = plugin.market_updates if market else plugin.shard_updates
        if part is None or count is None:
            continue
        updated = count(part)
        if updated:
            METRICS.position_updates.labels(chain_id=chain, protocol=plugin.name).inc(updated)


def timed_shard_step(state: ShardState | None, item: ShardInput) -> tuple[ShardState, ShardOutput]:
    with METRICS.flow_stage_seconds.labels(stage="shard").time():
        return shard_step(state, item)


def shard_output(keyed: tuple[str, ShardOutput | Rewind]) -> ShardOutput | Rewind:
    """The shard's output, counted for /metrics (positions per second)."""
    out = keyed[1]
    if isinstance(out, Rewind):
        return out
    _count_updates(str(out.block.chain_id), out.parts, market=False)
    return out


def to_shards(out: MarketOutput) -> list[tuple[str, ShardInput]]:
    chain = out.block.chain_id
    return [(f"{chain}:{shard}", item) for shard, item in sorted(out.shard_inputs.items())]


def shards_of(
    shards: int,
) -> Callable[[MarketOutput | Rewind], list[tuple[str, ShardInput | Rewind]]]:
    def route(out: MarketOutput | Rewind) -> list[tuple[str, ShardInput | Rewind]]:
        if isinstance(out, Rewind):
            # Every shard of the chain rolls back (one that has nothing to undo ignores it).
            return [(f"{out.chain_id}:{shard}", out) for shard in range(shards)]
        return list(to_shards(out))

    return route


def _market_output(item: MarketOutput | Rewind) -> MarketOutput | None:
    return None if isinstance(item, Rewind) else item


def _shard_output(item: ShardOutput | Rewind) -> ShardOutput | None:
    return None if isinstance(item, Rewind) else item


def build_flow(
    endpoints: list[ChainEndpoint],
    *,
    open_store: Callable[[], Store],
    bus: Bus,
    status: FlowStatus,
    stop: threading.Event,
    shards: int = DEFAULT_SHARDS,
    following: HeadFollowing | None = None,
    watch_requests: WatchRequests | None = None,
    source: Source[BlockBatch | Rewind] | None = None,
    head_feed: Bus | None = None,
) -> Dataflow:
    """The flow over `endpoints`' chains. `source` replaces the chain source (the endpoints
    then only give the chains' configs): tests feed blocks and reorgs of their own making.
    `head_feed` gets every stored row for the API's head view (schemas/head_feed.py)."""
    configs = {e.config.chain_id: e.config for e in endpoints}
    flow = Dataflow("defimon")
    if source is None:
        source = ChainSource(endpoints, status, stop, following, watch_requests)
    blocks = op.input("chain", flow, source)
    raw = op.map("chain_rows", blocks, chain_rows)

    by_chain = op.key_on("by_chain", blocks, lambda b: str(b.chain_id))
    # Both stateful stages keep undo information for unfinalised blocks: a Rewind from the
    # source rolls the market back, then (through to_shards) every shard.
    market_step_undoable = rewindable(
        market_mapper(configs, shards), lambda b: b.header.number, lambda b: b.final_block
    )
    market = op.map(
        "market_out",
        op.stateful_map("market", by_chain, market_step_undoable),
        lambda kv: kv[1],
    )
    market_store = op.map("market_rows", market, market_rows)

    shard_inputs = op.flat_map("to_shards", market, shards_of(shards))
    shard_step_undoable = rewindable(
        timed_shard_step, lambda i: i.block.number, lambda i: i.final_block
    )
    positions_all = op.map(
        "positions_out",
        op.stateful_map("positions", shard_inputs, shard_step_undoable),
        shard_output,
    )
    position_store = op.map("shard_rows", positions_all, shard_rows)
    positions = op.filter_map("positions_done", positions_all, _shard_output)

    rows = op.merge("rows", raw, market_store, position_store)
    op.output(
        "store",
        op.key_on("to_store", rows, lambda _: STORE_PARTITION),
        # A reorg's Rewind reaches the store by every path: the chain rows, the market
        # rows and each shard's rows.
        StoreSink(open_store, status, bus, rewind_paths=2 + shards, head_feed=head_feed),
    )
    op.output("bus", positions, BusSink(bus))
    op.output(
        "market_bus", op.filter_map("market_done", market, _market_output), MarketBusSink(bus)
    )
    return flow
