"""An exact replica of a Uniswap V3 pool's fee state, kept from the pool's own logs.

Why: uncollected fees need `feeGrowthInside`, i.e. the pool's global fee growth and the
`feeGrowthOutside` of both range ticks. None of that is in the logs. But every state change
that moves it is: `Mint`/`Burn` (Tick.update), `Flash` (fee growth from flash fees),
`SetFeeProtocol` (the protocol's share) and `Swap`. A Swap log does not say how the swap was
called (exact input or output, which price limit), but replaying the swap loop of
`UniswapV3Pool.swap` from the same state with a call that reproduces the log reproduces every
step, and therefore every fee (see `PoolReplica.apply_swap`). So fees come out to the wei,
without an `eth_call`.

Apply a pool's logs from its `Initialize` on, in log order (a replica started mid-history
needs a snapshot of the ticks, globals and the pool positions it will see burned or collected).

Everything here is a line-by-line port of the Solidity, on Python ints, with the contracts'
rounding and their wrapping arithmetic (the pool is Solidity 0.7.6: `+=` on a uint256 or
uint128 wraps, casts like `uint128(x)` truncate). References, v3-core 1.0.x and
v3-periphery 1.x:
- `UniswapV3Pool.sol`: `swap`, `_modifyPosition`, `_updatePosition`, `flash`, `setFeeProtocol`,
  `collect`, `collectProtocol`
- libraries `SwapMath.sol`, `SqrtPriceMath.sol`, `Tick.sol`, `TickBitmap.sol`,
  `LiquidityMath.sol`, `Position.sol`
- v3-periphery `NonfungiblePositionManager.sol` (`mint`, `increaseLiquidity`,
  `decreaseLiquidity`, `collect`)

Pure: no I/O. A `PoolReplica` pickles and copies cheaply: its per-tick and per-position records
are immutable NamedTuples, so `copy.deepcopy` (and `.copy()`) only copy the dicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from protocols.uniswap_v3 import events as ev
from protocols.uniswap_v3.events import (
    CollectProtocol,
    Flash,
    PoolCollect,
    PoolEvent,
    SetFeeProtocol,
)
from protocols.uniswap_v3.math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    Q128,
    UINT256,
    MathError,
    fee_growth_inside,
    get_amount0_delta,
    get_amount1_delta,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    mul_div,
)
from protocols.uniswap_v3.swap_math import (
    INT128_MAX,
    INT128_MIN,
    INT256_MAX,
    UINT128,
    ReplicaError,
    _Revert,
    _signed_amounts,
    add_delta,
    compute_swap_step,
    next_initialized_tick_within_one_word,
)

# ---------------------------------------------------------------------------------------------
# The pool


class TickInfo(NamedTuple):
    """The fee-relevant fields of `UniswapV3Pool.ticks(tick)` (Tick.Info)."""

    liquidity_gross: int
    liquidity_net: int
    fee_growth_outside0_x128: int
    fee_growth_outside1_x128: int


class PoolPosition(NamedTuple):
    """`UniswapV3Pool.positions(keccak(owner, tickLower, tickUpper))` (Position.Info)."""

    liquidity: int
    fee_growth_inside0_last_x128: int
    fee_growth_inside1_last_x128: int
    tokens_owed0: int
    tokens_owed1: int


_EMPTY_TICK = TickInfo(0, 0, 0, 0)
EMPTY_POSITION = PoolPosition(0, 0, 0, 0, 0)


class _SwapResult(NamedTuple):
    amount0: int
    amount1: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    fee_growth_global_x128: int  # of the input token
    protocol_fee: int  # of the input token, this swap's, uint128
    crossed: tuple[tuple[int, int, int], ...]  # (tick, feeGrowthGlobal0, feeGrowthGlobal1)


class SwapCandidate(NamedTuple):
    """One way the swap behind a `Swap` log may have been called."""

    kind: str  # exact_input | exact_output | price_limit
    zero_for_one: bool
    amount_specified: int
    sqrt_price_limit_x96: int


@dataclass(slots=True)
class PoolReplica:
    """The fee state of one UniswapV3Pool: slot0 (price, tick, feeProtocol), liquidity,
    feeGrowthGlobal{0,1}X128, protocolFees, ticks, tickBitmap and positions.

    Apply the pool's logs in order, with `apply(event)` or the per-event methods. Every method
    either applies completely or raises (ReplicaError) and leaves the replica unchanged.

    `positions` mirrors `pool.positions(key)` for every (owner, tickLower, tickUpper) that has
    liquidity or tokens owed; entries that fall to all-zero liquidity and tokens owed are dropped
    to bound memory (the pool keeps their stale `feeGrowthInside*LastX128`, which nothing can
    observe through fees: a zero-liquidity position accrues nothing and the next mint overwrites
    the checkpoint). Owners are lower-case 0x addresses as decoded.
    """

    fee: int
    tick_spacing: int
    sqrt_price_x96: int = 0
    tick: int = 0
    liquidity: int = 0
    fee_growth_global0_x128: int = 0
    fee_growth_global1_x128: int = 0
    fee_protocol: int = 0  # slot0.feeProtocol: token0's in the low 4 bits, token1's in the high
    protocol_fees0: int = 0
    protocol_fees1: int = 0
    ticks: dict[int, TickInfo] = field(default_factory=dict)
    bitmap: dict[int, int] = field(default_factory=dict)  # tickBitmap: wordPos -> word
    positions: dict[tuple[str, int, int], PoolPosition] = field(default_factory=dict)
    # which candidate replayed the last swap: tried first next time (swaps of one pool tend to
    # come from the same router settings); never part of the state
    _last_kind: str = field(default="exact_input", compare=False, repr=False)
    # Ticks and positions changed since the owner last drained them (`drain_changes`): what a
    # temporal store needs to rebuild fee growth at any block. Never part of the state.
    changed_ticks: set[int] = field(default_factory=set, compare=False, repr=False)
    changed_positions: set[tuple[str, int, int]] = field(
        default_factory=set, compare=False, repr=False
    )
    # None: every position is kept (a replica built from the pool's creation). A replica
    # seeded from eth_call at one block (wallet watch mode) knows only the positions it was
    # seeded with: it keeps those keys, and for other owners' mints, burns and collects moves
    # ticks and liquidity only (their positions' history is unknown, and nothing reads them).
    kept_keys: set[tuple[str, int, int]] | None = None

    # -- copying --------------------------------------------------------------------------

    def copy(self) -> PoolReplica:
        """An independent copy; the records are immutable, so copying the dicts suffices."""
        return PoolReplica(
            self.fee,
            self.tick_spacing,
            self.sqrt_price_x96,
            self.tick,
            self.liquidity,
            self.fee_growth_global0_x128,
            self.fee_growth_global1_x128,
            self.fee_protocol,
            self.protocol_fees0,
            self.protocol_fees1,
            dict(self.ticks),
            dict(self.bitmap),
            dict(self.positions),
            self._last_kind,
            set(self.changed_ticks),
            set(self.changed_positions),
            None if self.kept_keys is None else set(self.kept_keys),
        )

    def keeps(self, key: tuple[str, int, int]) -> bool:
        return self.kept_keys is None or key in self.kept_keys

    def seed_position(self, key: tuple[str, int, int], pos: PoolPosition) -> None:
        """Keep a position as `pool.positions(key)` read it (wallet watch mode)."""
        if self.kept_keys is not None:
            self.kept_keys.add(key)
        self._store_position(key, pos)

    def drain_changes(self) -> tuple[set[int], set[tuple[str, int, int]]]:
        ticks, positions = self.changed_ticks, self.changed_positions
        self.changed_ticks, self.changed_positions = set(), set()
        return ticks, positions

    def __copy__(self) -> PoolReplica:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> PoolReplica:
        return self.copy()

    # -- reads ----------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self.sqrt_price_x96 != 0

    def tick_info(self, tick: int) -> TickInfo:
        """`pool.ticks(tick)` (fee fields): all zero for an uninitialised tick, as the pool."""
        return self.ticks.get(tick, _EMPTY_TICK)

    def initialized_ticks(self) -> list[int]:
        return sorted(self.ticks)

    def position(self, owner: str, tick_lower: int, tick_upper: int) -> PoolPosition:
        """`pool.positions(keccak256(abi.encodePacked(owner, tickLower, tickUpper)))`."""
        return self.positions.get((owner.lower(), tick_lower, tick_upper), EMPTY_POSITION)

    def fee_growth_inside(self, tick_lower: int, tick_upper: int) -> tuple[int, int]:
        """Tick.getFeeGrowthInside at the current tick: (inside0, inside1), mod 2^256."""
        lower = self.ticks.get(tick_lower, _EMPTY_TICK)
        upper = self.ticks.get(tick_upper, _EMPTY_TICK)
        return (
            fee_growth_inside(
                self.tick,
                tick_lower,
                tick_upper,
                lower.fee_growth_outside0_x128,
                upper.fee_growth_outside0_x128,
                self.fee_growth_global0_x128,
            ),
            fee_growth_inside(
                self.tick,
                tick_lower,
                tick_upper,
                lower.fee_growth_outside1_x128,
                upper.fee_growth_outside1_x128,
                self.fee_growth_global1_x128,
            ),
        )

    def modify_amounts(
        self, tick_lower: int, tick_upper: int, liquidity_delta: int
    ) -> tuple[int, int]:
        """The (amount0, amount1) a Mint (delta > 0) or Burn (delta < 0) of the range logs now:
        _modifyPosition's getAmount{0,1}Delta, rounded up for a mint, down for a burn."""
        if not (tick_lower < tick_upper and tick_lower >= MIN_TICK and tick_upper <= MAX_TICK):
            raise ReplicaError(f"invalid range [{tick_lower}, {tick_upper}] ('CT')")
        amount0, amount1 = _signed_amounts(
            self.sqrt_price_x96, self.tick, tick_lower, tick_upper, liquidity_delta
        )
        return abs(amount0), abs(amount1)

    def next_initialized_tick(self, tick: int, lte: bool) -> tuple[int, bool]:
        """TickBitmap.nextInitializedTickWithinOneWord for this pool's bitmap and spacing."""
        return next_initialized_tick_within_one_word(self.bitmap, tick, self.tick_spacing, lte)

    def reserves_within(self, sqrt_lower: int, sqrt_upper: int) -> tuple[int, int]:
        """The token0 the pool holds between its price and `sqrt_upper`, and the token1
        between `sqrt_lower` and its price: what swaps moving the price to each bound would
        take out, fees aside (each segment rounded down, as a swap's output is).

        Walks the initialised ticks as the swap loop does, adding each crossed tick's
        liquidityNet, so concentrated and one-sided liquidity count where they sit. Bounds on
        the wrong side of the price contribute nothing.
        """
        if not self.initialized:
            return 0, 0
        bitmap, spacing, ticks = self.bitmap, self.tick_spacing, self.ticks
        amount0 = 0
        price, tick, liquidity = self.sqrt_price_x96, self.tick, self.liquidity
        while price < sqrt_upper:
            tick_next, initialized = next_initialized_tick_within_one_word(
                bitmap, tick, spacing, False
            )
            tick_next = min(tick_next, MAX_TICK)
            at_tick = get_sqrt_ratio_at_tick(tick_next)
            target = min(at_tick, sqrt_upper)
            if liquidity > 0 and target > price:
                amount0 += get_amount0_delta(price, target, liquidity, False)
            price = target
            if price != at_tick or tick_next == MAX_TICK:
                break
            if initialized:
                liquidity += ticks[tick_next].liquidity_net
            tick = tick_next
        amount1 = 0
        price, tick, liquidity = self.sqrt_price_x96, self.tick, self.liquidity
        while price > sqrt_lower:
            tick_next, initialized = next_initialized_tick_within_one_word(
                bitmap, tick, spacing, True
            )
            tick_next = max(tick_next, MIN_TICK)
            at_tick = get_sqrt_ratio_at_tick(tick_next)
            target = max(at_tick, sqrt_lower)
            if liquidity > 0 and target < price:
                amount1 += get_amount1_delta(target, price, liquidity, False)
            price = target
            if price != at_tick or tick_next == MIN_TICK:
                break
            if initialized:
                liquidity -= ticks[tick_next].liquidity_net
            tick = tick_next - 1
        return amount0, amount1

    # -- events ---------------------------------------------------------------------------

    def apply(self, event: PoolEvent) -> None:
        """Apply one decoded pool event (in log order). ReplicaError if it contradicts us.

        Mint and Burn are checked against their logged token amounts, which depend on the price
        and tick: a replica that drifted fails there instead of silently.
        """
        if isinstance(event, ev.Swap):
            self.apply_swap(
                event.amount0, event.amount1, event.sqrt_price_x96, event.liquidity, event.tick
            )
        elif isinstance(event, ev.PoolMint):
            self.mint(
                event.tick_lower,
                event.tick_upper,
                event.amount,
                owner=event.owner,
                expect_amounts=(event.amount0, event.amount1),
            )
        elif isinstance(event, ev.PoolBurn):
            self.burn(
                event.tick_lower,
                event.tick_upper,
                event.amount,
                owner=event.owner,
                expect_amounts=(event.amount0, event.amount1),
            )
        elif isinstance(event, Flash):
            self.flash(event.paid0, event.paid1)
        elif isinstance(event, SetFeeProtocol):
            old = (self.fee_protocol % 16, self.fee_protocol >> 4)
            if old != (event.fee_protocol0_old, event.fee_protocol1_old):
                raise ReplicaError(f"SetFeeProtocol: old values {event[:2]}, replica has {old}")
            self.set_fee_protocol(event.fee_protocol0_new, event.fee_protocol1_new)
        elif isinstance(event, PoolCollect):
            self.collect(
                event.owner, event.tick_lower, event.tick_upper, event.amount0, event.amount1
            )
        elif isinstance(event, CollectProtocol):
            self.collect_protocol(event.amount0, event.amount1)
        elif isinstance(event, ev.Initialize):
            self.initialize(event.sqrt_price_x96, event.tick)
        else:  # pragma: no cover - the union above is exhaustive
            raise ReplicaError(f"not a pool event: {event!r}")

    def initialize(self, sqrt_price_x96: int, tick: int) -> None:
        """UniswapV3Pool.initialize: slot0 = (price, tick), feeProtocol 0."""
        if self.sqrt_price_x96 != 0:
            raise ReplicaError("pool already initialized")
        if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
            raise ReplicaError(f"sqrtPriceX96 {sqrt_price_x96} out of range")
        if get_tick_at_sqrt_ratio(sqrt_price_x96) != tick:
            raise ReplicaError(f"Initialize tick {tick} does not match its price")
        self.sqrt_price_x96, self.tick, self.fee_protocol = sqrt_price_x96, tick, 0

    def set_fee_protocol(self, fee_protocol0: int, fee_protocol1: int) -> None:
        """UniswapV3Pool.setFeeProtocol: slot0.feeProtocol = fp0 + (fp1 << 4)."""
        for value in (fee_protocol0, fee_protocol1):
            if not (value == 0 or 4 <= value <= 10):
                raise ReplicaError(f"feeProtocol {value} is not 0 or 4..10")
        self.fee_protocol = fee_protocol0 + (fee_protocol1 << 4)

    def flash(self, paid0: int, paid1: int) -> None:
        """UniswapV3Pool.flash, after the callback: the paid amounts (fees plus any donation)
        grow the global fee growth, less the protocol's share (`paid / feeProtocol`)."""
        if self.liquidity <= 0:
            raise ReplicaError("flash with no in-range liquidity (the pool requires some)")
        growth0, growth1 = self.fee_growth_global0_x128, self.fee_growth_global1_x128
        protocol0, protocol1 = self.protocol_fees0, self.protocol_fees1
        try:
            if paid0 > 0:
                fp0 = self.fee_protocol % 16
                fees0 = 0 if fp0 == 0 else paid0 // fp0
                protocol0 = (protocol0 + fees0) % UINT128  # `uint128(fees0)`, then += wraps
                growth0 = (growth0 + mul_div(paid0 - fees0, Q128, self.liquidity)) % UINT256
            if paid1 > 0:
                fp1 = self.fee_protocol >> 4
                fees1 = 0 if fp1 == 0 else paid1 // fp1
                protocol1 = (protocol1 + fees1) % UINT128
                growth1 = (growth1 + mul_div(paid1 - fees1, Q128, self.liquidity)) % UINT256
        except MathError as exc:
            raise ReplicaError(f"flash: {exc}") from exc
        self.fee_growth_global0_x128, self.fee_growth_global1_x128 = growth0, growth1
        self.protocol_fees0, self.protocol_fees1 = protocol0, protocol1

    def collect_protocol(self, amount0: int, amount1: int) -> None:
        """UniswapV3Pool.collectProtocol, from its event's (already decremented) amounts."""
        if amount0 > self.protocol_fees0 or amount1 > self.protocol_fees1:
            raise ReplicaError("CollectProtocol exceeds the replica's protocol fees")
        self.protocol_fees0 -= amount0
        self.protocol_fees1 -= amount1

    def collect(
        self, owner: str, tick_lower: int, tick_upper: int, amount0: int, amount1: int
    ) -> None:
        """UniswapV3Pool.collect: the position's tokensOwed minus the amounts paid."""
        key = (owner.lower(), tick_lower, tick_upper)
        if not self.keeps(key):
            return
        pos = self.positions.get(key, EMPTY_POSITION)
        if amount0 > pos.tokens_owed0 or amount1 > pos.tokens_owed1:
            raise ReplicaError(f"Collect of {key} exceeds its tokens owed")
        self._store_position(
            key,
            pos._replace(
                tokens_owed0=pos.tokens_owed0 - amount0, tokens_owed1=pos.tokens_owed1 - amount1
            ),
        )

    def mint(
        self,
        tick_lower: int,
        tick_upper: int,
        amount: int,
        owner: str | None = None,
        expect_amounts: tuple[int, int] | None = None,
    ) -> tuple[int, int]:
        """UniswapV3Pool.mint -> _modifyPosition(+amount).

        Returns the (feeGrowthInside0, feeGrowthInside1) the pool computed for the range, i.e.
        what `pool.positions(owner, range)` holds as the checkpoint afterwards. With `owner`,
        the pool position is kept too; with `expect_amounts` (the log's amount0/amount1), the
        amounts are checked. Both come with the Mint log, so `apply` passes them.
        """
        if amount <= 0:
            raise ReplicaError("mint of zero liquidity (the pool requires amount > 0)")
        return self._modify(tick_lower, tick_upper, amount, owner, expect_amounts)

    def burn(
        self,
        tick_lower: int,
        tick_upper: int,
        amount: int,
        owner: str | None = None,
        expect_amounts: tuple[int, int] | None = None,
    ) -> tuple[int, int]:
        """UniswapV3Pool.burn -> _modifyPosition(-amount); amount 0 is a poke (NPM.collect's).

        Returns the feeGrowthInside checkpoint, computed before cleared ticks are deleted,
        as the pool does (so after a burn that clears a tick it differs from
        `fee_growth_inside(range)`, which then reads the cleared tick as 0).
        """
        if amount < 0:
            raise ReplicaError("negative burn")
        return self._modify(tick_lower, tick_upper, -amount, owner, expect_amounts)

    def _modify(
        self,
        tick_lower: int,
        tick_upper: int,
        liquidity_delta: int,
        owner: str | None,
        expect_amounts: tuple[int, int] | None,
    ) -> tuple[int, int]:
        """_modifyPosition and _updatePosition (and burn's tokensOwed credit), staged so that
        nothing changes on a failure."""
        if not (tick_lower < tick_upper and tick_lower >= MIN_TICK and tick_upper <= MAX_TICK):
            raise ReplicaError(f"invalid range [{tick_lower}, {tick_upper}] ('CT')")
        if not self.initialized:
            raise ReplicaError("mint or burn before Initialize")
        if not INT128_MIN < liquidity_delta <= INT128_MAX:
            raise ReplicaError("liquidity delta does not fit int128")
        what = f"range [{tick_lower}, {tick_upper}] {liquidity_delta:+d}"
        # what the pool pays in (mint, > 0) or out (burn, < 0), from the price before the change
        amount0, amount1 = _signed_amounts(
            self.sqrt_price_x96, self.tick, tick_lower, tick_upper, liquidity_delta
        )
        if expect_amounts is not None:
            logged = (
                expect_amounts if liquidity_delta >= 0 else (-expect_amounts[0], -expect_amounts[1])
            )
            if (amount0, amount1) != logged:
                raise ReplicaError(
                    f"{what}: amounts {logged} logged, {(amount0, amount1)} from the replica"
                )
        new_ticks: dict[int, TickInfo] = {}
        flips: list[int] = []
        try:
            if liquidity_delta != 0:
                for tick, upper in ((tick_lower, False), (tick_upper, True)):
                    info, flipped = self._tick_update(tick, liquidity_delta, upper)
                    new_ticks[tick] = info
                    if flipped:
                        if tick % self.tick_spacing:
                            raise _Revert("flipTick: tick not a multiple of the spacing")
                        flips.append(tick)
            lower = new_ticks.get(tick_lower, self.ticks.get(tick_lower, _EMPTY_TICK))
            upper_info = new_ticks.get(tick_upper, self.ticks.get(tick_upper, _EMPTY_TICK))
            # getFeeGrowthInside runs after Tick.update (a new tick at or below the current one
            # has its outside set to the global) and before Tick.clear
            inside0 = fee_growth_inside(
                self.tick,
                tick_lower,
                tick_upper,
                lower.fee_growth_outside0_x128,
                upper_info.fee_growth_outside0_x128,
                self.fee_growth_global0_x128,
            )
            inside1 = fee_growth_inside(
                self.tick,
                tick_lower,
                tick_upper,
                lower.fee_growth_outside1_x128,
                upper_info.fee_growth_outside1_x128,
                self.fee_growth_global1_x128,
            )
            key = (owner.lower(), tick_lower, tick_upper) if owner is not None else None
            if key is not None and not self.keeps(key):
                key = None
            new_position: PoolPosition | None = None
            if key is not None:
                new_position = _position_update(
                    self.positions.get(key, EMPTY_POSITION), liquidity_delta, inside0, inside1
                )
                if liquidity_delta < 0 and (amount0 or amount1):
                    # burn(): tokensOwed += uint128(amount), wrapping
                    new_position = new_position._replace(
                        tokens_owed0=(new_position.tokens_owed0 - amount0) % UINT128,
                        tokens_owed1=(new_position.tokens_owed1 - amount1) % UINT128,
                    )
            new_liquidity = self.liquidity
            if liquidity_delta != 0 and tick_lower <= self.tick < tick_upper:
                new_liquidity = add_delta(self.liquidity, liquidity_delta)
        except MathError as exc:
            raise ReplicaError(f"{what}: {exc}") from exc

        # commit
        self.changed_ticks.update(new_ticks)
        for tick, info in new_ticks.items():
            if liquidity_delta < 0 and tick in flips:
                del self.ticks[tick]  # Tick.clear: no position references the tick any more
            else:
                self.ticks[tick] = info
        for tick in flips:
            self._flip(tick)
        if key is not None and new_position is not None:
            self._store_position(key, new_position)
        self.liquidity = new_liquidity
        return inside0, inside1

    def _tick_update(self, tick: int, liquidity_delta: int, upper: bool) -> tuple[TickInfo, bool]:
        """Tick.update -> (new info, flipped)."""
        info = self.ticks.get(tick, _EMPTY_TICK)
        gross_before = info.liquidity_gross
        gross_after = add_delta(gross_before, liquidity_delta)
        # (maxLiquidityPerTick is not checked: a mint above it reverts and logs nothing)
        flipped = (gross_after == 0) != (gross_before == 0)
        outside0, outside1 = info.fee_growth_outside0_x128, info.fee_growth_outside1_x128
        if gross_before == 0 and tick <= self.tick:
            # by convention, all growth before a tick was initialised happened below it
            outside0, outside1 = self.fee_growth_global0_x128, self.fee_growth_global1_x128
        net = (
            info.liquidity_net - liquidity_delta if upper else info.liquidity_net + liquidity_delta
        )
        if not INT128_MIN <= net <= INT128_MAX:
            raise _Revert("liquidityNet does not fit int128")
        return TickInfo(gross_after, net, outside0, outside1), flipped

    def _flip(self, tick: int) -> None:
        """TickBitmap.flipTick."""
        compressed = tick // self.tick_spacing
        word_pos, bit_pos = compressed >> 8, compressed & 0xFF
        word = self.bitmap.get(word_pos, 0) ^ (1 << bit_pos)
        if word:
            self.bitmap[word_pos] = word
        else:
            self.bitmap.pop(word_pos, None)

    def _store_position(self, key: tuple[str, int, int], pos: PoolPosition) -> None:
        self.changed_positions.add(key)
        if pos.liquidity == 0 and pos.tokens_owed0 == 0 and pos.tokens_owed1 == 0:
            self.positions.pop(key, None)
        else:
            self.positions[key] = pos

    # -- swaps ----------------------------------------------------------------------------

    def swap(
        self, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None = None
    ) -> ev.Swap:
        """Execute UniswapV3Pool.swap on the replica; returns the Swap log it would emit.

        `sqrt_price_limit_x96=None` is the routers' "no limit" (MIN_SQRT_RATIO + 1 or
        MAX_SQRT_RATIO - 1). ReplicaError where the pool would revert.
        """
        if sqrt_price_limit_x96 is None:
            sqrt_price_limit_x96 = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
        try:
            result = self._simulate(zero_for_one, amount_specified, sqrt_price_limit_x96)
        except MathError as exc:
            raise ReplicaError(f"swap reverts: {exc}") from exc
        assert result is not None  # only a run with a bound gives up
        self._commit_swap(zero_for_one, result)
        return ev.Swap(
            result.amount0, result.amount1, result.sqrt_price_x96, result.liquidity, result.tick
        )

    def swap_candidates(
        self, amount0: int, amount1: int, sqrt_price_x96: int
    ) -> Iterator[SwapCandidate]:
        """The swap calls that may have produced a Swap log with these amounts and price.

        Direction: the input amount is positive, the output negative; if both are zero (a swap
        through empty ranges), the price's move decides. For each direction (`apply_swap`
        explains why these three cover every swap):
        - exact_input: amountSpecified = the logged input, no price limit;
        - exact_output: amountSpecified = -the logged output, no price limit;
        - price_limit: the largest exact input (2^255 - 1), limit = the logged final price.
        """
        if amount0 > 0 or amount1 < 0:
            directions = [True]
        elif amount0 < 0 or amount1 > 0:
            directions = [False]
        elif sqrt_price_x96 != self.sqrt_price_x96:
            directions = [sqrt_price_x96 < self.sqrt_price_x96]
        else:
            directions = [True, False]
        for zero_for_one in directions:
            amount_in, amount_out = (amount0, amount1) if zero_for_one else (amount1, amount0)
            if amount_in < 0 or amount_out > 0:
                continue  # both amounts flowing the same way: not a swap
            if amount_in > 0:
                no_limit = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
                yield SwapCandidate("exact_input", zero_for_one, amount_in, no_limit)
                if amount_out < 0:
                    yield SwapCandidate("exact_output", zero_for_one, amount_out, no_limit)
            if (
                MIN_SQRT_RATIO < sqrt_price_x96 < self.sqrt_price_x96
                if zero_for_one
                else self.sqrt_price_x96 < sqrt_price_x96 < MAX_SQRT_RATIO
            ):
                yield SwapCandidate("price_limit", zero_for_one, INT256_MAX, sqrt_price_x96)

    def apply_swap(
        self,
        event_amount0: int,
        event_amount1: int,
        event_sqrt_price_x96: int,
        event_liquidity: int,
        event_tick: int,
    ) -> SwapCandidate:
        """Replay the swap behind a Swap log; returns the candidate that reproduced it.

        The log does not say how the swap was called (exact input or output, which price
        limit), so each of `swap_candidates` is run through the port of the swap loop, and the
        first whose (amount0, amount1, sqrtPrice, liquidity, tick) all equal the log's is
        committed. Why that reproduces the original's fees exactly:

        - A swap ends either because its amount ran out or because it reached its price limit.
        - Every step but the last ends on a step boundary (an initialised tick, or the edge of a
          256-spacing bitmap word) found from the same bitmap, so a replay takes the same steps.
          A step that reaches its target keeps the amount computed for the target and pays the
          fee `mulDivRoundingUp(amountIn, fee, 1e6 - fee)`: the same whether the swap was exact
          input or output, and whatever amount was left.
        - Ran out (no limit reached): replayed with the logged amount as exact input (or exact
          output) and no limit. Each earlier step still reaches its target (remaining >=
          amountIn + fee implies remaining * (1e6 - fee) / 1e6 >= amountIn); the last step does
          not reach even the original's target, so a farther one changes nothing, and it ends
          at the price the amount gives, with the fee = the remainder
          (`amountRemaining - amountIn`) for exact input.
        - Reached its limit: then *every* step reached its target, so the result depends on
          neither the amount nor exact input/output: replayed as exact input of 2^255 - 1 with
          the limit at the logged final price. Not with the logged input as the amount: that
          would end the replay where it ran out, before any free stretch through empty ranges
          the original crossed to its limit; nor without the limit: the last step would then
          not stop at the limit and would charge the remainder instead of the rate.
        - Conversely any candidate that reproduces the log has the original's fees: both runs
          take the same steps at the same prices (so the same amountIn per step, the same
          crossings and liquidity) and all steps but the last charge the rate; the logged input
          total then pins the last step's fee too.

        ReplicaError if none matches; the replica is then unchanged.
        """
        target = (event_amount0, event_amount1, event_sqrt_price_x96, event_liquidity, event_tick)
        if not self.initialized:
            raise ReplicaError("Swap before Initialize")
        candidates = list(self.swap_candidates(event_amount0, event_amount1, event_sqrt_price_x96))
        candidates.sort(key=lambda c: c.kind != self._last_kind)  # stable: the last kind first
        tried: list[str] = []
        for candidate in candidates:
            try:
                result = self._simulate(
                    candidate.zero_for_one,
                    candidate.amount_specified,
                    candidate.sqrt_price_limit_x96,
                    bound=event_sqrt_price_x96,
                )
            except MathError as exc:
                tried.append(f"{candidate.kind}: reverts ({exc})")
                continue
            if result is None:
                tried.append(f"{candidate.kind}: passes the logged price")
                continue
            got = (
                result.amount0,
                result.amount1,
                result.sqrt_price_x96,
                result.liquidity,
                result.tick,
            )
            if got == target:
                self._commit_swap(candidate.zero_for_one, result)
                self._last_kind = candidate.kind
                return candidate
            tried.append(f"{candidate.kind}: gives {got}")
        raise ReplicaError(
            f"no swap reproduces Swap{target} from price {self.sqrt_price_x96} tick {self.tick} "
            f"liquidity {self.liquidity}: " + ("; ".join(tried) or "no candidate")
        )

    def _simulate(
        self,
        zero_for_one: bool,
        amount_specified: int,
        sqrt_price_limit_x96: int,
        bound: int | None = None,
    ) -> _SwapResult | None:
        """The loop of UniswapV3Pool.swap, read-only: the crossings are returned, not applied.

        A swap crosses a tick at most once (the price moves one way), and nothing in the loop
        reads a feeGrowthOutside, so recording the crossings and applying them on commit is
        the same as flipping them in place. With `bound`, gives up (None) once the price moves
        past it: the price never comes back, so such a run cannot end there.
        """
        price = self.sqrt_price_x96
        # the pool's opening require (with `slot0Start.unlocked` always true here)
        if amount_specified == 0:
            raise _Revert("AS")
        if zero_for_one:
            if not (MIN_SQRT_RATIO < sqrt_price_limit_x96 < price):
                raise _Revert("SPL")
        elif not (price < sqrt_price_limit_x96 < MAX_SQRT_RATIO):
            raise _Revert("SPL")
        fee_protocol = self.fee_protocol % 16 if zero_for_one else self.fee_protocol >> 4
        exact_input = amount_specified > 0
        fee = self.fee
        remaining = amount_specified
        calculated = 0
        tick = self.tick
        liquidity = self.liquidity
        growth = self.fee_growth_global0_x128 if zero_for_one else self.fee_growth_global1_x128
        other_growth = (
            self.fee_growth_global1_x128 if zero_for_one else self.fee_growth_global0_x128
        )
        protocol_fee = 0
        crossed: list[tuple[int, int, int]] = []
        bitmap, spacing = self.bitmap, self.tick_spacing

        while remaining != 0 and price != sqrt_price_limit_x96:
            start = price
            tick_next, initialized = next_initialized_tick_within_one_word(
                bitmap, tick, spacing, zero_for_one
            )
            # the bitmap does not know the tick bounds
            if tick_next < MIN_TICK:
                tick_next = MIN_TICK
            elif tick_next > MAX_TICK:
                tick_next = MAX_TICK
            price_next = get_sqrt_ratio_at_tick(tick_next)
            beyond_limit = (
                price_next < sqrt_price_limit_x96
                if zero_for_one
                else price_next > sqrt_price_limit_x96
            )
            price, amount_in, amount_out, fee_amount = compute_swap_step(
                price,
                sqrt_price_limit_x96 if beyond_limit else price_next,
                liquidity,
                remaining,
                fee,
            )
            if exact_input:
                remaining -= amount_in + fee_amount
                calculated -= amount_out
            else:
                remaining += amount_out
                calculated += amount_in + fee_amount
            if fee_protocol > 0:
                delta = fee_amount // fee_protocol
                fee_amount -= delta
                protocol_fee = (protocol_fee + delta) % UINT128  # uint128 state, wraps
            if liquidity > 0:
                growth = (growth + mul_div(fee_amount, Q128, liquidity)) % UINT256
            if price == price_next:
                if initialized:
                    # Tick.cross gets the running growth of the input token, the stored other
                    g0, g1 = (growth, other_growth) if zero_for_one else (other_growth, growth)
                    crossed.append((tick_next, g0, g1))
                    net = self.ticks[tick_next].liquidity_net
                    liquidity = add_delta(liquidity, -net if zero_for_one else net)
                tick = tick_next - 1 if zero_for_one else tick_next
            elif price != start:
                # not on a boundary: the tick follows the price (unless the price did not move,
                # e.g. at a lower boundary already transitioned)
                tick = get_tick_at_sqrt_ratio(price)
            if bound is not None and (price < bound if zero_for_one else price > bound):
                return None

        if zero_for_one == exact_input:
            amount0, amount1 = amount_specified - remaining, calculated
        else:
            amount0, amount1 = calculated, amount_specified - remaining
        return _SwapResult(
            amount0, amount1, price, tick, liquidity, growth, protocol_fee, tuple(crossed)
        )

    def _commit_swap(self, zero_for_one: bool, result: _SwapResult) -> None:
        for tick, g0, g1 in result.crossed:
            self.changed_ticks.add(tick)
            info = self.ticks[tick]
            self.ticks[tick] = info._replace(
                fee_growth_outside0_x128=(g0 - info.fee_growth_outside0_x128) % UINT256,
                fee_growth_outside1_x128=(g1 - info.fee_growth_outside1_x128) % UINT256,
            )
        self.sqrt_price_x96, self.tick = result.sqrt_price_x96, result.tick
        self.liquidity = result.liquidity
        if zero_for_one:
            self.fee_growth_global0_x128 = result.fee_growth_global_x128
            self.protocol_fees0 = (self.protocol_fees0 + result.protocol_fee) % UINT128
        else:
            self.fee_growth_global1_x128 = result.fee_growth_global_x128
            self.protocol_fees1 = (self.protocol_fees1 + result.protocol_fee) % UINT128


def _position_update(
    pos: PoolPosition, liquidity_delta: int, inside0: int, inside1: int
) -> PoolPosition:
    """Position.update: accrue fees on the old liquidity, checkpoint, then change liquidity."""
    if liquidity_delta == 0:
        if pos.liquidity <= 0:
            raise _Revert("NP")  # pokes of empty positions are disallowed
        liquidity_next = pos.liquidity
    else:
        liquidity_next = add_delta(pos.liquidity, liquidity_delta)
    # `uint128(FullMath.mulDiv(...))` truncates; `tokensOwed += ...` wraps at 2^128
    owed0 = mul_div((inside0 - pos.fee_growth_inside0_last_x128) % UINT256, pos.liquidity, Q128)
    owed1 = mul_div((inside1 - pos.fee_growth_inside1_last_x128) % UINT256, pos.liquidity, Q128)
    return PoolPosition(
        liquidity_next,
        inside0,
        inside1,
        (pos.tokens_owed0 + owed0) % UINT128,
        (pos.tokens_owed1 + owed1) % UINT128,
    )
