"""Compound V3 (Comet) state and its valuation: the shapes the flow emits and the API serves.

Everything here is the contract's own integers: indices with 15 decimals, factors and the
health factor with 18, prices and USD values with 8 (Comet's PRICE_SCALE), balances in the
token's units. The read shapes (`CometConfig`, `CometTotalsBasic`, `CometUserBasic`,
`CometReads`) are what the chain reader got from the comet with eth_call at a block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.positions import BlockRef, Immutable

PROTOCOL_COMPOUND_V3 = "compound_v3"
MAX_UINT256 = (1 << 256) - 1
PRICE_UNIT = 10**8
WAD = 10**18


@dataclass(frozen=True, slots=True)
class CometAssetInfo(Immutable):
    """`getAssetInfo(i)`: one collateral asset (factors 1e18, already 4-decimal truncated)."""

    offset: int
    asset: str
    price_feed: str
    scale: int
    borrow_collateral_factor: int
    liquidate_collateral_factor: int
    liquidation_factor: int
    supply_cap: int
    symbol: str = "???"

    @property
    def decimals(self) -> int:
        return len(str(self.scale)) - 1


@dataclass(frozen=True, slots=True)
class CometConfig(Immutable):
    """A comet's immutables, read when it is first seen and after every proxy `Upgraded`."""

    comet: str
    base_token: str
    base_token_price_feed: str
    base_scale: int
    supply_kink: int
    supply_per_second_interest_rate_base: int
    supply_per_second_interest_rate_slope_low: int
    supply_per_second_interest_rate_slope_high: int
    borrow_kink: int
    borrow_per_second_interest_rate_base: int
    borrow_per_second_interest_rate_slope_low: int
    borrow_per_second_interest_rate_slope_high: int
    store_front_price_factor: int
    base_borrow_min: int
    assets: tuple[CometAssetInfo, ...]
    base_symbol: str = "???"

    @property
    def base_decimals(self) -> int:
        return len(str(self.base_scale)) - 1

    def feeds(self) -> tuple[str, ...]:
        """Every price feed the comet reads: the base's, then each asset's, deduplicated."""
        seen = [self.base_token_price_feed]
        for a in self.assets:
            if a.price_feed not in seen:
                seen.append(a.price_feed)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class CometTotalsBasic(Immutable):
    """`totalsBasic()`: the stored indices (1e15), principal totals and last accrual time."""

    base_supply_index: int
    base_borrow_index: int
    tracking_supply_index: int
    tracking_borrow_index: int
    total_supply_base: int
    total_borrow_base: int
    last_accrual_time: int
    pause_flags: int


@dataclass(frozen=True, slots=True)
class CometUserBasic(Immutable):
    """`userBasic(account)`: the signed base principal and the collateral bit set."""

    principal: int
    base_tracking_index: int
    base_tracking_accrued: int
    assets_in: int


@dataclass(slots=True)
class CometReads:
    """What the reader read from one comet with eth_call at one block (end-of-block state)."""

    config: CometConfig | None = None
    totals: CometTotalsBasic | None = None
    users: dict[str, CometUserBasic] = field(default_factory=dict)
    collateral: dict[tuple[str, str], int] = field(default_factory=dict)  # (account, asset)
    prices: dict[str, int] = field(default_factory=dict)  # price feed -> getPrice(feed)
    errors: list[str] = field(default_factory=list)  # reads that failed, with the reason


@dataclass(frozen=True, slots=True)
class CometAccount(Immutable):
    chain_id: int
    comet: str
    user: str
    account_id: str
    principal: int = 0
    assets_in: int = 0
    collateral: Mapping[str, int] = field(default_factory=dict)  # asset -> balance

    protocol = PROTOCOL_COMPOUND_V3

    @property
    def is_open(self) -> bool:
        return self.principal != 0 or any(self.collateral.values())


@dataclass(frozen=True, slots=True)
class CometCollateralValue(Immutable):
    asset: str
    balance: int
    price: int  # getPrice(priceFeed), 8 decimals; 0 if unknown
    value: int  # mulPrice(balance, price, scale), USD 8 decimals
    liquidation_price: int | None  # 8 decimals; None if no price of it gets the HF to 1


@dataclass(frozen=True, slots=True)
class CometAccountValue(Immutable):
    """One account at one block: base balances accrued to the block time (balanceOf /
    borrowBalanceOf), collateral at the comet's prices, and the liquidation state."""

    supplied: int  # balanceOf: base units, accrued
    borrowed: int  # borrowBalanceOf: base units, accrued
    base_price: int
    supply_value: int  # USD 8 decimals
    debt_value: int  # USD 8 decimals, as the liquidity loop counts it (accrued indices)
    collateral_value: int  # Σ mulPrice, USD 8 decimals
    liquidation_threshold_value: int  # Σ mulFactor(value, liquidateCF)
    borrow_capacity_value: int  # Σ mulFactor(value, borrowCF)
    health_factor: int  # wad; MAX_UINT256 without debt
    is_liquidatable: bool | None  # Comet.isLiquidatable at the block (stored indices)
    absorbable: bool | None  # the same test after accrual to the block time (what absorb sees)
    collaterals: tuple[CometCollateralValue, ...]


def comet_account_id(chain_id: int, comet: str, user: str) -> str:
    return f"{chain_id}:{comet}:{user}"


def _bps(weighted: int, total: int) -> int:
    # Factors are 1e18; the Aave-shaped fields are basis points.
    return weighted * 10_000 // total if total else 0


def comet_account_json(
    account: CometAccount,
    value: CometAccountValue,
    config: CometConfig,
    as_of: BlockRef,
    updated_block: int | None = None,
) -> dict[str, Any]:
    """The wire format of a Comet account: the lending account shape Aave uses (one row for
    the base asset, one per collateral), plus Comet's own fields."""
    assets = {a.asset: a for a in config.assets}
    base_decimals = config.base_decimals
    rows = [
        {
            "asset": config.base_token,
            "symbol": config.base_symbol,
            "decimals": base_decimals,
            "supplied": str(value.supplied),
            "debt": str(value.borrowed),
            "collateral": False,
            "price": str(value.base_price),
            "price_usd": value.base_price / PRICE_UNIT,
            "supplied_usd": value.supply_value / PRICE_UNIT,
            "debt_usd": value.debt_value / PRICE_UNIT,
            "liquidation_price": None,
            "liquidation_price_usd": None,
            "price_stale": None,
        }
    ]
    for c in value.collaterals:
        info = assets.get(c.asset)
        rows.append(
            {
                "asset": c.asset,
                "symbol": info.symbol if info else "???",
                "decimals": info.decimals if info else 18,
                "supplied": str(c.balance),
                "debt": "0",
                "collateral": True,
                "price": str(c.price),
                "price_usd": c.price / PRICE_UNIT,
                "supplied_usd": c.value / PRICE_UNIT,
                "debt_usd": 0.0,
                "liquidation_price": None
                if c.liquidation_price is None
                else str(c.liquidation_price),
                "liquidation_price_usd": None
                if c.liquidation_price is None
                else c.liquidation_price / PRICE_UNIT,
                "price_stale": None,
            }
        )
    hf = value.health_factor
    return {
        "id": account.account_id,
        "protocol": account.protocol,
        "chain_id": account.chain_id,
        "pool": account.comet,
        "owner": account.user,
        "emode": 0,
        "total_collateral_base": str(value.collateral_value),
        "total_debt_base": str(value.debt_value),
        "collateral_usd": value.collateral_value / PRICE_UNIT,
        "debt_usd": value.debt_value / PRICE_UNIT,
        # What the account owns: collateral and base supply, less the debt.
        "value_usd": (value.collateral_value + value.supply_value - value.debt_value) / PRICE_UNIT,
        "avg_ltv": _bps(value.borrow_capacity_value, value.collateral_value),
        "avg_liquidation_threshold": _bps(
            value.liquidation_threshold_value, value.collateral_value
        ),
        "health_factor": str(hf),
        "health_factor_float": None if hf >= MAX_UINT256 else hf / WAD,
        "reserves": rows,
        "updated_block": updated_block,
        "block_number": as_of.number,
        "block_hash": as_of.hash,
        "block_time": as_of.time_iso(),
        "base_principal": str(account.principal),
        "is_liquidatable": value.is_liquidatable,
        "absorbable": value.absorbable,
        # Aave's field (schemas/lending.py): comet prices are read from the comet at the block.
        "stale": None,
    }
