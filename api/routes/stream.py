from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.chains import Chains
from api.deps import AUTH_ERRORS, ChainsDep, FilterDep, HubDep, SettingsDep, require
from api.hub import LAGGED, RESET, Hub
from schemas.api import ErrorOut
from schemas.errors import InvalidInput
from schemas.filters import Filter
from schemas.hexutil import decimal_uint
from schemas.stream import BusEvent

router = APIRouter(
    prefix="/v1",
    tags=["stream"],
    dependencies=[Depends(require("read"))],
    responses=AUTH_ERRORS,
)


def _frame(seq: int, event: BusEvent, chains: Chains) -> bytes:
    """The event as one SSE frame, byte for byte what sse-starlette's ServerSentEvent would
    send, built once per event and confirmation state however many clients receive it."""
    return event.sse_frame(seq, chains.confirmed(event.chain_id, event.block_number))


_LAGGED = ServerSentEvent(
    data='{"reason": "client too slow; reconnect with Last-Event-ID"}', event="lagged"
)
_RESET = ServerSentEvent(
    data='{"reason": "missed events are no longer kept; reload the snapshot"}', event="reset"
)


async def _events(
    hub: Hub, chains: Chains, flt: Filter, last_id: int | None, after_block: int | None
) -> AsyncGenerator[ServerSentEvent | bytes, None]:
    # Subscribing here, not in the route, ties the subscription to the generator's life: a
    # client that leaves before the first byte cannot leave a subscriber behind.
    owners = flt.owner or None
    rest = dataclasses.replace(flt, owner=frozenset())
    sub = await hub.open(owners, last_id, after_block, None if rest == Filter() else rest)
    queue = sub.queue
    try:
        # `retry` tells EventSource how soon to reconnect after a drop.
        yield ServerSentEvent(
            data=orjson.dumps({"last_id": hub.last_id}).decode(), event="hello", retry=1000
        )
        while True:
            item = await queue.get()
            # Everything already queued (a block's events arrive together) goes out in one
            # write: with thousands of clients, the cost is per write, not per byte.
            frames: list[bytes] = []
            while True:
                if item is LAGGED:
                    if frames:
                        yield b"".join(frames)
                    yield _LAGGED
                    return
                if item is RESET:
                    if frames:
                        yield b"".join(frames)
                        frames = []
                    yield _RESET
                else:
                    assert isinstance(item, tuple)
                    frames.append(_frame(item[0], item[1], chains))
                if queue.empty():
                    break
                item = queue.get_nowait()
            if frames:
                yield b"".join(frames)
    finally:
        hub.unsubscribe(sub)


@router.get(
    "/stream",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        400: {"model": ErrorOut},
    },
)
async def stream(
    chains: ChainsDep,
    settings: SettingsDep,
    hub: HubDep,
    flt: FilterDep,
    after_block: Annotated[
        int | None,
        Query(
            ge=0,
            description="Also replay recent events of blocks after this one: pass the "
            "`as_of.block_number` of the snapshot you loaded, and nothing falls in between.",
        ),
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> EventSourceResponse:
    """Live events as SSE, filtered on the server with the filter grammar of /v1/positions.

    Events: `hello` (first); `position` (an LP position's new state, valued), `account`
    (a lending account's) and `balance` (a tracked wallet's ERC-20 balance), each with its
    block; `window` (a closed 1m/1h/1d window);
    `liquidation` (an Aave LiquidationCall); `alert` (an alert rule fired, see /v1/alerts);
    `reset` (the resume point is too old to replay: reload the snapshot); `lagged` (the
    client was too slow and is dropped; reconnect). Data events have ordered ids, and
    reconnecting with `Last-Event-ID` replays exactly what was missed. Comment lines are
    heartbeats. Every data event carries `block_number`, `block_hash` and `confirmed` (the
    block is at least the chain's `finality_depth` below the head). Value, IL, health-factor
    and range bounds apply to `position` and `account` events; `window`, `liquidation` and
    `alert` events pass only the protocol, chain and owner conditions.
    """
    last_id: int | None = None
    if last_event_id:
        last_id = decimal_uint(last_event_id)
        if last_id is None:
            raise InvalidInput(f"Last-Event-ID {last_event_id!r} is not an event id")
    return EventSourceResponse(
        _events(hub, chains, flt, last_id, after_block),
        ping=settings.sse_ping_seconds,
        send_timeout=30,
        headers={"Cache-Control": "no-store"},
    )
