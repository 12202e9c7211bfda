"""Reorgs on a real anvil, mid-scenario: the final store and the API equal a fresh run on the
canonical chain alone, and stream clients see each retraction.

Two ways to reorganise, at depths from 1 to 64 blocks (the chain config's finality depth):
`anvil_reorg` (replaces the last N blocks, often at the same height, which no new head
announces) and `evm_snapshot`/`evm_revert` followed by a different replacement branch (other
transactions, from simulators with another seed). A reorg deeper than the finality depth stops
the flow with a clear error instead of diverging.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from devnet.lending import LendingSimulator
from devnet.simulator import MarketSimulator
from flows.endpoint import ChainEndpoint
from flows.rows import COLUMNS
from tests.conftest import Devnet
from tests.support import (
    LiveServer,
    block_number,
    chain_tables,
    live_server,
    rpc,
    stream_reader,
)

# (method, depth): every depth from the smallest to the finality depth, both methods.
REORGS = [
    ("anvil_reorg", 1),
    ("revert", 2),
    ("anvil_reorg", 5),
    ("revert", 9),
    ("anvil_reorg", 17),
    ("revert", 33),
    ("anvil_reorg", 64),
    ("revert", 64),
]
FINALITY_DEPTH = 64


@dataclasses.dataclass
class Market:
    """The simulators; rebuilt from the chain after a reorg (theirs was the orphaned view)."""

    uniswap: MarketSimulator
    lending: LendingSimulator

    @classmethod
    def on(cls, devnet: Devnet, seed: int) -> Market:
        lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=seed)
        lending._bootstrapped = True  # the markets are funded on chain already
        return cls(MarketSimulator(devnet.rpc_url, devnet.deployment, seed=seed), lending)

    def round(self) -> None:
        self.uniswap.step()
        self.lending.tick()

    def mine(self, blocks: int) -> int:
        """About `blocks` blocks of activity (lending rounds, then single swaps): how many."""
        mined = 0
        while blocks - mined > 14:
            mined += len(self.lending.tick())
        while mined < blocks:
            self.uniswap.swap()
            mined += 1
        return mined


def api_answers(server: LiveServer, wallets: list[str], blocks: list[int]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for wallet in wallets:
        for at in [None, *blocks]:
            params = {} if at is None else {"at": at}
            for path in (f"/v1/portfolio/{wallet}", "/v1/positions"):
                query = dict(params, owner=wallet) if path == "/v1/positions" else params
                response = server.get(path, **query)
                assert response.status_code == 200, response.text
                answers[f"{path}?{sorted(query.items())}"] = response.json()
    return answers


def wait_reorgs(server: LiveServer, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while server.runtime.status.reorgs < count:
        assert not server.runtime.status.error, server.runtime.status.error
        assert time.monotonic() < deadline, f"reorg {count} not handled"
        time.sleep(0.05)


def test_reorgs_at_every_depth_end_equal_to_the_canonical_chain(
    devnet: Devnet, tmp_path: Path
) -> None:
    chain_id = devnet.deployment.chain_id
    config = dataclasses.replace(devnet.deployment.to_chain_config(), finality_depth=FINALITY_DEPTH)
    endpoint = ChainEndpoint(config, devnet.rpc_url, devnet.anvil.ws_url)
    market = Market.on(devnet, seed=3)
    for _ in range(3):
        market.round()
    expected: list[tuple[int, int]] = []
    reorg_events: list[dict[str, Any]] = []
    stop = threading.Event()
    with live_server(tmp_path / "reorged", [endpoint], epoch_seconds=0.5) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        stream_reader(f"{server.url}/v1/stream", ("reorg",), reorg_events, stop)
        try:
            for n, (method, depth) in enumerate(REORGS, start=1):
                market.round()
                if method == "revert":
                    snapshot = rpc(devnet.rpc_url, "evm_snapshot", [])
                    fork = block_number(devnet.rpc_url) + 1
                    market.mine(depth)
                    old_head = block_number(devnet.rpc_url)
                    server.wait_processed(chain_id, old_head)
                    assert rpc(devnet.rpc_url, "evm_revert", [snapshot]) is True
                    market = Market.on(devnet, seed=100 + n)  # another branch
                    market.round()
                else:
                    market.mine(depth)
                    old_head = block_number(devnet.rpc_url)
                    server.wait_processed(chain_id, old_head)
                    rpc(devnet.rpc_url, "anvil_reorg", [depth, []])
                    fork = old_head - depth + 1
                    market = Market.on(devnet, seed=100 + n)
                expected.append((fork, old_head))
                wait_reorgs(server, n)
                market.round()  # the scenario goes on over the new branch
                server.wait_processed(chain_id, block_number(devnet.rpc_url))
            head = block_number(devnet.rpc_url)
            server.wait_processed(chain_id, head)
            deadline = time.monotonic() + 10
            while len(reorg_events) < len(REORGS) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
        wallets = sorted(set(market.uniswap.all_positions().values()) | set(market.lending.users))
        reorged = chain_tables(server.runtime.store)
        # Past blocks with logs (a backfill stores no empty blocks, so it cannot name their
        # hash and time), spread over the scenario, most of them rewritten by a reorg.
        with_logs = sorted(row[1] for row in reorged["defimon.blocks"])
        history = with_logs[:: max(len(with_logs) // 8, 1)]
        reorged_answers = api_answers(server, wallets, history)

    # SSE clients saw every retraction, naming the orphaned blocks.
    assert [(e["retracted_from"], e["retracted_to"]) for e in reorg_events] == expected
    assert all(e["chain_id"] == chain_id for e in reorg_events)
    assert max(e["depth"] for e in reorg_events) == FINALITY_DEPTH

    with live_server(tmp_path / "canonical", [endpoint]) as server:
        server.wait_processed(chain_id, head)
        canonical_answers = api_answers(server, wallets, history)
        canonical = chain_tables(server.runtime.store)

    for table in COLUMNS:
        assert reorged[table] == canonical[table], f"{table} differs from the canonical run"
    assert reorged["defimon.position_versions"] and reorged["defimon.account_versions"]
    assert reorged_answers == canonical_answers


def test_a_reorg_deeper_than_the_finality_depth_stops_the_flow(
    devnet: Devnet, tmp_path: Path
) -> None:
    chain_id = devnet.deployment.chain_id
    config = dataclasses.replace(devnet.deployment.to_chain_config(), finality_depth=4)
    endpoint = ChainEndpoint(config, devnet.rpc_url, devnet.anvil.ws_url)
    devnet.simulator.step()  # liquidity to swap against
    with live_server(tmp_path / "deep", [endpoint]) as server:
        for _ in range(8):
            devnet.simulator.swap()
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain_id, head)
        before = server.get("/v1/positions").json()
        rpc(devnet.rpc_url, "anvil_reorg", [7, []])
        devnet.simulator.swap()
        deadline = time.monotonic() + 30
        while not server.runtime.status.error:
            assert time.monotonic() < deadline, "the flow should stop"
            time.sleep(0.05)
        assert "ReorgTooDeep" in server.runtime.status.error
        assert "finality_depth" in server.runtime.status.error
        health = server.get("/healthz")
        assert health.status_code == 503, health.text
        assert "reorganised" in health.text
        # It stopped rather than diverge: the store still shows the last block it trusted.
        assert server.get("/v1/positions").json() == before
        assert server.runtime.status.chain(chain_id).processed == head


@pytest.mark.parametrize("depth", [3])
def test_a_reorg_while_stopped_is_found_on_restart(
    devnet: Devnet, tmp_path: Path, depth: int
) -> None:
    chain_id = devnet.deployment.chain_id
    endpoint = devnet.endpoint()
    devnet.simulator.step()
    for _ in range(6):
        devnet.simulator.swap()
    with live_server(tmp_path / "data", [endpoint], epoch_seconds=0.2) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        time.sleep(0.5)  # an epoch passes: the recent hashes are in the snapshot
    old_head = block_number(devnet.rpc_url)
    rpc(devnet.rpc_url, "anvil_reorg", [depth, []])
    with live_server(tmp_path / "data", [endpoint], epoch_seconds=0.2) as server:
        wait_reorgs(server, 1)
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        hashes = dict(
            server.runtime.store.rows(
                "SELECT number, hash FROM defimon.blocks FINAL WHERE chain_id = {c:UInt64}",
                {"c": chain_id},
            )
        )
    for number in range(old_head - depth + 1, old_head + 1):
        canonical = rpc(devnet.rpc_url, "eth_getBlockByNumber", [hex(number), False])["hash"]
        assert hashes.get(number) in (None, canonical)
