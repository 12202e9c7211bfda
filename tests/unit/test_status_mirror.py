"""The flow status the API mirrors when a chain's head and its stored progress come from
different flow processes: in a cluster Bytewax spreads the chain sources' partitions over the
workers, while the store's one partition is on worker 0, so with several chains a chain's
source can run in a process that stores nothing."""

from __future__ import annotations

from defimon.nats_bus import apply_status, status_snapshot
from ports.status import FlowStatus


def _source_process(head: int) -> FlowStatus:
    status = FlowStatus()
    status.running = True
    status.saw_head(1, head)
    return status


def _store_process(stored: int) -> FlowStatus:
    status = FlowStatus()
    status.running = True
    for block in range(100, stored + 1):
        status.market_stored(1, block, live=block == stored, shards=())
    return status


def test_the_api_mirrors_head_and_progress_sent_by_different_flow_processes() -> None:
    source, store = status_snapshot(_source_process(120)), status_snapshot(_store_process(115))
    for order in ([source, store], [store, source], [source, store, source, store]):
        mirror = FlowStatus()
        for snapshot in order:
            apply_status(mirror, snapshot)
        progress = mirror.chain(1)
        assert (progress.head, progress.processed, progress.first_block) == (120, 115, 100)
        assert progress.live and progress.lag == 5


def test_one_flow_process_sends_everything_as_before() -> None:
    status = _store_process(110)
    status.saw_head(1, 112)
    mirror = FlowStatus()
    apply_status(mirror, status_snapshot(status))
    assert (mirror.chain(1).head, mirror.chain(1).processed, mirror.chain(1).lag) == (112, 110, 2)
