"""Morpho Blue's pure events + state against the real contract, block by block.

A fresh anvil runs Morpho Blue 1.0.0 compiled from npm's sources (devnet/morpho.py). A scenario
of lenders, borrowers, a liquidator and a fee recipient goes through ~30 blocks: supplies and
withdrawals by assets and by shares, collateral, borrows and repays (one by an authorized
caller, one closing a position by shares), interest over hours to days, a 10% fee, a flash
loan, a signed authorization, oracle price drops, partial liquidations (by seized assets and by
repaid shares) and two with bad debt. Every block's logs (eth_getLogs) go through
`events.decode` and `MorphoBlueState.step`; then at every block:

- the state equals the contract: `market(id)` (all six fields), `position(id, user)` of every
  account, `feeRecipient()`; IrmMock's `borrowRateView` equals the pure rate model;
- every AccrueInterest equals the pure `accrue_interest` (rate, interest, fee shares);
- the view to a later time T (1 s to 3 days on): in an anvil snapshot, a block at T calls
  `accrueInterest`; the contract's totals equal `expected_balances(T)`, and each account's
  supply/borrow assets, collateral and `_isHealthy` (the contract's numbers, its oracle price)
  equal the pure view at T; each borrower is then probed with a real `liquidate` of one share
  at T in a snapshot of its own: it succeeds exactly when the view says liquidatable.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak

from devnet.anvil import Anvil
from devnet.contracts import Function
from devnet.morpho import (
    IRM_BORROW_RATE_VIEW,
    MORPHO_FEE_RECIPIENT,
    MORPHO_MARKET,
    MORPHO_POSITION,
    ORACLE_PRICE,
    MorphoActions,
    MorphoDeployment,
    deploy_flash_borrower,
    deploy_morpho,
    morpho_artifacts,
    oracle_price,
)
from devnet.rpc import RpcClient
from devnet.txs import Tx, mine_block
from protocols.morpho_blue import events as ev
from protocols.morpho_blue import math as mm
from protocols.morpho_blue.state import MorphoBlueState, irm_mock_rate
from schemas.chain import RawLog

VECTORS = Path(__file__).parents[1] / "vectors" / "morpho_blue_logs.json"
# set to write the captured logs as the unit tests' vectors
WRITE_VECTORS = os.environ.get("DEFIMON_WRITE_MORPHO_VECTORS") == "1"

USDC = 10**6  # the loan token has 6 decimals
WETH = 10**18  # the collateral token 18
# anvil's well-known development key of account 1 (public test mnemonic), to sign an
# authorization the way a wallet would
ACCOUNT1_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
VIEW_AHEAD = (1, 37, 3600, 3 * 86400)  # seconds from a block to the view's time, in turn
SET_AUTHORIZATION_WITH_SIG = Function(
    "setAuthorizationWithSig((address,address,bool,uint256,uint256),(uint8,bytes32,bytes32))"
)
DOMAIN_SEPARATOR = Function("DOMAIN_SEPARATOR()", ("bytes32",))
AUTHORIZATION_TYPEHASH = keccak(
    text="Authorization(address authorizer,address authorized,bool isAuthorized,"
    "uint256 nonce,uint256 deadline)"
)


def raw_log(entry: dict[str, Any]) -> RawLog:
    return RawLog(
        31337,
        int(entry["blockNumber"], 16),
        entry["blockHash"],
        int(entry["logIndex"], 16),
        entry["transactionHash"],
        int(entry["transactionIndex"], 16),
        entry["address"].lower(),
        tuple(t.lower() for t in entry["topics"]),
        entry["data"].lower(),
    )


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"] == "tuple":
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")"
    return str(item["type"])


def _plain(value: Any) -> Any:
    """eth_abi's values as JSON: addresses lower-case, bytes32 0x hex, tuples lists."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def abi_fields(event_abi: dict[str, Any], log: RawLog) -> list[Any]:
    """The event's fields in declaration order, decoded by eth_abi from the compiled ABI."""
    inputs = event_abi["inputs"]
    data = abi_decode(
        [_abi_type(i) for i in inputs if not i["indexed"]], bytes.fromhex(log.data[2:])
    )
    topics = iter(log.topics[1:])
    plain, values = iter(data), []
    for item in inputs:
        if item["indexed"]:
            word = bytes.fromhex(next(topics)[2:])
            values.append(abi_decode([_abi_type(item)], word)[0])
        else:
            values.append(next(plain))
    return [_plain(v) for v in values]


def _nonzero(fields: list[Any]) -> int:
    """The distinct non-zero fields (a caller unlike its on_behalf makes a better vector)."""
    return len({repr(f) for f in fields if f not in (0, False, "0x" + "0" * 40)})


def _flat(value: Any) -> Any:
    if isinstance(value, tuple):  # NamedTuples (MarketParams) as lists, like JSON
        return [_flat(v) for v in value]
    return value


@dataclass
class Proof:
    rpc: RpcClient
    d: MorphoDeployment
    act: MorphoActions
    accounts: list[str]
    borrowers: list[str]
    liquidator: str
    state: MorphoBlueState = field(default_factory=MorphoBlueState)
    clock: int = 0
    blocks: int = 0
    account_blocks: int = 0
    view_checks: int = 0
    probes: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    accruals: int = 0
    captured: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    liquidations: list[ev.Liquidate] = field(default_factory=list)
    # accruals as the contract did them: the stored market before, the time, the event
    accrual_vectors: list[dict[str, Any]] = field(default_factory=list)
    event_abis: dict[str, dict[str, Any]] = field(default_factory=dict)

    def call(self, fn: Function, to: str, *args: Any) -> tuple[Any, ...]:
        return fn.decode(
            self.rpc.call("eth_call", [{"to": to, "data": fn.encode(*args)}, "latest"])
        )

    def market(self) -> mm.MarketTotals:
        return mm.MarketTotals(*self.call(MORPHO_MARKET, self.d.morpho, self._id))

    def position(self, account: str) -> tuple[int, int, int]:
        supply, borrow, collateral = self.call(MORPHO_POSITION, self.d.morpho, self._id, account)
        return supply, borrow, collateral

    @property
    def _id(self) -> bytes:
        return bytes.fromhex(self.d.market_id[2:])

    def block(self, txs: list[Tx], advance: int = 12, *, check: bool = True) -> None:
        """Mine `txs` in one block `advance` seconds after the last, then prove that block."""
        self.clock += advance
        self.rpc.call("evm_setNextBlockTimestamp", [self.clock])
        try:
            mine_block(self.rpc, txs, check=check)
        finally:
            self.rpc.call("evm_setAutomine", [True])
        self.prove(int(self.rpc.call("eth_blockNumber"), 16))

    def fold(self, number: int) -> int:
        """Decode the block's Morpho logs and step the state; returns the block's time."""
        header = self.rpc.call("eth_getBlockByNumber", [hex(number), False])
        timestamp = int(header["timestamp"], 16)
        entries = self.rpc.call(
            "eth_getLogs",
            [{"fromBlock": hex(number), "toBlock": hex(number), "address": self.d.morpho}],
        )
        logs = sorted((raw_log(e) for e in entries), key=lambda lg: lg.log_index)
        decoded = [ev.decode(lg) for lg in logs]
        self.liquidations += [e for e in decoded if isinstance(e, ev.Liquidate)]
        for lg, event in zip(logs, decoded, strict=True):
            name = type(event).__name__
            self.seen.add(name)
            # the decoder agrees with eth_abi over the compiled ABI, field by field
            assert _flat(tuple(event)) == abi_fields(self.event_abis[name], lg), name
            # the vectors keep each event's log with the most non-zero fields
            fields = abi_fields(self.event_abis[name], lg)
            before = self.captured.get(name)
            if before is None or _nonzero(fields) > _nonzero(before["fields"]):
                self.captured[name] = {
                    "name": name,
                    "topics": list(lg.topics),
                    "data": lg.data,
                    "fields": fields,
                }
        # each accrual, replayed purely on a copy just before it applies
        shadow = copy.deepcopy(self.state)
        for event in decoded:
            if isinstance(event, ev.AccrueInterest):
                market = shadow.markets[event.id]
                rate = irm_mock_rate(market.params, market.totals)
                accrual = mm.accrue_interest(market.totals, timestamp, rate)
                assert (accrual.borrow_rate, accrual.interest, accrual.fee_shares) == (
                    event.prev_borrow_rate,
                    event.interest,
                    event.fee_shares,
                )
                self.accruals += 1
                with_fee = [a for a in self.accrual_vectors if a["before"][5] != 0]
                if len(with_fee if market.totals.fee else self.accrual_vectors) < 3:
                    self.accrual_vectors.append(
                        {
                            "before": list(astuple(market.totals)),
                            "timestamp": timestamp,
                            "borrow_rate": event.prev_borrow_rate,
                            "interest": event.interest,
                            "fee_shares": event.fee_shares,
                        }
                    )
            shadow.step(timestamp, [event])
        result = self.state.step(timestamp, decoded)
        assert (shadow.markets, shadow.positions) == (self.state.markets, self.state.positions)
        if any(isinstance(e, ev.Supply | ev.Borrow | ev.Liquidate) for e in decoded):
            assert result.accounts, "a block with account events touched no account"
        return timestamp

    def prove(self, number: int) -> None:
        timestamp = self.fold(number)
        self.blocks += 1
        state, market_id = self.state, self.d.market_id
        if market_id not in state.markets:
            return
        # storage, as the contract holds it at this block
        stored = self.market()
        assert state.markets[market_id].totals == stored
        assert self.call(MORPHO_FEE_RECIPIENT, self.d.morpho)[0].lower() == state.fee_recipient
        rate = self.call(IRM_BORROW_RATE_VIEW, self.d.irm, self.d.market_tuple, astuple(stored))[0]
        assert rate == irm_mock_rate(self.d.params, stored)
        for account in self.accounts:
            p = state.position(market_id, account)
            assert (p.supply_shares, p.borrow_shares, p.collateral) == self.position(account)
            self.account_blocks += 1
        price = self.call(ORACLE_PRICE, self.d.oracle)[0]
        self.prove_view(timestamp + VIEW_AHEAD[self.blocks % len(VIEW_AHEAD)], price)

    def prove_view(self, at: int, price: int) -> None:
        """The pure view at `at` against the contract after accruing there (snapshots)."""
        state, market_id = self.state, self.d.market_id
        views = {a: state.view(market_id, a, at, price) for a in self.accounts}
        expected = state.expected_balances(market_id, at)
        snapshot = self.rpc.call("evm_snapshot")
        try:
            self.rpc.call("evm_setNextBlockTimestamp", [at])
            mine_block(self.rpc, [self.act.accrue_interest(self.liquidator)])
            accrued = self.market()
            assert accrued.last_update == at
            stored_update = state.markets[market_id].totals.last_update
            assert accrued == mm.MarketTotals(
                expected.total_supply_assets,
                expected.total_supply_shares,
                expected.total_borrow_assets,
                expected.total_borrow_shares,
                at,
                expected.fee,
            )
            assert expected.last_update == stored_update
            for account, view in views.items():
                supply, borrow, collateral = self.position(account)
                assert view.rate_exact
                assert (view.supply_shares, view.borrow_shares, view.collateral) == (
                    supply,
                    borrow,
                    collateral,
                )
                assert view.supply_assets == mm.to_assets_down(
                    supply, accrued.total_supply_assets, accrued.total_supply_shares
                )
                assert view.borrow_assets == mm.to_assets_up(
                    borrow, accrued.total_borrow_assets, accrued.total_borrow_shares
                )
                healthy = mm.is_healthy(
                    collateral,
                    borrow,
                    accrued.total_borrow_assets,
                    accrued.total_borrow_shares,
                    price,
                    self.d.params.lltv,
                )
                assert view.liquidatable == (not healthy)
                assert (view.health is None) == (borrow == 0)
                if view.health is not None:
                    assert (view.health < mm.WAD) == view.liquidatable
                self.view_checks += 1
        finally:
            assert self.rpc.call("evm_revert", [snapshot]) is True
            self.rpc.call("evm_setAutomine", [True])
        for borrower in self.borrowers:
            if views[borrower].borrow_shares:
                self.probe(borrower, at, views[borrower].liquidatable)

    def probe(self, borrower: str, at: int, liquidatable: bool) -> None:
        """A real liquidation of one borrow share at `at`: it goes through iff liquidatable."""
        snapshot = self.rpc.call("evm_snapshot")
        try:
            self.rpc.call("evm_setNextBlockTimestamp", [at])
            receipts = mine_block(
                self.rpc,
                [self.act.liquidate(self.liquidator, borrower, repaid_shares=1)],
                check=False,
            )
            assert (receipts[0]["status"] == "0x1") == liquidatable, (borrower, at)
            self.probes[liquidatable] += 1
        finally:
            assert self.rpc.call("evm_revert", [snapshot]) is True
            self.rpc.call("evm_setAutomine", [True])


@pytest.fixture
def proof() -> Iterator[Proof]:
    with Anvil() as anvil, RpcClient(anvil.rpc_url) as rpc:
        accounts = [a.lower() for a in rpc.call("eth_accounts")]
        owner = accounts[0]
        d = deploy_morpho(rpc, owner, price=oracle_price(3_000, 6, 18))
        abi = morpho_artifacts()["EventsLib"].abi
        event_abis = {item["name"]: item for item in abi if item["type"] == "event"}
        lenders, borrowers = accounts[1:3], accounts[3:6]
        liquidator, fee_recipient = accounts[6], accounts[7]
        p = Proof(
            rpc,
            d,
            MorphoActions(d),
            [owner, *lenders, *borrowers, liquidator, fee_recipient],
            borrowers,
            liquidator,
            event_abis=event_abis,
        )
        p.state.rate_models[d.irm] = irm_mock_rate
        # the deployment's own blocks (SetOwner, EnableIrm, EnableLltv, CreateMarket)
        latest = int(rpc.call("eth_blockNumber"), 16)
        for number in range(d.start_block, latest + 1):
            p.prove(number)
        p.clock = int(rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        yield p


def signed_authorization(p: Proof, authorizer: str, authorized: str) -> Tx:
    """setAuthorizationWithSig from the owner, signed by account 1 (EIP-712, Morpho's domain)."""
    signer = Account.from_key(ACCOUNT1_KEY)
    assert signer.address.lower() == authorizer
    deadline = 2**40
    domain = p.call(DOMAIN_SEPARATOR, p.d.morpho)[0]
    struct = keccak(
        abi_encode(
            ["bytes32", "address", "address", "bool", "uint256", "uint256"],
            [AUTHORIZATION_TYPEHASH, authorizer, authorized, True, 0, deadline],
        )
    )
    digest = keccak(b"\x19\x01" + domain + struct)
    sig = signer.unsafe_sign_hash(digest)
    data = SET_AUTHORIZATION_WITH_SIG.encode(
        (authorizer, authorized, True, 0, deadline),
        (sig.v, sig.r.to_bytes(32, "big"), sig.s.to_bytes(32, "big")),
    )
    return Tx(p.d.owner, p.d.morpho, data, 300_000)


def test_morpho_state_follows_the_contract_at_every_block(proof: Proof) -> None:
    p, act = proof, proof.act
    owner, l1, l2, b1, b2, b3, lq, fr = p.accounts
    loan = p.d.params.loan_token
    flash = deploy_flash_borrower(p.rpc, p.d, owner)
    p.clock = int(p.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
    p.prove(int(p.rpc.call("eth_blockNumber"), 16))

    funding = [
        tx for a in (l1, l2, b1, b2, b3, lq) for tx in act.fund(a, 10**7 * USDC, 1_000 * WETH)
    ]
    p.block(funding)
    p.block([act.supply(l1, 1_000_000 * USDC), act.supply(l2, 500_000 * USDC)])
    p.block(
        [
            act.supply_collateral(b1, 100 * WETH),
            act.supply_collateral(b2, 10 * WETH),
            act.supply_collateral(b3, 5 * WETH),
        ]
    )
    p.block(
        [
            act.borrow(b1, 150_000 * USDC),
            act.borrow(b2, 20_000 * USDC),
            act.borrow(b3, 12_000 * USDC),
        ]
    )
    p.block([], advance=86_400)  # a day passes: the view accrues, storage does not
    p.block([act.set_fee_recipient(fr), act.set_fee(10 * 10**16)])
    p.block([act.withdraw(l2, 100_000 * USDC)], advance=2 * 86_400)
    p.block([act.repay(b1, 50_000 * USDC), act.set_authorization(b1, l1)], advance=3_600)
    # L1 borrows for B1 by shares; B3 repays by shares; B1 adds collateral in the same block
    p.block(
        [
            act.borrow(l1, shares=10_000 * USDC * 10**6, on_behalf=b1, receiver=b2),
            act.repay(lq, shares=1_000 * USDC * 10**6, on_behalf=b3),
            act.supply_collateral(b2, 1 * WETH, on_behalf=b1),
        ]
    )
    p.block([act.withdraw(l1, shares=10**17, receiver=l2)], advance=600)
    p.block([act.supply_collateral(b2, 1 * WETH)], advance=120)  # no accrual: lastUpdate stays
    p.block([act.supply(l2, shares=5 * 10**16), act.supply(lq, 1_000 * USDC, on_behalf=b2)])
    p.block([act.accrue_interest(l1)], advance=7 * 86_400)
    p.block([act.withdraw_collateral(l1, 20 * WETH, on_behalf=b1, receiver=lq)], advance=60)
    p.block([act.flash_loan(l1, flash, loan, 100_000 * USDC)])
    p.block([signed_authorization(p, l1, lq)])
    p.block([], advance=5 * 86_400)
    p.block([act.set_price(oracle_price(2_500, 6, 18))], advance=3_600)
    assert p.state.view(p.d.market_id, b3, p.clock, oracle_price(2_500, 6, 18)).liquidatable
    p.block([act.liquidate(lq, b3, seized_assets=1 * WETH)])
    p.block([act.liquidate(lq, b3, repaid_shares=1_000 * USDC * 10**6)], advance=86_400)
    p.block([act.set_price(oracle_price(1_000, 6, 18))])
    # B2's whole collateral: the rest of its debt is bad debt
    p.block([act.liquidate(lq, b2, seized_assets=p.position(b2)[2])])
    assert p.state.position(p.d.market_id, b2).borrow_shares == 0
    p.block([act.liquidate(lq, b3, seized_assets=p.position(b3)[2])], advance=3_600)
    p.block([act.set_price(oracle_price(3_000, 6, 18)), act.set_fee(5 * 10**16)])
    p.block([act.repay(b1, shares=p.position(b1)[1])], advance=7_200)  # closes B1's debt
    p.block([], advance=86_400)  # no borrows: nothing accrues
    p.block([act.borrow(b1, 5_000 * USDC), act.withdraw_collateral(b1, 70 * WETH)])
    p.block([act.repay(b1, 2_000 * USDC)], advance=30 * 86_400)
    p.block([act.repay(b1, shares=p.position(b1)[1])], advance=3_600)
    p.block(
        [
            act.withdraw_collateral(b1, p.position(b1)[2]),
            act.withdraw(l1, shares=p.position(l1)[0]),
            act.withdraw(l2, shares=p.position(l2)[0]),
        ]
    )
    p.block([act.withdraw(fr, shares=p.position(fr)[0])], advance=60)

    assert len(p.liquidations) == 4
    assert [lq_event.bad_debt_assets > 0 for lq_event in p.liquidations] == [
        False,
        False,
        True,
        True,
    ]
    every_event = set(ev.SIGNATURES)
    assert p.seen == every_event, every_event - p.seen
    # the signatures are the compiled ABI's
    for name, item in p.event_abis.items():
        assert ev.SIGNATURES[name] == f"{name}({','.join(_abi_type(i) for i in item['inputs'])})"
    assert set(p.event_abis) == every_event
    # what the scenario reached
    assert p.state.markets[p.d.market_id].totals.total_borrow_shares == 0
    assert p.probes[True] >= 5 and p.probes[False] >= 20, p.probes
    assert p.accruals >= 15
    if WRITE_VECTORS:
        vectors = {
            "logs": sorted(p.captured.values(), key=lambda c: c["name"]),
            "accruals": p.accrual_vectors,
        }
        VECTORS.write_text(json.dumps(vectors, indent=1) + "\n")
    print(
        f"\nmorpho proof: {p.blocks} blocks, {p.account_blocks} account-blocks compared with"
        f" position(), {p.view_checks} account views at a later time, {p.accruals} accruals,"
        f" liquidation probes {p.probes[True]} through / {p.probes[False]} refused"
    )
