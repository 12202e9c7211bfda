"""The hub's push mode (api/hub.py): each event framed once however many clients get it, each
client's share of a batch in one write, a client whose write fails dropped with `lagged`
without touching the others."""

from __future__ import annotations

from collections.abc import Callable

from api.hub import LAGGED, Hub, Push, Subscriber
from schemas.stream import BusEvent

OWNER = "0x" + "a1" * 20
OTHER = "0x" + "b2" * 20


def event(n: int, owner: str = OWNER) -> BusEvent:
    return BusEvent("position", 31337, n, f"0x{n:064x}", {"n": n}, (owner,))


def framer(framed: list[int]) -> Callable[[int, BusEvent], bytes]:
    """The stream's framing, noting which ids it framed."""

    def frame(seq: int, e: BusEvent) -> bytes:
        framed.append(seq)
        return e.sse_frame(seq, False)

    return frame


class Client:
    def __init__(self, hub: Hub, framed: list[int], owners: set[str] | None = None) -> None:
        self.writes: list[bytes] = []
        self.accepts = True
        self.sub: Subscriber = hub.subscribe(owners)
        self.sub.push = Push(framer(framed), self._write)

    def _write(self, data: bytes) -> bool:
        if self.accepts:
            self.writes.append(data)
        return self.accepts


async def test_a_batch_is_framed_once_and_written_once_per_client() -> None:
    hub = Hub(queue_size=8, replay=100)
    framed: list[int] = []
    clients = [Client(hub, framed) for _ in range(50)]
    mine = Client(hub, framed, {OTHER})
    batch = [event(1), event(2), event(3, OTHER)]
    hub.publish(batch)
    assert sorted(framed) == [1, 2, 3]  # once per event, not per client
    frames = [e.sse_frame(i, False) for i, e in enumerate(batch, 1)]
    assert all(c.writes == [b"".join(frames)] for c in clients)
    assert mine.writes == [frames[2]]  # its share only
    hub.publish([event(4, OWNER)])
    assert mine.writes == [frames[2]]  # nothing of its own: no write
    assert all(len(c.writes) == 2 for c in clients)


async def test_a_client_whose_write_fails_is_dropped_with_lagged_the_others_go_on() -> None:
    hub = Hub(queue_size=8, replay=100)
    framed: list[int] = []
    slow, fast = Client(hub, framed), Client(hub, framed)
    slow.accepts = False
    hub.publish([event(1)])
    hub.publish([event(2)])
    assert hub.clients == 1
    assert slow.sub.queue.get_nowait() is LAGGED and slow.sub.queue.empty()
    assert fast.writes == [event(1).sse_frame(1, False), event(2).sse_frame(2, False)]
