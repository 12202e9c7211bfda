"""Fan-out of bus events to stream clients, in the API's event loop.

Each client has a bounded queue. Publishing never waits: a client whose queue is full is
dropped with a `lagged` event (it may reconnect with Last-Event-ID), so one slow client cannot
hold up the flow or the other clients. Event ids are a per-process sequence; the last
`replay` events are kept so a reconnecting client gets what it missed.

A client whose connection the stream can write to directly (api/routes/stream.py) is switched to
push mode once its backlog is out: the hub then frames each event once (its `confirmed` flag
looked up once, however many clients get it) and writes every such client's share of a batch
(a block's events) to its connection in one write, with no task of the client's woken per
event. Its queue then only ever carries LAGGED: a client whose connection holds more unsent
bytes than its share is dropped like one whose queue is full.

With a bus that numbers its events (NATS JetStream: the stream sequence), the ids are the bus's,
shared by every API process, and a resume point older than the ring (or from before this process
started) is read back from the bus's `History` before the client joins the live feed.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from ports.metrics import METRICS
from schemas.filters import Filter
from schemas.stream import BusEvent

BROADCAST_KINDS = frozenset({"reorg"})
log = structlog.get_logger("api.hub")

LAGGED = object()  # the client was too slow and is dropped
RESET = object()  # the client's resume point is too old to replay


@dataclass(eq=False)
class Subscriber:
    owners: frozenset[str] | None  # None: every event
    queue: asyncio.Queue[tuple[int, BusEvent] | object]
    # The rest of the filter grammar, evaluated on the event's data. Owners are matched on
    # the event's routing owners instead: a transfer concerns the sender too.
    filter: Filter | None = None
    id: int = field(default_factory=itertools.count(1).__next__)
    # While a resume is read back from the bus, live events wait here, not in the queue.
    hold: list[tuple[int, BusEvent]] | None = None
    after: int = 0  # live events with ids up to this one were already seen by the client
    # Push mode (see the module docstring): set by the stream once the queue is empty; the
    # batch's events wait in `pending` until the hub writes them at the end of the batch.
    push: Push | None = None
    pending: list[tuple[int, BusEvent]] = field(default_factory=list)

    def wants(self, event: BusEvent) -> bool:
        if event.kind in BROADCAST_KINDS:
            return True  # a reorg concerns every view: what it showed may be retracted
        if self.owners is not None and not any(o in self.owners for o in event.owners):
            return False
        return self.filter is None or self.filter.matches(event.data)


@dataclass(frozen=True, slots=True)
class Push:
    """How the hub writes to a push-mode client."""

    frame: Callable[[int, BusEvent], bytes]  # an event with its id as bytes on the wire
    write: Callable[[bytes], bool]  # False: the client is too slow or gone; it is dropped


class History(Protocol):
    """A bus that keeps its events, by id (see defimon/nats_bus.py)."""

    async def between(
        self, first: int, last: int, wants: Callable[[BusEvent], bool], limit: int
    ) -> tuple[list[tuple[int, BusEvent]], bool] | None: ...

    async def last_sequence(self) -> int: ...


class Hub:
    def __init__(
        self, queue_size: int = 1024, replay: int = 10_000, history: History | None = None
    ) -> None:
        self.queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._ring: deque[tuple[int, BusEvent]] = deque(maxlen=replay)
        self._seq = 0
        self.history = history
        self._dirty: list[Subscriber] = []  # push-mode clients with pending events

    def start_at(self, last_id: int) -> None:
        """Ids come from the bus; the live feed starts after `last_id`."""
        self._seq = max(self._seq, last_id)

    @property
    def last_id(self) -> int:
        return self._seq

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def publish(self, events: Sequence[BusEvent]) -> None:
        """Called in the event loop (the bus schedules it there).

        With bus ids (`history` set) these are this process's own events (alerts): they go to
        the live clients under the last bus id, so a resume point stays a bus id."""
        now = time.time()
        for event in events:
            if self.history is None:
                self._seq += 1
                item = (self._seq, event)
                self._ring.append(item)
            else:
                item = (self._seq, event)
            self._deliver(item, now)
        self._flush()

    def publish_sequenced(self, items: Sequence[tuple[int, BusEvent]]) -> None:
        """Events with the bus's ids (increasing), in the event loop."""
        now = time.time()
        for item in items:
            if item[0] <= self._seq:  # already delivered (cannot happen with an ordered consumer)
                continue
            self._seq = item[0]
            self._ring.append(item)
            self._deliver(item, now)
        self._flush()

    def _deliver(self, item: tuple[int, BusEvent], now: float) -> None:
        event = item[1]
        if event.produced_at:
            METRICS.bus_lag_seconds.observe(max(now - event.produced_at, 0.0))
        for sub in list(self._subscribers):
            if not sub.wants(event):
                continue
            if sub.hold is not None:
                sub.hold.append(item)
                if len(sub.hold) >= self.queue_size:
                    self._drop(sub)
                continue
            if item[0] <= sub.after and self.history is not None:
                continue
            if sub.push is not None:
                if not sub.pending:
                    self._dirty.append(sub)
                sub.pending.append(item)
                continue
            try:
                sub.queue.put_nowait(item)
                METRICS.sse_events_sent.inc()
            except asyncio.QueueFull:
                self._drop(sub)

    def _flush(self) -> None:
        """Write each push-mode client its share of the batch just delivered, in one write.
        Each event is framed once, for the first client that gets it (every client of a hub
        frames alike: the stream's framing with the API's chains)."""
        dirty, self._dirty = self._dirty, []
        frames: dict[int, bytes] = {}  # id(item) -> frame; every item is alive until the end
        sent = 0
        for sub in dirty:
            items, sub.pending = sub.pending, []
            push = sub.push
            if push is None or sub not in self._subscribers:
                continue  # left or dropped since
            parts = []
            for item in items:
                frame = frames.get(id(item))
                if frame is None:
                    frame = frames[id(item)] = push.frame(*item)
                parts.append(frame)
            if push.write(parts[0] if len(parts) == 1 else b"".join(parts)):
                sent += len(parts)
            else:
                self._drop(sub)
        if sent:
            METRICS.sse_events_sent.inc(sent)

    def _drop(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        sub.pending.clear()
        METRICS.sse_dropped_clients.inc()
        METRICS.sse_clients.set(len(self._subscribers))
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(LAGGED)

    def _gap(self, last_id: int | None, after_block: int | None) -> bool:
        """Would replaying from here miss events the ring no longer holds?"""
        if last_id is not None:
            if last_id > self._seq:  # ids from before a restart of this process
                return True
            oldest = self._ring[0][0] if self._ring else self._seq + 1
            return last_id < oldest - 1
        if after_block is not None and self._ring and len(self._ring) == self._ring.maxlen:
            return self._ring[0][1].block_number > after_block + 1
        return False

    def subscribe(
        self,
        owners: Iterable[str] | None,
        last_id: int | None = None,
        after_block: int | None = None,
        flt: Filter | None = None,
    ) -> Subscriber:
        """A new subscriber, with the recent events it missed already queued.

        `last_id` (Last-Event-ID) replays the events after that id; `after_block` replays the
        events of blocks after it (for a client that just loaded a snapshot as of that block).
        When the ring no longer holds all of them, the queue starts with RESET instead: the
        client must reload its snapshot.
        """
        sub = self._new_subscriber(owners, flt)
        if self._gap(last_id, after_block):
            sub.queue.put_nowait(RESET)
        elif last_id is not None or after_block is not None:
            backlog = [
                (seq, e)
                for seq, e in self._ring
                if sub.wants(e)
                and (seq > last_id if last_id is not None else e.block_number > (after_block or 0))
            ]
            if not self._replay(sub, backlog):
                return sub
        self._subscribers.add(sub)
        METRICS.sse_clients.set(len(self._subscribers))
        return sub

    def _new_subscriber(
        self, owners: Iterable[str] | None, flt: Filter | None, hold: bool = False
    ) -> Subscriber:
        return Subscriber(
            frozenset(owners) if owners is not None else None,
            asyncio.Queue(maxsize=self.queue_size),
            flt,
            hold=[] if hold else None,
        )

    def _replay(
        self, sub: Subscriber, backlog: list[tuple[int, BusEvent]], complete: bool = True
    ) -> bool:
        """Queue a resuming client's backlog. Too much to replay at once (or not all of it
        found): what fits, then `lagged`, and the client is dropped, so it resumes from the
        last id it got instead of silently missing the rest. False if it was dropped."""
        if complete and len(backlog) < self.queue_size:
            for item in backlog:
                sub.queue.put_nowait(item)
            return True
        for item in backlog[: self.queue_size - 1]:
            sub.queue.put_nowait(item)
        sub.queue.put_nowait(LAGGED)
        self._subscribers.discard(sub)
        METRICS.sse_clients.set(len(self._subscribers))
        METRICS.sse_dropped_clients.inc()
        return False

    async def open(
        self,
        owners: Iterable[str] | None,
        last_id: int | None = None,
        after_block: int | None = None,
        flt: Filter | None = None,
    ) -> Subscriber:
        """`subscribe`, reading a resume point the ring lacks back from the bus's history."""
        if self.history is None or last_id is None or self._ring_covers(last_id):
            return self.subscribe(owners, last_id, after_block, flt)
        sub = self._new_subscriber(owners, flt, hold=True)
        self._subscribers.add(sub)
        METRICS.sse_clients.set(len(self._subscribers))
        upto = self._seq
        backlog: list[tuple[int, BusEvent]] = []
        complete, reset = True, False
        try:
            if last_id > upto:  # another API process is a little ahead of this one
                if last_id > await self.history.last_sequence():
                    reset = True  # not an id of this stream
                else:
                    sub.after = last_id
            else:
                found = await self.history.between(
                    last_id + 1, upto, sub.wants, self.queue_size - 1
                )
                if found is None:
                    reset = True
                else:
                    backlog, complete = found
        except Exception as exc:  # the bus is unreachable: say so rather than skip silently
            log.warning("hub.history_failed", error=str(exc) or type(exc).__name__)
            reset = True
        held, sub.hold = sub.hold or [], None
        if sub not in self._subscribers:  # dropped while its resume was read: LAGGED queued
            return sub
        if reset:
            sub.queue.put_nowait(RESET)
        self._replay(sub, backlog + [item for item in held if item[0] > sub.after], complete)
        return sub

    def _ring_covers(self, last_id: int) -> bool:
        if last_id > self._seq:
            return False
        if last_id == self._seq:
            return True
        return bool(self._ring) and self._ring[0][0] <= last_id + 1

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        METRICS.sse_clients.set(len(self._subscribers))
