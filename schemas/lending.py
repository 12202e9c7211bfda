"""Lending state and its valuation (Aave V3): the shapes the flow emits and the API serves.

Amounts, indices, rates and oracle answers are the contracts' own integers. The base currency
is USD with 8 decimals (AaveOracle.BASE_CURRENCY_UNIT), the health factor a wad (1e18).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.positions import BlockRef, Immutable

# The Aave V3 releases whose rules defimon follows (a chain config may pin one; otherwise the
# Pool's revision names it: protocols.aave_v3.state.version_of_revision). 3.0.2 is the devnet's.
AAVE_VERSIONS = ("3.0.2", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7")
MAX_UINT256 = (1 << 256) - 1
BASE_UNIT = 10**8
WAD = 10**18


@dataclass(frozen=True, slots=True)
class ReserveInfo(Immutable):
    asset: str
    a_token: str
    stable_debt_token: str
    variable_debt_token: str
    symbol: str
    decimals: int
    ltv: int = 0  # basis points
    liquidation_threshold: int = 0
    liquidation_bonus: int = 0
    emode_category: int = 0  # v3.0.x/3.1 only: bits 168-175, deprecated since 3.2
    # The reserve's index in the pool's reserves list: its bit in users' configurations and in
    # eMode bitmaps (-1: not known).
    reserve_id: int = -1


@dataclass(frozen=True, slots=True)
class ReserveRates(Immutable):
    """From the last ReserveDataUpdated: rates (ray, per year) and indices (ray)."""

    asset: str
    liquidity_rate: int
    stable_borrow_rate: int
    variable_borrow_rate: int
    liquidity_index: int
    variable_borrow_index: int
    last_update: int  # the block timestamp of that event


@dataclass(frozen=True, slots=True)
class EModeInfo(Immutable):
    """An eMode category. Since 3.2 it applies to the reserves whose bit (reserve id) is set
    in `collateral_bitmap` (its LTV and LT) and `borrowable_bitmap`; since 3.6 the reserves in
    `ltvzero_bitmap` have LTV 0 inside it; 3.7 categories may be `isolated`."""

    category: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    price_source: str
    collateral_bitmap: int = 0
    borrowable_bitmap: int = 0
    ltvzero_bitmap: int = 0
    isolated: bool = False


@dataclass(frozen=True, slots=True)
class OraclePrice(Immutable):
    """An answer of the feed the Aave oracle uses for an asset (USD, 8 decimals)."""

    asset: str
    answer: int
    round_id: int
    updated_at: int
    feed: str
    block: int
    # Why the source could not be read at `block` ("" when it was): `answer` is then the
    # last good answer (0 if there never was one), and every value built on it is stale.
    stale: str = ""


@dataclass(frozen=True, slots=True)
class AccountReserveState(Immutable):
    asset: str
    scaled_supply: int = 0
    scaled_variable_debt: int = 0
    stable_principal: int = 0
    stable_rate: int = 0
    stable_updated: int = 0
    collateral: bool = False


@dataclass(frozen=True, slots=True)
class AaveAccount(Immutable):
    chain_id: int
    pool: str
    user: str
    account_id: str
    emode: int
    reserves: Mapping[str, AccountReserveState] = field(default_factory=dict)

    protocol = "aave_v3"


@dataclass(frozen=True, slots=True)
class ReserveValue(Immutable):
    asset: str
    supplied: int  # underlying units, accrued to the block
    debt: int
    price: int  # base currency, 8 decimals
    collateral: bool
    liquidation_price: int | None  # base currency, 8 decimals; None if no price gets HF to 1
    stale: str = ""  # why `price` is not current ("" when it is)


@dataclass(frozen=True, slots=True)
class AccountValue(Immutable):
    total_collateral_base: int
    total_debt_base: int
    avg_ltv: int
    avg_liquidation_threshold: int
    health_factor: int  # wad; MAX_UINT256 without debt
    reserves: tuple[ReserveValue, ...]
    # "SYMBOL: reason" for each held reserve whose price could not be read: the figures
    # above use its last good price and are stale.
    stale: tuple[str, ...] = ()


def health_factor_float(hf: int) -> float | None:
    return None if hf >= MAX_UINT256 else hf / WAD


def account_json(
    account: AaveAccount,
    value: AccountValue,
    reserves: Mapping[str, ReserveInfo],
    as_of: BlockRef,
    updated_block: int | None = None,
) -> dict[str, Any]:
    """The wire format of a lending account (integers as decimal strings)."""
    rows = []
    for r in value.reserves:
        info = reserves.get(r.asset)
        decimals = info.decimals if info else 18
        rows.append(
            {
                "asset": r.asset,
                "symbol": info.symbol if info else "???",
                "decimals": decimals,
                "supplied": str(r.supplied),
                "debt": str(r.debt),
                "collateral": r.collateral,
                "price": str(r.price),
                "price_usd": r.price / BASE_UNIT,
                "supplied_usd": r.supplied * r.price / BASE_UNIT / 10**decimals,
                "debt_usd": r.debt * r.price / BASE_UNIT / 10**decimals,
                "liquidation_price": None
                if r.liquidation_price is None
                else str(r.liquidation_price),
                "liquidation_price_usd": None
                if r.liquidation_price is None
                else r.liquidation_price / BASE_UNIT,
                "price_stale": r.stale or None,
            }
        )
    return {
        "id": account.account_id,
        "protocol": account.protocol,
        "chain_id": account.chain_id,
        "pool": account.pool,
        "owner": account.user,
        "emode": account.emode,
        "total_collateral_base": str(value.total_collateral_base),
        "total_debt_base": str(value.total_debt_base),
        "collateral_usd": value.total_collateral_base / BASE_UNIT,
        "debt_usd": value.total_debt_base / BASE_UNIT,
        "value_usd": (value.total_collateral_base - value.total_debt_base) / BASE_UNIT,
        "avg_ltv": value.avg_ltv,
        "avg_liquidation_threshold": value.avg_liquidation_threshold,
        "health_factor": str(value.health_factor),
        "health_factor_float": health_factor_float(value.health_factor),
        "reserves": rows,
        "stale": list(value.stale) or None,
        "updated_block": updated_block,
        "block_number": as_of.number,
        "block_hash": as_of.hash,
        "block_time": as_of.time_iso(),
        # Compound V3's own fields (schemas/comet.py); the wire shape is the same for both.
        "base_principal": None,
        "is_liquidatable": None,
        "absorbable": None,
    }
