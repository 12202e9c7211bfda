"""Morpho Blue's integer math: rounding at the boundaries, empty markets, and accruals the real
contract did (tests/vectors/morpho_blue_logs.json, captured by the integration test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocols.morpho_blue import math as mm
from protocols.morpho_blue.math import WAD, MarketTotals

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "morpho_blue_logs.json").read_text())


def test_mul_div_rounds_down_and_up() -> None:
    assert mm.mul_div_down(7, 3, 2) == 10  # 21 / 2 = 10.5
    assert mm.mul_div_up(7, 3, 2) == 11
    assert mm.mul_div_down(6, 3, 2) == mm.mul_div_up(6, 3, 2) == 9  # exact: no rounding
    assert mm.mul_div_up(0, 5, 7) == 0
    assert mm.w_mul_down(WAD - 1, 1) == 0
    assert mm.w_div_down(1, 3) == 333_333_333_333_333_333
    assert mm.w_div_up(1, 3) == 333_333_333_333_333_334


def test_the_contract_reverts_where_these_raise() -> None:
    with pytest.raises(ZeroDivisionError):
        mm.mul_div_up(1, 1, 0)  # d - 1 underflows in Solidity
    with pytest.raises(ZeroDivisionError):
        mm.mul_div_down(1, 1, 0)
    with pytest.raises(OverflowError):
        mm.mul_div_down(2**255, 2, 1)  # x * y overflows uint256
    with pytest.raises(OverflowError):
        mm.mul_div_up(mm.MAX_UINT256, 1, 2)  # x * y + (d - 1) overflows
    with pytest.raises(OverflowError):
        mm.to_uint128(mm.MAX_UINT128 + 1)
    assert mm.to_uint128(mm.MAX_UINT128) == mm.MAX_UINT128


def test_taylor_compounded_is_three_floored_terms() -> None:
    # x = 0.1 for one period: 0.1 + 0.1²/2 + 0.1³/6, each term floored
    assert mm.w_taylor_compounded(WAD // 10, 1) == (
        100_000_000_000_000_000 + 5_000_000_000_000_000 + 166_666_666_666_666
    )
    assert mm.w_taylor_compounded(0, 10**9) == 0
    assert mm.w_taylor_compounded(WAD // 10, 0) == 0
    # n·x = 1: below e - 1 (1.718…), the missing terms
    assert mm.w_taylor_compounded(WAD, 1) == WAD + WAD // 2 + WAD // 6


def test_shares_in_an_empty_market_use_the_virtual_shares() -> None:
    assert mm.to_shares_down(1, 0, 0) == 10**6
    assert mm.to_shares_up(1, 0, 0) == 10**6
    assert mm.to_assets_down(10**6, 0, 0) == 1
    assert mm.to_assets_down(10**6 - 1, 0, 0) == 0
    assert mm.to_assets_up(1, 0, 0) == 1  # one share of debt is one asset, rounded up
    assert mm.to_assets_down(1, 0, 0) == 0


def test_shares_rounding_favours_the_market() -> None:
    total_assets, total_shares = 1_000_003, 999_999_000_000
    # a supply mints at most, a withdrawal burns at least, the exact ratio's shares
    exact_num = 10 * (total_shares + mm.VIRTUAL_SHARES)
    exact_den = total_assets + mm.VIRTUAL_ASSETS
    assert exact_num % exact_den != 0  # a ratio that really rounds
    down = mm.to_shares_down(10, total_assets, total_shares)
    up = mm.to_shares_up(10, total_assets, total_shares)
    assert (down, up) == (exact_num // exact_den, exact_num // exact_den + 1)
    assert mm.to_assets_up(down, total_assets, total_shares) <= 10
    assert mm.to_assets_down(up, total_assets, total_shares) >= 10 - 1


def test_utils() -> None:
    assert mm.exactly_one_zero(0, 1) and mm.exactly_one_zero(1, 0)
    assert not mm.exactly_one_zero(0, 0) and not mm.exactly_one_zero(2, 3)
    assert mm.zero_floor_sub(5, 7) == 0 and mm.zero_floor_sub(7, 5) == 2
    assert mm.min_(3, 2) == 2 and mm.min_(2, 3) == 2


def test_irm_mock_rate() -> None:
    assert mm.irm_mock_borrow_rate(MarketTotals(total_borrow_assets=5)) == 0  # no supply
    half = MarketTotals(total_supply_assets=2_000, total_borrow_assets=1_000)
    assert mm.irm_mock_borrow_rate(half) == (WAD // 2) // (365 * 86_400)


@pytest.mark.parametrize("vector", VECTORS["accruals"], ids=lambda v: str(v["timestamp"]))
def test_accrual_equals_what_the_contract_did(vector: dict[str, int | list[int]]) -> None:
    before = vector["before"]
    assert isinstance(before, list)
    market = MarketTotals(*before)
    timestamp = vector["timestamp"]
    assert isinstance(timestamp, int)
    rate = mm.irm_mock_borrow_rate(market)
    assert rate == vector["borrow_rate"]
    accrual = mm.accrue_interest(market, timestamp, rate)
    assert accrual.event
    assert (accrual.interest, accrual.fee_shares) == (vector["interest"], vector["fee_shares"])
    after = accrual.market
    assert after.total_borrow_assets == market.total_borrow_assets + accrual.interest
    assert after.total_supply_assets == market.total_supply_assets + accrual.interest
    assert after.total_supply_shares == market.total_supply_shares + accrual.fee_shares
    assert after.last_update == timestamp


def test_accrual_vectors_include_a_fee() -> None:
    assert any(v["fee_shares"] for v in VECTORS["accruals"])
    assert any(v["interest"] and not v["fee_shares"] for v in VECTORS["accruals"])


def test_accrual_with_a_fee_by_hand() -> None:
    market = MarketTotals(
        total_supply_assets=2 * WAD,
        total_supply_shares=2 * WAD * 10**6,
        total_borrow_assets=WAD,
        total_borrow_shares=WAD * 10**6,
        last_update=100,
        fee=WAD // 10,
    )
    rate = WAD // 1000  # 0.1% per second, for 10 s
    accrual = mm.accrue_interest(market, 110, rate)
    growth = 10**16 + 5 * 10**13 + 166_666_666_666  # 0.01 + 0.01²/2 + 0.01³/6, floored
    assert accrual.interest == growth
    fee = growth // 10
    # the fee's shares are priced on the supply without the fee itself
    shares = fee * (2 * WAD * 10**6 + 10**6) // (2 * WAD + growth - fee + 1)
    assert accrual.fee_shares == shares
    assert accrual.market.total_supply_shares == 2 * WAD * 10**6 + shares


def test_accrual_without_time_or_irm() -> None:
    market = MarketTotals(100, 10**8, 50, 5 * 10**7, last_update=1_000)
    assert mm.accrue_interest(market, 1_000, 10**12) == mm.Accrual(market, 0, 0, 0, False)
    no_irm = mm.accrue_interest(market, 2_000, None, has_irm=False)
    assert no_irm.market == MarketTotals(100, 10**8, 50, 5 * 10**7, last_update=2_000)
    assert not no_irm.event and no_irm.interest == 0
    with pytest.raises(ValueError, match="before the last update"):
        mm.accrue_interest(market, 999, 0)
    with pytest.raises(ValueError, match="borrow rate"):
        mm.accrue_interest(market, 2_000, None)


def test_expected_balances_skip_like_morpho_balances_lib() -> None:
    market = MarketTotals(10**12, 10**18, 5 * 10**11, 5 * 10**17, last_update=1_000, fee=0)
    assert mm.expected_market_balances(market, 1_000, 10**9) == market
    assert mm.expected_market_balances(market, 5_000, 10**9, has_irm=False) == market
    empty_borrow = MarketTotals(10**12, 10**18, 0, 0, last_update=1_000)
    assert mm.expected_market_balances(empty_borrow, 9_000, 10**9) == empty_borrow
    later = mm.expected_market_balances(market, 5_000, 10**9)
    # the totals accrue, the stored lastUpdate stays (the library reads, it does not write)
    accrued = mm.accrue_interest(market, 5_000, 10**9).market
    assert later.total_borrow_assets == accrued.total_borrow_assets > market.total_borrow_assets
    assert later.last_update == 1_000
    assert mm.expected_borrow_assets(5 * 10**17, later) == mm.to_assets_up(
        5 * 10**17, later.total_borrow_assets, later.total_borrow_shares
    )
    assert mm.expected_supply_assets(10**18, later) == mm.to_assets_down(
        10**18, later.total_supply_assets, later.total_supply_shares
    )


def test_healthy_at_exactly_max_borrow() -> None:
    lltv = 8 * 10**17
    collateral, price = WAD, mm.ORACLE_PRICE_SCALE  # one collateral unit is one loan unit
    assert mm.max_borrow(collateral, price, lltv) == 8 * 10**17
    total_assets, total_shares = 8 * 10**17, 8 * 10**23
    # the borrowed assets round up to exactly maxBorrow: healthy (>=)
    assert mm.to_assets_up(total_shares, total_assets, total_shares) == 8 * 10**17
    assert mm.is_healthy(collateral, total_shares, total_assets, total_shares, price, lltv)
    assert mm.health_factor(8 * 10**17, 8 * 10**17) == WAD
    # one more asset of debt: unhealthy, the health factor just under WAD
    assert mm.to_assets_up(total_shares, total_assets + 1, total_shares) == 8 * 10**17 + 1
    assert not mm.is_healthy(collateral, total_shares, total_assets + 1, total_shares, price, lltv)
    # 1e18 · 8e17 / (8e17 + 1) = 1e18 - 1.25, floored
    assert mm.health_factor(8 * 10**17, 8 * 10**17 + 1) == WAD - 2
    # two wei less collateral: maxBorrow floors below the debt
    assert not mm.is_healthy(collateral - 2, total_shares, total_assets, total_shares, price, lltv)
    # no borrow shares is healthy whatever the collateral
    assert mm.is_healthy(0, 0, total_assets, total_shares, price, lltv)
    assert mm.health_factor(0, 0) is None


def test_collateral_value_rounds_down_at_the_oracle_scale() -> None:
    price = 3_000 * 10**24  # 3,000 (6-decimal) loan units per 18-decimal collateral unit
    assert mm.collateral_value(10**18, price) == 3_000 * 10**6
    # one loan unit is worth 333,333,333.3 collateral units
    assert mm.collateral_value(333_333_333, price) == 0
    assert mm.collateral_value(333_333_334, price) == 1


def test_liquidation_incentive_factor() -> None:
    assert mm.liquidation_incentive_factor(86 * 10**16) == 10**36 // (958 * 10**15)
    assert mm.liquidation_incentive_factor(5 * 10**17) == mm.MAX_LIQUIDATION_INCENTIVE_FACTOR
