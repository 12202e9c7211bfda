"""Aave V3 lending accounts read back from the store (protocols/read_side.py).

An account at block N is the latest version of each of its reserves at or before N, valued
as getUserAccountData would at N: the pool's reserves, rates, eMode categories and oracle
answers stored then, the Aave release in force, interest accrued to N's time.

Its part of the diff splits each account by counterfactual (`lending_change`): the earlier
balances at the later indices and time with the earlier oracle answers (interest), then at the
later answers (price); the rest is the owner's doing (or a liquidator's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocols.aave_v3.advice import advice
from protocols.aave_v3.state import PROTOCOL_AAVE_V3, account_id, holds_anything, value_account
from protocols.aave_v3.stress import stress_account
from protocols.read_side import (
    ALL,
    ALL_UNTIMED,
    AsOf,
    Change,
    ReadContext,
    ReadSide,
    latest_rows,
    lending_change,
    per_account,
)
from schemas.lending import (
    AAVE_VERSIONS,
    BASE_UNIT,
    AaveAccount,
    AccountReserveState,
    AccountValue,
    EModeInfo,
    OraclePrice,
    ReserveInfo,
    ReserveRates,
    account_json,
)
from schemas.liquidations import liquidation_json
from schemas.positions import BlockRef
from schemas.stress import Scenario


@dataclass(frozen=True, slots=True)
class AaveMarketView:
    """An Aave pool as of one block: enough to value any account state at that block."""

    block: BlockRef
    reserves: dict[str, ReserveInfo]
    rates: dict[str, ReserveRates]
    emode: dict[int, EModeInfo]
    prices: dict[str, OraclePrice]
    version: str = AAVE_VERSIONS[0]  # the Aave release in force at the block

    def value(self, account: AaveAccount) -> AccountValue:
        return value_account(
            account,
            self.reserves,
            self.rates,
            self.prices,
            self.emode,
            self.block.timestamp,
            version=self.version,
        )


def accounts(
    ctx: ReadContext,
    as_of: AsOf,
    owners: Sequence[str] | None,
    tokens: Sequence[str] | None = None,
    pools: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Aave accounts at the block (of these owners; holding any of these assets; in these
    pools), valued as getUserAccountData would."""
    held = open_accounts(ctx, as_of, owners, tokens, pools)
    if not held:
        return []
    found = markets(ctx, as_of, sorted({a.pool for a, _ in held}))
    out = []
    for account, updated in held:
        market = found[account.pool]
        out.append(
            account_json(account, market.value(account), market.reserves, market.block, updated)
        )
    return out


def open_accounts(
    ctx: ReadContext,
    as_of: AsOf,
    owners: Sequence[str] | None,
    tokens: Sequence[str] | None = None,
    pools: Sequence[str] | None = None,
) -> list[tuple[AaveAccount, int]]:
    """Open Aave accounts at the block, with the block of their latest version."""
    params: dict[str, Any] = {"chain": as_of.chain_id, "block": as_of.number}
    where = ""
    if owners is not None:
        where += " AND owner IN {owners:Array(String)}"
        params["owners"] = list(owners)
    if pools is not None:
        where += " AND pool IN {pools:Array(String)}"
        params["pools"] = list(pools)
    if tokens is not None:
        where += (
            " AND account_id IN (SELECT account_id FROM defimon.account_versions "
            "WHERE chain_id = {chain:UInt64} AND asset IN {tokens:Array(String)})"
        )
        params["tokens"] = list(tokens)
    rows = ctx.store.dicts(
        latest_rows(
            "account_versions",
            "account_id, pool, owner, asset, emode, scaled_supply, scaled_variable_debt, "
            "stable_principal, stable_rate, stable_updated, collateral, block_number, log_index",
            "account_id, asset",
            where,
            log_index=True,
        ),
        params,
    )
    out = []
    for aid, versions, latest in per_account(rows):
        account = AaveAccount(
            as_of.chain_id,
            latest["pool"],
            latest["owner"],
            aid,
            int(latest["emode"]),
            {
                r["asset"]: AccountReserveState(
                    r["asset"],
                    int(r["scaled_supply"]),
                    int(r["scaled_variable_debt"]),
                    int(r["stable_principal"]),
                    int(r["stable_rate"]),
                    int(r["stable_updated"]),
                    bool(r["collateral"]),
                )
                for r in versions
                if r["asset"]
            },
        )
        if holds_anything(account):  # else a closed account
            out.append((account, int(latest["block_number"])))
    return out


def markets(ctx: ReadContext, as_of: AsOf, pools: Sequence[str]) -> dict[str, AaveMarketView]:
    """Each Aave pool's reserves, rates, eMode categories and oracle prices at the block."""
    ref = ctx.timed_ref(as_of)
    by_pool = {"chain": as_of.chain_id, "block": as_of.number, "pools": list(pools)}
    in_pools = " AND pool IN {pools:Array(String)}"
    reserve_rows = ctx.store.dicts(
        latest_rows("aave_reserves", ALL, "pool, asset", in_pools), by_pool
    )
    rate_rows = ctx.store.dicts(
        latest_rows("aave_reserve_rates", ALL_UNTIMED, "pool, asset", in_pools), by_pool
    )
    emode_rows = ctx.store.dicts(
        latest_rows("aave_emode_categories", ALL, "pool, category", in_pools), by_pool
    )
    version_rows = ctx.store.dicts(
        latest_rows("aave_pool_versions", "pool, aave_version", "pool", in_pools), by_pool
    )
    versions = {v["pool"]: v["aave_version"] for v in version_rows}
    assets = sorted({r["asset"] for r in reserve_rows})
    price_rows = ctx.store.dicts(
        latest_rows(
            "oracle_prices",
            "asset, feed, answer, round_id, updated_at, block_number, stale",
            "asset",
            " AND asset IN {assets:Array(String)}",
        ),
        {"chain": as_of.chain_id, "block": as_of.number, "assets": assets},
    )
    prices = {
        p["asset"]: OraclePrice(
            p["asset"],
            int(p["answer"]),
            int(p["round_id"]),
            int(p["updated_at"]),
            p["feed"],
            int(p["block_number"]),
            p["stale"],
        )
        for p in price_rows
    }
    out = {}
    for pool in pools:
        reserves = {
            r["asset"]: ReserveInfo(
                r["asset"],
                r["a_token"],
                r["stable_debt_token"],
                r["variable_debt_token"],
                r["symbol"],
                int(r["decimals"]),
                int(r["ltv"]),
                int(r["liquidation_threshold"]),
                int(r["liquidation_bonus"]),
                int(r["emode_category"]),
                int(r["reserve_id"]),
            )
            for r in reserve_rows
            if r["pool"] == pool
        }
        rates = {
            r["asset"]: ReserveRates(
                r["asset"],
                int(r["liquidity_rate"]),
                int(r["stable_borrow_rate"]),
                int(r["variable_borrow_rate"]),
                int(r["liquidity_index"]),
                int(r["variable_borrow_index"]),
                int(r["last_update"]),
            )
            for r in rate_rows
            if r["pool"] == pool
        }
        emode = {
            int(e["category"]): EModeInfo(
                int(e["category"]),
                int(e["ltv"]),
                int(e["liquidation_threshold"]),
                int(e["liquidation_bonus"]),
                e["price_source"],
                int(e["collateral_bitmap"]),
                int(e["borrowable_bitmap"]),
                int(e["ltvzero_bitmap"]),
                bool(e["isolated"]),
            )
            for e in emode_rows
            if e["pool"] == pool
        }
        pool_prices = {a: p for a, p in prices.items() if a in reserves}
        out[pool] = AaveMarketView(
            ref, reserves, rates, emode, pool_prices, versions.get(pool, AAVE_VERSIONS[0])
        )
    return out


def _net_usd(market: AaveMarketView, account: AaveAccount | None) -> float:
    if account is None:
        return 0.0
    value = market.value(account)
    return (value.total_collateral_base - value.total_debt_base) / BASE_UNIT


class AaveV3Read(ReadSide):
    name = PROTOCOL_AAVE_V3
    section = "lending"
    alert_kinds = frozenset({"health_factor_below"})
    head_reads = frozenset(
        {
            "account_versions",
            "aave_reserves",
            "aave_reserve_rates",
            "aave_emode_categories",
            "aave_pool_versions",
            "oracle_prices",
        }
    )
    stresses = True

    def portfolio(self, ctx: ReadContext, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        return accounts(ctx, as_of, [owner])

    def subjects(
        self,
        ctx: ReadContext,
        as_of: AsOf,
        owners: Sequence[str] | None,
        tokens: Sequence[str] | None,
        pools: Sequence[str] | None,
    ) -> list[dict[str, Any]]:
        return accounts(ctx, as_of, owners, tokens, pools)

    def changes(self, ctx: ReadContext, owner: str, start: AsOf, end: AsOf) -> list[Change]:
        acc0 = {a.account_id: a for a, _ in open_accounts(ctx, start, [owner])}
        acc1 = {a.account_id: a for a, _ in open_accounts(ctx, end, [owner])}
        pools = sorted({a.pool for a in (*acc0.values(), *acc1.values())})
        if not pools:
            return []
        m0, m1 = markets(ctx, start, pools), markets(ctx, end, pools)
        changes = []
        for aid in sorted(set(acc0) | set(acc1)):
            before, after = acc0.get(aid), acc1.get(aid)
            pool = (before or after).pool  # type: ignore[union-attr]
            later, earlier = m1[pool], m0[pool]
            at_later_rates = dataclasses.replace(later, prices=earlier.prices)
            changes.append(
                lending_change(
                    aid,
                    PROTOCOL_AAVE_V3,
                    _net_usd(earlier, before),
                    _net_usd(later, after),
                    _net_usd(at_later_rates, before),
                    _net_usd(later, before),
                )
            )
        return changes

    advises = True

    def advice(
        self, ctx: ReadContext, owner: str, as_of: AsOf, target_wad: int, horizon: int
    ) -> list[dict[str, Any]]:
        held = open_accounts(ctx, as_of, [owner])
        if not held:
            return []
        found = markets(ctx, as_of, sorted({a.pool for a, _ in held}))
        out = []
        for account, _updated in held:
            market = found[account.pool]
            at = market.block.timestamp + horizon
            out.append(
                {
                    "id": account.account_id,
                    "protocol": account.protocol,
                    "chain_id": account.chain_id,
                    "pool": account.pool,
                    "owner": account.user,
                    "block_number": market.block.number,
                    "valued_at": at,
                    **advice(account, market, target_wad, at),
                }
            )
        return out

    def stress(
        self, ctx: ReadContext, owner: str, as_of: AsOf, scenario: Scenario
    ) -> list[dict[str, Any]]:
        held = open_accounts(ctx, as_of, [owner])
        if not held:
            return []
        found = markets(ctx, as_of, sorted({a.pool for a, _ in held}))
        return [
            stress_account(account, found[account.pool], scenario, updated)
            for account, updated in held
        ]

    def subject_exists(self, ctx: ReadContext, chain_id: int, subject_id: str) -> bool:
        found = ctx.store.scalar(
            "SELECT count() FROM defimon.account_versions "
            "WHERE chain_id = {chain:UInt64} AND account_id = {id:String}",
            {"chain": chain_id, "id": subject_id},
        )
        return bool(found)

    def liquidations(
        self, ctx: ReadContext, chain_id: int, start: int, end: int
    ) -> list[dict[str, Any]]:
        rows = ctx.store.dicts(
            "SELECT pool, block_number, log_index, block_hash, toUnixTimestamp(block_time) AS ts, "
            "tx_hash, owner, collateral_asset, debt_asset, debt_to_cover, liquidated_collateral, "
            "liquidator, receive_a_token FROM defimon.liquidations FINAL "
            "WHERE chain_id = {chain:UInt64} AND block_number >= {start:UInt64} "
            "AND block_number <= {end:UInt64} ORDER BY block_number, log_index",
            {"chain": chain_id, "start": start, "end": end},
        )
        return [
            liquidation_json(
                account_id=account_id(chain_id, r["pool"], r["owner"]),
                chain_id=chain_id,
                pool=r["pool"],
                block_number=int(r["block_number"]),
                block_hash=r["block_hash"],
                block_time=int(r["ts"]),
                tx_hash=r["tx_hash"],
                log_index=int(r["log_index"]),
                user=r["owner"],
                collateral_asset=r["collateral_asset"],
                debt_asset=r["debt_asset"],
                debt_to_cover=int(r["debt_to_cover"]),
                liquidated_collateral=int(r["liquidated_collateral"]),
                liquidator=r["liquidator"],
                receive_a_token=bool(r["receive_a_token"]),
            )
            for r in rows
        ]


READ_SIDE = AaveV3Read()
