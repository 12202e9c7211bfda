"""defimon's Comet math and valuation against Comet's own bytecode.

The vectors (tests/vectors/comet_v3.json) come from labs/comet_vectors/comet_lab.py: Comet and
CometExt compiled from compound-finance/comet (see `source` in the file) with solc 0.8.15 as
its hardhat config says, deployed on anvil with the mainnet USDC market's parameters, then
random rate and quote cases through the comet's views and a random scenario of accounts
through its own logic (supply, supplyTo, borrow, repay, base and collateral transfers, price
moves, time jumps, absorbs, collateral sales), with every account's views after every block.
Each test recomputes what the comet answered from what defimon reads (`totalsBasic`,
`userBasic`, `userCollateral`, `getPrice`, the configuration getters): 0 mismatches.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from protocols.compound_v3 import math as cm
from protocols.compound_v3.state import rate_params, value_comet_account
from schemas.comet import CometAccount, CometAssetInfo, CometConfig, CometTotalsBasic

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "comet_v3.json"


@cache
def vectors() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(VECTORS.read_text())
    return loaded


@cache
def config() -> CometConfig:
    raw = vectors()["config"]
    w = raw["words"]
    assets = tuple(
        CometAssetInfo(offset, asset, feed, scale, bcf, lcf, lf, cap, symbol)
        for symbol, offset, asset, feed, scale, bcf, lcf, lf, cap in raw["assets"]
    )
    return CometConfig(
        comet=raw["comet"],
        base_token=raw["base"],
        base_token_price_feed=raw["base_feed"],
        base_scale=w["baseScale"],
        supply_kink=w["supplyKink"],
        supply_per_second_interest_rate_base=w["supplyPerSecondInterestRateBase"],
        supply_per_second_interest_rate_slope_low=w["supplyPerSecondInterestRateSlopeLow"],
        supply_per_second_interest_rate_slope_high=w["supplyPerSecondInterestRateSlopeHigh"],
        borrow_kink=w["borrowKink"],
        borrow_per_second_interest_rate_base=w["borrowPerSecondInterestRateBase"],
        borrow_per_second_interest_rate_slope_low=w["borrowPerSecondInterestRateSlopeLow"],
        borrow_per_second_interest_rate_slope_high=w["borrowPerSecondInterestRateSlopeHigh"],
        store_front_price_factor=w["storeFrontPriceFactor"],
        base_borrow_min=w["baseBorrowMin"],
        assets=assets,
    )


def prices(snapshot: dict[str, Any]) -> dict[str, int]:
    return dict(zip(vectors()["feeds"], snapshot["prices"], strict=True))


def account(user: str, state: list[Any]) -> CometAccount:
    principal, assets_in, collateral = state[0], state[1], state[2]
    held = {a.asset: b for a, b in zip(config().assets, collateral, strict=True) if b}
    return CometAccount(1, config().comet, user, f"1:{user}", principal, assets_in, held)


def collaterals(state: list[Any], snapshot: dict[str, Any]) -> list[cm.CometCollateral]:
    """The assets the account is in, in offset order, as Comet's loops walk them."""
    p = prices(snapshot)
    return [
        cm.CometCollateral(
            state[2][a.offset],
            p[a.price_feed],
            a.scale,
            a.liquidate_collateral_factor,
            a.borrow_collateral_factor,
            a.liquidation_factor,
            a.asset,
        )
        for a in config().assets
        if state[1] & (1 << a.offset)
    ]


def test_the_vectors_cover_the_scenario() -> None:
    v = vectors()
    actions = {s["action"] for s in v["snapshots"]}
    assert {"borrow", "transfer_base", "transfer_collateral", "price", "time", "absorb"} <= actions
    states = sum(len(s["accounts"]) for s in v["snapshots"])
    assert len(v["rates"]) >= 1000 and len(v["quotes"]) >= 300 and states >= 2000
    assert v["absorbs"], "the scenario absorbed no one"
    assert v["source"].startswith("compound-finance/comet ")


def test_supply_and_borrow_rates_equal_the_comets() -> None:
    params = rate_params(config())
    bad = [
        (u, supply, borrow, cm.supply_rate(u, params), cm.borrow_rate(u, params))
        for u, supply, borrow in vectors()["rates"]
        if (cm.supply_rate(u, params), cm.borrow_rate(u, params)) != (supply, borrow)
    ]
    assert bad == []


def test_per_year_rates_convert_as_the_constructor_does() -> None:
    c = config()
    params = cm.InterestRateParams.from_per_year(
        supply_kink=800_000_000_000_000_000,
        supply_per_year_interest_rate_base=0,
        supply_per_year_interest_rate_slope_low=32_500_000_000_000_000,
        supply_per_year_interest_rate_slope_high=400_000_000_000_000_000,
        borrow_kink=800_000_000_000_000_000,
        borrow_per_year_interest_rate_base=15_000_000_000_000_000,
        borrow_per_year_interest_rate_slope_low=35_000_000_000_000_000,
        borrow_per_year_interest_rate_slope_high=250_000_000_000_000_000,
    )
    assert params == rate_params(c)


def test_quote_collateral_equals_the_comets() -> None:
    c = config()
    bad = []
    for index, amount, asset_price, base_price, quote in vectors()["quotes"]:
        info = c.assets[index]
        found = cm.quote_collateral(
            amount,
            asset_price=asset_price,
            base_price=base_price,
            asset_scale=info.scale,
            base_scale=c.base_scale,
            liquidation_factor=info.liquidation_factor,
            store_front_price_factor=c.store_front_price_factor,
        )
        if found != quote:
            bad.append((index, amount, asset_price, base_price, quote, found))
    assert bad == []


def test_every_account_at_every_block_equals_the_comets_views() -> None:
    """balanceOf, borrowBalanceOf (accrued to the block's time from the stored totals),
    collateralBalanceOf, isLiquidatable and isBorrowCollateralized, for every account after
    every block of the scenario."""
    c = config()
    bad = []
    for snap in vectors()["snapshots"]:
        totals = CometTotalsBasic(*snap["totals"])
        for user, state in snap["accounts"].items():
            value = value_comet_account(
                account(user, state), c, totals, prices(snap), snap["timestamp"]
            )
            held = {x.asset: x.balance for x in value.collaterals}
            served = (
                value.supplied,
                value.borrowed,
                [held.get(a.asset, 0) for a in c.assets],
                bool(value.is_liquidatable),
                cm.is_borrow_collateralized(
                    state[0], totals.base_supply_index, totals.base_borrow_index,
                    prices(snap)[c.base_token_price_feed], c.base_scale, collaterals(state, snap),
                ),
            )  # fmt: skip
            # state: principal, assetsIn, collateral, balanceOf, borrowBalanceOf,
            # isLiquidatable, isBorrowCollateralized
            if served != (state[3], state[4], state[2], state[5], state[6]):
                bad.append((snap["block"], snap["action"], user, served, state))
    assert bad == []


def test_absorb_outcomes_equal_the_comets() -> None:
    """Comet.absorb on a liquidatable account: the principal it leaves, from the account
    before and the indices after the absorb's own accrual."""
    c = config()
    bad = []
    for case in vectors()["absorbs"]:
        before, after, user = case["before"], case["after"], case["user"]
        state = before["accounts"][user]
        totals = CometTotalsBasic(*after["totals"])
        result = cm.absorb(
            state[0], totals.base_supply_index, totals.base_borrow_index,
            prices(before)[c.base_token_price_feed], c.base_scale, collaterals(state, before),
        )  # fmt: skip
        left = after["accounts"][user]
        if (result.new_principal, left[1], left[2]) != (left[0], 0, [0] * len(c.assets)):
            bad.append((before["block"], user, result, left))
    assert bad == []
