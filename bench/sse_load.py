"""An SSE load generator: many `/v1/stream` clients in one process of its own.

`bench.sse_fanout` starts several of these beside the server, so the clients' cost lands in
their own interpreters, not in the server's or the driver's. A client here is a raw HTTP/1.1
connection read by an asyncio protocol (no HTTP client library, no task per client): about the
least a client can cost, so what is measured is the server's delivery. (Until the direct
stream, clients were asyncio streams read line by line, a task each: on 10,000 clients that
cost 2-3 times the server's own CPU, from the same cores.)

Protocol with the driver, one JSON object per line:
- stdout `{"connected": N}` once all N clients hold an open stream (or `{"error": ...}`);
- stdout `{"block": B}` once all N clients hold block B's `position` event;
- stdin: any line ends the run;
- stdout `{"arrivals": [[client, block, t], ...]}`: when (time.monotonic(), the same clock in
  every process on Linux) each client first held each block's `position` event.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from urllib.parse import urlsplit

import orjson

CONNECT_CONCURRENCY = 200  # connections opened at once (the server's accept backlog is finite)


class _Run:
    """What the clients of this process share: their arrivals and per-block counts."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.arrivals: list[tuple[int, int, float]] = []
        self.held: dict[int, int] = {}
        self.connected = 0
        self.failed: str | None = None

    def arrived(self, index: int, block: int, at: float) -> None:
        self.arrivals.append((index, block, at))
        self.held[block] = self.held.get(block, 0) + 1
        if self.held[block] == self.clients:
            print(orjson.dumps({"block": block}).decode(), flush=True)


class _Client(asyncio.Protocol):
    """One stream, read in the event loop's callback for its socket: no task per client and
    no line-by-line reads, so a block costs this process one callback per client and a
    split of what arrived into lines (`Transfer-Encoding: chunked` size lines are neither
    `event:` nor `data:` lines)."""

    def __init__(self, index: int, request: bytes, run: _Run) -> None:
        self.index, self.request, self.run = index, request, run
        self.head: bytes | None = b""  # None once the status line and headers are read
        self.tail = b""  # an incomplete last line
        self.event = b""
        self.seen: set[int] = set()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the status line"))

    def data_received(self, data: bytes) -> None:
        at = time.monotonic()
        if self.head is not None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, data = self.head.split(b"\r\n\r\n", 1)
            self.head = None
            status = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status:
                self.opened.set_exception(
                    RuntimeError(f"client {self.index}: {status.decode().strip()}")
                )
                return
            self.opened.set_result(None)
        lines = (self.tail + data).split(b"\n")
        self.tail = lines.pop()
        for line in lines:
            if line.startswith(b"event:"):
                self.event = line[6:].strip()
            elif line.startswith(b"data:") and self.event == b"position":
                block = orjson.loads(line[5:])["block_number"]
                if block not in self.seen:
                    self.seen.add(block)
                    self.run.arrived(self.index, block, at)


async def _client(
    index: int, host: str, port: int, path: str, run: _Run, opened: asyncio.Semaphore
) -> asyncio.Transport:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
    async with opened:
        transport, client = await asyncio.get_running_loop().create_connection(
            lambda: _Client(index, request.encode(), run), host, port
        )
        await client.opened
    run.connected += 1
    assert isinstance(transport, asyncio.Transport)
    return transport


async def _run(url: str, clients: int, first: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    run = _Run(clients)
    opened = asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks = [
        asyncio.create_task(_client(first + i, host, port, path, run, opened))
        for i in range(clients)
    ]
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    deadline = time.monotonic() + 180
    while run.connected < clients:
        failed = [t for t in tasks if t.done() and t.exception() is not None]
        if failed or time.monotonic() > deadline:
            why = repr(failed[0].exception()) if failed else "timed out connecting"
            print(orjson.dumps({"error": why, "connected": run.connected}).decode(), flush=True)
            return
        await asyncio.sleep(0.05)
    print(orjson.dumps({"connected": run.connected}).decode(), flush=True)
    await stdin.readline()
    for task in tasks:
        task.result().close()
    print(orjson.dumps({"arrivals": run.arrivals}).decode(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the stream URL")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="index of the first client")
    args = parser.parse_args()
    asyncio.run(_run(args.url, args.clients, args.first))


if __name__ == "__main__":
    main()
