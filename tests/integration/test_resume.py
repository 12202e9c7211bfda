"""A stopped flow resumes where it stopped: no version lost, none duplicated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ports.store import Store
from protocols.uniswap_v3 import events
from tests.conftest import Devnet
from tests.support import block_number, live_server, rpc

KEY = "position_id, block_number, log_index, block_hash"
CONTENT = (
    "position_id, block_number, log_index, block_hash, event, owner, liquidity, deposited0, "
    "deposited1, withdrawn0, withdrawn1, collected0, collected1, burned"
)


def stored_versions(data_dir: Path) -> tuple[list[tuple[Any, ...]], int, int]:
    store = Store.connect(None, data_dir)
    try:
        rows = store.rows(f"SELECT {CONTENT} FROM defimon.position_versions FINAL ORDER BY {KEY}")
        total = store.scalar("SELECT count() FROM defimon.position_versions FINAL")
        distinct = store.scalar(f"SELECT uniqExact({KEY}) FROM defimon.position_versions FINAL")
        return rows, int(total), int(distinct)
    finally:
        store.close()


def stored_balances(data_dir: Path) -> list[tuple[Any, ...]]:
    store = Store.connect(None, data_dir)
    try:
        return store.rows(
            "SELECT wallet, token, block_number, block_hash, balance "
            "FROM defimon.token_balances FINAL ORDER BY wallet, token, block_number"
        )
    finally:
        store.close()


def npm_event_count(devnet: Devnet) -> int:
    """Every position-manager event makes exactly one version."""
    topics = [events.INCREASE_LIQUIDITY, events.DECREASE_LIQUIDITY, events.COLLECT, events.TRANSFER]
    logs = rpc(
        devnet.rpc_url,
        "eth_getLogs",
        [
            {
                "fromBlock": "0x0",
                "toBlock": "latest",
                "address": devnet.deployment.position_manager,
                "topics": [topics],
            }
        ],
    )
    return len(logs)


def test_restart_resumes_without_losing_or_duplicating_versions(
    devnet: Devnet, tmp_path: Path
) -> None:
    chain_id = devnet.deployment.chain_id
    resumed_dir, fresh_dir = tmp_path / "resumed", tmp_path / "fresh"
    for _ in range(20):
        devnet.simulator.step()
    with live_server(resumed_dir, [devnet.endpoint()], epoch_seconds=0.2) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        for _ in range(5):  # some blocks arrive live before the stop
            devnet.simulator.step()
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        first_stop = server.runtime.status.chain(chain_id).processed
    # The chain moves on while defimon is down.
    for _ in range(20):
        devnet.simulator.step()
    with live_server(resumed_dir, [devnet.endpoint()], epoch_seconds=0.2) as server:
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain_id, head)
        # It resumed: the first block this run processed follows the one the last run stopped at.
        resumed_from = server.runtime.status.chain(chain_id).first_block
        assert first_stop - 5 <= resumed_from <= first_stop + 1, (resumed_from, first_stop)
    with live_server(fresh_dir, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, head)

    resumed, resumed_total, resumed_distinct = stored_versions(resumed_dir)
    fresh, _, _ = stored_versions(fresh_dir)
    assert resumed_total == resumed_distinct, "a version is stored twice"
    assert len(resumed) == npm_event_count(devnet) > 50
    assert resumed == fresh
    # The tracked wallets survive the restart (the source's cursor carries them, the market
    # state their balances): balances move on exactly as in one uninterrupted run.
    balances = stored_balances(resumed_dir)
    assert len(balances) > 50
    assert balances == stored_balances(fresh_dir)
