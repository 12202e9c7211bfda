"""Why a portfolio's value changed between two blocks (pure): price moves, interest, fees and
the owner's own actions, each in USD, summing exactly to the change.

Token balances: the earlier amount repriced at the later price is `price`; the rest
(transfers in and out) is `actions`.

LP positions (values from `position_json` at both ends):
- fees: growth of the position's lifetime fees (collected + owed by a static collect -
  principal withdrawn), in token units, valued at the later prices;
- actions: tokens the owner put in (deposits) minus what they took out (collects), valued at
  the later prices; a position that changed hands counts wholly as an action;
- price: the rest, which is the market's doing (including impermanent loss).

Lending accounts, Aave and Compound V3 alike (by counterfactual: the earlier account state
valued at the later block):
- interest: the earlier balances at the later indices and time, prices held at the earlier
  oracle answers, minus the earlier value;
- price: the earlier balances at the later indices, later prices minus earlier prices;
- actions: the rest (supplies, withdrawals, borrows, repayments, liquidations, absorbs).
Comet values are the contract's integers (USD with 8 decimals), so its parts are exact integer
differences, made floats last.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.compound_v3.state import CometMarketView, net_value, prices_held
from schemas.comet import PRICE_UNIT, PROTOCOL_COMPOUND_V3, CometAccount


@dataclass(frozen=True, slots=True)
class Change:
    id: str
    protocol: str
    value_from: float
    value_to: float
    price: float = 0.0
    interest: float = 0.0
    fees: float = 0.0
    actions: float = 0.0

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "protocol": self.protocol,
            "value_from": self.value_from,
            "value_to": self.value_to,
            "change": self.value_to - self.value_from,
            "price": self.price,
            "interest": self.interest,
            "fees": self.fees,
            "actions": self.actions,
        }


def _usd(amount: int, decimals: int, price: float | None) -> float:
    return 0.0 if price is None else amount * price / 10**decimals


def _lifetime_fees(p: Mapping[str, Any] | None, side: int) -> int:
    if p is None:
        return 0
    owed = p.get(f"uncollected{side}")
    return int(p[f"collected{side}"]) + int(owed or 0) - int(p[f"withdrawn{side}"])


def lp_change(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, transferred: bool
) -> Change:
    """One LP position; `before`/`after` are None where the wallet did not hold it."""
    ref = after or before
    assert ref is not None
    v0 = (before or {}).get("value_usd") or 0.0
    v1 = (after or {}).get("value_usd") or 0.0
    if transferred:
        return Change(ref["id"], ref["protocol"], v0, v1, actions=v1 - v0)
    prices = (ref.get("price0_usd"), ref.get("price1_usd"))
    decimals = (ref["token0"]["decimals"], ref["token1"]["decimals"])
    fees = actions = 0.0
    for side in (0, 1):
        price, dec = prices[side], decimals[side]
        fees += _usd(_lifetime_fees(after, side) - _lifetime_fees(before, side), dec, price)
        put_in = int((after or {}).get(f"deposited{side}", 0)) - int(
            (before or {}).get(f"deposited{side}", 0)
        )
        taken = int((after or {}).get(f"collected{side}", 0)) - int(
            (before or {}).get(f"collected{side}", 0)
        )
        actions += _usd(put_in - taken, dec, price)
    return Change(
        ref["id"],
        ref["protocol"],
        v0,
        v1,
        price=v1 - v0 - fees - actions,
        fees=fees,
        actions=actions,
    )


def lending_change(
    account_id: str,
    protocol: str,
    value_from: float,
    value_to: float,
    earlier_at_later_rates: float,
    earlier_at_later_block: float,
) -> Change:
    """One lending account, from its values: earlier state at the earlier block, at the later
    block's indices and time with the earlier prices, and wholly at the later block."""
    interest = earlier_at_later_rates - value_from
    price = earlier_at_later_block - earlier_at_later_rates
    return Change(
        account_id,
        protocol,
        value_from,
        value_to,
        price=price,
        interest=interest,
        actions=value_to - earlier_at_later_block,
    )


def exact_lending_change(
    account_id: str,
    protocol: str,
    unit: int,
    value_from: int,
    value_to: int,
    earlier_at_later_rates: int,
    earlier_at_later_block: int,
) -> Change:
    """`lending_change` on integer values (`unit` of them to the dollar): each part is an
    exact difference before it is divided, so nothing is lost subtracting close floats."""
    return Change(
        account_id,
        protocol,
        value_from / unit,
        value_to / unit,
        price=(earlier_at_later_block - earlier_at_later_rates) / unit,
        interest=(earlier_at_later_rates - value_from) / unit,
        actions=(value_to - earlier_at_later_block) / unit,
    )


def comet_change(
    account_id: str,
    before: CometAccount | None,
    after: CometAccount | None,
    earlier: CometMarketView | None,
    later: CometMarketView | None,
) -> Change:
    """One Compound V3 account, as `lending_change` splits an Aave one: the earlier principal
    and collateral at the later totals and time with the earlier prices (interest), then at
    the later prices (price); the rest is the owner's doing (or an absorb's). `before` and
    `after` are None where the account was closed or not yet open; a market is None where
    the comet was not readable by then (its accounts are in no portfolio at that block)."""
    v0 = net_value(earlier.value(before)) if earlier and before else 0
    v1 = net_value(later.value(after)) if later and after else 0
    if earlier is None or before is None or later is None:
        return exact_lending_change(account_id, PROTOCOL_COMPOUND_V3, PRICE_UNIT, v0, v1, v0, v0)
    held = prices_held(later.config, earlier.config, earlier.prices, later.prices)
    at_later_rates = dataclasses.replace(later, prices=held)
    return exact_lending_change(
        account_id,
        PROTOCOL_COMPOUND_V3,
        PRICE_UNIT,
        v0,
        v1,
        net_value(at_later_rates.value(before)),
        net_value(later.value(before)),
    )


def balance_change(
    subject_id: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> Change:
    """One token balance (`balance_json` at both ends): the earlier amount's repricing is the
    market's doing; the rest (transfers in and out) is the owner's."""
    v0 = (before or {}).get("value_usd") or 0.0
    v1 = (after or {}).get("value_usd") or 0.0
    price = 0.0
    if before is not None and after is not None:
        p0, p1 = before.get("price_usd"), after.get("price_usd")
        if p0 is not None and p1 is not None:
            price = _usd(int(before["amount"]), int(before["decimals"]), p1 - p0)
    return Change(subject_id, "erc20", v0, v1, price=price, actions=v1 - v0 - price)


def summarize(changes: list[Change]) -> dict[str, Any]:
    """The wallet's totals. `change` and each part are correctly rounded sums over the
    subjects (math.fsum): a wallet worth billions (a devnet deployer) has totals whose last
    bit is a microdollar, so the difference of the two rounded totals can miss the parts' sum
    by more than the parts' own rounding; summed per subject they agree."""
    total = {
        part: math.fsum(getattr(c, part) for c in changes)
        for part in ("price", "interest", "fees", "actions")
    }
    value_from = sum(c.value_from for c in changes)
    value_to = sum(c.value_to for c in changes)
    return {
        "value_from": value_from,
        "value_to": value_to,
        "change": math.fsum(c.value_to - c.value_from for c in changes),
        "explained": total,
        "subjects": [c.json() for c in sorted(changes, key=lambda c: c.id)],
    }
