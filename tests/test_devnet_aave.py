"""The devnet's Aave V3 market and lending simulator against a real anvil (no mocks)."""

from __future__ import annotations

import threading
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from devnet import (
    Anvil,
    Deployment,
    DevnetSimulator,
    LendingSimulator,
    deploy,
    generate_history,
    simulate,
)
from devnet.aave import COLLATERAL_PARAMS, EMODE_CATEGORY, RESERVE_FACTOR, feed_answer
from devnet.contracts import (
    AAVE_BORROW,
    AAVE_GET_USER_ACCOUNT_DATA,
    ANSWER_UPDATED_TOPIC,
    ASSET_SOURCE_UPDATED_TOPIC,
    BALANCE_TRANSFER_TOPIC,
    BORROW_TOPIC,
    COLLATERAL_DISABLED_TOPIC,
    COLLATERAL_ENABLED_TOPIC,
    ERC20_BALANCE_OF,
    FEED_LATEST_ROUND_DATA,
    FEED_SET_ANSWER,
    INTEREST_RATE_VARIABLE,
    LIQUIDATION_CALL_TOPIC,
    LOCAL_CONTRACTS_DIR,
    NEW_ROUND_TOPIC,
    ORACLE_GET_ASSET_PRICE,
    REPAY_TOPIC,
    RESERVE_INITIALIZED_TOPIC,
    SUPPLY_TOPIC,
    SWAP_TOPIC,
    USER_EMODE_SET_TOPIC,
    WITHDRAW_TOPIC,
    Function,
    compile_local,
    load_artifact,
)
from devnet.deploy import TOKEN_SPECS
from devnet.rpc import RpcClient, RpcError
from devnet.txs import send_estimated
from devnet.univ3math import price_from_sqrt_price_x96
from schemas.chain_config import ChainConfig

STEPS = 15
WAD = 10**18

pytestmark = pytest.mark.timeout(120)

# decimals, ltv, liquidationThreshold, liquidationBonus, reserveFactor, usageAsCollateralEnabled,
# borrowingEnabled, stableBorrowRateEnabled, isActive, isFrozen
RESERVE_CONFIGURATION = Function(
    "getReserveConfigurationData(address)",
    ("uint256",) * 5 + ("bool",) * 5,
)
RESERVE_EMODE_CATEGORY = Function("getReserveEModeCategory(address)", ("uint256",))


@dataclass
class Market:
    anvil: Anvil
    rpc: RpcClient
    deployment: Deployment
    simulator: LendingSimulator
    first_block: int  # of the simulation
    debt_growth: list[tuple[int, int]]  # variable debt balances before and after pass_time
    unhealthy_before_shock: list[str]
    unhealthy_after_shock: list[str]
    health_factors_after_shock: dict[str, int]
    liquidation_blocks: list[int]


def call(rpc: RpcClient, to: str, fn: Function, *args: Any) -> tuple[Any, ...]:
    return fn.decode(rpc.call("eth_call", [{"to": to, "data": fn.encode(*args)}, "latest"]))


def variable_debts(rpc: RpcClient, deployment: Deployment, users: list[str]) -> list[int]:
    assert deployment.aave is not None
    tokens = [reserve.variable_debt_token for reserve in deployment.aave.reserves.values()]
    answers = rpc.batch(
        ("eth_call", [{"to": token, "data": ERC20_BALANCE_OF.encode(user)}, "latest"])
        for user in users
        for token in tokens
    )
    return [ERC20_BALANCE_OF.decode(answer)[0] for answer in answers]


@pytest.fixture(scope="module")
def market() -> Iterator[Market]:
    anvil = Anvil().start()
    rpc = RpcClient(anvil.rpc_url)
    simulator: LendingSimulator | None = None
    try:
        deployment = deploy(anvil.rpc_url, layout="feeds")  # what these tests check
        first_block = int(rpc.call("eth_blockNumber"), 16) + 1
        simulator = LendingSimulator(anvil.rpc_url, deployment, seed=11)
        growth = []
        for _ in range(STEPS):
            simulator.step()
            simulator.drift_prices()
            users = simulator.borrowers + simulator.emode_users
            before = variable_debts(rpc, deployment, users)
            simulator.pass_time(3600)
            after = variable_debts(rpc, deployment, users)
            growth += [(b, a) for b, a in zip(before, after, strict=True) if b > 0]
        unhealthy_before = simulator.unhealthy_accounts()
        simulator.shock("WETH", -15)
        unhealthy_after = simulator.unhealthy_accounts()
        health_factors = {
            account: call(rpc, deployment.aave.pool, AAVE_GET_USER_ACCOUNT_DATA, account)[5]
            for account in unhealthy_after
            if deployment.aave is not None
        }
        liquidation_blocks = simulator.liquidate_unhealthy()
        yield Market(
            anvil,
            rpc,
            deployment,
            simulator,
            first_block,
            growth,
            unhealthy_before,
            unhealthy_after,
            health_factors,
            liquidation_blocks,
        )
    finally:
        if simulator is not None:
            simulator.close()
        rpc.close()
        anvil.stop()


def logs_of(
    market: Market, topic: str, address: str | list[str] | None = None
) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"fromBlock": "0x0", "toBlock": "latest", "topics": [topic]}
    if address is not None:
        query["address"] = address
    return list(market.rpc.call("eth_getLogs", [query]))


def test_market_is_deployed_and_configured(market: Market) -> None:
    deployment, rpc = market.deployment, market.rpc
    aave = deployment.aave
    assert aave is not None
    assert set(aave.reserves) == {"WETH", "WBTC", "USDC", "DAI"} == set(aave.feeds)
    for reserve in aave.reserves.values():
        for address in (reserve.asset, reserve.a_token, reserve.variable_debt_token):
            assert address == address.lower() and len(address) == 42
    initialized = logs_of(market, RESERVE_INITIALIZED_TOPIC, aave.pool_configurator)
    assert {"0x" + entry["topics"][1][-40:] for entry in initialized} == {
        reserve.asset for reserve in aave.reserves.values()
    }
    sources = logs_of(market, ASSET_SOURCE_UPDATED_TOPIC, aave.oracle)
    assert {("0x" + e["topics"][1][-40:], "0x" + e["topics"][2][-40:]) for e in sources} == {
        (aave.reserves[symbol].asset, feed) for symbol, feed in aave.feeds.items()
    }
    for symbol, reserve in aave.reserves.items():
        reserve_config = call(rpc, aave.data_provider, RESERVE_CONFIGURATION, reserve.asset)
        assert reserve_config[0] == reserve.decimals
        assert reserve_config[1:4] == COLLATERAL_PARAMS[symbol]
        assert reserve_config[4] == RESERVE_FACTOR
        # collateral, borrowing, active, not frozen
        assert reserve_config[5] and reserve_config[6] and reserve_config[8]
        assert not reserve_config[9]
        assert not reserve_config[7]  # stable rate borrowing stays off
        emode = call(rpc, aave.data_provider, RESERVE_EMODE_CATEGORY, reserve.asset)[0]
        assert emode == (EMODE_CATEGORY if symbol in ("USDC", "DAI") else 0)
        # the oracle reads the feed
        answer = call(rpc, aave.feeds[symbol], FEED_LATEST_ROUND_DATA)[1]
        assert call(rpc, aave.oracle, ORACLE_GET_ASSET_PRICE, reserve.asset)[0] == answer

    config = deployment.to_chain_config()
    assert config.aave_v3 is not None
    assert (config.aave_v3.pool, config.aave_v3.pool_configurator, config.aave_v3.oracle) == (
        aave.pool,
        aave.pool_configurator,
        aave.oracle,
    )
    assert ChainConfig.from_dict(tomllib.loads(config.to_toml())) == config
    assert Deployment.from_json(deployment.to_json()) == deployment


def test_feeds_start_at_the_uniswap_prices(market: Market) -> None:
    """Round 1 of every feed is the reference price the Uniswap pools were initialized at."""
    aave = market.deployment.aave
    assert aave is not None
    for symbol, feed in aave.feeds.items():
        first = logs_of(market, ANSWER_UPDATED_TOPIC, feed)[0]
        assert int(first["topics"][2], 16) == 1
        assert int(first["topics"][1], 16) == feed_answer(TOKEN_SPECS[symbol][1])
    weth_usdc = next(
        pool
        for pool in market.deployment.pools
        if market.deployment.pool_label(pool).startswith(("WETH/USDC", "USDC/WETH"))
    )
    initialized = market.rpc.call(
        "eth_getLogs",
        [{"address": weth_usdc.address, "fromBlock": "0x0", "toBlock": hex(market.first_block)}],
    )
    sqrt_price = int(initialized[0]["data"][2:66], 16)  # Initialize(sqrtPriceX96, tick)
    token0 = market.deployment.token_by_address(weth_usdc.token0)
    token1 = market.deployment.token_by_address(weth_usdc.token1)
    price = price_from_sqrt_price_x96(sqrt_price, token0.decimals, token1.decimals)
    weth_usd = price if token0.symbol == "WETH" else 1 / price
    assert round(weth_usd * 10**8) == feed_answer(TOKEN_SPECS["WETH"][1])


def test_feeds_emit_chainlink_events_and_only_the_owner_sets_them(market: Market) -> None:
    aave = market.deployment.aave
    assert aave is not None
    feeds = list(aave.feeds.values())
    updated = logs_of(market, ANSWER_UPDATED_TOPIC, feeds)
    rounds = logs_of(market, NEW_ROUND_TOPIC, feeds)
    # one round at deployment, then one per feed per drift step and the shock
    assert len(updated) == len(rounds) == len(feeds) * (1 + STEPS) + 1
    weth_feed = aave.feeds["WETH"]
    round_id, answer, started_at, updated_at, answered_in = call(
        market.rpc, weth_feed, FEED_LATEST_ROUND_DATA
    )
    last = logs_of(market, ANSWER_UPDATED_TOPIC, weth_feed)[-1]
    assert (round_id, answered_in) == (STEPS + 2, STEPS + 2) == (int(last["topics"][2], 16),) * 2
    assert answer == int.from_bytes(bytes.fromhex(last["topics"][1][2:]), "big", signed=True)
    assert started_at == updated_at == int(last["data"], 16) > 0
    assert answer == market.simulator.prices()["WETH"]
    stranger = market.deployment.wallets[0]
    tx = {"from": stranger, "to": weth_feed, "data": FEED_SET_ANSWER.encode(1)}
    with pytest.raises(RpcError, match="not the owner"):
        market.rpc.call("eth_estimateGas", [tx])


def test_lending_actions_happened(market: Market) -> None:
    aave = market.deployment.aave
    assert aave is not None
    pool_logs = market.rpc.call(
        "eth_getLogs",
        [{"address": aave.pool, "fromBlock": hex(market.first_block), "toBlock": "latest"}],
    )
    kinds = Counter(entry["topics"][0] for entry in pool_logs)
    for topic in (
        SUPPLY_TOPIC,
        BORROW_TOPIC,
        REPAY_TOPIC,
        WITHDRAW_TOPIC,
        USER_EMODE_SET_TOPIC,
        COLLATERAL_ENABLED_TOPIC,
        COLLATERAL_DISABLED_TOPIC,
        LIQUIDATION_CALL_TOPIC,
    ):
        assert kinds[topic] > 0, f"no {topic} log: {kinds}"
    # every borrow is variable-rate
    for entry in pool_logs:
        if entry["topics"][0] == BORROW_TOPIC:
            assert int(entry["data"][2 + 128 : 2 + 192], 16) == INTEREST_RATE_VARIABLE
    # both kinds of repay: a part, and type(uint256).max (the whole debt, which zeroes it)
    a_tokens = [reserve.a_token for reserve in aave.reserves.values()]
    transfers = logs_of(market, BALANCE_TRANSFER_TOPIC, a_tokens)
    liquidator_topic = "0x" + "00" * 12 + market.simulator.liquidator[2:]
    assert any(entry["topics"][2] != liquidator_topic for entry in transfers)  # wallet to wallet
    emode_users = {"0x" + e["topics"][1][-40:] for e in logs_of(market, USER_EMODE_SET_TOPIC)}
    assert emode_users == set(market.simulator.emode_users)
    looped = []
    for user in emode_users:
        collateral, debt, _, _, ltv, _ = call(
            market.rpc, aave.pool, AAVE_GET_USER_ACCOUNT_DATA, user
        )
        looped.append(ltv == 9700 and debt > collateral * 8000 // 10_000)
    # eMode's LTV (97%) lets a stablecoin loop borrow more than any reserve's own LTV allows
    assert any(looped)
    accounts = market.simulator.accounts()
    assert set(market.simulator.borrowers) <= set(accounts)
    assert set(market.simulator.suppliers) <= set(accounts)


def test_interest_accrues(market: Market) -> None:
    assert market.debt_growth
    assert all(after >= before for before, after in market.debt_growth)
    assert (
        sum(after > before for before, after in market.debt_growth) > len(market.debt_growth) // 2
    )


def test_shock_makes_accounts_liquidatable_and_they_are_liquidated(market: Market) -> None:
    assert market.unhealthy_before_shock == []
    assert market.unhealthy_after_shock
    assert all(hf < WAD for hf in market.health_factors_after_shock.values())
    aave = market.deployment.aave
    assert aave is not None
    liquidations = market.rpc.call(
        "eth_getLogs",
        [
            {
                "address": aave.pool,
                "topics": [LIQUIDATION_CALL_TOPIC],
                "fromBlock": hex(min(market.liquidation_blocks)),
                "toBlock": hex(max(market.liquidation_blocks)),
            }
        ],
    )
    liquidated = {"0x" + entry["topics"][3][-40:] for entry in liquidations}
    assert liquidated == set(market.unhealthy_after_shock)
    # data: debtToCover, liquidatedCollateralAmount, liquidator, receiveAToken
    receive_a_token = {int(entry["data"][2 + 192 : 2 + 256], 16) for entry in liquidations}
    assert receive_a_token == {0, 1}
    for entry in liquidations:
        assert entry["data"][2 + 128 + 24 : 2 + 192] == market.simulator.liquidator[2:]


def test_reverting_transaction_is_skipped(market: Market) -> None:
    aave = market.deployment.aave
    assert aave is not None
    nobody = market.deployment.deployer  # has never supplied: no collateral to borrow against
    head = market.rpc.call("eth_blockNumber")
    data = AAVE_BORROW.encode(aave.reserves["USDC"].asset, 10**6, INTEREST_RATE_VARIABLE, 0, nobody)
    assert send_estimated(market.rpc, nobody, aave.pool, data, "borrow without collateral") is None
    assert market.rpc.call("eth_blockNumber") == head


def test_deploy_without_aave(market: Market) -> None:
    plain = deploy(market.anvil.rpc_url, aave=False)
    assert plain.aave is None
    assert plain.to_chain_config().aave_v3 is None
    assert Deployment.from_json(plain.to_json()) == plain
    with pytest.raises(ValueError, match="no Aave market"):
        LendingSimulator(market.anvil.rpc_url, plain)


def test_history_mixes_uniswap_and_aave() -> None:
    with Anvil() as anvil, RpcClient(anvil.rpc_url) as rpc:
        deployment = deploy(anvil.rpc_url, layout="feeds")  # what these tests check
        assert deployment.aave is not None
        first = int(rpc.call("eth_blockNumber"), 16) + 1
        produced = generate_history(anvil.rpc_url, deployment, target_logs=8000, aave=True)
        logs = rpc.call("eth_getLogs", [{"fromBlock": hex(first), "toBlock": "latest"}])
        assert len(logs) == produced >= 8000
        kinds = Counter(entry["topics"][0] for entry in logs)
        for topic in (SWAP_TOPIC, SUPPLY_TOPIC, BORROW_TOPIC, REPAY_TOPIC, ANSWER_UPDATED_TOPIC):
            assert kinds[topic] > 0, topic
        last = int(rpc.call("eth_blockNumber"), 16)
        blocks = rpc.batch(("eth_getBlockReceipts", [hex(n)]) for n in range(first, last + 1))
        assert all(receipt["status"] == "0x1" for block in blocks for receipt in block)
        # the lending simulator carries on from the history's accounts
        simulator = LendingSimulator(anvil.rpc_url, deployment)
        assert len(simulator.accounts()) >= len(deployment.wallets)
        assert simulator.tick()
        simulator.close()


def test_combined_simulator_drives_both_markets() -> None:
    with Anvil() as anvil, RpcClient(anvil.rpc_url) as rpc:
        deployment = deploy(anvil.rpc_url, layout="feeds")  # what these tests check
        assert deployment.aave is not None
        simulator = DevnetSimulator(anvil.rpc_url, deployment, seed=3)
        first = int(rpc.call("eth_blockNumber"), 16) + 1
        try:
            assert simulator.step()
        finally:
            simulator.close()
        addresses = {
            entry["address"]
            for entry in rpc.call("eth_getLogs", [{"fromBlock": hex(first), "toBlock": "latest"}])
        }
        assert deployment.aave.pool in addresses
        assert any(pool.address in addresses for pool in deployment.pools)
        assert simulator.lending is not None
        assert set(simulator.wallets()) >= set(simulator.lending.accounts())

        stop = threading.Event()
        thread = threading.Thread(
            target=simulate, args=(anvil.rpc_url, deployment, stop), kwargs={"interval": 0.01}
        )
        head = int(rpc.call("eth_blockNumber"), 16)
        thread.start()
        try:
            threading.Event().wait(1.0)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
        assert int(rpc.call("eth_blockNumber"), 16) > head


def test_committed_price_feed_artifact_is_built_from_the_source() -> None:
    """devnet/contracts/PriceFeed.json is what npm solc makes of PriceFeed.sol today."""
    committed = orjson.loads((LOCAL_CONTRACTS_DIR / "PriceFeed.json").read_bytes())
    fresh = compile_local("PriceFeed")
    assert committed["sourceDigest"] == fresh["sourceDigest"]
    assert committed["bytecode"] == fresh["bytecode"]
    assert committed["abi"] == fresh["abi"]
    assert load_artifact("PriceFeed").bytecode == fresh["bytecode"]
