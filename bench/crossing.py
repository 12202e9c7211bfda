"""What a block costs to cross from one Bytewax process to another: pickled there and back.

With the flow in several processes, the chain source and the market stage (keyed per chain)
sit in different ones, so every block is pickled in the source's process and unpickled in the
market's. Measured side by side in one run, alternating: the block as it crosses
(`BlockBatch`, its logs packed as columns: `schemas.chain.pack_logs`) and the same logs pickled
one `RawLog` at a time (how a block crossed before). The logs are shaped like the devnet
history's (a Uniswap swap's two token `Transfer`s and its `Swap`), each string an object of
its own as the JSON-RPC parser makes them.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable

from bench.common import emit
from schemas.chain import BlockBatch, BlockHeader, RawLog

TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
SWAP = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"


def _word(n: int) -> str:
    return f"{n:064x}"


def _blocks(blocks: int, logs_per_block: int) -> list[BlockBatch]:
    out = []
    for b in range(blocks):
        block_hash = "0x" + _word(10**9 + b)
        header = BlockHeader(31337, b, block_hash, "0x" + _word(10**9 + b - 1), 1_700_000_000 + b)
        logs = []
        for i in range(logs_per_block):
            swap, kind = divmod(i, 3)
            tx = "0x" + _word(b * logs_per_block + swap)
            trader = "0x" + _word(7_000 + swap % 500)
            if kind < 2:
                topics = (TRANSFER, "0x" + _word(7 + swap % 40), trader)
                address, data = f"0x{kind + 1:040x}", "0x" + _word(10**18 + i)
            else:
                topics = (SWAP, trader, trader)
                address = f"0x{100 + swap % 40:040x}"
                data = "0x" + "".join(_word(i * 31 + k) for k in range(5))
            # as the reader builds them: every string its own object (JSON parsed, lowered)
            logs.append(
                RawLog(
                    31337,
                    b,
                    block_hash.lower(),
                    i,
                    tx.lower(),
                    swap,
                    address.lower(),
                    tuple(map(str.lower, topics)),
                    data.lower(),
                )
            )
        out.append(BlockBatch(header, logs, blocks, False))
    return out


def _round_trip(obj: object) -> float:
    started = time.perf_counter()
    pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return time.perf_counter() - started


def run(blocks: int, logs_per_block: int, repeats: int) -> None:
    batches = _blocks(blocks, logs_per_block)
    logs = blocks * logs_per_block
    # Before: the logs pickled as RawLogs (a NamedTuple: Python code per log both ways).
    ways: dict[str, Callable[[], float]] = {
        "packed_columns": lambda: _round_trip(batches),
        "raw_log_tuples": lambda: _round_trip([(b.header, b.logs) for b in batches]),
    }
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(repeats):
        for name, way in ways.items():
            best[name] = min(best[name], way())
    for name, seconds in best.items():
        emit(
            "block_crossing_us_per_log",
            seconds / logs * 1e6,
            "us",
            pickled=name,
            logs=logs,
            blocks=blocks,
            note="pickle there and back (best of repeats, alternating)",
        )
    emit(
        "block_crossing_speedup",
        best["raw_log_tuples"] / best["packed_columns"],
        "x",
        layout="packed columns vs one RawLog at a time",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--logs-per-block", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    run(args.blocks, args.logs_per_block, args.repeats)


if __name__ == "__main__":
    main()
