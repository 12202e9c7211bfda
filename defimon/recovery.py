"""Bytewax recovery directory upkeep: discard the snapshots of epochs that never committed.

Bytewax (0.21) writes each step's snapshot of a key at the end of every epoch in which that key
changed, as soon as the epoch ends *at that step*; the epoch counts as done (a worker
"frontier" row) only when it has passed through the whole dataflow, sinks included. A process
killed in between leaves snapshots for epochs at or after the epoch the next run resumes from.
Bytewax does not delete them on resume: it loads, per key, the newest snapshot *before* the
resume epoch, and a later snapshot of the same key and epoch overwrites the stale one only if
the key changes again in that epoch number. A key that stays quiet through the resumed run's
epochs keeps the dead run's snapshot, and the resume after that loads it: state ahead of the
source's cursor, so those blocks are applied twice (seen as a failing position shard after a
few SIGKILLs; tests/integration/test_crash_recovery.py).

So before the flow starts, every snapshot at or after the resume epoch is deleted: by
Bytewax's own rule none of them can be loaded by this resume, and each one describes work
that is about to be redone.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import structlog

log = structlog.get_logger("defimon.recovery")

# Step ids an earlier defimon saved state under. The two stateful stages run every protocol,
# not Uniswap's alone, and are now `market` and `positions`; Bytewax would load nothing for
# the new ids and start those stages empty while the source resumed mid-chain.
RETIRED_STEP_IDS = ("uniswap_v3_market", "uniswap_v3_positions")


def _parts(recovery_dir: Path) -> list[Path]:
    return sorted(recovery_dir.glob("*.sqlite3"))


def resume_epoch(recovery_dir: Path) -> int | None:
    """The epoch the next execution resumes from, computed as Bytewax does (recovery.rs,
    `resume_from`): the latest execution's smallest worker frontier, where a worker that
    wrote none counts as that execution's own resume epoch. None before any execution."""
    executions: list[tuple[int, int, int]] = []
    fronts: list[tuple[int, int, int]] = []
    for part in _parts(recovery_dir):
        with closing(sqlite3.connect(part)) as db:
            executions += db.execute(
                "SELECT ex_num, worker_count, resume_epoch FROM exs"
            ).fetchall()
            fronts += db.execute(
                "SELECT ex_num, worker_index, worker_frontier FROM fronts"
            ).fetchall()
    if not executions:
        return None
    ex_num, workers, resumed_at = max(executions)
    progress = dict.fromkeys(range(workers), resumed_at)
    for ex, worker, frontier in fronts:
        if ex == ex_num and worker in progress:
            progress[worker] = max(progress[worker], frontier)
    return min(progress.values())


def retired_steps(recovery_dir: Path) -> list[str]:
    """The retired step ids (RETIRED_STEP_IDS) this directory holds snapshots of."""
    found: set[str] = set()
    for part in _parts(recovery_dir):
        with closing(sqlite3.connect(part)) as db:
            for (step_id,) in db.execute("SELECT DISTINCT step_id FROM snaps"):
                # "<flow>.<step>.<operator internals>"
                names = str(step_id).split(".")
                if len(names) > 1 and names[1] in RETIRED_STEP_IDS:
                    found.add(names[1])
    return sorted(found)


def discard_uncommitted_snapshots(recovery_dir: Path) -> int:
    """Delete the snapshots no resume may use (see the module doc); how many were deleted."""
    parts = _parts(recovery_dir)
    counts: set[int] = set()
    for part in parts:
        with closing(sqlite3.connect(part)) as db:
            counts |= {int(n) for (n,) in db.execute("SELECT part_count FROM parts")}
    if counts != {len(parts)}:
        # Some partitions live elsewhere (a cluster): the resume epoch needs all of them.
        log.warning("recovery.partitions_elsewhere", local=len(parts), counts=sorted(counts))
        return 0
    epoch = resume_epoch(recovery_dir)
    if epoch is None:
        return 0
    deleted = 0
    for part in parts:
        with closing(sqlite3.connect(part)) as db, db:
            deleted += db.execute("DELETE FROM snaps WHERE snap_epoch >= ?", (epoch,)).rowcount
    if deleted:
        log.info("recovery.discarded_uncommitted", snapshots=deleted, resume_epoch=epoch)
    return deleted
