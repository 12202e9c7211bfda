"""Unit tests of the pool replica: the library ports against v3-core's own test vectors, the
pool mechanics (Tick.update/cross, bitmap word steps, protocol and flash fees), the position
manager's fee checkpoints, and replaying random swaps from their logs alone."""

from __future__ import annotations

import copy
import pickle
from math import isqrt

import pytest
from eth_abi import encode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.uniswap_v3 import events as ev
from protocols.uniswap_v3.events import (
    COLLECT_PROTOCOL,
    FLASH,
    POOL_COLLECT,
    SET_FEE_PROTOCOL,
    CollectProtocol,
    Flash,
    PoolCollect,
    PoolEvent,
    SetFeeProtocol,
    decode_pool_extra,
)
from protocols.uniswap_v3.fee_tracker import NpmFeeTracker, NpmPosition, position_fees
from protocols.uniswap_v3.math import (
    MAX_TICK,
    MIN_TICK,
    Q128,
    MathError,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    mul_div,
)
from protocols.uniswap_v3.replica import PoolReplica
from protocols.uniswap_v3.swap_math import (
    UINT128,
    ReplicaError,
    compute_swap_step,
    get_next_sqrt_price_from_input,
    get_next_sqrt_price_from_output,
    next_initialized_tick_within_one_word,
)
from schemas.chain import RawLog

E18 = 10**18
UINT256 = 1 << 256
NPM = "0x" + "ab" * 20


def encode_price_sqrt(reserve1: int, reserve0: int) -> int:
    """v3-core test/shared/utilities.ts encodePriceSqrt (exact here; equal for these inputs)."""
    return isqrt((reserve1 << 192) // reserve0)


def r(tick: int) -> int:
    return get_sqrt_ratio_at_tick(tick)


def pool_at(tick: int, fee: int = 3000, spacing: int = 60) -> PoolReplica:
    pool = PoolReplica(fee=fee, tick_spacing=spacing)
    pool.initialize(r(tick), tick)
    return pool


# ---------------------------------------------------------------------------------------------
# SwapMath.computeSwapStep: every vector of v3-core test/SwapMath.spec.ts


@pytest.mark.parametrize(
    ("price", "target", "liquidity", "amount", "fee", "expected"),
    [
        # exact amount in that gets capped at price target in one for zero
        (
            encode_price_sqrt(1, 1),
            encode_price_sqrt(101, 100),
            2 * E18,
            E18,
            600,
            (encode_price_sqrt(101, 100), 9975124224178055, 9925619580021728, 5988667735148),
        ),
        # exact amount out that gets capped at price target in one for zero
        (
            encode_price_sqrt(1, 1),
            encode_price_sqrt(101, 100),
            2 * E18,
            -E18,
            600,
            (encode_price_sqrt(101, 100), 9975124224178055, 9925619580021728, 5988667735148),
        ),
        # exact amount in that is fully spent in one for zero (sqrtQ checked below)
        (
            encode_price_sqrt(1, 1),
            encode_price_sqrt(1000, 100),
            2 * E18,
            E18,
            600,
            (None, 999400000000000000, 666399946655997866, 600000000000000),
        ),
        # exact amount out that is fully received in one for zero
        (
            encode_price_sqrt(1, 1),
            encode_price_sqrt(10000, 100),
            2 * E18,
            -E18,
            600,
            (None, 2000000000000000000, E18, 1200720432259356),
        ),
        # amount out is capped at the desired amount out
        (
            417332158212080721273783715441582,
            1452870262520218020823638996,
            159344665391607089467575320103,
            -1,
            1,
            (417332158212080721273783715441581, 1, 1, 1),
        ),
        # target price of 1 uses partial input amount
        (
            2,
            1,
            1,
            3915081100057732413702495386755767,
            1,
            (1, 39614081257132168796771975168, 0, 39614120871253040049813),
        ),
        # entire input amount taken as fee
        (2413, 79887613182836312, 1985041575832132834610021537970, 10, 1872, (2413, 0, 0, 10)),
        # handles intermediate insufficient liquidity in zero for one exact output case
        (
            20282409603651670423947251286016,
            20282409603651670423947251286016 * 11 // 10,
            1024,
            -4,
            3000,
            (20282409603651670423947251286016 * 11 // 10, 26215, 0, 79),
        ),
        # handles intermediate insufficient liquidity in one for zero exact output case
        (
            20282409603651670423947251286016,
            20282409603651670423947251286016 * 9 // 10,
            1024,
            -263000,
            3000,
            (20282409603651670423947251286016 * 9 // 10, 1, 26214, 1),
        ),
    ],
)
def test_compute_swap_step_matches_v3_core_vectors(
    price: int,
    target: int,
    liquidity: int,
    amount: int,
    fee: int,
    expected: tuple[int | None, int, int, int],
) -> None:
    sqrt_q, amount_in, amount_out, fee_amount = compute_swap_step(
        price, target, liquidity, amount, fee
    )
    assert (amount_in, amount_out, fee_amount) == expected[1:]
    if expected[0] is not None:
        assert sqrt_q == expected[0]
    else:  # the spec checks the price against getNextSqrtPriceFrom{Input,Output}
        if amount > 0:
            assert amount_in + fee_amount == amount
            assert sqrt_q == get_next_sqrt_price_from_input(
                price, liquidity, amount - fee_amount, False
            )
        else:
            assert sqrt_q == get_next_sqrt_price_from_output(price, liquidity, -amount, False)
        assert sqrt_q < target


# SqrtPriceMath.getNextSqrtPriceFrom{Input,Output}: v3-core test/SqrtPriceMath.spec.ts


def test_next_sqrt_price_from_input_vectors() -> None:
    one = encode_price_sqrt(1, 1)
    assert get_next_sqrt_price_from_input(one, E18, E18 // 10, False) == (
        87150978765690771352898345369
    )
    assert get_next_sqrt_price_from_input(one, E18, E18 // 10, True) == (
        72025602285694852357767227579
    )
    assert get_next_sqrt_price_from_input(one, 10 * E18, 2**100, True) == 624999999995069620
    # any input amount cannot underflow the price; the overflow branch can return 1
    assert get_next_sqrt_price_from_input(1, 1, 2**255, True) == 1
    assert get_next_sqrt_price_from_input(one, 1, (UINT256 - 1) // 2, True) == 1
    assert get_next_sqrt_price_from_input(one, E18 // 10, 0, True) == one
    assert get_next_sqrt_price_from_input(one, E18 // 10, 0, False) == one
    # sqrtP * sqrtQ overflows
    assert (
        get_next_sqrt_price_from_input(
            1025574284609383690408304870162715216695788925244,
            50015962439936049619261659728067971248,
            406,
            True,
        )
        == 1025574284609383582644711336373707553698163132913
    )


def test_next_sqrt_price_from_output_vectors() -> None:
    one = encode_price_sqrt(1, 1)
    assert get_next_sqrt_price_from_output(one, E18, E18 // 10, False) == (
        88031291682515930659493278152
    )
    assert get_next_sqrt_price_from_output(one, E18, E18 // 10, True) == (
        71305346262837903834189555302
    )
    assert get_next_sqrt_price_from_output(one, E18 // 10, 0, True) == one


@pytest.mark.parametrize(
    ("price", "liquidity", "amount", "zero_for_one", "output"),
    [
        (0, 0, E18 // 10, False, False),  # price zero
        (1, 0, E18 // 10, True, False),  # liquidity zero
        (2**160 - 1, 1024, 1024, False, False),  # input overflows the price
        (20282409603651670423947251286016, 1024, 4, False, True),  # = virtual reserves of token0
        (20282409603651670423947251286016, 1024, 5, False, True),  # > virtual reserves of token0
        # = virtual reserves of token1: the shipped v3-core 1.0.1 SqrtPriceMath requires
        # `sqrtPX96 > quotient` and reverts (an older spec revision expected 0)
        (20282409603651670423947251286016, 1024, 262144, True, True),
        (20282409603651670423947251286016, 1024, 262145, True, True),
        (encode_price_sqrt(1, 1), 1, UINT256 - 1, True, True),
        (encode_price_sqrt(1, 1), 1, UINT256 - 1, False, True),
    ],
)
def test_next_sqrt_price_reverts(
    price: int, liquidity: int, amount: int, zero_for_one: bool, output: bool
) -> None:
    fn = get_next_sqrt_price_from_output if output else get_next_sqrt_price_from_input
    with pytest.raises(MathError):  # where the contract reverts
        fn(price, liquidity, amount, zero_for_one)


# ---------------------------------------------------------------------------------------------
# TickBitmap.nextInitializedTickWithinOneWord: v3-core test/TickBitmap.spec.ts (spacing 1)


def bitmap_of(ticks: list[int], spacing: int = 1) -> dict[int, int]:
    bitmap: dict[int, int] = {}
    for tick in ticks:
        compressed = tick // spacing
        bitmap[compressed >> 8] = bitmap.get(compressed >> 8, 0) ^ (1 << (compressed & 0xFF))
    return bitmap


SPEC_TICKS = [70, 78, 84, 139, 240, 535]


@pytest.mark.parametrize(
    ("extra", "tick", "lte", "expected"),
    [
        ([], 78, False, (84, True)),  # returns tick to right if at initialized tick
        ([], 77, False, (78, True)),  # returns the tick directly to the right
        ([], 255, False, (511, False)),  # the next word's boundary if on the right boundary
        ([340], 328, False, (340, True)),  # the next initialized tick from the next word
        ([], 508, False, (511, False)),  # does not exceed boundary
        ([], 383, False, (511, False)),  # skips half word
        ([], 78, True, (78, True)),  # returns same tick if initialized
        ([], 79, True, (78, True)),  # tick directly to the left if not initialized
        ([], 258, True, (256, False)),  # will not exceed the word boundary
        ([], 256, True, (256, False)),  # at the word boundary
        ([], 72, True, (70, True)),  # word boundary less 1
        ([], -1, True, (-256, False)),  # word boundary
        ([], 1023, True, (768, False)),  # entire empty word
        ([], 900, True, (768, False)),  # halfway through empty word
        ([329], 456, True, (329, True)),  # boundary is initialized
    ],
)
def test_next_initialized_tick_matches_v3_core_vectors(
    extra: list[int], tick: int, lte: bool, expected: tuple[int, bool]
) -> None:
    bitmap = bitmap_of(SPEC_TICKS + extra)
    assert next_initialized_tick_within_one_word(bitmap, tick, 1, lte) == expected


def brute_next_tick(ticks: set[int], tick: int, spacing: int, lte: bool) -> tuple[int, bool]:
    """The specification in words: the nearest initialised tick within the current word."""
    compressed = tick // spacing
    if lte:
        word_start = (compressed >> 8) << 8
        for c in range(compressed, word_start - 1, -1):
            if c * spacing in ticks:
                return c * spacing, True
        return word_start * spacing, False
    word_end = (((compressed + 1) >> 8) << 8) + 255
    for c in range(compressed + 1, word_end + 1):
        if c * spacing in ticks:
            return c * spacing, True
    return word_end * spacing, False


@settings(max_examples=300, deadline=None)
@given(
    spacing=st.sampled_from([1, 10, 60, 200]),
    compressed=st.sets(st.integers(-700, 700), max_size=12),
    tick=st.integers(-180_000, 180_000),
    lte=st.booleans(),
)
def test_next_initialized_tick_matches_brute_force(
    spacing: int, compressed: set[int], tick: int, lte: bool
) -> None:
    ticks = {c * spacing for c in compressed}
    tick = max(-700 * spacing, min(700 * spacing, tick))  # near the initialised ticks
    bitmap = bitmap_of(sorted(ticks), spacing)
    assert next_initialized_tick_within_one_word(bitmap, tick, spacing, lte) == brute_next_tick(
        ticks, tick, spacing, lte
    )


# ---------------------------------------------------------------------------------------------
# Mint and burn: Tick.update, Tick.clear, flipTick, in-range liquidity, positions


def test_mint_initialises_outside_only_at_or_below_the_current_tick() -> None:
    pool = pool_at(0, spacing=60)
    pool.mint(-600, 600, 10**20)
    pool.swap(True, 10**18)  # some fee growth in token0
    pool.swap(False, 10**18)  # and token1
    g0, g1 = pool.fee_growth_global0_x128, pool.fee_growth_global1_x128
    assert g0 and g1
    tick = pool.tick
    below, at, above = (tick // 60 - 2) * 60, (tick // 60) * 60, (tick // 60 + 3) * 60
    liquidity = pool.liquidity
    pool.mint(below, above, 5 * E18, owner="0x01")
    pool.mint(at, above + 60, 7 * E18, owner="0x01")
    assert pool.tick_info(below) == (5 * E18, 5 * E18, g0, g1)
    assert pool.tick_info(at) == (7 * E18, 7 * E18, g0, g1)  # tick <= current: "below" convention
    assert pool.tick_info(above) == (5 * E18, -5 * E18, 0, 0)  # above: all growth was below
    assert pool.tick_info(above + 60) == (7 * E18, -7 * E18, 0, 0)
    assert pool.liquidity == liquidity + 12 * E18  # both ranges contain the current tick
    pool.mint(above, above + 120, E18)  # out of range: no in-range change
    assert pool.liquidity == liquidity + 12 * E18
    assert pool.tick_info(above).liquidity_gross == 6 * E18
    assert pool.tick_info(above).liquidity_net == -4 * E18
    # the bitmap holds exactly the initialised ticks
    assert pool.bitmap == bitmap_of(sorted(pool.ticks), 60)
    for t in range(-1200, 1200, 60):
        assert (pool.next_initialized_tick(t, True) == (t, True)) == (t in pool.ticks)


def test_burn_clears_ticks_and_returns_the_checkpoint_from_before_the_clear() -> None:
    pool = pool_at(0, spacing=10)
    pool.mint(-1000, 1000, 10**20)
    pool.swap(True, 10**17)
    pool.swap(False, 2 * 10**17)
    pool.mint(-20, 30, E18, owner=NPM)
    pool.swap(True, 10**16)
    pool.swap(False, 10**16)
    before = pool.fee_growth_inside(-20, 30)
    assert pool.bitmap == bitmap_of([-1000, -20, 30, 1000], 10)
    checkpoint = pool.burn(-20, 30, E18, owner=NPM)
    assert checkpoint == before
    assert -20 not in pool.ticks and 30 not in pool.ticks  # Tick.clear
    assert pool.bitmap == bitmap_of([-1000, 1000], 10)  # flipped back
    # the pool position keeps that checkpoint (and owes the withdrawn amounts plus fees)
    position = pool.position(NPM, -20, 30)
    assert position.liquidity == 0
    assert (position.fee_growth_inside0_last_x128, position.fee_growth_inside1_last_x128) == (
        before
    )
    assert position.tokens_owed0 > 0 and position.tokens_owed1 > 0
    # with the ticks cleared the live value reads them as 0, which is why burn returns it
    assert pool.fee_growth_inside(-20, 30) != before


def test_mint_checks_logged_amounts_and_rejects_bad_input_atomically() -> None:
    pool = pool_at(100, spacing=10)
    amounts = pool.modify_amounts(-100, 300, 10**18)
    assert all(amounts)
    snapshot = pool.copy()
    with pytest.raises(ReplicaError, match="amounts"):
        pool.apply(ev.PoolMint(NPM, -100, 300, 10**18, amounts[0] + 1, amounts[1]))
    with pytest.raises(ReplicaError, match="CT"):
        pool.mint(300, -100, 10**18)
    with pytest.raises(ReplicaError):
        pool.burn(-100, 300, 1)  # nothing to burn: liquidityGross would underflow
    with pytest.raises(ReplicaError, match="NP"):
        pool.burn(-100, 300, 0, owner=NPM)  # a poke of an empty position
    assert pool == snapshot
    pool.apply(ev.PoolMint(NPM, -100, 300, 10**18, *amounts))
    burn_amounts = pool.modify_amounts(-100, 300, -(10**18))
    assert burn_amounts[0] in (amounts[0], amounts[0] - 1)  # rounded down, mint rounded up
    pool.apply(ev.PoolBurn(NPM, -100, 300, 10**18, *burn_amounts))
    assert pool.ticks == {} and pool.bitmap == {} and pool.liquidity == 0
    assert pool.position(NPM, -100, 300).tokens_owed0 == burn_amounts[0]
    pool.apply(PoolCollect(NPM, NPM, -100, 300, *burn_amounts))
    assert pool.positions == {}


# ---------------------------------------------------------------------------------------------
# Swaps: tick crossing, word boundaries, protocol fee


def test_crossing_flips_fee_growth_outside_and_liquidity() -> None:
    pool = pool_at(0, fee=500, spacing=10)
    pool.mint(-1000, 1000, 10**20)
    pool.mint(-50, 50, 3 * 10**19)
    pool.swap(True, 10**15)  # fee growth in token0 while inside [-50, 50]
    # -50 was initialised at or below the current tick, when the global growth was still 0
    assert pool.tick_info(-50).fee_growth_outside0_x128 == 0
    g1 = pool.fee_growth_global1_x128
    liquidity = pool.liquidity
    event = pool.swap(True, 10**30, r(-60))  # down through -50
    assert (event.sqrt_price_x96, event.tick) == (r(-60), -60)
    g0 = pool.fee_growth_global0_x128
    crossed = pool.tick_info(-50)
    # Tick.cross: outside = global - outside, with the running global of the input token
    # (growth up to the crossing, not after it) and the stored global of the other token
    assert crossed.fee_growth_outside1_x128 == g1
    assert 0 < crossed.fee_growth_outside0_x128 < g0
    assert pool.liquidity == liquidity - 3 * 10**19  # leftward: liquidityNet subtracted
    # crossing back flips it again
    pool.swap(False, 10**30, r(0))
    again = pool.tick_info(-50)
    assert (
        again.fee_growth_outside0_x128
        == (pool.fee_growth_global0_x128 - crossed.fee_growth_outside0_x128) % UINT256
    )
    assert pool.liquidity == liquidity


def test_zero_for_one_ending_on_an_initialised_tick_leaves_tick_minus_one() -> None:
    pool = pool_at(0, spacing=10)
    pool.mint(-1000, 1000, 10**20)
    event = pool.swap(True, 10**30, r(-100))
    assert event.sqrt_price_x96 == r(-100) and event.tick == -100  # no tick there: from price
    pool.mint(-300, -200, E18)
    liquidity = pool.liquidity
    replay = pool.copy()
    event = pool.swap(True, 10**30, r(-200))
    # the limit is the tick's price: the step reaches it, crosses, and leaves tick = -201
    assert (event.sqrt_price_x96, event.tick) == (r(-200), -201)
    assert event.liquidity == liquidity + E18  # [-300, -200] is now in range
    replay.apply_swap(*event)
    assert replay == pool


def test_bitmap_word_edge_splits_the_step() -> None:
    """Spacing 1: ticks 100 -> 300 crosses the word edge at 255, where the pool ends a step
    even with no tick initialised there; the split changes the rounding of the fee growth."""
    liquidity, fee = 123456789012345678901, 3000
    pool = PoolReplica(fee=fee, tick_spacing=1)
    pool.initialize(r(100), 100)
    pool.mint(-2000, 2000, liquidity)
    assert pool.next_initialized_tick(100, False) == (255, False)
    amount = 10**30
    pool.swap(False, amount, r(300))
    step1 = compute_swap_step(r(100), r(255), liquidity, amount, fee)
    step2 = compute_swap_step(r(255), r(300), liquidity, amount - step1[1] - step1[3], fee)
    two_steps = mul_div(step1[3], Q128, liquidity) + mul_div(step2[3], Q128, liquidity)
    one_step = mul_div(
        compute_swap_step(r(100), r(300), liquidity, amount, fee)[3], Q128, liquidity
    )
    assert pool.fee_growth_global1_x128 == two_steps != one_step
    # and the replay of the log reproduces it
    replay = PoolReplica(fee=fee, tick_spacing=1)
    replay.initialize(r(100), 100)
    replay.mint(-2000, 2000, liquidity)
    original = PoolReplica(fee=fee, tick_spacing=1)
    original.initialize(r(100), 100)
    original.mint(-2000, 2000, liquidity)
    replay.apply_swap(*original.swap(False, amount, r(300)))
    assert replay == original


def test_protocol_fee_takes_its_share_of_each_step() -> None:
    for zero_for_one in (True, False):
        pool = pool_at(0, fee=3000, spacing=60)
        pool.mint(-6000, 6000, 10**21)
        pool.set_fee_protocol(4, 6)
        assert pool.fee_protocol == 4 + (6 << 4)
        amount = 10**18
        start = pool.sqrt_price_x96
        target = r(-6000) if zero_for_one else r(6000)
        _, _, _, fee = compute_swap_step(start, target, pool.liquidity, amount, 3000)
        liquidity = pool.liquidity
        pool.swap(zero_for_one, amount)  # one step: ends inside the range
        share = fee // (4 if zero_for_one else 6)
        growth = mul_div(fee - share, Q128, liquidity)
        if zero_for_one:
            assert (pool.protocol_fees0, pool.fee_growth_global0_x128) == (share, growth)
            assert pool.protocol_fees1 == 0
        else:
            assert (pool.protocol_fees1, pool.fee_growth_global1_x128) == (share, growth)
        pool.apply(CollectProtocol(NPM, NPM, pool.protocol_fees0, pool.protocol_fees1))
        assert pool.protocol_fees0 == pool.protocol_fees1 == 0


def test_set_fee_protocol_event_checks_old_values() -> None:
    pool = pool_at(0)
    pool.apply(SetFeeProtocol(0, 0, 5, 10))
    assert pool.fee_protocol == 5 + (10 << 4)
    with pytest.raises(ReplicaError, match="old values"):
        pool.apply(SetFeeProtocol(0, 0, 4, 4))
    with pytest.raises(ReplicaError):
        pool.set_fee_protocol(3, 0)  # only 0 or 4..10
    pool.apply(SetFeeProtocol(5, 10, 0, 0))
    assert pool.fee_protocol == 0


def test_flash_fees_grow_fee_growth_less_the_protocol_share() -> None:
    pool = pool_at(0)
    with pytest.raises(ReplicaError):
        pool.flash(1, 1)  # the pool requires in-range liquidity
    pool.mint(-600, 600, 10**20)
    liquidity = pool.liquidity
    pool.apply(Flash(NPM, NPM, 10**18, 0, 3 * 10**15 + 7, 0))
    assert pool.fee_growth_global0_x128 == mul_div(3 * 10**15 + 7, Q128, liquidity)
    assert pool.fee_growth_global1_x128 == 0
    pool.set_fee_protocol(4, 5)
    g0 = pool.fee_growth_global0_x128
    pool.flash(1001, 999)
    assert pool.protocol_fees0 == 1001 // 4 and pool.protocol_fees1 == 999 // 5
    assert pool.fee_growth_global0_x128 == g0 + mul_div(1001 - 250, Q128, liquidity)
    assert pool.fee_growth_global1_x128 == mul_div(999 - 199, Q128, liquidity)


def test_global_fee_growth_wraps_like_uint256() -> None:
    pool = pool_at(0)
    pool.mint(-600, 600, 1)
    pool.fee_growth_global0_x128 = UINT256 - 5
    pool.flash(1, 0)
    assert pool.fee_growth_global0_x128 == Q128 - 5


def test_apply_swap_without_a_match_raises_and_changes_nothing() -> None:
    pool = pool_at(0)
    pool.mint(-600, 600, 10**20)
    event = pool.copy().swap(True, 10**18)
    snapshot = pool.copy()
    # (one more wei in is *not* a mismatch: exact input of S + 1 can end at the same price,
    # the extra wei being fee, so such a log is replayed as that swap)
    with pytest.raises(ReplicaError, match="no swap reproduces"):
        pool.apply_swap(event.amount0, 2 * event.amount1, *event[2:])
    with pytest.raises(ReplicaError, match="no swap reproduces"):
        pool.apply_swap(event.amount0, event.amount1, event.sqrt_price_x96 - 10**12, *event[3:])
    with pytest.raises(ReplicaError, match="no swap reproduces"):
        pool.apply_swap(*event[:3], event.liquidity + 1, event.tick)
    with pytest.raises(ReplicaError, match="no swap reproduces"):
        pool.apply_swap(event.amount0, event.amount1, event.sqrt_price_x96, event.liquidity, 5)
    with pytest.raises(ReplicaError):
        pool.apply_swap(5, 5, *event[2:])  # both amounts in: not a swap
    assert pool == snapshot
    assert pool.apply_swap(*event).kind == "exact_input"
    snapshot.swap(True, 10**18)
    assert pool == snapshot


def test_limit_hit_after_the_liquidity_ran_out_replays() -> None:
    """Exact input that used up its range, then moved for free through empty ticks up to its
    limit: the replay must not stop where the logged input runs out."""
    original = pool_at(0, spacing=60)
    original.mint(-600, 600, 10**18)
    replay = original.copy()
    event = original.swap(False, 10**25, r(1200))
    assert event.sqrt_price_x96 == r(1200) and event.liquidity == 0 and event.amount0 < 0
    assert replay.apply_swap(*event).kind == "price_limit"
    assert replay == original


def test_swap_through_empty_ranges_only_replays() -> None:
    original = pool_at(0, spacing=60)
    original.mint(1200, 1800, 10**18)  # above: nothing in range at first
    replay = original.copy()
    event = original.swap(False, 10**18, r(900))
    assert event[:2] == (0, 0) and event.tick == 900
    replay.apply_swap(*event)
    assert replay == original


@pytest.mark.parametrize("exact_input", [True, False])
@pytest.mark.parametrize("with_limit", [True, False])
def test_replay_picks_a_candidate_with_the_original_fees(
    exact_input: bool, with_limit: bool
) -> None:
    original = pool_at(0, fee=500, spacing=10)
    original.mint(-3000, 3000, 10**20)
    original.mint(-200, 100, 3 * 10**19)
    original.set_fee_protocol(0, 7)
    replay = original.copy()
    amount = 10**18 if exact_input else -(10**18)
    event = original.swap(False, amount, r(150) if with_limit else None)
    candidate = replay.apply_swap(*event)
    assert replay == original
    hit_limit = with_limit and event.sqrt_price_x96 == r(150)
    expected = "price_limit" if hit_limit else ("exact_input" if exact_input else "exact_output")
    # exact output that ran out may also be reproduced as exact input: only the fees matter
    assert candidate.kind == expected or (not exact_input and candidate.kind == "exact_input")


# ---------------------------------------------------------------------------------------------
# Position fees and the position manager's checkpoints


def test_position_fees_vectors_and_uint128_semantics() -> None:
    # v3-sdk position.test.ts: L = 1, delta = 2^128 -> 1 owed
    assert position_fees(1, 0, 0, 0, 0, Q128, 0) == (1, 0)
    # feeGrowthInside "below" last: the difference is taken modulo 2^256
    assert position_fees(Q128 - 1, 0, 0, UINT256 - Q128, 0, 0, 0) == (Q128 - 1, 0)
    # uint128(mulDiv(...)) truncates, tokensOwed += wraps at 2^128
    assert position_fees(Q128 - 1, 0, 5, 0, 0, 3 * Q128, 0) == ((3 * (Q128 - 1)) % UINT128, 5)
    assert position_fees(1, UINT128 - 1, 0, 0, 0, 2 * Q128, 0) == (1, 0)
    # no liquidity: no poke, tokens owed only
    assert position_fees(0, 7, 8, 0, 0, 10 * Q128, 10 * Q128) == (7, 8)
    # the pool pays at most what its (aggregate) position owes
    assert position_fees(1, 10, 10, 0, 0, Q128, 0, pool_owed=(10, 100)) == (10, 10)


def test_npm_tracker_follows_the_position_manager() -> None:
    """One NFT alone in its range: NPM's accounting equals the pool position's at every step."""
    pool = pool_at(0, fee=3000, spacing=60)
    pool.mint(-6000, 6000, 10**21)  # background liquidity from someone else
    tracker = NpmFeeTracker(NPM.upper().replace("0X", "0x"))
    lower, upper = -600, 600

    def check() -> None:
        pos = tracker.positions[1]
        pool_pos = pool.position(NPM, lower, upper)
        assert (pos.liquidity, pos.tokens_owed0, pos.tokens_owed1) == (
            pool_pos.liquidity,
            pool_pos.tokens_owed0,
            pool_pos.tokens_owed1,
        )
        assert pos.fee_growth_inside0_last_x128 == pool_pos.fee_growth_inside0_last_x128
        # a static collect: what a poke would add to the pool position
        probe = pool.copy()
        if pos.liquidity:
            probe.burn(lower, upper, 0, owner=NPM)
        expected = probe.position(NPM, lower, upper)
        assert tracker.uncollected(pool, 1) == (expected.tokens_owed0, expected.tokens_owed1)

    pool.mint(lower, upper, 5 * E18, owner=NPM)  # pool Mint, then NPM IncreaseLiquidity
    tracker.on_mint(pool, 1, lower, upper, 5 * E18)
    check()
    for zero_for_one in (True, False, True):
        pool.swap(zero_for_one, 3 * E18)
    check()
    pool.mint(lower, upper, 2 * E18, owner=NPM)
    tracker.on_increase(pool, 1, 2 * E18)
    check()
    pool.swap(False, 10**30, r(900))  # out of range above
    pool.swap(True, 10**30, r(-100))  # and back in
    burn = pool.modify_amounts(lower, upper, -3 * E18)
    pool.burn(lower, upper, 3 * E18, owner=NPM)
    tracker.on_decrease(pool, 1, 3 * E18, *burn)
    check()
    pool.swap(True, E18)
    # NPM.collect: pool Burn(0) poke, pool Collect, NPM Collect (amounts = the requested ones)
    pool.burn(lower, upper, 0, owner=NPM)
    owed = tracker.uncollected(pool, 1)
    pool.collect(NPM, lower, upper, *owed)
    tracker.on_collect(pool, 1, *owed)
    check()
    assert tracker.uncollected(pool, 1) == (0, 0)
    pool.swap(False, E18)  # token1 in: token1 fees only
    assert tracker.uncollected(pool, 1)[0] == 0 < tracker.uncollected(pool, 1)[1]
    rest = pool.modify_amounts(lower, upper, -4 * E18)
    pool.burn(lower, upper, 4 * E18, owner=NPM)
    tracker.on_decrease(pool, 1, 4 * E18, *rest)
    check()
    owed = tracker.uncollected(pool, 1)
    pool.collect(NPM, lower, upper, *owed)  # no poke: no liquidity left
    tracker.on_collect(pool, 1, *owed)
    tracker.on_burn(1)
    assert tracker.positions == {} and pool.position(NPM, lower, upper).liquidity == 0
    with pytest.raises(ReplicaError):
        tracker.uncollected(pool, 1)


def test_npm_position_accrues_each_nft_on_its_own_checkpoint() -> None:
    """Two NFTs in one range share the pool position; each accrues from its own checkpoint,
    and a collect is capped by what the pool position holds."""
    pool = pool_at(0, fee=500, spacing=10)
    pool.mint(-100, 100, 10**18, owner=NPM)
    a = NpmPosition.minted(pool, NPM, -100, 100, 10**18)
    pool.swap(True, 10**15)
    pool.mint(-100, 100, 3 * 10**18, owner=NPM)
    b = NpmPosition.minted(pool, NPM, -100, 100, 3 * 10**18)
    pool.swap(False, 10**15)
    fees_a, fees_b = a.uncollected(pool, NPM), b.uncollected(pool, NPM)
    assert fees_a[0] > 0 and fees_b[0] == 0  # b joined after the token0 fees
    assert fees_b[1] > 2 * fees_a[1]
    probe = pool.copy()
    probe.burn(-100, 100, 0, owner=NPM)
    pool_owed = probe.position(NPM, -100, 100)
    assert fees_a[0] + fees_b[0] <= pool_owed.tokens_owed0
    assert fees_a[1] + fees_b[1] <= pool_owed.tokens_owed1


# ---------------------------------------------------------------------------------------------
# Decoding, copying


def raw_log(topics: list[str], data: bytes) -> RawLog:
    return RawLog(
        1, 1, "0x" + "00" * 32, 0, "0x" + "11" * 32, 0, "0xpool", tuple(topics), "0x" + data.hex()
    )


def address_topic(address: str) -> str:
    return "0x" + "0" * 24 + address[2:]


def test_decode_pool_extra() -> None:
    a, b = "0x" + "12" * 20, "0x" + "34" * 20
    flash = raw_log(
        [FLASH, address_topic(a), address_topic(b)],
        encode(["uint256"] * 4, [10, 20, 11, 22]),
    )
    assert decode_pool_extra(flash) == Flash(a, b, 10, 20, 11, 22)
    fee_protocol = raw_log([SET_FEE_PROTOCOL], encode(["uint8"] * 4, [0, 4, 5, 10]))
    assert decode_pool_extra(fee_protocol) == SetFeeProtocol(0, 4, 5, 10)
    tick_topic = "0x" + encode(["int24"], [-887220]).hex()
    collect = raw_log(
        [POOL_COLLECT, address_topic(a), tick_topic, "0x" + encode(["int24"], [60]).hex()],
        encode(["address", "uint128", "uint128"], [b, 5, 6]),
    )
    assert decode_pool_extra(collect) == PoolCollect(a, b, -887220, 60, 5, 6)
    protocol = raw_log(
        [COLLECT_PROTOCOL, address_topic(a), address_topic(b)],
        encode(["uint128", "uint128"], [7, 8]),
    )
    assert decode_pool_extra(protocol) == CollectProtocol(a, b, 7, 8)
    assert decode_pool_extra(raw_log([ev.SWAP], b"")) is None
    with pytest.raises(ev.DecodeError):
        decode_pool_extra(raw_log([FLASH, address_topic(a)], encode(["uint256"] * 4, [1] * 4)))
    with pytest.raises(ev.DecodeError):
        decode_pool_extra(raw_log([SET_FEE_PROTOCOL], encode(["uint256"] * 4, [256, 0, 0, 0])))
    # the shared decoder knows these topics and ignores them (so they are not dead letters)
    for topic in (FLASH, SET_FEE_PROTOCOL, POOL_COLLECT, COLLECT_PROTOCOL):
        assert topic in ev.IGNORED[ev.Role.POOL]


def test_replica_copies_and_pickles() -> None:
    pool = pool_at(0, spacing=10)
    pool.mint(-100, 100, 10**18, owner=NPM)
    pool.swap(True, 10**15)
    for clone in (copy.deepcopy(pool), copy.copy(pool), pickle.loads(pickle.dumps(pool))):
        assert clone == pool
        clone.swap(False, 10**16)
        clone.mint(-50, 50, 1)
        assert clone != pool and -50 not in pool.ticks
    tracker = NpmFeeTracker(NPM)
    tracker.on_mint(pool, 1, -100, 100, 10**18)
    clone_tracker = copy.deepcopy(tracker)
    clone_tracker.on_burn(1)
    assert 1 in tracker.positions
    assert pickle.loads(pickle.dumps(tracker)) == tracker


# ---------------------------------------------------------------------------------------------
# Property: any sequence of pool actions, executed on one replica, replays from its logs on
# another to the identical state (ticks, bitmap, fee growth, protocol fees, positions)

OWNERS = ("0x" + "01" * 20, "0x" + "02" * 20)


def log_uniform(low_exp: int, high_exp: int) -> st.SearchStrategy[int]:
    """Integers spread over orders of magnitude, so swaps both run out and reach limits."""
    return st.builds(
        lambda mantissa, exp: mantissa * 10**exp,
        st.integers(1, 999),
        st.integers(low_exp, high_exp),
    )


action = st.one_of(
    st.tuples(
        st.just("mint"),
        st.integers(-40, 40),  # lower, in spacings from the current tick
        st.integers(1, 40),  # width in spacings
        log_uniform(12, 22),
        st.sampled_from(OWNERS),
    ),
    st.tuples(st.just("burn"), st.integers(0, 10**6), st.floats(0, 1)),
    st.tuples(
        st.just("swap"),
        st.booleans(),  # zeroForOne
        st.booleans(),  # exact input
        log_uniform(0, 20),
        st.one_of(st.none(), st.integers(1, 3000)),  # limit distance in ticks
    ),
    st.tuples(st.just("flash"), log_uniform(0, 18), log_uniform(0, 18)),
    st.tuples(st.just("fee_protocol"), st.sampled_from([0, 4, 7, 10]), st.sampled_from([0, 5, 10])),
)


def execute(pool: PoolReplica, step: tuple[object, ...]) -> PoolEvent | None:
    """Run one action on `pool`; the log the pool would emit (None if it would revert)."""
    kind = step[0]
    try:
        if kind == "mint":
            _, lower_off, width, amount, owner = step
            assert isinstance(lower_off, int) and isinstance(width, int)
            assert isinstance(amount, int) and isinstance(owner, str)
            spacing = pool.tick_spacing
            usable = (MAX_TICK // spacing) * spacing  # the widest range a pool accepts
            lower = max(
                -usable, min(usable - spacing, (pool.tick // spacing + lower_off) * spacing)
            )
            upper = min(lower + width * spacing, usable)
            amounts = pool.modify_amounts(lower, upper, amount)
            pool.mint(lower, upper, amount, owner=owner)
            return ev.PoolMint(owner, lower, upper, amount, *amounts)
        if kind == "burn":
            _, index, share = step
            assert isinstance(index, int) and isinstance(share, float)
            live = sorted(k for k, p in pool.positions.items() if p.liquidity > 0)
            if not live:
                return None
            owner, lower, upper = live[index % len(live)]
            amount = int(pool.positions[(owner, lower, upper)].liquidity * share)
            amounts = pool.modify_amounts(lower, upper, -amount)
            pool.burn(lower, upper, amount, owner=owner)
            return ev.PoolBurn(owner, lower, upper, amount, *amounts)
        if kind == "swap":
            _, zero_for_one, exact_input, amount, distance = step
            assert isinstance(zero_for_one, bool) and isinstance(amount, int)
            limit = None
            if isinstance(distance, int):
                target = pool.tick - distance if zero_for_one else pool.tick + distance
                limit = r(max(MIN_TICK + 1, min(MAX_TICK - 1, target)))
            return pool.swap(zero_for_one, amount if exact_input else -amount, limit)
        if kind == "flash":
            _, paid0, paid1 = step
            assert isinstance(paid0, int) and isinstance(paid1, int)
            pool.flash(paid0, paid1)
            return Flash(OWNERS[0], OWNERS[0], 0, 0, paid0, paid1)
        _, fp0, fp1 = step
        assert isinstance(fp0, int) and isinstance(fp1, int)
        old = (pool.fee_protocol % 16, pool.fee_protocol >> 4)
        pool.set_fee_protocol(fp0, fp1)
        return SetFeeProtocol(*old, fp0, fp1)
    except ReplicaError:
        return None  # the pool would revert: no log


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    fee_spacing=st.sampled_from([(100, 1), (500, 10), (3000, 60), (10000, 200)]),
    start_tick=st.integers(-50_000, 50_000),
    offset=st.integers(0, 10**12),
    base_liquidity=log_uniform(14, 21),
    steps=st.lists(action, min_size=1, max_size=30),
)
def test_replay_from_logs_reproduces_the_pool(
    fee_spacing: tuple[int, int],
    start_tick: int,
    offset: int,
    base_liquidity: int,
    steps: list[tuple[object, ...]],
) -> None:
    fee, spacing = fee_spacing
    price = r(start_tick) + offset
    original = PoolReplica(fee=fee, tick_spacing=spacing)
    original.initialize(price, get_tick_at_sqrt_ratio(price))
    replay = PoolReplica(fee=fee, tick_spacing=spacing)
    replay.apply(ev.Initialize(price, original.tick))
    # a base position around the start, so most actions find liquidity
    base = execute(original, ("mint", -30, 60, base_liquidity, OWNERS[1]))
    assert base is not None
    replay.apply(base)
    for step in steps:
        before = original.copy()
        event = execute(original, step)
        if event is None:
            assert original == before  # a failed action changes nothing
            continue
        replay.apply(event)
        assert replay == original
        for owner, lower, upper in original.positions:
            assert replay.fee_growth_inside(lower, upper) == original.fee_growth_inside(
                lower, upper
            )
            assert replay.position(owner, lower, upper) == original.position(owner, lower, upper)


def test_math_errors_surface_as_replica_errors() -> None:
    pool = pool_at(0)
    with pytest.raises(ReplicaError):
        pool.swap(True, 10**18, r(10))  # a limit above the price when going down: 'SPL'
    with pytest.raises(ReplicaError):
        pool.swap(True, 0)  # 'AS'
    with pytest.raises(ReplicaError):
        pool.swap(True, 10**18, get_sqrt_ratio_at_tick(MIN_TICK))  # the limit must exceed MIN
