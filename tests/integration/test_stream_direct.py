"""The stream written straight to each client's connection (api/connection.py), under real
uvicorn: the bytes on the wire (a batch in one chunk), a slow client shed with `lagged` while
a fast one gets everything, and no subscriber left behind by a client that leaves."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sse_starlette import ServerSentEvent

from api.hub import Hub
from defimon.runtime import Runtime
from devnet.anvil import free_port
from ports.settings import Settings
from schemas.stream import BusEvent
from tests.support import LiveServer

OWNER = "0x" + "a1" * 20


def event(n: int, blob: str = "") -> BusEvent:
    data: dict[str, Any] = {"id": f"31337:0xnpm:{n}", "owner": OWNER, "block_number": n}
    if blob:
        data["blob"] = blob
    return BusEvent("position", 31337, n, f"0x{n:064x}", data, (OWNER,))


@contextmanager
def server(tmp_path: Path, **settings: Any) -> Iterator[LiveServer]:
    """The API alone (no chain, no flow): events are published on its bus by the test."""
    runtime = Runtime(Settings(data_dir=tmp_path, **settings), [])
    live = LiveServer(runtime, free_port(), start_flow=False).start()
    try:
        yield live
    finally:
        live.stop()


class RawClient:
    """One HTTP/1.1 stream request on a plain socket; the body de-chunked by hand, so the
    test sees the server's chunks as written."""

    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer is not None:  # before connecting: the window is agreed then
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(30)
        self.sock.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: test\r\n\r\n")
        self.raw = b""
        self.head = self._until(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 200 "), self.head
        assert b"transfer-encoding: chunked" in self.head.lower(), self.head

    def _until(self, mark: bytes) -> bytes:
        while mark not in self.raw:
            more = self.sock.recv(1 << 16)
            if not more:
                raise EOFError(f"closed before {mark!r}: {self.raw[-200:]!r}")
            self.raw += more
        found, self.raw = self.raw.split(mark, 1)
        return found

    def chunk(self) -> bytes:
        """The next chunk of the body (b"": the response ended)."""
        size = int(self._until(b"\r\n"), 16)
        while len(self.raw) < size + 2:
            more = self.sock.recv(1 << 16)
            if not more:
                raise EOFError("closed inside a chunk")
            self.raw += more
        data, tail, self.raw = self.raw[:size], self.raw[size : size + 2], self.raw[size + 2 :]
        assert tail == b"\r\n"
        return data

    def data_chunks(self) -> Iterator[bytes]:
        """Chunks other than keep-alive pings, until the response ends."""
        while chunk := self.chunk():
            if not chunk.startswith(b":"):
                yield chunk

    def close(self) -> None:
        self.sock.close()


def hello(last_id: int) -> bytes:
    return ServerSentEvent(data=f'{{"last_id":{last_id}}}', event="hello", retry=1000).encode()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_batch_is_one_chunk_of_the_exact_frames_and_a_client_that_leaves_is_unsubscribed(
    tmp_path: Path,
) -> None:
    with server(tmp_path, sse_ping_seconds=0.2) as live:
        hub: Hub = live.app.state.hub
        client = RawClient(live.port)
        chunks = client.data_chunks()
        assert next(chunks) == hello(0)
        first, second = [event(n) for n in (4, 5, 6)], [event(7)]
        live.runtime.bus.publish(first)
        live.runtime.bus.publish(second)
        # No chain is configured, so no block is confirmed: each frame says so.
        assert next(chunks) == b"".join(e.sse_frame(i, False) for i, e in enumerate(first, 1))
        assert next(chunks) == second[0].sse_frame(4, False)
        assert b'"confirmed":false}' in second[0].sse_frame(4, False)
        # Pings came in between (0.2 s apart) and are comment chunks, skipped above.
        time.sleep(0.5)
        assert client.chunk().startswith(b": ping - ")
        client.close()
        wait_until(lambda: hub.clients == 0, "the subscriber of a client that left to go")


def test_a_slow_client_is_shed_with_lagged_and_a_fast_one_gets_every_event(
    tmp_path: Path,
) -> None:
    # A queue of 8: a client is shed once its connection holds 8 KiB unsent.
    with server(tmp_path, sse_queue_size=8) as live:
        hub: Hub = live.app.state.hub
        slow = RawClient(live.port, receive_buffer=4096)
        assert slow.chunk() == hello(0)  # then it reads nothing until the end
        fast = RawClient(live.port)
        fast_chunks = fast.data_chunks()
        assert next(fast_chunks) == hello(0)
        got: list[bytes] = []
        count = 600
        reader = threading.Thread(
            target=lambda: got.extend(next(fast_chunks) for _ in range(count)), daemon=True
        )
        reader.start()
        # 600 events of ~10 KB, one block each: far more than the kernel's socket buffers
        # hold for a client that does not read.
        blob = "x" * 10_000
        events = [event(n, blob) for n in range(1, count + 1)]
        for e in events:
            live.runtime.bus.publish([e])
        reader.join(60)
        assert got == [e.sse_frame(i, False) for i, e in enumerate(events, 1)]
        assert hub.clients == 1  # the slow one was dropped, the fast one stays
        # The slow client, reading at last: a gapless prefix, then `lagged`, then the end.
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        rest = b"".join(slow.data_chunks())
        lagged = ServerSentEvent(
            data='{"reason": "client too slow; reconnect with Last-Event-ID"}', event="lagged"
        ).encode()
        assert rest.endswith(lagged)
        received = rest[: -len(lagged)]
        kept = received.count(b"event: position\r\n")
        assert 0 < kept < count
        assert received == b"".join(e.sse_frame(i, False) for i, e in enumerate(events[:kept], 1))
        fast.close()
        slow.close()
