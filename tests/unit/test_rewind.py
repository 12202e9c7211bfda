"""The reorg core (flows/rewind.py): a pure step wrapped by `rewindable` rolls back to the state
after `fork_block - 1` from its kept copies and items, keeps nothing for final blocks, prunes
copies as the final block advances, and refuses a rewind past what it kept.

The step mutates its state in place (as the real market and shard steps do), so a kept copy
shared with the live state instead of pickled would show up as a wrong rollback here.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, field

import pytest

from flows.rewind import SNAPSHOT_EVERY, History, rewindable
from schemas.chain import Rewind
from schemas.errors import ReorgTooDeep

CHAIN = 5


@dataclass(frozen=True)
class Item:
    block: int
    value: str
    final: int | None


@dataclass
class Ledger:
    applied: list[tuple[int, str]] = field(default_factory=list)


class Counting:
    """The step, counting its calls (a rollback replays only the items after its copy)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, state: Ledger | None, item: Item) -> tuple[Ledger, int]:
        self.calls += 1
        ledger = state if state is not None else Ledger()
        ledger.applied.append((item.block, item.value))
        return ledger, len(ledger.applied)


class Driver:
    """A stateful_map's view of one key: the history it threads through the mapper."""

    def __init__(self) -> None:
        self.step = Counting()
        self.mapper = rewindable(self.step, lambda i: i.block, lambda i: i.final)
        self.history: History[Ledger, Item] | None = None

    def feed(self, *items: Item | Rewind) -> list[int | Rewind]:
        outs = []
        for item in items:
            self.history, out = self.mapper(self.history, item)
            outs.append(out)
        return outs

    @property
    def h(self) -> History[Ledger, Item]:
        assert self.history is not None
        return self.history

    @property
    def applied(self) -> list[tuple[int, str]]:
        assert self.h.state is not None
        return self.h.state.applied


def rewind(fork: int, old_head: int) -> Rewind:
    orphaned = tuple((n, f"0x{n:x}") for n in range(fork, old_head + 1))
    return Rewind(CHAIN, fork, orphaned, old_head, old_head + 1)


def blocks(first: int, last: int, final: int | None, tag: str = "a") -> list[Item]:
    return [Item(b, f"{tag}{b}", final) for b in range(first, last + 1)]


def test_undo_to_a_block_restores_the_state_before_it_and_replays_nothing_after() -> None:
    d = Driver()
    # Block 4 has two items: a rewind to it undoes both.
    d.feed(*blocks(1, 3, 0), Item(4, "a4", 0), Item(4, "a4'", 0), *blocks(5, 6, 0))
    assert d.h.last_block == 6 and [b for b, _ in d.h.copies] == [-1]
    d.step.calls = 0
    r = rewind(4, 6)
    assert d.feed(r) == [r]  # the Rewind passes through for the next stage
    assert d.applied == [(1, "a1"), (2, "a2"), (3, "a3")]
    assert d.step.calls == 3  # replayed from the copy before block 1
    assert d.h.last_block == 3
    assert [b for b, _ in d.h.items] == [1, 2, 3]
    assert [b for b, _ in d.h.copies] == [-1]
    # The canonical branch follows: the state is the canonical chain's alone.
    assert d.feed(*blocks(4, 5, 0, "b")) == [4, 5]
    assert d.applied == [(1, "a1"), (2, "a2"), (3, "a3"), (4, "b4"), (5, "b5")]


def test_copies_every_snapshot_interval_and_a_rollback_replays_from_the_newest_usable() -> None:
    assert SNAPSHOT_EVERY == 16  # the copies' blocks below follow from it
    d = Driver()
    d.feed(*blocks(1, 40, 0))
    assert [b for b, _ in d.h.copies] == [-1, 15, 31]
    assert [b for b, _ in d.h.items] == list(range(1, 41))
    d.step.calls = 0
    d.feed(rewind(20, 40))
    assert d.step.calls == 4  # 16..19 after the copy at 15
    assert d.applied == [(b, f"a{b}") for b in range(1, 20)]
    assert [b for b, _ in d.h.copies] == [-1, 15]
    assert [b for b, _ in d.h.items] == list(range(1, 20))


def test_final_blocks_prune_copies_and_items_below_the_newest_final_copy() -> None:
    d = Driver()
    # Ten blocks to finality: at block 25 the copy at 15 is final and the one before it goes.
    d.feed(*[Item(b, f"a{b}", b - 10) for b in range(1, 41)])
    assert [b for b, _ in d.h.copies] == [15, 31]
    assert [b for b, _ in d.h.items] == list(range(16, 41))
    # A rewind to the first block that is not final is still possible, from the copy at 15.
    d.step.calls = 0
    d.feed(rewind(31, 40))
    assert d.step.calls == 15
    assert d.applied == [(b, f"a{b}") for b in range(1, 31)]
    assert [b for b, _ in d.h.copies] == [15]
    assert [b for b, _ in d.h.items] == list(range(16, 31))


def test_a_rewind_past_what_is_kept_is_refused_with_the_oldest_block_kept() -> None:
    d = Driver()
    d.feed(*[Item(b, f"a{b}", b - 10) for b in range(1, 41)])
    with pytest.raises(ReorgTooDeep) as refused:
        d.feed(rewind(15, 40))
    assert (refused.value.chain_id, refused.value.fork_block) == (CHAIN, 15)
    assert refused.value.oldest_kept == 16
    # Nothing moved.
    assert d.h.last_block == 40 and len(d.applied) == 40


def test_final_blocks_keep_nothing_until_a_block_is_not_final() -> None:
    d = Driver()
    d.feed(*blocks(1, 10, None))  # backfill: None is final
    d.feed(*[Item(b, f"a{b}", b) for b in range(11, 13)])  # at the final block: final too
    assert d.h.copies == [] and d.h.items == []
    with pytest.raises(ReorgTooDeep) as refused:
        d.feed(rewind(12, 12))
    assert refused.value.oldest_kept == 13  # nothing kept: the block after the last one
    # The first block above the final one copies the state before it.
    d.feed(*blocks(13, 15, 12))
    assert [b for b, _ in d.h.copies] == [12]
    assert [b for b, _ in d.h.items] == [13, 14, 15]
    d.step.calls = 0
    d.feed(rewind(13, 15))
    assert d.step.calls == 0
    assert d.applied == [(b, f"a{b}") for b in range(1, 13)]


def test_rewinds_are_idempotent_and_never_touch_the_kept_copy() -> None:
    d = Driver()
    d.feed(*blocks(1, 6, 0))
    r = rewind(4, 6)
    d.feed(r)
    after_first = list(d.applied)
    copies, items = list(d.h.copies), list(d.h.items)
    # The same Rewind again (every shard gets it; one delivered twice): nothing changes.
    d.step.calls = 0
    assert d.feed(r) == [r]
    assert d.h.rewind(4, CHAIN, d.step) is False
    assert d.step.calls == 0
    assert (d.applied, d.h.copies, d.h.items, d.h.last_block) == (after_first, copies, items, 3)
    # A rewind above the last block applied is a no-op too.
    assert d.h.rewind(9, CHAIN, d.step) is False
    # Another branch, then a reorg back to the same fork: the copy restored the first time
    # was not mutated by the blocks applied since.
    d.feed(*blocks(4, 8, 0, "b"))
    d.feed(rewind(4, 8))
    assert d.applied == after_first == [(1, "a1"), (2, "a2"), (3, "a3")]
    d.feed(*blocks(4, 6, 0, "c"))
    fresh = Driver()
    fresh.feed(*blocks(1, 3, 0), *blocks(4, 6, 0, "c"))
    assert d.applied == fresh.applied


def test_a_fresh_key_ignores_a_rewind() -> None:
    d = Driver()
    r = rewind(1, 3)
    assert d.feed(r) == [r]
    assert d.h.state is None and d.h.last_block == -1 and d.step.calls == 0


def test_a_recovery_snapshot_is_frozen_and_restores_a_history_that_still_rewinds() -> None:
    """Bytewax deep-copies the state at each epoch and pickles the copy; the History hands
    over its pickle instead. What Bytewax stores must not change with later blocks, and what
    a resume loads is a History that undoes as the original would."""
    d = Driver()
    d.feed(*blocks(1, SNAPSHOT_EVERY + 4, final=0))
    snapshot = copy.deepcopy(d.h)
    stored = pickle.dumps(snapshot)  # what Bytewax writes to its recovery store
    d.feed(*blocks(SNAPSHOT_EVERY + 5, SNAPSHOT_EVERY + 8, final=0, tag="later"))
    assert pickle.dumps(snapshot) == stored  # the later blocks did not reach it

    resumed = Driver()
    resumed.history = pickle.loads(stored)
    assert isinstance(resumed.history, History)
    assert resumed.applied == [(b, f"a{b}") for b in range(1, SNAPSHOT_EVERY + 5)]
    resumed.feed(rewind(3, SNAPSHOT_EVERY + 4), *blocks(3, 4, final=0, tag="b"))
    assert resumed.applied == [(1, "a1"), (2, "a2"), (3, "b3"), (4, "b4")]
