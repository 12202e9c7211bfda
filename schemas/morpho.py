"""Morpho Blue's wire format: an account (one user in one isolated market) in the lending
account shape Aave and Compound use (one row for the loan asset, one for the collateral), plus
Morpho's own fields. Integers are decimal strings, as the contract holds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.positions import BlockRef

PROTOCOL_MORPHO_BLUE = "morpho_blue"
WAD = 10**18
ORACLE_PRICE_SCALE = 10**36
MAX_UINT256 = (1 << 256) - 1  # the health factor of an account without debt, as Aave says it


@dataclass(frozen=True, slots=True)
class MorphoMarketInfo:
    """A market's parameters (`idToMarketParams`) and its tokens' metadata."""

    market: str  # the id: keccak256(abi.encode(marketParams))
    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv: int  # WAD
    loan_symbol: str = "???"
    loan_decimals: int = 18
    collateral_symbol: str = "???"
    collateral_decimals: int = 18


@dataclass(frozen=True, slots=True)
class MorphoAccountValue:
    """An account at a block's time (protocols/morpho_blue/state.py AccountView's numbers)."""

    supply_shares: int
    borrow_shares: int
    collateral: int
    supply_assets: int  # loan-token units, rounded down (expectedSupplyAssets)
    borrow_assets: int  # loan-token units, rounded up (expectedBorrowAssets)
    price: int  # the market oracle's price(), ORACLE_PRICE_SCALE
    collateral_value: int  # in loan-token units
    max_borrow: int
    health: int | None  # WAD; None without debt
    liquidatable: bool
    rate_exact: bool
    loan_usd: float | None  # USD per whole loan token (routed prices), None if unpriced
    price_stale: str = ""  # why the oracle price is the last good one ('' when current)


def account_id(chain_id: int, morpho: str, market: str, user: str) -> str:
    return f"{chain_id}:{morpho}:{market}:{user}"


def liquidation_price(borrowed: int, collateral: int, lltv: int) -> int | None:
    """The oracle price (ORACLE_PRICE_SCALE) below which the account is liquidatable: the
    smallest price at which `collateral * price / 1e36 * lltv / 1e18 >= borrowed` (up to the
    contract's floor roundings); None without debt or collateral."""
    if borrowed == 0 or collateral == 0 or lltv == 0:
        return None
    return -(-borrowed * ORACLE_PRICE_SCALE * WAD // (collateral * lltv))


def morpho_account_json(
    chain_id: int,
    morpho: str,
    user: str,
    info: MorphoMarketInfo,
    value: MorphoAccountValue,
    as_of: BlockRef,
    updated_block: int | None = None,
) -> dict[str, Any]:
    loan_unit, coll_unit = 10**info.loan_decimals, 10**info.collateral_decimals
    loan_usd = value.loan_usd
    # USD per whole collateral token at the market's own oracle (what its health uses).
    coll_usd = (
        None
        if loan_usd is None
        else value.price / ORACLE_PRICE_SCALE * coll_unit / loan_unit * loan_usd
    )

    def usd(amount: int, unit: int, per_token: float | None) -> float | None:
        return None if per_token is None else amount / unit * per_token

    liq = liquidation_price(value.borrow_assets, value.collateral, info.lltv)
    stale = value.price_stale or None
    rows = [
        {
            "asset": info.loan_token,
            "symbol": info.loan_symbol,
            "decimals": info.loan_decimals,
            "supplied": str(value.supply_assets),
            "debt": str(value.borrow_assets),
            "collateral": False,
            "price": str(ORACLE_PRICE_SCALE),  # the market's unit: loan per loan, 1e36
            "price_usd": loan_usd,
            "supplied_usd": usd(value.supply_assets, loan_unit, loan_usd),
            "debt_usd": usd(value.borrow_assets, loan_unit, loan_usd),
            "liquidation_price": None,
            "liquidation_price_usd": None,
            "price_stale": None,
        },
        {
            "asset": info.collateral_token,
            "symbol": info.collateral_symbol,
            "decimals": info.collateral_decimals,
            "supplied": str(value.collateral),
            "debt": "0",
            "collateral": True,
            "price": str(value.price),
            "price_usd": coll_usd,
            "supplied_usd": usd(value.collateral, coll_unit, coll_usd),
            "debt_usd": 0.0,
            "liquidation_price": None if liq is None else str(liq),
            "liquidation_price_usd": None
            if liq is None or loan_usd is None
            else liq / ORACLE_PRICE_SCALE * coll_unit / loan_unit * loan_usd,
            "price_stale": stale,
        },
    ]
    collateral_usd = usd(value.collateral, coll_unit, coll_usd)
    supplied_usd = usd(value.supply_assets, loan_unit, loan_usd)
    debt_usd = usd(value.borrow_assets, loan_unit, loan_usd)
    value_usd = (
        None
        if collateral_usd is None or supplied_usd is None or debt_usd is None
        else collateral_usd + supplied_usd - debt_usd
    )
    health = MAX_UINT256 if value.health is None else value.health
    return {
        "id": account_id(chain_id, morpho, info.market, user),
        "protocol": PROTOCOL_MORPHO_BLUE,
        "chain_id": chain_id,
        "pool": info.market,  # a lending account's market
        "owner": user,
        "emode": 0,
        # Morpho's own units: the loan token (collateral valued at the market's oracle).
        "total_collateral_base": str(value.collateral_value),
        "total_debt_base": str(value.borrow_assets),
        "collateral_usd": collateral_usd,
        "debt_usd": debt_usd,
        "value_usd": value_usd,
        "avg_ltv": info.lltv * 10_000 // WAD,
        "avg_liquidation_threshold": info.lltv * 10_000 // WAD,
        "health_factor": str(health),
        "health_factor_float": None if value.health is None else value.health / WAD,
        "reserves": rows,
        "updated_block": updated_block,
        "block_number": as_of.number,
        "block_hash": as_of.hash,
        "block_time": as_of.time_iso(),
        "base_principal": None,  # Comet's
        "is_liquidatable": value.liquidatable,
        "absorbable": None,  # Comet's
        "morpho": morpho,
        "market": info.market,
        "lltv": str(info.lltv),
        "oracle": info.oracle,
        "irm": info.irm,
        "supply_shares": str(value.supply_shares),
        "borrow_shares": str(value.borrow_shares),
        "max_borrow": str(value.max_borrow),
        "rate_exact": value.rate_exact,
        "stale": None if stale is None else [f"{info.collateral_symbol}: {stale}"],
    }
