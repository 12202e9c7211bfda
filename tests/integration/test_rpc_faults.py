"""Flaky providers, exact results.

A fault-injecting JSON-RPC proxy (tests/fault_proxy.py: a real HTTP and WebSocket server in
front of anvil) answers 10% of requests with 429s (Retry-After), hangs past the client's
timeout, dropped connections, Alchemy-style range refusals and garbage (non-JSON, truncated
JSON, wrong ids, logs missing fields, batches missing answers), and drops the newHeads
WebSocket now and then. The flow reads through it, and through a second endpoint that fails
half of its requests, while the markets run; its stored state equals a run straight against
anvil and the position manager's own answers, and /metrics counts the faults it survived.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devnet.anvil import Anvil, free_port
from devnet.lending import LendingSimulator
from flows.endpoint import ChainEndpoint
from flows.rpc import RpcClient, RpcOptions, redact_url
from ports.metrics import METRICS
from ports.store import Store
from schemas.errors import ConfigError, RangeTooLarge
from tests.conftest import Devnet
from tests.fault_proxy import ALL_KINDS, HTTP_KINDS, FaultProxy
from tests.integration.test_exactness import check_block
from tests.support import Npm, block_number, chain_tables, live_server, minted_token_ids

# Short timeouts and backoffs, so that a hang costs a second, not thirty.
FAST = RpcOptions(timeout=1.0, backoff_base=0.05, backoff_cap=1.0, budget_seconds=30.0)
# Tables whose rows depend only on the chain (not on how or when it was read); `version`
# (the insert order) and `is_deleted` aside.


def stored_state(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    store = Store.connect(None, data_dir)
    try:
        return chain_tables(store)
    finally:
        store.close()


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


# Two fault sequences: seed 7 once lost a pool's token metadata to a fault that came after
# the pool was announced (reads are all-or-nothing now), seed 5 with one request fewer stored
# a feed's logs from before its announcement (children are read from their own block now).
@pytest.mark.parametrize("seed", [5, 7])
def test_flow_through_faulty_providers_stays_exact(
    devnet: Devnet, tmp_path: Path, seed: int
) -> None:
    chain_id = devnet.deployment.chain_id
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=11)
    for _ in range(10):  # history for the backfill
        devnet.simulator.step()
    lending.tick()
    faulty_dir, direct_dir = tmp_path / "faulty", tmp_path / "direct"
    with (
        FaultProxy(devnet.rpc_url, devnet.anvil.ws_url, fault_rate=0.1, seed=seed) as main,
        FaultProxy(devnet.rpc_url, fault_rate=0.5, seed=6) as flaky,
    ):
        endpoint = ChainEndpoint(
            devnet.deployment.to_chain_config(),
            main.http_url,
            main.ws_url,
            rpc_urls=(flaky.http_url,),
            rpc_options=FAST,
        )
        with live_server(faulty_dir, [endpoint]) as server:
            server.wait_processed(chain_id, block_number(devnet.rpc_url), timeout=300)
            # The markets keep running while the flow follows them live through the faults,
            # until every kind of fault has been injected (a few dozen rounds).
            rounds = 0
            while main.missing_kinds(ALL_KINDS) and rounds < 200:
                devnet.simulator.step()
                if rounds % 4 == 0:
                    lending.tick()
                rounds += 1
                if rounds % 10 == 0:
                    server.wait_processed(chain_id, block_number(devnet.rpc_url), timeout=300)
            head = block_number(devnet.rpc_url)
            server.wait_processed(chain_id, head, timeout=300)
            # Exact: every position equals the position manager's own answers at the head.
            npm = Npm(devnet.rpc_url, devnet.deployment.position_manager)
            max_token = max(minted_token_ids(devnet.rpc_url, npm.address))
            assert check_block(server, devnet, npm, head, max_token) >= 20
            metrics = server.get("/metrics").text

    print(
        f"faults injected: main {dict(main.counts)} of {main.requests} requests, "
        f"{main.ws_connections} ws connections; flaky {dict(flaky.counts)} of {flaky.requests}"
    )
    # Every kind of fault was injected, on the main endpoint; the flaky one took its share.
    assert main.missing_kinds(ALL_KINDS) == [], dict(main.counts)
    assert sum(flaky.counts.values()) > 0 and flaky.requests > 0
    assert main.ws_connections > main.counts["ws_drop"] >= 1, "the flow reconnected"

    # /metrics shows the retries, per endpoint and reason, and the range refusals.
    retries: dict[tuple[str, str], float] = {
        (labels["endpoint"], labels["reason"]): value
        for labels, value in metric_samples(metrics, "defimon_rpc_retries_total")
    }
    for reason in ("rate_limited", "timeout", "connection", "malformed"):
        assert retries.get((main.http_url, reason), 0) > 0, (reason, retries)
    assert sum(v for (ep, _r), v in retries.items() if ep == flaky.http_url) > 0
    refused = [
        value
        for labels, value in metric_samples(metrics, "defimon_rpc_requests_total")
        if labels["endpoint"] == main.http_url and labels["outcome"] == "range_too_large"
    ]
    assert sum(refused) >= main.counts["range_too_large"] > 0

    # The same state as a run straight against the node.
    with live_server(direct_dir, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, head, timeout=300)
    faulty, direct = stored_state(faulty_dir), stored_state(direct_dir)
    for table in direct:
        assert faulty[table] == direct[table], table
    assert len(direct["defimon.position_versions"]) > 50
    assert len(direct["defimon.account_versions"]) > 10
    assert direct["defimon.dead_letters"] == []


def test_client_rotates_past_a_dead_endpoint_and_honours_retry_after(devnet: Devnet) -> None:
    """Calls through a dead endpoint and a 20%-faulty one all answer what the node answers;
    the dead one is cooled down, not retried in a loop; a 429's Retry-After is waited out."""
    for _ in range(3):
        devnet.simulator.step()
    head = block_number(devnet.rpc_url)
    dead = f"http://127.0.0.1:{free_port()}/v2/secret-api-key-0123456789"
    direct = RpcClient(devnet.rpc_url)
    with FaultProxy(devnet.rpc_url, fault_rate=0.2, seed=3, hang_seconds=1.0) as proxy:
        client = RpcClient(
            [dead, proxy.http_url], options=FAST, chain_id=devnet.deployment.chain_id
        )
        assert client.endpoint_labels == (redact_url(dead), proxy.http_url)
        assert "secret" not in client.endpoint_labels[0]
        refused = 0
        for n in range(1, head + 1, max(1, head // 40)):
            assert client.block_number() >= head
            number = hex(n)
            expected = direct.call("eth_getBlockByNumber", [number, False])
            (got,) = client.batch([("eth_getBlockByNumber", [number, False])])
            assert got == expected
            flt = {"fromBlock": number, "toBlock": number}
            try:
                assert client.get_logs(flt) == direct.get_logs(flt)
            except RangeTooLarge as exc:  # surfaces to the caller, with the hint
                assert exc.hint == (n, n)
                refused += 1
        client.close()
    assert refused == proxy.counts["range_too_large"] > 0
    assert all(proxy.counts[k] > 0 for k in HTTP_KINDS), dict(proxy.counts)
    # The dead endpoint was tried a handful of times (its cooldown grows), not once per call.
    dead_tries = METRICS.registry.get_sample_value(
        "defimon_rpc_retries_total", {"endpoint": client.endpoint_labels[0], "reason": "connection"}
    )
    assert dead_tries is not None and 1 <= dead_tries < proxy.requests / 2
    # After a 429 saying "Retry-After: 1" the next request came no sooner than a second later
    # (the client is sequential here, so the next request is its retry or its next call).
    history = proxy.history
    waits = [
        after - at
        for (at, kind), (after, _next) in itertools.pairwise(history)
        if kind == "rate_limited:seconds"
    ]
    assert waits and min(waits) >= 1.0, waits


def test_an_endpoint_of_another_chain_is_never_used(devnet: Devnet) -> None:
    devnet.simulator.step()
    head = block_number(devnet.rpc_url)
    with Anvil(chain_id=devnet.deployment.chain_id + 1) as other:
        # Mixed in with the right one: disabled at first use, every answer from the right chain.
        client = RpcClient([other.rpc_url, devnet.rpc_url], chain_id=devnet.deployment.chain_id)
        try:
            assert [client.block_number() for _ in range(6)] == [head] * 6
            assert client.chain_id() == devnet.deployment.chain_id
        finally:
            client.close()
        # Alone: a clear configuration error, not a fault retried forever.
        alone = RpcClient(other.rpc_url, chain_id=devnet.deployment.chain_id)
        try:
            with pytest.raises(ConfigError, match="serves chain"):
                alone.block_number()
        finally:
            alone.close()
