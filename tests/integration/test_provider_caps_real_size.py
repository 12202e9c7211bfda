"""A provider's real caps at real size: 10,000 logs per answer, 1,000 addresses per filter.

tests/integration/test_provider_limits.py caps the fault proxy at numbers scaled to the devnet.
Here the devnet is grown until the real caps bite, and the proxy refuses at the providers'
literal limits, in their words (Infura's "query returned more than 10000 results",
publicnode's "Please, specify less number of addresses" over 1,000):

- 24 more ERC-20s (the devnet's own MintableERC20) and a Uniswap V3 pool for every pair of
  them at every fee tier: 1,104 more pools, each initialized, so the reader follows over 1,100
  addresses;
- one block with 10,500 watched logs from two contracts followed from the first block on:
  7,000 `ApprovalForAll` of the position manager (through its own `multicall`) and 3,500
  `OwnerChanged` of the factory, right after the pools: the reader comes to it in a range
  sized for the sparse blocks before. No range holding that block can be answered whole; the
  block itself has to be cut by addresses.

The capped run stores what a run straight against anvil stores, table for table, learns each
limit once (the address cap on its first list over 1,000; the result cap on the first range
holding the dense block, and every later result refusal is a cut of the one before, closing
in on that block), and becomes ready. A block where one contract alone logged more than the
cap cannot be read through such a provider at all: the flow stops with an error that says so
(it asked again forever before).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from devnet.contracts import FACTORY_CREATE_POOL, POOL_INITIALIZE, Function, load_artifact
from devnet.rpc import RpcClient
from devnet.txs import Tx, mine_block
from flows.endpoint import ChainEndpoint
from flows.log_limits import MAX_REFUSALS
from tests.conftest import Devnet, start_devnet
from tests.fault_proxy import FaultProxy, ProviderLimits
from tests.integration.test_provider_limits import _history
from tests.integration.test_rpc_faults import FAST, metric_samples, stored_state
from tests.support import LiveServer, block_number, live_server, rpc

# The providers' caps, as they state them.
MAX_RESULTS = 10_000
MAX_ADDRESSES = 1_000

NEW_TOKENS = 24  # 276 pairs x 4 fee tiers: 1,104 pools
FEES = (100, 500, 3_000, 10_000)
APPROVALS = 7_000  # the position manager's logs in the dense block
APPROVALS_PER_TX = 1_000
OWNER_CHANGES = 3_500  # the factory's logs in the dense block
POOLS_PER_BLOCK = 250
# Room for 250 pool creations (7M gas each as sent) in a block; anvil's default is 30M.
BLOCK_GAS_LIMIT = 2_000_000_000

NPM_MULTICALL = Function("multicall(bytes[])")
NPM_SET_APPROVAL_FOR_ALL = Function("setApprovalForAll(address,bool)")
FACTORY_SET_OWNER = Function("setOwner(address)")


@dataclass
class Crowd:
    devnet: Devnet
    pools: list[str]  # the pools created here
    dense: int  # the block with the 10,500 logs
    head: int  # the newest block once grown


def dense_block_txs(devnet: Devnet, approvals: int, owner_changes: int) -> list[Tx]:
    """Transactions that log `approvals` ApprovalForAll of the position manager (its own
    multicall, 1,000 to a transaction) and `owner_changes` OwnerChanged of the factory (its
    owner setting itself again): cheap logs of two contracts defimon always follows."""
    deployment = devnet.deployment
    operator = deployment.wallets[0]
    inner = [
        bytes.fromhex(NPM_SET_APPROVAL_FOR_ALL.encode(operator, i % 2 == 0)[2:])
        for i in range(APPROVALS_PER_TX)
    ]
    txs = []
    for start in range(0, approvals, APPROVALS_PER_TX):
        calls = inner[: min(APPROVALS_PER_TX, approvals - start)]
        data = NPM_MULTICALL.encode(calls)
        txs.append(Tx(deployment.deployer, deployment.position_manager, data, 40_000_000))
    set_owner = FACTORY_SET_OWNER.encode(deployment.deployer)
    txs += [Tx(deployment.deployer, deployment.factory, set_owner, 60_000)] * owner_changes
    return txs


def grow(devnet: Devnet) -> Crowd:
    """Over 1,100 pools, then the dense block, then some trading after it."""
    deployment = devnet.deployment
    deployer = deployment.deployer
    with RpcClient(devnet.rpc_url) as client:
        client.call("evm_setBlockGasLimit", [hex(BLOCK_GAS_LIMIT)])
        try:
            erc20 = load_artifact("MintableERC20")
            receipts = mine_block(
                client,
                [
                    Tx(
                        deployer,
                        None,
                        erc20.deploy_data(("string", "string", "uint8"), (f"T{i}", f"T{i}", 18)),
                        2_000_000,
                    )
                    for i in range(NEW_TOKENS)
                ],
            )
            tokens = sorted(receipt["contractAddress"].lower() for receipt in receipts)
            creations = [
                Tx(deployer, deployment.factory, FACTORY_CREATE_POOL.encode(a, b, fee), 7_000_000)
                for a, b in combinations(tokens, 2)
                for fee in FEES
            ]
            pools: list[str] = []
            for start in range(0, len(creations), POOLS_PER_BLOCK):
                for receipt in mine_block(client, creations[start : start + POOLS_PER_BLOCK]):
                    # PoolCreated(token0, token1, fee, tickSpacing, pool): the pool is last.
                    pools.append("0x" + receipt["logs"][0]["data"][-40:].lower())
            # price 1: every pool logs its Initialize
            initialize = POOL_INITIALIZE.encode(2**96)
            mine_block(client, [Tx(deployer, pool, initialize, 200_000) for pool in pools])
            receipts = mine_block(client, dense_block_txs(devnet, APPROVALS, OWNER_CHANGES))
            dense = int(receipts[0]["blockNumber"], 16)
        finally:
            client.call("evm_setAutomine", [True])
    for _ in range(2):  # ranges after the dense block, read with what was learned there
        devnet.simulator.step()
    return Crowd(devnet, pools, dense, block_number(devnet.rpc_url))


def logs_of_block(url: str, block: int, address: str) -> int:
    flt = {"fromBlock": hex(block), "toBlock": hex(block), "address": address}
    return len(rpc(url, "eth_getLogs", [flt]))


def wait_ready(server: LiveServer, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.get("/readyz").status_code == 200:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def crowd() -> Iterator[Crowd]:
    devnet = start_devnet()
    try:
        started = time.monotonic()
        _history(devnet)
        grown = grow(devnet)
        print(f"devnet grown to block {grown.head} in {time.monotonic() - started:.1f} s")
        yield grown
    finally:
        devnet.anvil.stop()


def _covers(flt: dict[str, Any], block: int, block_hash: str) -> bool:
    if "blockHash" in flt:
        return str(flt["blockHash"]).lower() == block_hash
    return int(flt["fromBlock"], 16) <= block <= int(flt["toBlock"], 16)


def _cut_of(part: dict[str, Any], whole: dict[str, Any]) -> bool:
    """Whether `part` is `whole` cut smaller: a range inside it, addresses among its own."""
    inside = int(whole["fromBlock"], 16) <= int(part["fromBlock"], 16) and int(
        part["toBlock"], 16
    ) <= int(whole["toBlock"], 16)
    among = set(part["address"]) <= set(whole["address"])
    return inside and among and part != whole


def test_real_caps_at_real_size_are_read_exactly_and_each_limit_is_learned_once(
    crowd: Crowd, tmp_path: Path
) -> None:
    devnet = crowd.devnet
    deployment = devnet.deployment
    chain_id = deployment.chain_id
    url = devnet.rpc_url
    assert logs_of_block(url, crowd.dense, deployment.position_manager) == APPROVALS
    assert logs_of_block(url, crowd.dense, deployment.factory) == OWNER_CHANGES
    dense_hash = rpc(url, "eth_getBlockByNumber", [hex(crowd.dense), False])["hash"].lower()

    limits = ProviderLimits(max_addresses=MAX_ADDRESSES, max_results=MAX_RESULTS)
    capped_dir, direct_dir = tmp_path / "capped", tmp_path / "direct"
    with FaultProxy(url, fault_rate=0.0, limits=limits) as proxy:
        endpoint = ChainEndpoint(deployment.to_chain_config(), proxy.http_url, rpc_options=FAST)
        started = time.monotonic()
        with live_server(capped_dir, [endpoint]) as server:
            server.wait_processed(chain_id, crowd.head, timeout=300)
            capped_seconds = time.monotonic() - started
            backfill_requests = proxy.requests
            # Live too: block-hash filters of every followed address, cut by addresses.
            devnet.simulator.step()
            head = block_number(url)
            server.wait_processed(chain_id, head, timeout=120)
            ready = wait_ready(server)
            metrics = server.get("/metrics").text
    started = time.monotonic()
    with live_server(direct_dir, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, head, timeout=300)
        direct_seconds = time.monotonic() - started
    capped, direct = stored_state(capped_dir), stored_state(direct_dir)
    raw_logs = direct["defimon.raw_logs"]
    print(
        f"real caps: {len(raw_logs)} logs to block {head}, {proxy.most_addresses} addresses in "
        f"the longest filter, {crowd.head - deployment.start_block + 1} blocks backfilled through "
        f"the capped proxy in {capped_seconds:.1f} s with {backfill_requests} requests "
        f"({proxy.requests} with the live blocks; {dict(proxy.methods)}; "
        f"{proxy.logs_served} logs served), refusals "
        f"{dict(proxy.refused)}; direct run {direct_seconds:.1f} s"
    )
    for kind, flt in proxy.refused_filters:
        print(
            f"  refused ({kind}): blocks {flt.get('fromBlock')}-{flt.get('toBlock')} "
            f"{flt.get('blockHash', '')} with {len(flt.get('address') or ())} addresses"
        )

    assert ready, "the capped run did not become ready"
    # Both caps bit: the reader's list outgrew 1,000 addresses, and a range (the dense block
    # at least) held over 10,000 logs.
    assert proxy.most_addresses > MAX_ADDRESSES
    assert proxy.refused["addresses"] == 1, dict(proxy.refused)
    assert proxy.refused["results"] >= 1, dict(proxy.refused)
    # Learned once: after its first refusal no list is over the address cap again, and the
    # result cap refused only filters that held the dense block (the cuts down to it).
    refused_results = [flt for kind, flt in proxy.refused_filters if kind == "results"]
    assert all(_covers(flt, crowd.dense, dense_hash) for flt in refused_results)
    for wider, narrower in itertools.pairwise(refused_results):
        assert _cut_of(narrower, wider), (wider, narrower)
    learned = {
        labels["limit"]: value
        for labels, value in metric_samples(metrics, "defimon_rpc_log_limit")
        if labels["endpoint"] == proxy.http_url
    }
    assert learned["max_results"] == MAX_RESULTS, learned
    assert learned["max_addresses"] <= MAX_ADDRESSES, learned

    for table in direct:
        assert capped[table] == direct[table], table
    assert sum(1 for row in raw_logs if row[1] == crowd.dense) == APPROVALS + OWNER_CHANGES
    created = {row[1] for row in direct["defimon.pools"]}
    assert set(crowd.pools) <= created
    assert direct["defimon.dead_letters"] == []


def test_a_block_one_contract_filled_past_the_cap_stops_the_flow_with_a_clear_error(
    devnet: Devnet, tmp_path: Path
) -> None:
    # 11,000 logs of the position manager in one block: no filter is smaller than one block
    # of one contract, so a provider capping answers at 10,000 logs can never serve them.
    deployment = devnet.deployment
    with RpcClient(devnet.rpc_url) as client:
        client.call("evm_setBlockGasLimit", [hex(BLOCK_GAS_LIMIT)])
        try:
            txs = dense_block_txs(devnet, MAX_RESULTS + 1_000, 0)
            block = int(mine_block(client, txs)[0]["blockNumber"], 16)
        finally:
            client.call("evm_setAutomine", [True])
    devnet.simulator.step()
    limits = ProviderLimits(max_addresses=MAX_ADDRESSES, max_results=MAX_RESULTS)
    with FaultProxy(devnet.rpc_url, fault_rate=0.0, limits=limits) as proxy:
        endpoint = ChainEndpoint(deployment.to_chain_config(), proxy.http_url, rpc_options=FAST)
        with live_server(tmp_path / "capped", [endpoint]) as server:
            deadline = time.monotonic() + 120
            while (health := server.get("/healthz")).status_code == 200:
                assert time.monotonic() < deadline, f"still going: refusals {dict(proxy.refused)}"
                time.sleep(0.1)
            refused = proxy.refused["results"]
            time.sleep(2)
            # Stopped, not asking again and again.
            assert proxy.refused["results"] == refused
            processed = server.runtime.status.chain(deployment.chain_id).processed
    body = health.json()
    print(f"stopped after {refused} result refusals at block {processed}: {body['error']}")
    assert health.status_code == 503 and body["status"] == "failed"
    error = body["error"]
    assert error.startswith("LogsUnreadable: ")
    assert f"block {block} " in error and deployment.position_manager in error
    assert proxy.http_url in error and "without a result cap" in error
    assert 1 <= refused <= MAX_REFUSALS
    assert processed < block
