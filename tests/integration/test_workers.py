"""Several Bytewax workers give exactly what one gives: the market stage is keyed by chain and
positions and accounts by shard, so the work splits without changing a row; a reorg's rewind
and retraction cross the workers too."""

from __future__ import annotations

import time
from pathlib import Path

from defimon.runtime import Runtime
from devnet.anvil import free_port
from flows.rows import COLUMNS
from ports.settings import Settings
from tests.conftest import Devnet
from tests.integration.test_reorg import Market, wait_reorgs
from tests.support import LiveServer, block_number, chain_tables, live_server, rpc


def test_two_workers_store_what_one_worker_stores(devnet: Devnet, tmp_path: Path) -> None:
    chain_id = devnet.deployment.chain_id
    market = Market.on(devnet, seed=9)
    for _ in range(3):
        market.round()
    runtime = Runtime(Settings(data_dir=tmp_path / "two", epoch_seconds=0.5), [devnet.endpoint()])
    server = LiveServer(runtime, free_port(), start_flow=False).start()
    try:
        runtime.start_flow(workers_per_process=2)
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        for _ in range(3):
            market.round()
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain_id, head)
        rpc(devnet.rpc_url, "anvil_reorg", [6, []])  # mid-scenario, across both workers
        market = Market.on(devnet, seed=77)
        wait_reorgs(server, 1)
        for _ in range(2):
            market.round()
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain_id, head)
        time.sleep(0.2)
        two = chain_tables(runtime.store)
    finally:
        server.stop()  # stops the flow and closes the store

    with live_server(tmp_path / "one", [devnet.endpoint()]) as one_server:
        one_server.wait_processed(chain_id, head)
        one = chain_tables(one_server.runtime.store)

    for table in COLUMNS:
        assert two[table] == one[table], f"{table}: 2 workers differ from 1"
    assert two["defimon.position_versions"] and two["defimon.account_versions"]
