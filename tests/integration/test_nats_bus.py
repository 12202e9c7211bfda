"""The NATS JetStream bus against a real nats-server: publish from a flow-like thread, consume
in an event loop with the stream's sequences, drop resends by Nats-Msg-Id, survive a server
restart, and let a hub that starts late resume a client from the stream."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import nats
import pytest

from api.hub import LAGGED, RESET, Hub
from defimon.nats_bus import NatsBus, NatsConfig, decode_event
from ports.status import FlowStatus
from schemas.stream import BusEvent
from tests.nats_server import NatsServer

WAIT = 30.0


def event(block: int, n: int, owner: str = "0xa") -> BusEvent:
    return BusEvent(
        kind="position",
        chain_id=31337,
        block_number=block,
        block_hash=f"0x{block:064x}",
        data={"id": f"uniswap_v3:31337:{n}", "liquidity": str(10**30 + n), "owner": owner},
        owners=(owner,),
        produced_at=time.time(),
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    nats_server = NatsServer(tmp_path / "nats").start()
    try:
        yield nats_server
    finally:
        nats_server.stop()


async def stream_messages(url: str, stream: str) -> list[tuple[int, BusEvent]]:
    """Everything the stream holds, read directly (not through NatsBus)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            assert msg.data is not None
            out.append((seq, decode_event(msg.data)))
        return out
    finally:
        await nc.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {WAIT} s")
        await asyncio.sleep(0.02)


def publish_from_thread(bus: NatsBus, batches: Sequence[Sequence[BusEvent]]) -> None:
    """As the flow does: from a thread that is not the event loop's."""

    def run() -> None:
        for batch in batches:
            bus.publish(batch)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT)


async def test_published_events_arrive_in_order_with_stream_sequences_and_resends_are_dropped(
    server: NatsServer,
) -> None:
    config = NatsConfig(server.url, stream="T1")
    flow_side = NatsBus(config)
    api_side = NatsBus(config)
    received: list[tuple[int, BusEvent]] = []
    plain: list[BusEvent] = []
    loop = asyncio.get_running_loop()
    api_side.attach_sequenced(loop, received.extend)
    api_side.attach(loop, plain.extend)
    assert await api_side.started() == 0, "a new stream has no messages"
    try:
        first = [event(10, n) for n in range(40)]
        second = [event(11, n) for n in range(40, 60)]
        await asyncio.to_thread(publish_from_thread, flow_side, [first, second])
        await until(lambda: len(received) >= 60, "60 events")
        assert [seq for seq, _ in received] == list(range(1, 61)), "sequences are not 1..60"
        assert [e for _, e in received] == first + second, "events changed or reordered"
        assert plain == first + second, "the plain listener got something else"

        # A Bytewax replay after a crash publishes the same events again: the stream keeps one.
        await asyncio.to_thread(publish_from_thread, flow_side, [first[30:], second])
        assert await asyncio.to_thread(flow_side.flush, WAIT), "resends were never acked"
        assert await api_side.last_sequence() == 60, "a resent event was stored twice"
        assert flow_side.published == 60 + 30, "the resends were not acked"
        assert len(received) == 60, "a resent event was delivered twice"
        assert await stream_messages(server.url, "T1") == received
    finally:
        flow_side.close()
        await api_side.aclose()


async def test_a_server_restart_loses_nothing_and_duplicates_nothing(server: NatsServer) -> None:
    config = NatsConfig(server.url, stream="T2")
    flow_side = NatsBus(config)
    before = [event(20, n) for n in range(25)]
    after = [event(21, n) for n in range(25, 50)]
    try:
        await asyncio.to_thread(publish_from_thread, flow_side, [before])
        assert await asyncio.to_thread(flow_side.flush, WAIT)
        server.stop()
        # Published while the server is down: buffered, then sent once it is back.
        await asyncio.to_thread(publish_from_thread, flow_side, [after])
        await asyncio.sleep(0.5)
        assert not flow_side.flush(0), "events were acked by a server that is down"
        server.start()
        assert await asyncio.to_thread(flow_side.flush, WAIT), "not sent after the restart"
        stored = await stream_messages(server.url, "T2")
        assert [e for _, e in stored] == before + after
        assert [seq for seq, _ in stored] == list(range(1, 51))
    finally:
        flow_side.close()


async def test_a_full_buffer_drops_and_counts_instead_of_blocking_the_flow(
    server: NatsServer,
) -> None:
    flow_side = NatsBus(NatsConfig(server.url, stream="T5", buffer_events=30))
    try:
        flow_side.start_publisher()
        server.stop()
        batch = [event(40, n) for n in range(20)]
        started = time.monotonic()
        await asyncio.to_thread(publish_from_thread, flow_side, [batch] * 3)
        assert time.monotonic() - started < WAIT, "publish blocked"
        assert flow_side.dropped == 40, "the batches past the buffer were not dropped"
        server.start()
        assert await asyncio.to_thread(flow_side.flush, WAIT)
        stored = await stream_messages(server.url, "T5")
        # The first batch fitted; its copies were dropped (and would have been deduplicated).
        assert [e for _, e in stored] == batch
    finally:
        flow_side.close()


async def test_the_flow_status_reaches_the_api_side(server: NatsServer) -> None:
    config = NatsConfig(server.url, stream="T3")
    flow_status = FlowStatus()
    flow_status.running = True
    flow_status.saw_head(31337, 120)
    flow_status.market_stored(31337, 118, True, ())
    flow_side = NatsBus(config, status=flow_status)
    mirrored = FlowStatus()
    api_side = NatsBus(config, status=mirrored)
    api_side.attach(asyncio.get_running_loop(), lambda _: None)
    await api_side.started()
    try:
        flow_side.start_publisher()
        await until(lambda: mirrored.remote_seen_at is not None, "status message")
        progress = mirrored.chain(31337)
        assert (progress.head, progress.processed, progress.live) == (120, 118, True)
        assert mirrored.running and mirrored.error is None
    finally:
        flow_side.close()
        await api_side.aclose()


async def test_a_hub_that_started_late_resumes_a_client_from_the_stream(
    server: NatsServer,
) -> None:
    config = NatsConfig(server.url, stream="T4")
    flow_side = NatsBus(config)
    early = [event(30, n, owner="0xa" if n % 2 else "0xb") for n in range(30)]
    try:
        await asyncio.to_thread(publish_from_thread, flow_side, [early])
        assert await asyncio.to_thread(flow_side.flush, WAIT)

        # A new API process: its ring is empty, its live feed starts after sequence 30.
        api_side = NatsBus(config)
        hub = Hub(queue_size=64, replay=100, history=api_side)
        loop = asyncio.get_running_loop()
        api_side.attach_sequenced(loop, hub.publish_sequenced)
        hub.start_at(await api_side.started())
        assert hub.last_id == 30

        # A client of another API process saw up to 10 and owns 0xa's positions.
        resumed = await hub.open(["0xa"], last_id=10)
        fresh = await hub.open(None, last_id=30)
        stale = await hub.open(None, last_id=10_000)
        late = [event(31, n, owner="0xa") for n in range(30, 40)]
        await asyncio.to_thread(publish_from_thread, flow_side, [late])
        await until(lambda: hub.last_id == 40, "the live events")

        def drain(queue: asyncio.Queue[object]) -> list[object]:
            items = []
            while not queue.empty():
                items.append(queue.get_nowait())
            return items

        got = drain(resumed.queue)
        expected = [(s, e) for s, e in enumerate(early, 1) if s > 10 and "0xa" in e.owners]
        expected += list(enumerate(late, 31))
        assert got == expected, "the resumed client missed, repeated or reordered events"
        assert drain(fresh.queue) == list(enumerate(late, 31))
        assert drain(stale.queue) == [RESET, *enumerate(late, 31)], "an unknown id is a reset"

        # More to replay than a queue holds: what fits, then `lagged`.
        small = Hub(queue_size=8, replay=100, history=api_side)
        small.start_at(40)
        crowded = await small.open(None, last_id=0)
        items = drain(crowded.queue)
        assert items[-1] is LAGGED and len(items) == 8
        assert [item[0] for item in items[:-1] if isinstance(item, tuple)] == list(range(1, 8))
        await api_side.aclose()
    finally:
        flow_side.close()
