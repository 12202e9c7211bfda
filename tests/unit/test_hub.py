"""The stream hub in its own event loop: bounded queues, `lagged` drops, replay, owner routing."""

from __future__ import annotations

import asyncio

import orjson

from api.hub import LAGGED, RESET, Hub, Subscriber
from schemas.stream import BusEvent

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
CAROL = "0x" + "c4" * 20


def event(n: int, *owners: str) -> BusEvent:
    """A position event for block n, about `owners` (the first is the position's owner)."""
    return BusEvent(
        kind="position",
        chain_id=31337,
        block_number=n,
        block_hash=f"0x{n:064x}",
        data={"id": f"31337:0xnpm:{n}", "owner": owners[0], "block_number": n},
        owners=owners,
    )


def drain(sub: Subscriber) -> list[tuple[int, BusEvent] | object]:
    """Everything queued for `sub` right now, in order."""
    items: list[tuple[int, BusEvent] | object] = []
    while not sub.queue.empty():
        items.append(sub.queue.get_nowait())
    return items


def ids(items: list[tuple[int, BusEvent] | object]) -> list[int]:
    out = []
    for item in items:
        assert isinstance(item, tuple), f"expected only events, got {item!r} in {items!r}"
        out.append(item[0])
    return out


async def test_a_subscriber_that_never_reads_is_dropped_with_lagged_the_fast_one_gets_all() -> None:
    hub = Hub(queue_size=8, replay=100)
    slow = hub.subscribe(None)
    fast = hub.subscribe(None)
    received: list[int] = []

    async def read_fast() -> None:
        while True:
            item = await fast.queue.get()
            assert isinstance(item, tuple), f"the fast subscriber got {item!r}"
            received.append(item[0])

    reader = asyncio.create_task(read_fast())
    try:
        # Exactly a queue's worth: the slow subscriber is full but still subscribed.
        for n in range(1, 9):
            hub.publish([event(n, ALICE)])
            await asyncio.sleep(0)  # the fast reader takes its event
        assert hub.clients == 2
        assert slow.queue.qsize() == 8

        # One more overflows the slow queue: it is dropped, its backlog replaced by LAGGED.
        hub.publish([event(9, ALICE)])
        assert hub.clients == 1, "the slow subscriber was not removed"
        items = drain(slow)
        assert items == [LAGGED], f"the dropped subscriber's queue holds {items!r}"

        # Publishing goes on, in batches, without waiting for anyone.
        for start in range(10, 60, 5):
            hub.publish([event(n, ALICE) for n in range(start, start + 5)])
            await asyncio.sleep(0)
        for _ in range(100):
            if len(received) == 59:
                break
            await asyncio.sleep(0)
        assert received == list(range(1, 60)), "the fast subscriber missed or reordered events"
        assert slow.queue.empty(), "a dropped subscriber still gets events"
        assert hub.last_id == 59
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_replay_after_last_id() -> None:
    hub = Hub(queue_size=64, replay=100)
    hub.publish([event(n, ALICE if n % 2 else BOB) for n in range(1, 11)])

    assert ids(drain(hub.subscribe(None, last_id=4))) == [5, 6, 7, 8, 9, 10]
    assert ids(drain(hub.subscribe(None, last_id=0))) == list(range(1, 11))
    assert drain(hub.subscribe(None, last_id=10)) == [], "replayed past the last event"
    assert drain(hub.subscribe(None)) == [], "replayed without a Last-Event-ID"
    assert ids(drain(hub.subscribe([ALICE], last_id=4))) == [5, 7, 9]

    # The replayed subscriber is live afterwards: no gap, no duplicate.
    sub = hub.subscribe([BOB], last_id=6)
    hub.publish([event(11, BOB), event(12, ALICE)])
    assert ids(drain(sub)) == [8, 10, 11]

    # The ring keeps only the last `replay` events.
    small = Hub(queue_size=64, replay=5)
    small.publish([event(n, ALICE) for n in range(1, 11)])
    assert drain(small.subscribe(None, last_id=0)) == [RESET], "a gap must not be silent"
    assert ids(drain(small.subscribe(None, last_id=5))) == [6, 7, 8, 9, 10]
    assert drain(Hub(replay=0).subscribe(None, last_id=0)) == []


async def test_a_backlog_larger_than_the_queue_is_replayed_in_rounds_without_a_gap() -> None:
    hub = Hub(queue_size=8, replay=100)
    hub.publish([event(n, ALICE) for n in range(1, 21)])
    got: list[int] = []
    last_id = 0
    for _ in range(5):  # a client reconnecting with Last-Event-ID after each `lagged`
        sub = hub.subscribe(None, last_id=last_id)
        items = drain(sub)
        lagged = items[-1:] == [LAGGED]
        batch = ids(items[:-1] if lagged else items)
        assert len(items) <= 8, f"{len(items)} items in a queue of 8"
        got += batch
        if not lagged:
            break
        assert batch, "a lagged replay made no progress"
        assert hub.clients == 0, "a subscriber told to reconnect is still subscribed"
        hub.unsubscribe(sub)  # what the route does when the stream ends
        last_id = batch[-1]
    else:
        raise AssertionError(f"replay never caught up; got {got}")
    assert hub.clients == 1
    hub.publish([event(21, ALICE)])
    got += ids(drain(sub))
    assert got == list(range(1, 22)), "events were lost or repeated across the replay rounds"


async def test_events_go_to_the_owners_they_concern_including_both_sides_of_a_transfer() -> None:
    hub = Hub(queue_size=64, replay=100)
    alice = hub.subscribe([ALICE])
    bob = hub.subscribe([BOB])
    carol = hub.subscribe([CAROL])
    alice_or_carol = hub.subscribe([ALICE, CAROL])
    everyone = hub.subscribe(None)
    gone = hub.subscribe([ALICE])
    hub.unsubscribe(gone)

    hub.publish(
        [
            event(1, ALICE),
            event(2, BOB),
            event(3, BOB, ALICE),  # alice's position transferred to bob: both hear of it
            event(4, CAROL),
        ]
    )
    assert ids(drain(alice)) == [1, 3]
    assert ids(drain(bob)) == [2, 3]
    assert ids(drain(carol)) == [4]
    assert ids(drain(alice_or_carol)) == [1, 3, 4]
    assert ids(drain(everyone)) == [1, 2, 3, 4]
    assert drain(gone) == [], "an unsubscribed client still gets events"
    assert hub.clients == 5

    # Replay routes the same way.
    assert ids(drain(hub.subscribe([ALICE], last_id=0))) == [1, 3]
    assert ids(drain(hub.subscribe([BOB], last_id=2))) == [3]
    assert drain(hub.subscribe(["0x" + "00" * 20], last_id=0)) == []


async def test_after_block_replays_the_events_of_later_blocks_only() -> None:
    hub = Hub(queue_size=64, replay=100)
    hub.publish([event(n, ALICE) for n in range(1, 11)])
    sub = hub.subscribe([ALICE], after_block=7)
    assert ids(drain(sub)) == [8, 9, 10]
    hub.publish([event(11, ALICE)])
    assert ids(drain(sub)) == [11]


async def test_a_resume_point_older_than_the_ring_gets_reset_not_a_silent_gap() -> None:
    hub = Hub(queue_size=64, replay=5)
    hub.publish([event(n, ALICE) for n in range(1, 21)])  # the ring keeps ids 16..20
    assert drain(hub.subscribe([ALICE], last_id=15)) != [] and ids(
        drain(hub.subscribe([ALICE], last_id=15))
    ) == [16, 17, 18, 19, 20]
    too_old = drain(hub.subscribe([ALICE], last_id=3))
    assert too_old == [RESET]
    from_another_process = drain(hub.subscribe([ALICE], last_id=999))
    assert from_another_process == [RESET]
    evicted_blocks = drain(hub.subscribe([ALICE], after_block=2))
    assert evicted_blocks == [RESET]
    # After a reset the subscriber still gets live events.
    sub = hub.subscribe([ALICE], last_id=1)
    assert drain(sub) == [RESET]
    hub.publish([event(21, ALICE)])
    assert ids(drain(sub)) == [21]


def test_event_json_is_serialised_once_and_says_whether_the_block_is_confirmed() -> None:
    event = BusEvent("position", 1, 5, "0xab", {"id": "x", "value_usd": 1.5})
    assert orjson.loads(event.json_text(False)) == {"id": "x", "value_usd": 1.5, "confirmed": False}
    assert orjson.loads(event.json_text(True))["confirmed"] is True
    assert orjson.loads(BusEvent("block", 1, 5, "0xab", {}).json_text(True)) == {"confirmed": True}
