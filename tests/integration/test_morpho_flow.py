"""Morpho Blue through the whole of defimon, against the contract's own views, at every block.

A fresh anvil runs Morpho Blue 1.0.0 (compiled from npm's sources, devnet/morpho.py) with a
USDC-like loan token and a WETH-like collateral. The chain config names Morpho alone (the loan
token is the USD root): the flow follows only it. Part of the history is back-filled, the rest
follows the head live: supplies, collateral, borrows, interest over hours and days, a fee, an
oracle price drop, partial liquidations and one with bad debt, repayments and withdrawals.

At every block from the market's creation to the head, each account served by
`/v1/portfolio/{wallet}?at=N` equals the contract at N: `position(id, user)` (shares and
collateral), the supply and borrow assets as MorphoBalancesLib computes them from `market(id)`,
the IRM's `borrowRateView` and the oracle's `price()` at N accrued to N's timestamp, and health
as `_isHealthy` weighs it (collateral x price x LLTV against borrowed). Every live `account`
event equals the contract at its block; the accounts are in `/v1/positions`, `/v1/aggregate`,
and their windows close.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import pytest

from devnet.anvil import Anvil
from devnet.morpho import (
    IRM_BORROW_RATE_VIEW,
    MORPHO_FEE_RECIPIENT,
    MORPHO_MARKET,
    MORPHO_POSITION,
    ORACLE_PRICE,
    MorphoActions,
    MorphoDeployment,
    deploy_morpho,
    oracle_price,
)
from devnet.rpc import RpcClient
from devnet.txs import Tx, mine_block
from flows.endpoint import ChainEndpoint
from protocols.morpho_blue import math as mm
from schemas.chain_config import ChainConfig, MorphoBlueConfig
from schemas.morpho import MAX_UINT256
from tests.support import block_number, live_server, stream_reader

USDC, WETH = 10**6, 10**18


@dataclass
class Chain:
    anvil: Anvil
    rpc: RpcClient
    d: MorphoDeployment
    act: MorphoActions
    accounts: list[str]
    clock: int = 0

    def block(self, txs: list[Tx], advance: int = 12) -> None:
        self.clock += advance
        self.rpc.call("evm_setNextBlockTimestamp", [self.clock])
        try:
            mine_block(self.rpc, txs)
        finally:
            self.rpc.call("evm_setAutomine", [True])

    def call(self, fn: Any, to: str, block: int, *args: Any) -> tuple[Any, ...]:
        data = fn.encode(*args)
        return fn.decode(self.rpc.call("eth_call", [{"to": to, "data": data}, hex(block)]))

    def expected(self, user: str, block: int) -> dict[str, Any] | None:
        """The contract's numbers for `user` at `block` (None: no position)."""
        d, market_id = self.d, bytes.fromhex(self.d.market_id[2:])
        supply, borrow, collateral = self.call(MORPHO_POSITION, d.morpho, block, market_id, user)
        if supply == borrow == collateral == 0:
            return None
        totals = mm.MarketTotals(*self.call(MORPHO_MARKET, d.morpho, block, market_id))
        rate = self.call(IRM_BORROW_RATE_VIEW, d.irm, block, tuple(d.params), astuple(totals))[0]
        price = self.call(ORACLE_PRICE, d.oracle, block)[0]
        fee_recipient = self.call(MORPHO_FEE_RECIPIENT, d.morpho, block)[0].lower()
        header = self.rpc.call("eth_getBlockByNumber", [hex(block), False])
        timestamp = int(header["timestamp"], 16)
        balances = mm.expected_market_balances(totals, timestamp, rate, has_irm=True)
        if user == fee_recipient:  # the fee shares the next accrual mints are its own
            supply += balances.total_supply_shares - totals.total_supply_shares
        borrowed = mm.expected_borrow_assets(borrow, balances)
        max_borrow = mm.w_mul_down(mm.collateral_value(collateral, price), d.params.lltv)
        health = mm.health_factor(max_borrow, borrowed) if borrow else None
        return {
            "supply_shares": str(supply),
            "borrow_shares": str(borrow),
            "supplied": str(mm.expected_supply_assets(supply, balances)),
            "debt": str(borrowed),
            "collateral": str(collateral),
            "price": str(price),
            "max_borrow": str(max_borrow),
            "health_factor": str(MAX_UINT256 if health is None else health),
            "is_liquidatable": borrow != 0 and max_borrow < borrowed,
        }


def served(account: dict[str, Any]) -> dict[str, Any]:
    loan, collateral = account["reserves"]
    return {
        "supply_shares": account["supply_shares"],
        "borrow_shares": account["borrow_shares"],
        "supplied": loan["supplied"],
        "debt": loan["debt"],
        "collateral": collateral["supplied"],
        "price": collateral["price"],
        "max_borrow": account["max_borrow"],
        "health_factor": account["health_factor"],
        "is_liquidatable": account["is_liquidatable"],
    }


@pytest.fixture
def chain() -> Iterator[Chain]:
    with Anvil() as anvil, RpcClient(anvil.rpc_url) as rpc:
        accounts = [a.lower() for a in rpc.call("eth_accounts")]
        d = deploy_morpho(rpc, accounts[0], price=oracle_price(3_000, 6, 18))
        c = Chain(anvil, rpc, d, MorphoActions(d), accounts)
        c.clock = int(rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        yield c


def morpho_accounts(portfolio: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in portfolio["lending"] if a["protocol"] == "morpho_blue"]


def test_morpho_accounts_equal_the_contract_live_and_at_every_block(
    chain: Chain, tmp_path: Path
) -> None:
    c, act = chain, chain.act
    l1, l2, b1, b2, b3, lq, fr = c.accounts[1:8]
    users = [l1, l2, b1, b2, b3, lq, fr]
    # Back-filled: funding, supplies, collateral, borrows, a day of interest.
    c.block(
        [tx for a in (l1, l2, b1, b2, b3, lq) for tx in act.fund(a, 10**7 * USDC, 10**3 * WETH)]
    )
    c.block([act.supply(l1, 1_000_000 * USDC), act.supply(l2, 500_000 * USDC)])
    c.block([act.supply_collateral(b, w * WETH) for b, w in ((b1, 100), (b2, 10), (b3, 5))])
    c.block(
        [
            act.borrow(b1, 150_000 * USDC),
            act.borrow(b2, 20_000 * USDC),
            act.borrow(b3, 12_000 * USDC),
        ]
    )
    c.block([], advance=86_400)
    c.block([act.set_fee_recipient(fr), act.set_fee(10 * 10**16)])

    loan = c.d.params.loan_token
    config = ChainConfig(
        chain_id=31337,
        name="morpho-only",
        start_block=c.d.start_block,
        usd_tokens=(loan,),
        morpho_blue=MorphoBlueConfig(c.d.morpho),
    )
    endpoint = ChainEndpoint(config, c.anvil.rpc_url, c.anvil.ws_url)
    with live_server(tmp_path, [endpoint]) as server:
        server.wait_processed(31337, block_number(c.anvil.rpc_url))
        live: list[dict[str, Any]] = []
        stop = threading.Event()
        stream_reader(f"{server.url}/v1/stream", ("account",), live, stop)
        try:
            # Live: withdrawals, repayments, interest, a price drop, liquidations, bad debt.
            c.block([act.withdraw(l2, 100_000 * USDC)], advance=2 * 86_400)
            c.block([act.repay(b1, 50_000 * USDC)], advance=3_600)
            c.block([act.supply(lq, 1_000 * USDC, on_behalf=b2)], advance=600)
            c.block([], advance=5 * 86_400)
            c.block([act.set_price(oracle_price(2_500, 6, 18))], advance=3_600)
            c.block([act.liquidate(lq, b3, seized_assets=1 * WETH)])
            c.block([act.set_price(oracle_price(1_000, 6, 18))], advance=86_400)
            c.block([act.liquidate(lq, b2, seized_assets=10 * WETH)])  # all of it: bad debt
            c.block([act.set_price(oracle_price(3_000, 6, 18)), act.set_fee(5 * 10**16)])
            c.block([act.repay(b1, 20_000 * USDC)], advance=7_200)
            c.block([act.withdraw_collateral(b1, 10 * WETH)], advance=30 * 86_400)
            head = block_number(c.anvil.rpc_url)
            server.wait_processed(31337, head)
        finally:
            stop.set()

        ours = [e for e in live if e["protocol"] == "morpho_blue"]
        assert len(ours) >= 20, "the stream should carry Morpho account updates"
        for account in ours:
            expected = c.expected(account["owner"], account["block_number"])
            assert expected is not None and served(account) == expected, (
                f"live {account['owner']} at {account['block_number']}"
            )

        checked, liquidatable = 0, 0
        for block in range(c.d.start_block, head + 1):
            for user in users:
                expected = c.expected(user, block)
                got = morpho_accounts(server.get(f"/v1/portfolio/{user}", at=str(block)).json())
                if expected is None:
                    assert got == [] or served(got[0])["collateral"] == "0", (user, block)
                    continue
                assert len(got) == 1, (user, block, got)
                assert served(got[0]) == expected, f"{user} at block {block}"
                checked += 1
                liquidatable += expected["is_liquidatable"]
        assert checked >= 80 and liquidatable >= 1, (checked, liquidatable)
        print(f"morpho flow: {len(ours)} live events, {checked} account-blocks through ?at=")

        # The same accounts in /v1/positions and /v1/aggregate, and their windows.
        listed = server.get("/v1/positions", protocol="morpho_blue", limit="500").json()
        ids = {item["id"] for item in listed["positions"]}
        assert {f"31337:{c.d.morpho}:{c.d.market_id}:{u}" for u in (l1, b1)} <= ids
        assert all(item["protocol"] == "morpho_blue" for item in listed["positions"])
        total = server.get("/v1/aggregate", protocol="morpho_blue", group_by="protocol").json()
        [group] = total["groups"]
        assert group["key"] == {"protocol": "morpho_blue"} and group["metrics"]["count"] == len(ids)
        # a health factor filter selects the lending accounts below it (Aave's grammar)
        risky = server.get("/v1/positions", protocol="morpho_blue", max_health_factor="1.5").json()
        for item in risky["positions"]:
            assert item["health_factor_float"] is not None and item["health_factor_float"] <= 1.5
        windows = server.runtime.store.scalar(
            "SELECT count() FROM defimon.position_windows FINAL WHERE protocol = 'morpho_blue'"
        )
        assert windows > 0
        dead = server.runtime.store.scalar("SELECT count() FROM defimon.dead_letters FINAL")
        assert dead == 0
