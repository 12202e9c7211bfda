"""Aave V3 accounts equal `Pool.getUserAccountData` at every block, to the wei.

The real Aave V3 (v3.0.2) market runs on anvil beside Uniswap; a seeded lending market
supplies, borrows, repays, withdraws, switches eMode, moves prices (shocks included), lets
time pass and liquidates. Checked against the Pool's own answer at the same block:
- live: every `account` event the stream sent;
- time travel: every account at every block from the first supply to the head, including
  blocks where only a price or the time moved (through the API's query layer for every block,
  and over HTTP with `?at=` for every seventh).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from eth_abi import decode, encode

from api.queries import Queries
from devnet.lending import LendingSimulator
from protocols.aave_v3 import events as aave_events
from tests.conftest import Devnet
from tests.support import (
    block_number,
    eth_call,
    live_server,
    rpc,
    selector,
    stream_reader,
)

WAD = 10**18


def account_data(devnet: Devnet, user: str, block: int) -> tuple[int, int, int]:
    assert devnet.deployment.aave is not None
    out = eth_call(
        devnet.rpc_url,
        devnet.deployment.aave.pool,
        selector("getUserAccountData(address)") + encode(["address"], [user]).hex(),
        block,
    )
    assert out is not None
    collateral, debt, _available, _lt, _ltv, hf = decode(["uint256"] * 6, bytes.fromhex(out[2:]))
    return int(collateral), int(debt), int(hf)


def served(account: dict[str, Any]) -> tuple[int, int, int]:
    return (
        int(account["total_collateral_base"]),
        int(account["total_debt_base"]),
        int(account["health_factor"]),
    )


def first_supply_block(devnet: Devnet) -> int:
    assert devnet.deployment.aave is not None
    logs = rpc(
        devnet.rpc_url,
        "eth_getLogs",
        [
            {
                "fromBlock": "0x0",
                "toBlock": "latest",
                "address": devnet.deployment.aave.pool,
                "topics": [aave_events.SUPPLY],
            }
        ],
    )
    return min(int(lg["blockNumber"], 16) for lg in logs)


def test_accounts_equal_get_user_account_data_live_and_at_every_block(
    devnet: Devnet, tmp_path: Path
) -> None:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=11)
    lending.tick()  # some history for the backfill
    chain_id = devnet.deployment.chain_id
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        live: list[dict[str, Any]] = []
        stop = threading.Event()
        stream_reader(f"{server.url}/v1/stream", ("account",), live, stop)
        try:
            # Live: actions, price drift, a shock, time passing, liquidations.
            lending.tick()
            devnet.simulator.step()
            lending.shock("WETH", -18)
            lending.pass_time(6 * 3600)
            liquidations = lending.liquidate_unhealthy()
            lending.tick()
            head = block_number(devnet.rpc_url)
            server.wait_processed(chain_id, head)
        finally:
            stop.set()
        assert liquidations, "the scenario should liquidate"

        assert len(live) > 20, "the stream should carry account updates"
        for account in live:
            expected = account_data(devnet, account["owner"], account["block_number"])
            assert served(account) == expected, (
                f"live {account['owner']} at {account['block_number']}"
            )

        queries: Queries = server.app.state.queries
        users = lending.accounts()
        checked, below_one = 0, 0
        for block in range(first_supply_block(devnet), head + 1):
            as_of = queries.resolve_at(chain_id, block, head)
            for user in users:
                expected = account_data(devnet, user, block)
                accounts = queries.portfolio_of("aave_v3", user, as_of)
                if block % 7 == 0:
                    over_http = server.get(f"/v1/portfolio/{user}", at=str(block)).json()
                    assert over_http["lending"] == accounts
                if not accounts:
                    assert expected[:2] == (0, 0), f"{user} missing at block {block}"
                    continue
                (account,) = accounts
                assert served(account) == expected, f"{user} at block {block}"
                checked += 1
                below_one += expected[2] < WAD
        assert checked > 300
        assert below_one > 0, "the scenario should push an account below 1"
        stored = server.runtime.store.scalar("SELECT count() FROM defimon.liquidations FINAL")
        # Every LiquidationCall the pool logged (the simulator's ticks liquidate too; on the
        # mainnet layout the wstETH borrowers can fall below 1 before the explicit call).
        assert devnet.deployment.aave is not None
        on_chain = rpc(
            devnet.rpc_url,
            "eth_getLogs",
            [
                {
                    "fromBlock": "0x0",
                    "toBlock": hex(head),
                    "address": devnet.deployment.aave.pool,
                    "topics": [aave_events.LIQUIDATION_CALL],
                }
            ],
        )
        assert stored == len(on_chain) >= len(liquidations)
        # The devnet's Pool (npm @aave/core-v3 1.19.3) answers POOL_REVISION() = 1: v3.0.2,
        # read from the chain once at the first block the flow read.
        versions = server.runtime.store.rows(
            "SELECT revision, aave_version FROM defimon.aave_pool_versions FINAL"
        )
        assert versions == [(1, "3.0.2")]
