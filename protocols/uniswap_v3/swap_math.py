"""Uniswap V3's swap libraries, line by line on Python ints: SwapMath, SqrtPriceMath's
next-price functions, TickBitmap's word search and LiquidityMath (v3-core 1.0.x, Solidity 0.7.6
rounding and wrapping). The pool replica (replica.py) replays swaps with them."""

from __future__ import annotations

from protocols.uniswap_v3.math import (
    Q96,
    UINT256,
    MathError,
    get_amount0_delta,
    get_amount1_delta,
    get_sqrt_ratio_at_tick,
    mul_div,
    mul_div_rounding_up,
)

UINT128 = 1 << 128
MAX_UINT128 = UINT128 - 1
MAX_UINT160 = (1 << 160) - 1
INT128_MIN = -(1 << 127)
INT128_MAX = (1 << 127) - 1
INT256_MAX = (1 << 255) - 1
FEE_DENOMINATOR = 1_000_000  # fees are in hundredths of a bip


class ReplicaError(ValueError):
    """The logs cannot be applied to the replica: the log belongs in the dead letters.

    Raised when an event contradicts the replica (a swap no candidate reproduces, a mint whose
    amounts differ from the replica's price, a tick that would underflow). The replica is left
    unchanged by the failed call.
    """


class _Revert(MathError):
    """A `require` in the ported Solidity failed: the contract would have reverted."""


# ---------------------------------------------------------------------------------------------
# Library ports


def add_delta(x: int, y: int) -> int:
    """LiquidityMath.addDelta: uint128 + int128, reverting ('LS'/'LA') out of range."""
    z = x + y
    if not 0 <= z <= MAX_UINT128:
        raise _Revert("LS" if y < 0 else "LA")
    return z


def _next_sqrt_price_from_amount0_rounding_up(
    sqrt_p: int, liquidity: int, amount: int, add: bool
) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromAmount0RoundingUp, with its 256-bit overflow branches."""
    if amount == 0:
        return sqrt_p  # the contract short-circuits: the formula would not return sqrt_p
    numerator1 = liquidity << 96
    product = amount * sqrt_p
    if add:
        # `product / amount == sqrtPX96` is the contract's "the product did not overflow"
        if product < UINT256:
            denominator = numerator1 + product
            if denominator < UINT256:  # `denominator >= numerator1`: no overflow
                return mul_div_rounding_up(numerator1, sqrt_p, denominator) % (1 << 160)
        divisor = numerator1 // sqrt_p + amount  # LowGasSafeMath.add reverts on overflow
        if divisor >= UINT256:
            raise _Revert("add overflow")
        return -(-numerator1 // divisor)
    if product >= UINT256 or numerator1 <= product:
        raise _Revert("denominator underflow")
    result = mul_div_rounding_up(numerator1, sqrt_p, numerator1 - product)
    if result > MAX_UINT160:
        raise _Revert("toUint160")
    return result


def _next_sqrt_price_from_amount1_rounding_down(
    sqrt_p: int, liquidity: int, amount: int, add: bool
) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromAmount1RoundingDown."""
    if add:
        # both branches are floor(amount * 2^96 / L); the contract only avoids a mulDiv
        quotient = (
            (amount << 96) // liquidity
            if amount <= MAX_UINT160
            else mul_div(amount, Q96, liquidity)
        )
        result = sqrt_p + quotient
        if result > MAX_UINT160:
            raise _Revert("toUint160")
        return result
    quotient = (
        -(-(amount << 96) // liquidity)
        if amount <= MAX_UINT160
        else mul_div_rounding_up(amount, Q96, liquidity)
    )
    if sqrt_p <= quotient:
        raise _Revert("price underflow")
    return sqrt_p - quotient


def get_next_sqrt_price_from_input(
    sqrt_p: int, liquidity: int, amount_in: int, zero_for_one: bool
) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromInput (rounds so the target is never passed)."""
    if sqrt_p <= 0 or liquidity <= 0:
        raise _Revert("price and liquidity must be positive")
    if zero_for_one:
        return _next_sqrt_price_from_amount0_rounding_up(sqrt_p, liquidity, amount_in, True)
    return _next_sqrt_price_from_amount1_rounding_down(sqrt_p, liquidity, amount_in, True)


def get_next_sqrt_price_from_output(
    sqrt_p: int, liquidity: int, amount_out: int, zero_for_one: bool
) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromOutput (rounds so the target is always passed)."""
    if sqrt_p <= 0 or liquidity <= 0:
        raise _Revert("price and liquidity must be positive")
    if zero_for_one:
        return _next_sqrt_price_from_amount1_rounding_down(sqrt_p, liquidity, amount_out, False)
    return _next_sqrt_price_from_amount0_rounding_up(sqrt_p, liquidity, amount_out, False)


def compute_swap_step(
    current: int, target: int, liquidity: int, amount_remaining: int, fee_pips: int
) -> tuple[int, int, int, int]:
    """SwapMath.computeSwapStep(sqrtRatioCurrentX96, sqrtRatioTargetX96, liquidity,
    amountRemaining, feePips) -> (sqrtRatioNextX96, amountIn, amountOut, feeAmount).

    amountRemaining > 0 is exact input, < 0 exact output; the direction is current >= target.
    Raises MathError where the contract reverts.
    """
    zero_for_one = current >= target
    exact_in = amount_remaining >= 0
    amount_in = amount_out = 0
    if exact_in:
        remaining_less_fee = mul_div(amount_remaining, FEE_DENOMINATOR - fee_pips, FEE_DENOMINATOR)
        amount_in = (
            get_amount0_delta(target, current, liquidity, True)
            if zero_for_one
            else get_amount1_delta(current, target, liquidity, True)
        )
        if remaining_less_fee >= amount_in:
            sqrt_next = target
        else:
            sqrt_next = get_next_sqrt_price_from_input(
                current, liquidity, remaining_less_fee, zero_for_one
            )
    else:
        amount_out = (
            get_amount1_delta(target, current, liquidity, False)
            if zero_for_one
            else get_amount0_delta(current, target, liquidity, False)
        )
        if -amount_remaining >= amount_out:
            sqrt_next = target
        else:
            sqrt_next = get_next_sqrt_price_from_output(
                current, liquidity, -amount_remaining, zero_for_one
            )

    reached = target == sqrt_next
    # at the target, keep the amount computed for it; otherwise recompute from the new price
    if zero_for_one:
        if not (reached and exact_in):
            amount_in = get_amount0_delta(sqrt_next, current, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount1_delta(sqrt_next, current, liquidity, False)
    else:
        if not (reached and exact_in):
            amount_in = get_amount1_delta(current, sqrt_next, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount0_delta(current, sqrt_next, liquidity, False)

    if not exact_in and amount_out > -amount_remaining:
        amount_out = -amount_remaining  # cap the output at what was asked for

    if exact_in and sqrt_next != target:
        # the target was not reached: the rest of the input is the fee (the remainder, not the
        # fee rate: this is why a replay must end its last step exactly where the original did)
        fee_amount = amount_remaining - amount_in
    else:
        fee_amount = mul_div_rounding_up(amount_in, fee_pips, FEE_DENOMINATOR - fee_pips)
    return sqrt_next, amount_in, amount_out, fee_amount


def next_initialized_tick_within_one_word(
    bitmap: dict[int, int], tick: int, tick_spacing: int, lte: bool
) -> tuple[int, bool]:
    """TickBitmap.nextInitializedTickWithinOneWord on a `wordPos -> 256-bit word` bitmap.

    Searches only the current 256-spacing word: if no tick there is initialised, it returns the
    word's edge (uninitialised). The pool takes a swap step to that edge anyway, which splits
    the step and so changes the rounding of the amounts and fees; hence the exact port.
    """
    compressed = tick // tick_spacing  # floor, as the contract's `compressed--` for negatives
    if lte:
        # position(): wordPos = compressed >> 8, bitPos = uint8(compressed % 256)
        word_pos, bit_pos = compressed >> 8, compressed & 0xFF
        masked = bitmap.get(word_pos, 0) & ((1 << (bit_pos + 1)) - 1)  # bits at or right of it
        if masked:
            msb = masked.bit_length() - 1
            return (compressed - (bit_pos - msb)) * tick_spacing, True
        return (compressed - bit_pos) * tick_spacing, False
    nxt = compressed + 1  # the current tick's own state does not matter when moving up
    word_pos, bit_pos = nxt >> 8, nxt & 0xFF
    masked = bitmap.get(word_pos, 0) & ~((1 << bit_pos) - 1)  # bits at or left of it
    if masked:
        lsb = (masked & -masked).bit_length() - 1
        return (nxt + (lsb - bit_pos)) * tick_spacing, True
    return (nxt + (255 - bit_pos)) * tick_spacing, False


def _signed_amounts(
    sqrt_price: int, tick: int, tick_lower: int, tick_upper: int, liquidity_delta: int
) -> tuple[int, int]:
    """_modifyPosition's (amount0, amount1) for a signed liquidity delta.

    SqrtPriceMath.getAmount{0,1}Delta(int128): rounds up what is paid in (mint), down what is
    paid out (burn). The pool picks the case by the current tick, not the price.
    """
    if liquidity_delta == 0:
        return 0, 0
    sqrt_a = get_sqrt_ratio_at_tick(tick_lower)
    sqrt_b = get_sqrt_ratio_at_tick(tick_upper)
    up = liquidity_delta > 0
    liq = abs(liquidity_delta)
    if tick < tick_lower:
        amount0, amount1 = get_amount0_delta(sqrt_a, sqrt_b, liq, up), 0
    elif tick < tick_upper:
        amount0 = get_amount0_delta(sqrt_price, sqrt_b, liq, up)
        amount1 = get_amount1_delta(sqrt_a, sqrt_price, liq, up)
    else:
        amount0, amount1 = 0, get_amount1_delta(sqrt_a, sqrt_b, liq, up)
    return (amount0, amount1) if up else (-amount0, -amount1)
