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

Later releases (aave-dao/aave-v3-origin, v3.1 to v3.7) are selected with an `AaveVersion`
(read from the Pool's `POOL_REVISION`/`getRevision()` or pinned by a chain config); every
function whose result differs between versions takes `version=` and defaults to v3.0.2, so a
caller that passes nothing gets exactly the devnet's rules. What changes, by release:
- 3.2: stable debt removed; eMode price source removed; eMode LT/LTV apply to the reserves in
  the category's collateral bitmap (not "reserve category == user category"; reserve
  configuration bits 168-175 are deprecated).
- 3.3: close factor applies to the whole position; bad-debt (deficit) accounting (not modelled
  here: `close_factor`/`max_liquidatable_debt` are v3.0.2's).
- 3.4: compounded interest is `x + x·(x/2 + x·x/6)` in ray math, x = rate·Δt/year.
- 3.5: directional rounding: aToken balances round down (`rayMulFloor`), debt up
  (`rayMulCeil`, then `mulDivCeil(debt, price, unit)`); HF is `Σ(collateral_i·LT_i)
  .wadDiv(debt) / 1e4` instead of via the averaged LT; available borrows use `percentMulFloor`;
  `Mint`/`Burn` values are differences of rounded balances.
- 3.6: a collateral flag counts whatever the reserve LT (an asset with LT 0 can be collateral
  inside an eMode); an eMode category's `ltvzeroBitmap` gives LTV 0 to its assets.
- 3.7: an isolated eMode gives LTV 0 to every asset outside its collateral bitmap.
The vectors in tests/vectors/ were computed by the contracts' own code for v3.0.2, 3.3, 3.5, 3.6
and 3.7 (labs/aave_vectors/gen_vectors.py).
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


@dataclass(frozen=True, slots=True, order=True)
class AaveVersion:
    """An Aave V3 release; its properties say which rules of the math apply.

    Build it from the Pool's revision (`AaveVersion.from_pool_revision(pool.getRevision())`) or
    from a version string ("3.0.2", "3.7", "v3.7.0"). Ordered, so `version >= V3_5` reads as
    "3.5 or later".
    """

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> AaveVersion:
        """ "3.7", "3.0.2", "v3.7.0" -> AaveVersion; anything else is a ValueError."""
        parts = text.strip().removeprefix("v").split(".")
        if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"Aave version {text!r} is not of the form 3.7 or 3.0.2")
        numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
        version = cls(numbers[0], numbers[1], numbers[2])
        # 3.0.0 and 3.0.1 compute as 3.0.2 does: every rule here changes at 3.1 or later.
        if not AaveVersion(3, 0) <= version < AaveVersion(3, LATEST.minor + 1):
            raise ValueError(f"Aave version {text!r} is not one we know (3.0 to {LATEST})")
        return version

    @classmethod
    def from_pool_revision(cls, revision: int) -> AaveVersion:
        """The release of a Pool that answers `getRevision()`/`POOL_REVISION` = `revision`."""
        try:
            return POOL_REVISIONS[revision]
        except KeyError:
            raise ValueError(
                f"Pool revision {revision} is not one we know ({min(POOL_REVISIONS)} to "
                f"{max(POOL_REVISIONS)}); pin the Aave version in the chain config"
            ) from None

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    # The rules below change at a release x.y.0: each compares (major, minor) as a tuple,
    # cheaper than the generated ordering (they are read per reserve of every account valued).

    @property
    def emode_price_source(self) -> bool:
        """Before 3.2 an eMode category may have its own price source."""
        return (self.major, self.minor) < (3, 2)

    @property
    def emode_bitmaps(self) -> bool:
        """Since 3.2 eMode LT/LTV apply to the reserves in the category's collateral bitmap."""
        return (self.major, self.minor) >= (3, 2)

    @property
    def stable_debt(self) -> bool:
        """Stable-rate debt exists before 3.2."""
        return (self.major, self.minor) < (3, 2)

    @property
    def compounded_interest_x(self) -> bool:
        """Since 3.4 compounded interest is `x + x·(x/2 + x·x/6)` (x = rate·Δt/year, ray)."""
        return (self.major, self.minor) >= (3, 4)

    @property
    def directional_rounding(self) -> bool:
        """Since 3.5 balances round by direction and the HF sums collateral · LT first."""
        return (self.major, self.minor) >= (3, 5)

    @property
    def collateral_needs_lt(self) -> bool:
        """Before 3.6 a collateral flag counts only when the reserve LT is not 0."""
        return (self.major, self.minor) < (3, 6)

    @property
    def emode_ltvzero(self) -> bool:
        """Since 3.6 eMode categories have an LTV-zero bitmap and LTV is taken per eMode rule."""
        return (self.major, self.minor) >= (3, 6)

    @property
    def isolated_emode(self) -> bool:
        """Since 3.7 an isolated eMode gives LTV 0 to assets outside its collateral bitmap."""
        return (self.major, self.minor) >= (3, 7)


V3_0_2 = AaveVersion(3, 0, 2)
V3_1 = AaveVersion(3, 1)
V3_2 = AaveVersion(3, 2)
V3_3 = AaveVersion(3, 3)
V3_4 = AaveVersion(3, 4)
V3_5 = AaveVersion(3, 5)
V3_6 = AaveVersion(3, 6)
V3_7 = AaveVersion(3, 7)
LATEST = V3_7

# Pool.POOL_REVISION of each release (aave-dao/aave-v3-origin tags; npm @aave/core-v3 1.19.3
# says 0x1). 3.0.x pools were deployed and upgraded at revisions 1 to 3 with the same math;
# 3.2.1 (revision 6) only fixed 3.2.0.
POOL_REVISIONS: dict[int, AaveVersion] = {
    1: V3_0_2,
    2: V3_0_2,
    3: V3_0_2,
    4: V3_1,
    5: V3_2,
    6: AaveVersion(3, 2, 1),
    7: V3_3,
    8: V3_4,
    9: V3_5,
    10: V3_6,
    11: V3_7,
}


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


_RAY_MUL_MAX = UINT256_MAX - HALF_RAY


def ray_mul(a: int, b: int) -> int:
    """WadRayMath.rayMul: a*b/1e27 rounded half up; reverts if a*b + HALF_RAY overflows."""
    # a·b < 2**255 whenever their bit lengths sum to 255 or less: no division needed then
    # (this runs for every balance of every account valued).
    if a < 0 or b < 0 or (a.bit_length() + b.bit_length() > 255 and a > _RAY_MUL_MAX // b):
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


# Directional variants (3.5+). Their guards differ from the half-up ones: the product alone
# must fit in 256 bits (`a > MAX / b` reverts), and b == 0 reverts only for the divisions.


def _mul_guard(name: str, a: int, b: int) -> None:
    if a < 0 or b < 0 or (b != 0 and a > UINT256_MAX // b):
        raise MathError(f"{name}({a}, {b}) reverts")


def _div_guard(name: str, a: int, b: int, factor: int) -> None:
    if a < 0 or b <= 0 or a > UINT256_MAX // factor:
        raise MathError(f"{name}({a}, {b}) reverts")


def _ceil_div(numerator: int, denominator: int) -> int:
    return -((-numerator) // denominator)


def ray_mul_floor(a: int, b: int) -> int:
    """WadRayMath.rayMulFloor (3.5+): a*b/1e27 rounded down."""
    _mul_guard("rayMulFloor", a, b)
    return a * b // RAY


def ray_mul_ceil(a: int, b: int) -> int:
    """WadRayMath.rayMulCeil (3.5+): a*b/1e27 rounded up."""
    _mul_guard("rayMulCeil", a, b)
    return _ceil_div(a * b, RAY)


def ray_div_floor(a: int, b: int) -> int:
    """WadRayMath.rayDivFloor (3.5+): a*1e27/b rounded down."""
    _div_guard("rayDivFloor", a, b, RAY)
    return a * RAY // b


def ray_div_ceil(a: int, b: int) -> int:
    """WadRayMath.rayDivCeil (3.5+): a*1e27/b rounded up."""
    _div_guard("rayDivCeil", a, b, RAY)
    return _ceil_div(a * RAY, b)


def percent_mul_floor(value: int, percentage: int) -> int:
    """PercentageMath.percentMulFloor (3.5+): value*percentage/1e4 rounded down."""
    _mul_guard("percentMulFloor", value, percentage)
    return value * percentage // PERCENTAGE_FACTOR


def percent_mul_ceil(value: int, percentage: int) -> int:
    """PercentageMath.percentMulCeil (3.5+): value*percentage/1e4 rounded up."""
    _mul_guard("percentMulCeil", value, percentage)
    return _ceil_div(value * percentage, PERCENTAGE_FACTOR)


def percent_div_floor(value: int, percentage: int) -> int:
    """PercentageMath.percentDivFloor (3.5+): value*1e4/percentage rounded down."""
    _div_guard("percentDivFloor", value, percentage, PERCENTAGE_FACTOR)
    return value * PERCENTAGE_FACTOR // percentage


def percent_div_ceil(value: int, percentage: int) -> int:
    """PercentageMath.percentDivCeil (3.5+): value*1e4/percentage rounded up."""
    _div_guard("percentDivCeil", value, percentage, PERCENTAGE_FACTOR)
    return _ceil_div(value * PERCENTAGE_FACTOR, percentage)


def mul_div_ceil(a: int, b: int, c: int) -> int:
    """MathUtils.mulDivCeil (3.5+): a*b/c rounded up; reverts on c == 0 or a*b overflow."""
    if c <= 0:
        raise MathError(f"mulDivCeil({a}, {b}, {c}) reverts")
    _mul_guard("mulDivCeil", a, b)
    return _ceil_div(a * b, c)


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


def calculate_compounded_interest(
    rate: int, last_update_ts: int, now_ts: int, version: AaveVersion = V3_0_2
) -> int:
    """MathUtils.calculateCompoundedInterest of `version`, in ray.

    Before 3.4, the 3-term binomial approximation:

    (1+x)^n ≈ 1 + n·x + n(n-1)/2·x² + n(n-1)(n-2)/6·x³ with x = rate/SECONDS_PER_YEAR, where
    each power is floored as the contract does it: x² as `rate.rayMul(rate) / SPY²` and x³ as
    `x².rayMul(rate) / SPY`. The approximation slightly undercharges borrowers. (Aave V2 and
    aave-utilities divide the rate by SECONDS_PER_YEAR *first*, which rounds differently.)
    """
    exp = _elapsed(last_update_ts, now_ts)
    if exp == 0:
        return RAY
    if version.compounded_interest_x:
        return _compounded_interest_x(rate, exp)
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


def _compounded_interest_x(rate: int, exp: int) -> int:
    """3.4+: RAY + x + x·(x/2 + x·(x/6)) with x = rate·Δt/year (floored), ray multiplications
    half up. The contract computes it `unchecked` except inside `rayMul`, whose guard still
    reverts: so the sums wrap modulo 2**256 and only the two products can revert."""
    x = ((rate * exp) & UINT256_MAX) // SECONDS_PER_YEAR
    inner = (x // 2 + ray_mul(x, x // 6)) & UINT256_MAX
    return (RAY + x + ray_mul(x, inner)) & UINT256_MAX


# ---------------------------------------------------------------------------------------------
# ReserveLogic and token balances
# ---------------------------------------------------------------------------------------------


def normalized_income(
    liquidity_index: int,
    liquidity_rate: int,
    last_update_ts: int,
    now_ts: int,
    version: AaveVersion = V3_0_2,
) -> int:
    """ReserveLogic.getNormalizedIncome: the supply index extrapolated (linearly) to now.

    Returns the stored index when the reserve was updated in this very block. The same in
    every release so far; `version` is taken so callers pass one thing everywhere.
    """
    del version  # unchanged from 3.0.2 to 3.7
    if last_update_ts == now_ts:
        return liquidity_index
    return ray_mul(
        calculate_linear_interest(liquidity_rate, last_update_ts, now_ts), liquidity_index
    )


def normalized_variable_debt(
    variable_borrow_index: int,
    variable_borrow_rate: int,
    last_update_ts: int,
    now_ts: int,
    version: AaveVersion = V3_0_2,
) -> int:
    """ReserveLogic.getNormalizedDebt: the variable borrow index compounded to now.

    Returns the stored index when the reserve was updated in this very block.
    """
    if last_update_ts == now_ts:
        return variable_borrow_index
    return ray_mul(
        calculate_compounded_interest(variable_borrow_rate, last_update_ts, now_ts, version),
        variable_borrow_index,
    )


def a_token_balance(
    scaled_balance: int, normalized_income_ray: int, version: AaveVersion = V3_0_2
) -> int:
    """AToken.balanceOf: scaledBalance · normalized income; half up before 3.5, down since
    (TokenMath.getATokenBalance: `rayMulFloor`).

    GenericLogic values collateral with exactly this product.
    """
    if version.directional_rounding:
        return ray_mul_floor(scaled_balance, normalized_income_ray)
    return ray_mul(scaled_balance, normalized_income_ray)


def variable_debt_balance(
    scaled_balance: int, normalized_debt_ray: int, version: AaveVersion = V3_0_2
) -> int:
    """VariableDebtToken.balanceOf: scaledBalance · normalized debt; half up (0 without a
    balance) before 3.5, up since (TokenMath.getVTokenBalance: `rayMulCeil`)."""
    if scaled_balance == 0:
        return 0
    if version.directional_rounding:
        return ray_mul_ceil(scaled_balance, normalized_debt_ray)
    return ray_mul(scaled_balance, normalized_debt_ray)


# TokenMath (3.5+): the scaled amount an underlying amount moves, rounded in the protocol's
# favour. Before 3.5 every one of them is `amount.rayDiv(index)` (half up).


def a_token_mint_scaled(amount: int, liquidity_index: int, version: AaveVersion = V3_0_2) -> int:
    """Scaled aTokens minted for a supply of `amount` (3.5+: rayDivFloor)."""
    if version.directional_rounding:
        return ray_div_floor(amount, liquidity_index)
    return ray_div(amount, liquidity_index)


def a_token_burn_scaled(amount: int, liquidity_index: int, version: AaveVersion = V3_0_2) -> int:
    """Scaled aTokens burned for a withdrawal of `amount` (3.5+: rayDivCeil); transfers too."""
    if version.directional_rounding:
        return ray_div_ceil(amount, liquidity_index)
    return ray_div(amount, liquidity_index)


def variable_debt_mint_scaled(
    amount: int, variable_borrow_index: int, version: AaveVersion = V3_0_2
) -> int:
    """Scaled debt minted for a borrow of `amount` (3.5+: rayDivCeil)."""
    if version.directional_rounding:
        return ray_div_ceil(amount, variable_borrow_index)
    return ray_div(amount, variable_borrow_index)


def variable_debt_burn_scaled(
    amount: int, variable_borrow_index: int, version: AaveVersion = V3_0_2
) -> int:
    """Scaled debt burned for a repayment of `amount` (3.5+: rayDivFloor)."""
    if version.directional_rounding:
        return ray_div_floor(amount, variable_borrow_index)
    return ray_div(amount, variable_borrow_index)


def mint_burn_amount(*, burn: bool, value: int, balance_increase: int) -> int:
    """The signed change of a user's balance that a token `Mint`/`Burn` event reports.

    `Mint(caller, onBehalfOf, value, balanceIncrease, index)` has value = change + interest;
    `Burn(from, target, value, balanceIncrease, index)` has value = -change - interest. A
    burn smaller than the interest accrued is emitted as a `Mint` whose value is below its
    balanceIncrease, so the sign comes out right from either event. (In 3.0.2 to 3.4 the
    change is the underlying amount; since 3.5 it is the difference of the rounded balances.)
    """
    if value < 0 or balance_increase < 0:
        raise MathError(f"event value {value} / balanceIncrease {balance_increase} negative")
    return -(value + balance_increase) if burn else value - balance_increase


def scaled_delta_from_event(
    *,
    burn: bool,
    value: int,
    balance_increase: int,
    index: int,
    previous_scaled: int,
    debt: bool,
    version: AaveVersion = V3_0_2,
) -> int:
    """The exact signed change of the scaled balance behind a `Mint`/`Burn` token event.

    `debt` says whether the event came from a variable debt token (else an aToken);
    `previous_scaled` is the user's scaled balance before the event.

    - Before 3.5 the token scaled the underlying amount with `rayDiv(amount, index)`, and the
      event carries that amount: delta = ±rayDiv(|amount|, index).
    - Since 3.5 the token scaled the amount first (TokenMath, by direction) and the event
      carries `balance(S + delta) - balance(S)` in rounded balances, where balance is
      `rayMulFloor` (aToken) or `rayMulCeil` (debt) at `index`. As `index >= 1e27`, balance()
      is strictly increasing in the scaled amount, so exactly one delta fits: found here by
      inverting it and checked. A MathError if none does (the event and `previous_scaled`
      disagree).
    """
    amount = mint_burn_amount(burn=burn, value=value, balance_increase=balance_increase)
    if not version.directional_rounding:
        scaled = ray_div(abs(amount), index)
        return scaled if amount >= 0 else -scaled
    if index < RAY:
        raise MathError(f"index {index} below 1 ray: a scaled delta is not unique")
    if previous_scaled < 0:
        raise MathError(f"previous scaled balance {previous_scaled} negative")
    balance = ray_mul_ceil if debt else ray_mul_floor
    target = balance(previous_scaled, index) + amount
    if target < 0:
        raise MathError(f"{'Burn' if burn else 'Mint'} of {amount} exceeds the balance")
    # The least scaled y with balance(y) >= target (ceil) / the greatest with <= (floor).
    y = target * RAY // index if debt else _ceil_div(target * RAY, index)
    if balance(y, index) != target:
        raise MathError(
            f"no scaled balance gives {target} at index {index} (event disagrees with the "
            f"previous scaled balance {previous_scaled})"
        )
    return y - previous_scaled


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
    """`Pool.getEModeCategoryData(id)` and, since 3.2, the category's bitmaps.

    `price` (before 3.2 only) is `AaveOracle.getAssetPrice(price_source)`: the price source
    address is looked up *as an asset* in the Aave oracle (its registered source, else the
    fallback oracle), not read as an aggregator. 0 when the category has no price source;
    GenericLogic then keeps each reserve's own price (it also does so when the oracle answers 0).

    Since 3.2 a category's LT/LTV apply to the reserves whose bit (`reserve_id`) is set in
    `collateral_bitmap` (`getEModeCategoryCollateralBitmap`); `borrowable_bitmap` says which
    may be borrowed in it (validation only: it does not change account data). None means the
    v3.0.x rule: the category applies to the reserves whose configuration names it. Since 3.6
    `ltvzero_bitmap` (`getEModeCategoryLtvzeroBitmap`) gives LTV 0 to its reserves inside the
    category; since 3.7 an `isolated` category gives LTV 0 to every reserve outside its
    collateral bitmap.
    """

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int = 0
    price: int = 0
    price_source: str | None = None
    label: str = ""
    collateral_bitmap: int | None = None
    borrowable_bitmap: int | None = None
    ltvzero_bitmap: int = 0
    isolated: bool = False


@dataclass(frozen=True, slots=True)
class AccountReserve:
    """One reserve a user supplies (as collateral) and/or borrows, as GenericLogic reads it.

    - `price`: `AaveOracle.getAssetPrice(asset)`, base currency (8 decimals on USD markets).
      Before 3.2, for a user in an eMode category with a price source, `account_data`
      substitutes the category price for the reserves of that category, as the contract does.
    - `collateral_enabled`: the user's collateral bit for this reserve.
    - `ltv`, `liquidation_threshold`, `emode_category`, `decimals`: the reserve configuration
      (`emode_category`: bits 168-175, used by the v3.0.x rule only).
    - `a_token_balance`: `AToken.balanceOf(user)` (= scaled · normalized income, accrued,
      rounded as the version does: `a_token_balance(..., version=)`).
    - `debt`: variable (+ stable before 3.2) debt balances, accrued, **summed before pricing**
      (GenericLogic prices the sum once).
    - `borrowing`: the user's borrowing bit; debt only counts when it is set (a zero debt adds
      nothing either way).
    - `reserve_id`: the reserve's index in the Pool (`getReserveData(asset).id`), its bit in
      the user configuration and in eMode bitmaps; needed (>= 0) when a bitmap applies.
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
    reserve_id: int = -1
    borrowing: bool = True


@dataclass(frozen=True, slots=True)
class AccountData:
    """The result of GenericLogic.calculateUserAccountData.

    `Pool.getUserAccountData(user)` returns (total_collateral_base, total_debt_base,
    available_borrows_base, avg_liquidation_threshold, avg_ltv, health_factor), in that order.
    """

    total_collateral_base: int
    total_debt_base: int
    avg_ltv: int
    avg_liquidation_threshold: int
    health_factor: int
    has_zero_ltv_collateral: bool
    version: AaveVersion = V3_0_2

    @property
    def available_borrows_base(self) -> int:
        """GenericLogic.calculateAvailableBorrows, as Pool.getUserAccountData returns it."""
        return calculate_available_borrows(
            self.total_collateral_base, self.total_debt_base, self.avg_ltv, self.version
        )

    @property
    def is_liquidatable(self) -> bool:
        """ValidationLogic.validateLiquidationCall: HF < HEALTH_FACTOR_LIQUIDATION_THRESHOLD."""
        return self.health_factor < HEALTH_FACTOR_LIQUIDATION_THRESHOLD


def is_in_emode_category(user_emode: int, asset_emode: int) -> bool:
    """EModeLogic.isInEModeCategory (v3.0.x): user in eMode, asset in that category."""
    return user_emode != 0 and asset_emode == user_emode


_NO_EMODE_CATEGORY = EModeCategory(ltv=0, liquidation_threshold=0)


def emode_for(user_emode: int, emode_categories: Mapping[int, EModeCategory]) -> EModeCategory:
    """The category GenericLogic reads for a user in `user_emode` (zeros for none)."""
    if user_emode == 0:
        # GenericLogic only reads the category when the user is in one; zeros otherwise.
        return _NO_EMODE_CATEGORY
    try:
        return emode_categories[user_emode]
    except KeyError:
        raise ValueError(f"eMode category {user_emode} not supplied") from None


def _on_bitmap(bitmap: int, position: AccountReserve) -> bool:
    # EModeConfiguration.isReserveEnabledOnBitmap: bit `reserveIndex` of a uint128.
    if not 0 <= position.reserve_id < MAX_RESERVES_COUNT:
        raise ValueError(
            f"reserve {position.asset}: reserve_id {position.reserve_id} is needed for eMode "
            "bitmaps (0 to 127)"
        )
    return (bitmap >> position.reserve_id) & 1 != 0


@dataclass(frozen=True, slots=True)
class ReserveTerms:
    """How GenericLogic counts one reserve for one user under one version. It depends on the
    reserve's configuration and price, the user's eMode category and collateral bit, not on
    the balances: a batch valuing many accounts at one block computes it once per kind."""

    price: int
    counts_as_collateral: bool
    ltv: int  # 0: adds nothing to avgLtv and sets hasZeroLtvCollateral
    liquidation_threshold: int


def reserve_terms(
    position: AccountReserve, user_emode: int, emode: EModeCategory, version: AaveVersion
) -> ReserveTerms:
    """`position`'s terms for a user in `user_emode` (`emode`: `emode_for` of it); balances
    are not read."""
    if version.emode_bitmaps and emode.collateral_bitmap is not None:
        in_emode = user_emode != 0 and _on_bitmap(emode.collateral_bitmap, position)
    else:
        in_emode = is_in_emode_category(user_emode, position.emode_category)
    price = position.price
    # v3.0.x: `vars.eModeAssetPrice != 0 && userEModeCategory == eModeAssetCategory`: the
    # eMode price applies to collateral *and* debt of that category. Gone in 3.2.
    if version.emode_price_source and emode.price != 0 and user_emode == position.emode_category:
        price = emode.price
    counts = position.collateral_enabled and (
        position.liquidation_threshold != 0 or not version.collateral_needs_lt
    )
    if version.emode_ltvzero:
        # ValidationLogic.getUserReserveLtv (3.6+).
        if in_emode:
            ltv = 0 if _on_bitmap(emode.ltvzero_bitmap, position) else emode.ltv
        elif user_emode != 0 and emode.isolated and version.isolated_emode:
            ltv = 0
        else:
            ltv = position.ltv
    else:
        # Before 3.6 a reserve LTV of 0 wins even inside eMode.
        ltv = 0 if position.ltv == 0 else (emode.ltv if in_emode else position.ltv)
    lt = emode.liquidation_threshold if in_emode else position.liquidation_threshold
    return ReserveTerms(price, counts, ltv, lt)


def _debt_value(debt: int, price: int, unit: int, version: AaveVersion) -> int:
    # 3.5+: MathUtils.mulDivCeil(debt, price, unit); before: (price * debt) / unit.
    if version.directional_rounding:
        return mul_div_ceil(debt, price, unit)
    return price * debt // unit


def account_data(
    positions: Sequence[AccountReserve],
    *,
    user_emode: int = 0,
    emode_categories: Mapping[int, EModeCategory] | None = None,
    version: AaveVersion = V3_0_2,
) -> AccountData:
    """GenericLogic.calculateUserAccountData of `version`, exactly.

    Per reserve (all floors unless said): collateral_i = a_token_balance · price / 10**decimals
    when the user's collateral bit is set (and, before 3.6, the reserve LT != 0); debt_i = price
    · debt / 10**decimals (3.5+: rounded up) when the borrowing bit is set. avgLtv and avgLT are
    the collateral-weighted averages (floored), with the eMode LTV/LT for the reserves the
    user's category covers (see `EModeCategory`); a reserve whose LTV comes out 0 adds nothing to
    avgLtv and sets `has_zero_ltv_collateral`. HF = percentMul(totalCollateral,
    avgLT).wadDiv(totalDebt) before 3.5, Σ(collateral_i · LT_i).wadDiv(totalDebt) / 1e4 since;
    type(uint256).max without debt. An empty position list gives (0, 0, 0, 0, max, False), as
    `userConfig.isEmpty()` does.
    """
    emode = emode_for(user_emode, emode_categories or {})
    parts = []
    for position in positions:
        terms = reserve_terms(position, user_emode, emode, version)
        parts.append(
            reserve_part(
                terms,
                position.a_token_balance,
                position.debt,
                position.borrowing,
                10**position.decimals,
                version,
            )
        )
    return sum_parts(parts, version)


# One reserve's part of one user's sums: its terms, collateral_i and debt_i (base units).
ReservePart = tuple[ReserveTerms, int, int]


def reserve_part(
    terms: ReserveTerms,
    a_token_balance: int,
    debt: int,
    borrowing: bool,
    unit: int,
    version: AaveVersion,
) -> ReservePart:
    """collateral_i (0 unless counted) and debt_i (0 unless borrowing) as GenericLogic computes
    them: each is rounded on its own before the sums (`sum_parts`), so an account's totals are
    exactly the sums of its reserves' parts."""
    collateral = a_token_balance * terms.price // unit if terms.counts_as_collateral else 0
    debt_base = _debt_value(debt, terms.price, unit, version) if borrowing else 0
    return terms, collateral, debt_base


def sum_parts(parts: Sequence[ReservePart], version: AaveVersion = V3_0_2) -> AccountData:
    """GenericLogic's totals, averages and health factor over the reserves' parts."""
    return AccountData(*account_sums(parts, version)[:6], version=version)


# (total collateral, total debt, avg LTV, avg LT, health factor, has zero-LTV collateral,
# Σ collateral_i · LT_i): AccountData's figures and the weighted sum behind avg LT.
AccountSums = tuple[int, int, int, int, int, bool, int]


def account_sums(parts: Sequence[ReservePart], version: AaveVersion = V3_0_2) -> AccountSums:
    """`sum_parts` as a tuple, with Σ collateral_i · LT_i (what liquidation prices start from)."""
    total_collateral = 0
    total_debt = 0
    ltv_weighted = 0
    lt_weighted = 0
    has_zero_ltv_collateral = False
    for terms, value, debt_value in parts:
        if terms.counts_as_collateral:
            total_collateral += value
            if terms.ltv != 0:
                ltv_weighted += value * terms.ltv
            else:
                has_zero_ltv_collateral = True
            lt_weighted += value * terms.liquidation_threshold
        total_debt += debt_value
    avg_ltv = ltv_weighted // total_collateral if total_collateral else 0
    avg_lt = lt_weighted // total_collateral if total_collateral else 0
    if total_debt == 0:
        health_factor = UINT256_MAX
    elif version.directional_rounding:
        health_factor = wad_div(lt_weighted, total_debt) // PERCENTAGE_FACTOR
    else:
        health_factor = wad_div(percent_mul(total_collateral, avg_lt), total_debt)
    return (
        total_collateral,
        total_debt,
        avg_ltv,
        avg_lt,
        health_factor,
        has_zero_ltv_collateral,
        lt_weighted,
    )


def calculate_available_borrows(
    total_collateral_base: int, total_debt_base: int, ltv: int, version: AaveVersion = V3_0_2
) -> int:
    """GenericLogic.calculateAvailableBorrows: max(0, collateral · ltv - debt); the product is
    percentMul (half up) before 3.5, percentMulFloor since."""
    if version.directional_rounding:
        available = percent_mul_floor(total_collateral_base, ltv)
    else:
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


def liquidation_price(
    positions: Sequence[AccountReserve],
    asset: str,
    *,
    user_emode: int = 0,
    emode_categories: Mapping[int, EModeCategory] | None = None,
    version: AaveVersion = V3_0_2,
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
    each reserve's value (and before 3.5 the averaged LT; since 3.5 it rounds debt up), which
    can move HF by a few parts in 1e4·collateral. Which reserves count and with which LT
    follow `version` as in `account_data`.

    Returns None when no fall in this price can bring HF to 1: the asset is not counted as
    collateral (bit off, LT 0) or not held, its own debt outweighs its weighted collateral
    (b·LT_i <= 1e4·d: a *rise* would hurt), or the account is safe even at a zero price
    (1e4·D <= W, e.g. no debt). If HF is already below 1 the current-state solution (above
    the current price) is returned. Before 3.2, for an eMode user whose category has a price
    source, all of the category's reserves share one price; this function moves only
    `asset`'s entries.
    """
    emode = emode_for(user_emode, emode_categories or {})
    weighted_other = 0  # W: base units * bps
    debt_other = 0  # D: base units
    own_lt_balance = 0  # b·LT_i: token units * bps
    own_debt = 0  # d: token units
    unit: int | None = None
    for position in positions:
        terms = reserve_terms(position, user_emode, emode, version)
        u = 10**position.decimals
        if position.asset == asset:
            unit = u
            if terms.counts_as_collateral:
                own_lt_balance += position.a_token_balance * terms.liquidation_threshold
            if position.borrowing:
                own_debt += position.debt
            continue
        _, value, debt_value = reserve_part(
            terms, position.a_token_balance, position.debt, position.borrowing, u, version
        )
        weighted_other += value * terms.liquidation_threshold
        debt_other += debt_value
    if unit is None:
        return None
    return liquidation_price_from(unit, weighted_other, debt_other, own_lt_balance, own_debt)


def liquidation_price_from(
    unit: int, weighted_other: int, debt_other: int, own_lt_balance: int, own_debt: int
) -> int | None:
    """`liquidation_price` from its sums: W, D, b·LT_i, d and u = 10**decimals of the asset
    (a caller holding an account's `sum_parts` gets W and D by taking the asset's own part
    out of the totals: integers, so exactly)."""
    numerator = PERCENTAGE_FACTOR * debt_other - weighted_other
    denominator = own_lt_balance - PERCENTAGE_FACTOR * own_debt
    if denominator <= 0 or numerator <= 0:
        return None
    return _ceil_div(unit * numerator, denominator)
