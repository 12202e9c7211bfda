"""The store sink's writer thread (flows/sinks.py): a block counts as processed only once its
rows are in the store, a flush waits for every insert handed off, and an insert that fails
stops the flow at its next hand-off instead of vanishing in the thread."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.rows import SinkBatch
from flows.sinks import StoreSink
from ports.bus import InProcessBus
from ports.status import FlowStatus
from ports.store import Store
from schemas.errors import StoreError

CHAIN = 31337


def block_batch(number: int, *, live: bool = True) -> SinkBatch:
    row = (
        CHAIN,
        number,
        f"0x{number:064x}",
        f"0x{number - 1:064x}",
        datetime.fromtimestamp(1_700_000_000 + number, UTC),
        0,
        number,
    )
    return SinkBatch(CHAIN, number, live, {"defimon.blocks": [row]}, expects_shards=())


def stored_blocks(store: Store) -> list[int]:
    return [n for (n,) in store.rows("SELECT number FROM defimon.blocks FINAL ORDER BY number")]


def test_blocks_are_processed_once_stored_and_a_flush_waits_for_every_insert(
    tmp_path: Path,
) -> None:
    store = Store.connect(None, tmp_path)
    try:
        store.migrate()
        status = FlowStatus()
        part = StoreSink(store.another, status, InProcessBus()).build_part("store", "store", None)
        try:
            for number in range(1, 21):
                part.write_batch([block_batch(number)])
            part.flush()  # what an epoch's snapshot does
            assert stored_blocks(store) == list(range(1, 21))
            assert status.chain(CHAIN).processed == 20
        finally:
            part.close()
    finally:
        store.close()  # chDB serves one data directory per process at a time


def test_a_failed_insert_stops_the_flow_at_its_next_hand_off(tmp_path: Path) -> None:
    store = Store.connect(None, tmp_path)  # not migrated: no defimon.blocks to insert into
    try:
        status = FlowStatus()
        part = StoreSink(store.another, status, InProcessBus()).build_part("store", "store", None)
        part.write_batch([block_batch(1)])
        with pytest.raises(StoreError, match=r"defimon\.blocks"):
            part.flush()
        assert status.chain(CHAIN).processed == -1  # nothing was reported stored
        with pytest.raises(StoreError):
            part.write_batch([block_batch(2)])
        with pytest.raises(StoreError):
            part.close()  # stops the writer and closes its store all the same
    finally:
        store.close()
