"""`python -m bench`: every benchmark, one JSON object per line on stdout.

In order: backfill (Uniswap history), backfill (mixed Uniswap and Aave history), block-to-SSE
latency, the fan-out of one price update to 10,000 lending accounts, portfolio and time-travel
latency with 100,000 positions stored, time travel's one read in its SQL forms at
10,000,000 versions, SSE delivery to 2,000 and to 10,000 concurrent clients (held by
load-generator processes of their own; 10,000 also behind `defimon api --processes` 1 and 2,
back to back), wallet watch mode against full-protocol mode (time to
show a wallet, RPC calls), backfill throughput with 1 Bytewax worker, 2 worker threads and 2
processes, what a block costs to cross between processes (packed against one log at a time),
the flow state's memory per Uniswap position and per Aave account (10,000 and
100,000 of each), one block's USD price routing over 2,000 and 20,000 pools (full walk and
incremental), and per-block time on mainnet-size synthetic state.

Each runs in a process of its own, so none inherits another's heap, threads or garbage: the
numbers are what that benchmark alone would print.
"""

from __future__ import annotations

import subprocess
import sys

RUNS: tuple[tuple[str, ...], ...] = (
    ("bench.backfill",),
    ("bench.backfill", "--aave"),
    ("bench.latency",),
    ("bench.fanout", "--bytewax"),
    ("bench.api_latency",),
    ("bench.time_travel",),
    ("bench.sse_fanout",),
    ("bench.sse_fanout", "--clients", "10000", "--blocks", "20", "--load-processes", "4"),
    (
        "bench.sse_fanout",
        *("--clients", "10000", "--blocks", "20", "--load-processes", "4"),
        *("--api-processes", "1", "2"),
    ),
    ("bench.watch",),
    ("bench.backfill_workers",),
    ("bench.crossing",),
    ("bench.memory_per_position",),
    ("bench.routing",),
    ("bench.mainnet",),
    ("bench.stress",),
)


def main() -> None:
    failed = []
    for module, *args in RUNS:
        done = subprocess.run([sys.executable, "-m", module, *args], check=False)
        if done.returncode != 0:
            failed.append(" ".join((module, *args)))
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
