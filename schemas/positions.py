"""Position state and its valuation: the shapes the flow emits and the API serves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Self

PROTOCOL_UNISWAP_V3 = "uniswap_v3"


@lru_cache(maxsize=4096)
def iso_time(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


class Immutable:
    """Frozen values need no copy: Bytewax deep-copies state at every snapshot, and sharing
    these instead of rebuilding them keeps snapshots cheap."""

    __slots__ = ()

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self


@dataclass(frozen=True, slots=True)
class BlockRef(Immutable):
    chain_id: int
    number: int
    hash: str
    timestamp: int

    def time_iso(self) -> str:
        return iso_time(self.timestamp)


@dataclass(frozen=True, slots=True)
class UniswapPosition(Immutable):
    """The structural state of one Uniswap V3 position NFT: what changes only on its own events.

    Immutable: an event makes a new one, so versions and stream updates can share it safely.
    """

    chain_id: int
    position_id: str
    position_manager: str
    token_id: int
    pool: str
    token0: str
    token1: str
    symbol0: str
    symbol1: str
    decimals0: int
    decimals1: int
    fee: int
    owner: str
    tick_lower: int
    tick_upper: int
    liquidity: int = 0
    deposited0: int = 0
    deposited1: int = 0
    withdrawn0: int = 0
    withdrawn1: int = 0
    collected0: int = 0
    collected1: int = 0
    burned: bool = False
    # The position manager's fee checkpoint (NonfungiblePositionManager.positions fields).
    fee_inside_last0: int = 0
    fee_inside_last1: int = 0
    tokens_owed0: int = 0
    tokens_owed1: int = 0

    protocol = PROTOCOL_UNISWAP_V3


@dataclass(frozen=True, slots=True)
class PoolSnapshot(Immutable):
    """A pool's price state at the end of a block."""

    pool: str
    sqrt_price_x96: int
    tick: int
    liquidity: int
    fee_growth_global0_x128: int = 0
    fee_growth_global1_x128: int = 0


@dataclass(frozen=True, slots=True)
class TokenPrice(Immutable):
    """USD per whole token, routed through pools to a USD stablecoin."""

    token: str
    usd: float
    source: str  # a feed, the pool the last hop came from, or "usd" for a stablecoin itself
    hops: int
    round_id: int | None = None  # the feed's round, for oracle prices
    # Why this price is not current: its oracle root could not be read (the reason is the
    # root's, carried along every route from it); "" when it is current.
    stale: str = ""


@dataclass(frozen=True, slots=True)
class PositionValue(Immutable):
    amount0: int
    amount1: int
    in_range: bool
    tick: int
    price0_usd: float | None
    price1_usd: float | None
    value_usd: float | None
    hodl_usd: float | None
    il_usd: float | None
    il_pct: float | None
    # What a static collect(max, max) returns: fees plus withdrawn principal not yet collected.
    uncollected0: int | None = None
    uncollected1: int | None = None
    uncollected_usd: float | None = None


def _token(address: str, symbol: str, decimals: int) -> dict[str, Any]:
    return {"address": address, "symbol": symbol, "decimals": decimals}


def position_json(
    pos: UniswapPosition,
    value: PositionValue,
    as_of: BlockRef,
    updated_block: int | None = None,
) -> dict[str, Any]:
    """The wire format of a position, shared by the portfolio endpoint and the stream.

    On-chain integers are decimal strings (JSON numbers lose precision past 2^53).
    """
    return {
        "id": pos.position_id,
        "protocol": pos.protocol,
        "chain_id": pos.chain_id,
        "position_manager": pos.position_manager,
        "token_id": str(pos.token_id),
        "owner": pos.owner,
        "pool": pos.pool,
        "fee": pos.fee,
        "token0": _token(pos.token0, pos.symbol0, pos.decimals0),
        "token1": _token(pos.token1, pos.symbol1, pos.decimals1),
        "tick_lower": pos.tick_lower,
        "tick_upper": pos.tick_upper,
        "tick": value.tick,
        "liquidity": str(pos.liquidity),
        "amount0": str(value.amount0),
        "amount1": str(value.amount1),
        "in_range": value.in_range,
        "deposited0": str(pos.deposited0),
        "deposited1": str(pos.deposited1),
        "withdrawn0": str(pos.withdrawn0),
        "withdrawn1": str(pos.withdrawn1),
        "collected0": str(pos.collected0),
        "collected1": str(pos.collected1),
        "burned": pos.burned,
        "price0_usd": value.price0_usd,
        "price1_usd": value.price1_usd,
        "value_usd": value.value_usd,
        "hodl_usd": value.hodl_usd,
        "il_usd": value.il_usd,
        "il_pct": value.il_pct,
        "uncollected0": None if value.uncollected0 is None else str(value.uncollected0),
        "uncollected1": None if value.uncollected1 is None else str(value.uncollected1),
        "uncollected_usd": value.uncollected_usd,
        "updated_block": updated_block,
        "block_number": as_of.number,
        "block_hash": as_of.hash,
        "block_time": as_of.time_iso(),
    }
