"""What wallet watch mode reads with eth_call at one block, carried on that block's batch.

The reader (flows/watch.py, I/O) reads it; the market stage (pure) seeds its state from it
after applying the block's own logs, so the state is the contracts' at the end of the block
and following the block's successors keeps it exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.chain import TokenInfo
from schemas.lending import AaveAccount, EModeInfo, OraclePrice, ReserveInfo, ReserveRates
from schemas.positions import UniswapPosition
from schemas.prices import SourceRead


@dataclass(frozen=True, slots=True)
class TickSeed:
    """`pool.ticks(tick)`: the fields the fee replica keeps."""

    tick: int
    liquidity_gross: int
    liquidity_net: int
    fee_growth_outside0_x128: int
    fee_growth_outside1_x128: int


@dataclass(frozen=True, slots=True)
class PoolPositionSeed:
    """`pool.positions(keccak256(owner, tickLower, tickUpper))`."""

    owner: str
    tick_lower: int
    tick_upper: int
    liquidity: int
    fee_growth_inside0_last_x128: int
    fee_growth_inside1_last_x128: int
    tokens_owed0: int
    tokens_owed1: int


@dataclass(frozen=True, slots=True)
class PoolSeed:
    """A Uniswap V3 pool. `full` is False when the flow already follows the pool: then only
    `positions` (new keys to keep) matter, the rest is left as the flow has it."""

    pool: str
    token0: str
    token1: str
    fee: int
    tick_spacing: int
    full: bool
    sqrt_price_x96: int = 0
    tick: int = 0
    liquidity: int = 0
    fee_growth_global0_x128: int = 0
    fee_growth_global1_x128: int = 0
    fee_protocol: int = 0
    protocol_fees0: int = 0
    protocol_fees1: int = 0
    ticks: tuple[TickSeed, ...] = ()  # every initialized tick (from the tickBitmap words)
    positions: tuple[PoolPositionSeed, ...] = ()  # the position manager's, for the NFTs' ranges


@dataclass(frozen=True, slots=True)
class UniswapSeed:
    pools: tuple[PoolSeed, ...] = ()
    # NonfungiblePositionManager.positions(tokenId) of each NFT a wallet holds, with its
    # deposits, withdrawals and collects summed from the NFT's own logs (topic-filtered).
    positions: tuple[UniswapPosition, ...] = ()


@dataclass(frozen=True, slots=True)
class AaveSeed:
    """Reserves the flow does not follow yet (with rates, oracle source and answer), eMode
    categories, and the watched wallets' accounts."""

    reserves: tuple[ReserveInfo, ...] = ()
    rates: tuple[ReserveRates, ...] = ()
    prices: tuple[OraclePrice, ...] = ()
    emode: tuple[EModeInfo, ...] = ()
    accounts: tuple[AaveAccount, ...] = ()
    # The seeded reserves' sources as read at the seed block (a proxy's aggregator with it).
    source_reads: tuple[SourceRead, ...] = ()


@dataclass(frozen=True, slots=True)
class WatchSeed:
    wallets: tuple[str, ...]
    tokens: dict[str, TokenInfo] = field(default_factory=dict)
    # protocol -> its seeds read at this block, in order (protocols/<name>/reader.py): a
    # UniswapSeed, an AaveSeed, comet -> CometReads (its configuration, totals and prices,
    # and the wallets' userBasic and every userCollateral)
    parts: dict[str, list[Any]] = field(default_factory=dict)
