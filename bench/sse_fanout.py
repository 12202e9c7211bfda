"""SSE fan-out: 2,000 (or `--clients`, 10,000 in `make bench`) concurrent stream clients,
delivery latency per client and block.

`defimon run` serves a devnet in its own process (WebSocket heads). The clients (one
connection each, unfiltered `/v1/stream`) live in load-generator processes of their own
(bench/sse_load.py, raw HTTP/1.1), so their cost lands outside the server's and this driver's
interpreters. This process sends swaps one block at a time, the next once every client holds
the block (or after 10 s); for every client and block, the latency runs from sending the swap
to that client holding the block's first `position` event. p50 and p99 over all (client,
block) pairs, and how many deliveries were missed. Clients, server and anvil share the
machine's cores, so this is an upper bound.
"""

from __future__ import annotations

import argparse
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import emit, percentile
from bench.latency import serve, stop_server
from defimon.logs import configure
from devnet.anvil import Anvil
from devnet.deploy import deploy
from devnet.simulator import MarketSimulator

CLIENTS = 2000
BLOCKS = 30
LOAD_PROCESSES = 2


def _start_load(url: str, clients: int, processes: int) -> list[subprocess.Popen[bytes]]:
    """`processes` load generators (bench/sse_load.py) sharing `clients` between them."""
    share, extra = divmod(clients, processes)
    loads, first = [], 0
    for p in range(processes):
        count = share + (1 if p < extra else 0)
        loads.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.sse_load",
                    "--url",
                    url,
                    "--clients",
                    str(count),
                    "--first",
                    str(first),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        )
        first += count
    return loads


def _follow(load: subprocess.Popen[bytes], into: queue.Queue[tuple[int, dict[str, Any]]]) -> None:
    """A load generator's messages, onto the driver's queue (a thread per generator)."""
    assert load.stdout is not None
    for line in load.stdout:
        found = orjson.loads(line)
        into.put((load.pid, found))
        if "arrivals" in found:
            return  # its last word
    into.put((load.pid, {"error": f"exited ({load.wait()}) before reporting"}))


def _next(messages: queue.Queue[tuple[int, dict[str, Any]]], timeout: float) -> dict[str, Any]:
    pid, found = messages.get(timeout=timeout)
    if "error" in found:
        raise RuntimeError(f"load generator {pid}: {found['error']}")
    return found


def _drive(
    base: str, simulator: MarketSimulator, clients: int, blocks: int, processes: int
) -> None:
    loads = _start_load(base + "/v1/stream", clients, processes)
    messages: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
    for load in loads:
        threading.Thread(target=_follow, args=(load, messages), daemon=True).start()
    try:
        for _ in loads:
            _next(messages, 240)  # `connected`: every client of one generator holds a stream
        pool = simulator.deployment.pools[0]
        sent: dict[int, float] = {}
        for _ in range(blocks):
            started = time.monotonic()
            block = simulator.swap(pool)
            sent[block] = started
            # Each block alone: the next is sent once every client holds this one (or 10 s).
            done, wait_until = 0, time.monotonic() + 10
            while done < len(loads) and time.monotonic() < wait_until:
                try:
                    if (
                        _next(messages, max(0.0, wait_until - time.monotonic())).get("block")
                        == block
                    ):
                        done += 1
                except queue.Empty:
                    break
        arrivals: list[tuple[int, int, float]] = []  # (client, block, when)
        for load in loads:
            assert load.stdin is not None
            load.stdin.write(b"stop\n")
            load.stdin.flush()
        reported = 0
        while reported < len(loads):
            found = _next(messages, 60)
            if "arrivals" in found:
                arrivals += [(int(c), int(b), float(t)) for c, b, t in found["arrivals"]]
                reported += 1
    finally:
        for load in loads:
            if load.poll() is None:
                load.kill()
            load.wait()
    latencies = [(at - sent[block]) * 1000 for _client, block, at in arrivals if block in sent]
    missed = clients * len(sent) - len(latencies)
    common = {
        "clients": clients,
        "blocks": len(sent),
        "deliveries": len(latencies),
        "missed": missed,
        "server": "defimon run (separate process)",
        "load": f"{processes} load-generator processes (bench/sse_load.py, raw HTTP/1.1)",
    }
    emit("sse_fanout_delivery_p50", percentile(latencies, 50), "ms", **common)
    emit("sse_fanout_delivery_p99", percentile(latencies, 99), "ms", **common)


def run(clients: int = CLIENTS, blocks: int = BLOCKS, processes: int = LOAD_PROCESSES) -> None:
    anvil = Anvil().start()
    data_dir = Path(tempfile.mkdtemp(prefix="defimon-bench-sse-"))
    server = None
    try:
        deployment = deploy(anvil.rpc_url)
        simulator = MarketSimulator(anvil.rpc_url, deployment, seed=3)
        for _ in range(10):
            simulator.step()
        server, base = serve(anvil, deployment, data_dir)
        _drive(base, simulator, clients, blocks, processes)
    finally:
        stop_server(server)
        anvil.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--blocks", type=int, default=BLOCKS)
    parser.add_argument(
        "--load-processes", type=int, default=LOAD_PROCESSES, help="load-generator processes"
    )
    args = parser.parse_args()
    configure("warning")
    run(args.clients, args.blocks, args.load_processes)


if __name__ == "__main__":
    main()
