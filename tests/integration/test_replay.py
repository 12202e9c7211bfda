"""A backfill replayed from a recording of the node's answers stores exactly what the live
backfill stored, in every worker layout (1 process, 2 worker threads, 2 processes): the replay
is what measures scaling without the node in the race (bench.backfill_workers), so it must not
change a row. A call the recording lacks is answered with an error naming it."""

from __future__ import annotations

from pathlib import Path

import httpx

from bench.backfill_workers import run_layout
from devnet.replay import NOT_RECORDED, Proxy, Recording, Replay
from flows.rows import COLUMNS
from tests.conftest import Devnet
from tests.integration.test_reorg import Market
from tests.support import block_number


def test_replayed_layouts_store_what_the_live_backfill_stores(
    devnet: Devnet, tmp_path: Path
) -> None:
    market = Market.on(devnet, seed=9)
    for _ in range(4):
        market.round()
    head = block_number(devnet.rpc_url)
    deployment = devnet.deployment

    with Proxy(devnet.rpc_url) as proxy:
        live = run_layout(proxy.url, deployment, head, 1, 1, tables=True)
    recording = tmp_path / "calls.jsonl.gz"
    calls = proxy.recorder.save(recording)
    assert calls == len(Recording.load(recording)) > 10

    with Replay(recording) as replay:
        assert block_number(replay.url) == head
        layouts = {
            (p, w): run_layout(replay.url, deployment, head, p, w, tables=True)
            for p, w in ((1, 1), (1, 2), (2, 1))
        }
        stats = replay.stats()
        # Not recorded: an error that names the call (the flow would stop on it, not go on).
        body = {"jsonrpc": "2.0", "id": 7, "method": "eth_getBalance", "params": ["0x1", "0x2"]}
        missing = httpx.post(replay.url, json=body, timeout=5).json()

    assert stats["missed"] == 0, stats
    assert stats["answered"] > 0
    assert missing["id"] == 7 and missing["error"]["code"] == NOT_RECORDED
    assert "eth_getBalance" in missing["error"]["message"]
    assert live.tables is not None
    assert live.tables["defimon.position_versions"] and live.tables["defimon.account_versions"]
    for layout, done in layouts.items():
        assert done.held == live.held, layout
        assert done.tables is not None
        for table in COLUMNS:
            assert done.tables[table] == live.tables[table], f"{table}: {layout} differs from live"
