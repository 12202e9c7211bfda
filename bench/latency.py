"""Block-to-SSE latency: from sending a swap that anvil mines into a block to an SSE client
holding that block's `position` event.

defimon runs as a user would run it (`defimon run` in its own process, WebSocket heads); this
process drives the chain and reads the stream. The clock starts before the transaction is
sent, so anvil's mining time is included: an upper bound on block-to-browser.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from httpx_sse import connect_sse

from bench.common import emit, percentile
from defimon.logs import configure
from devnet.anvil import Anvil, free_port
from devnet.deploy import Deployment, deploy
from devnet.simulator import MarketSimulator


def _reader(url: str, arrivals: queue.Queue[tuple[int, float]], stop: threading.Event) -> None:
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(5.0, read=None)) as client,
            connect_sse(client, "GET", url) as source,
        ):
            for event in source.iter_sse():
                if stop.is_set():
                    return
                if event.event == "position":
                    arrivals.put((event.json()["block_number"], time.perf_counter()))
    except httpx.HTTPError:
        if not stop.is_set():  # the server going away at the end is expected
            raise


def serve(
    anvil: Anvil, deployment: Deployment, data_dir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """`defimon run` on the devnet in its own process (as a user runs it), once ready."""
    config = data_dir / "chain.toml"
    config.write_text(deployment.to_chain_config().to_toml())
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "defimon.cli",
            "--log-level",
            "warning",
            "run",
            "--rpc",
            anvil.rpc_url,
            "--ws",
            anvil.ws_url,
            "--chain-config",
            str(config),
            "--port",
            str(port),
            "--data-dir",
            str(data_dir / "data"),
        ],
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            stop_server(server)
            raise RuntimeError("defimon did not become ready")
        time.sleep(0.1)


def stop_server(server: subprocess.Popen[bytes] | None) -> None:
    if server is not None and server.poll() is None:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def run(blocks: int, warmup_steps: int) -> None:
    anvil = Anvil().start()
    data_dir = Path(tempfile.mkdtemp(prefix="defimon-bench-"))
    server: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    try:
        deployment = deploy(anvil.rpc_url)
        simulator = MarketSimulator(anvil.rpc_url, deployment, seed=3)
        for _ in range(warmup_steps):
            simulator.step()
        server, base = serve(anvil, deployment, data_dir)

        pool = deployment.pools[0]
        owners = sorted({o for t, o in simulator.all_positions().items()})
        arrivals: queue.Queue[tuple[int, float]] = queue.Queue()
        params = "&".join(f"owner={o}" for o in owners)
        thread = threading.Thread(
            target=_reader, args=(f"{base}/v1/stream?{params}", arrivals, stop), daemon=True
        )
        thread.start()
        time.sleep(0.5)  # subscribed before the first block
        latencies: list[float] = []
        missed = 0
        for _ in range(blocks):
            sent = time.perf_counter()
            block = simulator.swap(pool)
            got = None
            wait_until = time.perf_counter() + 5
            while got is None and time.perf_counter() < wait_until:
                try:
                    number, at = arrivals.get(timeout=0.5)
                except queue.Empty:
                    continue
                if number == block:
                    got = at
                    # The block's other events (other owners' positions) follow; skip them.
            if got is None:
                missed += 1
                continue
            latencies.append((got - sent) * 1000)
            while not arrivals.empty():
                arrivals.get_nowait()
        common = {
            "blocks": len(latencies),
            "missed": missed,
            "transport": "websocket newHeads",
            "server": "defimon run (separate process)",
            "store": "chdb",
        }
        emit("block_to_sse_latency_p50", percentile(latencies, 50), "ms", **common)
        emit("block_to_sse_latency_p99", percentile(latencies, 99), "ms", **common)
    finally:
        stop.set()
        stop_server(server)
        anvil.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--warmup-steps", type=int, default=15)
    args = parser.parse_args()
    configure("warning")
    run(args.blocks, args.warmup_steps)


if __name__ == "__main__":
    main()
