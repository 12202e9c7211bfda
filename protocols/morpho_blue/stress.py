"""Morpho Blue accounts under a stress scenario (schemas/stress.py), valued by
`account_value`, the function that values them live. A market's oracle gives one price, loan
units per collateral unit (1e36 scale), so a shock moves it by both assets' moves:
`price * (10,000 + collateral bp) // (10,000 + loan bp)`, rounded down once (with the loan
unmoved, exactly what a feed set to the shocked collateral price would give). The uniform
drop moves the collateral alone; liquidatable is `!_isHealthy`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from protocols.morpho_blue.state import Position
from protocols.morpho_blue.value import MarketSnapshot, account_value
from schemas.morpho import MorphoAccountValue, morpho_account_json
from schemas.positions import BlockRef
from schemas.stress import BPS, Scenario, lending_stress_json, liquidation_edges


def moved_price(price: int, collateral_bps: int, loan_bps: int) -> int:
    return price * (BPS + collateral_bps) // (BPS + loan_bps)


def stress_account(
    morpho: str,
    owner: str,
    position: Position,
    snapshot: MarketSnapshot,
    block: BlockRef,
    loan_usd: float | None,
    scenario: Scenario,
    updated_block: int,
) -> dict[str, Any] | None:
    """One account now and under the scenario (None: the market's price was never read)."""
    info = snapshot.info
    coll_bps = scenario.bps(info.collateral_token, info.collateral_symbol)
    loan_bps = scenario.bps(info.loan_token, info.loan_symbol)
    now = account_value(snapshot, position, owner, block.timestamp, loan_usd)
    if now is None or snapshot.price is None:
        return None
    price = snapshot.price

    def value(price_now: int, seconds: int, usd: float | None) -> MorphoAccountValue:
        moved = replace(snapshot, price=price_now)
        found = account_value(moved, position, owner, block.timestamp + seconds, usd)
        assert found is not None  # a price is set
        return found

    stressed_usd = None if loan_usd is None else loan_usd * (BPS + loan_bps) / BPS
    stressed = value(moved_price(price, coll_bps, loan_bps), scenario.horizon, stressed_usd)
    drop, seconds = liquidation_edges(
        lambda drops, after: (
            value(
                moved_price(price, drops.get(info.collateral_token, 0), 0), after, loan_usd
            ).liquidatable
        ),
        [info.collateral_token] if position.collateral > 0 else [],
        now.borrow_assets > 0,
    )
    shocks = {info.collateral_token: coll_bps, info.loan_token: loan_bps}
    return lending_stress_json(
        morpho_account_json(block.chain_id, morpho, owner, info, now, block, updated_block),
        morpho_account_json(block.chain_id, morpho, owner, info, stressed, block, updated_block),
        shocks,
        stressed.liquidatable,
        drop,
        seconds,
    )
