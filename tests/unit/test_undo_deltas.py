"""Undo by deltas (protocols/journal.py, flows/rewind.py): a stage state rolled back through its
journals equals the state rebuilt from scratch without the orphaned blocks.

The property runs the market and shard stages as the dataflow wires them (each in `rewindable`)
on the mainnet benchmark's synthetic chain (bench/mainnet.py: Uniswap pools, positions, swaps,
mints, burns and NFT transfers from a copy of the flow's own pool replica, Aave supplies and
borrows and an oracle update, tracked wallets' ERC-20 transfers, a window boundary every five
blocks): random blocks, a random fork point, optionally a restart from the recovery snapshot
in between; then the canonical branch. The journaled dicts alone are checked against a plain
dict under random operations.
"""

from __future__ import annotations

import copy
import pickle
from contextlib import suppress
from dataclasses import dataclass
from random import Random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.mainnet import MainnetChain, UndoablePipeline
from flows.dataflow import shards_of
from flows.rewind import SNAPSHOT_EVERY, Copy, History, rewindable
from protocols.journal import Journal, JournaledDict, JournaledObjects
from protocols.uniswap_v3.state import UniswapMarket
from schemas.chain import BlockBatch, Rewind

SHARDS = 4


def _chain() -> MainnetChain:
    return MainnetChain(pools=30, positions=240, wallets=60, accounts=24, hot=12)


def _pipeline(chain: MainnetChain) -> UndoablePipeline:
    pipeline = UndoablePipeline(chain.config, SHARDS)
    for batch in chain.build_blocks():
        pipeline.feed(batch)
    market = pipeline.state()[0].part("uniswap_v3")
    assert isinstance(market, UniswapMarket)
    chain.go_live(market)
    return pipeline


def _rewind(pipeline: UndoablePipeline, fork: int, orphaned: list[BlockBatch]) -> None:
    r = Rewind(
        orphaned[0].header.chain_id,
        fork,
        tuple((b.header.number, b.header.hash) for b in orphaned),
        orphaned[-1].header.number,
        orphaned[-1].header.number,
    )
    pipeline.market, out = pipeline.market_step(pipeline.market, r)
    assert out is r
    for key, item in shards_of(SHARDS)(r):
        if key in pipeline.shards:
            pipeline.shards[key], passed = pipeline.shard_step(pipeline.shards[key], item)
            assert passed is r


def _restarted(pipeline: UndoablePipeline) -> None:
    """Every history through its recovery snapshot, as a resumed flow loads it."""
    assert pipeline.market is not None
    pipeline.market = pickle.loads(pickle.dumps(copy.deepcopy(pipeline.market)))
    pipeline.shards = {
        k: pickle.loads(pickle.dumps(copy.deepcopy(h))) for k, h in pipeline.shards.items()
    }


@settings(max_examples=6, deadline=None)
@given(
    common=st.integers(0, 2 * SNAPSHOT_EVERY),
    orphaned=st.integers(1, 2 * SNAPSHOT_EVERY),
    canonical=st.integers(1, 8),
    restart=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_a_rewound_state_equals_the_state_rebuilt_without_the_orphaned_blocks(
    common: int, orphaned: int, canonical: int, restart: bool, seed: int
) -> None:
    chain = _chain()
    pipeline = _pipeline(chain)
    history = [chain.live_block() for _ in range(common)]
    for batch in history:
        pipeline.feed(batch)
    fork = chain.aave.number + 1
    other = copy.deepcopy(chain)  # the canonical branch goes on from the fork
    other.rng = Random(seed)
    lost = [chain.live_block() for _ in range(orphaned)]
    for batch in lost:
        pipeline.feed(batch)
    assert pipeline.market is not None and isinstance(pipeline.market.copies[0][1], Copy)
    if restart:
        _restarted(pipeline)
    _rewind(pipeline, fork, lost)
    assert pipeline.market is not None and pipeline.market.last_block == fork - 1

    rebuilt = _pipeline(_chain())
    for batch in history:
        rebuilt.feed(batch)
    assert pipeline.state() == rebuilt.state()
    for _ in range(canonical):
        batch = other.live_block()
        assert pipeline.feed(copy.deepcopy(batch)) == rebuilt.feed(batch)
    assert pipeline.state() == rebuilt.state()
    assert pipeline.dead_letters == rebuilt.dead_letters == 0


@dataclass
class Value:
    """A value changed in place (as a pool's replica is)."""

    n: int


OPS = st.lists(
    st.tuples(
        st.sampled_from(["set", "del", "pop", "setdefault", "update", "bump", "add", "clear"]),
        st.integers(0, 6),
        st.integers(0, 100),
    ),
    max_size=30,
)


def _apply(d: dict[int, Any], objects: dict[int, Any], op: tuple[str, int, int]) -> None:
    kind, key, n = op
    if kind == "set":
        d[key] = n
        objects[key] = Value(n) if n % 2 else {n}
    elif kind == "del":
        for target in (d, objects):
            with suppress(KeyError):
                del target[key]
    elif kind == "pop":
        d.pop(key, None)
        objects.pop(key, None)
    elif kind == "setdefault":
        d.setdefault(key, n)
        objects.setdefault(key, Value(n))
    elif kind == "update":
        d.update({key: n, key + 1: n})
        objects.update({key: Value(n)})
    elif kind == "bump":  # in place, through a read
        found = objects.get(key)
        if isinstance(found, Value):
            found.n += n
        elif isinstance(found, set):
            found.add(n)
    elif kind == "add" and key in objects:
        held = objects[key]
        if isinstance(held, set):
            held.add(n)
    elif kind == "clear" and n < 5:
        d.clear()
        objects.clear()


@settings(max_examples=200, deadline=None)
@given(before=OPS, runs=st.lists(OPS, min_size=1, max_size=4), undo_to=st.integers(0, 3))
def test_journaled_dicts_undo_to_their_contents_at_any_run(
    before: list[tuple[str, int, int]], runs: list[list[tuple[str, int, int]]], undo_to: int
) -> None:
    """Runs of operations, each in a journal of its own (as each kept copy of a History has);
    undoing the journals newest first, down to any run, gives the contents at its start."""
    d: JournaledDict[int, Any] = JournaledDict()
    objects: JournaledObjects[int, Any] = JournaledObjects()
    for op in before:
        _apply(d, objects, op)
    snapshots, journals = [], []
    for run in runs:
        snapshots.append((dict(d), copy.deepcopy(dict(objects))))
        journal = Journal()
        journals.append(journal)
        with journal.activate():
            for op in run:
                _apply(d, objects, op)
    undo_to = min(undo_to, len(runs) - 1)
    for journal in reversed(journals[undo_to:]):
        journal.undo()
    assert (dict(d), dict(objects)) == snapshots[undo_to]
    assert type(d) is JournaledDict and type(objects) is JournaledObjects


def _put(state: dict[int, int] | None, item: tuple[int, int]) -> tuple[dict[int, int], None]:
    held = state if state is not None else JournaledDict()
    held[item[0]] = item[1]
    return held, None


def test_a_history_saved_with_whole_state_copies_still_rewinds() -> None:
    """A recovery directory written before undo by deltas holds copies pickled whole (bytes):
    they restore as they did, and the copies made after them keep deltas."""
    mapper = rewindable(_put, lambda i: i[0], lambda _i: 0)
    saved: dict[int, int] = {1: 10, 2: 20}
    history: History[dict[int, int], tuple[int, int]] = History(
        saved, [(2, pickle.dumps(saved))], [], 2
    )
    resumed = pickle.loads(pickle.dumps(copy.deepcopy(history)))
    for block in range(3, 3 + SNAPSHOT_EVERY + 2):
        resumed, _ = mapper(resumed, (block, block * 10))
    assert [type(c) for _b, c in resumed.copies] == [bytes, Copy]
    resumed, _ = mapper(resumed, Rewind(5, 3 + SNAPSHOT_EVERY + 1, (), 0, 0))  # from the Copy
    assert resumed.state == {b: b * 10 for b in range(1, 3 + SNAPSHOT_EVERY + 1)}
    resumed, _ = mapper(resumed, Rewind(5, 3, (), 0, 0))  # from the whole copy
    assert resumed.state == saved and resumed.copies == [(2, pickle.dumps(saved))]
