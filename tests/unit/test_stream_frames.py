"""The stream's wire format: each event framed once as SSE bytes, a burst written at once."""

from __future__ import annotations

import asyncio

from sse_starlette import ServerSentEvent

from api.chains import Chains
from api.hub import Hub
from api.routes.stream import _events
from ports.status import FlowStatus
from schemas.filters import Filter
from schemas.stream import BusEvent

OWNER = "0x" + "a1" * 20


def event(n: int) -> BusEvent:
    return BusEvent(
        "position",
        31337,
        n,
        f"0x{n:064x}",
        {"id": f"31337:0xnpm:{n}", "owner": OWNER, "block_number": n},
        (OWNER,),
    )


def test_a_frame_is_what_sse_starlette_would_send_and_is_built_once() -> None:
    e = event(7)
    for confirmed in (False, True):
        expected = ServerSentEvent(data=e.json_text(confirmed), event="position", id="41").encode()
        assert e.sse_frame(41, confirmed) == expected
        assert e.sse_frame(41, confirmed) is e.sse_frame(41, confirmed)
    assert e.sse_frame(41, True) != e.sse_frame(41, False)
    assert b'"confirmed":true}' in e.sse_frame(41, True)


async def test_events_queued_together_go_out_in_one_write_in_order() -> None:
    hub = Hub(queue_size=64, replay=100)
    status = FlowStatus()
    status.chain(31337).head = 5
    chains = Chains([], status)
    stream = _events(hub, chains, Filter(), None, None)
    hello = await anext(stream)
    assert isinstance(hello, ServerSentEvent) and hello.event == "hello"
    events = [event(n) for n in (4, 5, 6)]
    hub.publish(events)
    chunk = await asyncio.wait_for(anext(stream), 1)
    # head 5, depth 0: blocks 4 and 5 are confirmed, 6 is not
    assert chunk == b"".join(
        e.sse_frame(i, e.block_number <= 5) for i, e in enumerate(events, start=1)
    )
    hub.publish([event(7)])
    assert await asyncio.wait_for(anext(stream), 1) == event(7).sse_frame(4, False)
    await stream.aclose()
    assert hub.clients == 0
