"""A Compound V3 account's change split as an Aave account's is (its read side's comet_change).

The market views are the worked example's comet (tests/unit/test_compound_state.py: a USDC
comet with WETH collateral) with interest on; every expected part is computed here from
Comet's own math (`protocols/compound_v3/math.py`, checked against Comet's bytecode vectors).
"""

from __future__ import annotations

import dataclasses

import pytest

from api.diff import summarize
from protocols.compound_v3 import math as cm
from protocols.compound_v3.read import comet_change
from protocols.compound_v3.state import CometMarketView, net_value, prices_held
from protocols.read_side import Change, exact_lending_change
from schemas.comet import CometAccount
from schemas.positions import BlockRef
from tests.unit.test_compound_state import (
    ALICE,
    BOB,
    CHAIN,
    COMET,
    E18,
    USD,
    USDC_FEED,
    WETH,
    WETH_FEED,
    WETH_INFO,
    config,
    prices,
    totals,
)

RATES = cm.InterestRateParams.from_per_year(
    supply_kink=8 * 10**17,
    supply_per_year_interest_rate_base=0,
    supply_per_year_interest_rate_slope_low=3 * 10**16,
    supply_per_year_interest_rate_slope_high=2 * E18,
    borrow_kink=8 * 10**17,
    borrow_per_year_interest_rate_base=2 * 10**16,
    borrow_per_year_interest_rate_slope_low=5 * 10**16,
    borrow_per_year_interest_rate_slope_high=3 * E18,
)
T0 = 1_700_000_000
DEBT = 15_000 * 10**6
STORED = totals(40_000 * 10**6, DEBT, T0)
ALICE_ID = f"{CHAIN}:{COMET}:{ALICE}"
BORROWER = CometAccount(CHAIN, COMET, ALICE, ALICE_ID, -DEBT, 0b1, {WETH: 10 * E18})
SUPPLIER = CometAccount(CHAIN, COMET, BOB, f"{CHAIN}:{COMET}:{BOB}", 40_000 * 10**6, 0, {})


def stored_totals() -> cm.CometTotals:
    return cm.CometTotals(
        STORED.base_supply_index,
        STORED.base_borrow_index,
        STORED.total_supply_base,
        STORED.total_borrow_base,
        STORED.last_accrual_time,
    )


def view(number: int, at: int, weth_usd: int, **changes: object) -> CometMarketView:
    market = CometMarketView(
        BlockRef(CHAIN, number, f"0x{number:064x}", at), config(RATES), STORED, prices(weth_usd)
    )
    return dataclasses.replace(market, **changes)  # type: ignore[arg-type]


def sums_to_change(change: Change) -> None:
    data = change.json()
    parts = data["price"] + data["interest"] + data["fees"] + data["actions"]
    assert parts == pytest.approx(data["change"], abs=1e-9)


def test_only_a_price_move_is_all_price() -> None:
    # Same block time as the stored totals: no interest at either end.
    c = comet_change(
        ALICE_ID, BORROWER, BORROWER, view(1, T0, 2_000 * USD), view(2, T0, 1_700 * USD)
    )
    assert (c.value_from, c.value_to) == (5_000.0, 2_000.0)  # 10 WETH less 15,000 USDC of debt
    assert (c.price, c.interest, c.actions, c.fees) == (-3_000.0, 0.0, 0.0, 0.0)
    assert c.protocol == "compound_v3"


def test_only_time_passing_is_all_interest_to_the_wei() -> None:
    later_time = T0 + cm.SECONDS_PER_YEAR // 12
    earlier, later = view(1, T0, 2_000 * USD), view(2, later_time, 2_000 * USD)
    stored = stored_totals()
    owed = cm.borrow_balance_of(-DEBT, stored, RATES, later_time)
    assert owed > DEBT
    c = comet_change(ALICE_ID, BORROWER, BORROWER, earlier, later)
    # The debt grew by owed - DEBT base units, each worth $1 (the USDC feed answers 1e8).
    assert c.interest == -((owed - DEBT) * USD // 10**6) / USD
    assert (c.price, c.actions) == (0.0, 0.0)
    sums_to_change(c)

    supplied = cm.balance_of(40_000 * 10**6, stored, RATES, later_time)
    s = comet_change(SUPPLIER.account_id, SUPPLIER, SUPPLIER, earlier, later)
    assert s.interest == ((supplied - 40_000 * 10**6) * USD // 10**6) / USD > 0
    assert (s.price, s.actions) == (0.0, 0.0)


def test_price_time_and_an_action_together_are_each_attributed() -> None:
    later_time = T0 + 86_400
    earlier, later = view(1, T0, 2_000 * USD), view(2, later_time, 1_800 * USD)
    # She repays 5,000 USDC of what she owes by then: Comet books the principal that leaves.
    _, borrow_index = stored_totals().accrued_indices(RATES, later_time)
    owed = cm.present_value_borrow(borrow_index, DEBT)
    left = cm.principal_value_borrow(borrow_index, owed - 5_000 * 10**6)
    repaid = dataclasses.replace(BORROWER, principal=-left)
    c = comet_change(ALICE_ID, BORROWER, repaid, earlier, later)
    # WETH: 10 x -$200; interest on the debt at unchanged prices; the repayment is the
    # owner's (the account is worth 5,000 more afterwards, to Comet's rounding).
    assert c.price == -2_000.0
    held = view(2, later_time, 2_000 * USD)
    assert c.interest == (net_value(held.value(BORROWER)) - 5_000 * USD) / USD < 0
    assert c.actions == pytest.approx(5_000.0, abs=1e-5)
    sums_to_change(c)
    total = summarize([c])
    assert total["change"] == pytest.approx(sum(total["explained"].values()), abs=1e-9)


def test_opened_and_closed_accounts_are_the_owners_doing() -> None:
    earlier, later = view(1, T0, 2_000 * USD), view(2, T0 + 600, 1_500 * USD)
    opened = comet_change(ALICE_ID, None, BORROWER, earlier, later)
    assert opened.value_from == 0.0 and opened.actions == opened.value_to
    assert (opened.price, opened.interest) == (0.0, 0.0)
    closed = comet_change(ALICE_ID, BORROWER, None, earlier, later)
    assert closed.value_to == 0.0 and closed.price == -5_000.0  # 10 WETH x -$500
    sums_to_change(closed)
    # A comet first read between the two points: the account is in no earlier portfolio.
    unread = comet_change(ALICE_ID, BORROWER, BORROWER, None, later)
    assert unread.value_from == 0.0 and unread.actions == unread.value_to


def test_prices_are_held_by_asset_across_a_change_of_feeds() -> None:
    new_feed = "0x" + "fe" * 20
    upgraded = dataclasses.replace(
        config(RATES), assets=(dataclasses.replace(WETH_INFO, price_feed=new_feed),)
    )
    earlier = view(1, T0, 2_000 * USD)
    later = view(
        2, T0, 1_900 * USD, config=upgraded, prices={USDC_FEED: USD, new_feed: 1_900 * USD}
    )
    held = prices_held(later.config, earlier.config, earlier.prices, later.prices)
    assert held == {USDC_FEED: USD, new_feed: 2_000 * USD}
    c = comet_change(ALICE_ID, BORROWER, BORROWER, earlier, later)
    assert (c.price, c.interest, c.actions) == (-1_000.0, 0.0, 0.0)
    # A newly listed asset has no earlier price: it keeps its later one.
    other = "0x" + "0e" * 20
    listed = dataclasses.replace(
        upgraded,
        assets=(
            *upgraded.assets,
            dataclasses.replace(WETH_INFO, offset=1, asset=other, price_feed=other),
        ),
    )
    assert prices_held(listed, earlier.config, earlier.prices, {other: 7 * USD})[other] == 7 * USD
    assert WETH_FEED not in held


def test_exact_parts_are_integer_differences() -> None:
    # Close values whose float differences would lose the last units.
    big = 10**17 + 1
    c = exact_lending_change("x", "compound_v3", USD, big, big + 3, big + 1, big + 2)
    assert (c.interest, c.price, c.actions) == (1 / USD, 1 / USD, 1 / USD)
    # The same parts from the floats would be lost to rounding.
    assert (big + 1) / USD - big / USD != 1 / USD
