"""Aave V3 accounts under a stress scenario (schemas/stress.py), valued by `value_account`,
the function that values them live, so a stressed health factor is what
`getUserAccountData` would answer with the oracle at the shocked prices.

- `stressed`: the account with each reserve's oracle answer moved by the scenario's shock,
  interest accrued `horizon` seconds further at the block's rates;
- `liquidation_drop_bps`: the smallest uniform drop of the prices of the assets the account
  uses as collateral (whole basis points, at the block's prices) at which its health factor
  falls below 1 (ValidationLogic's liquidation condition); 0 if it is already below;
- `time_to_liquidation_seconds`: with the block's prices held, the first second at which
  interest alone takes it there (None: not within a century, or no debt).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from protocols.aave_v3.math import HEALTH_FACTOR_LIQUIDATION_THRESHOLD
from protocols.aave_v3.state import value_account
from schemas.lending import AaveAccount, AccountValue, OraclePrice, account_json
from schemas.positions import BlockRef
from schemas.stress import Scenario, lending_stress_json, liquidation_edges, shocked

if TYPE_CHECKING:  # the market view lives in read.py, which imports this module
    from protocols.aave_v3.read import AaveMarketView


def value_at(
    market: AaveMarketView, account: AaveAccount, prices: dict[str, OraclePrice], at: int
) -> AccountValue:
    return value_account(
        account, market.reserves, market.rates, prices, market.emode, at, version=market.version
    )


def liquidatable(value: AccountValue) -> bool:
    return value.total_debt_base > 0 and value.health_factor < HEALTH_FACTOR_LIQUIDATION_THRESHOLD


def _moved(prices: dict[str, OraclePrice], moves: Mapping[str, int]) -> dict[str, OraclePrice]:
    return {
        asset: dataclasses.replace(p, answer=shocked(p.answer, moves[asset]))
        if moves.get(asset)
        else p
        for asset, p in prices.items()
    }


def stressed_value(
    account: AaveAccount, market: AaveMarketView, scenario: Scenario
) -> tuple[dict[str, int], AccountValue]:
    """The moves the scenario makes to the account's reserves' prices, and its value then."""
    moves = {
        asset: scenario.bps(asset, info.symbol)
        for asset, info in market.reserves.items()
        if asset in account.reserves
    }
    prices = _moved(market.prices, moves)
    return moves, value_at(market, account, prices, market.block.timestamp + scenario.horizon)


def stress_account(
    account: AaveAccount, market: AaveMarketView, scenario: Scenario, updated_block: int
) -> dict[str, Any]:
    """One account now and under the scenario, with how far it is from liquidation."""
    block: BlockRef = market.block
    now = market.value(account)
    moves, stressed = stressed_value(account, market, scenario)

    collateral = {r.asset for r in now.reserves if r.collateral and r.supplied > 0}

    def liquidatable_at(drops: Mapping[str, int], seconds: int) -> bool:
        prices = _moved(market.prices, drops)
        return liquidatable(value_at(market, account, prices, block.timestamp + seconds))

    drop, seconds = liquidation_edges(liquidatable_at, collateral, now.total_debt_base > 0)
    return lending_stress_json(
        account_json(account, now, market.reserves, block, updated_block),
        account_json(account, stressed, market.reserves, block, updated_block),
        moves,
        liquidatable(stressed),
        drop,
        seconds,
    )
