"""The devnet against a real anvil and the real Uniswap V3 bytecode (no mocks)."""

from __future__ import annotations

import threading
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest

from devnet import Anvil, Deployment, MarketSimulator, deploy, generate_history, run_devnet
from devnet.contracts import (
    COLLECT_TOPIC,
    DECREASE_LIQUIDITY_TOPIC,
    INCREASE_LIQUIDITY_TOPIC,
    NPM_OWNER_OF,
    NPM_POSITIONS,
    POOL_SLOT0,
    SWAP_TOPIC,
    TRANSFER_TOPIC,
    ZERO_TOPIC,
)
from devnet.deploy import TOKEN_SPECS
from devnet.main import deployment_json_path
from devnet.rpc import RpcClient, RpcError, RpcTransportError
from devnet.txs import wait_receipts
from devnet.univ3math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    price_from_sqrt_price_x96,
    sqrt_ratio_at_tick,
    tick_at_sqrt_ratio,
)
from schemas.chain_config import ChainConfig

SIMULATOR_STEPS = 20

pytestmark = pytest.mark.timeout(120)


@dataclass
class Chain:
    anvil: Anvil
    rpc: RpcClient
    deployment: Deployment


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    anvil = Anvil().start()
    rpc = RpcClient(anvil.rpc_url)
    try:
        yield Chain(anvil, rpc, deploy(anvil.rpc_url))
    finally:
        rpc.close()
        anvil.stop()


@dataclass
class Simulation:
    first_block: int
    last_block: int
    tick_buckets: dict[str, set[int]]  # pool -> the tick-spacing intervals its price visited
    blocks: list[int]
    simulator: MarketSimulator


@pytest.fixture(scope="module")
def simulation(chain: Chain) -> Iterator[Simulation]:
    first_block = int(chain.rpc.call("eth_blockNumber"), 16) + 1
    simulator = MarketSimulator(chain.anvil.rpc_url, chain.deployment, seed=7)
    buckets: dict[str, set[int]] = {pool.address: set() for pool in chain.deployment.pools}
    blocks: list[int] = []

    def record_ticks() -> None:
        for pool in chain.deployment.pools:
            buckets[pool.address].add(slot0(chain.rpc, pool.address)[1] // pool.tick_spacing)

    record_ticks()
    for _ in range(SIMULATOR_STEPS):
        blocks += simulator.step()
        record_ticks()
    last_block = int(chain.rpc.call("eth_blockNumber"), 16)
    yield Simulation(first_block, last_block, buckets, blocks, simulator)
    simulator.close()


def slot0(rpc: RpcClient, pool: str) -> tuple[int, int]:
    answer = rpc.call("eth_call", [{"to": pool, "data": POOL_SLOT0.encode()}, "latest"])
    sqrt_price, tick = POOL_SLOT0.decode(answer)[:2]
    return sqrt_price, tick


def npm_events(chain: Chain, first: int, last: int) -> Counter[str]:
    logs = chain.rpc.call(
        "eth_getLogs",
        [
            {
                "address": chain.deployment.position_manager,
                "fromBlock": hex(first),
                "toBlock": hex(last),
            }
        ],
    )
    kinds: Counter[str] = Counter()
    for entry in logs:
        topics = entry["topics"]
        if topics[0] == TRANSFER_TOPIC:
            if topics[1] == ZERO_TOPIC:
                kinds["minted"] += 1
            elif topics[2] == ZERO_TOPIC:
                kinds["burned"] += 1
            else:
                kinds["transferred"] += 1
        elif topics[0] == INCREASE_LIQUIDITY_TOPIC:
            kinds["increased"] += 1
        elif topics[0] == DECREASE_LIQUIDITY_TOPIC:
            kinds["decreased"] += 1
        elif topics[0] == COLLECT_TOPIC:
            kinds["collected"] += 1
    return kinds


def test_tick_math_matches_the_contract_constants() -> None:
    assert sqrt_ratio_at_tick(MIN_TICK) == MIN_SQRT_RATIO
    assert sqrt_ratio_at_tick(MAX_TICK) == MAX_SQRT_RATIO
    for tick in (-887271, -276325, -1, 0, 1, 60, 196257, 887271):
        assert tick_at_sqrt_ratio(sqrt_ratio_at_tick(tick)) == tick
        assert tick_at_sqrt_ratio(sqrt_ratio_at_tick(tick) - 1) == tick - 1


def test_deployment_prices_order_and_config(chain: Chain) -> None:
    deployment = chain.deployment
    assert deployment.start_block >= 1
    for pool in deployment.pools:
        assert pool.token0 < pool.token1
        assert pool.address == pool.address.lower() and pool.address.startswith("0x")
        sqrt_price, tick = slot0(chain.rpc, pool.address)
        token0 = deployment.token_by_address(pool.token0)
        token1 = deployment.token_by_address(pool.token1)
        assert tick == tick_at_sqrt_ratio(sqrt_price)
        price = price_from_sqrt_price_x96(sqrt_price, token0.decimals, token1.decimals)
        expected = TOKEN_SPECS[token0.symbol][1] / TOKEN_SPECS[token1.symbol][1]
        assert abs(price / expected - 1) < Fraction(1, 10**12)
    assert {pool.fee for pool in deployment.pools} == {100, 500, 3000}

    config = deployment.to_chain_config()
    assert ChainConfig.from_dict(tomllib.loads(config.to_toml())) == config
    assert config.uniswap_v3 is not None
    assert config.uniswap_v3.factory == deployment.factory
    assert set(config.usd_tokens) == {
        deployment.tokens["USDC"].address,
        deployment.tokens["DAI"].address,
    }
    assert Deployment.from_json(deployment.to_json()) == deployment


def test_every_pool_crosses_tick_spacings(chain: Chain, simulation: Simulation) -> None:
    for pool in chain.deployment.pools:
        visited = simulation.tick_buckets[pool.address]
        assert len(visited) > 1, f"{chain.deployment.pool_label(pool)} never left {visited}"
    swaps = chain.rpc.call(
        "eth_getLogs",
        [
            {
                "topics": [SWAP_TOPIC],
                "fromBlock": hex(simulation.first_block),
                "toBlock": hex(simulation.last_block),
            }
        ],
    )
    assert {entry["address"].lower() for entry in swaps} == {
        pool.address for pool in chain.deployment.pools
    }
    assert len(simulation.blocks) >= SIMULATOR_STEPS * len(chain.deployment.pools)


def test_positions_are_minted_changed_moved_and_burned(
    chain: Chain, simulation: Simulation
) -> None:
    kinds = npm_events(chain, simulation.first_block, simulation.last_block)
    for kind in ("minted", "increased", "decreased", "collected", "transferred", "burned"):
        assert kinds[kind] > 0, f"no position was {kind}: {dict(kinds)}"


def test_python_view_of_positions_matches_the_chain(chain: Chain, simulation: Simulation) -> None:
    npm = chain.deployment.position_manager
    tracked = simulation.simulator.all_positions()
    assert tracked
    for token_id, owner in tracked.items():
        data = NPM_OWNER_OF.encode(token_id)
        answer = chain.rpc.call("eth_call", [{"to": npm, "data": data}, "latest"])
        assert NPM_OWNER_OF.decode(answer)[0].lower() == owner
        fields = NPM_POSITIONS.decode(
            chain.rpc.call(
                "eth_call", [{"to": npm, "data": NPM_POSITIONS.encode(token_id)}, "latest"]
            )
        )
        assert (fields[2].lower(), fields[3].lower()) in {
            (pool.token0, pool.token1) for pool in chain.deployment.pools
        }
        assert token_id in simulation.simulator.positions_of(owner)
    minted = npm_events(chain, simulation.first_block, simulation.last_block)["minted"]
    burned_ids = set(range(1, minted + 1)) - set(tracked)
    assert burned_ids, "the simulation burned no position"
    for token_id in burned_ids:
        with pytest.raises(RpcError, match="Invalid token ID"):
            chain.rpc.call(
                "eth_call", [{"to": npm, "data": NPM_POSITIONS.encode(token_id)}, "latest"]
            )


def test_swap_returns_its_block(chain: Chain, simulation: Simulation) -> None:
    pool = chain.deployment.pools[0]
    before = slot0(chain.rpc, pool.address)[1]
    block = simulation.simulator.swap(pool, zero_for_one=True)
    assert block == int(chain.rpc.call("eth_blockNumber"), 16)
    assert slot0(chain.rpc, pool.address)[1] < before


def test_generate_history_produces_the_logs() -> None:
    with Anvil() as anvil, RpcClient(anvil.rpc_url) as rpc:
        deployment = deploy(anvil.rpc_url)
        first_block = int(rpc.call("eth_blockNumber"), 16) + 1
        produced = generate_history(anvil.rpc_url, deployment, target_logs=5000)
        last_block = int(rpc.call("eth_blockNumber"), 16)
        assert produced >= 5000
        logs = rpc.call(
            "eth_getLogs", [{"fromBlock": hex(first_block), "toBlock": hex(last_block)}]
        )
        assert len(logs) == produced
        kinds = Counter(entry["topics"][0] for entry in logs)
        assert kinds[SWAP_TOPIC] > produced // 5
        assert kinds[INCREASE_LIQUIDITY_TOPIC] > 0 and kinds[DECREASE_LIQUIDITY_TOPIC] > 0
        # automine is back on: a plain transaction is mined at once
        tx = {"from": deployment.wallets[0], "to": deployment.wallets[1], "value": "0x1"}
        receipt = wait_receipts(rpc, [rpc.call("eth_sendTransaction", [tx])], timeout=5)[0]
        assert int(receipt["blockNumber"], 16) == last_block + 1
        simulator = MarketSimulator(anvil.rpc_url, deployment)
        assert len(simulator.all_positions()) > 5  # it picks up the history's positions
        assert simulator.step()
        simulator.close()


def test_run_devnet_writes_config_and_stops(tmp_path: Path) -> None:
    config_path = tmp_path / "devnet.toml"
    stop = threading.Event()
    ready: list[tuple[str, Deployment]] = []

    def on_ready(anvil: Anvil, deployment: Deployment) -> None:
        ready.append((anvil.rpc_url, deployment))

    thread = threading.Thread(
        target=run_devnet,
        kwargs={
            "port": None,
            "write_config": config_path,
            "interval": 0.05,
            "stop": stop,
            "on_ready": on_ready,
        },
    )
    thread.start()
    try:
        for _ in range(200):
            if ready:
                break
            threading.Event().wait(0.05)
        assert ready, "the devnet did not come up"
        rpc_url, deployment = ready[0]
        config = ChainConfig.load(config_path)
        assert config.uniswap_v3 is not None
        assert config.uniswap_v3.position_manager == deployment.position_manager
        assert Deployment.from_json(deployment_json_path(config_path).read_text()) == deployment
        with RpcClient(rpc_url) as rpc:
            first = int(rpc.call("eth_blockNumber"), 16)
            threading.Event().wait(0.5)
            assert int(rpc.call("eth_blockNumber"), 16) > first  # the simulator is trading
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive()
    with RpcClient(rpc_url, timeout=2) as rpc, pytest.raises(RpcTransportError):
        rpc.call("eth_blockNumber")  # anvil is gone
