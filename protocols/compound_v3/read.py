"""Compound V3 (Comet) accounts read back from the store (protocols/read_side.py).

An account at block N is its principal and collateral from their latest versions at or before
N, valued with the comet's configuration, stored totals and prices then, accrued to N's time by
the flow's own function, in the lending account shape.

Its part of the diff (`comet_change`) splits each account as an Aave account's is split, on the
contract's integers (USD with 8 decimals), so its parts are exact integer differences, made
floats last.

Its accounts keep no windows (the flow observes none), so `subject_exists` stays False:
/v1/positions/{id}/windows has nothing to say about them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from protocols.compound_v3.state import CometMarketView, net_value, prices_held
from protocols.compound_v3.stress import stress_account
from protocols.read_side import (
    ALL,
    ALL_UNTIMED,
    AsOf,
    Change,
    ReadContext,
    ReadSide,
    exact_lending_change,
    latest_rows,
    per_account,
)
from schemas.comet import (
    PRICE_UNIT,
    PROTOCOL_COMPOUND_V3,
    CometAccount,
    CometAssetInfo,
    CometConfig,
    CometTotalsBasic,
    comet_account_json,
)
from schemas.stress import Scenario


def comet_subjects(
    ctx: ReadContext, as_of: AsOf, owners: Sequence[str] | None, comets: Sequence[str] | None
) -> list[dict[str, Any]]:
    """Open Compound V3 accounts at the block (of these owners; on these comets), valued
    as the flow values them, in the lending account shape."""
    held = open_accounts(ctx, as_of, owners, comets)
    if not held:
        return []
    found = markets(ctx, as_of, sorted({a.comet for a, _ in held}))
    out = []
    for account, updated in held:
        market = found.get(account.comet)
        if market is None:
            continue  # the comet was not readable at that block: nothing exact to say
        out.append(
            comet_account_json(account, market.value(account), market.config, market.block, updated)
        )
    return out


def open_accounts(
    ctx: ReadContext, as_of: AsOf, owners: Sequence[str] | None, comets: Sequence[str] | None
) -> list[tuple[CometAccount, int]]:
    """Open Compound V3 accounts at the block, with the block of their latest version."""
    params: dict[str, Any] = {"chain": as_of.chain_id, "block": as_of.number}
    where = ""
    if owners is not None:
        where += " AND owner IN {owners:Array(String)}"
        params["owners"] = list(owners)
    if comets is not None:
        where += " AND comet IN {comets:Array(String)}"
        params["comets"] = list(comets)
    rows = ctx.store.dicts(
        latest_rows(
            "comet_account_versions",
            "account_id, comet, owner, asset, principal, assets_in, collateral, "
            "block_number, log_index",
            "account_id, asset",
            where,
            log_index=True,
        ),
        params,
    )
    out = []
    for aid, versions, latest in per_account(rows):
        account = CometAccount(
            as_of.chain_id,
            latest["comet"],
            latest["owner"],
            aid,
            int(latest["principal"]),
            int(latest["assets_in"]),
            {r["asset"]: int(r["collateral"]) for r in versions if r["asset"] and r["collateral"]},
        )
        if account.is_open:  # else a closed account
            out.append((account, int(latest["block_number"])))
    return out


def markets(ctx: ReadContext, as_of: AsOf, comets: Sequence[str]) -> dict[str, CometMarketView]:
    """Each comet's configuration, stored totals and prices at the block (a comet with no
    configuration or totals read by then is left out)."""
    if not comets:
        return {}
    ref = ctx.timed_ref(as_of)
    by_comet = {"chain": as_of.chain_id, "block": as_of.number, "comets": list(comets)}
    in_comets = " AND comet IN {comets:Array(String)}"
    config_rows = ctx.store.dicts(latest_rows("comet_configs", ALL, "comet", in_comets), by_comet)
    asset_rows = ctx.store.dicts(
        latest_rows("comet_assets", ALL, "comet, asset_offset", in_comets), by_comet
    )
    totals_rows = ctx.store.dicts(
        latest_rows("comet_totals", ALL_UNTIMED, "comet", in_comets), by_comet
    )
    price_rows = ctx.store.dicts(
        latest_rows("comet_prices", "comet, feed, price", "comet, feed", in_comets), by_comet
    )
    configs = {}
    for c in config_rows:
        assets = tuple(
            CometAssetInfo(
                int(a["asset_offset"]),
                a["asset"],
                a["price_feed"],
                int(a["scale"]),
                int(a["borrow_collateral_factor"]),
                int(a["liquidate_collateral_factor"]),
                int(a["liquidation_factor"]),
                int(a["supply_cap"]),
                a["symbol"],
            )
            # The assets written with that configuration (an upgrade rewrites them all).
            for a in asset_rows
            if a["comet"] == c["comet"] and a["block_number"] == c["block_number"]
        )
        configs[c["comet"]] = CometConfig(
            comet=c["comet"],
            base_token=c["base_token"],
            base_token_price_feed=c["base_token_price_feed"],
            base_scale=int(c["base_scale"]),
            supply_kink=int(c["supply_kink"]),
            supply_per_second_interest_rate_base=int(c["supply_per_second_interest_rate_base"]),
            supply_per_second_interest_rate_slope_low=int(
                c["supply_per_second_interest_rate_slope_low"]
            ),
            supply_per_second_interest_rate_slope_high=int(
                c["supply_per_second_interest_rate_slope_high"]
            ),
            borrow_kink=int(c["borrow_kink"]),
            borrow_per_second_interest_rate_base=int(c["borrow_per_second_interest_rate_base"]),
            borrow_per_second_interest_rate_slope_low=int(
                c["borrow_per_second_interest_rate_slope_low"]
            ),
            borrow_per_second_interest_rate_slope_high=int(
                c["borrow_per_second_interest_rate_slope_high"]
            ),
            store_front_price_factor=int(c["store_front_price_factor"]),
            base_borrow_min=int(c["base_borrow_min"]),
            assets=assets,
            base_symbol=c["base_symbol"],
        )
    totals = {
        t["comet"]: CometTotalsBasic(
            int(t["base_supply_index"]),
            int(t["base_borrow_index"]),
            int(t["tracking_supply_index"]),
            int(t["tracking_borrow_index"]),
            int(t["total_supply_base"]),
            int(t["total_borrow_base"]),
            int(t["last_accrual_time"]),
            int(t["pause_flags"]),
        )
        for t in totals_rows
    }
    prices: dict[str, dict[str, int]] = {}
    for p in price_rows:
        prices.setdefault(p["comet"], {})[p["feed"]] = int(p["price"])
    return {
        comet: CometMarketView(ref, config, totals[comet], prices.get(comet, {}))
        for comet, config in configs.items()
        if comet in totals
    }


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


class CompoundV3Read(ReadSide):
    name = PROTOCOL_COMPOUND_V3
    section = "lending"
    alert_kinds = frozenset({"health_factor_below"})
    head_reads = frozenset(
        {"comet_account_versions", "comet_configs", "comet_assets", "comet_totals", "comet_prices"}
    )
    stresses = True

    def portfolio(self, ctx: ReadContext, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        return comet_subjects(ctx, as_of, [owner], None)

    def stress(
        self, ctx: ReadContext, owner: str, as_of: AsOf, scenario: Scenario
    ) -> list[dict[str, Any]]:
        held = open_accounts(ctx, as_of, [owner], None)
        found = markets(ctx, as_of, sorted({a.comet for a, _ in held}))
        return [
            stress_account(account, found[account.comet], scenario, updated)
            for account, updated in held
            if account.comet in found  # a comet not readable then: nothing exact to say
        ]

    def subjects(
        self,
        ctx: ReadContext,
        as_of: AsOf,
        owners: Sequence[str] | None,
        tokens: Sequence[str] | None,
        pools: Sequence[str] | None,
    ) -> list[dict[str, Any]]:
        # A token condition is left to the filter: an account holds its comet's base token,
        # which is no column of its versions.
        return comet_subjects(ctx, as_of, owners, pools)

    def changes(self, ctx: ReadContext, owner: str, start: AsOf, end: AsOf) -> list[Change]:
        c0 = {a.account_id: a for a, _ in open_accounts(ctx, start, [owner], None)}
        c1 = {a.account_id: a for a, _ in open_accounts(ctx, end, [owner], None)}
        comets = sorted({a.comet for a in (*c0.values(), *c1.values())})
        k0, k1 = markets(ctx, start, comets), markets(ctx, end, comets)
        changes = []
        for cid in sorted(set(c0) | set(c1)):
            before, after = c0.get(cid), c1.get(cid)
            comet = (before or after).comet  # type: ignore[union-attr]
            changes.append(comet_change(cid, before, after, k0.get(comet), k1.get(comet)))
        return changes


READ_SIDE = CompoundV3Read()
