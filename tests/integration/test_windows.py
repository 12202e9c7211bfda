"""Per-position windows: a replay of the same chain writes the same windows, row for row.

One run follows the scenario live (valuing at every block); a second run, on a fresh store,
reads the same chain as a backfill (valuing at the ends of its read ranges). The chain's
clock jumps between rounds so that minutes and hours end mid-scenario. Beyond equality:
lending windows close on what `Pool.getUserAccountData` says at the window's last block, quiet
subjects close every window, and the live stream carried the windows it closed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from devnet.lending import LendingSimulator
from ports.store import Store
from schemas.lending import BASE_UNIT, health_factor_float
from tests.conftest import Devnet
from tests.integration.test_aave_exactness import account_data
from tests.support import block_number, live_server, stream_reader

ROWS = (
    "SELECT * EXCEPT version FROM defimon.position_windows FINAL "
    "ORDER BY chain_id, subject_id, window, window_start"
)


def stored_windows(store: Store) -> list[dict[str, Any]]:
    return store.dicts(ROWS)


def test_windows_replay_row_for_row(devnet: Devnet, tmp_path: Path) -> None:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=5)
    lending.tick()
    chain_id = devnet.deployment.chain_id
    live_events: list[dict[str, Any]] = []
    with live_server(tmp_path / "live", [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        stop = threading.Event()
        stream_reader(f"{server.url}/v1/stream", ("window",), live_events, stop)
        try:
            for round_ in range(8):
                devnet.simulator.step()
                lending.tick()
                devnet.simulator.step()  # more moves inside the same minute
                if round_ == 3:
                    lending.shock("WETH", -12)
                lending.pass_time(23 * 60 + 7)  # the next logs land minutes later
            devnet.simulator.step()  # the first block of a new minute closes the last ones
            head = block_number(devnet.rpc_url)
            server.wait_processed(chain_id, head)
        finally:
            stop.set()
        live = stored_windows(server.runtime.store)
        history = server.get(
            f"/v1/positions/{live[0]['subject_id']}/history", window="1m", limit=10_000
        )
        assert history.status_code == 200, history.text

    with live_server(tmp_path / "replay", [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, head)
        replayed = stored_windows(server.runtime.store)

    assert live == replayed, "a replay must write the same windows, row for row"

    minutes = [w for w in live if w["window"] == "1m"]
    hours = [w for w in live if w["window"] == "1h"]
    assert len(minutes) > 100 and len(hours) >= 2
    assert any(w["fees_earned0"] or w["fees_earned1"] for w in minutes), "LPs earn fees"
    assert any(w["il_close"] for w in minutes), "prices move, so IL does"
    lending_rows = [w for w in minutes if w["protocol"] == "aave_v3"]
    assert any(w["hf_close"] is not None for w in lending_rows)

    # Quiet subjects close their windows too: every subject has a 1-minute row at every
    # boundary between its first and its last.
    starts = sorted({w["window_start"] for w in minutes})
    by_subject: dict[str, list[Any]] = {}
    for w in minutes:
        by_subject.setdefault(w["subject_id"], []).append(w["window_start"])
    for subject, seen in by_subject.items():
        first, last = starts.index(seen[0]), starts.index(seen[-1])
        assert seen == starts[first : last + 1], f"{subject} skipped a window"

    # A lending window's close is the Pool's own view at the window's last block.
    for w in lending_rows:
        collateral, debt, hf = account_data(devnet, w["owner"], w["close_block"])
        assert w["value_close"] == (collateral - debt) / BASE_UNIT, w
        assert w["hf_close"] == health_factor_float(hf), w

    # The stream carried the windows closed while it was live, as stored.
    assert live_events, "window events should reach the stream"
    stored = {
        (w["subject_id"], w["window"], w["window_start"].strftime("%Y-%m-%dT%H:%M:%SZ"))
        for w in live
    }
    for event in live_events:
        assert (event["id"], event["window"], event["start"]) in stored, event
    served = history.json()["windows"]
    assert [w["start"] for w in served] == sorted(w["start"] for w in served)
    assert {w["window"] for w in served} == {"1m"} and served
