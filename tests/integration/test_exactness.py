"""Positions from the live flow and from time travel equal the position manager's own answers.

A seeded market runs on anvil with the real Uniswap V3 bytecode. For every position at the
head and at earlier blocks, the amounts defimon serves equal an eth_call of decreaseLiquidity
for the full liquidity, from the owner, at that block: to the wei.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tests.conftest import Devnet
from tests.support import (
    LiveServer,
    Npm,
    block_number,
    collect_all,
    live_server,
    minted_token_ids,
)


def check_block(server: LiveServer, net: Devnet, npm: Npm, block: int, max_token: int) -> int:
    """Compare every position that exists at `block`; returns how many were checked."""
    by_owner: dict[str, list[int]] = defaultdict(list)
    for token_id in range(1, max_token + 1):
        owner = npm.owner_of(token_id, block)
        if owner is not None:
            by_owner[owner].append(token_id)
    checked = 0
    for owner, token_ids in by_owner.items():
        response = server.get(f"/v1/portfolio/{owner}", at=str(block))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["as_of"]["block_number"] == block
        served = {int(p["token_id"]): p for p in body["positions"]}
        assert sorted(served) == sorted(token_ids), f"owner {owner} at {block}"
        for token_id in token_ids:
            p = served[token_id]
            onchain = npm.position(token_id, block)
            liquidity, tick_lower, tick_upper = onchain[7], onchain[5], onchain[6]
            assert (int(p["liquidity"]), p["tick_lower"], p["tick_upper"]) == (
                liquidity,
                tick_lower,
                tick_upper,
            )
            expected = npm.decrease_all(token_id, liquidity, owner, block) if liquidity else (0, 0)
            assert (int(p["amount0"]), int(p["amount1"])) == expected, (
                f"token {token_id} at block {block}"
            )
            # Uncollected fees (and withdrawn principal) equal a static collect, to the wei.
            assert (int(p["uncollected0"]), int(p["uncollected1"])) == collect_all(
                npm, token_id, owner, block
            ), f"fees of token {token_id} at block {block}"
            assert p["block_number"] == block
            checked += 1
    return checked


def test_amounts_equal_decrease_liquidity_at_head_and_in_the_past(
    devnet: Devnet, tmp_path: Path
) -> None:
    for _ in range(40):
        devnet.simulator.step()
    npm = Npm(devnet.rpc_url, devnet.deployment.position_manager)
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        backfill_head = block_number(devnet.rpc_url)
        server.wait_processed(devnet.deployment.chain_id, backfill_head)
        # More market activity while the flow follows the head live.
        for _ in range(15):
            devnet.simulator.step()
        head = block_number(devnet.rpc_url)
        server.wait_processed(devnet.deployment.chain_id, head)

        max_token = max(minted_token_ids(devnet.rpc_url, npm.address))
        start = devnet.deployment.start_block
        samples = sorted(
            {head, backfill_head, *(start + (head - start) * k // 6 for k in range(1, 6))}
        )
        checked = sum(check_block(server, devnet, npm, b, max_token) for b in samples)
        assert checked >= 40

        # The head answer without `at` is the same as with at=head.
        owner = next(iter(devnet.simulator.all_positions().values()))
        now = server.get(f"/v1/portfolio/{owner}").json()
        at_head = server.get(f"/v1/portfolio/{owner}", at=str(head)).json()
        assert now == at_head


def test_bad_input_gets_a_clear_4xx(devnet: Devnet, tmp_path: Path) -> None:
    devnet.simulator.step()
    with live_server(tmp_path, [devnet.endpoint(ws=False)]) as server:
        head = block_number(devnet.rpc_url)
        server.wait_processed(devnet.deployment.chain_id, head)
        wallet = devnet.deployment.wallets[0]
        cases = [
            ("/v1/portfolio/0xnot-an-address", {}, 400, "not an address"),
            (f"/v1/portfolio/{wallet}", {"at": "yesterday"}, 400, "neither a block number"),
            (f"/v1/portfolio/{wallet}", {"at": str(head + 1000)}, 404, "not indexed yet"),
            (f"/v1/portfolio/{wallet}", {"at": "2000-01-01T00:00:00Z"}, 404, "no indexed block"),
            (f"/v1/portfolio/{wallet}", {"at": "2030-01-01T00:00:00"}, 400, "time zone"),
            ("/v1/positions", {"owner": "0x12"}, 400, "not an address"),
            ("/v1/positions", {"limit": "0"}, 422, "limit"),
            ("/v1/positions", {"protocol": "sushi"}, 400, "unknown protocol"),
            ("/v1/portfolio/" + wallet, {"chain_id": "5"}, 400, "not indexed here"),
        ]
        for path, params, status, words in cases:
            response = server.get(path, **params)
            assert response.status_code == status, (path, params, response.text)
            assert words in response.json()["detail"], response.text


def test_positions_pages_and_filters_agree_with_portfolios(devnet: Devnet, tmp_path: Path) -> None:
    for _ in range(25):
        devnet.simulator.step()
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        head = block_number(devnet.rpc_url)
        server.wait_processed(devnet.deployment.chain_id, head)
        expected = {
            f"{devnet.deployment.chain_id}:{devnet.deployment.position_manager}:{token_id}": owner
            for token_id, owner in devnet.simulator.all_positions().items()
        }
        # Page through everything, 7 at a time.
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": "7", "at": str(head)} | ({"cursor": cursor} if cursor else {})
            page = server.get("/v1/positions", **params).json()
            assert len(page["positions"]) <= 7
            seen += [p["id"] for p in page["positions"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(seen), "pages are ordered by id"
        assert len(seen) == len(set(seen)), "a position appeared on two pages"
        assert set(seen) == set(expected)

        for owner in sorted(set(expected.values()))[:4]:
            listed = server.get("/v1/positions", owner=owner, limit="1000").json()["positions"]
            portfolio = server.get(f"/v1/portfolio/{owner}").json()["positions"]
            assert sorted(p["id"] for p in listed) == sorted(p["id"] for p in portfolio)
            assert all(p["owner"] == owner for p in listed)

        pool = devnet.deployment.pools[0].address
        in_pool = server.get("/v1/positions", pool=pool, limit="1000").json()["positions"]
        assert in_pool and all(p["pool"] == pool for p in in_pool)
        assert server.get("/v1/positions", protocol="uniswap_v3", limit="1").json()["positions"]
