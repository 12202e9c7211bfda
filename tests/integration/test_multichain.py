"""Two chains at once: one flow, one API, one wallet whose portfolio spans both, exact on each.

Two anvils with different chain ids get the same real Uniswap V3 + Aave V3 deployment. The
same deployer and nonces put every contract at the same address on both chains and number
the position NFTs from 1 on each, so anything keyed without the chain id would collide. One
wallet holds an LP position and an Aave supply/borrow on each chain. One Runtime follows both.
Checked against each chain's own contracts at the block the API answers at:
`positions()` liquidity, the amounts `decreaseLiquidity` would pay, `getUserAccountData`
to the wei; the totals are the sums over the chains; the stream carries both chains' events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devnet.anvil import Anvil
from devnet.contracts import DEADLINE, NPM_MINT, TRANSFER_TOPIC
from devnet.deploy import Deployment, Pool, deploy
from devnet.lending import LendingSimulator
from devnet.rpc import RpcClient
from devnet.simulator import MarketSimulator
from devnet.txs import send_estimated
from devnet.univ3math import MAX_TICK, MIN_TICK, floor_tick
from flows.endpoint import ChainEndpoint
from tests.integration.test_aave_exactness import served
from tests.support import (
    Npm,
    block_number,
    eth_call,
    live_server,
    selector,
    stream_reader,
)

CHAIN_IDS = (31337, 31338)


@dataclass
class Chain:
    anvil: Anvil
    deployment: Deployment

    @property
    def chain_id(self) -> int:
        return self.deployment.chain_id

    @property
    def url(self) -> str:
        return self.anvil.rpc_url

    def endpoint(self) -> ChainEndpoint:
        return ChainEndpoint(self.deployment.to_chain_config(), self.url, self.anvil.ws_url)


@pytest.fixture
def chains() -> Iterator[list[Chain]]:
    started: list[Anvil] = []
    try:
        out = []
        for chain_id in CHAIN_IDS:
            anvil = Anvil(chain_id=chain_id).start()
            started.append(anvil)
            out.append(Chain(anvil, deploy(anvil.rpc_url)))
        yield out
    finally:
        for anvil in started:
            anvil.stop()


def mint_full_range(chain: Chain, wallet: str, pool: Pool, units: int) -> int:
    """A full-range position for `wallet` in `pool`; returns its token id."""
    spacing = pool.tick_spacing
    lower, upper = floor_tick(MIN_TICK + spacing, spacing), floor_tick(MAX_TICK, spacing)
    decimals = {t.address: t.decimals for t in chain.deployment.tokens.values()}
    params = (
        pool.token0,
        pool.token1,
        pool.fee,
        lower,
        upper,
        units * 10 ** decimals[pool.token0],
        units * 10 ** decimals[pool.token1],
        0,
        0,
        wallet,
        DEADLINE,
    )
    npm = chain.deployment.position_manager
    with RpcClient(chain.url) as rpc:
        receipt = send_estimated(rpc, wallet, npm, NPM_MINT.encode(params), "test mint")
    assert receipt is not None and receipt["status"] == "0x1"
    (token_id,) = [
        int(lg["topics"][3], 16)
        for lg in receipt["logs"]
        if lg["address"].lower() == npm and lg["topics"][0] == TRANSFER_TOPIC
    ]
    return token_id


def account_data(chain: Chain, user: str, block: int) -> tuple[int, int, int]:
    assert chain.deployment.aave is not None
    out = eth_call(
        chain.url,
        chain.deployment.aave.pool,
        selector("getUserAccountData(address)") + user[2:].rjust(64, "0"),
        block,
    )
    assert out is not None
    words = [int(out[2 + 64 * i : 66 + 64 * i], 16) for i in range(6)]
    return words[0], words[1], words[5]


def check_position(chain: Chain, position: dict[str, Any], owner: str) -> None:
    """liquidity, ticks and amounts equal the position manager's own answers at the block."""
    npm = Npm(chain.url, chain.deployment.position_manager)
    block, token_id = position["block_number"], int(position["token_id"])
    onchain = npm.position(token_id, block)
    liquidity = onchain[7]
    assert (int(position["liquidity"]), position["tick_lower"], position["tick_upper"]) == (
        liquidity,
        onchain[5],
        onchain[6],
    ), f"chain {chain.chain_id} token {token_id}"
    expected = npm.decrease_all(token_id, liquidity, owner, block) if liquidity else (0, 0)
    assert (int(position["amount0"]), int(position["amount1"])) == expected


def wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def test_one_portfolio_spans_two_chains_exact_on_each(chains: list[Chain], tmp_path: Path) -> None:
    by_id = {c.chain_id: c for c in chains}
    assert sorted(by_id) == list(CHAIN_IDS)
    # Same deployer, same nonces: the same addresses on both chains (the keying must tell).
    assert chains[0].deployment.position_manager == chains[1].deployment.position_manager
    assert chains[0].deployment.aave is not None and chains[1].deployment.aave is not None
    assert chains[0].deployment.aave.pool == chains[1].deployment.aave.pool

    wallet = ""
    minted: dict[int, int] = {}
    for index, chain in enumerate(chains):
        # Different seeds: different markets, so the two chains' numbers differ.
        market = MarketSimulator(chain.url, chain.deployment, seed=7 + index)
        lending = LendingSimulator(chain.url, chain.deployment, seed=7 + index)
        try:
            market.step()
            lending.tick()  # bootstraps: every borrower supplies collateral and borrows
            wallet = lending.borrowers[0]  # the same wallet on both chains (same accounts)
            pool = chain.deployment.pools[index]
            minted[chain.chain_id] = mint_full_range(chain, wallet, pool, 10 + index)
            market.step()
        finally:
            market.close()
            lending.close()
    # NFT ids restart on each chain: a wallet may hold token 13 on both, only the chain tells.
    heads = {c.chain_id: block_number(c.url) for c in chains}

    with live_server(tmp_path, [c.endpoint() for c in chains]) as server:
        for chain_id, head in heads.items():
            server.wait_processed(chain_id, head)

        response = server.get(f"/v1/portfolio/{wallet}")
        assert response.status_code == 200, response.text
        body = response.json()
        at = {a["chain_id"]: a["block_number"] for a in body["chains"]}
        assert at == heads
        assert body["as_of"] == body["chains"][0]

        positions = body["positions"]
        lending_accounts = body["lending"]
        assert {p["chain_id"] for p in positions} == set(CHAIN_IDS)
        assert {a["chain_id"] for a in lending_accounts} == set(CHAIN_IDS)
        ids = [p["id"] for p in positions] + [a["id"] for a in lending_accounts]
        assert len(ids) == len(set(ids)), "ids must be unique across chains"
        # Same pool address, same owner on both chains: only the chain id tells them apart.
        suffixes = {a["id"].split(":", 1)[1] for a in lending_accounts}
        assert len(suffixes) == 1 and len(lending_accounts) == 2
        for chain_id, token_id in minted.items():
            assert any(
                p["chain_id"] == chain_id and int(p["token_id"]) == token_id for p in positions
            )
        for p in positions:
            assert p["id"].startswith(f"{p['chain_id']}:")
            assert p["block_number"] == at[p["chain_id"]]
            check_position(by_id[p["chain_id"]], p, wallet)
        for account in lending_accounts:
            chain = by_id[account["chain_id"]]
            assert account["block_number"] == at[chain.chain_id]
            expected = account_data(chain, wallet, account["block_number"])
            assert served(account) == expected, f"Aave account on chain {chain.chain_id}"
            assert expected[1] > 0, "the wallet borrows on every chain"

        # The totals are the sums over the chains, and each chain alone answers the same items.
        per_chain = [
            server.get(f"/v1/portfolio/{wallet}", chain_id=str(chain_id)).json()
            for chain_id in CHAIN_IDS
        ]
        assert [p["as_of"]["chain_id"] for p in per_chain] == list(CHAIN_IDS)
        assert body["total_usd"] == sum(p["total_usd"] for p in per_chain)
        assert body["balances_usd"] == sum(p["balances_usd"] for p in per_chain)
        for key in ("positions", "lending", "balances"):
            assert body[key] == [x for p in per_chain for x in p[key]]
        parts = (
            sum(p["value_usd"] or 0.0 for p in positions)
            + sum(a["value_usd"] for a in lending_accounts)
            + body["balances_usd"]
        )
        assert body["total_usd"] == pytest.approx(parts, rel=1e-12)

        # /v1/positions and /v1/aggregate span the chains too, with the same numbers.
        page = server.get("/v1/positions", owner=wallet, limit="1000").json()
        assert page["next_cursor"] is None
        assert {s["id"] for s in page["positions"]} == set(ids)
        assert {a["chain_id"] for a in page["chains"]} == set(CHAIN_IDS)
        groups = server.get(
            "/v1/aggregate", owner=wallet, group_by="chain", metrics="count,sum(value_usd)"
        ).json()["groups"]
        counted = {g["key"]["chain"]: g["metrics"]["count"] for g in groups}
        assert counted == {
            chain_id: sum(1 for i in ids if i.startswith(f"{chain_id}:")) for chain_id in CHAIN_IDS
        }
        # One chain only, by filter.
        only = server.get("/v1/positions", owner=wallet, chain_id=str(CHAIN_IDS[1])).json()
        assert {s["chain_id"] for s in only["positions"]} == {CHAIN_IDS[1]}
        # A block number names a block of one chain: with two, ask for a chain or a time.
        refused = server.get(f"/v1/portfolio/{wallet}", at="5")
        assert refused.status_code == 400
        assert "chain_id" in refused.json()["detail"]

        # The stream: the wallet's events from both chains, on one connection.
        events: list[dict[str, Any]] = []
        stop = threading.Event()
        stream_reader(
            f"{server.url}/v1/stream", ("hello", "position"), events, stop, params={"owner": wallet}
        )
        try:
            wait_for(lambda: bool(events), "the stream's hello")
            fresh = {
                c.chain_id: mint_full_range(c, wallet, c.deployment.pools[-1], 3) for c in chains
            }
            for chain in chains:
                server.wait_processed(chain.chain_id, block_number(chain.url))
            wait_for(
                lambda: (
                    {(e["chain_id"], int(e["token_id"])) for e in events if "token_id" in e}
                    >= set(fresh.items())
                ),
                "position events from both chains",
            )
        finally:
            stop.set()
        streamed = [e for e in events if "token_id" in e]
        assert {e["chain_id"] for e in streamed} == set(CHAIN_IDS)
        for event in streamed:
            assert event["owner"] == wallet
            check_position(by_id[event["chain_id"]], event, wallet)
