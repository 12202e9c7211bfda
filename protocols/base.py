"""What every protocol shares: the types its stages exchange with the flow, and the small
helpers each of them needs (a dead letter, the shard of a subject, the zero address).

The interface a protocol implements lives in `protocols/spec.py`; the list of protocols in
`protocols/registry.py`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from schemas.chain import RawLog

ZERO_ADDRESS = "0x" + "0" * 40


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A log the flow could not apply, kept with the reason and the stage that refused it."""

    log: RawLog
    reason: str
    stage: str = "uniswap_v3"


def shard_of(subject_id: str, shards: int) -> int:
    """The position shard of a subject (position or account id). Stable across processes (never
    Python's salted `hash`), so a restarted flow finds every subject where it left it."""
    return zlib.crc32(subject_id.encode()) % shards
