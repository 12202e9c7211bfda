"""An SSE load generator: many `/v1/stream` clients in one process of its own.

`bench.sse_fanout` starts several of these beside the server, so the clients' cost lands in
their own interpreters, not in the server's or the driver's. A client here is a raw HTTP/1.1
connection read line by line (asyncio streams, no HTTP client library): about the least a
client can cost, so what is measured is the server's delivery.

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


async def _client(
    index: int,
    host: str,
    port: int,
    path: str,
    arrivals: list[tuple[int, int, float]],
    opened: asyncio.Semaphore,
    connected: list[int],
    held: dict[int, int],
    clients: int,
) -> None:
    async with opened:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        writer.write(request.encode() + b"\r\n")
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"client {index}: {status.decode().strip()}")
        connected.append(index)
    seen: set[int] = set()
    event = b""
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            # Chunked transfer framing lines (sizes) are neither `event:` nor `data:` lines.
            if line.startswith(b"event:"):
                event = line[6:].strip()
            elif line.startswith(b"data:") and event == b"position":
                at = time.monotonic()
                block = orjson.loads(line[5:])["block_number"]
                if block not in seen:
                    seen.add(block)
                    arrivals.append((index, block, at))
                    held[block] = held.get(block, 0) + 1
                    if held[block] == clients:
                        print(orjson.dumps({"block": block}).decode(), flush=True)
    finally:
        writer.close()


async def _run(url: str, clients: int, first: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    arrivals: list[tuple[int, int, float]] = []
    connected: list[int] = []
    opened = asyncio.Semaphore(CONNECT_CONCURRENCY)
    held: dict[int, int] = {}
    tasks = [
        asyncio.create_task(
            _client(first + i, host, port, path, arrivals, opened, connected, held, clients)
        )
        for i in range(clients)
    ]
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    deadline = time.monotonic() + 180
    while len(connected) < clients:
        failed = [t for t in tasks if t.done() and t.exception() is not None]
        if failed or time.monotonic() > deadline:
            why = repr(failed[0].exception()) if failed else "timed out connecting"
            print(orjson.dumps({"error": why, "connected": len(connected)}).decode(), flush=True)
            return
        await asyncio.sleep(0.05)
    print(orjson.dumps({"connected": len(connected)}).decode(), flush=True)
    await stdin.readline()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(orjson.dumps({"arrivals": arrivals}).decode(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the stream URL")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="index of the first client")
    args = parser.parse_args()
    asyncio.run(_run(args.url, args.clients, args.first))


if __name__ == "__main__":
    main()
