"""`python -m bench`: every benchmark, one JSON object per line on stdout.

In order: backfill (Uniswap history), backfill (mixed Uniswap and Aave history), block-to-SSE
latency, and the fan-out of one price update to 10,000 lending accounts.
"""

from __future__ import annotations

from bench import backfill, fanout, latency
from defimon.logs import configure


def main() -> None:
    configure("warning")
    backfill.run(backfill.DEFAULT_LOGS, None, None)
    backfill.run(backfill.DEFAULT_MIXED_LOGS, None, None, aave=True)
    latency.run(blocks=500, warmup_steps=15)
    fanout.run(fanout.ACCOUNTS, fanout.SHARDS, fanout.REPEATS, bytewax=True)


if __name__ == "__main__":
    main()
