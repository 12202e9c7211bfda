"""SSE fan-out: 2,000 (or `--clients`, 10,000 in `make bench`) concurrent stream clients,
delivery latency per client and block.

`defimon run` serves a devnet in its own process (WebSocket heads). The clients (one
connection each, unfiltered `/v1/stream`) live in load-generator processes of their own
(bench/sse_load.py, raw HTTP/1.1), so their cost lands outside the server's and this driver's
interpreters. This process sends swaps one block at a time, the next once every client holds
the block (or after 10 s); for every client and block, the latency runs from sending the swap
to that client holding the block's first `position` event. p50 and p99 over all (client,
block) pairs, and how many deliveries were missed. Clients, server and anvil share the
machine's cores, so this is an upper bound; the CPU seconds each side spent while the blocks
were delivered (from /proc) say where the load generators' own cost lands.

`--api-processes 1 2` measures, back to back in one run, `defimon api --processes N` behind one
port for each N instead (with `defimon flow` serving its store over HTTP and a nats-server
between them, as scale-out runs): each N on a fresh flow over the same chain.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import emit, percentile
from bench.latency import serve, stop_server
from defimon.logs import configure
from devnet.anvil import Anvil, free_port
from devnet.deploy import Deployment, deploy
from devnet.simulator import MarketSimulator
from tests.nats_server import NatsServer

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


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (a launcher and its API processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo += [int(c) for c in children.read().split()]
    return found


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU the processes have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _drive(
    base: str,
    simulator: MarketSimulator,
    clients: int,
    blocks: int,
    processes: int,
    sides: dict[str, Callable[[], list[int]]],
) -> tuple[list[float], int, dict[str, float]]:
    """Latencies (ms), missed deliveries, and the CPU seconds each side (`sides`: name -> its
    pids; `load` is added) used while the blocks were delivered."""
    loads = _start_load(base + "/v1/stream", clients, processes)
    sides = {**sides, "load": lambda: [load.pid for load in loads]}
    messages: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
    for load in loads:
        threading.Thread(target=_follow, args=(load, messages), daemon=True).start()
    try:
        for _ in loads:
            _next(messages, 240)  # `connected`: every client of one generator holds a stream
        pool = simulator.deployment.pools[0]
        cpu_before = {side: _cpu_seconds(pids()) for side, pids in sides.items()}
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
        cpu = {
            side: round(_cpu_seconds(pids()) - cpu_before[side], 2) for side, pids in sides.items()
        }
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
    return latencies, clients * len(sent) - len(latencies), cpu


def _emit(
    latencies: list[float], missed: int, cpu: dict[str, float], clients: int, **params: Any
) -> None:
    common = {
        "clients": clients,
        "blocks": (len(latencies) + missed) // clients,
        "deliveries": len(latencies),
        "missed": missed,
        **params,
        # Everything runs on this machine: the load generators' CPU is taken from the same
        # cores the server delivers with.
        "cores": os.cpu_count(),
        "cpu_seconds_while_delivering": cpu,
        "load_shares_server_cores": True,
    }
    emit("sse_fanout_delivery_p50", percentile(latencies, 50), "ms", **common)
    emit("sse_fanout_delivery_p99", percentile(latencies, 99), "ms", **common)


def _wait_ready(base: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 300
    said = "no answer"
    while True:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(base + "/readyz", timeout=2)
            if answer.status_code == 200:
                return
            said = answer.text
        exited = [p.args for p in processes if p.poll() is not None]
        if time.monotonic() > deadline or exited:
            raise RuntimeError(f"defimon did not become ready: {said}; exited: {exited}")
        time.sleep(0.1)


def _wait_listening(port: int, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise RuntimeError(f"nothing listens on port {port}")
        time.sleep(0.1)


@contextlib.contextmanager
def scale_out(
    anvil: Anvil, deployment: Deployment, data_dir: Path, api_processes: int
) -> Iterator[tuple[str, dict[str, Callable[[], list[int]]]]]:
    """nats-server, `defimon flow` (its chDB store over HTTP) and `defimon api --processes N`,
    each in processes of their own; the API's URL and the pids of each side."""
    data_dir.mkdir(parents=True)
    config = data_dir / "chain.toml"
    config.write_text(deployment.to_chain_config().to_toml())
    chain = ["--rpc", anvil.rpc_url, "--ws", anvil.ws_url, "--chain-config", str(config)]
    nats = NatsServer(data_dir / "nats").start()
    password = "bench-store"
    store_port, port = free_port(), free_port()
    env = {**os.environ, "DEFIMON_NATS_URL": nats.url, "DEFIMON_STORE_HTTP_PASSWORD": password}
    cli = [sys.executable, "-m", "defimon.cli", "--log-level", "warning"]
    started: list[subprocess.Popen[bytes]] = []
    try:
        started.append(
            subprocess.Popen(
                [
                    *cli,
                    "flow",
                    *chain,
                    "--data-dir",
                    str(data_dir / "flow"),
                    "--store-http-port",
                    str(store_port),
                ],
                env=env,
                start_new_session=True,
            )
        )
        store = f"http://defimon:{password}@127.0.0.1:{store_port}"
        _wait_listening(store_port, started)  # the API opens the store as it starts
        started.append(
            subprocess.Popen(
                [
                    *cli,
                    "api",
                    *chain,
                    "--port",
                    str(port),
                    "--data-dir",
                    str(data_dir / "api"),
                    "--processes",
                    str(api_processes),
                ],
                env={**env, "DEFIMON_CLICKHOUSE_URL": store},
                start_new_session=True,
            )
        )
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, started)
        flow, api = started
        assert nats.process is not None
        nats_pid = nats.process.pid
        yield base, {"api": lambda: _tree(api.pid), "flow_and_nats": lambda: [flow.pid, nats_pid]}
    finally:
        for process in reversed(started):
            stop_server(process)
        nats.stop()


def run(
    clients: int = CLIENTS,
    blocks: int = BLOCKS,
    processes: int = LOAD_PROCESSES,
    api_processes: list[int] | None = None,
) -> None:
    anvil = Anvil().start()
    data_dir = Path(tempfile.mkdtemp(prefix="defimon-bench-sse-"))
    server = None
    load = f"{processes} load-generator processes (bench/sse_load.py, raw HTTP/1.1)"
    try:
        deployment = deploy(anvil.rpc_url)
        simulator = MarketSimulator(anvil.rpc_url, deployment, seed=3)
        for _ in range(10):
            simulator.step()
        if not api_processes:
            server, base = serve(anvil, deployment, data_dir)
            pid = server.pid
            found = _drive(base, simulator, clients, blocks, processes, {"server": lambda: [pid]})
            _emit(*found, clients, server="defimon run (separate process)", load=load)
        for count in api_processes or ():
            with scale_out(anvil, deployment, data_dir / f"api{count}", count) as (base, sides):
                found = _drive(base, simulator, clients, blocks, processes, sides)
            _emit(
                *found,
                clients,
                api_processes=count,
                server=f"defimon api --processes {count} (one port), defimon flow, nats-server",
                load=load,
            )
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
    parser.add_argument(
        "--api-processes",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="measure `defimon api --processes N` (with defimon flow and NATS) for each N, back "
        "to back, instead of `defimon run`",
    )
    args = parser.parse_args()
    configure("warning")
    run(args.clients, args.blocks, args.load_processes, args.api_processes)


if __name__ == "__main__":
    main()
