"""Operations: /metrics series that exist and move, and a graceful stop that loses nothing.

Both against a real devnet: the metrics are scraped from a live server (real HTTP, parsed with
prometheus_client's own parser) before and after the chain moves; the stop sends SIGTERM or
SIGINT to `defimon run`, a separate process, while blocks keep arriving live.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak
from prometheus_client.parser import text_string_to_metric_families

from ports.store import Store
from protocols.uniswap_v3 import events
from tests.conftest import Devnet
from tests.defimon_process import DefimonProcess
from tests.integration.test_dead_letters import LOG1_EMITTER, emit
from tests.support import LiveServer, block_number, live_server, rpc, stream_reader

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: LiveServer) -> tuple[set[str], Samples]:
    """The metric families served, and every sample by (name, labels)."""
    response = server.get("/metrics")
    assert response.status_code == 200
    families, samples = set(), {}
    for family in text_string_to_metric_families(response.text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def dead_letter_one_log(devnet: Devnet) -> None:
    """A real malformed log from a watched pool (see test_dead_letters)."""
    pool = devnet.deployment.pools[0].address
    original = rpc(devnet.rpc_url, "eth_getCode", [pool, "latest"])
    rpc(devnet.rpc_url, "anvil_setCode", [pool, LOG1_EMITTER])
    try:
        emit(devnet, pool, "0x" + keccak(text="NotAUniswapEvent(uint256)").hex(), bytes(32))
    finally:
        rpc(devnet.rpc_url, "anvil_setCode", [pool, original])


def test_metrics_exist_and_move(devnet: Devnet, tmp_path: Path) -> None:
    chain_id = devnet.deployment.chain_id
    chain = str(chain_id)
    for _ in range(5):
        devnet.simulator.step()
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        stop, received = threading.Event(), list[dict[str, object]]()
        stream_reader(server.url + "/v1/stream", ("position",), received, stop)
        try:
            deadline = time.monotonic() + 30
            while server.app.state.hub.clients < 1:
                assert time.monotonic() < deadline, "the stream client did not connect"
                time.sleep(0.02)
            families, before = scrape(server)
            for _ in range(5):
                devnet.simulator.step()
            dead_letter_one_log(devnet)
            devnet.simulator.step()
            server.wait_processed(chain_id, block_number(devnet.rpc_url))
            _, after = scrape(server)
        finally:
            stop.set()

    expected = {
        "defimon_head_lag_blocks",
        "defimon_head_lag_seconds",
        "defimon_logs_read",
        "defimon_position_updates",
        "defimon_sink_flush_seconds",
        "defimon_sink_insert_seconds",
        "defimon_bus_lag_seconds",
        "defimon_sse_clients",
        "defimon_dead_letters",
        "defimon_processed_block",
    }
    assert expected <= families, expected - families
    # Counters move with the chain (Prometheus rates them into logs and positions per second).
    for name, labels in [
        ("defimon_logs_read_total", {"chain_id": chain}),
        ("defimon_blocks_processed_total", {"chain_id": chain}),
        ("defimon_position_updates_total", {"chain_id": chain, "protocol": "uniswap_v3"}),
        ("defimon_dead_letters_total", {"chain_id": chain}),
        ("defimon_sink_flush_seconds_count", {}),
        ("defimon_sink_insert_seconds_count", {"table": "position_versions"}),
        ("defimon_sink_insert_seconds_count", {"table": "raw_logs"}),
        ("defimon_bus_lag_seconds_count", {}),
        ("defimon_processed_block", {"chain_id": chain}),
    ]:
        assert value(after, name, **labels) > value(before, name, **labels), (name, labels)
    assert value(after, "defimon_dead_letters_total", chain_id=chain) - value(
        before, "defimon_dead_letters_total", chain_id=chain
    ) == pytest.approx(1)
    assert value(after, "defimon_processed_block", chain_id=chain) == block_number(devnet.rpc_url)
    assert value(after, "defimon_sse_clients") == 1
    assert value(after, "defimon_head_lag_blocks", chain_id=chain) == 0
    # The devnet's blocks carry wall-clock timestamps: caught up means seconds behind, not hours.
    assert 0 <= value(after, "defimon_head_lag_seconds", chain_id=chain) < 600
    assert received, "the stream client saw no position event"


@pytest.fixture
def moving_chain(devnet: Devnet) -> Iterator[Devnet]:
    """The devnet with its market stepping in a thread until the test ends."""
    stop = threading.Event()
    thread = threading.Thread(
        target=devnet.simulator.run, args=(stop,), kwargs={"interval": 0.2}, daemon=True
    )
    for _ in range(5):
        devnet.simulator.step()
    thread.start()
    try:
        yield devnet
    finally:
        stop.set()
        thread.join(30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_mid_live_flushes_everything_and_exits_0(
    moving_chain: Devnet, tmp_path: Path, sig: signal.Signals, request: pytest.FixtureRequest
) -> None:
    devnet = moving_chain
    config = tmp_path / "chain.toml"
    config.write_text(devnet.deployment.to_chain_config().to_toml())
    data_dir = tmp_path / "data"
    process = DefimonProcess(
        config, devnet.rpc_url, data_dir, tmp_path / "run.log", ws_url=devnet.anvil.ws_url
    )
    request.addfinalizer(process.close)
    process.wait_live()
    # Blocks keep arriving live: stop once one more than the backfill's is processed (a fixed
    # pause was too short on a loaded machine, where the first live block can take seconds).
    live_at = int((process.chain() or {})["processed"])
    process.wait_processed(live_at + 1)
    asked = time.monotonic()
    code = process.terminate(sig, timeout=60)
    took = time.monotonic() - asked
    assert code == 0, process.tail()
    assert took < 30, f"stopping took {took:.1f} s"
    stopped = [e for e in process.events() if e.get("event") == "flow.stopped"]
    assert len(stopped) == 1, process.tail()
    processed = int(stopped[0]["processed"][str(devnet.deployment.chain_id)])
    assert any(e.get("event") == "run.stopped" for e in process.events())

    # Everything the process counted as processed is stored, and nothing half-stored beyond it.
    npm = devnet.deployment.position_manager
    topics = [events.INCREASE_LIQUIDITY, events.DECREASE_LIQUIDITY, events.COLLECT, events.TRANSFER]
    on_chain = rpc(
        devnet.rpc_url,
        "eth_getLogs",
        [{"fromBlock": "0x0", "toBlock": hex(processed), "address": npm, "topics": [topics]}],
    )
    store = Store.connect(None, data_dir)
    try:
        assert store.scalar("SELECT max(number) FROM defimon.blocks FINAL") == processed
        assert store.scalar("SELECT max(block_number) FROM defimon.raw_logs FINAL") <= processed
        versions = store.scalar("SELECT count() FROM defimon.position_versions FINAL")
        assert versions == len(on_chain) > 0
        # Live, every block is stored (a backfill stores the blocks with logs): none missing.
        backfilled = [e["block"] for e in process.events() if e.get("event") == "backfill.progress"]
        live = store.scalar(
            "SELECT uniqExact(number) FROM defimon.blocks FINAL WHERE number > {n:UInt64}",
            {"n": backfilled[-1]},
        )
        assert processed > backfilled[-1]  # stopped live
        assert live == processed - backfilled[-1]
    finally:
        store.close()
