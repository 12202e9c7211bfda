"""The head portfolio from memory (api/head_view.py) is the store path's, to the byte.

A real flow indexes the devnet (Uniswap V3, Aave V3, Morpho Blue, tracked ERC-20 balances) in
this process; its API builds the head view from the store and follows the stored rows. For
every wallet, `GET /v1/portfolio/{wallet}` at the head (served from memory, the response says
so) must equal `?at=` the same block (always the store path), before and after live blocks
with swaps, LP actions and Aave supplies and borrows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from devnet.lending import LendingSimulator
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
