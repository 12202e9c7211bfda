"""The devnet's Morpho Blue market and its simulator against a real anvil (no mocks).

One devnet (the default deployment) runs DevnetSimulator for STEPS steps, then WETH drops
SHOCK_PCT on Aave's oracle and one more step runs: Morpho's oracle must follow, and the
liquidator must clear the underwater positions, with bad debt.
"""

from __future__ import annotations

import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import pytest

from devnet import Anvil, Deployment, DevnetSimulator, deploy
from devnet.contracts import MAX_UINT256, ORACLE_GET_ASSET_PRICE, Function
from devnet.morpho import LLTV, MORPHO_MARKET, MORPHO_POSITION, ORACLE_PRICE, oracle_price
from devnet.morpho_simulator import MORPHO_WALLETS, MorphoSimulator
from devnet.rpc import RpcClient
from protocols.morpho_blue import events as ev
from protocols.morpho_blue import math as mm
from protocols.morpho_blue.state import MorphoBlueState, Position, irm_mock_rate, market_id
from schemas.chain import RawLog
from schemas.chain_config import ChainConfig

STEPS = 10
SEED = 7
SHOCK_PCT = -30  # past LLTV x the liquidation incentive: a borrower near its limit is underwater

pytestmark = pytest.mark.timeout(120)

ID_TO_MARKET_PARAMS = Function(
    "idToMarketParams(bytes32)", ("address", "address", "address", "address", "uint256")
)
IS_LLTV_ENABLED = Function("isLltvEnabled(uint256)", ("bool",))
IS_IRM_ENABLED = Function("isIrmEnabled(address)", ("bool",))
OWNER = Function("owner()", ("address",))
ERC20_ALLOWANCE = Function("allowance(address,address)", ("uint256",))


@dataclass
class Run:
    anvil: Anvil
    rpc: RpcClient
    deployment: Deployment
    simulator: DevnetSimulator
    deployed_price: int  # the OracleMock's price right after deploy()
    deployed_market: mm.MarketTotals
    first_block: int  # of the simulation
    shock_block: int  # the first block of the step after the shock
    last_block: int
    # after each step: (the simulator's price, the oracle's price(), Aave's WETH / USDC)
    prices: list[tuple[int, int, int]]
    max_debt_share_before_shock: Fraction  # the largest borrowed / max borrow


def call(
    rpc: RpcClient, to: str, fn: Function, *args: Any, block: str = "latest"
) -> tuple[Any, ...]:
    return fn.decode(rpc.call("eth_call", [{"to": to, "data": fn.encode(*args)}, block]))


def market_key(deployment: Deployment) -> bytes:
    assert deployment.morpho is not None
    return bytes.fromhex(deployment.morpho.market_id[2:])


def aave_weth_in_usdc(rpc: RpcClient, deployment: Deployment) -> int:
    """The Morpho price Aave's oracle implies: WETH's USD answer over USDC's."""
    assert deployment.aave is not None
    weth, usdc = deployment.tokens["WETH"].address, deployment.tokens["USDC"].address
    (weth_usd,) = call(rpc, deployment.aave.oracle, ORACLE_GET_ASSET_PRICE, weth)
    (usdc_usd,) = call(rpc, deployment.aave.oracle, ORACLE_GET_ASSET_PRICE, usdc)
    return oracle_price(Fraction(weth_usd, usdc_usd), 6, 18)


def block_number(rpc: RpcClient) -> int:
    return int(rpc.call("eth_blockNumber"), 16)


def morpho_events(run: Run, first: int, last: int) -> list[tuple[int, ev.Event]]:
    """(block, event) of every Morpho log in [first, last], in order."""
    assert run.deployment.morpho is not None
    logs = run.rpc.call(
        "eth_getLogs",
        [{"address": run.deployment.morpho.morpho, "fromBlock": hex(first), "toBlock": hex(last)}],
    )
    return [(int(entry["blockNumber"], 16), ev.decode(raw_log(entry))) for entry in logs]


def raw_log(entry: dict[str, Any]) -> RawLog:
    return RawLog(
        31337,
        int(entry["blockNumber"], 16),
        entry["blockHash"],
        int(entry["logIndex"], 16),
        entry["transactionHash"],
        int(entry["transactionIndex"], 16),
        entry["address"].lower(),
        tuple(t.lower() for t in entry["topics"]),
        entry["data"].lower(),
    )


def contract_position(run: Run, account: str, block: int | None = None) -> Position:
    """position(id, account) after `block` (default: the latest)."""
    assert run.deployment.morpho is not None
    tag = "latest" if block is None else hex(block)
    key = market_key(run.deployment)
    return Position(
        *call(run.rpc, run.deployment.morpho.morpho, MORPHO_POSITION, key, account, block=tag)
    )


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    anvil = Anvil().start()
    rpc = RpcClient(anvil.rpc_url)
    simulator: DevnetSimulator | None = None
    try:
        deployment = deploy(anvil.rpc_url)
        assert deployment.morpho is not None
        (deployed_price,) = call(rpc, deployment.morpho.oracle, ORACLE_PRICE)
        deployed_market = mm.MarketTotals(
            *call(rpc, deployment.morpho.morpho, MORPHO_MARKET, market_key(deployment))
        )
        first_block = block_number(rpc) + 1
        simulator = DevnetSimulator(anvil.rpc_url, deployment, seed=SEED)
        assert simulator.morpho is not None and simulator.lending is not None
        prices = []
        for _ in range(STEPS):
            simulator.step()
            (price,) = call(rpc, deployment.morpho.oracle, ORACLE_PRICE)
            prices.append((simulator.morpho.price, price, aave_weth_in_usdc(rpc, deployment)))
        shares = [
            Fraction(view.borrow_assets, view.max_borrow)
            for view in simulator.morpho.views(simulator.morpho.borrowers).values()
            if view.borrow_shares
        ]
        shock_block = block_number(rpc) + 1
        simulator.lending.shock("WETH", SHOCK_PCT)
        simulator.step()
        yield Run(
            anvil,
            rpc,
            deployment,
            simulator,
            deployed_price,
            deployed_market,
            first_block,
            shock_block,
            block_number(rpc),
            prices,
            max(shares, default=Fraction(0)),
        )
    finally:
        if simulator is not None:
            simulator.close()
        rpc.close()
        anvil.stop()


def test_deploy_creates_the_market(run: Run) -> None:
    d = run.deployment
    morpho = d.morpho
    assert morpho is not None
    usdc, weth = d.tokens["USDC"], d.tokens["WETH"]
    params = (usdc.address, weth.address, morpho.oracle, morpho.irm, LLTV)
    assert tuple(morpho.params) == params and LLTV == 86 * 10**16
    assert morpho.market_id == market_id(morpho.params)
    stored = call(run.rpc, morpho.morpho, ID_TO_MARKET_PARAMS, market_key(d))
    assert tuple(a.lower() if isinstance(a, str) else a for a in stored) == params
    assert run.deployed_market.last_update > 0  # createMarket stamps it: the market exists
    assert run.deployed_market.total_supply_assets == 0  # nothing happened before the simulator
    assert call(run.rpc, morpho.morpho, IS_LLTV_ENABLED, LLTV) == (True,)
    assert call(run.rpc, morpho.morpho, IS_IRM_ENABLED, morpho.irm) == (True,)
    assert call(run.rpc, morpho.morpho, OWNER)[0].lower() == d.deployer == morpho.owner
    # the reference price the pools and Aave's WETH feed start at: $3,000 in USDC units
    assert run.deployed_price == 3_000 * 10**6 * 10**36 // 10**18
    # every wallet may act on Morpho with both tokens
    for wallet in (d.wallets[0], d.wallets[-1]):
        for token in (usdc, weth):
            assert call(run.rpc, token.address, ERC20_ALLOWANCE, wallet, morpho.morpho) == (
                MAX_UINT256,
            )

    config = d.to_chain_config()
    assert config.morpho_blue is not None and config.morpho_blue.morpho == morpho.morpho
    assert "morpho_blue" in config.protocols
    assert ChainConfig.from_dict(tomllib.loads(config.to_toml())) == config
    assert Deployment.from_json(d.to_json()) == d


def test_morpho_comes_after_uniswap_and_aave(run: Run) -> None:
    """Without Morpho the deployment is the same, block for block: Morpho only adds blocks."""
    assert run.deployment.morpho is not None
    with Anvil() as anvil, RpcClient(anvil.rpc_url) as rpc:
        plain = deploy(anvil.rpc_url, morpho=False)
        assert plain.morpho is None and plain.to_chain_config().morpho_blue is None
        assert replace(run.deployment, morpho=None, rpc_url=anvil.rpc_url) == plain
        assert run.deployment.morpho.start_block == block_number(rpc) + 1
        assert Deployment.from_json(plain.to_json()) == plain


def test_the_oracle_follows_aave_weth_price(run: Run) -> None:
    for followed, stored, aave in run.prices:
        assert followed == stored == aave
    assert len({stored for _, stored, _ in run.prices}) > STEPS // 2  # it moved
    shocked = aave_weth_in_usdc(run.rpc, run.deployment)
    assert run.simulator.morpho is not None and run.simulator.morpho.price == shocked
    assert shocked < run.prices[-1][2] * 8 // 10


def test_ticks_open_and_change_positions(run: Run) -> None:
    sim = run.simulator.morpho
    assert sim is not None
    events = morpho_events(run, run.first_block, run.shock_block - 1)
    kinds = Counter(type(event).__name__ for _, event in events)
    for kind in ("Supply", "SupplyCollateral", "Borrow", "Repay", "Withdraw", "AccrueInterest"):
        assert kinds[kind] > 0, f"no {kind}: {dict(kinds)}"
    opened = {
        event.on_behalf
        for _, event in events
        if isinstance(event, (ev.Supply, ev.SupplyCollateral, ev.Borrow))
    }
    assert set(sim.accounts()) == opened
    assert opened == set(sim.lenders) | set(sim.borrowers)
    assert len(opened) == MORPHO_WALLETS - 1  # all but the liquidator
    assert sim.liquidator not in opened
    assert all(
        event.on_behalf in sim.borrowers for _, event in events if isinstance(event, ev.Borrow)
    )
    assert set(sim.accounts()) <= set(run.simulator.wallets())  # shown in the demo
    # borrowers stay close to their limit: the shock finds one to liquidate
    assert run.max_debt_share_before_shock > 1 + Fraction(SHOCK_PCT, 100)


def test_the_shock_is_liquidated_with_bad_debt(run: Run) -> None:
    sim = run.simulator.morpho
    assert sim is not None
    events = morpho_events(run, run.shock_block, run.last_block)
    liquidations = [(b, event) for b, event in events if isinstance(event, ev.Liquidate)]
    assert liquidations, "nothing was liquidated after the shock"
    assert {event.caller for _, event in liquidations} == {sim.liquidator}
    bad = [(b, event) for b, event in liquidations if event.bad_debt_shares > 0]
    assert bad, f"no bad debt after a {SHOCK_PCT}% drop: {liquidations}"
    for block, event in bad:
        # all the collateral was seized, and Morpho wrote the rest of the debt off
        assert contract_position(run, event.borrower, block) == Position(0, 0, 0)
        assert event.seized_assets == contract_position(run, event.borrower, block - 1).collateral
    # every account still liquidatable was liquidated in part (which need not restore health)
    assert not set(sim.liquidatable_accounts()) - {e.borrower for _, e in liquidations}


def test_positions_match_the_events(run: Run) -> None:
    """Morpho's events from its deployment on, folded by the pure state, give the contract's
    market and every simulated wallet's position."""
    d = run.deployment
    assert d.morpho is not None and run.simulator.morpho is not None
    events = morpho_events(run, d.morpho.start_block, run.last_block)
    by_block: dict[int, list[ev.Event]] = defaultdict(list)
    for block, event in events:
        by_block[block].append(event)
    blocks = sorted(by_block)
    headers = run.rpc.batch(("eth_getBlockByNumber", [hex(b), False]) for b in blocks)
    state = MorphoBlueState(rate_models={d.morpho.irm: irm_mock_rate})
    for block, header in zip(blocks, headers, strict=True):
        state.step(int(header["timestamp"], 16), by_block[block])
    stored = mm.MarketTotals(*call(run.rpc, d.morpho.morpho, MORPHO_MARKET, market_key(d)))
    assert state.markets[d.morpho.market_id].totals == stored
    sim = run.simulator.morpho
    wallets = [*sim.lenders, *sim.borrowers, sim.liquidator]
    positions = {wallet: contract_position(run, wallet) for wallet in wallets}
    for wallet, position in positions.items():
        assert state.position(d.morpho.market_id, wallet) == position, wallet
    assert any(p.supply_shares for p in positions.values())
    assert any(p.borrow_shares for p in positions.values()) or any(
        p.collateral for p in positions.values()
    )
    assert all(p.borrow_shares == 0 for w, p in positions.items() if w in sim.lenders)


def test_simulator_refuses_a_deployment_without_morpho(run: Run) -> None:
    with pytest.raises(ValueError, match="no Morpho market"):
        MorphoSimulator(run.anvil.rpc_url, replace(run.deployment, morpho=None))


def test_without_aave_the_price_walks_and_time_passes() -> None:
    """Standalone (no Aave oracle to follow), the simulator walks WETH's price itself and
    moves the clock; a drop it is told of is liquidated."""
    with Anvil() as anvil, RpcClient(anvil.rpc_url) as rpc:
        deployment = deploy(anvil.rpc_url, aave=False)
        assert deployment.aave is None and deployment.morpho is not None
        simulator = DevnetSimulator(anvil.rpc_url, deployment, seed=SEED)
        sim = simulator.morpho
        assert sim is not None and simulator.lending is None
        try:
            start = int(rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
            prices = set()
            for _ in range(6):
                simulator.step()
                prices.add(call(rpc, deployment.morpho.oracle, ORACLE_PRICE)[0])
            end = int(rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
            assert end - start >= 6 * simulator.seconds_per_step
            assert len(prices) == 6  # a random walk: every step moves it
            reference = oracle_price(3_000, 6, 18)
            assert all(abs(Fraction(p, reference) - 1) < Fraction(1, 4) for p in prices)
            assert sim.accounts() and not sim.liquidatable_accounts()
            first = block_number(rpc) + 1
            assert sim.set_price(sim.price * 6 // 10)
            assert sim.liquidatable_accounts()
            assert sim.liquidate_unhealthy()
            logs = rpc.call(
                "eth_getLogs",
                [
                    {
                        "address": deployment.morpho.morpho,
                        "fromBlock": hex(first),
                        "toBlock": "latest",
                    }
                ],
            )
            assert ev.TOPICS["Liquidate"] in {entry["topics"][0] for entry in logs}
        finally:
            simulator.close()
