"""Portfolio load and time-travel latency over HTTP with at least 100,000 positions stored.

A real devnet history (Uniswap V3 and Aave V3) is indexed by the real flow; its position
versions are then replicated under new token ids and owners (the same pools, ranges, fee
checkpoints and history, so every copy values like its original) until the store holds the
target number of positions. The server then answers, over real HTTP with no flow running:

- `portfolio_latency`: `GET /v1/portfolio/{wallet}` at the head, for wallets drawn at random,
  as a client asks it: answered from the API's head view (api/head_view.py, built from the
  store when the server starts; every answer checked to say so);
- `portfolio_store_latency`: side by side with it (alternating, the same wallets), the same
  head block through the store path (`?at=` the view's block, which reads the store), every
  answer checked equal to the view's;
- `time_travel_latency`: the same with `?at=` a random past block;
- `positions_latency` / `positions_store_latency` and `aggregate_latency` /
  `aggregate_store_latency`: `GET /v1/positions?owner=` a random wallet (sorted by value) and
  `GET /v1/aggregate?owner=` five random wallets (by protocol: count, value, lowest health
  factor), from the head view and side by side through the store path (`?at=` the view's
  block), alternating, every answer byte-equal to the view's;
- `alert_seed_seconds`: every subject at the head valued (what the alert engine's start-up
  seed cost before it read only what its rules select), from the head view and from the store,
  one after the other in this process, once the server's own seed is done (`server_seed_s`:
  it, from the view built to done; no rules here);
- `head_view_bytes_per_row` / `head_view_bytes_per_position`: what the view holds (rows,
  their values and keys, its dicts and indexes, each object counted once; interned strings
  shared with the rest of the process counted too), and the time it took to build.

p50 and p99 in milliseconds, one JSON line each.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from api.head_view import ChainView, HeadViews, TableView
from api.queries import Queries
from bench.common import devnet_with_history, emit, percentile
from defimon.logs import configure
from defimon.runtime import Runtime
from devnet.anvil import free_port
from flows.endpoint import ChainEndpoint
from ports.settings import Settings
from schemas.filters import Filter
from tests.support import LiveServer, block_number

TARGET_POSITIONS = 100_000
HISTORY_LOGS = 250_000
REQUESTS = 300
# The server starts once its store answers; the head view builds after (minutes at 1,000,000
# positions on a loaded machine), then the alert engine's seed values every subject from it.
STARTUP_SECONDS = 1200

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


def run(
    target_positions: int = TARGET_POSITIONS,
    requests: int = REQUESTS,
    history_logs: int = HISTORY_LOGS,
) -> None:
    anvil, deployment, _ = devnet_with_history(history_logs, aave=True)
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

        started = time.perf_counter()
        server = LiveServer(
            Runtime(Settings(data_dir=data_dir), [endpoint]), free_port(), start_flow=False
        ).start(timeout=STARTUP_SECONDS)
        views: HeadViews = server.app.state.head_views
        while views.ready(deployment.chain_id) is None:
            time.sleep(0.05)
        built_s = time.perf_counter() - started
        # The alert engine's seed values every subject once the view is built: let it finish
        # before timing requests beside it.
        while deployment.chain_id not in server.app.state.alerts.seeded:
            time.sleep(0.05)
        seeded_s = time.perf_counter() - started - built_s
        view = views.views[deployment.chain_id]
        rng = random.Random(7)
        common = {
            "requests": requests,
            "positions": positions,
            "wallets": len(wallets),
            "blocks": head - deployment.start_block + 1,
            "store": "chdb",
        }
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                samples: dict[str, list[float]] = {"view": [], "store": [], "past": []}
                for _ in range(requests):
                    wallet = rng.choice(wallets)
                    path = f"/v1/portfolio/{wallet}"
                    from_view, took = timed(client, path, {})
                    assert from_view.headers.get("x-served-from") == "head-view", path
                    samples["view"].append(took)
                    at = str(from_view.json()["as_of"]["block_number"])
                    from_store, took = timed(client, path, {"at": at})
                    assert from_store.json() == from_view.json(), f"{path}: view != store"
                    samples["store"].append(took)
                for _ in range(requests):
                    at = str(rng.randint(deployment.start_block, head))
                    samples["past"].append(
                        timed(client, f"/v1/portfolio/{rng.choice(wallets)}", {"at": at})[1]
                    )
                for _ in range(requests):
                    lists: list[tuple[str, str, dict[str, Any]]] = [
                        (
                            "positions",
                            "/v1/positions",
                            {"owner": rng.choice(wallets), "sort": "value_usd", "order": "desc"},
                        ),
                        (
                            "aggregate",
                            "/v1/aggregate",
                            {
                                "owner": rng.sample(wallets, 5),
                                "group_by": "protocol",
                                "metrics": "count,sum(value_usd),min(health_factor)",
                            },
                        ),
                    ]
                    for key, path, params in lists:
                        from_view, took = timed(client, path, params)
                        assert from_view.headers.get("x-served-from") == "head-view", path
                        samples.setdefault(key, []).append(took)
                        at = str(from_view.json()["as_of"]["block_number"])
                        from_store, took = timed(client, path, {**params, "at": at})
                        assert from_store.content == from_view.content, f"{path}: view != store"
                        samples.setdefault(f"{key}_store", []).append(took)
                for name, key, served in (
                    ("portfolio_latency", "view", "head view"),
                    ("portfolio_store_latency", "store", "store (?at= the head)"),
                    ("time_travel_latency", "past", "store"),
                    ("positions_latency", "positions", "head view"),
                    ("positions_store_latency", "positions_store", "store (?at= the head)"),
                    ("aggregate_latency", "aggregate", "head view"),
                    ("aggregate_store_latency", "aggregate_store", "store (?at= the head)"),
                ):
                    emit(
                        name,
                        percentile(samples[key], 50),
                        "ms",
                        p50_ms=round(percentile(samples[key], 50), 2),
                        p99_ms=round(percentile(samples[key], 99), 2),
                        served_by=served,
                        **common,
                    )
            seeds = seed_seconds(server, views, deployment.chain_id)
            emit(
                "alert_seed_seconds",
                seeds["view_s"],
                "s",
                **seeds,
                server_seed_s=round(seeded_s, 2),
                **common,
            )
            held = view_bytes(view)
            rows = view.subjects()
            emit(
                "head_view_bytes_per_row",
                held / rows,
                "bytes",
                rows=rows,
                bytes=held,
                build_s=round(built_s, 2),
                **common,
            )
            emit("head_view_bytes_per_position", held / positions, "bytes", bytes=held, **common)
        finally:
            server.stop()
    finally:
        anvil.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def seed_seconds(server: LiveServer, views: HeadViews, chain: int) -> dict[str, Any]:
    """Every subject at the head valued from the view, then from the store (the same ones)."""
    queries: Queries = server.app.state.queries
    started = time.perf_counter()
    found = views.subjects_across(Filter(), [chain])
    view_s = time.perf_counter() - started
    assert found is not None, "the head view did not answer"
    (as_of,), subjects = found
    started = time.perf_counter()
    stored = queries.subjects(as_of, Filter())
    store_s = time.perf_counter() - started
    assert stored == subjects, "the store's subjects differ from the view's"
    return {
        "view_s": round(view_s, 2),
        "store_s": round(store_s, 2),
        "subjects": len(subjects),
    }


def timed(client: httpx.Client, path: str, params: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = client.get(path, params=params)
    took = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return response, took


def view_bytes(view: ChainView) -> int:
    """The view's memory: every object it reaches (tables, rows, keys, values, indexes), each
    once (shared strings and small ints too, an upper bound for what the view adds)."""
    seen: set[int] = set()
    total = 0
    stack: list[object] = [view.tables, view.blocks, view.pending]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, TableView):
            stack.extend([item.rows, item._indexes, item._feeds, item.columns, item.types])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--positions", type=int, default=TARGET_POSITIONS)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--history-logs", type=int, default=HISTORY_LOGS)
    args = parser.parse_args()
    configure("warning")
    run(args.positions, args.requests, args.history_logs)


if __name__ == "__main__":
    main()
