"""Aave V3 integer math, ported line by line from the v3.0.2 Solidity sources.

Everything here is pure and works on Python ints with the contracts' own rounding, so the
results equal what `Pool.getUserAccountData` and the token `balanceOf`s return, to the wei.

The reference is the exact source deployed on our devnet, `@aave/core-v3@1.19.3`
(devnet/node_modules/@aave/core-v3/contracts, Aave V3.0.2):
- `protocol/libraries/math/WadRayMath.sol`, `PercentageMath.sol`, `MathUtils.sol`
- `protocol/libraries/logic/ReserveLogic.sol` (`getNormalizedIncome`, `getNormalizedDebt`)
- `protocol/libraries/logic/GenericLogic.sol` (`calculateUserAccountData`,
  `calculateAvailableBorrows`), `EModeLogic.sol`, `LiquidationLogic.sol` (close factor)
- `protocol/libraries/configuration/ReserveConfiguration.sol`, `UserConfiguration.sol`
- `protocol/tokenization/AToken.sol`, `VariableDebtToken.sol`, `StableDebtToken.sol`

Version differences of later releases (aave-dao/aave-v3-origin) are noted where they change a
result; none of them is implemented here:
- 3.1: `getNormalizedIncome`/`getNormalizedDebt` unchanged; eMode unchanged.
- 3.2: stable debt removed; eMode price source removed; eMode LT/LTV apply only to assets in
  the category's collateral bitmap (not "reserve category == user category").
- 3.3: close factor applies to the whole position; bad-debt (deficit) accounting.
- 3.5: directional rounding: aToken balances round down (`rayMulFloor`), debt rounds up
  (`rayMulCeil`, then `mulDivCeil(debt, price, unit)`), and HF is computed as
  `(sum(collateral_i * LT_i)).wadDiv(debt) / 1e4` instead of via the averaged LT.
v3.0.2 rounds half up everywhere (WadRayMath/PercentageMath), and floors the base-currency
conversions, which is what this module does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

UINT256_MAX = (1 << 256) - 1

# WadRayMath
WAD = 10**18
HALF_WAD = WAD // 2
RAY = 10**27
HALF_RAY = RAY // 2
WAD_RAY_RATIO = 10**9

# PercentageMath: 100.00% with two decimals of precision (basis points).
PERCENTAGE_FACTOR = 10**4
HALF_PERCENTAGE_FACTOR = PERCENTAGE_FACTOR // 2

# MathUtils: "Ignoring leap years".
SECONDS_PER_YEAR = 365 * 24 * 60 * 60

# ValidationLogic: a position can be liquidated when HF < 1e18.
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = WAD
# LiquidationLogic (v3.0.2): 50% of a debt reserve may be repaid while HF > 0.95, 100% below.
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5_000
MAX_LIQUIDATION_CLOSE_FACTOR = 10_000

# ReserveConfiguration.MAX_RESERVES_COUNT (UserConfiguration checks reserve ids against it).
MAX_RESERVES_COUNT = 128


class MathError(ArithmeticError):
    """An input for which the contract reverts (overflow, underflow, division by zero)."""


def _check_uint(name: str, value: int) -> None:
    if not 0 <= value <= UINT256_MAX:
        raise MathError(f"{name}={value} is not a uint256")


# ---------------------------------------------------------------------------------------------
# WadRayMath / PercentageMath (half-up rounding, assembly overflow guards)
# ---------------------------------------------------------------------------------------------


def wad_mul(a: int, b: int) -> int:
    """WadRayMath.wadMul: a*b/1e18 rounded half up; reverts if a*b + HALF_WAD overflows."""
    if a < 0 or b < 0 or (b != 0 and a > (UINT256_MAX - HALF_WAD) // b):
        raise MathError(f"wadMul({a}, {b}) reverts")
    return (a * b + HALF_WAD) // WAD


def wad_div(a: int, b: int) -> int:
    """WadRayMath.wadDiv: a*1e18/b rounded half up; reverts on b == 0 or overflow."""
    if a < 0 or b <= 0 or a > (UINT256_MAX - b // 2) // WAD:
        raise MathError(f"wadDiv({a}, {b}) reverts")
    return (a * WAD + b // 2) // b


def ray_mul(a: int, b: int) -> int:
    """WadRayMath.rayMul: a*b/1e27 rounded half up; reverts if a*b + HALF_RAY overflows."""
    if a < 0 or b < 0 or (b != 0 and a > (UINT256_MAX - HALF_RAY) // b):
        raise MathError(f"rayMul({a}, {b}) reverts")
    return (a * b + HALF_RAY) // RAY


def ray_div(a: int, b: int) -> int:
    """WadRayMath.rayDiv: a*1e27/b rounded half up; reverts on b == 0 or overflow."""
    if a < 0 or b <= 0 or a > (UINT256_MAX - b // 2) // RAY:
        raise MathError(f"rayDiv({a}, {b}) reverts")
    return (a * RAY + b // 2) // b


def ray_to_wad(a: int) -> int:
    """WadRayMath.rayToWad: a/1e9, rounded half up (remainder >= 0.5e9 rounds up)."""
    _check_uint("a", a)
    quotient, remainder = divmod(a, WAD_RAY_RATIO)
    return quotient + 1 if remainder >= WAD_RAY_RATIO // 2 else quotient


def wad_to_ray(a: int) -> int:
    """WadRayMath.wadToRay: a*1e9; reverts on overflow."""
    result = a * WAD_RAY_RATIO
    if a < 0 or result > UINT256_MAX:
        raise MathError(f"wadToRay({a}) reverts")
    return result


def percent_mul(value: int, percentage: int) -> int:
    """PercentageMath.percentMul: value*percentage/1e4 rounded half up."""
    if (
        value < 0
        or percentage < 0
        or (percentage != 0 and value > (UINT256_MAX - HALF_PERCENTAGE_FACTOR) // percentage)
    ):
        raise MathError(f"percentMul({value}, {percentage}) reverts")
    return (value * percentage + HALF_PERCENTAGE_FACTOR) // PERCENTAGE_FACTOR


def percent_div(value: int, percentage: int) -> int:
    """PercentageMath.percentDiv: value*1e4/percentage rounded half up."""
    if value < 0 or percentage <= 0 or value > (UINT256_MAX - percentage // 2) // PERCENTAGE_FACTOR:
        raise MathError(f"percentDiv({value}, {percentage}) reverts")
    return (value * PERCENTAGE_FACTOR + percentage // 2) // percentage


# ---------------------------------------------------------------------------------------------
# MathUtils
# ---------------------------------------------------------------------------------------------


def _elapsed(last_update_ts: int, now_ts: int) -> int:
    # Checked subtraction in Solidity 0.8: a timestamp in the future reverts.
    if now_ts < last_update_ts or last_update_ts < 0:
        raise MathError(f"timestamp {now_ts} is before last update {last_update_ts}")
    return now_ts - last_update_ts


def calculate_linear_interest(rate: int, last_update_ts: int, now_ts: int) -> int:
    """MathUtils.calculateLinearInterest: RAY + rate*Δt/SECONDS_PER_YEAR (floor), in ray.

    (Aave V2 computed `rate.rayMul(Δt.wadToRay().rayDiv(SECONDS_PER_YEAR.wadToRay()))`,
    which rounds differently; aave-utilities still does.)
    """
    result = rate * _elapsed(last_update_ts, now_ts)
    _check_uint("rate * Δt", result)
    return RAY + result // SECONDS_PER_YEAR


def calculate_compounded_interest(rate: int, last_update_ts: int, now_ts: int) -> int:
    """MathUtils.calculateCompoundedInterest: the 3-term binomial approximation, in ray.

    (1+x)^n ≈ 1 + n·x + n(n-1)/2·x² + n(n-1)(n-2)/6·x³ with x = rate/SECONDS_PER_YEAR, where
    each power is floored as the contract does it: x² as `rate.rayMul(rate) / SPY²` and x³ as
    `x².rayMul(rate) / SPY`. The approximation slightly undercharges borrowers. (Aave V2 and
    aave-utilities divide the rate by SECONDS_PER_YEAR *first*, which rounds differently.)
    """
    exp = _elapsed(last_update_ts, now_ts)
    if exp == 0:
        return RAY
    exp_minus_one = exp - 1
    exp_minus_two = exp - 2 if exp > 2 else 0
    base_power_two = ray_mul(rate, rate) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
    base_power_three = ray_mul(base_power_two, rate) // SECONDS_PER_YEAR
    second_term = exp * exp_minus_one * base_power_two
    third_term = exp * exp_minus_one * exp_minus_two * base_power_three
    first_term = rate * exp
    for name, term in (("second", second_term), ("third", third_term), ("first", first_term)):
        _check_uint(f"{name} term", term)
    result = RAY + first_term // SECONDS_PER_YEAR + second_term // 2 + third_term // 6
    _check_uint("compounded interest", result)
    return result


# ---------------------------------------------------------------------------------------------
# ReserveLogic and token balances
# ---------------------------------------------------------------------------------------------


def normalized_income(
    liquidity_index: int, liquidity_rate: int, last_update_ts: int, now_ts: int
) -> int:
    """ReserveLogic.getNormalizedIncome: the supply index extrapolated (linearly) to now.

    Returns the stored index when the reserve was updated in this very block.
    """
    if last_update_ts == now_ts:
        return liquidity_index
    return ray_mul(
        calculate_linear_interest(liquidity_rate, last_update_ts, now_ts), liquidity_index
    )


def normalized_variable_debt(
    variable_borrow_index: int, variable_borrow_rate: int, last_update_ts: int, now_ts: int
) -> int:
    """ReserveLogic.getNormalizedDebt: the variable borrow index compounded to now.

    Returns the stored index when the reserve was updated in this very block.
    """
    if last_update_ts == now_ts:
        return variable_borrow_index
    return ray_mul(
        calculate_compounded_interest(variable_borrow_rate, last_update_ts, now_ts),
        variable_borrow_index,
    )


def a_token_balance(scaled_balance: int, normalized_income_ray: int) -> int:
    """AToken.balanceOf: scaledBalance.rayMul(getReserveNormalizedIncome) (half up in 3.0.2).

    GenericLogic values collateral with exactly this product (`scaledBalanceOf(user)
    .rayMul(normalizedIncome)`). 3.5+ rounds it down instead.
    """
    return ray_mul(scaled_balance, normalized_income_ray)


def variable_debt_balance(scaled_balance: int, normalized_debt_ray: int) -> int:
    """VariableDebtToken.balanceOf: 0, or scaledBalance.rayMul(getReserveNormalizedVariableDebt).

    3.5+ rounds it up instead.
    """
    if scaled_balance == 0:
        return 0
    return ray_mul(scaled_balance, normalized_debt_ray)


def stable_debt_balance(
    principal: int, user_stable_rate: int, user_last_update_ts: int, now_ts: int
) -> int:
    """StableDebtToken.balanceOf: principal compounded at the user's own stable rate.

    `principal` is `principalBalanceOf(user)` (the ERC20 balance stored at the user's last
    action), `user_stable_rate` is `getUserStableRate(user)` (ray) and `user_last_update_ts` is
    `getUserLastUpdated(user)`. Stable debt does not use the reserve index. (Removed in 3.2.)
    """
    if principal == 0:
        return 0
    return ray_mul(
        principal, calculate_compounded_interest(user_stable_rate, user_last_update_ts, now_ts)
    )


# ---------------------------------------------------------------------------------------------
# ReserveConfiguration / UserConfiguration bitmaps
# ---------------------------------------------------------------------------------------------

# (start bit, width) of each ReserveConfiguration field in v3.0.2.
_LTV = (0, 16)
_LIQUIDATION_THRESHOLD = (16, 16)
_LIQUIDATION_BONUS = (32, 16)
_DECIMALS = (48, 8)
_ACTIVE = (56, 1)
_FROZEN = (57, 1)
_BORROWING_ENABLED = (58, 1)
_STABLE_BORROWING_ENABLED = (59, 1)
_PAUSED = (60, 1)
_BORROWABLE_IN_ISOLATION = (61, 1)
_SILOED_BORROWING = (62, 1)
_FLASHLOAN_ENABLED = (63, 1)
_RESERVE_FACTOR = (64, 16)
_BORROW_CAP = (80, 36)
_SUPPLY_CAP = (116, 36)
_LIQUIDATION_PROTOCOL_FEE = (152, 16)
_EMODE_CATEGORY = (168, 8)
_UNBACKED_MINT_CAP = (176, 36)
_DEBT_CEILING = (212, 40)

# Public so tests and encoders share one layout: field name -> (start bit, width).
RESERVE_CONFIGURATION_LAYOUT: dict[str, tuple[int, int]] = {
    "ltv": _LTV,
    "liquidation_threshold": _LIQUIDATION_THRESHOLD,
    "liquidation_bonus": _LIQUIDATION_BONUS,
    "decimals": _DECIMALS,
    "active": _ACTIVE,
    "frozen": _FROZEN,
    "borrowing_enabled": _BORROWING_ENABLED,
    "stable_borrowing_enabled": _STABLE_BORROWING_ENABLED,
    "paused": _PAUSED,
    "borrowable_in_isolation": _BORROWABLE_IN_ISOLATION,
    "siloed_borrowing": _SILOED_BORROWING,
    "flashloan_enabled": _FLASHLOAN_ENABLED,
    "reserve_factor": _RESERVE_FACTOR,
    "borrow_cap": _BORROW_CAP,
    "supply_cap": _SUPPLY_CAP,
    "liquidation_protocol_fee": _LIQUIDATION_PROTOCOL_FEE,
    "emode_category": _EMODE_CATEGORY,
    "unbacked_mint_cap": _UNBACKED_MINT_CAP,
    "debt_ceiling": _DEBT_CEILING,
}


def _field(data: int, layout: tuple[int, int]) -> int:
    start, width = layout
    return (data >> start) & ((1 << width) - 1)


@dataclass(frozen=True, slots=True)
class ReserveConfig:
    """A decoded `ReserveConfigurationMap` (`Pool.getConfiguration(asset).data`), v3.0.2.

    Percentages (ltv, liquidation_threshold, liquidation_bonus, reserve_factor,
    liquidation_protocol_fee) are basis points; liquidation_bonus includes the 100% (10500 =
    5% bonus). Caps are whole tokens (0 = no cap); debt_ceiling has 2 decimals
    (`DEBT_CEILING_DECIMALS`).
    """

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    decimals: int
    active: bool
    frozen: bool
    borrowing_enabled: bool
    stable_borrowing_enabled: bool
    paused: bool
    borrowable_in_isolation: bool
    siloed_borrowing: bool
    reserve_factor: int
    borrow_cap: int
    supply_cap: int
    liquidation_protocol_fee: int
    emode_category: int
    unbacked_mint_cap: int
    debt_ceiling: int
    flashloan_enabled: bool


def decode_reserve_configuration(data: int) -> ReserveConfig:
    """ReserveConfiguration getters (`getParams`, `getFlags`, `getCaps`, ...) on one word."""
    _check_uint("configuration", data)
    return ReserveConfig(
        ltv=_field(data, _LTV),
        liquidation_threshold=_field(data, _LIQUIDATION_THRESHOLD),
        liquidation_bonus=_field(data, _LIQUIDATION_BONUS),
        decimals=_field(data, _DECIMALS),
        active=bool(_field(data, _ACTIVE)),
        frozen=bool(_field(data, _FROZEN)),
        borrowing_enabled=bool(_field(data, _BORROWING_ENABLED)),
        stable_borrowing_enabled=bool(_field(data, _STABLE_BORROWING_ENABLED)),
        paused=bool(_field(data, _PAUSED)),
        borrowable_in_isolation=bool(_field(data, _BORROWABLE_IN_ISOLATION)),
        siloed_borrowing=bool(_field(data, _SILOED_BORROWING)),
        reserve_factor=_field(data, _RESERVE_FACTOR),
        borrow_cap=_field(data, _BORROW_CAP),
        supply_cap=_field(data, _SUPPLY_CAP),
        liquidation_protocol_fee=_field(data, _LIQUIDATION_PROTOCOL_FEE),
        emode_category=_field(data, _EMODE_CATEGORY),
        unbacked_mint_cap=_field(data, _UNBACKED_MINT_CAP),
        debt_ceiling=_field(data, _DEBT_CEILING),
        flashloan_enabled=bool(_field(data, _FLASHLOAN_ENABLED)),
    )


def _check_reserve_id(reserve_id: int) -> None:
    # UserConfiguration requires reserveIndex < MAX_RESERVES_COUNT (INVALID_RESERVE_INDEX).
    if not 0 <= reserve_id < MAX_RESERVES_COUNT:
        raise MathError(f"reserve id {reserve_id} out of range")


def is_borrowing(user_config: int, reserve_id: int) -> bool:
    """UserConfiguration.isBorrowing: bit 2*id of `Pool.getUserConfiguration(user).data`."""
    _check_reserve_id(reserve_id)
    return (user_config >> (reserve_id << 1)) & 1 != 0


def is_using_as_collateral(user_config: int, reserve_id: int) -> bool:
    """UserConfiguration.isUsingAsCollateral: bit 2*id + 1."""
    _check_reserve_id(reserve_id)
    return (user_config >> ((reserve_id << 1) + 1)) & 1 != 0


def is_using_as_collateral_or_borrowing(user_config: int, reserve_id: int) -> bool:
    """UserConfiguration.isUsingAsCollateralOrBorrowing: either bit of reserve `id`."""
    _check_reserve_id(reserve_id)
    return (user_config >> (reserve_id << 1)) & 3 != 0


# ---------------------------------------------------------------------------------------------
# GenericLogic.calculateUserAccountData
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EModeCategory:
    """`Pool.getEModeCategoryData(id)` (v3.0.2), plus the oracle price of its price source.

    `price` is `AaveOracle.getAssetPrice(price_source)`: the price source address is looked up
    *as an asset* in the Aave oracle (its registered source, else the fallback oracle), not
    read as an aggregator. 0 when the category has no price source; GenericLogic then keeps
    each reserve's own price (it also does so when the oracle answers 0).
    """

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int = 0
    price: int = 0
    price_source: str | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class AccountReserve:
    """One reserve a user supplies (as collateral) and/or borrows, as GenericLogic reads it.

    - `price`: `AaveOracle.getAssetPrice(asset)`, base currency (8 decimals on USD markets).
      For a user in an eMode category with a price source, `account_data` substitutes the
      category price for the reserves of that category, as the contract does.
    - `collateral_enabled`: the user's collateral bit for this reserve.
    - `ltv`, `liquidation_threshold`, `emode_category`, `decimals`: the reserve configuration.
    - `a_token_balance`: `AToken.balanceOf(user)` (= scaled * normalized income, accrued).
    - `debt`: variable + stable debt balances, both accrued, **summed before pricing**
      (GenericLogic prices the sum: `price * (variable + stable) / unit`, floored once).
    - `borrowing`: the user's borrowing bit; debt only counts when it is set (a zero debt adds
      nothing either way).
    """

    asset: str
    decimals: int
    price: int
    collateral_enabled: bool
    ltv: int
    liquidation_threshold: int
    emode_category: int
    a_token_balance: int
    debt: int
    reserve_id: int | None = None
    borrowing: bool = True


@dataclass(frozen=True, slots=True)
class AccountData:
    """The result of GenericLogic.calculateUserAccountData (v3.0.2).

    `Pool.getUserAccountData(user)` returns (total_collateral_base, total_debt_base,
    available_borrows_base, avg_liquidation_threshold, avg_ltv, health_factor), in that order.
    """

    total_collateral_base: int
    total_debt_base: int
    avg_ltv: int
    avg_liquidation_threshold: int
    health_factor: int
    has_zero_ltv_collateral: bool

    @property
    def available_borrows_base(self) -> int:
        """GenericLogic.calculateAvailableBorrows, as Pool.getUserAccountData returns it."""
        return calculate_available_borrows(
            self.total_collateral_base, self.total_debt_base, self.avg_ltv
        )

    @property
    def is_liquidatable(self) -> bool:
        """ValidationLogic.validateLiquidationCall: HF < HEALTH_FACTOR_LIQUIDATION_THRESHOLD."""
        return self.health_factor < HEALTH_FACTOR_LIQUIDATION_THRESHOLD


def is_in_emode_category(user_emode: int, asset_emode: int) -> bool:
    """EModeLogic.isInEModeCategory: the user is in eMode and the asset is in that category."""
    return user_emode != 0 and asset_emode == user_emode


_NO_EMODE_CATEGORY = EModeCategory(ltv=0, liquidation_threshold=0)


def _emode_for(user_emode: int, emode_categories: Mapping[int, EModeCategory]) -> EModeCategory:
    if user_emode == 0:
        # GenericLogic only reads the category when the user is in one; zeros otherwise.
        return _NO_EMODE_CATEGORY
    try:
        return emode_categories[user_emode]
    except KeyError:
        raise ValueError(f"eMode category {user_emode} not supplied") from None


def _effective_price(position: AccountReserve, user_emode: int, emode: EModeCategory) -> int:
    # `vars.eModeAssetPrice != 0 && userEModeCategory == eModeAssetCategory`: the eMode
    # price applies to collateral *and* debt of that category.
    if emode.price != 0 and user_emode == position.emode_category:
        return emode.price
    return position.price


def account_data(
    positions: Sequence[AccountReserve],
    *,
    user_emode: int = 0,
    emode_categories: Mapping[int, EModeCategory] | None = None,
) -> AccountData:
    """GenericLogic.calculateUserAccountData (v3.0.2), exactly.

    Per reserve (all floors): collateral_i = a_token_balance * price / 10**decimals when the
    user's collateral bit is set *and* the reserve LT != 0; debt_i = price * debt /
    10**decimals when the borrowing bit is set. avgLtv and avgLT are the collateral-weighted
    averages (floored) using the eMode LTV/LT when the reserve is in the user's category;
    reserves with LTV 0 add nothing to avgLtv and set `has_zero_ltv_collateral` (the check is on
    the *reserve* LTV even in eMode). HF = percentMul(totalCollateral, avgLT).wadDiv(totalDebt),
    or type(uint256).max without debt. An empty position list gives (0, 0, 0, 0, max, False),
    as `userConfig.isEmpty()` does.
    """
    emode = _emode_for(user_emode, emode_categories or {})
    total_collateral = 0
    total_debt = 0
    ltv_weighted = 0
    lt_weighted = 0
    has_zero_ltv_collateral = False
    for position in positions:
        unit = 10**position.decimals
        price = _effective_price(position, user_emode, emode)
        if position.liquidation_threshold != 0 and position.collateral_enabled:
            value = position.a_token_balance * price // unit
            total_collateral += value
            in_emode = is_in_emode_category(user_emode, position.emode_category)
            if position.ltv != 0:
                ltv_weighted += value * (emode.ltv if in_emode else position.ltv)
            else:
                has_zero_ltv_collateral = True
            lt_weighted += value * (
                emode.liquidation_threshold if in_emode else position.liquidation_threshold
            )
        if position.borrowing:
            total_debt += price * position.debt // unit
    avg_ltv = ltv_weighted // total_collateral if total_collateral else 0
    avg_lt = lt_weighted // total_collateral if total_collateral else 0
    health_factor = (
        UINT256_MAX
        if total_debt == 0
        else wad_div(percent_mul(total_collateral, avg_lt), total_debt)
    )
    return AccountData(
        total_collateral_base=total_collateral,
        total_debt_base=total_debt,
        avg_ltv=avg_ltv,
        avg_liquidation_threshold=avg_lt,
        health_factor=health_factor,
        has_zero_ltv_collateral=has_zero_ltv_collateral,
    )


def calculate_available_borrows(total_collateral_base: int, total_debt_base: int, ltv: int) -> int:
    """GenericLogic.calculateAvailableBorrows: max(0, percentMul(collateral, ltv) - debt)."""
    available = percent_mul(total_collateral_base, ltv)
    return available - total_debt_base if available >= total_debt_base else 0


def health_factor_from_balances(
    total_collateral_base: int, total_debt_base: int, avg_liquidation_threshold: int
) -> int:
    """The v3.0.2 HF formula on account totals (type(uint256).max without debt)."""
    if total_debt_base == 0:
        return UINT256_MAX
    return wad_div(percent_mul(total_collateral_base, avg_liquidation_threshold), total_debt_base)


def close_factor(health_factor: int) -> int:
    """LiquidationLogic._calculateDebt: 50% above HF 0.95, 100% at or below it (bps)."""
    if health_factor > CLOSE_FACTOR_HF_THRESHOLD:
        return DEFAULT_LIQUIDATION_CLOSE_FACTOR
    return MAX_LIQUIDATION_CLOSE_FACTOR


def max_liquidatable_debt(user_total_debt: int, health_factor: int) -> int:
    """LiquidationLogic._calculateDebt: the most of one debt reserve a liquidator may repay.

    `user_total_debt` is the stable + variable debt of the debt reserve being repaid (v3.0.2;
    3.3+ applies the close factor to the whole position and adds dust rules).
    """
    return percent_mul(user_total_debt, close_factor(health_factor))


# ---------------------------------------------------------------------------------------------
# Liquidation price (derived; not a contract function)
# ---------------------------------------------------------------------------------------------


def _ceil_div(numerator: int, denominator: int) -> int:
    return -((-numerator) // denominator)


def liquidation_price(
    positions: Sequence[AccountReserve],
    asset: str,
    *,
    user_emode: int = 0,
    emode_categories: Mapping[int, EModeCategory] | None = None,
) -> int | None:
    """The oracle price of `asset` (base currency units) at which HF would reach exactly 1.

    All other prices and balances are held fixed. Writing, in base units before the floors,
    W = Σ_{j≠i} collateral_j · LT_j (LT_j the eMode LT where it applies), D = Σ_{j≠i} debt_j,
    and for the asset i itself b = a-token balance counted as collateral, LT_i its (eMode)
    LT, d = its debt, u = 10**decimals:

        HF(P) = 1  ⇔  W + b·P/u·LT_i = 1e4 · (D + d·P/u)
                   ⇔  P = u · (1e4·D - W) / (b·LT_i - 1e4·d)

    The exact solution is rounded up to an integer price: at any price below the result the
    (unfloored) HF is under 1. Exact only "to the displayed precision": the contract floors
    each reserve's value and the averaged LT, which can move HF by a few parts in 1e4·collateral.

    Returns None when no fall in this price can bring HF to 1: the asset is not counted as
    collateral (bit off, LT 0) or not held, its own debt outweighs its weighted collateral
    (b·LT_i <= 1e4·d: a *rise* would hurt), or the account is safe even at a zero price
    (1e4·D <= W, e.g. no debt). If HF is already below 1 the current-state solution (above
    the current price) is returned. For an eMode user whose category has a price source, all
    of the category's reserves share one price; this function moves only `asset`'s entries.
    """
    emode = _emode_for(user_emode, emode_categories or {})
    weighted_other = 0  # W: base units * bps
    debt_other = 0  # D: base units
    own_lt_balance = 0  # b·LT_i: token units * bps
    own_debt = 0  # d: token units
    unit: int | None = None
    for position in positions:
        is_target = position.asset == asset
        price = _effective_price(position, user_emode, emode)
        u = 10**position.decimals
        counts_as_collateral = position.liquidation_threshold != 0 and position.collateral_enabled
        lt = (
            emode.liquidation_threshold
            if is_in_emode_category(user_emode, position.emode_category)
            else position.liquidation_threshold
        )
        if is_target:
            unit = u
            if counts_as_collateral:
                own_lt_balance += position.a_token_balance * lt
            if position.borrowing:
                own_debt += position.debt
            continue
        if counts_as_collateral:
            weighted_other += position.a_token_balance * price // u * lt
        if position.borrowing:
            debt_other += price * position.debt // u
    if unit is None:
        return None
    numerator = PERCENTAGE_FACTOR * debt_other - weighted_other
    denominator = own_lt_balance - PERCENTAGE_FACTOR * own_debt
    if denominator <= 0 or numerator <= 0:
        return None
    return _ceil_div(unit * numerator, denominator)
