"""Where the store's sink partition runs in a cluster of flow processes, and the flow status
the API mirrors when the chain's head and its stored progress come from different processes."""

from __future__ import annotations

from defimon.nats_bus import apply_status, status_snapshot
from flows.dataflow import hosts_store
from flows.sinks import STORE_PARTITION, StoreSink
from ports.bus import InProcessBus
from ports.status import FlowStatus
from ports.store import Store


def _never_opened() -> Store:
    raise AssertionError("only the worker that holds the partition opens the store")


def test_only_the_last_process_of_a_cluster_offers_the_store() -> None:
    assert hosts_store(None, 1)  # one process: its workers
    assert [hosts_store(i, 2) for i in range(2)] == [False, True]
    assert [hosts_store(i, 3) for i in range(3)] == [False, False, True]
    offered = StoreSink(_never_opened, FlowStatus(), InProcessBus(), hosted=True)
    not_offered = StoreSink(_never_opened, FlowStatus(), InProcessBus(), hosted=False)
    assert offered.list_parts() == [STORE_PARTITION]
    assert not_offered.list_parts() == []


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
