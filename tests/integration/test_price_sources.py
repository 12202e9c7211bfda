"""Prices as the oracle gives them, on the mainnet-shaped devnet (devnet/oracles.py).

WETH is priced through a real Chainlink `EACAggregatorProxy` whose aggregator is swapped
silently (once during the backfill, once live); wstETH through a CAPO-shaped adapter (base
feed x ratio, capped) that emits no price event, whose ratio and cap change. Checked against
the contracts at the same block:
- every reserve's price defimon stored equals `AaveOracle.getAssetPrice` at every block from
  the first supply to the head, and every account equals `getUserAccountData` (query layer at
  every block, `?at=` over HTTP at every fifth, and every `account` event the stream sent);
- a source made unreadable (`anvil_setCode` to code that reverts) is never a price of 0: the
  accounts holding that reserve are stale with the reason in the API JSON and the stream,
  and they recover when the source is readable again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode

from api.queries import Queries
from devnet.lending import LendingSimulator
from devnet.oracles import CAPO_ADAPTER, CHAINLINK_PROXY
from tests.conftest import Devnet, start_devnet
from tests.integration.test_aave_exactness import account_data, first_supply_block, served
from tests.support import (
    block_number,
    eth_call,
    live_server,
    rpc,
    selector,
    stream_reader,
)

REVERTING_CODE = "0x60006000fd"  # PUSH1 0 PUSH1 0 REVERT


@pytest.fixture
def mainnet_devnet() -> Iterator[Devnet]:
    net = start_devnet(layout="mainnet")
    try:
        yield net
    finally:
        net.anvil.stop()


def asset_price(devnet: Devnet, asset: str, block: int) -> int | None:
    assert devnet.deployment.aave is not None
    out = eth_call(
        devnet.rpc_url,
        devnet.deployment.aave.oracle,
        selector("getAssetPrice(address)") + encode(["address"], [asset]).hex(),
        block,
    )
    return None if out is None else int(out, 16)


def stored_prices(server: Any, chain_id: int) -> dict[str, list[tuple[int, int, str]]]:
    """asset -> [(block, answer, stale)] as stored, in block order."""
    rows = server.runtime.store.dicts(
        "SELECT asset, block_number, answer, stale FROM defimon.oracle_prices FINAL "
        "WHERE chain_id = {chain:UInt64} ORDER BY asset, block_number",
        {"chain": chain_id},
    )
    out: dict[str, list[tuple[int, int, str]]] = {}
    for r in rows:
        out.setdefault(r["asset"], []).append(
            (int(r["block_number"]), int(r["answer"]), r["stale"])
        )
    return out


def price_at(history: list[tuple[int, int, str]], block: int) -> tuple[int, str] | None:
    found = None
    for number, answer, stale in history:
        if number > block:
            break
        found = (answer, stale)
    return found


def test_prices_equal_get_asset_price_at_every_block_across_swaps_ratio_and_cap(
    mainnet_devnet: Devnet, tmp_path: Path
) -> None:
    devnet = mainnet_devnet
    aave = devnet.deployment.aave
    assert aave is not None
    kinds = {s.kind for s in aave.sources.values()}
    assert {CHAINLINK_PROXY, CAPO_ADAPTER} <= kinds
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=11)
    for _ in range(3):  # the cap binds at tick 2, the aggregator is swapped at tick 3
        lending.tick()
    chain_id = devnet.deployment.chain_id
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        live: list[dict[str, Any]] = []
        stop = threading.Event()
        stream_reader(f"{server.url}/v1/stream", ("account",), live, stop)
        try:
            lending.tick()
            swapped = lending.swap_aggregator("WETH")  # live this time
            lending.shock("WETH", -12)  # the new aggregator's first own move
            lending.move_ratio()
            lending.tick()
            lending.tick()  # tick 6: the cap is released
            lending.pass_time(3600)
            head = block_number(devnet.rpc_url)
            server.wait_processed(chain_id, head)
        finally:
            stop.set()
        assert swapped

        prices = stored_prices(server, chain_id)
        start = first_supply_block(devnet)
        checked = 0
        for symbol, reserve in aave.reserves.items():
            history = prices[reserve.asset]
            for block in range(start, head + 1):
                expected = asset_price(devnet, reserve.asset, block)
                assert price_at(history, block) == (expected, ""), f"{symbol} at block {block}"
                checked += 1
            # The oracle changes happened: more than one price for the moving sources.
            assert len({answer for _b, answer, _s in history}) > 2, symbol
        assert checked > 100

        assert len(live) > 10
        for account in live:
            expected_account = account_data(devnet, account["owner"], account["block_number"])
            assert served(account) == expected_account, (
                f"live {account['owner']} at {account['block_number']}"
            )
            assert account["stale"] is None

        queries: Queries = server.app.state.queries
        users = lending.accounts()
        for block in range(start, head + 1):
            as_of = queries.resolve_at(chain_id, block, head)
            for user in users:
                expected_account = account_data(devnet, user, block)
                accounts = queries.portfolio_of("aave_v3", user, as_of)
                if block % 5 == 0:
                    over_http = server.get(f"/v1/portfolio/{user}", at=str(block)).json()
                    assert over_http["lending"] == accounts
                if not accounts:
                    assert expected_account[:2] == (0, 0), f"{user} missing at block {block}"
                    continue
                (account,) = accounts
                assert served(account) == expected_account, f"{user} at block {block}"
                for row in account["reserves"]:
                    held = int(row["supplied"]) or int(row["debt"])
                    if held:
                        assert int(row["price"]) == asset_price(devnet, row["asset"], block)


def wait_for(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_unreadable_source_marks_accounts_stale_and_they_recover(
    mainnet_devnet: Devnet, tmp_path: Path
) -> None:
    devnet = mainnet_devnet
    aave = devnet.deployment.aave
    assert aave is not None
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=11)
    lending.tick()
    adapter = next(s for s in aave.sources.values() if s.kind == CAPO_ADAPTER)
    lst = next(sym for sym, s in aave.sources.items() if s.kind == CAPO_ADAPTER)
    asset = aave.reserves[lst].asset
    chain_id = devnet.deployment.chain_id
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        holders = []
        for user in lending.accounts():
            body = server.get(f"/v1/portfolio/{user}").json()
            for account in body["lending"]:
                if any(r["asset"] == asset and int(r["supplied"]) for r in account["reserves"]):
                    holders.append((user, account))
        assert holders, f"some account should hold {lst}"
        user, before = holders[0]
        assert before["stale"] is None
        good_price = next(r["price"] for r in before["reserves"] if r["asset"] == asset)

        events: list[dict[str, Any]] = []
        stop = threading.Event()
        stream_reader(f"{server.url}/v1/stream", ("account",), events, stop)
        try:
            code = rpc(devnet.rpc_url, "eth_getCode", [adapter.address, "latest"])
            rpc(devnet.rpc_url, "anvil_setCode", [adapter.address, REVERTING_CODE])
            rpc(devnet.rpc_url, "evm_mine", [])
            broken = block_number(devnet.rpc_url)
            server.wait_processed(chain_id, broken)
            assert asset_price(devnet, asset, broken) is None  # the oracle reverts too

            body = server.get(f"/v1/portfolio/{user}").json()
            (account,) = [a for a in body["lending"] if a["protocol"] == "aave_v3"]
            assert account["stale"] == [
                f"{lst}: source {adapter.address} unreadable: "
                f"{_reason(account, asset)} since block {broken}"
            ]
            row = next(r for r in account["reserves"] if r["asset"] == asset)
            assert row["price"] == good_price  # the last good answer, never 0
            assert row["price_stale"] and row["price_stale"].startswith(
                f"source {adapter.address} unreadable"
            )
            stale_events = wait_for(
                lambda: [e for e in events if e["owner"] == user and e["stale"]],
                "a stale account event",
            )
            assert stale_events[-1]["stale"] == account["stale"]
            # Through time travel as well: the stored price row carries the reason.
            at = server.get(f"/v1/portfolio/{user}", at=str(broken)).json()
            assert at["lending"][0]["stale"] == account["stale"]

            rpc(devnet.rpc_url, "anvil_setCode", [adapter.address, code])
            rpc(devnet.rpc_url, "evm_mine", [])
            mended = block_number(devnet.rpc_url)
            server.wait_processed(chain_id, mended)
            body = server.get(f"/v1/portfolio/{user}").json()
            (account,) = [a for a in body["lending"] if a["protocol"] == "aave_v3"]
            assert account["stale"] is None
            assert served(account) == account_data(devnet, user, mended)
            wait_for(
                lambda: [
                    e
                    for e in events
                    if e["owner"] == user and e["block_number"] == mended and not e["stale"]
                ],
                "the account's recovery on the stream",
            )
        finally:
            stop.set()


def _reason(account: dict[str, Any], asset: str) -> str:
    """The node's own revert text, as the reader reported it (it varies by node version)."""
    row = next(r for r in account["reserves"] if r["asset"] == asset)
    text: str = row["price_stale"]
    return text.split(" unreadable: ", 1)[1].rsplit(" since block ", 1)[0]
