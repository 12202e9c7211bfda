"""Where the flow is: shared between the flow thread and the API (plain ints; GIL-atomic)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ports.metrics import METRICS


@dataclass(slots=True)
class ChainProgress:
    chain_id: int
    head: int = -1
    processed: int = -1  # the last block whose results are stored and published
    live: bool = False  # backfill finished, following the head
    started_at: float = field(default_factory=time.monotonic)
    first_block: int = -1
    processed_time: int | None = None  # the processed block's timestamp, when known
    pending: dict[int, set[int]] = field(default_factory=dict)
    pending_times: dict[int, int] = field(default_factory=dict)
    shards_done: dict[int, set[int]] = field(default_factory=dict)

    @property
    def lag(self) -> int | None:
        if self.head < 0:
            return None
        return max(self.head - self.processed, 0)


class FlowStatus:
    """Progress per chain, plus whether the flow thread is alive and why it stopped."""

    def __init__(self) -> None:
        self._chains: dict[int, ChainProgress] = {}
        self._lock = threading.Lock()
        self.running = False
        self.error: str | None = None
        self.reorgs = 0
        # When this process only mirrors a flow process's status (defimon api): the monotonic
        # time of the last status message, None while none has come.
        self.remote_seen_at: float | None = None

    def flow_running(self, stale_after: float = 10.0) -> bool:
        """Whether the flow runs: here, or (mirrored) in a flow process heard from lately."""
        if self.remote_seen_at is None:
            return self.running
        return self.running and time.monotonic() - self.remote_seen_at < stale_after

    def chain(self, chain_id: int) -> ChainProgress:
        with self._lock:
            found = self._chains.get(chain_id)
            if found is None:
                found = self._chains[chain_id] = ChainProgress(chain_id)
            return found

    def chains(self) -> list[ChainProgress]:
        with self._lock:
            return list(self._chains.values())

    def saw_head(self, chain_id: int, head: int) -> None:
        progress = self.chain(chain_id)
        progress.head = max(progress.head, head)

    def market_stored(
        self,
        chain_id: int,
        block: int,
        live: bool,
        shards: tuple[int, ...],
        block_time: int | None = None,
    ) -> None:
        """The market stage's rows for `block` are stored; `shards` still owe theirs."""
        progress = self.chain(chain_id)
        with self._lock:
            if block_time is not None:
                progress.pending_times[block] = block_time
            if progress.first_block < 0:
                progress.first_block = block
            progress.live = progress.live or live
            early = progress.shards_done.pop(block, set())
            progress.pending[block] = set(shards) - early
            self._advance(progress)

    def shard_stored(self, chain_id: int, block: int, shard: int) -> None:
        progress = self.chain(chain_id)
        with self._lock:
            waiting = progress.pending.get(block)
            if waiting is None:  # the shard's rows beat the market's to the store
                progress.shards_done.setdefault(block, set()).add(shard)
            else:
                waiting.discard(shard)
            self._advance(progress)

    def rewound(self, chain_id: int, fork_block: int) -> None:
        """A reorg retracted blocks from `fork_block` on: they are processed again."""
        progress = self.chain(chain_id)
        with self._lock:
            for table in (progress.pending, progress.shards_done):
                for block in [b for b in table if b >= fork_block]:
                    del table[block]
            progress.processed = min(progress.processed, fork_block - 1)
            self.reorgs += 1

    @staticmethod
    def _advance(progress: ChainProgress) -> None:
        # A block counts as processed when it and every block before it are fully stored.
        for block in sorted(progress.pending):
            if progress.pending[block]:
                break
            del progress.pending[block]
            block_time = progress.pending_times.pop(block, None)
            if block >= progress.processed:
                progress.processed = block
                progress.processed_time = block_time

    def export(self) -> None:
        """Set the head and lag gauges from the progress, just before /metrics is scraped
        (the API's and the flow process's alike)."""
        now = time.time()
        for progress in self.chains():
            chain = str(progress.chain_id)
            METRICS.head_block.labels(chain_id=chain).set(progress.head)
            METRICS.head_lag_blocks.labels(chain_id=chain).set(progress.lag or 0)
            if progress.processed_time is not None:
                behind = max(now - progress.processed_time, 0.0)
                METRICS.head_lag_seconds.labels(chain_id=chain).set(behind)
