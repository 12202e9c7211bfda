"""Compound V3 (Comet) math against Comet's own published test cases.

Each case cites its file in compound-finance/comet (test/*.ts); the protocol defaults are
those of test/helpers.ts `makeProtocol`: USDC base (6 decimals, price $1), COMP (18 decimals,
$175), WETH (18, $3000), WBTC (8, $41000); borrowCF 1 - 1 wei, liquidateCF 1,
liquidationFactor 1 (packed to 4 decimals by getAssetInfo); borrow curve kink 0.8, base
0.005, slopes 0.1 / 3 per year. The derived health factor follows woof-software/comet
docs/liquidation.md.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.compound_v3 import math as c

ONE = c.FACTOR_SCALE
USD = c.PRICE_SCALE  # $1 at 8 decimals
USDC = 10**6  # base scale
E18 = 10**18
IDX = c.BASE_INDEX_SCALE


def collateral(
    balance: int,
    price_usd: float,
    *,
    decimals: int = 18,
    lcf: int = ONE,
    bcf: int = ONE - 1,
    lf: int = ONE,
    asset: str = "",
) -> c.CometCollateral:
    """A collateral as getAssetInfo returns it (factors truncated to 4 decimals)."""
    return c.CometCollateral(
        balance=balance,
        price=round(price_usd * USD),
        scale=10**decimals,
        liquidate_collateral_factor=c.truncate_factor(lcf),
        borrow_collateral_factor=c.truncate_factor(bcf),
        liquidation_factor=c.truncate_factor(lf),
        asset=asset,
    )


def liquidatable(
    principal: int, collaterals: list[c.CometCollateral], *, skip_zero_lcf: bool = False
) -> bool:
    return c.is_liquidatable(
        principal, IDX, IDX, USD, USDC, collaterals, skip_zero_lcf=skip_zero_lcf
    )


# --- CometCore ------------------------------------------------------------------------------


def test_constants() -> None:
    assert c.BASE_INDEX_SCALE == 10**15
    assert c.FACTOR_SCALE == 10**18
    assert c.PRICE_SCALE == 10**8
    assert c.BASE_ACCRUAL_SCALE == 10**6
    assert c.SECONDS_PER_YEAR == 31_536_000
    assert c.MAX_ASSETS == 15


def test_principal_rounding() -> None:
    # CometCore: supply rounds down, borrow rounds up.
    assert c.principal_value_supply(3 * IDX, 100) == 33
    assert c.principal_value_borrow(3 * IDX, 100) == 34
    assert c.principal_value(100, 3 * IDX, 3 * IDX) == 33
    assert c.principal_value(-100, 3 * IDX, 3 * IDX) == -34
    assert c.present_value(-34, 2 * IDX, 3 * IDX) == -102
    assert c.present_value(33, 2 * IDX, 3 * IDX) == 66
    assert c.present_value(0, 2 * IDX, 3 * IDX) == 0


def test_balance_test_total_borrow() -> None:
    # test/balance-test.ts "has correct totalBorrow": index 2e15, totalBorrowBase 50e6.
    assert c.present_value_borrow(2 * IDX, 50 * USDC) == 100 * USDC


def test_balance_test_borrow_balance_of() -> None:
    # test/balance-test.ts borrowBalanceOf: principal -100e6, borrow index 3e15 -> 300e6;
    # a positive principal has no borrow balance. No time elapsed, so no accrual.
    params = _default_params()
    totals = c.CometTotals(2 * IDX, 3 * IDX, 0, 0, last_accrual_time=1000)
    assert c.borrow_balance_of(-100 * USDC, totals, params, now=1000) == 300 * USDC
    assert c.borrow_balance_of(100 * USDC, totals, params, now=1000) == 0
    assert c.balance_of(100 * USDC, totals, params, now=1000) == 200 * USDC
    assert c.balance_of(-100 * USDC, totals, params, now=1000) == 0


# --- Interest rates and accrual --------------------------------------------------------------


def _default_params() -> c.InterestRateParams:
    # test/helpers.ts makeProtocol defaults.
    return c.InterestRateParams.from_per_year(
        supply_kink=8 * 10**17,
        supply_per_year_interest_rate_base=0,
        supply_per_year_interest_rate_slope_low=5 * 10**16,
        supply_per_year_interest_rate_slope_high=2 * E18,
        borrow_kink=8 * 10**17,
        borrow_per_year_interest_rate_base=5 * 10**15,
        borrow_per_year_interest_rate_slope_low=10**17,
        borrow_per_year_interest_rate_slope_high=3 * E18,
    )


# test/interest-rate-test.ts interestRateParams
_RATE_TEST_PARAMS = c.InterestRateParams.from_per_year(
    supply_kink=8 * 10**17,
    supply_per_year_interest_rate_base=0,
    supply_per_year_interest_rate_slope_low=4 * 10**16,
    supply_per_year_interest_rate_slope_high=4 * 10**17,
    borrow_kink=8 * 10**17,
    borrow_per_year_interest_rate_base=10**16,
    borrow_per_year_interest_rate_slope_low=5 * 10**16,
    borrow_per_year_interest_rate_slope_high=3 * 10**17,
)


@pytest.mark.parametrize(
    ("totals", "utilization", "supply_apr", "borrow_apr"),
    [
        # "when below kink utilization": 10%; 0.04 * 0.1; 0.01 + 0.05 * 0.1
        (c.CometTotals(2 * IDX, 4 * IDX, 500, 25, 0), 10**17, 4 * 10**15, 15 * 10**15),
        # "when above kink utilization": 90%; 0.04*0.8 + 0.4*0.1; 0.01 + 0.05*0.8 + 0.3*0.1
        (c.CometTotals(2 * IDX, 3 * IDX, 50, 30, 0), 9 * 10**17, 72 * 10**15, 8 * 10**16),
        # "when 0 utilization"
        (c.CometTotals(2 * IDX, 3 * IDX, 50, 0, 0), 0, 0, 10**16),
    ],
)
def test_interest_rate_test(
    totals: c.CometTotals, utilization: int, supply_apr: int, borrow_apr: int
) -> None:
    # test/interest-rate-test.ts: annualised per-second rates within 1e8 wei.
    assert totals.utilization == utilization
    supply = c.supply_rate(utilization, _RATE_TEST_PARAMS)
    borrow = c.borrow_rate(utilization, _RATE_TEST_PARAMS)
    assert abs(supply * c.SECONDS_PER_YEAR - supply_apr) <= 10**8
    assert abs(borrow * c.SECONDS_PER_YEAR - borrow_apr) <= 10**8


@pytest.mark.parametrize(
    ("total_supply_base", "total_borrow_base", "borrow_rate"),
    [
        # test/accrue-test.ts (before the split supply curve; the borrow curve is unchanged):
        # "less than min rewards" (100% utilization) and "more than min rewards".
        (11000, 11000, 21721207507),
        (14000 * USDC, 13000 * USDC, 14926252082),
    ],
)
def test_accrue_test_borrow_rates(
    total_supply_base: int, total_borrow_base: int, borrow_rate: int
) -> None:
    totals = c.CometTotals(IDX, IDX, total_supply_base, total_borrow_base, 0)
    assert c.borrow_rate(totals.utilization, _default_params()) == borrow_rate


def test_accrue_test_projects_indices() -> None:
    # test/accrue-test.ts projectBaseIndex: index + index * rate * time / 1e18, 1000 s.
    params = _default_params()
    totals = c.CometTotals(IDX, IDX, 14000 * USDC, 13000 * USDC, last_accrual_time=100)
    u = totals.utilization
    supply = c.supply_rate(u, params)
    assert c.borrow_rate(u, params) == 14926252082
    assert totals.accrued_indices(params, now=1100) == (
        IDX + IDX * supply * 1000 // E18,
        IDX + IDX * 14926252082 * 1000 // E18,
    )
    # "accrues correctly with no time elapsed"
    assert totals.accrued_indices(params, now=100) == (IDX, IDX)


def test_accrue_test_reverts_on_overflow() -> None:
    # test/accrue-test.ts "reverts on overflows": baseSupplyIndex 2^64 - 1 with interest.
    totals = c.CometTotals(2**64 - 1, IDX, 14000, 13000, 0)
    with pytest.raises(c.MathError):
        totals.accrued_indices(_default_params(), now=1000)


def test_utilization_above_one() -> None:
    # test/interest-rate-test.ts (early version) "when above 100% utilization": 110%.
    assert c.CometTotals(IDX, IDX, 100, 110, 0).utilization == 11 * 10**17


# --- isLiquidatable (test/is-liquidatable-test.ts) --------------------------------------------


def test_is_liquidatable_principal_sign() -> None:
    assert not liquidatable(1_000_000, [])  # "is false when user is owed principal"
    assert liquidatable(-1_000_000, [])  # "is true when user owes principal"


def test_is_liquidatable_collateral_cases() -> None:
    debt = -100_000 * USDC  # user owes $100,000
    # "is false when collateral can cover the borrowed principal": $100,000 in COMP at $1
    assert not liquidatable(debt, [collateral(100_000 * E18, 1)])
    # "is true when the collateral cannot cover the borrowed principal": $95,000
    assert liquidatable(debt, [collateral(95_000 * E18, 1)])
    # "takes liquidateCollateralFactor into account": $100,000 at LCF 0.8
    assert liquidatable(debt, [collateral(100_000 * E18, 1, bcf=75 * 10**16, lcf=8 * 10**17)])
    # "changes when the underlying asset price changes": $1 -> $0.50
    assert not liquidatable(debt, [collateral(100_000 * E18, 1)])
    assert liquidatable(debt, [collateral(100_000 * E18, 0.5)])


def test_is_liquidatable_zero_lcf_is_skipped() -> None:
    # "isLiquidatable semantics across liquidateCollateralFactor values": price 200, LCF 0.8.
    assets = [collateral(E18, 200, lcf=8 * 10**17, asset=f"ASSET{i}") for i in range(5)]
    borrow = -400 * USDC  # 5 x 160 = 800 of liquidation value: safe
    assert not liquidatable(borrow, assets, skip_zero_lcf=True)
    zeroed = [
        collateral(E18, 200, lcf=0) if i in (1, 3, 4) else asset for i, asset in enumerate(assets)
    ]
    assert liquidatable(borrow, zeroed, skip_zero_lcf=True)  # 320 < 400
    # "skips liquidation value of asset i with liquidateCF=0": 1 unit at 200, borrow 150.
    assert not liquidatable(-150 * USDC, [collateral(E18, 200, lcf=8 * 10**17)])
    assert liquidatable(-150 * USDC, [collateral(E18, 200, lcf=0)], skip_zero_lcf=True)
    # 10 units supplied, 5 USDC borrowed (the suite's `before`), then LCF set to 0.
    assert not liquidatable(-5 * USDC, [collateral(10 * E18, 200, lcf=8 * 10**17)])
    assert liquidatable(-5 * USDC, [collateral(10 * E18, 200, lcf=0)], skip_zero_lcf=True)


def test_is_liquidatable_reads_prices_like_the_contract() -> None:
    dead_feed = collateral(E18, 0, lcf=0)  # a delisted asset whose feed answers 0
    healthy = collateral(10 * E18, 200, lcf=8 * 10**17)
    # Older builds read every price until liquidity >= 0: the dead feed reverts (BadPrice)...
    with pytest.raises(c.BadPrice):
        liquidatable(-5 * USDC, [dead_feed, healthy])
    # ...unless the loop has already exited early.
    assert not liquidatable(-5 * USDC, [healthy, dead_feed])
    # Newer builds skip LCF-0 assets, price lookup included.
    assert not liquidatable(-5 * USDC, [dead_feed, healthy], skip_zero_lcf=True)
    with pytest.raises(c.BadPrice):
        c.is_liquidatable(-1, IDX, IDX, 0, USDC, [], skip_zero_lcf=True)


def test_signed_mul_price_truncates_toward_zero() -> None:
    # A debt of 1 base wei at $0.99999999 is -99.999999 price units: -99 in Solidity (sdiv),
    # where Python's floor division would give -100.
    assert c.signed_mul_price(-1, USD - 1, USDC) == -99
    assert c.signed_mul_price(-3, USD - 1, USDC) == -299
    assert c.signed_mul_price(3, USD - 1, USDC) == 299
    # So that debt is covered by 99 units of weighted collateral.
    assert not c.is_liquidatable(
        -1, IDX, IDX, USD - 1, USDC, [c.CometCollateral(99, 1, 1, ONE)], skip_zero_lcf=False
    )


def test_is_borrow_collateralized() -> None:
    # test/is-borrow-collateralized-test.ts
    args = (IDX, IDX, USD, USDC)
    assert c.is_borrow_collateralized(1_000_000, *args, [])  # "is true when user is owed"
    assert not c.is_borrow_collateralized(-1_000_000, *args, [])  # "is false when user owes"
    # "is true when value of collateral is greater than principal owed": 1.2 COMP, borrowCF 0.9
    comp = collateral(12 * 10**17, 1, bcf=9 * 10**17)
    assert c.is_borrow_collateralized(-USDC, *args, [comp])
    # "takes borrow collateral factor into account": 1 COMP at 0.9 < 1 USDC
    assert not c.is_borrow_collateralized(-USDC, *args, [collateral(E18, 1, bcf=9 * 10**17)])
    # "changes when the underlying asset price changes": 5 COMP, borrowCF 0.2, $1 -> $0.50
    assert c.is_borrow_collateralized(-USDC, *args, [collateral(5 * E18, 1, bcf=2 * 10**17)])
    assert not c.is_borrow_collateralized(-USDC, *args, [collateral(5 * E18, 0.5, bcf=2 * 10**17)])
    # "isBorrowCollateralized with mixed borrow factors counts only positive CF assets":
    # 5 assets x 1 unit at $200, borrowCF 0.75, 400 borrowed; zeroing three leaves 300.
    assets = [collateral(E18, 200, bcf=75 * 10**16, lcf=8 * 10**17) for _ in range(5)]
    assert c.is_borrow_collateralized(-400 * USDC, *args, assets, skip_zero_bcf=True)
    zeroed = [
        collateral(E18, 200, bcf=0) if i in (1, 3, 4) else asset for i, asset in enumerate(assets)
    ]
    assert not c.is_borrow_collateralized(-400 * USDC, *args, zeroed, skip_zero_bcf=True)
    # Boundary: liquidity exactly 0 is collateralized (>= 0).
    comp = collateral(100_000 * E18, 1, bcf=75 * 10**16, lcf=8 * 10**17)
    assert c.is_borrow_collateralized(-75_000 * USDC, *args, [comp])
    assert not c.is_borrow_collateralized(-75_000 * USDC - 1, *args, [comp])
    assert c.borrow_liquidity(-75_000 * USDC, *args, [comp]) == 0


def test_liquidation_margin() -> None:
    comp = collateral(100_000 * E18, 1, lcf=8 * 10**17)
    margin = c.liquidation_margin(-100_000 * USDC, IDX, IDX, USD, USDC, [comp], skip_zero_lcf=True)
    assert margin == -20_000 * USD


# --- absorb (test/absorb-test.ts) -------------------------------------------------------------


def test_absorb_one_account_without_collateral() -> None:
    # "absorbs 1 account and pays out the absorber": principal -100, no interest.
    result = c.absorb(-100, IDX, IDX, USD, USDC, [])
    assert result.new_principal == 0
    assert (result.base_paid_out, result.usd_value) == (100, c.mul_price(100, USD, USDC))
    assert (result.repay_amount, result.supply_amount) == (100, 0)  # totalBorrowBase 100 -> 0


def test_absorb_two_accounts() -> None:
    # "absorbs 2 accounts": -100 and -700 out of totalBorrowBase 2000 -> 1200 left.
    paid = [c.absorb(p, IDX, IDX, USD, USDC, []) for p in (-100, -700)]
    assert [r.base_paid_out for r in paid] == [100, 700]
    assert 2000 - sum(r.repay_amount for r in paid) == 1200


def test_absorb_three_accounts_with_collateral() -> None:
    # "absorbs 3 accounts with collateral": debts 1e6, 1e12, 1e18 base wei, all covered by
    # reserves (the collateral is worth less than the debt), collateral all seized.
    comp, weth, wbtc = (175, 18), (3000, 18), (41000, 8)

    def seized(*held: tuple[int, tuple[int, int]]) -> list[c.CometCollateral]:
        return [collateral(amount, price, decimals=dec) for amount, (price, dec) in held]

    accounts = [
        (-(10**6), seized((10**12, comp))),
        (-(10**12), seized((10 * E18, comp), (E18, weth))),
        (-(10**18), seized((10_000 * E18, comp), (50 * E18, weth), (50 * 10**8, wbtc))),
    ]
    repaid = 0
    for principal, held in accounts:
        result = c.absorb(principal, IDX, IDX, USD, USDC, held)
        assert result.new_principal == 0
        assert result.base_paid_out == -principal
        assert result.usd_value == c.mul_price(-principal, USD, USDC)
        assert [a.collateral_absorbed for a in result.collaterals] == [h.balance for h in held]
        assert [a.usd_value for a in result.collaterals] == [
            c.mul_price(h.balance, h.price, h.scale) for h in held
        ]
        repaid += result.repay_amount
    # t1.totalBorrowBase == 3e21 - 1e18 - 1e12 - 1e6
    assert repaid == 10**18 + 10**12 + 10**6


def test_absorb_with_more_than_enough_collateral() -> None:
    # "absorbs an account with more than enough collateral to still cover debt":
    # borrowCF 1/2, liquidateCF 2/3 (packed to 0.6666), liquidationFactor 1.
    held = [
        collateral(E18, 175, lcf=ONE * 2 // 3, bcf=ONE // 2),
        collateral(E18, 3000, lcf=ONE * 2 // 3, bcf=ONE // 2),
        collateral(10**8, 41000, decimals=8, lcf=ONE * 2 // 3, bcf=ONE // 2),
    ]
    assert held[0].liquidate_collateral_factor == 6666 * 10**14
    final_debt = 1
    starting = final_debt - (41000 * USDC + 3000 * USDC + 175 * USDC)
    assert liquidatable(starting, held)
    result = c.absorb(starting, IDX, IDX, USD, USDC, held)
    assert result.new_principal == final_debt  # pU1.internal.USDC == 1
    assert result.base_paid_out == final_debt - starting
    assert (result.repay_amount, result.supply_amount) == (-starting, final_debt)


def test_absorb_updates_assets_in_case_is_liquidatable() -> None:
    # "updates assetsIn for liquidated account": $4k borrowed > $3k + $175 collateral.
    held = [collateral(E18, 175), collateral(E18, 3000)]
    assert liquidatable(-4000 * USDC, held)


# --- quoteCollateral (test/quote-collateral-test.ts) ------------------------------------------


@pytest.mark.parametrize(
    ("base_amount", "asset_price", "liquidation_factor", "store_front", "expected"),
    [
        # "quotes the collateral correctly for a positive base amount": 200 USDC -> 1.25 COMP
        (200 * USDC, 200, 6 * 10**17, 5 * 10**17, 125 * 10**16),
        # "for a zero base amount"
        (0, 200, ONE, ONE, 0),
        # "at market price when storeFrontPriceFactor is 0%"
        (200 * USDC, 200, 6 * 10**17, 0, E18),
        # "without truncating integer during intermediate calculations": 810 USDC -> 100 COMP
        (810 * USDC, 9, 8 * 10**17, 5 * 10**17, 100 * E18),
        # "does not overflow for large amounts": 1e15 USDC -> 6.25e12 COMP
        (10**15 * USDC, 200, 75 * 10**16, 8 * 10**17, 625 * 10**28),
    ],
)
def test_quote_collateral(
    base_amount: int, asset_price: int, liquidation_factor: int, store_front: int, expected: int
) -> None:
    assert (
        c.quote_collateral(
            base_amount,
            asset_price=asset_price * USD,
            base_price=USD,
            asset_scale=E18,
            base_scale=USDC,
            liquidation_factor=liquidation_factor,
            store_front_price_factor=store_front,
        )
        == expected
    )


# --- Derived health factor (woof-software/comet docs/liquidation.md §2.4) ---------------------


def _woof(price_usd: int) -> tuple[int, list[c.CometCollateral]]:
    # 10 WETH, LCF 0.85, 15,000 USDC borrowed.
    return -15_000 * USDC, [collateral(10 * E18, price_usd, lcf=85 * 10**16, bcf=8 * 10**17)]


def test_woof_worked_example() -> None:
    principal, held = _woof(2000)
    assert c.health_factor(principal, IDX, IDX, USD, USDC, held) == 1133333333333333333
    assert not liquidatable(principal, held)
    principal, held = _woof(1700)
    assert c.health_factor(principal, IDX, IDX, USD, USDC, held) == 963333333333333333
    assert liquidatable(principal, held)


def test_woof_liquidation_price() -> None:
    principal, held = _woof(2000)
    price = c.liquidation_price(principal, IDX, IDX, USD, USDC, held, 0)
    assert price == 176470588236  # $1,764.71
    at = [c.CometCollateral(10 * E18, price, E18, 85 * 10**16)]
    below = [c.CometCollateral(10 * E18, price - 1, E18, 85 * 10**16)]
    # Here the rounded-up price is exact for the contract too: one unit lower liquidates.
    assert not liquidatable(principal, at)
    assert liquidatable(principal, below)


def test_health_factor_and_liquidation_price_none_cases() -> None:
    _, held = _woof(2000)
    assert c.health_factor(100, IDX, IDX, USD, USDC, held) is None
    assert c.liquidation_price(100, IDX, IDX, USD, USDC, held, 0) is None
    no_lcf = [collateral(10 * E18, 2000, lcf=0)]
    assert c.liquidation_price(-15_000 * USDC, IDX, IDX, USD, USDC, no_lcf, 0) is None
    covered = [*held, collateral(10**6 * E18, 1)]
    assert c.liquidation_price(-15_000 * USDC, IDX, IDX, USD, USDC, covered, 0) is None


def test_truncate_factor() -> None:
    assert c.truncate_factor(ONE - 1) == 9999 * 10**14  # the helpers' default borrowCF
    assert c.truncate_factor(85 * 10**16) == 85 * 10**16


# --- Properties -----------------------------------------------------------------------------

_indices = st.integers(IDX, 50 * IDX)


@given(_indices, st.integers(0, 2**100))
def test_principal_round_trips(index: int, present: int) -> None:
    supply = c.principal_value_supply(index, present)
    assert c.present_value_supply(index, supply) <= present
    borrow = c.principal_value_borrow(index, present)
    assert c.present_value_borrow(index, borrow) >= present


@given(
    st.integers(-(10**15), 10**15),
    _indices,
    _indices,
    st.lists(
        st.tuples(st.integers(0, 10**24), st.integers(1, 10**12), st.integers(0, 10_000)),
        max_size=4,
    ),
)
def test_is_liquidatable_agrees_with_margin_and_hf(
    principal: int,
    supply_index: int,
    borrow_index: int,
    raw: list[tuple[int, int, int]],
) -> None:
    held = [c.CometCollateral(b, p, E18, f * c.FACTOR_DESCALE) for b, p, f in raw]
    args = (principal, supply_index, borrow_index, USD, USDC, held)
    flag = c.is_liquidatable(*args, skip_zero_lcf=True)
    assert flag == (principal < 0 and c.liquidation_margin(*args, skip_zero_lcf=True) < 0)
    hf = c.health_factor(*args)
    if hf is not None:
        assert flag == (hf < ONE)


@given(st.integers(1, 10**12), st.integers(1, 10**12), st.integers(1, 10**14))
def test_health_factor_monotone_in_price(p1: int, p2: int, debt: int) -> None:
    lo, hi = sorted((p1, p2))

    def hf(price: int) -> int | None:
        held = [c.CometCollateral(10 * E18, price, E18, 85 * 10**16)]
        return c.health_factor(-debt, IDX, IDX, USD, USDC, held)

    low, high = hf(lo), hf(hi)
    assert low is not None and high is not None and low <= high
