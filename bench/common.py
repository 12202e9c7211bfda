"""Shared pieces of the benchmarks: a devnet with history, and the JSON result line."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

from devnet.anvil import Anvil
from devnet.deploy import Deployment, deploy
from devnet.history import generate_history


def emit(name: str, value: float, unit: str, **params: Any) -> None:
    line = {"name": name, "value": round(value, 3), "unit": unit, **params}
    line.setdefault("python", platform.python_version())
    print(json.dumps(line), flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def devnet_with_history(target_logs: int, *, aave: bool = False) -> tuple[Anvil, Deployment, int]:
    """A fresh devnet (Uniswap V3 and Aave V3) with `target_logs` logs of history; with `aave`,
    the history mixes Aave actions and feed updates into the Uniswap swaps and positions."""
    anvil = Anvil().start()
    try:
        started = time.perf_counter()
        # generate_history moves PriceFeed sources: the feeds layout
        deployment = deploy(anvil.rpc_url, layout="feeds")
        logs = generate_history(anvil.rpc_url, deployment, target_logs, aave=aave)
    except BaseException:
        anvil.stop()
        raise
    kind = "Uniswap and Aave" if aave else "Uniswap"
    print(
        f"# devnet history ({kind}): {logs} logs in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return anvil, deployment, logs
