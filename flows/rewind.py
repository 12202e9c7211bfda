"""Undo for reorganisations, around any pure stateful step.

Every stage of the flow is a pure `step(state, item) -> (state, out)`. Rolling one back to the
fork point therefore needs no per-field undo log: restore the state as of a block before the
fork and replay the items that followed it, up to the fork. `History` keeps what that takes
for the blocks that are not final yet, and nothing for final ones:

- a copy of the state every `SNAPSHOT_EVERY` unfinalised blocks (and one just before the first
  unfinalised block), dropped once a newer copy is itself at or below the final block;
- the items since the oldest copy kept.

A copy is kept by deltas (`protocols/journal.py`): the state pickled without the contents of
its journaled dicts (the large per-subject maps: positions, accounts, pools, balances, window
books), and a journal of what the blocks after it changed in those dicts, each changed key's
value before the change. Restoring a copy undoes the newer journals, newest first, then loads
its pickle around the dicts so restored. A copy thus costs the small rest of the state, and
each block what it changed, not the state's size (a state without journaled dicts is pickled
whole, as before).

Backfill far below the head (final blocks) pays nothing.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from ports.metrics import METRICS
from protocols.journal import Journal, JournaledDict, load_skeleton, pickle_skeleton
from schemas.chain import Rewind
from schemas.errors import ReorgTooDeep

S = TypeVar("S")
V = TypeVar("V")
O = TypeVar("O")  # noqa: E741 - the step's output type

SNAPSHOT_EVERY = 16


@dataclass(slots=True, eq=False)
class Copy:
    """The state as of a block, by deltas: pickled with its journaled dicts as references
    (`refs`), and the journal of what the blocks since changed in those dicts."""

    skeleton: bytes
    refs: list[JournaledDict[Any, Any]]
    journal: Journal = field(default_factory=Journal)


@dataclass(slots=True)
class History(Generic[S, V]):
    state: S | None = None
    # (the last block applied to it, the state as of it), oldest first; bytes: pickled whole
    # by a defimon before undo by deltas (a recovery directory it saved)
    copies: list[tuple[int, Copy | bytes]] = field(default_factory=list)
    # (block, item) applied since the oldest copy, in order
    items: list[tuple[int, V]] = field(default_factory=list)
    last_block: int = -1

    def __deepcopy__(self, memo: dict[int, object]) -> History[S, V]:
        """Bytewax's recovery snapshot (`stateful_map` deep-copies the state at every epoch,
        then pickles the copy): pickled once instead, in one pass that is several times
        faster than a deep copy, and immutable as Bytewax requires. It unpickles as the
        History itself, so recovery stores written either way load alike."""
        with METRICS.flow_stage_seconds.labels(stage="recovery_snapshot").time():
            return cast(History[S, V], _Pickled(_dump(self)))

    def record(self, block: int, final_block: int | None) -> None:
        """Before applying an item of `block`: copy the state if undo must start here."""
        if final_block is None or block <= final_block:
            # Final: nothing at or below it can be undone, so neither can anything before it.
            self.copies.clear()
            self.items.clear()
            return
        if not self.copies:
            self.copies.append((self.last_block, undo_copy(self.state)))

    def journal(self) -> Journal | None:
        """Where the next step records what it changes (None: nothing to undo)."""
        if not self.copies:
            return None
        newest = self.copies[-1][1]
        return newest.journal if isinstance(newest, Copy) else None

    def applied(self, block: int, item: V, final_block: int | None) -> None:
        """After applying an item of `block`."""
        self.last_block = block
        if not self.copies:
            return
        self.items.append((block, item))
        if block - self.copies[-1][0] >= SNAPSHOT_EVERY:
            self.copies.append((block, undo_copy(self.state)))
        if final_block is not None:
            self._prune(final_block)

    def _prune(self, final_block: int) -> None:
        # Keep the newest copy at or below the final block (a rewind to final_block + 1 needs
        # it) and everything after it.
        keep = 0
        for i, (as_of, _) in enumerate(self.copies):
            if as_of <= final_block:
                keep = i
        if keep:
            del self.copies[:keep]
            oldest = self.copies[0][0]
            self.items = [(b, item) for b, item in self.items if b > oldest]

    def rewind(
        self, fork_block: int, chain_id: int, step: Callable[[S | None, V], tuple[S, object]]
    ) -> bool:
        """Back to the state after `fork_block - 1`. False if nothing had to change."""
        if self.last_block < fork_block:
            return False
        usable = [(as_of, data) for as_of, data in self.copies if as_of < fork_block]
        if not usable:
            oldest = self.copies[0][0] if self.copies else self.last_block
            raise ReorgTooDeep(chain_id, fork_block, oldest + 1)
        as_of, kept = usable[-1]
        newer = self.copies[len(usable) - 1 :]  # the copy restored and every newer one
        if isinstance(kept, Copy):
            # The live dicts back to as they were at the copy: newest changes first.
            for _b, copy in reversed(newer):
                assert isinstance(copy, Copy)  # copies made after a Copy are Copies
                copy.journal.undo()
            state: S | None = load_skeleton(kept.skeleton, kept.refs)
        else:
            state = pickle.loads(kept)
        last = as_of
        journal = kept.journal if isinstance(kept, Copy) else None
        with _recording(journal):
            for block, item in self.items:
                if as_of < block < fork_block:
                    state, _ = step(state, item)
                    last = block
        self.state = state
        self.last_block = last
        self.copies = [(b, d) for b, d in self.copies if b < fork_block]
        self.items = [(b, item) for b, item in self.items if b < fork_block]
        return True


def _dump(state: object) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def undo_copy(state: object) -> Copy:
    """A copy of the state as History keeps it: by deltas from here on."""
    with METRICS.flow_stage_seconds.labels(stage="undo_copy").time():
        return Copy(*pickle_skeleton(state))


def _recording(journal: Journal | None) -> AbstractContextManager[object]:
    return journal.activate() if journal is not None else nullcontext()


class _Pickled:
    """An object already pickled: pickling it again stores its bytes, and unpickling that
    gives the object back (not a _Pickled)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Callable[[bytes], object], tuple[bytes]]:
        return pickle.loads, (self.data,)


def rewindable(
    step: Callable[[S | None, V], tuple[S, O]],
    block_of: Callable[[V], int],
    final_of: Callable[[V], int | None],
) -> Callable[[History[S, V] | None, V | Rewind], tuple[History[S, V], O | Rewind]]:
    """Wrap a Bytewax stateful_map mapper so that a `Rewind` item rolls its state back.

    The Rewind passes through as the output, so the next stage can roll back too.
    """

    def mapper(history: History[S, V] | None, item: V | Rewind) -> tuple[History[S, V], O | Rewind]:
        history = history if history is not None else History()
        if isinstance(item, Rewind):
            history.rewind(item.fork_block, item.chain_id, step)
            return history, item
        block, final_block = block_of(item), final_of(item)
        history.record(block, final_block)
        with _recording(history.journal()):
            history.state, out = step(history.state, item)
        history.applied(block, item, final_block)
        return history, out

    return mapper
