"""SSE fan-out: 2,000 concurrent stream clients, delivery latency per client and block.

`defimon run` serves a devnet in its own process (WebSocket heads). This process opens the
clients (asyncio, one connection each, unfiltered `/v1/stream`), then sends swaps one block at
a time; for every client and block, the latency runs from sending the swap to that client
holding the block's first `position` event. p50 and p99 over all (client, block) pairs, and
how many deliveries were missed. Client and server share the machine's cores, so this is an
upper bound.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.common import emit, percentile
from bench.latency import serve, stop_server
from defimon.logs import configure
from devnet.anvil import Anvil
from devnet.deploy import deploy
from devnet.simulator import MarketSimulator

CLIENTS = 2000
BLOCKS = 30


async def _client(base: str, arrivals: dict[int, float], connected: list[int]) -> None:
    limits = httpx.Limits(max_connections=1)
    timeout = httpx.Timeout(30.0, read=None)
    async with (
        httpx.AsyncClient(limits=limits, timeout=timeout) as client,
        client.stream("GET", base + "/v1/stream") as response,
    ):
        response.raise_for_status()
        connected.append(1)
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "position":
                block = orjson.loads(line[5:])["block_number"]
                arrivals.setdefault(block, time.perf_counter())
            elif not line:
                event = ""


async def _drive(base: str, simulator: MarketSimulator, clients: int, blocks: int) -> None:
    arrivals: list[dict[int, float]] = [{} for _ in range(clients)]
    connected: list[int] = []
    tasks = [asyncio.create_task(_client(base, arrivals[i], connected)) for i in range(clients)]
    deadline = time.monotonic() + 120
    while len(connected) < clients:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(connected)} of {clients} clients connected")
        await asyncio.sleep(0.1)
    pool = simulator.deployment.pools[0]
    sent: dict[int, float] = {}
    for _ in range(blocks):
        started = time.perf_counter()
        block = await asyncio.to_thread(simulator.swap, pool)
        sent[block] = started
        wait_until = time.perf_counter() + 10
        while time.perf_counter() < wait_until and sum(block in a for a in arrivals) < clients:
            await asyncio.sleep(0.005)
    latencies = [
        (a[block] - at) * 1000 for a in arrivals for block, at in sent.items() if block in a
    ]
    missed = clients * len(sent) - len(latencies)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    common = {
        "clients": clients,
        "blocks": len(sent),
        "deliveries": len(latencies),
        "missed": missed,
        "server": "defimon run (separate process)",
    }
    emit("sse_fanout_delivery_p50", percentile(latencies, 50), "ms", **common)
    emit("sse_fanout_delivery_p99", percentile(latencies, 99), "ms", **common)


def run(clients: int = CLIENTS, blocks: int = BLOCKS) -> None:
    anvil = Anvil().start()
    data_dir = Path(tempfile.mkdtemp(prefix="defimon-bench-sse-"))
    server = None
    try:
        deployment = deploy(anvil.rpc_url)
        simulator = MarketSimulator(anvil.rpc_url, deployment, seed=3)
        for _ in range(10):
            simulator.step()
        server, base = serve(anvil, deployment, data_dir)
        asyncio.run(_drive(base, simulator, clients, blocks))
    finally:
        stop_server(server)
        anvil.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--blocks", type=int, default=BLOCKS)
    args = parser.parse_args()
    configure("warning")
    run(args.clients, args.blocks)


if __name__ == "__main__":
    main()
