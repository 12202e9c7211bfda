from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import HubDep, RuntimeDep, address
from api.hub import LAGGED, RESET, Hub
from schemas.api import ErrorOut
from schemas.errors import InvalidInput
from schemas.stream import BusEvent

router = APIRouter(prefix="/v1", tags=["stream"])


def _event(seq: int, event: BusEvent) -> ServerSentEvent:
    return ServerSentEvent(data=orjson.dumps(event.data).decode(), event=event.kind, id=str(seq))


async def _events(
    hub: Hub, owners: list[str] | None, last_id: int | None, after_block: int | None
) -> AsyncIterator[ServerSentEvent]:
    # Subscribing here, not in the route, ties the subscription to the generator's life: a
    # client that leaves before the first byte cannot leave a subscriber behind.
    sub = hub.subscribe(owners, last_id, after_block)
    try:
        # `retry` tells EventSource how soon to reconnect after a drop.
        yield ServerSentEvent(
            data=orjson.dumps({"last_id": hub.last_id}).decode(), event="hello", retry=1000
        )
        while True:
            item = await sub.queue.get()
            if item is LAGGED:
                yield ServerSentEvent(
                    data='{"reason": "client too slow; reconnect with Last-Event-ID"}',
                    event="lagged",
                )
                return
            if item is RESET:
                yield ServerSentEvent(
                    data='{"reason": "missed events are no longer kept; reload the snapshot"}',
                    event="reset",
                )
                continue
            assert isinstance(item, tuple)
            yield _event(*item)
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
    runtime: RuntimeDep,
    hub: HubDep,
    owner: Annotated[
        list[str] | None, Query(description="Only events about these wallets (repeatable)")
    ] = None,
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
    """Live `position`, `account` and `balance` events (the new state, valued, with its block)
    as SSE.

    Events: `hello` (first), `position`, `account`, `balance` (a tracked wallet's ERC-20
    balance changed), `reset` (the resume point is too old to replay:
    reload the snapshot), `lagged` (the client was too slow and is dropped; reconnect).
    Each `position` has an `id`; reconnecting with `Last-Event-ID` replays what was missed.
    Comment lines are heartbeats.
    """
    owners = [address(o, "owner") for o in owner] if owner else None
    last_id: int | None = None
    if last_event_id:
        if not last_event_id.isdigit():
            raise InvalidInput(f"Last-Event-ID {last_event_id!r} is not an event id")
        last_id = int(last_event_id)
    return EventSourceResponse(
        _events(hub, owners, last_id, after_block),
        ping=runtime.settings.sse_ping_seconds,
        send_timeout=30,
        headers={"Cache-Control": "no-store"},
    )
