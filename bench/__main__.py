"""`python -m bench`: every benchmark, one JSON object per line on stdout.

In order: backfill (Uniswap history), backfill (mixed Uniswap and Aave history), block-to-SSE
latency, the fan-out of one price update to 10,000 lending accounts, portfolio and time-travel
latency with 100,000 positions stored, and SSE delivery to 2,000 concurrent clients.
"""

from __future__ import annotations

from bench import api_latency, backfill, fanout, latency, sse_fanout
from defimon.logs import configure


def main() -> None:
    configure("warning")
    backfill.run(backfill.DEFAULT_LOGS, None, None)
    backfill.run(backfill.DEFAULT_MIXED_LOGS, None, None, aave=True)
    latency.run(blocks=500, warmup_steps=15)
    fanout.run(fanout.ACCOUNTS, fanout.SHARDS, fanout.REPEATS, bytewax=True)
    api_latency.run()
    sse_fanout.run()


if __name__ == "__main__":
    main()
