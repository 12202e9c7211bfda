"""A chain config with one protocol alone runs on the real devnet and serves that protocol.

The devnet runs Uniswap V3 and Aave V3 (and the market simulators drive both); each config
here is `Deployment.to_chain_config()` with sections dropped, so the flow must ignore what the
chain does outside the protocols it names:

- Aave only: every account equals `Pool.getUserAccountData` live (the stream) and at past
  blocks (the query layer), token prices are the oracle's `getAssetPrice`, lending windows
  close on the Pool's view, a liquidation alert fires at each liquidation's block, and nothing
  of Uniswap is stored or served.
- Compound only: the comet is the only protocol followed. No package ships Comet's bytecode
  (BUSL, GitHub only), so the comet address is given a contract that emits the logs it is sent
  and answers no view (as in test_compound_flow.py): its logs reach the comet stage and are
  dead letters with the reason, nothing is invented, nothing of Uniswap or Aave is stored.
  Accounts against a real comet's views, in a Compound-only config, are the lab's
  (labs/comet_vectors/comet_lab.py --e2e). The config's `[pricing] feeds` are the price roots
  left: the WETH Chainlink proxy (whose aggregator is swapped silently mid-run) and the WBTC
  feed price the watched wallets' balances, equal to `latestAnswer()`; a feed that stops
  answering keeps its last price (stale), never 0.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from eth_abi import decode, encode

from devnet.lending import LendingSimulator
from flows.endpoint import ChainEndpoint
from protocols.aave_v3 import events as aave_events
from protocols.compound_v3 import events as cev
from schemas.chain_config import ChainConfig, CompoundV3Config
from schemas.lending import BASE_UNIT, health_factor_float
from tests.conftest import Devnet
from tests.integration.test_aave_exactness import account_data, first_supply_block, served
from tests.integration.test_alerts import alerts_of, create
from tests.integration.test_compound_flow import COMET, LOG3_EMITTER, emit3, word
from tests.support import (
    LiveServer,
    block_number,
    eth_call,
    live_server,
    rpc,
    selector,
    stream_reader,
)

UNISWAP_TABLES = ("defimon.pools", "defimon.pool_states", "defimon.position_versions")
REVERTS = "0x60006000fd"  # PUSH1 0 PUSH1 0 REVERT: every call reverts


def count(server: LiveServer, table: str) -> int:
    # Table names come from the constants above, never from input.
    return int(server.runtime.store.scalar(f"SELECT count() FROM {table} FINAL"))


def latest_prices(server: LiveServer) -> dict[str, tuple[float, str]]:
    rows = server.runtime.store.rows(
        "SELECT token, argMax(price_usd, block_number), argMax(source, block_number) "
        "FROM defimon.token_prices FINAL GROUP BY token"
    )
    return {token: (price, source) for token, price, source in rows}


def word_at(devnet: Devnet, to: str, data: str, block: int) -> int:
    out = eth_call(devnet.rpc_url, to, data, block)
    assert out is not None, f"{to} reverted at {block}"
    return int(decode(["int256"], bytes.fromhex(out[2:66]))[0])


def test_an_aave_only_config_serves_the_aave_accounts_exactly(
    devnet: Devnet, tmp_path: Path
) -> None:
    aave = devnet.deployment.aave
    assert aave is not None
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=11)
    lending.tick()  # history for the backfill
    devnet.simulator.step()  # Uniswap moves too: the config does not follow it
    config = replace(devnet.deployment.to_chain_config(), uniswap_v3=None, morpho_blue=None)
    assert config.protocols == ("aave_v3",)
    chain_id = config.chain_id
    endpoint = ChainEndpoint(config, devnet.rpc_url, devnet.anvil.ws_url)
    with live_server(tmp_path, [endpoint]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        rule = create(server, {"name": "liq", "kind": "liquidation", "filter": "protocol=aave_v3"})
        rule_block = block_number(devnet.rpc_url)
        live: list[dict[str, Any]] = []
        stop = threading.Event()
        stream_reader(f"{server.url}/v1/stream", ("account",), live, stop)
        try:
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

        # Live: every account event the stream sent is the Pool's own view at its block.
        assert len(live) > 20, "the stream should carry account updates"
        for account in live:
            expected = account_data(devnet, account["owner"], account["block_number"])
            assert served(account) == expected, f"{account['owner']} at {account['block_number']}"
        # Over HTTP at the head, and in the query layer at every third block since the first
        # supply (quiet blocks too: interest accrues to each block's own time).
        users = lending.accounts()
        for user in users:
            portfolio = server.get(f"/v1/portfolio/{user}").json()
            assert portfolio["positions"] == []
            (account,) = [a for a in portfolio["lending"] if a["protocol"] == "aave_v3"]
            assert served(account) == account_data(devnet, user, head), user
        queries = server.app.state.queries
        checked = 0
        for block in range(first_supply_block(devnet), head + 1, 3):
            as_of = queries.resolve_at(chain_id, block, head)
            for user in users:
                expected = account_data(devnet, user, block)
                accounts = queries.portfolio_of("aave_v3", user, as_of)
                if not accounts:
                    assert expected[:2] == (0, 0), f"{user} missing at block {block}"
                    continue
                assert served(accounts[0]) == expected, f"{user} at block {block}"
                checked += 1
        assert checked > 100

        # Nothing of Uniswap, though the chain's pools swapped all along.
        for table in UNISWAP_TABLES:
            assert count(server, table) == 0, table
        holders = server.get("/v1/positions", protocol="uniswap_v3").json()["positions"]
        assert holders == []

        # Token prices are the oracle's answers (no pool to route through).
        prices = latest_prices(server)
        for symbol, reserve in aave.reserves.items():
            answer = word_at(
                devnet,
                aave.oracle,
                selector("getAssetPrice(address)") + encode(["address"], [reserve.asset]).hex(),
                head,
            )
            assert prices[reserve.asset][0] == answer / 10**8, symbol
            assert prices[reserve.asset][1] == aave.sources[symbol].address, symbol

        # Windows close on the Pool's own view at their last block.
        windows = server.runtime.store.dicts(
            "SELECT owner, value_close, hf_close, close_block FROM defimon.position_windows "
            "FINAL WHERE protocol = 'aave_v3' AND window = '1m'"
        )
        assert windows
        for w in windows:
            collateral, debt, hf = account_data(devnet, w["owner"], w["close_block"])
            assert w["value_close"] == (collateral - debt) / BASE_UNIT, w
            assert w["hf_close"] == health_factor_float(hf), w
        # Alerts: the liquidation rule fired at each liquidation's block since it was made.
        logs = rpc(
            devnet.rpc_url,
            "eth_getLogs",
            [
                {
                    "fromBlock": hex(rule_block + 1),
                    "toBlock": hex(head),
                    "address": aave.pool,
                    "topics": [aave_events.LIQUIDATION_CALL],
                }
            ],
        )
        fired = {a["block_number"] for a in alerts_of(server, rule["id"])}
        assert fired == {int(lg["blockNumber"], 16) for lg in logs} >= set(liquidations)


def feeds_config(devnet: Devnet, start: int, **sections: Any) -> ChainConfig:
    """The devnet's config with no Uniswap or Aave: the WETH proxy and the WBTC feed in
    `[pricing] feeds`, three wallets watched, from `start`."""
    aave = devnet.deployment.aave
    tokens = devnet.deployment.tokens
    assert aave is not None
    base = devnet.deployment.to_chain_config()
    return replace(
        base,
        uniswap_v3=None,
        aave_v3=None,
        morpho_blue=None,  # the devnet runs a Morpho market too
        start_block=start,
        feeds=(
            (tokens["WETH"].address, aave.sources["WETH"].address),
            (tokens["WBTC"].address, aave.feeds["WBTC"]),
        ),
        watch_wallets=tuple(devnet.deployment.wallets[:3]),
        **sections,
    )


LATEST_ANSWER = selector("latestAnswer()")
BALANCE_OF = selector("balanceOf(address)")


def check_feeds_and_balances(devnet: Devnet, server: LiveServer, config: ChainConfig) -> None:
    """Each feed's token price is its `latestAnswer()` at the head, and each watched wallet's
    balances are `balanceOf` there, valued at that price."""
    head = server.runtime.status.chain(config.chain_id).processed
    prices = latest_prices(server)
    expected = {}
    held = 0
    for token, feed in config.feeds:
        answer = word_at(devnet, feed, LATEST_ANSWER, head)
        expected[token] = answer / 10**8
        assert prices[token] == (expected[token], feed), token
    for wallet in config.watch_wallets:
        balances = {b["token"]: b for b in server.get(f"/v1/portfolio/{wallet}").json()["balances"]}
        for token, price in expected.items():
            raw = word_at(devnet, token, BALANCE_OF + encode(["address"], [wallet]).hex(), head)
            if not raw:
                assert token not in balances  # zeros are omitted
                continue
            held += 1
            b = balances[token]
            assert int(b["amount"]) == raw, (wallet, token)
            assert b["price_usd"] == price
            decimals = devnet.deployment.token_by_address(token).decimals
            assert b["value_usd"] == raw / 10**decimals * price
    assert held >= 2, "the watched wallets should hold the feeds' tokens"


def run_without_uniswap_or_aave(
    devnet: Devnet, tmp_path: Path, **sections: Any
) -> tuple[LiveServer, ChainConfig, Any]:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=5)
    lending.tick()  # the devnet's Aave and Uniswap at work (neither followed)
    devnet.simulator.step()
    config = feeds_config(devnet, block_number(devnet.rpc_url), **sections)
    endpoint = ChainEndpoint(config, devnet.rpc_url, devnet.anvil.ws_url)
    ctx = live_server(tmp_path, [endpoint])
    server = ctx.__enter__()
    return server, config, (ctx, lending)


def test_a_compound_only_config_follows_the_comet_alone_priced_by_its_feeds(
    devnet: Devnet, tmp_path: Path
) -> None:
    rpc(devnet.rpc_url, "anvil_setCode", [COMET, LOG3_EMITTER])
    server, config, (ctx, lending) = run_without_uniswap_or_aave(
        devnet, tmp_path, compound_v3=CompoundV3Config((COMET,))
    )
    assert config.protocols == ("compound_v3",)
    chain_id = config.chain_id
    alice = devnet.deployment.wallets[0]
    try:
        lending.tick()  # prices drift: the feeds' answers move
        emit3(devnet, [cev.SUPPLY, word(alice), word(alice)], encode(["uint256"], [10**6]))
        lending.swap_aggregator("WETH")  # a silent phase change behind the WETH proxy
        lending.tick()
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        check_feeds_and_balances(devnet, server, config)

        # The comet is followed: its log reached the comet stage, a dead letter with the
        # reason (it answers no view), and nothing was invented for the account.
        dead = server.runtime.store.dicts(
            "SELECT address, stage, reason FROM defimon.dead_letters FINAL"
        )
        assert [(d["address"], d["stage"]) for d in dead] == [(COMET, "compound_v3")]
        assert "answered no reads" in dead[0]["reason"]
        assert count(server, "defimon.comet_account_versions") == 0
        # Nothing of Uniswap or Aave, though both ran all along.
        for table in (*UNISWAP_TABLES, "defimon.account_versions", "defimon.aave_reserves"):
            assert count(server, table) == 0, table
        portfolio = server.get(f"/v1/portfolio/{alice}").json()
        assert portfolio["positions"] == [] and portfolio["lending"] == []

        # A feed that stops answering keeps its last price, never 0.
        wbtc = devnet.deployment.tokens["WBTC"].address
        aave = devnet.deployment.aave
        assert aave is not None
        before = latest_prices(server)[wbtc]
        rpc(devnet.rpc_url, "anvil_setCode", [aave.feeds["WBTC"], REVERTS])
        # Blocks go on (the Uniswap market; the lending one would read the dead feed itself),
        # and every live block reads the feed.
        devnet.simulator.step()
        lending.pass_time(120)
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        assert latest_prices(server)[wbtc] == before
        holder = next(
            b
            for w in config.watch_wallets
            for b in server.get(f"/v1/portfolio/{w}").json()["balances"]
            if b["token"] == wbtc
        )
        assert holder["price_usd"] == before[0] > 0
    finally:
        ctx.__exit__(None, None, None)


def test_feeds_alone_track_the_watched_wallets_balances(devnet: Devnet, tmp_path: Path) -> None:
    server, config, (ctx, lending) = run_without_uniswap_or_aave(devnet, tmp_path)
    assert config.protocols == ()
    try:
        lending.tick()
        lending.tick()
        server.wait_processed(config.chain_id, block_number(devnet.rpc_url))
        check_feeds_and_balances(devnet, server, config)
        for table in (*UNISWAP_TABLES, "defimon.account_versions"):
            assert count(server, table) == 0, table
    finally:
        ctx.__exit__(None, None, None)


def test_watch_mode_with_an_aave_only_config_seeds_the_account_and_no_nft(
    devnet: Devnet, tmp_path: Path
) -> None:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=11)
    lending.tick()
    devnet.simulator.step()
    npm = devnet.deployment.position_manager
    holders = set(devnet.simulator.all_positions().values())
    wallet = next(u for u in lending.accounts() if u in holders)  # holds NFTs and an account
    config = replace(devnet.deployment.to_chain_config(), uniswap_v3=None, morpho_blue=None)
    endpoint = ChainEndpoint(config, devnet.rpc_url, devnet.anvil.ws_url, watch=(wallet,))
    with live_server(tmp_path, [endpoint]) as server:
        for _ in range(2):
            lending.tick()
            devnet.simulator.step()
            head = block_number(devnet.rpc_url)
            server.wait_processed(config.chain_id, head)
            body = server.get(f"/v1/portfolio/{wallet}").json()
            assert body["positions"] == []  # its NFTs are not searched for without Uniswap
            (account,) = body["lending"]
            block = body["as_of"]["block_number"]
            assert served(account) == account_data(devnet, wallet, block), block
        for table in UNISWAP_TABLES:
            assert count(server, table) == 0, table
        assert npm not in server.runtime.store.scalar(
            "SELECT groupUniqArray(address) FROM defimon.raw_logs FINAL"
        )
