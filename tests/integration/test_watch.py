"""Wallet watch mode: a wallet whose history defimon never indexed is shown exactly.

A devnet market (Uniswap V3 and Aave V3) runs for a while with the wallets building LP NFTs
and Aave accounts before defimon starts; defimon then starts in watch mode for one wallet
(from the head: no backfill) and must show its positions, uncollected fees and Aave account
equal to the contracts' own views at the block it answers for; after more market rounds
(following events only; the wallet also mints and receives NFTs) still equal; and a second
wallet added with `POST /v1/watch` on the running instance likewise. Bad input gets a 4xx.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from devnet.lending import LendingSimulator
from devnet.rpc import RpcClient
from flows.endpoint import ChainEndpoint
from tests.conftest import Devnet, start_devnet
from tests.integration.test_aave_exactness import account_data, served
from tests.integration.test_balances import balances_of, fund
from tests.support import LiveServer, Npm, block_number, collect_all, live_server

SHOW_TIMEOUT = 60.0  # generous: 2 cores shared with other tests (bench/ measures the speed)


def wait_shown(server: LiveServer, wallet: str, positions: int) -> dict[str, Any]:
    """The portfolio once it shows the wallet's positions and its Aave account."""
    deadline = time.monotonic() + SHOW_TIMEOUT
    while True:
        response = server.get(f"/v1/portfolio/{wallet}")
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            # Answered for a block whose rows are all stored (not one half-way in).
            stored = server.runtime.status.chain(body["as_of"]["chain_id"]).processed
            shown = len(body["positions"]) >= positions and body["lending"]
            if shown and body["as_of"]["block_number"] <= stored:
                return body
        if server.runtime.status.error:
            raise RuntimeError(server.runtime.status.error)
        assert time.monotonic() < deadline, f"{wallet} not shown: {response.text[:300]}"
        time.sleep(0.05)


def assert_exact(net: Devnet, body: dict[str, Any], wallet: str) -> int:
    """Every position and the Aave account equal the contracts' views at the served block;
    returns the number of positions checked."""
    block = body["as_of"]["block_number"]
    npm = Npm(net.rpc_url, net.deployment.position_manager)
    held = sorted(
        t for t, owner in net.simulator.all_positions().items() if owner == wallet
    )  # the simulator's view at the head: checked at the served block via ownerOf below
    held_then = [t for t in held if npm.owner_of(t, block) == wallet]
    served_positions = {int(p["token_id"]): p for p in body["positions"]}
    assert sorted(served_positions) == held_then, f"{wallet}'s NFTs at block {block}"
    for token_id, p in served_positions.items():
        onchain = npm.position(token_id, block)
        liquidity, tick_lower, tick_upper = onchain[7], onchain[5], onchain[6]
        assert (int(p["liquidity"]), p["tick_lower"], p["tick_upper"]) == (
            liquidity,
            tick_lower,
            tick_upper,
        )
        expected = npm.decrease_all(token_id, liquidity, wallet, block) if liquidity else (0, 0)
        assert (int(p["amount0"]), int(p["amount1"])) == expected, f"amounts of {token_id}"
        assert (int(p["uncollected0"]), int(p["uncollected1"])) == collect_all(
            npm, token_id, wallet, block
        ), f"fees of {token_id} at {block}"
        assert p["value_usd"] is not None and p["il_usd"] is not None
    (account,) = body["lending"]
    assert served(account) == account_data(net, wallet, block), f"{wallet}'s account at {block}"
    # ERC-20 balances, tracked from the seed on: every served one equals balanceOf, and every
    # token of its pools and of the Aave reserves it holds is served if it holds any.
    balances = {b["token"]: int(b["amount"]) for b in body["balances"]}
    tokens = {p[k]["address"] for p in body["positions"] for k in ("token0", "token1")}
    tokens |= {r["asset"] for r in account["reserves"]} | set(balances)
    chain_balances = balances_of(net.rpc_url, [(wallet, t) for t in sorted(tokens)], block)
    assert balances == {t: b for (_w, t), b in chain_balances.items() if b}, f"{wallet}"
    return len(served_positions)


def test_watch_mode_shows_an_unindexed_wallet_exactly_and_follows_it(tmp_path: Path) -> None:
    net = start_devnet()
    try:
        lending = LendingSimulator(net.rpc_url, net.deployment, seed=11)
        for _ in range(5):  # history defimon will not read
            net.simulator.step()
            lending.tick()
        accounts = set(lending.accounts())
        owners: dict[str, int] = {}
        for owner in net.simulator.all_positions().values():
            owners[owner] = owners.get(owner, 0) + 1
        candidates = sorted(
            (w for w in owners if w in accounts),
            key=lambda w: (account_data(net, w, block_number(net.rpc_url))[1] > 0, owners[w]),
        )
        first, second = candidates[-1], candidates[-2]
        assert owners[first] >= 1 and account_data(net, first, block_number(net.rpc_url))[1] > 0

        config = net.deployment.to_chain_config()
        endpoint = ChainEndpoint(config, net.rpc_url, net.anvil.ws_url, watch=(first,))
        started_at = block_number(net.rpc_url)
        with live_server(tmp_path, [endpoint]) as server:
            body = wait_shown(server, first, owners[first])
            assert body["as_of"]["block_number"] >= started_at
            assert assert_exact(net, body, first) == owners[first]
            # Nothing before the head was read: watch mode starts at the head.
            first_block = server.runtime.store.scalar(
                "SELECT min(number) FROM defimon.blocks FINAL"
            )
            assert first_block >= started_at

            # Following events: market rounds, then the wallet mints in a pool it is in and
            # receives an NFT of a pool it may not be in; all exact at the new head.
            pools_of_first = {p["pool"] for p in body["positions"]}
            for _ in range(2):
                net.simulator.step()
                lending.tick()
            followed = next(p for p in net.deployment.pools if p.address in pools_of_first)
            assert net.simulator.mint_for(first, followed) is not None
            others = [
                t
                for t, owner in net.simulator.all_positions().items()
                if owner not in (first, second)
            ]
            moved = next(
                (
                    t
                    for t in others
                    if Npm(net.rpc_url, net.deployment.position_manager).position(
                        t, block_number(net.rpc_url)
                    )[4]
                    not in {p["fee"] for p in body["positions"]}
                ),
                others[0],
            )
            assert net.simulator.transfer(moved, first) is not None
            for _ in range(2):
                net.simulator.step()
                lending.tick()
            head = block_number(net.rpc_url)
            server.wait_processed(config.chain_id, head)
            after = server.get(f"/v1/portfolio/{first}").json()
            assert after["as_of"]["block_number"] == head
            assert assert_exact(net, after, first) >= 2
            assert moved in {int(p["token_id"]) for p in after["positions"]}
            dead = server.runtime.store.scalar("SELECT count() FROM defimon.dead_letters FINAL")
            assert dead == 0

            # A second wallet at runtime: seeded at the current block, then shown exactly.
            response = httpx.post(f"{server.url}/v1/watch", json={"wallet": second}, timeout=60)
            assert response.status_code == 200, response.text
            added = response.json()
            assert added["mode"] == "watch" and added["status"] == "watching"
            assert added["from_block"] >= head
            body = wait_shown(server, second, 1)
            assert assert_exact(net, body, second) >= 1
            net.simulator.step()
            lending.tick()
            head = block_number(net.rpc_url)
            server.wait_processed(config.chain_id, head)
            assert assert_exact(net, server.get(f"/v1/portfolio/{second}").json(), second)
            listed = server.get("/v1/watch").json()
            assert {w["wallet"] for w in listed["wallets"]} == {first, second}
            again = httpx.post(f"{server.url}/v1/watch", json={"wallet": second}, timeout=60)
            assert again.status_code == 200
            assert again.json()["from_block"] == added["from_block"]

            # Bad input: a clear 4xx, nothing changed.
            cases = [
                ({"wallet": "0x1234"}, 400),
                ({"wallet": "not an address"}, 400),
                ({"wallet": "0x" + "0" * 40}, 400),
                ({"wallet": first, "chain_id": 999}, 400),
                ({"wallet": first, "chain_id": 0}, 422),
                ({}, 422),
            ]
            for payload, status in cases:
                bad = httpx.post(f"{server.url}/v1/watch", json=payload, timeout=30)
                assert bad.status_code == status, (payload, bad.text)
                assert bad.json()["detail"]
            not_json = httpx.post(f"{server.url}/v1/watch", content=b"{", timeout=30)
            assert not_json.status_code == 422
            assert len(server.get("/v1/watch").json()["wallets"]) == 2
    finally:
        net.anvil.stop()


def test_post_watch_in_full_protocol_mode_tracks_the_wallets_balances(
    devnet: Devnet, tmp_path: Path
) -> None:
    """In full-protocol mode positions are indexed already: a watch adds ERC-20 balances."""
    fresh = "0x" + "5a" * 20  # never named by a protocol log, so never tracked by itself
    client = RpcClient(devnet.rpc_url)
    fund(client, devnet, fresh, ["USDC"], 1000)
    chain_id = devnet.deployment.chain_id
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain_id, head)
        assert server.get(f"/v1/portfolio/{fresh}").json()["balances"] == []
        response = httpx.post(f"{server.url}/v1/watch", json={"wallet": fresh}, timeout=60)
        assert response.status_code == 200, response.text
        added = response.json()
        assert (added["mode"], added["status"]) == ("balances", "watching")
        assert added["from_block"] > head
        fund(client, devnet, fresh, ["USDC", "WETH"], 7)
        devnet.simulator.step()
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain_id, head)
        body = server.get(f"/v1/portfolio/{fresh}").json()
        tokens = [devnet.deployment.tokens[s].address for s in ("USDC", "WETH")]
        expected = balances_of(devnet.rpc_url, [(fresh, t) for t in tokens], head)
        assert {b["token"]: int(b["amount"]) for b in body["balances"]} == {
            t: b for (_w, t), b in expected.items()
        }
        assert server.get("/v1/watch").json()["mode"] == "balances"
