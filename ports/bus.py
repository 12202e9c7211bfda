"""The broadcast bus between the flow and the stream: an interface and the in-process version.

The flow publishes from its worker thread; subscribers live in the API's event loop. The
in-process bus hands events across with `call_soon_threadsafe`, so nothing on the flow side
ever blocks on a slow subscriber: each subscriber has its own bounded queue (see api/hub.py).
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from schemas.stream import BusEvent

Listener = Callable[[Sequence[BusEvent]], None]
SequencedListener = Callable[[Sequence[tuple[int, BusEvent]]], None]


class Bus(ABC):
    @abstractmethod
    def publish(self, events: Sequence[BusEvent]) -> None:
        """Called from the flow's thread; must not block."""

    @abstractmethod
    def attach(self, loop: asyncio.AbstractEventLoop, listener: Listener) -> None:
        """Deliver every published batch to `listener`, called in `loop`."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class InProcessBus(Bus):
    def __init__(self) -> None:
        self._targets: list[tuple[asyncio.AbstractEventLoop, Listener]] = []
        self._lock = threading.Lock()
        self.published = 0

    def attach(self, loop: asyncio.AbstractEventLoop, listener: Listener) -> None:
        with self._lock:
            self._targets.append((loop, listener))

    def publish(self, events: Sequence[BusEvent]) -> None:
        if not events:
            return
        self.published += len(events)
        with self._lock:
            targets = list(self._targets)
        batch = list(events)
        for loop, listener in targets:
            if not loop.is_closed():
                loop.call_soon_threadsafe(listener, batch)


class SequencedBus(Bus):
    """A bus that numbers and keeps its events (NATS JetStream, defimon/nats_bus.py): the API
    uses its numbers as event ids and reads resume points back from it (api/hub.py History)."""

    @abstractmethod
    def attach_sequenced(
        self, loop: asyncio.AbstractEventLoop, listener: SequencedListener
    ) -> None:
        """Like attach, with each event's number."""

    @abstractmethod
    async def started(self) -> int:
        """Once reading: the last number before the live feed starts."""

    @abstractmethod
    async def between(
        self, first: int, last: int, wants: Callable[[BusEvent], bool], limit: int
    ) -> tuple[list[tuple[int, BusEvent]], bool] | None:
        """Kept events first..last that `wants` takes (at most `limit`), and whether that is
        all of them; None when `first` is no longer kept."""

    @abstractmethod
    async def last_sequence(self) -> int:
        """The newest number the bus holds."""

    async def aclose(self) -> None:
        """Stop reading (in the loop it reads in)."""


class Peers(ABC):
    """The other API processes serving the same port (`defimon api --processes N`), reached
    over the bus. Exactly one of them evaluates alert rules (api/alerts/engine.py); they tell
    each other when rules change and hand the alerts fired to every process's stream clients.

    Topics: `rules` (a notice, no events: reload the rules from the store) and `alerts` (the
    alert events fired). A process does not hear its own announcements."""

    @abstractmethod
    def announce(self, topic: str, events: Sequence[BusEvent]) -> None:
        """Tell the other processes, from the event loop; never blocks (at most once)."""

    @abstractmethod
    def follow(self, loop: asyncio.AbstractEventLoop, topic: str, listener: Listener) -> None:
        """Call `listener` in `loop` with what another process announces on `topic`."""
