"""Uniswap V3 as the flow sees it: its parts (state.py), rows (rows.py) and stream events."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from protocols.spec import BusEntry, Plugin, bus_event
from protocols.uniswap_v3 import rows
from protocols.uniswap_v3.read import READ_SIDE
from protocols.uniswap_v3.reader import uniswap_reader
from protocols.uniswap_v3.state import (
    NAME,
    PositionUpdate,
    UniswapShard,
    UniswapShardOutput,
    uniswap_market,
)
from schemas.positions import BlockRef, position_json
from schemas.stream import BusEvent


def position_event(u: PositionUpdate) -> BusEvent:
    # A transferred position concerns both its new and its previous owner.
    owners = (
        (u.position.owner,) if u.previous_owner is None else (u.position.owner, u.previous_owner)
    )
    data = position_json(u.position, u.value, u.block, u.updated_block)
    return bus_event("position", u.block, data, owners)


def shard_bus(out: UniswapShardOutput, _block: BlockRef) -> Iterator[BusEntry]:
    for u in out.updates:
        yield u.position.position_id, partial(position_event, u)


PLUGIN = Plugin(
    name=NAME,
    read=READ_SIDE,
    market=uniswap_market,
    shard=UniswapShard,
    tables=rows.TABLES,
    market_rows=rows.market_rows,
    shard_rows=rows.shard_rows,
    shard_bus=shard_bus,
    shard_updates=lambda out: len(out.updates),
    reader=uniswap_reader,
)
