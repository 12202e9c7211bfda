"""Compound V3 (Comet) integer math, ported line by line from the Solidity sources.

Pure functions on Python ints with Comet's own rounding, so the results equal what the
contract computes, to the wei. References (compound-finance/comet):
- `contracts/CometCore.sol`: constants, presentValue*/principalValue*
- `contracts/Comet.sol`: accruedInterestIndices, getSupplyRate/getBorrowRate (separate supply
  and borrow kinks, as deployed), getUtilization, isLiquidatable, isBorrowCollateralized,
  absorbInternal, quoteCollateral, balanceOf/borrowBalanceOf, mulFactor/mulPrice/
  signedMulPrice/divPrice, getAssetInfo (4-decimal packed factors)
- `contracts/CometWithExtendedAssetList.sol` / liquidation modules: newer builds skip
  collateral whose liquidateCollateralFactor is 0 (`skip_zero_lcf`), so a dead price feed of a
  delisted asset cannot block liquidations (test/is-liquidatable-test.ts, USDM incident).

Comet has no health factor; `health_factor` and `liquidation_price` here are derived the way
woof-software/comet docs/liquidation.md defines them (weighted collateral / debt value).

Index choice matters: isLiquidatable, isBorrowCollateralized and absorb price the principal
with the *stored* indices (as of `lastAccrualTime`; absorb accrues first), while balanceOf and
borrowBalanceOf project them to `block.timestamp` with `accruedInterestIndices`. Every function
here takes the indices explicitly; use `accrued_interest_indices` for the latter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

UINT64_MAX = (1 << 64) - 1
UINT104_MAX = (1 << 104) - 1
INT104_MAX = (1 << 103) - 1

# CometCore constants.
MAX_ASSETS = 15  # CometWithExtendedAssetList: up to 24
MAX_BASE_DECIMALS = 18
PRICE_FEED_DECIMALS = 8
SECONDS_PER_YEAR = 31_536_000
BASE_ACCRUAL_SCALE = 10**6
BASE_INDEX_SCALE = 10**15
PRICE_SCALE = 10**PRICE_FEED_DECIMALS
FACTOR_SCALE = 10**18
MAX_COLLATERAL_FACTOR = FACTOR_SCALE
# getAssetInfo packs each factor into 16 bits with 4 decimals: factor / 1e14 * 1e14.
FACTOR_DESCALE = FACTOR_SCALE // 10**4


class MathError(ArithmeticError):
    """An input for which the contract reverts (overflow, bad price, negative number)."""


class BadPrice(MathError):
    """Comet.getPrice reverts: the feed answered a price <= 0 (`BadPrice()`)."""


# ---------------------------------------------------------------------------------------------
# Helpers with Comet's exact semantics
# ---------------------------------------------------------------------------------------------


def _safe64(n: int) -> int:
    if not 0 <= n <= UINT64_MAX:
        raise MathError(f"{n} does not fit in uint64 (InvalidUInt64)")
    return n


def _safe104(n: int) -> int:
    # CometCore's principalValue* end in a bare uint104() cast, which would wrap silently; a
    # value that large is unreachable (it exceeds any token supply), so flag it instead.
    if not 0 <= n <= UINT104_MAX:
        raise MathError(f"{n} does not fit in uint104 (InvalidUInt104)")
    return n


def _signed104(n: int) -> int:
    if n > INT104_MAX:
        raise MathError(f"{n} does not fit in int104 (InvalidInt104)")
    return n


def _tdiv(numerator: int, denominator: int) -> int:
    """Solidity signed division: truncates toward zero (Python's // floors)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def mul_factor(n: int, factor: int) -> int:
    """Comet.mulFactor: n * factor / FACTOR_SCALE (floor)."""
    return n * factor // FACTOR_SCALE


def mul_price(n: int, price: int, from_scale: int) -> int:
    """Comet.mulPrice: a `from_scale` quantity times an 8-decimal price (floor)."""
    return n * price // from_scale


def signed_mul_price(n: int, price: int, from_scale: int) -> int:
    """Comet.signedMulPrice: as mulPrice but signed, truncating toward zero.

    A debt of -x therefore values at -(x * price // scale): the debt side rounds *towards
    zero*, in the borrower's favour, exactly as the EVM's sdiv does.
    """
    return _tdiv(n * price, from_scale)


def div_price(n: int, price: int, to_scale: int) -> int:
    """Comet.divPrice: a common price quantity divided by a price, in `to_scale` units."""
    return n * to_scale // price


def check_price(price: int) -> int:
    """Comet.getPrice: the feed answer, reverting with BadPrice if it is <= 0."""
    if price <= 0:
        raise BadPrice(f"price {price} <= 0")
    return price


def truncate_factor(factor: int) -> int:
    """The factor getAssetInfo returns for a configured one: kept to 4 decimals (floor).

    Configured 0.8333e18-style factors survive; 2/3 (666666666666666666) becomes 0.6666e18.
    """
    return factor // FACTOR_DESCALE * FACTOR_DESCALE


# ---------------------------------------------------------------------------------------------
# CometCore: present and principal values
# ---------------------------------------------------------------------------------------------


def present_value_supply(base_supply_index: int, principal: int) -> int:
    """CometCore.presentValueSupply: principal * baseSupplyIndex / 1e15 (floor)."""
    return principal * base_supply_index // BASE_INDEX_SCALE


def present_value_borrow(base_borrow_index: int, principal: int) -> int:
    """CometCore.presentValueBorrow: principal * baseBorrowIndex / 1e15 (floor)."""
    return principal * base_borrow_index // BASE_INDEX_SCALE


def principal_value_supply(base_supply_index: int, present_value: int) -> int:
    """CometCore.principalValueSupply: presentValue * 1e15 / baseSupplyIndex, rounded down."""
    return _safe104(present_value * BASE_INDEX_SCALE // base_supply_index)


def principal_value_borrow(base_borrow_index: int, present_value: int) -> int:
    """CometCore.principalValueBorrow: presentValue * 1e15 / baseBorrowIndex, rounded up."""
    return _safe104((present_value * BASE_INDEX_SCALE + base_borrow_index - 1) // base_borrow_index)


def present_value(principal: int, base_supply_index: int, base_borrow_index: int) -> int:
    """CometCore.presentValue: the signed balance (positive supply, negative borrow)."""
    if principal >= 0:
        return present_value_supply(base_supply_index, principal)
    return -present_value_borrow(base_borrow_index, -principal)


def principal_value(present: int, base_supply_index: int, base_borrow_index: int) -> int:
    """CometCore.principalValue: the signed principal of a signed present value."""
    if present >= 0:
        return _signed104(principal_value_supply(base_supply_index, present))
    return -_signed104(principal_value_borrow(base_borrow_index, -present))


# ---------------------------------------------------------------------------------------------
# Interest rates and accrual
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InterestRateParams:
    """The rate model immutables as Comet stores them: per-second rates and kinks (1e18).

    Read them from the contract (`supplyKink()`, `supplyPerSecondInterestRateBase()`, ...,
    `borrowPerSecondInterestRateSlopeHigh()`), or build them from the per-year configuration
    with `from_per_year`, which divides by SECONDS_PER_YEAR as the constructor does.
    """

    supply_kink: int
    supply_per_second_interest_rate_base: int
    supply_per_second_interest_rate_slope_low: int
    supply_per_second_interest_rate_slope_high: int
    borrow_kink: int
    borrow_per_second_interest_rate_base: int
    borrow_per_second_interest_rate_slope_low: int
    borrow_per_second_interest_rate_slope_high: int

    @classmethod
    def from_per_year(
        cls,
        *,
        supply_kink: int,
        supply_per_year_interest_rate_base: int,
        supply_per_year_interest_rate_slope_low: int,
        supply_per_year_interest_rate_slope_high: int,
        borrow_kink: int,
        borrow_per_year_interest_rate_base: int,
        borrow_per_year_interest_rate_slope_low: int,
        borrow_per_year_interest_rate_slope_high: int,
    ) -> InterestRateParams:
        """Comet's constructor: `perYear... / SECONDS_PER_YEAR` (floor) for every rate."""
        return cls(
            supply_kink=supply_kink,
            supply_per_second_interest_rate_base=supply_per_year_interest_rate_base
            // SECONDS_PER_YEAR,
            supply_per_second_interest_rate_slope_low=supply_per_year_interest_rate_slope_low
            // SECONDS_PER_YEAR,
            supply_per_second_interest_rate_slope_high=supply_per_year_interest_rate_slope_high
            // SECONDS_PER_YEAR,
            borrow_kink=borrow_kink,
            borrow_per_second_interest_rate_base=borrow_per_year_interest_rate_base
            // SECONDS_PER_YEAR,
            borrow_per_second_interest_rate_slope_low=borrow_per_year_interest_rate_slope_low
            // SECONDS_PER_YEAR,
            borrow_per_second_interest_rate_slope_high=borrow_per_year_interest_rate_slope_high
            // SECONDS_PER_YEAR,
        )


def _kinked(utilization: int, kink: int, base: int, slope_low: int, slope_high: int) -> int:
    if utilization <= kink:
        return _safe64(base + mul_factor(slope_low, utilization))
    return _safe64(base + mul_factor(slope_low, kink) + mul_factor(slope_high, utilization - kink))


def supply_rate(utilization: int, params: InterestRateParams) -> int:
    """Comet.getSupplyRate(utilization): per-second supply rate (1e18), kinked.

    (Pre-launch Comet derived it from the borrow rate with a reserveRate; deployed markets
    have their own supply curve.)
    """
    return _kinked(
        utilization,
        params.supply_kink,
        params.supply_per_second_interest_rate_base,
        params.supply_per_second_interest_rate_slope_low,
        params.supply_per_second_interest_rate_slope_high,
    )


def borrow_rate(utilization: int, params: InterestRateParams) -> int:
    """Comet.getBorrowRate(utilization): per-second borrow rate (1e18), kinked."""
    return _kinked(
        utilization,
        params.borrow_kink,
        params.borrow_per_second_interest_rate_base,
        params.borrow_per_second_interest_rate_slope_low,
        params.borrow_per_second_interest_rate_slope_high,
    )


def utilization(total_supply: int, total_borrow: int) -> int:
    """Comet.getUtilization: totalBorrow * 1e18 / totalSupply, 0 without supply.

    Both are *present* values: `present_value_supply(baseSupplyIndex, totalSupplyBase)` and
    `present_value_borrow(baseBorrowIndex, totalBorrowBase)` with the stored indices (see
    `CometTotals.utilization`). Can exceed 1e18.
    """
    if total_supply == 0:
        return 0
    return total_borrow * FACTOR_SCALE // total_supply


def accrued_interest_indices(
    base_supply_index: int,
    base_borrow_index: int,
    last_accrual_time: int,
    now: int,
    supply_rate_per_second: int,
    borrow_rate_per_second: int,
) -> tuple[int, int]:
    """Comet.accruedInterestIndices(now - lastAccrualTime): simple interest since last accrual.

    index += mulFactor(index, rate * Δt), each checked to fit uint64 as the contract does.
    The rates are those at the stored utilization (`getSupplyRate(getUtilization())`).
    """
    time_elapsed = now - last_accrual_time
    if time_elapsed < 0:
        raise MathError(f"now {now} is before lastAccrualTime {last_accrual_time}")
    if time_elapsed == 0:
        return base_supply_index, base_borrow_index
    supply_index = _safe64(
        base_supply_index
        + _safe64(mul_factor(base_supply_index, supply_rate_per_second * time_elapsed))
    )
    borrow_index = _safe64(
        base_borrow_index
        + _safe64(mul_factor(base_borrow_index, borrow_rate_per_second * time_elapsed))
    )
    return supply_index, borrow_index


@dataclass(frozen=True, slots=True)
class CometTotals:
    """The `totalsBasic()` fields the base-balance math needs (principal totals, stored)."""

    base_supply_index: int
    base_borrow_index: int
    total_supply_base: int
    total_borrow_base: int
    last_accrual_time: int

    @property
    def utilization(self) -> int:
        """Comet.getUtilization() (stored indices; does not accrue first)."""
        return utilization(
            present_value_supply(self.base_supply_index, self.total_supply_base),
            present_value_borrow(self.base_borrow_index, self.total_borrow_base),
        )

    def accrued_indices(self, params: InterestRateParams, now: int) -> tuple[int, int]:
        """accruedInterestIndices(now - lastAccrualTime) with the rates at stored utilization."""
        u = self.utilization
        return accrued_interest_indices(
            self.base_supply_index,
            self.base_borrow_index,
            self.last_accrual_time,
            now,
            supply_rate(u, params),
            borrow_rate(u, params),
        )


def balance_of(principal: int, totals: CometTotals, params: InterestRateParams, now: int) -> int:
    """Comet.balanceOf: the accrued supply balance, 0 for a borrower."""
    supply_index, _ = totals.accrued_indices(params, now)
    return present_value_supply(supply_index, principal) if principal > 0 else 0


def borrow_balance_of(
    principal: int, totals: CometTotals, params: InterestRateParams, now: int
) -> int:
    """Comet.borrowBalanceOf: the accrued borrow balance, 0 for a supplier."""
    _, borrow_index = totals.accrued_indices(params, now)
    return present_value_borrow(borrow_index, -principal) if principal < 0 else 0


# ---------------------------------------------------------------------------------------------
# Liquidity: isLiquidatable, isBorrowCollateralized, margins, health factor
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CometCollateral:
    """One collateral asset the account is in (its `assetsIn` bit is set), in offset order.

    - `balance`: `userCollateral(account, asset).balance`
    - `price`: the feed's `latestRoundData` answer (8 decimals); <= 0 makes Comet revert
      (BadPrice) if it gets to read it
    - `scale`: 10**decimals of the collateral (`AssetInfo.scale`)
    - factors as `getAssetInfo` returns them (1e18, already truncated to 4 decimals)
    Unset factors default to 0 (the asset then counts for nothing in that check).
    """

    balance: int
    price: int
    scale: int
    liquidate_collateral_factor: int
    borrow_collateral_factor: int = 0
    liquidation_factor: int = 0
    asset: str = ""


def _base_liquidity(
    principal: int, base_supply_index: int, base_borrow_index: int, base_price: int, base_scale: int
) -> int:
    return signed_mul_price(
        present_value(principal, base_supply_index, base_borrow_index),
        check_price(base_price),
        base_scale,
    )


def _collateral_value(collateral: CometCollateral, factor: int) -> int:
    return mul_factor(
        mul_price(collateral.balance, check_price(collateral.price), collateral.scale), factor
    )


def is_liquidatable(
    principal: int,
    base_supply_index: int,
    base_borrow_index: int,
    base_price: int,
    base_scale: int,
    collaterals: Sequence[CometCollateral],
    *,
    skip_zero_lcf: bool,
) -> bool:
    """Comet.isLiquidatable, exactly: stored indices, early exit, BadPrice where it would read.

    liquidity = signedMulPrice(presentValue(principal), basePrice, baseScale)
              + Σ mulFactor(mulPrice(balance_i, price_i, scale_i), liquidateCF_i)
    with the loop returning False as soon as liquidity >= 0 (later prices are never read).
    `skip_zero_lcf` is the newer builds' rule: collateral with liquidateCF 0 is skipped,
    price lookup included. Liquidatable iff the final liquidity < 0.
    """
    if principal >= 0:
        return False
    liquidity = _base_liquidity(
        principal, base_supply_index, base_borrow_index, base_price, base_scale
    )
    for collateral in collaterals:
        if skip_zero_lcf and collateral.liquidate_collateral_factor == 0:
            continue
        if liquidity >= 0:
            return False
        liquidity += _collateral_value(collateral, collateral.liquidate_collateral_factor)
    return liquidity < 0


def is_borrow_collateralized(
    principal: int,
    base_supply_index: int,
    base_borrow_index: int,
    base_price: int,
    base_scale: int,
    collaterals: Sequence[CometCollateral],
    *,
    skip_zero_bcf: bool = False,
) -> bool:
    """Comet.isBorrowCollateralized: the same loop with borrowCollateralFactor, liquidity >= 0.

    `skip_zero_bcf` mirrors the newer builds that skip collateral with borrowCF 0.
    (Builds with collateral deactivation also revert if a deactivated asset is held.)
    """
    if principal >= 0:
        return True
    liquidity = _base_liquidity(
        principal, base_supply_index, base_borrow_index, base_price, base_scale
    )
    for collateral in collaterals:
        if skip_zero_bcf and collateral.borrow_collateral_factor == 0:
            continue
        if liquidity >= 0:
            return True
        liquidity += _collateral_value(collateral, collateral.borrow_collateral_factor)
    return liquidity >= 0


def liquidation_margin(
    principal: int,
    base_supply_index: int,
    base_borrow_index: int,
    base_price: int,
    base_scale: int,
    collaterals: Sequence[CometCollateral],
    *,
    skip_zero_lcf: bool,
) -> int:
    """Comet.getLiquidationMargin (early builds; removed later): liquidity without early exit.

    The signed USD amount (8 decimals) by which the liquidation-weighted collateral exceeds
    the debt; negative means liquidatable. Reads every price (BadPrice if any is <= 0).
    """
    liquidity = _base_liquidity(
        principal, base_supply_index, base_borrow_index, base_price, base_scale
    )
    for collateral in collaterals:
        if skip_zero_lcf and collateral.liquidate_collateral_factor == 0:
            continue
        liquidity += _collateral_value(collateral, collateral.liquidate_collateral_factor)
    return liquidity


def borrow_liquidity(
    principal: int,
    base_supply_index: int,
    base_borrow_index: int,
    base_price: int,
    base_scale: int,
    collaterals: Sequence[CometCollateral],
) -> int:
    """Comet.getBorrowLiquidity (early builds): the borrowCF-weighted margin, no early exit."""
    liquidity = _base_liquidity(
        principal, base_supply_index, base_borrow_index, base_price, base_scale
    )
    for collateral in collaterals:
        liquidity += _collateral_value(collateral, collateral.borrow_collateral_factor)
    return liquidity


def debt_value(
    principal: int, base_supply_index: int, base_borrow_index: int, base_price: int, base_scale: int
) -> int:
    """The debt in USD (8 decimals) as the liquidity loop counts it: -signedMulPrice(...)."""
    if principal >= 0:
        return 0
    return -_base_liquidity(principal, base_supply_index, base_borrow_index, base_price, base_scale)


def weighted_collateral_value(
    collaterals: Sequence[CometCollateral], *, skip_zero_lcf: bool = True
) -> int:
    """Σ mulFactor(mulPrice(balance, price, scale), liquidateCF): the liquidation threshold."""
    return sum(
        _collateral_value(c, c.liquidate_collateral_factor)
        for c in collaterals
        if not (skip_zero_lcf and c.liquidate_collateral_factor == 0)
    )


def health_factor(
    principal: int,
    base_supply_index: int,
    base_borrow_index: int,
    base_price: int,
    base_scale: int,
    collaterals: Sequence[CometCollateral],
    *,
    skip_zero_lcf: bool = True,
) -> int | None:
    """Derived HF (1e18): weighted collateral * 1e18 / debt value, floored; None without debt.

    woof-software/comet docs/liquidation.md §2.3. With the stored indices, HF < 1e18 exactly
    when `is_liquidatable` is True (both sides are the same floored integers).
    """
    debt = debt_value(principal, base_supply_index, base_borrow_index, base_price, base_scale)
    if debt == 0:
        return None
    return (
        weighted_collateral_value(collaterals, skip_zero_lcf=skip_zero_lcf) * FACTOR_SCALE // debt
    )


def liquidation_price(
    principal: int,
    base_supply_index: int,
    base_borrow_index: int,
    base_price: int,
    base_scale: int,
    collaterals: Sequence[CometCollateral],
    index: int,
    *,
    skip_zero_lcf: bool = True,
) -> int | None:
    """The price (8 decimals) of `collaterals[index]` at which the derived HF reaches exactly 1.

    With W the weighted value of the other collaterals and D the debt value (USD, 8 decimals):

        W + balance·P/scale·LCF/1e18 = D   ⇔   P = (D - W) · scale · 1e18 / (balance · LCF)

    rounded up, so that at any lower price the (unfloored) weighted collateral is below the
    debt. Exact "to the displayed precision" (the contract floors each asset's value).
    None when there is no debt, the asset adds nothing (zero balance or LCF), or the other
    collaterals already cover the debt at any price of this one.
    """
    target = collaterals[index]
    debt = debt_value(principal, base_supply_index, base_borrow_index, base_price, base_scale)
    others = [c for i, c in enumerate(collaterals) if i != index]
    shortfall = debt - weighted_collateral_value(others, skip_zero_lcf=skip_zero_lcf)
    weight = target.balance * target.liquidate_collateral_factor
    if debt == 0 or weight == 0 or shortfall <= 0:
        return None
    return -((-shortfall * target.scale * FACTOR_SCALE) // weight)


# ---------------------------------------------------------------------------------------------
# Liquidation accounting: absorb and buyCollateral quotes
# ---------------------------------------------------------------------------------------------


def repay_and_supply_amount(old_principal: int, new_principal: int) -> tuple[int, int]:
    """Comet.repayAndSupplyAmount: the principal change split into (repay, supply)."""
    if new_principal < old_principal:
        return 0, 0
    if new_principal <= 0:
        return new_principal - old_principal, 0
    if old_principal >= 0:
        return 0, new_principal - old_principal
    return -old_principal, new_principal


def withdraw_and_borrow_amount(old_principal: int, new_principal: int) -> tuple[int, int]:
    """Comet.withdrawAndBorrowAmount: the principal change split into (withdraw, borrow)."""
    if new_principal > old_principal:
        return 0, 0
    if new_principal >= 0:
        return old_principal - new_principal, 0
    if old_principal <= 0:
        return 0, old_principal - new_principal
    return old_principal, -new_principal


@dataclass(frozen=True, slots=True)
class AbsorbedCollateral:
    """One `AbsorbCollateral(absorber, borrower, asset, collateralAbsorbed, usdValue)`."""

    asset: str
    collateral_absorbed: int
    usd_value: int


@dataclass(frozen=True, slots=True)
class AbsorbResult:
    """The effects of Comet.absorbInternal on one account.

    - `new_principal`: the account's principal afterwards (>= 0; excess debt is eaten by
      reserves)
    - `base_paid_out`, `usd_value`: the `AbsorbDebt` event (newBalance - oldBalance, and its
      mulPrice at the base price)
    - `collaterals`: the `AbsorbCollateral` events, in offset order; all balances go to 0
    - `repay_amount`, `supply_amount`: the principal deltas applied as
      totalBorrowBase -= repay, totalSupplyBase += supply
    """

    new_principal: int
    base_paid_out: int
    usd_value: int
    collaterals: tuple[AbsorbedCollateral, ...]
    repay_amount: int
    supply_amount: int


def absorb(
    principal: int,
    base_supply_index: int,
    base_borrow_index: int,
    base_price: int,
    base_scale: int,
    collaterals: Sequence[CometCollateral],
) -> AbsorbResult:
    """Comet.absorbInternal accounting (the caller checks is_liquidatable first).

    Pass the indices *after* `accrueInternal` (absorb accrues first). Every collateral is
    seized; the account is credited Σ mulFactor(mulPrice(balance, price, scale),
    liquidationFactor), converted to base with divPrice at the base price, and its balance is
    floored at 0.
    """
    old_balance = present_value(principal, base_supply_index, base_borrow_index)
    price_base = check_price(base_price)
    delta_value = 0
    seized: list[AbsorbedCollateral] = []
    for collateral in collaterals:
        value = mul_price(collateral.balance, check_price(collateral.price), collateral.scale)
        delta_value += mul_factor(value, collateral.liquidation_factor)
        seized.append(AbsorbedCollateral(collateral.asset, collateral.balance, value))
    delta_balance = div_price(delta_value, price_base, base_scale)
    new_balance = max(old_balance + delta_balance, 0)
    new_principal = principal_value(new_balance, base_supply_index, base_borrow_index)
    repay_amount, supply_amount = repay_and_supply_amount(principal, new_principal)
    base_paid_out = new_balance - old_balance
    if base_paid_out < 0:
        raise MathError("absorb of a supplier (NegativeNumber)")
    return AbsorbResult(
        new_principal=new_principal,
        base_paid_out=base_paid_out,
        usd_value=mul_price(base_paid_out, price_base, base_scale),
        collaterals=tuple(seized),
        repay_amount=repay_amount,
        supply_amount=supply_amount,
    )


def quote_collateral(
    base_amount: int,
    *,
    asset_price: int,
    base_price: int,
    asset_scale: int,
    base_scale: int,
    liquidation_factor: int,
    store_front_price_factor: int,
) -> int:
    """Comet.quoteCollateral: collateral wei bought with `base_amount` of base.

    discount = storeFrontPriceFactor * (1 - liquidationFactor); the asset is sold at
    price * (1 - discount). (Early builds used storeFrontPriceFactor itself as the price
    multiplier.)
    """
    discount_factor = mul_factor(store_front_price_factor, FACTOR_SCALE - liquidation_factor)
    asset_price_discounted = mul_factor(check_price(asset_price), FACTOR_SCALE - discount_factor)
    return (
        check_price(base_price) * base_amount * asset_scale // asset_price_discounted // base_scale
    )
