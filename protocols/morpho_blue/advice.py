"""What to do about a Morpho Blue account below a target health factor (pure): the smallest
amount of the loan token to repay, or of the collateral to add, that brings `max_borrow /
borrowed` to the target, by the contract's own arithmetic after interest accrues to the time
valued: a repayment of `assets` burns `assets.toSharesDown(totalBorrowAssets,
totalBorrowShares)` shares and takes `assets` off the total (zero-floored), and the borrowed
amount is then the remaining shares rounded up; added collateral raises `max_borrow`.
"""

from __future__ import annotations

from typing import Any

from protocols.morpho_blue import math as mm
from protocols.morpho_blue.state import Position
from protocols.morpho_blue.value import MarketSnapshot
from schemas.stress import first_reaching, move_json, smallest_failing

MAX_COLLATERAL = (1 << 128) - 1  # Morpho keeps collateral as uint128


def advice(
    snapshot: MarketSnapshot,
    position: Position,
    timestamp: int,
    target_wad: int,
    loan_usd: float | None,
) -> dict[str, Any] | None:
    """The account's health at `timestamp` against the target and, below it, the repayment
    and the collateral that each reach it (None: the market's price was never read)."""
    if snapshot.price is None:
        return None
    market, info, price = snapshot.market, snapshot.info, snapshot.price
    lltv = market.params.lltv
    totals = mm.expected_market_balances(
        market.totals, timestamp, snapshot.borrow_rate, has_irm=market.has_irm
    )
    shares = position.borrow_shares
    borrowed = mm.to_assets_up(shares, totals.total_borrow_assets, totals.total_borrow_shares)
    max_borrow = mm.max_borrow(position.collateral, price, lltv)
    health = mm.health_factor(max_borrow, borrowed) if shares else None
    below = health is not None and health < target_wad

    def repaid(assets: int) -> bool:
        burned = mm.to_shares_down(assets, totals.total_borrow_assets, totals.total_borrow_shares)
        if burned > shares:  # the contract would underflow and revert
            return False
        left = shares - burned
        if left == 0:
            return True
        total_shares = totals.total_borrow_shares - burned
        total_assets = mm.zero_floor_sub(totals.total_borrow_assets, assets)
        owed = mm.to_assets_up(left, total_assets, total_shares)
        found = mm.health_factor(max_borrow, owed)
        return found is None or found >= target_wad

    def supplied(assets: int) -> bool:
        grown = mm.max_borrow(position.collateral + assets, price, lltv)
        found = mm.health_factor(grown, borrowed)
        return found is None or found >= target_wad

    repay, add = [], []
    if below:
        unit = 10**info.loan_decimals
        # Repaying by assets burns shares rounded down from them; past the account's shares
        # the contract reverts (a whole repayment goes by shares), so the search stops there.
        over = smallest_failing(
            lambda assets: (
                mm.to_shares_down(assets, totals.total_borrow_assets, totals.total_borrow_shares)
                > shares
            ),
            borrowed,
        )
        most = borrowed if over is None else over - 1
        amount = first_reaching(repaid, most)
        usd = None if amount is None or loan_usd is None else amount * loan_usd / unit
        repay.append(
            move_json(
                info.loan_symbol,
                info.loan_token,
                info.loan_decimals,
                mm.ORACLE_PRICE_SCALE,
                amount,
                borrowed,
                usd,
            )
        )
        amount = first_reaching(supplied, MAX_COLLATERAL - position.collateral)
        usd = (
            None
            if amount is None or loan_usd is None
            else mm.collateral_value(amount, price) * loan_usd / unit
        )
        add.append(
            move_json(
                info.collateral_symbol,
                info.collateral_token,
                info.collateral_decimals,
                price,
                amount,
                None,
                usd,
            )
        )
    return {
        "health_factor": str(mm.MAX_UINT256 if health is None else health),
        "target": str(target_wad),
        "below_target": below,
        "repay": repay,
        "add_collateral": add,
    }
