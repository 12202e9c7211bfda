"""Events on the broadcast bus, as the stream sends them to clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
