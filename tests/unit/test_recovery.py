"""A killed run's uncommitted snapshots must not come back two resumes later (defimon.recovery).

Real Bytewax, real recovery partitions. The leftovers of a SIGKILL are written the way the dead
process leaves them: its execution row, and a snapshot at the resume epoch for a key, with no
frontier after it (the epoch never finished).
"""

from __future__ import annotations

import pickle
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from defimon.recovery import discard_uncommitted_snapshots, resume_epoch, retired_steps

STEP = "count.count.stateful_flat_map.stateful.stateful_batch"


def count_flow(items: list[object], out: list[tuple[str, int]]) -> Dataflow:
    flow = Dataflow("count")
    keyed = op.key_on("key", op.input("inp", flow, TestingSource(items)), str)
    counted = op.stateful_map("count", keyed, lambda n, _: ((n or 0) + 1, (n or 0) + 1))
    op.output("out", counted, TestingSink(out))
    return flow


def run(recovery: Path, items: list[object]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    run_main(
        count_flow(items, out),
        epoch_interval=timedelta(0),
        recovery_config=RecoveryConfig(str(recovery)),
    )
    return out


def leave_a_killed_run(recovery: Path, key: str, state: int) -> int:
    """What a process killed mid-epoch leaves: its execution, and a snapshot of `key` at the
    epoch it resumed from, which never committed. The epoch it resumed from."""
    epoch = resume_epoch(recovery)
    assert epoch is not None
    with closing(sqlite3.connect(recovery / "part-0.sqlite3")) as db, db:
        (ex_num,) = db.execute("SELECT max(ex_num) FROM exs").fetchone()
        db.execute(
            "INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (?, 1, ?)",
            (ex_num + 1, epoch),
        )
        db.execute(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)",
            (STEP, key, epoch, pickle.dumps(state)),
        )
    return epoch


def scenario(recovery: Path, *, discard: bool) -> list[tuple[str, int]]:
    """b is counted once; a run killed mid-epoch had counted b to 100; the next run sees only
    a's (b stays quiet, so Bytewax snapshots no b) and dies too, after committing a few
    epochs; the run after that sees b again. Runs that do not reach the end of their input
    are what a long-running flow is (at EOF, Bytewax snapshots every key)."""
    init_db_dir(recovery, 1)
    items: list[object] = ["a", "b", "a"]
    assert run(recovery, items) == [("a", 1), ("b", 1), ("a", 2)]
    epoch = leave_a_killed_run(recovery, "b", 100)
    assert resume_epoch(recovery) == epoch  # the dead run made no progress
    if discard:
        assert discard_uncommitted_snapshots(recovery) == 1
    items += ["a", "a", "a", TestingSource.ABORT(), "b"]
    assert run(recovery, items) == [("a", 3), ("a", 4), ("a", 5)]  # then ABORT: dies
    resumed_at = resume_epoch(recovery)
    assert resumed_at is not None and resumed_at > epoch  # the a's committed
    if discard:
        discard_uncommitted_snapshots(recovery)
    return [kv for kv in run(recovery, items) if kv[0] == "b"]


def test_bytewax_alone_resurrects_a_killed_runs_snapshot(tmp_path: Path) -> None:
    # The hazard is real: without the upkeep, b's state comes from the run that died.
    assert scenario(tmp_path, discard=False) == [("b", 101)]


def test_discarding_uncommitted_snapshots_resumes_from_committed_state(tmp_path: Path) -> None:
    assert scenario(tmp_path, discard=True) == [("b", 2)]


def test_resume_epoch_follows_bytewax(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)
    assert resume_epoch(tmp_path) is None
    run(tmp_path, ["a", "b"])
    first = resume_epoch(tmp_path)
    assert first is not None and first > 1
    # A worker that wrote no frontier counts as its execution's resume epoch.
    with closing(sqlite3.connect(tmp_path / "part-1.sqlite3")) as db, db:
        db.execute("INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (7, 2, 40)")
        db.execute("INSERT INTO fronts (ex_num, worker_index, worker_frontier) VALUES (7, 0, 45)")
    assert resume_epoch(tmp_path) == 40
    with closing(sqlite3.connect(tmp_path / "part-0.sqlite3")) as db, db:
        db.execute("INSERT INTO fronts (ex_num, worker_index, worker_frontier) VALUES (7, 1, 43)")
    assert resume_epoch(tmp_path) == 43


def test_state_saved_under_retired_step_ids_is_named(tmp_path: Path) -> None:
    """A recovery directory of a defimon from before the stages were renamed (`market`,
    `positions`) is found out, so the runtime refuses it instead of resuming mid-chain with
    empty stages."""
    recovery = tmp_path
    init_db_dir(recovery, 1)
    assert retired_steps(recovery) == []
    run(recovery, ["a", "b"])  # a flow of today's: its ids are not retired
    assert retired_steps(recovery) == []
    (part,) = sorted(recovery.glob("*.sqlite3"))
    with closing(sqlite3.connect(part)) as db, db:
        db.execute(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)",
            (
                "defimon.uniswap_v3_positions.stateful_flat_map.stateful.stateful_batch",
                "31337:0",
                1,
                pickle.dumps(None),
            ),
        )
    assert retired_steps(recovery) == ["uniswap_v3_positions"]
