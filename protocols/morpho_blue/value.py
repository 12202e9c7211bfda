"""A Morpho Blue account's value at a time (pure): the one function the live path (the
shards, plugin.py) and time travel (read.py) value with."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.morpho_blue.state import Market, Position, view_account
from schemas.morpho import MorphoAccountValue, MorphoMarketInfo


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """A market as an account's valuation needs it at the end of a block."""

    info: MorphoMarketInfo
    market: Market  # the totals as stored (interest accrued by the valuation, to its time)
    fee_recipient: str
    price: int | None  # the oracle's last good price() (None: never read)
    borrow_rate: int  # the IRM's borrowRateView for these totals
    rate_exact: bool
    stale: str = ""  # why `price` is not this block's ('' when it is)


def account_value(
    snapshot: MarketSnapshot, position: Position, user: str, timestamp: int, loan_usd: float | None
) -> MorphoAccountValue | None:
    """An account at `timestamp` as the contract's views give it: interest accrued as
    MorphoBalancesLib does with the IRM's rate, health as `_isHealthy` weighs it (None: the
    market's price was never read, nothing to say rather than a value at price 0). The live
    path (the shards) and time travel (read.py) value with this one function."""
    if snapshot.price is None:
        return None
    view = view_account(
        snapshot.market,
        position,
        user,
        timestamp,
        snapshot.price,
        snapshot.borrow_rate,
        fee_recipient=user == snapshot.fee_recipient,
        rate_exact=snapshot.rate_exact,
    )
    return MorphoAccountValue(
        supply_shares=view.supply_shares,
        borrow_shares=view.borrow_shares,
        collateral=view.collateral,
        supply_assets=view.supply_assets,
        borrow_assets=view.borrow_assets,
        price=view.price,
        collateral_value=view.collateral_value,
        max_borrow=view.max_borrow,
        health=view.health,
        liquidatable=view.liquidatable,
        rate_exact=view.rate_exact,
        loan_usd=loan_usd,
        price_stale=snapshot.stale,
    )
