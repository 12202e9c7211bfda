"""The head answers from memory (api/head_view.py) are the store path's, to the byte.

A real flow indexes the devnet (Uniswap V3, Aave V3, Morpho Blue, tracked ERC-20 balances) in
this process; its API builds the head view from the store and follows the stored rows. For
every wallet, `GET /v1/portfolio/{wallet}` at the head (served from memory, the response says
so) must equal `?at=` the same block (always the store path), before and after live blocks
with swaps, LP actions and Aave supplies and borrows; so must `/v1/positions` and
`/v1/aggregate` for filters on every structural condition (owner, token, pool, protocol) and
on values, pages after a cursor, and groupings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from devnet.lending import LendingSimulator
from schemas.filters import tokens_of
from tests.conftest import Devnet
from tests.support import LiveServer, block_number, live_server


def head_from_view(server: LiveServer, wallet: str, block: int) -> dict[str, Any]:
    """The wallet's head portfolio once the view answers it at `block` or later."""
    deadline = time.monotonic() + 60
    while True:
        response = server.get(f"/v1/portfolio/{wallet}")
        assert response.status_code == 200, response.text
        body = response.json()
        if (
            response.headers.get("x-served-from") == "head-view"
            and body["as_of"]["block_number"] >= block
        ):
            return body
        assert time.monotonic() < deadline, f"the head view did not answer at {block}"
        time.sleep(0.05)


def assert_view_is_store(server: LiveServer, wallets: list[str], block: int) -> int:
    subjects = 0
    for wallet in wallets:
        view = head_from_view(server, wallet, block)
        at = view["as_of"]["block_number"]
        store = server.get(f"/v1/portfolio/{wallet}", at=str(at))
        assert store.status_code == 200, store.text
        assert "x-served-from" not in store.headers
        assert view == store.json(), f"{wallet}: the head view differs from the store at {at}"
        subjects += len(view["positions"]) + len(view["lending"]) + len(view["balances"])
    return subjects


def test_head_portfolio_from_memory_equals_the_store_path(devnet: Devnet, tmp_path: Path) -> None:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment)
    for _ in range(3):
        devnet.simulator.step()
        lending.step()
    wallets = devnet.deployment.wallets
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        chain = devnet.deployment.chain_id
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain, head)
        built = assert_view_is_store(server, wallets, head)
        assert built > 0, "no subject in any wallet's portfolio"

        # Live blocks: the view follows the stored rows, not the store.
        for _ in range(2):
            devnet.simulator.step()
            lending.step()
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain, head)
        followed = assert_view_is_store(server, wallets, head)
        assert followed > 0
        kinds = {
            name: sum(
                len(httpx.get(f"{server.url}/v1/portfolio/{w}", timeout=30).json()[name])
                for w in wallets
            )
            for name in ("positions", "lending", "balances")
        }
        assert all(kinds.values()), f"a section is empty in every wallet, nothing compared: {kinds}"


def from_view(server: LiveServer, path: str, block: int, **params: Any) -> httpx.Response:
    """A head request once the view answers it at `block` or later."""
    deadline = time.monotonic() + 60
    while True:
        response = server.get(path, **params)
        assert response.status_code == 200, response.text
        if (
            response.headers.get("x-served-from") == "head-view"
            and response.json()["as_of"]["block_number"] >= block
        ):
            return response
        assert time.monotonic() < deadline, f"the head view did not answer {path} at {block}"
        time.sleep(0.05)


def assert_lists_are_store(server: LiveServer, wallets: list[str], block: int) -> int:
    """/v1/positions and /v1/aggregate at the head equal `?at=` the block the view answered
    at, byte for byte, for every kind of filter; the subjects compared."""
    everything = from_view(server, "/v1/positions", block, limit=1000).json()["positions"]
    tokens = sorted({t for s in everything for t in tokens_of(s)})
    pools = sorted({s["pool"] for s in everything})
    values = sorted(s["value_usd"] or 0.0 for s in everything)
    asks: list[tuple[str, dict[str, Any]]] = [
        ("/v1/positions", {"limit": 1000}),
        ("/v1/positions", {"owner": wallets[:2], "limit": 1000}),
        ("/v1/positions", {"token": tokens[:1], "limit": 1000}),
        ("/v1/positions", {"token": tokens[1:3], "protocol": "aave_v3", "limit": 1000}),
        ("/v1/positions", {"pool": pools[:2], "limit": 1000}),
        ("/v1/positions", {"min_value_usd": str(values[len(values) // 2]), "limit": 1000}),
        ("/v1/positions", {"sort": "value_usd", "order": "desc", "limit": 3}),
        ("/v1/positions", {"sort": "health_factor", "limit": 2}),
        ("/v1/aggregate", {"group_by": "protocol", "metrics": "count,sum(value_usd)"}),
        (
            "/v1/aggregate",
            {
                "group_by": "token,owner",
                "metrics": "count,avg(value_usd),quantile(0.9,value_usd),min(health_factor)",
            },
        ),
        ("/v1/aggregate", {"group_by": "pool", "owner": wallets[:3], "metrics": "sum(il_usd)"}),
    ]
    for path, params in asks:
        view = from_view(server, path, block, **params)
        at = view.json()["as_of"]["block_number"]
        store = server.get(path, **params, at=str(at))
        assert store.status_code == 200, store.text
        assert "x-served-from" not in store.headers
        assert view.content == store.content, f"{path} {params}: view differs from the store"
        cursor = view.json().get("next_cursor")
        if cursor is not None:  # the next page after the view's cursor, both ways
            page = from_view(server, path, at, **params, cursor=cursor)
            if page.json()["as_of"]["block_number"] == at:
                stored = server.get(path, **params, cursor=cursor, at=str(at))
                assert page.content == stored.content, f"{path} {params}: second page differs"
    return len(everything)


def test_head_positions_and_aggregates_from_memory_equal_the_store_path(
    devnet: Devnet, tmp_path: Path
) -> None:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment)
    for _ in range(3):
        devnet.simulator.step()
        lending.step()
    wallets = devnet.deployment.wallets
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        chain = devnet.deployment.chain_id
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain, head)
        assert assert_lists_are_store(server, wallets, head) > 0
        for _ in range(2):
            devnet.simulator.step()
            lending.step()
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain, head)
        assert assert_lists_are_store(server, wallets, head) > 0
