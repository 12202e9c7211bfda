"""Morpho Blue 1.0.0's integer math (pure): MathLib, SharesMathLib, UtilsLib, the interest
accrual of `Morpho._accrueInterest`, MorphoBalancesLib's expected balances and `_isHealthy`.

Every function follows the Solidity line by line, with the same rounding. Solidity 0.8 reverts
on overflow; these functions raise `OverflowError` where the contract would revert (a uint256
product, a uint128 cast), so a value the contract could never hold is never silently returned.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

WAD = 10**18
# SharesMathLib: virtual shares and assets (OpenZeppelin's inflation-attack mitigation)
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1
# ConstantsLib
MAX_FEE = 25 * 10**16
ORACLE_PRICE_SCALE = 10**36
LIQUIDATION_CURSOR = 3 * 10**17
MAX_LIQUIDATION_INCENTIVE_FACTOR = 115 * 10**16
# IrmMock divides the utilization by `365 days`
SECONDS_PER_YEAR = 365 * 24 * 3600

MAX_UINT256 = 2**256 - 1
MAX_UINT128 = 2**128 - 1


def _u256(value: int) -> int:
    if value > MAX_UINT256:
        raise OverflowError("uint256 overflow (the contract would revert)")
    return value


# MathLib


def mul_div_down(x: int, y: int, d: int) -> int:
    """(x * y) / d rounded down."""
    return _u256(x * y) // d


def mul_div_up(x: int, y: int, d: int) -> int:
    """(x * y + (d - 1)) / d: rounded up (d = 0 reverts: `d - 1` underflows)."""
    if d == 0:
        raise ZeroDivisionError("mulDivUp by zero (the contract would revert)")
    return _u256(_u256(x * y) + (d - 1)) // d


def w_mul_down(x: int, y: int) -> int:
    return mul_div_down(x, y, WAD)


def w_div_down(x: int, y: int) -> int:
    return mul_div_down(x, WAD, y)


def w_div_up(x: int, y: int) -> int:
    return mul_div_up(x, WAD, y)


def w_taylor_compounded(x: int, n: int) -> int:
    """e^(n·x) - 1 by its first three Taylor terms (x a per-second rate in WAD, n seconds)."""
    first = _u256(x * n)
    second = mul_div_down(first, first, 2 * WAD)
    third = mul_div_down(second, first, 3 * WAD)
    return _u256(first + second + third)


# SharesMathLib


def to_shares_down(assets: int, total_assets: int, total_shares: int) -> int:
    return mul_div_down(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_assets_down(shares: int, total_assets: int, total_shares: int) -> int:
    return mul_div_down(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


def to_shares_up(assets: int, total_assets: int, total_shares: int) -> int:
    return mul_div_up(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_assets_up(shares: int, total_assets: int, total_shares: int) -> int:
    return mul_div_up(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


# UtilsLib


def exactly_one_zero(x: int, y: int) -> bool:
    return (x == 0) != (y == 0)


def min_(x: int, y: int) -> int:
    return y if y < x else x


def to_uint128(x: int) -> int:
    if x > MAX_UINT128:
        raise OverflowError("max uint128 exceeded (the contract would revert)")
    return x


def zero_floor_sub(x: int, y: int) -> int:
    """max(0, x - y)."""
    return x - y if x > y else 0


# Markets


@dataclass(frozen=True, slots=True)
class MarketTotals:
    """`Market` as Morpho stores it (`market(id)`); the totals lag interest until an accrual."""

    total_supply_assets: int = 0
    total_supply_shares: int = 0
    total_borrow_assets: int = 0
    total_borrow_shares: int = 0
    last_update: int = 0
    fee: int = 0


@dataclass(frozen=True, slots=True)
class Accrual:
    """What `_accrueInterest` did: the market after it, and its AccrueInterest event's fields
    (`event` False when it emits none: no time elapsed or no IRM)."""

    market: MarketTotals
    borrow_rate: int
    interest: int
    fee_shares: int
    event: bool


def irm_mock_borrow_rate(market: MarketTotals) -> int:
    """IrmMock.borrowRate: x% utilization is x% APR, per second (0 with no supply)."""
    if market.total_supply_assets == 0:
        return 0
    utilization = w_div_down(market.total_borrow_assets, market.total_supply_assets)
    return utilization // SECONDS_PER_YEAR


def accrue_interest(
    market: MarketTotals, timestamp: int, borrow_rate: int | None, *, has_irm: bool = True
) -> Accrual:
    """Morpho._accrueInterest at `timestamp`, given what the IRM's `borrowRate` answers for the
    stored `market` (only read when time elapsed). The fee recipient gets `fee_shares`."""
    elapsed = timestamp - market.last_update
    if elapsed < 0:
        raise ValueError(f"timestamp {timestamp} is before the last update {market.last_update}")
    if elapsed == 0:
        return Accrual(market, 0, 0, 0, event=False)
    if not has_irm:
        return Accrual(replace(market, last_update=timestamp), 0, 0, 0, event=False)
    if borrow_rate is None:
        raise ValueError("a market with an IRM needs its borrow rate to accrue interest")
    interest = w_mul_down(market.total_borrow_assets, w_taylor_compounded(borrow_rate, elapsed))
    total_borrow_assets = to_uint128(market.total_borrow_assets + to_uint128(interest))
    total_supply_assets = to_uint128(market.total_supply_assets + to_uint128(interest))
    fee_shares = 0
    total_supply_shares = market.total_supply_shares
    if market.fee != 0:
        fee_amount = w_mul_down(interest, market.fee)
        # the supply already includes the fee amount: it is taken out to price the fee's shares
        fee_shares = to_shares_down(
            fee_amount, total_supply_assets - fee_amount, market.total_supply_shares
        )
        total_supply_shares = to_uint128(total_supply_shares + to_uint128(fee_shares))
    accrued = MarketTotals(
        total_supply_assets=total_supply_assets,
        total_supply_shares=total_supply_shares,
        total_borrow_assets=total_borrow_assets,
        total_borrow_shares=market.total_borrow_shares,
        last_update=timestamp,
        fee=market.fee,
    )
    return Accrual(accrued, borrow_rate, interest, fee_shares, event=True)


def expected_market_balances(
    market: MarketTotals, timestamp: int, borrow_rate: int | None, *, has_irm: bool = True
) -> MarketTotals:
    """MorphoBalancesLib.expectedMarketBalances: the totals with interest accrued to `timestamp`
    (`borrow_rate`: the IRM's `borrowRateView` for the stored market). Like the library it skips
    the accrual with no time elapsed, no borrow or no IRM; `last_update` stays the stored one."""
    elapsed = timestamp - market.last_update
    if elapsed == 0 or market.total_borrow_assets == 0 or not has_irm:
        return market
    accrued = accrue_interest(market, timestamp, borrow_rate).market
    return replace(accrued, last_update=market.last_update)


def expected_supply_assets(supply_shares: int, balances: MarketTotals) -> int:
    """MorphoBalancesLib.expectedSupplyAssets over expected balances: rounded down."""
    return to_assets_down(supply_shares, balances.total_supply_assets, balances.total_supply_shares)


def expected_borrow_assets(borrow_shares: int, balances: MarketTotals) -> int:
    """MorphoBalancesLib.expectedBorrowAssets over expected balances: rounded up."""
    return to_assets_up(borrow_shares, balances.total_borrow_assets, balances.total_borrow_shares)


# Health and liquidation


def collateral_value(collateral: int, price: int) -> int:
    """The collateral in loan-token units at the oracle's price (scaled by 1e36), rounded down."""
    return mul_div_down(collateral, price, ORACLE_PRICE_SCALE)


def max_borrow(collateral: int, price: int, lltv: int) -> int:
    """`_isHealthy`'s maxBorrow: collateral.mulDivDown(price, 1e36).wMulDown(lltv)."""
    return w_mul_down(collateral_value(collateral, price), lltv)


def is_healthy(
    collateral: int,
    borrow_shares: int,
    total_borrow_assets: int,
    total_borrow_shares: int,
    price: int,
    lltv: int,
) -> bool:
    """Morpho._isHealthy: no borrow shares is healthy; else maxBorrow >= borrowed (rounded up)."""
    if borrow_shares == 0:
        return True
    borrowed = to_assets_up(borrow_shares, total_borrow_assets, total_borrow_shares)
    return max_borrow(collateral, price, lltv) >= borrowed


def health_factor(max_borrow_assets: int, borrowed: int) -> int | None:
    """maxBorrow / borrowed in WAD, rounded down; None without debt.

    Below WAD exactly when maxBorrow < borrowed, i.e. when `_isHealthy` is false.
    """
    if borrowed == 0:
        return None
    return w_div_down(max_borrow_assets, borrowed)


def liquidation_incentive_factor(lltv: int) -> int:
    """min(1.15, 1 / (1 - 0.3 * (1 - lltv))) in WAD, as `liquidate` computes it."""
    return min_(
        MAX_LIQUIDATION_INCENTIVE_FACTOR,
        w_div_down(WAD, WAD - w_mul_down(LIQUIDATION_CURSOR, WAD - lltv)),
    )
