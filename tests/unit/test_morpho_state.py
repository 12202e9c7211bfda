"""Morpho Blue pure state: the storage writes each event stands for, in log order, and the
account view at a block's time (the real contract's version of this is
tests/integration/test_morpho_contract.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocols.morpho_blue import events as ev
from protocols.morpho_blue import math as mm
from protocols.morpho_blue.math import WAD, MarketTotals
from protocols.morpho_blue.state import (
    ZERO_ADDRESS,
    Market,
    MorphoBlueState,
    Position,
    StateError,
    irm_mock_rate,
    market_id,
    view_account,
)
from schemas.chain import RawLog

LOGS = json.loads((Path(__file__).parents[1] / "vectors" / "morpho_blue_logs.json").read_text())[
    "logs"
]
IRM = "0x" + "11" * 20
ORACLE = "0x" + "22" * 20
PARAMS = ev.MarketParams("0x" + "aa" * 20, "0x" + "bb" * 20, ORACLE, IRM, 8 * 10**17)
ID = market_id(PARAMS)
ALICE, BOB, CAROL, FEES = ("0x" + c * 40 for c in "abcf")
PRICE = mm.ORACLE_PRICE_SCALE  # one collateral unit is worth one loan unit


def created(timestamp: int = 1_000) -> MorphoBlueState:
    state = MorphoBlueState(rate_models={IRM: irm_mock_rate})
    state.step(timestamp, [ev.CreateMarket(ID, PARAMS)])
    return state


def test_market_id_is_the_contracts() -> None:
    """keccak256(abi.encode(marketParams)) of a real CreateMarket equals its indexed id."""
    vector = next(v for v in LOGS if v["name"] == "CreateMarket")
    log = RawLog(
        1, 1, "0xbb", 0, "0xtx", 0, "0x" + "00" * 20, tuple(vector["topics"]), vector["data"]
    )
    event = ev.decode(log)
    assert isinstance(event, ev.CreateMarket)
    assert market_id(event.params) == event.id
    assert market_id(PARAMS._replace(lltv=PARAMS.lltv + 1)) != ID


def test_supply_borrow_repay_withdraw_in_log_order() -> None:
    state = created()
    result = state.step(
        1_012,
        [
            ev.Supply(ID, ALICE, ALICE, 1_000, 1_000 * 10**6),
            ev.SupplyCollateral(ID, BOB, BOB, 5_000),
            ev.Borrow(ID, BOB, BOB, CAROL, 400, 400 * 10**6),
        ],
    )
    assert result.accounts == {(ID, ALICE), (ID, BOB)}
    assert result.markets == {ID}
    assert state.markets[ID].totals == MarketTotals(1_000, 10**9, 400, 4 * 10**8, 1_012, 0)
    assert state.position(ID, BOB) == Position(0, 4 * 10**8, 5_000)
    assert state.position(ID, CAROL) == Position()  # the receiver holds nothing in Morpho
    # repaying one more asset than the total (rounded up) floors the total at zero
    state.step(
        1_024,
        [
            ev.Repay(ID, CAROL, BOB, 401, 4 * 10**8),
            ev.Withdraw(ID, ALICE, ALICE, BOB, 600, 600 * 10**6),
        ],
    )
    assert state.markets[ID].totals == MarketTotals(400, 4 * 10**8, 0, 0, 1_024, 0)
    assert state.position(ID, BOB) == Position(0, 0, 5_000)
    assert state.position(ID, ALICE) == Position(400 * 10**6, 0, 0)


def test_supply_collateral_alone_does_not_accrue() -> None:
    state = created(1_000)
    state.step(2_000, [ev.SupplyCollateral(ID, BOB, BOB, 7)])
    assert state.markets[ID].totals.last_update == 1_000  # the contract skips the accrual
    state.step(3_000, [ev.WithdrawCollateral(ID, BOB, BOB, BOB, 2)])
    assert state.markets[ID].totals.last_update == 3_000
    assert state.position(ID, BOB).collateral == 5


def test_accrual_credits_the_fee_recipient_without_a_supply() -> None:
    state = created()
    state.step(1_001, [ev.SetFeeRecipient(FEES), ev.SetFee(ID, WAD // 10)])
    state.step(
        1_010,
        [
            ev.Supply(ID, ALICE, ALICE, 1_000, 10**9),
            ev.SupplyCollateral(ID, BOB, BOB, 5_000),
            ev.Borrow(ID, BOB, BOB, BOB, 500, 5 * 10**8),
        ],
    )
    result = state.step(2_000, [ev.AccrueInterest(ID, 123, 50, 4_000_000), ev.SetFee(ID, 0)])
    totals = state.markets[ID].totals
    assert totals == MarketTotals(1_050, 10**9 + 4_000_000, 550, 5 * 10**8, 2_000, 0)
    assert state.markets[ID].prev_borrow_rate == 123
    assert state.position(ID, FEES).supply_shares == 4_000_000
    assert (ID, FEES) in result.accounts
    assert state.fee_recipient == FEES


def test_liquidation_with_bad_debt_writes_it_off_both_sides() -> None:
    state = created()
    state.step(
        1_010,
        [
            ev.Supply(ID, ALICE, ALICE, 10_000, 10**10),
            ev.SupplyCollateral(ID, BOB, BOB, 1_000),
            ev.Borrow(ID, BOB, BOB, BOB, 800, 8 * 10**8),
        ],
    )
    # all the collateral seized for 700 assets (700e6 shares), the last 100e6 shares bad debt
    state.step(
        1_020,
        [ev.Liquidate(ID, CAROL, BOB, 700, 7 * 10**8, 1_000, 100, 10**8)],
    )
    assert state.markets[ID].totals == MarketTotals(9_900, 10**10, 0, 0, 1_020, 0)
    assert state.position(ID, BOB) == Position()
    assert (ID, BOB) not in state.positions  # empty positions are dropped
    assert list(state.accounts(ID)) == [ALICE]


def test_inconsistent_events_raise() -> None:
    state = created()
    with pytest.raises(StateError, match="unknown market"):
        state.step(1_010, [ev.Supply("0x" + "00" * 32, ALICE, ALICE, 1, 10**6)])
    with pytest.raises(StateError, match="totalSupplyShares would go negative"):
        state.step(
            1_010,
            [
                ev.Withdraw(ID, ALICE, ALICE, ALICE, 0, 0),
                ev.Withdraw(ID, ALICE, ALICE, ALICE, 1, 1),
            ],
        )


def test_admin_events_and_no_op_events() -> None:
    state = MorphoBlueState()
    result = state.step(
        5,
        [
            ev.SetOwner(ALICE),
            ev.EnableIrm(IRM),
            ev.EnableLltv(PARAMS.lltv),
            ev.FlashLoan(BOB, PARAMS.loan_token, 10**9),
            ev.SetAuthorization(BOB, BOB, CAROL, True),
            ev.IncrementNonce(ALICE, BOB, 0),
        ],
    )
    assert (state.owner, state.irms, state.lltvs) == (ALICE, {IRM}, {PARAMS.lltv})
    assert result.accounts == frozenset() and result.markets == frozenset()


def borrowed_market(timestamp: int = 1_000) -> MorphoBlueState:
    state = created(timestamp)
    state.step(
        timestamp,
        [
            ev.Supply(ID, ALICE, ALICE, 2 * WAD, 2 * WAD * 10**6),
            ev.SupplyCollateral(ID, BOB, BOB, WAD),
            ev.Borrow(ID, BOB, BOB, BOB, 8 * 10**17 - 10**12, (8 * 10**17 - 10**12) * 10**6),
        ],
    )
    return state


def test_view_at_the_block_time_accrues_like_morpho_balances_lib() -> None:
    state = borrowed_market()
    now = state.view(ID, BOB, 1_000, PRICE)
    assert now.borrow_assets == 8 * 10**17 - 10**12
    assert now.max_borrow == 8 * 10**17
    assert not now.liquidatable and now.health is not None and now.health > WAD
    assert now.rate_exact
    # a day later: the IrmMock rate at 40% utilization, compounded over the day
    later = state.view(ID, BOB, 1_000 + 86_400, PRICE)
    totals = state.markets[ID].totals
    rate = mm.irm_mock_borrow_rate(totals)
    interest = mm.w_mul_down(totals.total_borrow_assets, mm.w_taylor_compounded(rate, 86_400))
    assert later.borrow_assets == mm.to_assets_up(
        now.borrow_shares, totals.total_borrow_assets + interest, totals.total_borrow_shares
    )
    assert later.borrow_assets > now.borrow_assets
    assert later.liquidatable and later.health is not None and later.health < WAD
    assert state.expected_balances(ID, 1_000 + 86_400).total_borrow_assets == (
        totals.total_borrow_assets + interest
    )


def test_view_without_debt_and_at_the_oracle_price() -> None:
    state = borrowed_market()
    lender = state.view(ID, ALICE, 1_000, PRICE)
    assert lender.health is None and not lender.liquidatable
    assert lender.supply_assets == 2 * WAD
    # the collateral halves in value: over the LLTV
    bob = state.view(ID, BOB, 1_000, PRICE // 2)
    assert bob.collateral_value == WAD // 2
    assert bob.max_borrow == 4 * 10**17
    assert bob.liquidatable


def test_view_counts_the_fee_recipients_pending_shares() -> None:
    state = borrowed_market()
    state.step(1_000, [ev.SetFeeRecipient(FEES), ev.SetFee(ID, WAD // 4)])
    at = 1_000 + 30 * 86_400
    expected = state.expected_balances(ID, at)
    pending = expected.total_supply_shares - state.markets[ID].totals.total_supply_shares
    assert pending > 0
    fees = state.view(ID, FEES, at, PRICE)
    assert fees.supply_shares == pending
    assert fees.supply_assets == mm.to_assets_down(
        pending, expected.total_supply_assets, expected.total_supply_shares
    )
    assert state.view(ID, FEES, 1_000, PRICE).supply_shares == 0


def test_an_irm_without_a_model_uses_the_last_rate() -> None:
    state = borrowed_market()
    state.rate_models.clear()
    state.step(1_100, [ev.AccrueInterest(ID, 10**9, 0, 0)])
    view = state.view(ID, BOB, 1_200, PRICE)
    assert not view.rate_exact
    totals = state.markets[ID].totals
    interest = mm.w_mul_down(totals.total_borrow_assets, mm.w_taylor_compounded(10**9, 100))
    assert view.borrow_assets == mm.to_assets_up(
        view.borrow_shares, totals.total_borrow_assets + interest, totals.total_borrow_shares
    )


def test_a_market_without_irm_never_accrues() -> None:
    params = PARAMS._replace(irm=ZERO_ADDRESS)
    market = Market(market_id(params), params, MarketTotals(10**6, 10**12, 10**5, 10**11, 0, 0))
    view = view_account(market, Position(0, 10**11, 10**6), BOB, 10**9, PRICE, 10**15)
    assert view.borrow_assets == mm.to_assets_up(10**11, 10**5, 10**11)


def test_view_at_exactly_max_borrow_is_healthy() -> None:
    market = Market(ID, PARAMS, MarketTotals(10**18, 10**24, 8 * 10**17, 8 * 10**23, 0, 0))
    edge = view_account(market, Position(0, 8 * 10**23, WAD), BOB, 0, PRICE, 0)
    assert edge.borrow_assets == edge.max_borrow == 8 * 10**17
    assert edge.health == WAD and not edge.liquidatable
    over = view_account(market, Position(0, 8 * 10**23, WAD - 2), BOB, 0, PRICE, 0)
    assert over.max_borrow == 8 * 10**17 - 2
    assert over.health == WAD - 3 and over.liquidatable  # 1e18·(8e17-2)/8e17 = 1e18 - 2.5
