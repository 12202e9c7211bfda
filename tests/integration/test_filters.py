"""One filter grammar: the same positions whether asked through /v1/positions or the stream.

A live scenario (LP positions and Aave accounts, prices moving) is watched by two stream
clients, one unfiltered and one with a filter evaluated on the server. The filtered client
gets exactly the unfiltered events the filter matches, and each of them is listed, with the
same figures, by /v1/positions with the same filter at that block.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from devnet.lending import LendingSimulator
from protocols.registry import PROTOCOLS
from schemas.filters import Filter
from tests.conftest import Devnet
from tests.support import block_number, live_server, stream_reader


def test_stream_and_positions_agree_on_a_filter(devnet: Devnet, tmp_path: Path) -> None:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=3)
    for _ in range(3):
        devnet.simulator.step()
    lending.tick()
    chain_id = devnet.deployment.chain_id
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        everything = server.get("/v1/positions", limit=1000).json()["positions"]
        values = sorted(p["value_usd"] or 0.0 for p in everything)
        assert {p["protocol"] for p in everything} == {"uniswap_v3", "aave_v3"}
        median = values[len(values) // 2]
        params: dict[str, Any] = {
            "protocol": ["uniswap_v3", "aave_v3"],
            "min_value_usd": str(median),
        }
        flt = Filter.parse(
            {"protocol": params["protocol"], "min_value_usd": [str(median)]}, PROTOCOLS
        )

        unfiltered: list[dict[str, Any]] = []
        filtered: list[dict[str, Any]] = []
        stop = threading.Event()
        for url, p, into in (
            (f"{server.url}/v1/stream", {}, unfiltered),
            (f"{server.url}/v1/stream", params, filtered),
        ):
            stream_reader(url, ("position", "account"), into, stop, p)
        start_block = block_number(devnet.rpc_url)
        try:
            for _ in range(3):
                devnet.simulator.step()
                lending.tick()
            lending.shock("WETH", -10)
            devnet.simulator.step()
            end_block = block_number(devnet.rpc_url)
            server.wait_processed(chain_id, end_block)
            # The stream is behind the store by a hop through the event loop.
            deadline = threading.Event()
            deadline.wait(1.0)
        finally:
            stop.set()

        key = lambda e: (e["id"], e["block_number"])  # noqa: E731
        assert filtered, "the filter should match some live updates"
        # The devnet's finality depth is the default 64: live blocks are not confirmed yet.
        assert all(e["confirmed"] is False for e in unfiltered)
        assert len(filtered) < len(unfiltered), "and not all of them"
        assert sorted(map(key, filtered)) == sorted(key(e) for e in unfiltered if flt.matches(e))

        for event in filtered[:: max(1, len(filtered) // 25)]:
            page = server.get(
                "/v1/positions", **params, at=str(event["block_number"]), limit=1000
            ).json()
            listed = {p["id"]: p for p in page["positions"]}
            assert event["id"] in listed, event
            assert listed[event["id"]]["value_usd"] == event["value_usd"]

        # Sorting and paging with a cursor walk the same set, in order.
        walked: list[dict[str, Any]] = []
        cursor = None
        while True:
            extra: dict[str, str] = {"cursor": cursor} if cursor else {}
            page = server.get(
                "/v1/positions", **params, sort="value_usd", order="desc", limit=3, **extra
            ).json()
            walked += page["positions"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        listed_now = server.get("/v1/positions", **params, limit=1000).json()["positions"]
        assert sorted(p["id"] for p in walked) == sorted(p["id"] for p in listed_now)
        assert [p["value_usd"] for p in walked] == sorted(
            (p["value_usd"] for p in walked), reverse=True
        )
        # Aggregates see the same set, with the same figures.
        groups = server.get(
            "/v1/aggregate", **params, group_by="protocol", metrics="count,sum(value_usd)"
        ).json()["groups"]
        for group in groups:
            members = [p for p in listed_now if p["protocol"] == group["key"]["protocol"]]
            assert group["metrics"]["count"] == len(members)
            assert group["metrics"]["sum(value_usd)"] == pytest.approx(
                sum(p["value_usd"] for p in members), rel=1e-12
            )
        assert sum(g["metrics"]["count"] for g in groups) == len(listed_now)
        # The diff over the scenario: its parts sum to the change in the portfolio's value.
        owners = {e["owner"] for e in unfiltered}
        for owner in sorted(owners)[:6]:
            diff = server.get(
                f"/v1/portfolio/{owner}/diff", **{"from": str(start_block), "to": str(end_block)}
            ).json()
            parts = diff["explained"]
            # (float sums in another order: exact to the last bits of a value of 10^8 USD)
            assert sum(parts.values()) == pytest.approx(diff["change"], rel=1e-12, abs=1e-6)
            total = {
                at: server.get(f"/v1/portfolio/{owner}", at=str(at)).json()["total_usd"]
                for at in (start_block, end_block)
            }
            assert diff["value_from"] == pytest.approx(total[start_block], rel=1e-12, abs=1e-6)
            assert diff["value_to"] == pytest.approx(total[end_block], rel=1e-12, abs=1e-6)
            for subject in diff["subjects"]:
                if subject["protocol"] == "uniswap_v3":
                    assert subject["fees"] >= 0 and subject["interest"] == 0
        bad = server.get("/v1/positions", min_health_factor="x")
        assert bad.status_code == 400 and "not a number" in bad.json()["detail"]
