"""Portfolio load and time-travel latency over HTTP with at least 100,000 positions stored.

A real devnet history (Uniswap V3 and Aave V3) is indexed by the real flow; its position
versions are then replicated under new token ids and owners (the same pools, ranges, fee
checkpoints and history, so every copy values like its original) until the store holds the
target number of positions. The server then answers, over real HTTP with no flow running:

- `portfolio_latency`: `GET /v1/portfolio/{wallet}` at the head, for wallets drawn at random;
- `time_travel_latency`: the same with `?at=` a random past block.

p50 and p99 in milliseconds, one JSON line each.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import devnet_with_history, emit, percentile
from defimon.logs import configure
from defimon.runtime import Runtime
from devnet.anvil import free_port
from flows.endpoint import ChainEndpoint
from ports.settings import Settings
from tests.support import LiveServer, block_number

TARGET_POSITIONS = 100_000
HISTORY_LOGS = 250_000
REQUESTS = 300

# Copy k of a version: token id + k * 10^9 (ids stay unique), the owner's last 8 hex digits
# replaced by k's (a new wallet per copy, the original wallets keep their own positions).
_REPLICATE = """
INSERT INTO defimon.position_versions
SELECT * REPLACE (
    concat(splitByChar(':', position_id)[1], ':', position_manager, ':',
           toString(token_id + k * 1000000000)) AS position_id,
    token_id + k * 1000000000 AS token_id,
    concat(substring(owner, 1, 34), leftPad(lower(hex(toUInt32(k))), 8, '0')) AS owner
)
FROM defimon.position_versions FINAL
ARRAY JOIN range(1, {copies:UInt32} + 1) AS k
"""


def run(target_positions: int = TARGET_POSITIONS, requests: int = REQUESTS) -> None:
    anvil, deployment, _ = devnet_with_history(HISTORY_LOGS, aave=True)
    data_dir = Path(tempfile.mkdtemp(prefix="defimon-bench-api-"))
    try:
        head = block_number(anvil.rpc_url)
        endpoint = ChainEndpoint(deployment.to_chain_config(), anvil.rpc_url, None)
        runtime = Runtime(Settings(data_dir=data_dir), [endpoint])
        runtime.start_flow()
        while runtime.status.chain(deployment.chain_id).processed < head:
            if runtime.status.error:
                raise RuntimeError(runtime.status.error)
            time.sleep(0.05)
        runtime.stop()

        store = Runtime(Settings(data_dir=data_dir), [endpoint]).store
        count = "SELECT uniqExact(position_id) FROM defimon.position_versions"
        originals = int(store.scalar(count))
        copies = max(0, -(-target_positions // originals) - 1)
        store.command(_REPLICATE, {"copies": copies})
        store.command("OPTIMIZE TABLE defimon.position_versions FINAL")
        positions = int(store.scalar(count))
        wallets = [
            r[0]
            for r in store.rows(
                "SELECT DISTINCT owner FROM defimon.position_versions ORDER BY owner"
            )
        ]
        store.close()

        server = LiveServer(
            Runtime(Settings(data_dir=data_dir), [endpoint]), free_port(), start_flow=False
        ).start()
        rng = random.Random(7)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                for name, at in (("portfolio_latency", False), ("time_travel_latency", True)):
                    samples = []
                    for _ in range(requests):
                        wallet = rng.choice(wallets)
                        params = (
                            {"at": str(rng.randint(deployment.start_block, head))} if at else {}
                        )
                        started = time.perf_counter()
                        response = client.get(f"/v1/portfolio/{wallet}", params=params)
                        samples.append((time.perf_counter() - started) * 1000)
                        response.raise_for_status()
                    emit(
                        name,
                        percentile(samples, 50),
                        "ms",
                        p50_ms=round(percentile(samples, 50), 2),
                        p99_ms=round(percentile(samples, 99), 2),
                        requests=requests,
                        positions=positions,
                        wallets=len(wallets),
                        blocks=head - deployment.start_block + 1,
                        store="chdb",
                    )
        finally:
            server.stop()
    finally:
        anvil.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--positions", type=int, default=TARGET_POSITIONS)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args()
    configure("warning")
    run(args.positions, args.requests)


if __name__ == "__main__":
    main()
