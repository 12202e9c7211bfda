"""A fast chain behind a slow link: anvil mining a block every 250 ms (Arbitrum's pace), read
through a real HTTP proxy adding 100 ms to every request. Live blocks are read pipelined
(several in flight, applied in order), so the flow keeps up: sampled while the markets trade,
the newest processed block stays within 5 blocks of the node's head.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Event
from pathlib import Path

from devnet.anvil import Anvil
from devnet.deploy import Deployment, deploy
from devnet.rpc import RpcClient
from devnet.simulator import MarketSimulator
from flows.endpoint import ChainEndpoint
from tests.fault_proxy import FaultProxy
from tests.integration.test_rpc_faults import FAST
from tests.support import block_number, live_server

BLOCK_TIME = 0.25
LATENCY = 0.1
SAMPLE_SECONDS = 20.0


def trade(rpc_url: str, deployment: Deployment, stop: Event) -> None:
    """The market's traders, in a process of their own (as on a real chain: their Python work
    does not share defimon's interpreter)."""
    simulator = MarketSimulator(rpc_url, deployment, seed=8)
    while not stop.is_set():
        simulator.step()


def test_a_250ms_chain_is_followed_within_5_blocks_at_100ms_round_trips(tmp_path: Path) -> None:
    # Deployed on an automining node (the deployment leaves automine on, which would stop
    # interval mining), then moved with its history into one mining every 250 ms.
    with Anvil() as deployer:
        deployment = deploy(deployer.rpc_url)
        with RpcClient(deployer.rpc_url) as rpc:
            state = rpc.call("anvil_dumpState", [])
    with Anvil(block_time=BLOCK_TIME) as anvil:
        with RpcClient(anvil.rpc_url) as rpc:
            assert rpc.call("anvil_loadState", [state]) is True
        simulator = MarketSimulator(anvil.rpc_url, deployment, seed=7)
        for _ in range(3):
            simulator.step()
        chain_id = deployment.chain_id
        with FaultProxy(anvil.rpc_url, fault_rate=0.0, latency=LATENCY) as proxy:
            endpoint = ChainEndpoint(deployment.to_chain_config(), proxy.http_url, rpc_options=FAST)
            with live_server(tmp_path / "data", [endpoint]) as server:
                server.wait_processed(chain_id, block_number(anvil.rpc_url), timeout=300)
                # Some activity while sampled, bounded in time. Spawned, not forked: this
                # process runs the server's threads.
                spawn = multiprocessing.get_context("spawn")
                trading = spawn.Event()
                trader = spawn.Process(target=trade, args=(anvil.rpc_url, deployment, trading))
                trader.start()
                # Warm-up: the blocks mined while the backfill finished and the first trades'
                # new wallets are read first (bounded); then the steady state is sampled.
                warm_until = time.monotonic() + 30
                while time.monotonic() < warm_until:
                    lag = (
                        block_number(anvil.rpc_url)
                        - server.runtime.status.chain(chain_id).processed
                    )
                    if lag <= 2:
                        break
                    time.sleep(0.05)
                lags: list[int] = []
                start_block = block_number(anvil.rpc_url)
                deadline = time.monotonic() + SAMPLE_SECONDS
                try:
                    while time.monotonic() < deadline:
                        head = block_number(anvil.rpc_url)  # the node itself, not the proxy
                        processed = server.runtime.status.chain(chain_id).processed
                        lags.append(head - processed)
                        time.sleep(BLOCK_TIME)
                finally:
                    trading.set()
                    trader.join(30)
                    if trader.is_alive():
                        trader.kill()
                blocks = block_number(anvil.rpc_url) - start_block
    series = list(lags)
    lags.sort()
    print(
        f"{blocks} blocks in {SAMPLE_SECONDS:.0f} s through {LATENCY * 1000:.0f} ms; lag samples "
        f"{len(lags)}: median {lags[len(lags) // 2]}, p95 {lags[int(len(lags) * 0.95)]}, "
        f"max {lags[-1]} (in order: {series}); {proxy.requests} requests: {dict(proxy.methods)}"
    )
    assert blocks >= SAMPLE_SECONDS / BLOCK_TIME * 0.8, "the chain mined at its pace"
    assert max(lags) < 5, lags
