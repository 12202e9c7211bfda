"""Compound V3 accounts under a stress scenario (schemas/stress.py), valued by
`value_comet_account`, the function that values them live. A comet prices by feed, so a shock
moves the feed of each asset it names (the base token's too, when named: a stablecoin base
stays under `*`). Liquidatable means what `absorb` would see: the account after interest is
accrued to the time valued (`absorbable`); `now`/`stressed` also carry `is_liquidatable`, the
comet's own view on its stored indices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols.compound_v3.state import CometMarketView, value_comet_account
from schemas.comet import CometAccount, CometAccountValue, comet_account_json
from schemas.stress import Scenario, lending_stress_json, liquidation_edges, shocked


def liquidatable(value: CometAccountValue) -> bool:
    return bool(value.absorbable if value.absorbable is not None else value.is_liquidatable)


def _feeds(market: CometMarketView) -> dict[str, tuple[str, str]]:
    """Each asset's (price feed, symbol), the base token's included."""
    config = market.config
    out = {config.base_token: (config.base_token_price_feed, config.base_symbol)}
    out.update({a.asset: (a.price_feed, a.symbol) for a in config.assets})
    return out


def stress_account(
    account: CometAccount, market: CometMarketView, scenario: Scenario, updated_block: int
) -> dict[str, Any]:
    """One account now and under the scenario, with how far it is from liquidation."""
    feeds = _feeds(market)

    def value(moves: Mapping[str, int], seconds: int) -> CometAccountValue:
        prices = dict(market.prices)
        for asset, bps in moves.items():
            feed = feeds[asset][0]
            if bps and feed in prices:
                prices[feed] = shocked(prices[feed], bps)
        return value_comet_account(
            account, market.config, market.totals, prices, market.block.timestamp + seconds
        )

    held = {market.config.base_token, *account.collateral}
    moves = {asset: scenario.bps(asset, feeds[asset][1]) for asset in sorted(held & set(feeds))}
    now = market.value(account)
    stressed = value(moves, scenario.horizon)
    collateral = {c.asset for c in now.collaterals if c.balance > 0}
    drop, seconds = liquidation_edges(
        lambda drops, after: liquidatable(value(drops, after)), collateral, now.borrowed > 0
    )
    block = market.block
    return lending_stress_json(
        comet_account_json(account, now, market.config, block, updated_block),
        comet_account_json(account, stressed, market.config, block, updated_block),
        moves,
        liquidatable(stressed),
        drop,
        seconds,
    )
