"""The position manager's fee checkpoints per NFT (v3-periphery 1.x
`NonfungiblePositionManager`): what a static `collect(max, max)` returns, from the pool
replica's fee growth (replica.py) and the manager's own events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from protocols.journal import JournaledDict
from protocols.uniswap_v3.math import (
    Q128,
    UINT256,
    mul_div,
)
from protocols.uniswap_v3.replica import PoolPosition, PoolReplica
from protocols.uniswap_v3.swap_math import (
    UINT128,
    ReplicaError,
)

# ---------------------------------------------------------------------------------------------
# Fees of a position


def _accrued(inside_now: int, inside_last: int, liquidity: int) -> int:
    """`uint128(FullMath.mulDiv(inside - last, liquidity, Q128))` (the cast truncates)."""
    return mul_div((inside_now - inside_last) % UINT256, liquidity, Q128) % UINT128


def position_fees(
    liquidity: int,
    tokens_owed0: int,
    tokens_owed1: int,
    inside_last0: int,
    inside_last1: int,
    inside_now0: int,
    inside_now1: int,
    *,
    pool_owed: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """What NonfungiblePositionManager.collect(tokenId, max, max) returns, called statically.

    NPM.collect: if the position has liquidity, it pokes the pool (`burn(0)`, which moves the
    pool position's checkpoint to the current feeGrowthInside) and adds
    `uint128(mulDiv(insideNow - insideLast, liquidity, 2^128))` to tokensOwed, wrapping at
    2^128; it asks the pool for min(max, tokensOwed) and returns what the pool pays, which is
    capped by the pool position's own tokensOwed. Pass that as `pool_owed` (after the poke; see
    `NpmPosition.uncollected`) to include the cap: the pool accrues its aggregate position at
    every poke of any NFT sharing the range, each time rounding down, so it can hold a few wei
    less than the sum the NFTs were promised.
    """
    owed0, owed1 = tokens_owed0, tokens_owed1
    if liquidity > 0:
        owed0 = (owed0 + _accrued(inside_now0, inside_last0, liquidity)) % UINT128
        owed1 = (owed1 + _accrued(inside_now1, inside_last1, liquidity)) % UINT128
    if pool_owed is not None:
        owed0, owed1 = min(owed0, pool_owed[0]), min(owed1, pool_owed[1])
    return owed0, owed1


class NpmPosition(NamedTuple):
    """The fee fields of `NonfungiblePositionManager.positions(tokenId)`, kept from logs.

    Apply the position manager's events in log order, each *after* the pool logs that precede
    it in the same transaction (the pool's `Mint` precedes `IncreaseLiquidity`, the pool's
    `Burn` precedes `DecreaseLiquidity`, and the pool's `Burn(0)` poke and `Collect` precede
    the manager's `Collect`): NPM reads `pool.positions(key)` right after its pool call, and
    `replica.position(npm, range)` then holds exactly that. Applying a whole block's pool logs
    first would read later swaps' fee growth and be wrong.
    """

    tick_lower: int
    tick_upper: int
    liquidity: int
    fee_growth_inside0_last_x128: int
    fee_growth_inside1_last_x128: int
    tokens_owed0: int
    tokens_owed1: int

    @classmethod
    def minted(
        cls, replica: PoolReplica, npm: str, tick_lower: int, tick_upper: int, liquidity: int
    ) -> NpmPosition:
        """NPM.mint (its IncreaseLiquidity log): the pool position's checkpoint, nothing owed."""
        pool_pos = replica.position(npm, tick_lower, tick_upper)
        return cls(
            tick_lower,
            tick_upper,
            liquidity,
            pool_pos.fee_growth_inside0_last_x128,
            pool_pos.fee_growth_inside1_last_x128,
            0,
            0,
        )

    def _checkpointed(self, replica: PoolReplica, npm: str) -> tuple[int, int, int, int]:
        """(last0, last1, owed0, owed1) after accruing to the pool position's checkpoint."""
        pool_pos = replica.position(npm, self.tick_lower, self.tick_upper)
        last0 = pool_pos.fee_growth_inside0_last_x128
        last1 = pool_pos.fee_growth_inside1_last_x128
        owed0 = (
            self.tokens_owed0 + _accrued(last0, self.fee_growth_inside0_last_x128, self.liquidity)
        ) % UINT128
        owed1 = (
            self.tokens_owed1 + _accrued(last1, self.fee_growth_inside1_last_x128, self.liquidity)
        ) % UINT128
        return last0, last1, owed0, owed1

    def increased(self, replica: PoolReplica, npm: str, liquidity: int) -> NpmPosition:
        """NPM.increaseLiquidity (its IncreaseLiquidity log, after the pool's Mint)."""
        last0, last1, owed0, owed1 = self._checkpointed(replica, npm)
        return self._replace(
            liquidity=self.liquidity + liquidity,
            fee_growth_inside0_last_x128=last0,
            fee_growth_inside1_last_x128=last1,
            tokens_owed0=owed0,
            tokens_owed1=owed1,
        )

    def decreased(
        self, replica: PoolReplica, npm: str, liquidity: int, amount0: int, amount1: int
    ) -> NpmPosition:
        """NPM.decreaseLiquidity (its DecreaseLiquidity log, after the pool's Burn): owed grows
        by the withdrawn amounts plus the fees (`uint128(amount0) + uint128(fees)`, wrapping)."""
        if liquidity > self.liquidity:
            raise ReplicaError("DecreaseLiquidity of more than the position holds")
        last0, last1, owed0, owed1 = self._checkpointed(replica, npm)
        return self._replace(
            liquidity=self.liquidity - liquidity,
            fee_growth_inside0_last_x128=last0,
            fee_growth_inside1_last_x128=last1,
            tokens_owed0=(owed0 + amount0) % UINT128,
            tokens_owed1=(owed1 + amount1) % UINT128,
        )

    def collected(self, replica: PoolReplica, npm: str, amount0: int, amount1: int) -> NpmPosition:
        """NPM.collect (its Collect log, whose amounts are what it subtracts from tokensOwed).

        With liquidity, NPM first accrues to the pool checkpoint set by its `burn(0)` poke.
        """
        if self.liquidity > 0:
            last0, last1, owed0, owed1 = self._checkpointed(replica, npm)
        else:
            last0, last1 = self.fee_growth_inside0_last_x128, self.fee_growth_inside1_last_x128
            owed0, owed1 = self.tokens_owed0, self.tokens_owed1
        if amount0 > owed0 or amount1 > owed1:
            raise ReplicaError("Collect of more than the position is owed")
        return self._replace(
            fee_growth_inside0_last_x128=last0,
            fee_growth_inside1_last_x128=last1,
            tokens_owed0=owed0 - amount0,
            tokens_owed1=owed1 - amount1,
        )

    def uncollected(self, replica: PoolReplica, npm: str) -> tuple[int, int]:
        """What `collect(tokenId, owner, 2^128-1, 2^128-1)` from the owner returns now
        (tokens owed, withdrawn principal included, plus fees accrued since the checkpoint)."""
        return self.uncollected_with(
            replica.fee_growth_inside(self.tick_lower, self.tick_upper),
            replica.position(npm, self.tick_lower, self.tick_upper),
        )

    def uncollected_with(self, inside: tuple[int, int], pool_pos: PoolPosition) -> tuple[int, int]:
        """`uncollected` from stored state: the range's fee growth inside now and the
        manager's pool position (what time travel reads back from the store)."""
        inside0, inside1 = inside
        pool_owed0, pool_owed1 = pool_pos.tokens_owed0, pool_pos.tokens_owed1
        if self.liquidity > 0:
            # the poke accrues the pool's aggregate position (it has >= our liquidity)
            pool_owed0 = (
                pool_owed0
                + _accrued(inside0, pool_pos.fee_growth_inside0_last_x128, pool_pos.liquidity)
            ) % UINT128
            pool_owed1 = (
                pool_owed1
                + _accrued(inside1, pool_pos.fee_growth_inside1_last_x128, pool_pos.liquidity)
            ) % UINT128
        return position_fees(
            self.liquidity,
            self.tokens_owed0,
            self.tokens_owed1,
            self.fee_growth_inside0_last_x128,
            self.fee_growth_inside1_last_x128,
            inside0,
            inside1,
            pool_owed=(pool_owed0, pool_owed1),
        )


@dataclass(slots=True)
class NpmFeeTracker:
    """NonfungiblePositionManager's per-token fee checkpoints for the positions of one pool
    replica (or several: pass the position's pool replica to each call).

    Call each method for the manager's log, after the pool logs before it in the same
    transaction have been applied to the replica (see NpmPosition). `npm` is the manager's
    address: the pool position NPM reads is keyed by it.
    """

    npm: str
    positions: dict[int, NpmPosition] = field(default_factory=JournaledDict)

    def __post_init__(self) -> None:
        self.npm = self.npm.lower()

    def __deepcopy__(self, memo: dict[int, Any]) -> NpmFeeTracker:
        return NpmFeeTracker(self.npm, JournaledDict(self.positions))

    def on_mint(
        self, replica: PoolReplica, token_id: int, tick_lower: int, tick_upper: int, liquidity: int
    ) -> None:
        """The IncreaseLiquidity of NPM.mint (the range comes from the pool's Mint before it)."""
        if token_id in self.positions:
            raise ReplicaError(f"position {token_id} minted twice")
        self.positions[token_id] = NpmPosition.minted(
            replica, self.npm, tick_lower, tick_upper, liquidity
        )

    def on_increase(self, replica: PoolReplica, token_id: int, liquidity: int) -> None:
        self.positions[token_id] = self._get(token_id).increased(replica, self.npm, liquidity)

    def on_decrease(
        self, replica: PoolReplica, token_id: int, liquidity: int, amount0: int, amount1: int
    ) -> None:
        self.positions[token_id] = self._get(token_id).decreased(
            replica, self.npm, liquidity, amount0, amount1
        )

    def on_collect(self, replica: PoolReplica, token_id: int, amount0: int, amount1: int) -> None:
        self.positions[token_id] = self._get(token_id).collected(
            replica, self.npm, amount0, amount1
        )

    def on_burn(self, token_id: int) -> None:
        """NPM.burn (Transfer to 0x0): the position is deleted."""
        self.positions.pop(token_id, None)

    def uncollected(self, replica: PoolReplica, token_id: int) -> tuple[int, int]:
        return self._get(token_id).uncollected(replica, self.npm)

    def _get(self, token_id: int) -> NpmPosition:
        try:
            return self.positions[token_id]
        except KeyError:
            raise ReplicaError(f"position {token_id} is not tracked") from None
