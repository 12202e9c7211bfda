"""Providers as they are: limits they refuse with their own words, and pruned nodes.

A real HTTP proxy (tests/fault_proxy.py) in front of anvil answers as providers do:

- it refuses `eth_getLogs` over a block span (Infura's "range N exceeds limit of M"), over an
  address count (publicnode's "Please, specify less number of addresses") and over a result
  count (Infura's "query returned more than N results"), every time. The caps are scaled to
  the devnet (it holds a few thousand logs and a few dozen contracts, under the real 10,000
  logs and 1,000 addresses): what is checked is that a capped provider is read to the same
  state as the node itself, with a bounded number of refusals (each limit is learned once);
- it answers `balanceOf` at a numbered block as a pruned geth does ("missing trie node ...
  is not available"): the positions are all served, only the opening balances are missing,
  each one dead-lettered with a reason that says an archive node is needed, and never retried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devnet.lending import LendingSimulator
from flows.endpoint import ChainEndpoint
from ports.store import Store
from tests.conftest import Devnet
from tests.fault_proxy import FaultProxy, ProviderLimits
from tests.integration.test_exactness import check_block
from tests.integration.test_rpc_faults import FAST, metric_samples, stored_state
from tests.support import Npm, block_number, live_server, minted_token_ids

_BALANCE_OF = "0x70a08231"


def _history(devnet: Devnet, steps: int = 10) -> None:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=11)
    for i in range(steps):
        devnet.simulator.step()
        if i % 3 == 0:
            lending.tick()


def test_a_capped_provider_is_read_exactly_and_each_limit_is_learned_once(
    devnet: Devnet, tmp_path: Path
) -> None:
    chain_id = devnet.deployment.chain_id
    _history(devnet)
    limits = ProviderLimits(max_span=16, max_addresses=3, max_results=30)
    capped_dir, direct_dir = tmp_path / "capped", tmp_path / "direct"
    with FaultProxy(devnet.rpc_url, fault_rate=0.0, limits=limits) as proxy:
        endpoint = ChainEndpoint(
            devnet.deployment.to_chain_config(), proxy.http_url, rpc_options=FAST
        )
        with live_server(capped_dir, [endpoint]) as server:
            server.wait_processed(chain_id, block_number(devnet.rpc_url), timeout=300)
            # Live too: block-hash filters are cut by addresses.
            for _ in range(3):
                devnet.simulator.step()
            head = block_number(devnet.rpc_url)
            server.wait_processed(chain_id, head, timeout=300)
            metrics = server.get("/metrics").text
    print(f"refusals {dict(proxy.refused)} of {proxy.requests} requests")
    # Every kind of limit was hit, and each was learned: a named limit is refused once, an
    # unnamed address cap within a few quarterings, a result cap a few times (its density
    # changes along the chain).
    assert proxy.refused["span"] == 1, dict(proxy.refused)
    assert 1 <= proxy.refused["addresses"] <= 3, dict(proxy.refused)
    assert 1 <= proxy.refused["results"] <= 10, dict(proxy.refused)
    learned = {
        labels["limit"]: value
        for labels, value in metric_samples(metrics, "defimon_rpc_log_limit")
        if labels["endpoint"] == proxy.http_url
    }
    assert learned["max_span"] == 16 and learned["max_results"] == 30, learned
    assert learned["max_addresses"] <= 3, learned

    with live_server(direct_dir, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, head, timeout=300)
    capped, direct = stored_state(capped_dir), stored_state(direct_dir)
    for table in direct:
        assert capped[table] == direct[table], table
    assert len(direct["defimon.position_versions"]) > 20
    assert direct["defimon.dead_letters"] == []


def test_a_pruned_node_costs_the_opening_balances_only(devnet: Devnet, tmp_path: Path) -> None:
    chain_id = devnet.deployment.chain_id
    _history(devnet)
    head = block_number(devnet.rpc_url)
    pruned_dir, direct_dir = tmp_path / "pruned", tmp_path / "direct"
    limits = ProviderLimits(pruned_selectors=frozenset({_BALANCE_OF}))
    with FaultProxy(devnet.rpc_url, fault_rate=0.0, limits=limits) as proxy:
        endpoint = ChainEndpoint(
            devnet.deployment.to_chain_config(), proxy.http_url, rpc_options=FAST
        )
        with live_server(pruned_dir, [endpoint]) as server:
            server.wait_processed(chain_id, head, timeout=300)
            # Every position is served, exact.
            npm = Npm(devnet.rpc_url, devnet.deployment.position_manager)
            max_token = max(minted_token_ids(devnet.rpc_url, npm.address))
            assert check_block(server, devnet, npm, head, max_token) >= 20
            metrics = server.get("/metrics").text
    archive = {
        (labels["method"], labels["kind"]): value
        for labels, value in metric_samples(metrics, "defimon_rpc_archive_required_total")
    }
    assert sum(archive.values()) > 0 and all(k == "missing_trie_node" for _m, k in archive), archive

    pruned = stored_state(pruned_dir)
    dead = _dead_letters(pruned_dir)
    # Each unreadable opening balance is one dead letter that says why, read once (no retry).
    assert dead and all(stage == "erc20" for stage, _reason, _address in dead)
    assert all(
        "archive node" in reason and "missing trie node" in reason for _s, reason, _a in dead
    )
    assert proxy.refused["pruned"] == len(dead), (dict(proxy.refused), len(dead))
    assert pruned["defimon.token_balances"] == []

    with live_server(direct_dir, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, head, timeout=300)
    direct = stored_state(direct_dir)
    assert len(direct["defimon.token_balances"]) > 0
    # Everything that needed no state read is the same as a run against an archive node.
    for table in direct:
        if table not in ("defimon.token_balances", "defimon.dead_letters"):
            assert pruned[table] == direct[table], table


def _dead_letters(data_dir: Path) -> list[tuple[Any, ...]]:
    store = Store.connect(None, data_dir)
    try:
        return [
            tuple(row)
            for row in store.rows(
                "SELECT stage, reason, address FROM defimon.dead_letters FINAL ORDER BY ALL"
            )
        ]
    finally:
        store.close()
