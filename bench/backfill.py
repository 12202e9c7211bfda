"""Backfill throughput, end to end: eth_getLogs -> decode -> state -> chDB, on one worker.

The clock runs from starting the flow to the moment every block up to the head is stored.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import devnet_with_history, emit
from defimon.logs import configure
from defimon.runtime import Runtime
from defimon.settings import Settings
from devnet.deploy import Deployment
from flows.source import ChainEndpoint
from tests.support import block_number

DEFAULT_LOGS = 650_000  # logs of every kind; about 200k of them are watched


def run(target_logs: int, rpc_url: str | None, deployment_file: str | None) -> None:
    if rpc_url and deployment_file:
        anvil = None
        deployment = Deployment.from_json(Path(deployment_file).read_text())
    else:
        anvil, deployment, _ = devnet_with_history(target_logs)
        rpc_url = anvil.rpc_url
    data_dir = Path(tempfile.mkdtemp(prefix="defimon-bench-"))
    try:
        head = block_number(rpc_url)
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
        logs = int(runtime.store.scalar("SELECT count() FROM defimon.raw_logs FINAL"))
        versions = int(runtime.store.scalar("SELECT count() FROM defimon.position_versions FINAL"))
        runtime.stop()
        params = {
            "logs": logs,
            "blocks": head - deployment.start_block + 1,
            "position_versions": versions,
            "workers": 1,
            "store": "chdb",
        }
        emit(
            "backfill_logs_per_second",
            logs / elapsed,
            "logs/s",
            seconds=round(elapsed, 3),
            **params,
        )
    finally:
        if anvil is not None:
            anvil.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--logs",
        type=int,
        default=650_000,
        help="history size in logs of every kind (about 200k watched logs)",
    )
    parser.add_argument("--rpc", default=None, help="use this devnet instead of a new one")
    parser.add_argument("--deployment", default=None, help="its deployment JSON")
    args = parser.parse_args()
    configure("warning")
    run(args.logs, args.rpc, args.deployment)


if __name__ == "__main__":
    main()
