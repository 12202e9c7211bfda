"""ERC-20 balances of tracked wallets read back from the store (protocols/read_side.py).

A balance at block N is the wallet's latest stored balance of the token at or before N, priced
at the token's routed USD price at or before N. Balances are the portfolio's `balances`, not
subjects of /v1/positions.

Its part of the diff (`balance_change`): the earlier amount repriced at the later price is
`price`; the rest (transfers in and out) is `actions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols.erc20.book import STAGE, balance_value
from protocols.read_side import AsOf, Change, ReadContext, ReadSide, latest_rows, token_usd
from schemas.balances import balance_json
from schemas.chain import TokenInfo
from schemas.stress import BPS, Scenario


def balances(ctx: ReadContext, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
    """The wallet's non-zero ERC-20 balances at the block, priced as of that block."""
    rows = ctx.store.rows(
        latest_rows(
            "token_balances",
            "token, balance, block_number",
            "token",
            " AND wallet = {owner:String}",
        ),
        {"chain": as_of.chain_id, "block": as_of.number, "owner": owner},
    )
    held = [(r[0], int(r[1]), int(r[2])) for r in rows if int(r[1])]
    if not held:
        return []
    tokens = [token for token, _balance, _block in held]
    meta = ctx.token_info(as_of.chain_id, tokens)
    prices = ctx.token_prices(as_of, tokens)
    ref = as_of.ref()
    out = []
    for token, balance, updated in held:
        # A token whose metadata could not be read: 18 decimals is the ERC-20 default.
        info = meta.get(token) or TokenInfo(token, "???", 18)
        price, price_block = prices.get(token, (None, None))
        value = balance_value(balance, info.decimals, price)
        out.append(
            balance_json(
                as_of.chain_id, owner, info, balance, price, price_block, value, ref, updated
            )
        )
    return out


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
            price = token_usd(int(before["amount"]), int(before["decimals"]), p1 - p0)
    return Change(subject_id, STAGE, v0, v1, price=price, actions=v1 - v0 - price)


def stressed_balance(balance: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """A `balance_json` now and with its token's USD price moved by the scenario's shock."""
    bps = scenario.bps(balance["token"], balance["symbol"])
    moved = dict(balance)
    for key in ("price_usd", "value_usd"):
        if moved[key] is not None:
            moved[key] = moved[key] * (BPS + bps) / BPS
    return {
        "id": f"{balance['chain_id']}:{balance['wallet']}:{balance['token']}",
        "protocol": STAGE,
        "chain_id": balance["chain_id"],
        "token": balance["token"],
        "owner": balance["wallet"],
        "shocks_bps": {balance["token"]: bps} if bps else {},
        "now": balance,
        "stressed": moved,
    }


class Erc20Read(ReadSide):
    name = STAGE
    section = "balances"
    head_reads = frozenset({"token_balances"})
    stresses = True

    def portfolio(self, ctx: ReadContext, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        return balances(ctx, owner, as_of)

    def stress(
        self, ctx: ReadContext, owner: str, as_of: AsOf, scenario: Scenario
    ) -> list[dict[str, Any]]:
        return [stressed_balance(b, scenario) for b in balances(ctx, owner, as_of)]

    def changes(self, ctx: ReadContext, owner: str, start: AsOf, end: AsOf) -> list[Change]:
        b0 = {b["token"]: b for b in balances(ctx, owner, start)}
        b1 = {b["token"]: b for b in balances(ctx, owner, end)}
        return [
            balance_change(f"{start.chain_id}:{owner}:{token}", b0.get(token), b1.get(token))
            for token in sorted(set(b0) | set(b1))
        ]


READ_SIDE = Erc20Read()
