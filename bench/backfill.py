"""Backfill throughput, end to end: eth_getLogs -> decode -> state -> chDB, on one worker.

The clock runs from starting the flow to the moment every block up to the head is stored.
With `--aave` the history mixes Aave V3 (supplies, borrows, repays, withdrawals, a feed update
every block) into the Uniswap V3 swaps and position changes, and the result says how many of
the processed logs came from each protocol. The JSON-RPC requests the backfill made ride
along (`rpc_get_logs`, `rpc_batches`, `rpc_requests`: HTTP requests, a batch counting once),
since load changes the seconds but not the requests.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import devnet_with_history, emit
from defimon.logs import configure
from defimon.runtime import Runtime
from devnet.deploy import Deployment
from flows.endpoint import ChainEndpoint
from ports.metrics import METRICS
from ports.settings import Settings
from ports.store import Store
from tests.support import block_number

DEFAULT_LOGS = 650_000  # logs of every kind; about 200k of them are watched
# Mixed history: Aave actions emit more watched logs per transaction than swaps (whose token
# Transfers are not watched); this many logs of every kind hold about 200k watched ones.
DEFAULT_MIXED_LOGS = 430_000
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def run(
    target_logs: int, rpc_url: str | None, deployment_file: str | None, *, aave: bool = False
) -> None:
    if rpc_url and deployment_file:
        anvil = None
        deployment = Deployment.from_json(Path(deployment_file).read_text())
        generated = None
    else:
        anvil, deployment, generated = devnet_with_history(target_logs, aave=aave)
        rpc_url = anvil.rpc_url
    data_dir = Path(tempfile.mkdtemp(prefix="defimon-bench-"))
    try:
        head = block_number(rpc_url)
        requests_before = rpc_requests()
        runtime = Runtime(
            Settings(data_dir=data_dir),
            [ChainEndpoint(deployment.to_chain_config(), rpc_url, None)],
        )
        started = time.perf_counter()
        runtime.start_flow()
        while runtime.status.chain(deployment.chain_id).processed < head:
            if runtime.status.error:
                raise RuntimeError(runtime.status.error)
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        store = runtime.store
        logs = int(store.scalar("SELECT count() FROM defimon.raw_logs FINAL"))
        versions = int(store.scalar("SELECT count() FROM defimon.position_versions FINAL"))
        params: dict[str, Any] = {
            "logs": logs,
            "blocks": head - deployment.start_block + 1,
            "position_versions": versions,
        }
        params |= logs_split(store, deployment)
        params["protocol_logs_per_second"] = round(params["protocol_logs"] / elapsed)
        if aave:
            params |= _logs_by_protocol(store, deployment)
            params["account_versions"] = int(
                store.scalar("SELECT count() FROM defimon.account_versions FINAL")
            )
        runtime.stop()
        requests = rpc_requests() - requests_before
        params |= {
            "rpc_get_logs": requests["eth_getLogs"],
            "rpc_batches": sum(n for m, n in requests.items() if m.startswith("batch:")),
            "rpc_requests": requests.total(),
        }
        params |= {"workers": 1, "store": "chdb"}
        if generated is not None:
            params["history_logs"] = generated  # of every kind, watched or not
        emit(
            "backfill_mixed_logs_per_second" if aave else "backfill_logs_per_second",
            logs / elapsed,
            "logs/s",
            seconds=round(elapsed, 3),
            **params,
        )
    finally:
        if anvil is not None:
            anvil.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def rpc_requests() -> collections.Counter[str]:
    """The process's JSON-RPC HTTP requests so far by method (ports/metrics.py; a batch
    counts once, as `batch:<method>`), whatever their outcome."""
    out: collections.Counter[str] = collections.Counter()
    for metric in METRICS.registry.collect():
        if metric.name == "defimon_rpc_requests":
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["method"]] += int(sample.value)
    return out


def _logs_by_protocol(store: Store, deployment: Deployment) -> dict[str, int]:
    """Stored logs by the role of their address: Uniswap pools (from the `pools` table) and
    the position manager / factory, Aave tokens (`aave_reserves`), pool / configurator /
    oracle, and feeds (`oracle_prices`); anything else is counted as other, and of those the
    `Transfer`s (the tracked wallets' ERC-20 transfers) once more apart."""
    aave = deployment.aave
    uniswap_core = [deployment.position_manager, deployment.factory]
    aave_core = [aave.pool, aave.pool_configurator, aave.oracle] if aave else []
    row = store.rows(
        """
        WITH
            (SELECT groupUniqArray(pool) FROM defimon.pools FINAL) AS pools,
            (SELECT arrayDistinct(arrayFlatten(groupArray(
                [a_token, stable_debt_token, variable_debt_token])))
             FROM defimon.aave_reserves FINAL) AS aave_tokens,
            (SELECT groupUniqArray(feed) FROM defimon.oracle_prices FINAL) AS feeds
        SELECT
            countIf(has(pools, address)),
            countIf(has({uniswap_core:Array(String)}, address)),
            countIf(has(aave_tokens, address)),
            countIf(has({aave_core:Array(String)}, address)),
            countIf(has(feeds, address)),
            countIf(topics[1] = {transfer:String} AND NOT has(pools, address)
                AND NOT has({uniswap_core:Array(String)}, address)
                AND NOT has(aave_tokens, address) AND NOT has({aave_core:Array(String)}, address)),
            count()
        FROM defimon.raw_logs FINAL
        """,
        {"uniswap_core": uniswap_core, "aave_core": aave_core, "transfer": TRANSFER_TOPIC},
    )[0]
    pools, manager, tokens, core, feeds, transfers, total = (int(v) for v in row)
    uniswap, aave_logs = pools + manager, tokens + core + feeds
    return {
        "uniswap_logs": uniswap,
        "uniswap_pool_logs": pools,
        "aave_logs": aave_logs,
        "aave_token_logs": tokens,
        "aave_feed_logs": feeds,
        "other_logs": total - uniswap - aave_logs,
        "tracked_transfer_logs": transfers,
    }


def logs_split(store: Store, deployment: Deployment) -> dict[str, int]:
    """Stored logs apart: the tracked wallets' ERC-20 `Transfer`s (a `Transfer` from a
    contract that is neither Uniswap's nor Aave's) and the protocol logs (all the others)."""
    roles = _logs_by_protocol(store, deployment)
    total = roles["uniswap_logs"] + roles["aave_logs"] + roles["other_logs"]
    transfers = roles["tracked_transfer_logs"]
    return {"protocol_logs": total - transfers, "tracked_transfer_logs": transfers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--logs",
        type=int,
        default=None,
        help=f"history size in logs of every kind (default {DEFAULT_LOGS}, about 200k watched; "
        f"{DEFAULT_MIXED_LOGS} with --aave)",
    )
    parser.add_argument("--aave", action="store_true", help="mixed Uniswap and Aave history")
    parser.add_argument("--rpc", default=None, help="use this devnet instead of a new one")
    parser.add_argument("--deployment", default=None, help="its deployment JSON")
    args = parser.parse_args()
    configure("warning")
    logs = args.logs or (DEFAULT_MIXED_LOGS if args.aave else DEFAULT_LOGS)
    run(logs, args.rpc, args.deployment, aave=args.aave)


if __name__ == "__main__":
    main()
