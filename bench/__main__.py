"""`python -m bench`: every benchmark, one JSON object per line on stdout."""

from __future__ import annotations

from bench import backfill, latency
from defimon.logs import configure


def main() -> None:
    configure("warning")
    backfill.run(backfill.DEFAULT_LOGS, None, None)
    latency.run(blocks=500, warmup_steps=15)


if __name__ == "__main__":
    main()
