"""What to do about an Aave V3 account below a target health factor (pure): the smallest
integer amount of each debt asset to repay, or of each collateral asset to supply, that
brings it to the target, found by revaluing the account after the move with `value_account`,
the function that values it live.

A repayment burns `variable_debt_burn_scaled(amount, index)` scaled debt and a supply mints
`a_token_mint_scaled(amount, index)` scaled aTokens, as the Pool does for the release in force
at the block's indices (accrued to the time valued), so "one unit less does not reach it" is
the contract's arithmetic, not an estimate. Repayment is capped at the debt (the Pool pays back
at most that); supply is offered for assets the account already uses as collateral (a first
supply's automatic collateral switch depends on isolation rules this does not guess).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from protocols.aave_v3 import math as am
from protocols.aave_v3.state import math_version, normalized_indices
from protocols.aave_v3.stress import value_at
from schemas.lending import BASE_UNIT, AaveAccount, AccountReserveState
from schemas.stress import first_reaching, move_json

if TYPE_CHECKING:  # the market view lives in read.py, which imports this module
    from protocols.aave_v3.read import AaveMarketView

MAX_SUPPLY = (1 << 128) - 1  # aToken balances are uint128


def amount_usd(amount: int | None, price: int, decimals: int) -> float | None:
    return None if amount is None else amount * price / BASE_UNIT / 10**decimals


def _with(account: AaveAccount, held: AccountReserveState) -> AaveAccount:
    return dataclasses.replace(account, reserves={**account.reserves, held.asset: held})


def _repaid(
    held: AccountReserveState, index: int, rules: am.AaveVersion, amount: int
) -> AccountReserveState:
    """The reserve after repaying `amount` of its variable debt (the Pool's burn)."""
    burned = am.variable_debt_burn_scaled(amount, index, rules)
    return dataclasses.replace(
        held, scaled_variable_debt=max(0, held.scaled_variable_debt - burned)
    )


def _supplied(
    held: AccountReserveState, index: int, rules: am.AaveVersion, amount: int
) -> AccountReserveState:
    """The reserve after supplying `amount` (the Pool's mint)."""
    minted = am.a_token_mint_scaled(amount, index, rules)
    return dataclasses.replace(held, scaled_supply=held.scaled_supply + minted)


def advice(
    account: AaveAccount, market: AaveMarketView, target_wad: int, timestamp: int
) -> dict[str, Any]:
    """The account's health at `timestamp` against the target, and, below it, each single
    move that reaches it: repay one debt asset, or supply one collateral asset."""
    rules = math_version(market.version)

    def health(changed: AaveAccount) -> int:
        return value_at(market, changed, market.prices, timestamp).health_factor

    now = value_at(market, account, market.prices, timestamp)
    below = now.total_debt_base > 0 and now.health_factor < target_wad
    repay: list[dict[str, Any]] = []
    supply: list[dict[str, Any]] = []

    def reaches(change: Callable[[int], AccountReserveState]) -> Callable[[int], bool]:
        return lambda units: health(_with(account, change(units))) >= target_wad

    for r in now.reserves if below else ():
        held, info = account.reserves[r.asset], market.reserves[r.asset]
        income, debt_index = normalized_indices(market.rates[r.asset], timestamp, rules)
        if held.scaled_variable_debt and r.debt:
            repaid = reaches(partial(_repaid, held, debt_index, rules))
            amount = first_reaching(repaid, r.debt)
            repay.append(
                move_json(
                    info.symbol,
                    r.asset,
                    info.decimals,
                    r.price,
                    amount,
                    r.debt,
                    amount_usd(amount, r.price, info.decimals),
                )
            )
        if held.collateral and info.liquidation_threshold > 0:
            supplied = reaches(partial(_supplied, held, income, rules))
            amount = first_reaching(supplied, MAX_SUPPLY)
            supply.append(
                move_json(
                    info.symbol,
                    r.asset,
                    info.decimals,
                    r.price,
                    amount,
                    None,
                    amount_usd(amount, r.price, info.decimals),
                )
            )
    return {
        "health_factor": str(now.health_factor),
        "target": str(target_wad),
        "below_target": below,
        "repay": repay,
        "add_collateral": supply,
    }
