"""Events on the broadcast bus, as the stream sends them to clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class BusEvent:
    """One event for stream subscribers.

    `owners` are the wallets the event concerns (a transferred position concerns both the
    sender and the recipient), so the hub can route it without parsing `data`.
    """

    kind: str  # position | account | balance
    chain_id: int
    block_number: int
    block_hash: str
    data: dict[str, Any]
    owners: tuple[str, ...] = field(default_factory=tuple)
    # Wall-clock seconds when the flow produced it, for latency metrics.
    produced_at: float = 0.0
    # `data` as JSON, serialised once however many clients receive it.
    _json: list[str] = field(default_factory=list, compare=False, repr=False)
    # (id, confirmed) -> the SSE frame, built once however many clients receive it.
    _frames: dict[tuple[int, bool], bytes] = field(default_factory=dict, compare=False, repr=False)

    def json_text(self, confirmed: bool) -> str:
        """`data` as JSON, with whether the block is confirmed (final) as of now."""
        if not self._json:
            self._json.append(orjson.dumps(self.data).decode())
        text = self._json[0]
        flag = '"confirmed":true}' if confirmed else '"confirmed":false}'
        return "{" + flag if text == "{}" else text[:-1] + "," + flag

    def sse_frame(self, event_id: int, confirmed: bool) -> bytes:
        """The event as one Server-Sent Events frame with this id: `id`, `event` and `data`
        lines in that order, CRLF-separated (as sse-starlette writes them; JSON has no line
        breaks, so `data` is one line)."""
        key = (event_id, confirmed)
        frame = self._frames.get(key)
        if frame is None:
            text = (
                f"id: {event_id}\r\nevent: {self.kind}\r\ndata: {self.json_text(confirmed)}\r\n\r\n"
            )
            frame = self._frames[key] = text.encode()
        return frame
