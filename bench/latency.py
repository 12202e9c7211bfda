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
from prometheus_client.parser import text_string_to_metric_families

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


SLOW_STAGE_SECONDS = 0.05  # a bucket bound of defimon_flow_stage_seconds


def emit_stages(base: str, **common: object) -> None:
    """Where the server's time went, per piece of work on the live path (its /metrics):
    calls, total, and the calls over 50 ms, the ones that can hold a block past 100 ms."""
    stages: dict[str, dict[str, float]] = {}
    text = httpx.get(base + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name != "defimon_flow_stage_seconds":
            continue
        for sample in family.samples:
            seen = stages.setdefault(sample.labels["stage"], {})
            if sample.name.endswith("_count"):
                seen["calls"] = sample.value
            elif sample.name.endswith("_sum"):
                seen["total"] = sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == (
                SLOW_STAGE_SECONDS
            ):
                seen["fast"] = sample.value
    for stage, seen in sorted(stages.items()):
        calls = int(seen.get("calls", 0))
        emit(
            "block_to_sse_stage_calls_over_50ms",
            calls - seen.get("fast", 0),
            "calls",
            stage=stage,
            calls=calls,
            total_ms=round(seen.get("total", 0) * 1000, 1),
            **common,
        )


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
        after_mined: list[float] = []
        missed = 0
        for _ in range(blocks):
            sent = time.perf_counter()
            block = simulator.swap(pool)
            mined = time.perf_counter()  # the receipt is in: the rest is defimon's
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
            after_mined.append((got - mined) * 1000)
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
        emit("block_to_sse_latency_p95", percentile(latencies, 95), "ms", **common)
        emit("block_to_sse_latency_p99", percentile(latencies, 99), "ms", **common)
        emit("block_to_sse_latency_max", max(latencies, default=float("nan")), "ms", **common)
        # A periodic stall (a snapshot, a flush, a garbage collection) shows as a share of
        # slow blocks that the percentiles below it hide.
        emit(
            "block_to_sse_blocks_over_100ms",
            sum(1 for v in latencies if v > 100),
            "blocks",
            **common,
        )
        # From the transaction's receipt to the client: without the bench's own JSON-RPC
        # (a slot0 read, the send, the receipt) and anvil's mining.
        emit("mined_to_sse_latency_p50", percentile(after_mined, 50), "ms", **common)
        emit("mined_to_sse_latency_p99", percentile(after_mined, 99), "ms", **common)
        emit_stages(base, **common)
    finally:
        stop.set()
        stop_server(server)
        anvil.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # 1,000 blocks (about a minute): enough for a stall every few seconds to show in the p99.
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--warmup-steps", type=int, default=15)
    args = parser.parse_args()
    configure("warning")
    run(args.blocks, args.warmup_steps)


if __name__ == "__main__":
    main()
