"""The mainnet-size benchmark (bench/mainnet.py) runs at a tiny size and reports what it says:
per-block p50/p99/max through the real undoable steps, memory per position, the profile."""

from __future__ import annotations

import json

import pytest

from bench import mainnet
from bench.__main__ import RUNS


def test_mainnet_bench_emits_its_lines(capsys: pytest.CaptureFixture[str]) -> None:
    mainnet.main(
        [
            "--pools", "60", "--positions", "1500", "--wallets", "300", "--accounts", "100",
            "--blocks", "20", "--hot", "20", "--profile-blocks", "3", "--top", "5",
        ]
    )  # fmt: skip
    lines = {
        line["name"]: line for line in map(json.loads, capsys.readouterr().out.strip().splitlines())
    }
    assert set(lines) == {
        "mainnet_block_p50_ms",
        "mainnet_block_p99_ms",
        "mainnet_block_max_ms",
        "mainnet_memory_per_position_bytes",
        "mainnet_undo_copy_ms",
        "mainnet_profile_top",
    }
    p50, p99 = lines["mainnet_block_p50_ms"], lines["mainnet_block_p99_ms"]
    assert lines["mainnet_block_max_ms"]["value"] >= p99["value"] >= p50["value"] > 0
    assert p50["positions"] == 1500 and p50["blocks"] == 20
    assert p50["logs_per_block"] == mainnet.LOGS_PER_BLOCK
    assert lines["mainnet_memory_per_position_bytes"]["value"] > 0
    undo = lines["mainnet_undo_copy_ms"]
    assert undo["value"] > 0 and undo["whole_state_pickle_ms"] > 0
    # the copy leaves out the journaled maps (positions, accounts, pools, balances, windows)
    assert 0 < undo["copy_bytes"] < undo["whole_state_bytes"] / 2
    top = lines["mainnet_profile_top"]["top"]
    assert len(top) == 5 and all(t["cumulative_ms_per_block"] > 0 for t in top)
    # the steps the flow runs are where the time goes
    assert any("flows/rewind.py" in t["function"] for t in top)


def test_mainnet_bench_runs_in_make_bench() -> None:
    assert ("bench.mainnet",) in RUNS
