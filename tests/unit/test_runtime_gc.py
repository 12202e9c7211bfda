"""The runtime's garbage-collector policy (defimon/runtime.py): once every chain is live, the
heap the backfill built is frozen out of the collector's reach and young collections shrink,
so no older collection rescans that heap on the live path."""

from __future__ import annotations

import gc
import threading

from defimon.runtime import LIVE_GC_THRESHOLD, freeze_when_live


def test_the_heap_is_frozen_and_young_collections_shrink_once_live() -> None:
    answers = iter([False, False, True])
    before = gc.get_threshold()
    gc.unfreeze()  # a live Runtime earlier in this process may have frozen it already
    try:
        assert gc.get_freeze_count() == 0
        assert freeze_when_live(lambda: next(answers), threading.Event(), poll=0.01)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == LIVE_GC_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_flow_stopped_before_it_is_live_leaves_the_collector_alone() -> None:
    stop = threading.Event()
    stop.set()
    before = gc.get_threshold()
    gc.unfreeze()  # a live Runtime earlier in this process may have frozen it already
    assert not freeze_when_live(lambda: False, stop, poll=0.01)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
