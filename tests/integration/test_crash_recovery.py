"""SIGKILL at random moments: the store ends exactly as an uninterrupted run's.

A devnet with a mixed Uniswap V3 and Aave V3 history keeps moving (both simulators) while
`defimon run`, a separate process, is killed with SIGKILL again and again at moments drawn from
a seeded RNG: right after it starts (importing, opening chDB, migrating), while it backfills the
history and while it follows the head live. Each time it restarts on the same data directory.
When the chain stops, the last restart catches up to the head; then a fresh data directory
backfills the same chain to the same head in one go, and the two stores must hold the same rows
in every data table, with no version lost or stored twice, and the API must answer alike.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from random import Random
from typing import Any

from devnet.anvil import Anvil
from devnet.deploy import deploy
from devnet.history import generate_history
from devnet.main import DevnetSimulator
from ports.store import Store
from protocols.uniswap_v3 import events
from tests.defimon_process import DefimonProcess
from tests.support import block_number, chain_tables, rpc

SEED = 5
KILLS = 12
HISTORY_LOGS = 80_000  # a backfill of a few seconds, so kills land in the middle of it
# Killed runs snapshot often, so that each run between kills leaves progress behind.
KILLED_ENV = {"DEFIMON_EPOCH_SECONDS": "0.5"}
# Keys of the version tables: one row per event, never two.
VERSION_KEYS = {
    "position_versions": "chain_id, position_id, block_number, log_index, block_hash",
    "account_versions": "chain_id, owner, account_id, asset, block_number, log_index, block_hash",
    "comet_account_versions": (
        "chain_id, owner, account_id, asset, block_number, log_index, block_hash"
    ),
}


def kill_plan(rng: Random) -> list[str]:
    """When each kill lands, by phase: the first ones during the history's backfill (each
    restart resumes it), the later ones mostly live; some right after the process starts."""
    early = ["start", "backfill", "backfill", "backfill", "backfill"]
    late = ["start", "start", "live", "live", "live", "live", "backfill"]
    rng.shuffle(early)
    rng.shuffle(late)
    plan = early + late
    assert len(plan) == KILLS
    return plan


def phase_of(process: DefimonProcess) -> str:
    """Where the process is, from its own API: not serving yet, still processing the backfill
    (the reader may have read to the head long before), or processing live blocks."""
    chain = process.chain()
    if chain is None:
        return "startup"
    return "live" if chain.get("live") else "backfill"


def wait_phase(process: DefimonProcess, phase: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while phase_of(process) != phase:
        assert process.alive(), process.tail()
        assert time.monotonic() < deadline, f"not {phase}: {process.tail()}"
        time.sleep(0.02)


def kill_at_random(process: DefimonProcess, aim: str, rng: Random) -> tuple[str, float]:
    """SIGKILL the process at a random moment of the phase aimed at; where it really landed
    (a backfill aimed at may be over already) and the seconds since the process began."""
    if aim == "start":
        time.sleep(rng.uniform(0.05, 2.5))
    elif aim == "backfill":
        process.wait_logged("source.start", "source.resume")
        time.sleep(rng.uniform(0.3, 3.0))
    else:
        wait_phase(process, "live")
        time.sleep(rng.uniform(0.2, 2.5))
    assert process.alive(), process.tail()
    landed = phase_of(process)
    process.kill()
    return landed, time.monotonic() - process.started_at


def store_contents(data_dir: Path) -> dict[str, Any]:
    """Every chain-data table's rows (tests.support.chain_tables), and per version table the
    row count against the count of distinct keys."""
    store = Store.connect(None, data_dir)
    try:
        out: dict[str, Any] = dict(chain_tables(store))
        for table, key in VERSION_KEYS.items():
            total = store.scalar(f"SELECT count() FROM defimon.{table} FINAL")
            distinct = store.scalar(f"SELECT uniqExact({key}) FROM defimon.{table} FINAL")
            out[f"{table}:count_vs_keys"] = (int(total), int(distinct))
        return out
    finally:
        store.close()


def position_manager_events(rpc_url: str, position_manager: str) -> int:
    """Every position-manager event makes exactly one position version."""
    topics = [events.INCREASE_LIQUIDITY, events.DECREASE_LIQUIDITY, events.COLLECT, events.TRANSFER]
    logs = rpc(
        rpc_url,
        "eth_getLogs",
        [
            {
                "fromBlock": "0x0",
                "toBlock": "latest",
                "address": position_manager,
                "topics": [topics],
            }
        ],
    )
    return len(logs)


def api_answers(process: DefimonProcess, wallets: list[str], blocks: list[int]) -> dict[str, Any]:
    answers = {}
    for wallet in wallets:
        for block in blocks:
            response = process.get(f"/v1/portfolio/{wallet}", at=block)
            assert response.status_code == 200, response.text
            answers[f"{wallet}@{block}"] = response.json()
    return answers


def describe_difference(table: str, ours: list[Any], theirs: list[Any]) -> str:
    a, b = Counter(map(tuple, ours)), Counter(map(tuple, theirs))
    only_ours, only_theirs = list((a - b).elements()), list((b - a).elements())
    return (
        f"{table}: {len(ours)} rows after kills, {len(theirs)} uninterrupted; "
        f"only after kills {only_ours[:3]} ({len(only_ours)}), "
        f"only uninterrupted {only_theirs[:3]} ({len(only_theirs)})"
    )


def test_sigkill_at_random_moments_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    rng = Random(SEED)
    started = time.monotonic()
    anvil = Anvil().start()
    spawned: list[DefimonProcess] = []
    try:
        # generate_history moves PriceFeed sources: the feeds layout (price sources on the
        # mainnet layout have tests of their own; a crash is a crash on either)
        deployment = deploy(anvil.rpc_url, layout="feeds")
        generate_history(anvil.rpc_url, deployment, HISTORY_LOGS, aave=True)
        simulator = DevnetSimulator(anvil.rpc_url, deployment, seed=SEED)
        config = tmp_path / "chain.toml"
        config.write_text(deployment.to_chain_config().to_toml())
        killed_dir, fresh_dir = tmp_path / "killed", tmp_path / "fresh"

        def process(data_dir: Path, name: str, env: dict[str, str] | None = None) -> DefimonProcess:
            spawned.append(
                DefimonProcess(
                    config,
                    anvil.rpc_url,
                    data_dir,
                    tmp_path / f"{name}.log",
                    ws_url=anvil.ws_url,
                    env=env,
                )
            )
            return spawned[-1]

        # The chain moves during the kills and while defimon is down.
        stop = threading.Event()
        moving = threading.Thread(
            target=simulator.run, args=(stop,), kwargs={"interval": 0.3}, daemon=True
        )
        moving.start()
        landings: list[tuple[str, str, float, int | None]] = []
        try:
            for i, aim in enumerate(kill_plan(rng)):
                run = process(killed_dir, f"killed-{i:02}", KILLED_ENV)
                landed, after = kill_at_random(run, aim, rng)
                starts = [e for e in run.events() if e.get("event", "").startswith("source.")]
                resumed_at = starts[0]["from_block"] if starts else None
                landings.append((aim, landed, round(after, 2), resumed_at))
        finally:
            stop.set()
            moving.join(60)
        assert not moving.is_alive()
        head = block_number(anvil.rpc_url)
        print(f"kills (aimed, landed, seconds after spawn, resumed at block): {landings}")
        assert len(landings) == KILLS

        wallets = sorted(rng.sample(simulator.wallets(), 3))
        blocks = sorted({rng.randint(deployment.start_block, head) for _ in range(3)} | {head})

        last = process(killed_dir, "killed-final")
        last.wait_processed(head)
        resumed = last.events()
        assert any(e.get("event") == "source.resume" for e in resumed), last.tail()
        after_kills = api_answers(last, wallets, blocks)
        assert last.terminate() == 0, last.tail()

        fresh = process(fresh_dir, "fresh")
        fresh.wait_processed(head)
        uninterrupted = api_answers(fresh, wallets, blocks)
        assert fresh.terminate() == 0, fresh.tail()
        simulator.close()
        npm_events = position_manager_events(anvil.rpc_url, deployment.position_manager)
    finally:
        for spawn in spawned:
            spawn.close()
        anvil.stop()

    ours, theirs = store_contents(killed_dir), store_contents(fresh_dir)
    assert sorted(ours) == sorted(theirs)
    different = [
        describe_difference(t, ours[t], theirs[t])
        for t in sorted(ours)
        if not t.endswith(":count_vs_keys") and ours[t] != theirs[t]
    ]
    assert not different, "\n".join(different)
    for table in VERSION_KEYS:
        total, distinct = ours[f"{table}:count_vs_keys"]
        assert total == distinct, f"{table}: {total} rows for {distinct} keys"
        assert ours[f"{table}:count_vs_keys"] == theirs[f"{table}:count_vs_keys"]
    assert len(ours["defimon.position_versions"]) == npm_events > 100
    assert len(ours["defimon.account_versions"]) > 100
    assert after_kills == uninterrupted
    assert len(after_kills) == len(wallets) * len(blocks)
    assert any(a["positions"] or a["lending"] for a in after_kills.values())
    print(f"crash test: {KILLS} kills, {time.monotonic() - started:.0f} s")


def test_kill_plan_spreads_the_kills() -> None:
    plan = kill_plan(Random(SEED))
    assert len(plan) == KILLS >= 10
    assert {"start", "backfill", "live"} <= set(plan)
