"""Writing a streamed response's body straight to the client's connection.

With thousands of stream clients, the cost of delivering a block is per client and write: the
ASGI path (a task woken per client, the server's HTTP/1.1 writer, a chunked `send` per client)
costs several times the `send` system call itself. The stream (api/routes/stream.py) therefore
writes each client's share of a block as one HTTP/1.1 chunk to the connection's transport.

Under uvicorn (h11 or httptools), ASGI `send` is a method of the request's cycle, which holds
the connection's asyncio transport. `record` (called by the app before any middleware wraps
`send`) keeps that transport in the request's scope; `Connection.of` finds it there. Any other
server, or an HTTP/1.0 request (no chunked framing), has none, and the stream uses ASGI `send`.
The response's start (status, headers) and its end still go through ASGI `send`, so the server
frames the body as chunked (what it does for HTTP/1.1 without a Content-Length) and knows
where the response ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

_SCOPE_KEY = "defimon.transport"
# The servers whose ASGI `send` is a method of an object holding the connection's transport.
_SERVERS = frozenset({"uvicorn.protocols.http.h11_impl", "uvicorn.protocols.http.httptools_impl"})


def record(scope: MutableMapping[str, Any], send: object) -> None:
    """Keep the transport under the server's own `send` in the scope, if it has one."""
    cycle = getattr(send, "__self__", None)
    if type(cycle).__module__ not in _SERVERS:
        return
    transport = getattr(cycle, "transport", None)
    if isinstance(transport, asyncio.WriteTransport):
        scope[_SCOPE_KEY] = transport


class Connection:
    """A chunked HTTP/1.1 response body, written to the client's transport."""

    def __init__(self, transport: asyncio.WriteTransport, limit: int) -> None:
        self.transport = transport
        self.limit = limit

    @classmethod
    def of(cls, scope: MutableMapping[str, Any], limit: int) -> Connection | None:
        """The request's connection (None: write through ASGI `send`). `limit`: how many
        unsent bytes it may hold before `write` calls the client too slow."""
        transport = scope.get(_SCOPE_KEY)
        if transport is None or scope.get("http_version") != "1.1" or scope["method"] != "GET":
            return None
        return cls(transport, limit)

    def write(self, data: bytes, *, always: bool = False) -> bool:
        """Write `data` as one chunk, unless the client is gone or (unless `always`) holds
        more than `limit` unsent bytes: then False, and nothing is written."""
        transport = self.transport
        if transport.is_closing() or (
            not always and transport.get_write_buffer_size() > self.limit
        ):
            return False
        transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return True
