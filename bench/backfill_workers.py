"""Backfill throughput by Bytewax worker layout: 1 worker, 2 worker threads, 2 processes.

The same Uniswap history as `bench.backfill` (one devnet, generated once) is backfilled end to
end by the real flow (`flows.dataflow.build_flow`: the chain source, the market and position
stages, the chDB store sink) three times, each into a fresh data directory:

- 1 process x 1 worker,
- 1 process x 2 workers (threads: they share one interpreter, so the GIL lets only one run
  Python at a time; chDB inserts and socket reads release it),
- 2 processes x 1 worker (`cli_main` with addresses, as `bytewax.testing.cluster_main` does).

Each layout runs in processes of its own (`python -m bench.backfill_workers --member ...`). The
clock runs from the earliest member starting its flow to the store holding every block up to
the head; recovery snapshots are off in all three (the comparison is about the dataflow), so
the 1-worker figure is a little above `bench.backfill`'s. One JSON line per layout, then the
speed-ups, then where one worker's time goes: each step's own seconds (the steps wrapped with
timers, in a separate run), which says how much of the work the layout can spread: only the
position shards are keyed finer than the chain.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from bench.backfill import DEFAULT_LOGS, logs_split
from bench.common import devnet_with_history, emit
from defimon.logs import configure
from defimon.runtime import tune_gc
from devnet.anvil import free_port
from devnet.deploy import Deployment
from devnet.replay import Proxy, Replay
from flows.endpoint import ChainEndpoint
from ports.bus import InProcessBus
from ports.settings import Settings
from ports.status import FlowStatus
from ports.store import Store
from tests.support import block_number, chain_tables

LAYOUTS = ((1, 1), (1, 2), (2, 1))  # (processes, workers per process)
TARGET_SPEEDUP = 1.7
F = TypeVar("F", bound=Callable[..., Any])


# ---------------------------------------------------------------------------------------------
# Step timers (the --profile member): each wrapped function adds its own wall time to a total.


class _Timers:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: F) -> F:
        @wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                with self._lock:
                    self.seconds[name] = self.seconds.get(name, 0.0) + spent
                    self.calls[name] = self.calls.get(name, 0) + 1

        return timed  # type: ignore[return-value]


def _instrument(timers: _Timers) -> None:
    """Wrap the flow's steps where build_flow and the sinks look them up."""
    from flows import dataflow, rewind, sinks
    from flows.chain_reader import ChainReader

    for name in ("market_step", "shard_step", "to_shards", "chain_rows", "market_rows"):
        setattr(dataflow, name, timers.wrap(name, getattr(dataflow, name)))
    dataflow.shard_rows = timers.wrap("shard_rows", dataflow.shard_rows)
    Store.insert = timers.wrap("store_insert", Store.insert)  # type: ignore[method-assign]
    sinks._BusPartition.write_batch = timers.wrap(  # type: ignore[method-assign]
        "bus_sinks", sinks._BusPartition.write_batch
    )
    # The reader thread: JSON-RPC and parsing, concurrent with the worker.
    ChainReader.read_range = timers.wrap("reader_read_range", ChainReader.read_range)  # type: ignore[method-assign]
    # Pickling: Bytewax pickles items crossing between processes with the pickle module's
    # dumps and loads (looked up on the module at each call); so do the whole-state copies of
    # flows/rewind.py (undo copies of unfinalised blocks, and Bytewax's per-epoch copy through
    # History.__deepcopy__), timed apart as state_copy_pickle (pickle_dumps includes it).
    pickle.dumps = timers.wrap("pickle_dumps", pickle.dumps)
    pickle.loads = timers.wrap("pickle_loads", pickle.loads)
    rewind._dump = timers.wrap("state_copy_pickle", rewind._dump)


# ---------------------------------------------------------------------------------------------
# One member process of a layout.


class _StoreLeftOpen(Store):
    """Closing a chDB handle from a worker thread that Bytewax spawned (2 workers in one
    process, or any worker of a 2-process cluster) never returns at the end of the flow
    (chdb Connection.close, seen with py-spy, whichever thread called cli_main); with one
    worker and no addresses the worker is the calling thread and closing works. The sink has
    flushed every row by then, so the member leaves the handle open and ends with os._exit."""

    def close(self) -> None:
        pass


def _member(args: argparse.Namespace) -> None:
    from bytewax.run import cli_main

    from flows.dataflow import build_flow

    configure("warning")
    tune_gc()
    timers = _Timers()
    if args.profile:
        _instrument(timers)
    work = Path(args.work)
    deployment = Deployment.from_json((work / "deployment.json").read_text())
    endpoint = ChainEndpoint(deployment.to_chain_config(), args.rpc, None)
    status, stop = FlowStatus(), threading.Event()
    data_dir = work / "data"
    flow = build_flow(
        [endpoint],
        # Only the member that owns the store's one partition opens chDB (one process a path).
        open_store=lambda: _StoreLeftOpen.connect(None, data_dir),
        bus=InProcessBus(),
        status=status,
        stop=stop,
        shards=Settings().shards,
    )
    done_file = work / "done.json"
    me = args.process or 0

    def watch() -> None:
        while not stop.is_set():
            if status.chain(deployment.chain_id).processed >= args.head:
                done_file.write_text(json.dumps({"at": time.time(), "member": me}))
            if done_file.exists():
                stop.set()  # the member with the source ends the flow for all
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()
    (work / f"start-{me}.txt").write_text(repr(time.time()))
    many = args.processes > 1
    cli_main(
        flow,
        workers_per_process=args.workers_per_process,
        process_id=me if many else None,
        addresses=args.addresses.split(",") if many else None,
        epoch_interval=timedelta(seconds=Settings().epoch_seconds),
    )
    stop.set()
    if args.profile:
        (work / f"profile-{me}.json").write_text(
            json.dumps(
                {
                    "seconds": timers.seconds,
                    "calls": timers.calls,
                    # all of its threads: against the wall time, how busy the process was
                    "cpu_seconds": round(time.process_time(), 3),
                }
            )
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@dataclass
class LayoutRun:
    """One layout's backfill: seconds to the head, what the store holds, each member's profile
    (if asked, by process index) and every table the flow writes (if asked)."""

    seconds: float
    held: dict[str, int]
    profiles: dict[int, dict[str, Any]]
    tables: dict[str, list[tuple[Any, ...]]] | None = None


def run_layout(
    rpc_url: str,
    deployment: Deployment,
    head: int,
    processes: int,
    workers_per_process: int,
    *,
    profile: bool = False,
    tables: bool = False,
) -> LayoutRun:
    """Backfill to `head` from `rpc_url` with this layout, each member in a process of its
    own, into a fresh store."""
    work = Path(tempfile.mkdtemp(prefix="defimon-bench-workers-"))
    children: list[subprocess.Popen[bytes]] = []
    try:
        (work / "deployment.json").write_text(deployment.to_json())
        store = Store.connect(None, work / "data")
        store.migrate()
        store.close()
        addresses = ",".join(f"localhost:{free_port()}" for _ in range(processes))
        for index in range(processes):
            command = [
                sys.executable,
                "-m",
                "bench.backfill_workers",
                "--member",
                f"--work={work}",
                f"--rpc={rpc_url}",
                f"--head={head}",
                f"--process={index}",
                f"--processes={processes}",
                f"--workers-per-process={workers_per_process}",
                f"--addresses={addresses}",
            ]
            if profile:
                command.append("--profile")
            children.append(subprocess.Popen(command))
        for child in children:
            if child.wait(timeout=1800) != 0:
                raise RuntimeError(f"a flow member exited with {child.returncode}")
        done = json.loads((work / "done.json").read_text())
        started = min(float(p.read_text()) for p in work.glob("start-*.txt"))
        store = Store.connect(None, work / "data")
        try:
            held = {
                "logs": int(store.scalar("SELECT count() FROM defimon.raw_logs FINAL")),
                "position_versions": int(
                    store.scalar("SELECT count() FROM defimon.position_versions FINAL")
                ),
            }
            held |= logs_split(store, deployment)
            stored = chain_tables(store) if tables else None
        finally:
            store.close()
        profiles = {
            int(p.stem.removeprefix("profile-")): json.loads(p.read_text())
            for p in work.glob("profile-*.json")
        }
        return LayoutRun(done["at"] - started, held, profiles, stored)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        shutil.rmtree(work, ignore_errors=True)


def _layouts(
    name: str,
    rpc_url: str,
    deployment: Deployment,
    head: int,
    replay: Replay | None = None,
    rounds: int = 1,
) -> tuple[dict[tuple[int, int], float], dict[str, int]]:
    """Each layout's backfill from `rpc_url`, one JSON line a run; logs/s by layout over all
    its runs and what the store held (the same for every run, or this raises). With several
    rounds the order alternates (1x1 first, then last, ...), so a load that other jobs put on
    the cores for a while falls on every layout alike, not on whichever ran then."""
    seconds_by: dict[tuple[int, int], float] = {}
    reference: dict[str, int] | None = None
    for turn in range(rounds):
        for processes, workers in LAYOUTS if turn % 2 == 0 else LAYOUTS[::-1]:
            cpu = replay.cpu_seconds() if replay is not None else 0.0
            done = run_layout(rpc_url, deployment, head, processes, workers)
            held, seconds = done.held, done.seconds
            if reference is None:
                reference = held
            elif held != reference:  # every layout must store the same thing
                raise AssertionError(f"{processes}x{workers} stored {held}, first {reference}")
            layout = (processes, workers)
            seconds_by[layout] = seconds_by.get(layout, 0.0) + seconds
            extra: dict[str, Any] = {"round": turn} if rounds > 1 else {}
            if replay is not None:
                extra["replay_server_cpu_seconds"] = round(replay.cpu_seconds() - cpu, 3)
            emit(
                name,
                held["logs"] / seconds,
                "logs/s",
                processes=processes,
                workers_per_process=workers,
                workers=processes * workers,
                seconds=round(seconds, 3),
                protocol_logs_per_second=round(held["protocol_logs"] / seconds),
                tracked_transfer_logs_per_second=round(held["tracked_transfer_logs"] / seconds),
                recovery=False,
                store="chdb",
                **held,
                **extra,
            )
    assert reference is not None
    rates = {layout: reference["logs"] * rounds / s for layout, s in seconds_by.items()}
    return rates, reference


def _emit_speedup(
    name: str, rates: dict[tuple[int, int], float], of: tuple[int, int], layout: str, **extra: Any
) -> None:
    """The speed-ups of one set of runs, in one line: `of` against 1x1 as the value (what the
    line has always reported), and every layout's ratio and rate beside it."""
    one = rates[(1, 1)]
    emit(
        name,
        rates[of] / one,
        "x",
        layout=layout,
        target=TARGET_SPEEDUP,
        one_process_logs_per_second=round(one),
        two_processes_logs_per_second=round(rates[(2, 1)]),
        two_processes_vs_one=round(rates[(2, 1)] / one, 3),
        two_worker_threads_vs_one=round(rates[(1, 2)] / one, 3),
        **extra,
    )


def _emit_profile(name: str, done: LayoutRun, layout: str) -> None:
    """Where each member's time went: its steps' own seconds (wrapped with timers)."""
    for process, profile in sorted(done.profiles.items()):
        spent = profile.get("seconds", {})
        # Not the reader thread's, and the state copies only once (inside pickle_dumps).
        worker = {
            k: v for k, v in spent.items() if k not in ("reader_read_range", "state_copy_pickle")
        }
        # Keyed by chain or a single partition (one worker whatever the layout) vs keyed by
        # position shard (spread over the workers).
        serial = sum(worker.get(k, 0.0) for k in ("market_step", "market_rows", "store_insert"))
        spread = sum(worker.get(k, 0.0) for k in ("shard_step", "shard_rows"))
        emit(
            name,
            done.seconds,
            "s",
            layout=layout,
            process=process,
            steps={k: round(v, 3) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])},
            calls=profile.get("calls", {}),
            other_worker_seconds=round(done.seconds - sum(worker.values()), 3),
            chain_keyed_or_single_partition_seconds=round(serial, 3),
            shard_keyed_seconds=round(spread, 3),
            cpu_seconds=profile.get("cpu_seconds"),
            note="reader_read_range runs in the source's reader thread, beside the worker",
        )


def run(
    target_logs: int, rpc_url: str | None, deployment_file: str | None, rounds: int = 2
) -> None:
    if rpc_url and deployment_file:
        anvil = None
        deployment = Deployment.from_json(Path(deployment_file).read_text())
    else:
        anvil, deployment, _ = devnet_with_history(target_logs)
        rpc_url = anvil.rpc_url
    recording = Path(tempfile.mkdtemp(prefix="defimon-bench-replay-")) / "calls.jsonl.gz"
    try:
        head = block_number(rpc_url)
        # Live: anvil answers, on the same two cores as the flow.
        rates, reference = _layouts("backfill_workers_logs_per_second", rpc_url, deployment, head)
        _emit_speedup("backfill_workers_speedup", rates, (1, 2), "2 worker threads vs 1 worker")
        _emit_profile(
            "backfill_workers_profile_seconds",
            run_layout(rpc_url, deployment, head, 1, 1, profile=True),
            "1x1, steps wrapped with timers",
        )
        # Replayed: the node's answers recorded once (a 1x1 backfill through a recording
        # proxy), then served from memory by a process of its own, so anvil is not in the race.
        with Proxy(rpc_url) as proxy:
            recorded = run_layout(proxy.url, deployment, head, 1, 1)
        if recorded.held != reference:
            raise AssertionError(f"recorded run stored {recorded.held}, live {reference}")
        calls = proxy.recorder.save(recording)
        with Replay(recording) as replay:
            replayed, held = _layouts(
                "backfill_workers_replayed_logs_per_second",
                replay.url,
                deployment,
                head,
                replay,
                rounds=rounds,
            )
            if held != reference:
                raise AssertionError(f"replayed runs stored {held}, live {reference}")
            _emit_speedup(
                "backfill_workers_replayed_speedup",
                replayed,
                (2, 1),
                "2 processes vs 1 process, JSON-RPC replayed from a recording",
                rounds=rounds,
                recorded_calls=calls,
                recording_bytes=recording.stat().st_size,
            )
            _emit_profile(
                "backfill_workers_replayed_profile_seconds",
                run_layout(replay.url, deployment, head, 2, 1, profile=True),
                "2x1 replayed, steps wrapped with timers",
            )
            stats = replay.stats()
            if stats["missed"]:  # a run asked what the recorded one never asked
                raise AssertionError(f"the replay missed calls: {stats}")
    finally:
        if anvil is not None:
            anvil.stop()
        shutil.rmtree(recording.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logs", type=int, default=DEFAULT_LOGS, help="history size in logs")
    parser.add_argument("--rpc", default=None, help="use this devnet instead of a new one")
    parser.add_argument("--deployment", default=None, help="its deployment JSON")
    parser.add_argument(
        "--rounds", type=int, default=2, help="replayed runs of each layout, in alternating order"
    )
    # internal: one member process of a layout
    parser.add_argument("--member", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", default="", help=argparse.SUPPRESS)
    parser.add_argument("--head", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--process", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--workers-per-process", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--addresses", default="", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.member:
        _member(args)
        return
    configure("warning")
    run(args.logs, args.rpc, args.deployment, args.rounds)


if __name__ == "__main__":
    main()
