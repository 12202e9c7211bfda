from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from api.chains import Chains
from api.connection import Connection
from api.deps import AUTH_ERRORS, ChainsDep, FilterDep, HubDep, SettingsDep, require
from api.hub import LAGGED, RESET, Hub, Push, Subscriber
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
# sse-starlette's response headers for an event stream, which the direct path sends too.
_HEADERS = {"Cache-Control": "no-store", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
# How long ending a response may wait for a slow client (sse-starlette's send timeout).
_SEND_TIMEOUT = 30.0
# A direct client is too slow once its connection holds more unsent bytes than this per
# event its queue would hold (a frame is a few hundred bytes): it is dropped with `lagged`.
_UNSENT_BYTES_PER_QUEUED_EVENT = 1024


async def _open(hub: Hub, flt: Filter, last_id: int | None, after_block: int | None) -> Subscriber:
    owners = flt.owner or None
    rest = dataclasses.replace(flt, owner=frozenset())
    return await hub.open(owners, last_id, after_block, None if rest == Filter() else rest)


def _hello(hub: Hub) -> ServerSentEvent:
    # `retry` tells EventSource how soon to reconnect after a drop.
    return ServerSentEvent(
        data=orjson.dumps({"last_id": hub.last_id}).decode(), event="hello", retry=1000
    )


def _take(
    item: object, queue: asyncio.Queue[tuple[int, BusEvent] | object], chains: Chains
) -> tuple[list[ServerSentEvent | bytes], bool]:
    """What to send for `item` and everything queued behind it, and whether the stream ends
    there (`lagged`). Data events queued together (a block's events arrive together) go out in
    one write: with thousands of clients, the cost is per write, not per byte."""
    out: list[ServerSentEvent | bytes] = []
    frames: list[bytes] = []
    while True:
        if item is LAGGED:
            if frames:
                out.append(b"".join(frames))
            out.append(_LAGGED)
            return out, True
        if item is RESET:
            if frames:
                out.append(b"".join(frames))
                frames = []
            out.append(_RESET)
        else:
            assert isinstance(item, tuple)
            frames.append(_frame(item[0], item[1], chains))
        if queue.empty():
            break
        item = queue.get_nowait()
    if frames:
        out.append(b"".join(frames))
    return out, False


async def _events(
    hub: Hub, chains: Chains, flt: Filter, last_id: int | None, after_block: int | None
) -> AsyncGenerator[ServerSentEvent | bytes, None]:
    """The stream through ASGI `send` (sse-starlette), where the connection cannot be
    written to directly (api/connection.py)."""
    # Subscribing here, not in the route, ties the subscription to the generator's life: a
    # client that leaves before the first byte cannot leave a subscriber behind.
    sub = await _open(hub, flt, last_id, after_block)
    try:
        yield _hello(hub)
        while True:
            chunks, ended = _take(await sub.queue.get(), sub.queue, chains)
            for chunk in chunks:
                yield chunk
            if ended:
                return
    finally:
        hub.unsubscribe(sub)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _DirectStream(Response):
    """The stream written to the client's connection (api/connection.py): the hello and any
    backlog by this response, then each batch of live events by the hub itself (push mode,
    api/hub.py), so a block costs each client one write and no task wake-up. The bytes on the
    wire are those of `_events` under sse-starlette; this response's own task wakes only for
    a keep-alive ping, the end of the client's feed (`lagged`), its leaving, or the server's
    shutdown."""

    media_type = "text/event-stream"

    def __init__(
        self,
        hub: Hub,
        chains: Chains,
        flt: Filter,
        last_id: int | None,
        after_block: int | None,
        ping: float,
        connection: Connection,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(_HEADERS)
        self.hub, self.chains, self.flt = hub, chains, flt
        self.last_id, self.after_block = last_id, after_block
        self.ping, self.connection = ping, connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub, write = self.hub, self.connection.write
        sub = await _open(hub, self.flt, self.last_id, self.after_block)
        waits: list[asyncio.Future[object]] = [
            asyncio.ensure_future(_disconnected(receive)),
            # sse-starlette's shared watch for the server's shutdown, which ends streams
            # rather than holding the shutdown for its grace period.
            asyncio.ensure_future(EventSourceResponse._listen_for_exit_signal()),
        ]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            # The hello, the backlog (as much as a queue holds), then push mode: no await in
            # between, so no event can fall between what this response writes and what the hub
            # writes.
            ended = not write(_hello(hub).encode(), always=True)  # False: the client is gone
            while not ended and not sub.queue.empty():
                chunks, ended = _take(sub.queue.get_nowait(), sub.queue, self.chains)
                for chunk in chunks:
                    write(chunk if isinstance(chunk, bytes) else chunk.encode(), always=True)
            if ended:
                await self._end(send)
                return
            sub.push = Push(functools.partial(_frame, chains=self.chains), write)
            waits.append(asyncio.ensure_future(sub.queue.get()))  # only ever LAGGED now
            while True:
                done, _ = await asyncio.wait(
                    waits, timeout=self.ping, return_when=asyncio.FIRST_COMPLETED
                )
                if waits[0] in done:
                    return  # the client left
                if waits[1] in done:  # the server shuts down
                    break
                if waits[2] in done or not write(_ping()):
                    # Dropped by the hub, or too slow to take a ping: `lagged`, and the end.
                    write(_LAGGED.encode(), always=True)
                    break
            await self._end(send)
        finally:
            hub.unsubscribe(sub)
            for wait in waits:
                wait.cancel()

    async def _end(self, send: Send) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                send({"type": "http.response.body", "body": b"", "more_body": False}),
                _SEND_TIMEOUT,
            )


def _ping() -> bytes:
    """A keep-alive comment, as sse-starlette writes it."""
    return ServerSentEvent(comment=f"ping - {datetime.now(UTC)}").encode()


@router.get(
    "/stream",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        400: {"model": ErrorOut},
    },
)
async def stream(
    request: Request,
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
) -> Response:
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
    connection = Connection.of(request.scope, hub.queue_size * _UNSENT_BYTES_PER_QUEUED_EVENT)
    if connection is not None:
        return _DirectStream(
            hub, chains, flt, last_id, after_block, settings.sse_ping_seconds, connection
        )
    return EventSourceResponse(
        _events(hub, chains, flt, last_id, after_block),
        ping=settings.sse_ping_seconds,
        send_timeout=30,
        headers={"Cache-Control": "no-store"},
    )
