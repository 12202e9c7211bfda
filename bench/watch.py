"""Wallet watch mode against full-protocol mode: time to show a wallet, and RPC cost.

A devnet market (Uniswap V3 and Aave V3) runs `--rounds` rounds first: history defimon has
not read. Then, each in its own process as a user runs it (`defimon run`, WebSocket heads,
HTTP JSON-RPC through a counting proxy):

- watch mode (`--watch <wallet>`): seconds from starting the process until
  `/v1/portfolio/<wallet>` shows the wallet's positions and Aave account, and the JSON-RPC
  requests and calls (a batch counts one request, and one call per item) that took;
- full-protocol mode: seconds and calls until the head is processed (the backfill);
- both: calls per block while following `--follow` more market blocks.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import emit
from bench.latency import stop_server
from devnet.anvil import Anvil, free_port
from devnet.deploy import Deployment, deploy
from devnet.lending import LendingSimulator
from devnet.simulator import MarketSimulator


class CountingProxy:
    """A JSON-RPC forwarder that counts requests and calls by method."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.lock = threading.Lock()
        self.requests = 0
        self.calls: Counter[str] = Counter()
        proxy = self
        client = httpx.Client(timeout=60)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                payload = orjson.loads(body)
                items = payload if isinstance(payload, list) else [payload]
                with proxy.lock:
                    proxy.requests += 1
                    proxy.calls.update(str(i.get("method")) for i in items)
                answer = client.post(
                    proxy.upstream, content=body, headers={"content-type": "application/json"}
                )
                self.send_response(answer.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> tuple[int, Counter[str]]:
        with self.lock:
            return self.requests, Counter(self.calls)

    def close(self) -> None:
        self.server.shutdown()


def spawn(
    rpc: str, ws: str, config: Path, data_dir: Path, watch: list[str]
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, "-m", "defimon.cli", "--log-level", "warning", "run"]
    args += ["--rpc", rpc, "--ws", ws, "--chain-config", str(config)]
    args += ["--port", str(port), "--data-dir", str(data_dir)]
    for wallet in watch:
        args += ["--watch", wallet]
    return subprocess.Popen(args, start_new_session=True), f"http://127.0.0.1:{port}"


def block_number(rpc: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    return int(httpx.post(rpc, json=body, timeout=30).json()["result"], 16)


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def processed(base: str) -> int:
    response = get(base + "/readyz")  # 503 until live, with the same body
    if response is None:
        return -1
    chains = response.json().get("chains", [])
    return int(chains[0].get("processed") or -1) if chains else -1


def wait_for(check: Any, server: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("defimon did not get there")
        time.sleep(0.02)


def follow(
    proxy: CountingProxy,
    base: str,
    server: subprocess.Popen[bytes],
    market: MarketSimulator,
    blocks: int,
) -> tuple[float, float]:
    """Requests and calls per block while `blocks` swaps are mined and followed."""
    requests0, calls0 = proxy.snapshot()
    last = 0
    for _ in range(blocks):
        last = market.swap() or last
    wait_for(lambda: processed(base) >= last, server)
    requests1, calls1 = proxy.snapshot()
    return (requests1 - requests0) / blocks, (sum(calls1.values()) - sum(calls0.values())) / blocks


def run(rounds: int, follow_blocks: int) -> None:
    anvil = Anvil().start()
    work = Path(tempfile.mkdtemp(prefix="defimon-bench-watch-"))
    proxy = CountingProxy(anvil.rpc_url)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        deployment: Deployment = deploy(anvil.rpc_url)
        market = MarketSimulator(anvil.rpc_url, deployment, seed=7)
        lending = LendingSimulator(anvil.rpc_url, deployment, seed=11)
        for _ in range(rounds):
            market.step()
            lending.tick()
        head = block_number(anvil.rpc_url)
        owners = Counter(market.all_positions().values())
        accounts = set(lending.accounts())
        wallet = max((w for w in owners if w in accounts), key=lambda w: owners[w])
        config = work / "chain.toml"
        config.write_text(deployment.to_chain_config().to_toml())
        params = {"rounds": rounds, "history_blocks": head, "positions": owners[wallet]}

        # Watch mode.
        requests0, calls0 = proxy.snapshot()
        started = time.perf_counter()
        server, base = spawn(proxy.url, anvil.ws_url, config, work / "watch", [wallet])
        servers.append(server)

        def shown() -> bool:
            response = get(f"{base}/v1/portfolio/{wallet}")
            if response is None or response.status_code != 200:
                return False
            body = response.json()
            return len(body["positions"]) >= owners[wallet] and bool(body["lending"])

        wait_for(shown, server)
        seconds = time.perf_counter() - started
        requests1, calls1 = proxy.snapshot()
        calls = sum(calls1.values()) - sum(calls0.values())
        emit("watch_time_to_show", seconds, "s", mode="watch", **params)
        emit("watch_rpc_to_show", calls, "calls", requests=requests1 - requests0, **params)
        per_request, per_call = follow(proxy, base, server, market, follow_blocks)
        emit("watch_rpc_per_block", per_call, "calls", requests=round(per_request, 2), **params)
        stop_server(server)

        # Full-protocol mode over the same chain.
        requests0, calls0 = proxy.snapshot()
        started = time.perf_counter()
        now = block_number(anvil.rpc_url)
        server, base = spawn(proxy.url, anvil.ws_url, config, work / "full", [])
        servers.append(server)
        wait_for(lambda: processed(base) >= now, server)
        seconds = time.perf_counter() - started
        requests1, calls1 = proxy.snapshot()
        calls = sum(calls1.values()) - sum(calls0.values())
        emit("full_time_to_head", seconds, "s", mode="full", **params)
        emit("full_rpc_to_head", calls, "calls", requests=requests1 - requests0, **params)
        per_request, per_call = follow(proxy, base, server, market, follow_blocks)
        emit("full_rpc_per_block", per_call, "calls", requests=round(per_request, 2), **params)
    finally:
        for server in servers:
            stop_server(server)
        proxy.close()
        anvil.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20, help="market rounds before starting")
    parser.add_argument("--follow", type=int, default=30, help="blocks followed after")
    args = parser.parse_args()
    run(args.rounds, args.follow)


if __name__ == "__main__":
    main()
