"""Data access for the API: SQL over the versioned tables, valued with the flow's own math.

"Portfolio at block N" takes each position's latest structural version at or before N, the
pool state and token prices at or before N, and values them with the same pure function the
live flow uses, so a time-travel answer equals what the stream said at that block.
Every query binds its values server-side ({name:Type}); nothing is pasted into SQL.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from api.diff import (
    Change,
    balance_change,
    comet_change,
    lending_change,
    lp_change,
    summarize,
)
from ports.store import Store
from protocols.aave_v3.state import holds_anything, value_account
from protocols.compound_v3.state import CometMarketView
from protocols.erc20.book import balance_value
from protocols.uniswap_v3.fee_tracker import NpmPosition
from protocols.uniswap_v3.math import fee_growth_inside
from protocols.uniswap_v3.replica import EMPTY_POSITION, PoolPosition
from protocols.uniswap_v3.valuation import value_position
from schemas.balances import balance_json
from schemas.chain import TokenInfo
from schemas.comet import (
    CometAccount,
    CometAssetInfo,
    CometConfig,
    CometTotalsBasic,
    comet_account_json,
)
from schemas.errors import InvalidInput, NotFound
from schemas.filters import Filter
from schemas.filters import numeric_field as _numeric
from schemas.hexutil import decimal_uint
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
from schemas.positions import (
    BlockRef,
    PoolSnapshot,
    TokenPrice,
    UniswapPosition,
    position_json,
)

# The store's columns carry the structural fields under the same names.
_POSITION_FIELDS = tuple(f.name for f in fields(UniswapPosition))
_SELECT_POSITION = ", ".join(_POSITION_FIELDS) + ", block_number"

# The latest version of each position at or before {block}. FINAL drops retracted and
# replayed duplicates; LIMIT 1 BY keeps the newest per position.
_LATEST_VERSIONS = f"""
SELECT {_SELECT_POSITION}
FROM defimon.position_versions FINAL
WHERE chain_id = {{chain:UInt64}} AND block_number <= {{block:UInt64}} {{extra}}
ORDER BY position_id, block_number DESC, log_index DESC
LIMIT 1 BY position_id
"""


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


@dataclass(frozen=True, slots=True)
class AsOf:
    chain_id: int
    number: int
    hash: str | None
    timestamp: int | None

    def ref(self) -> BlockRef:
        return BlockRef(self.chain_id, self.number, self.hash or "", self.timestamp or 0)

    def json(self) -> dict[str, Any]:
        ref = self.ref()
        return {
            "chain_id": self.chain_id,
            "block_number": self.number,
            "block_hash": self.hash,
            "block_time": ref.time_iso() if self.timestamp is not None else None,
        }


class Queries:
    def __init__(
        self, store: Store, block_time: Callable[[int, int], int | None] | None = None
    ) -> None:
        self.store = store
        # Lending accrues interest to the block's own timestamp. Backfill stores only blocks
        # with watched logs, so for the others the time comes from the node (when reachable).
        self._block_time = block_time

    # Blocks ---------------------------------------------------------------------------------

    def indexed_range(self, chain_id: int) -> tuple[int, int] | None:
        row = self.store.rows(
            "SELECT min(number), max(number), count() FROM defimon.blocks FINAL "
            "WHERE chain_id = {chain:UInt64}",
            {"chain": chain_id},
        )
        if not row or row[0][2] == 0:
            return None
        return int(row[0][0]), int(row[0][1])

    def resolve_at(self, chain_id: int, at: int | datetime | None, head: int | None) -> AsOf:
        """The block to answer as of: `at` as a block number or a time, else the head."""
        indexed = self.indexed_range(chain_id)
        if indexed is None:
            raise NotFound(f"chain {chain_id} has no indexed blocks yet")
        first, last = indexed
        latest = head if head is not None and head >= 0 else last
        if at is None:
            number = latest
        elif isinstance(at, datetime):
            found = self.store.scalar(
                "SELECT max(number) FROM defimon.blocks FINAL WHERE chain_id = {chain:UInt64} "
                "AND block_time <= {t:DateTime64(3, 'UTC')} HAVING count() > 0",
                {"chain": chain_id, "t": at},
            )
            if found is None:
                raise NotFound(f"no indexed block at or before {at.isoformat()}")
            number = min(int(found), latest)
        else:
            if at > latest:
                raise NotFound(
                    f"block {at} is not indexed yet; the latest indexed block is {latest}"
                )
            if at < first:
                raise NotFound(f"block {at} is before the indexed range, which starts at {first}")
            number = at
        rows = self.store.rows(
            "SELECT hash, toUnixTimestamp(block_time) FROM defimon.blocks FINAL "
            "WHERE chain_id = {chain:UInt64} AND number = {n:UInt64} LIMIT 1",
            {"chain": chain_id, "n": number},
        )
        if rows:
            return AsOf(chain_id, number, rows[0][0], int(rows[0][1]))
        # Backfill stores only blocks with watched logs; nothing changed in the others.
        return AsOf(chain_id, number, None, None)

    # Positions ------------------------------------------------------------------------------

    def _versions(self, as_of: AsOf, extra: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        sql = _LATEST_VERSIONS.replace("{extra}", extra)
        return self.store.dicts(sql, {"chain": as_of.chain_id, "block": as_of.number, **params})

    def _value(self, as_of: AsOf, versions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        if not versions:
            return []
        pools = sorted({v["pool"] for v in versions})
        tokens = sorted({t for v in versions for t in (v["token0"], v["token1"])})
        params = {"chain": as_of.chain_id, "block": as_of.number}
        pool_rows = self.store.rows(
            "SELECT pool, sqrt_price_x96, tick, liquidity, fee_growth_global0_x128, "
            "fee_growth_global1_x128 FROM defimon.pool_states FINAL "
            "WHERE chain_id = {chain:UInt64} AND pool IN {pools:Array(String)} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY pool, block_number DESC LIMIT 1 BY pool",
            {**params, "pools": pools},
        )
        price_rows = self.store.rows(
            "SELECT token, price_usd, source, hops FROM defimon.token_prices FINAL "
            "WHERE chain_id = {chain:UInt64} AND token IN {tokens:Array(String)} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY token, block_number DESC LIMIT 1 BY token",
            {**params, "tokens": tokens},
        )
        snapshots = {
            r[0]: PoolSnapshot(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]))
            for r in pool_rows
        }
        prices = {r[0]: TokenPrice(r[0], float(r[1]), r[2], int(r[3])) for r in price_rows}
        ref = as_of.ref()
        owed = self._uncollected(as_of, versions, snapshots)
        out = []
        for v in versions:
            pos = _position(v)
            value = value_position(
                pos,
                snapshots.get(pos.pool),
                prices.get(pos.token0),
                prices.get(pos.token1),
                owed.get(pos.position_id),
            )
            out.append(position_json(pos, value, ref, int(v["block_number"])))
        return out

    def timestamp(self, as_of: AsOf) -> int | None:
        if as_of.timestamp is not None:
            return as_of.timestamp
        return self._block_time(as_of.chain_id, as_of.number) if self._block_time else None

    def time_of(self, chain_id: int, at: int | datetime | None) -> datetime | None:
        """A point given as a block number or a time, as a time."""
        if at is None or isinstance(at, datetime):
            return at
        ts = self.timestamp(self.resolve_at(chain_id, at, None))
        if ts is None:
            raise NotFound(f"the time of block {at} is not known")
        return datetime.fromtimestamp(ts, UTC)

    def lending(self, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        """The owner's Aave accounts at the block, valued as getUserAccountData would."""
        return self.accounts(as_of, [owner])

    def accounts(
        self,
        as_of: AsOf,
        owners: Sequence[str] | None,
        tokens: Sequence[str] | None = None,
        pools: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Aave accounts at the block (of these owners; holding any of these assets; in these
        pools), valued as getUserAccountData would."""
        held = self.aave_accounts(as_of, owners, tokens, pools)
        if not held:
            return []
        markets = self.aave_markets(as_of, sorted({a.pool for a, _ in held}))
        out = []
        for account, updated in held:
            market = markets[account.pool]
            value = market.value(account)
            out.append(account_json(account, value, market.reserves, market.block, updated))
        return out

    def aave_accounts(
        self,
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
        rows = self.store.dicts(
            "SELECT account_id, pool, owner, asset, emode, scaled_supply, scaled_variable_debt, "
            "stable_principal, stable_rate, stable_updated, collateral, block_number, log_index "
            "FROM defimon.account_versions FINAL "
            f"WHERE chain_id = {{chain:UInt64}} {where} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY account_id, asset, block_number DESC, log_index DESC "
            "LIMIT 1 BY account_id, asset",
            params,
        )
        out = []
        for aid, versions, latest in _per_account(rows):
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

    def aave_markets(self, as_of: AsOf, pools: Sequence[str]) -> dict[str, AaveMarketView]:
        """Each Aave pool's reserves, rates, eMode categories and oracle prices at the block."""
        timestamp = self.timestamp(as_of)
        if timestamp is None:
            raise NotFound(f"block {as_of.number}'s time is unknown (not stored, node unreachable)")
        by_pool = {"chain": as_of.chain_id, "block": as_of.number, "pools": list(pools)}
        reserve_rows = self.store.dicts(
            "SELECT * EXCEPT (version, is_deleted) FROM defimon.aave_reserves FINAL "
            "WHERE chain_id = {chain:UInt64} AND pool IN {pools:Array(String)} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY pool, asset, block_number DESC LIMIT 1 BY pool, asset",
            by_pool,
        )
        rate_rows = self.store.dicts(
            "SELECT * EXCEPT (version, is_deleted, block_time) FROM defimon.aave_reserve_rates "
            "FINAL WHERE chain_id = {chain:UInt64} AND pool IN {pools:Array(String)} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY pool, asset, block_number DESC LIMIT 1 BY pool, asset",
            by_pool,
        )
        emode_rows = self.store.dicts(
            "SELECT * EXCEPT (version, is_deleted) FROM defimon.aave_emode_categories FINAL "
            "WHERE chain_id = {chain:UInt64} AND pool IN {pools:Array(String)} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY pool, category, block_number DESC LIMIT 1 BY pool, category",
            by_pool,
        )
        version_rows = self.store.dicts(
            "SELECT pool, aave_version FROM defimon.aave_pool_versions FINAL "
            "WHERE chain_id = {chain:UInt64} AND pool IN {pools:Array(String)} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY pool, block_number DESC LIMIT 1 BY pool",
            by_pool,
        )
        versions = {v["pool"]: v["aave_version"] for v in version_rows}
        assets = sorted({r["asset"] for r in reserve_rows})
        price_rows = self.store.dicts(
            "SELECT asset, feed, answer, round_id, updated_at, block_number, stale "
            "FROM defimon.oracle_prices FINAL WHERE chain_id = {chain:UInt64} "
            "AND asset IN {assets:Array(String)} AND block_number <= {block:UInt64} "
            "ORDER BY asset, block_number DESC LIMIT 1 BY asset",
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
        ref = (
            as_of.ref()
            if as_of.timestamp is not None
            else BlockRef(as_of.chain_id, as_of.number, as_of.hash or "", timestamp)
        )
        markets = {}
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
            markets[pool] = AaveMarketView(
                ref, reserves, rates, emode, pool_prices, versions.get(pool, AAVE_VERSIONS[0])
            )
        return markets

    def comet_lending(self, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        """The owner's Compound V3 accounts at the block: principal and collateral from their
        latest versions, the comet's configuration, stored totals and prices then, accrued
        to the block's time with the flow's own function."""
        return self.comet_subjects(as_of, [owner])

    def comet_subjects(
        self, as_of: AsOf, owners: Sequence[str] | None, comets: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Open Compound V3 accounts at the block (of these owners; on these comets), valued
        as the flow values them, in the lending account shape."""
        held = self.comet_accounts(as_of, owners, comets)
        if not held:
            return []
        markets = self.comet_markets(as_of, sorted({a.comet for a, _ in held}))
        out = []
        for account, updated in held:
            market = markets.get(account.comet)
            if market is None:
                continue  # the comet was not readable at that block: nothing exact to say
            out.append(
                comet_account_json(
                    account, market.value(account), market.config, market.block, updated
                )
            )
        return out

    def comet_accounts(
        self, as_of: AsOf, owners: Sequence[str] | None, comets: Sequence[str] | None = None
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
        rows = self.store.dicts(
            "SELECT account_id, comet, owner, asset, principal, assets_in, collateral, "
            "block_number, log_index FROM defimon.comet_account_versions FINAL "
            f"WHERE chain_id = {{chain:UInt64}} {where} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY account_id, asset, block_number DESC, log_index DESC "
            "LIMIT 1 BY account_id, asset",
            params,
        )
        out = []
        for aid, versions, latest in _per_account(rows):
            account = CometAccount(
                as_of.chain_id,
                latest["comet"],
                latest["owner"],
                aid,
                int(latest["principal"]),
                int(latest["assets_in"]),
                {
                    r["asset"]: int(r["collateral"])
                    for r in versions
                    if r["asset"] and r["collateral"]
                },
            )
            if account.is_open:  # else a closed account
                out.append((account, int(latest["block_number"])))
        return out

    def comet_markets(self, as_of: AsOf, comets: Sequence[str]) -> dict[str, CometMarketView]:
        """Each comet's configuration, stored totals and prices at the block (a comet with no
        configuration or totals read by then is left out)."""
        if not comets:
            return {}
        timestamp = self.timestamp(as_of)
        if timestamp is None:
            raise NotFound(f"block {as_of.number}'s time is unknown (not stored, node unreachable)")
        by_comet = {"chain": as_of.chain_id, "block": as_of.number, "comets": list(comets)}
        latest_by_comet = (
            "WHERE chain_id = {chain:UInt64} AND comet IN {comets:Array(String)} "
            "AND block_number <= {block:UInt64} "
        )
        config_rows = self.store.dicts(
            "SELECT * EXCEPT (version, is_deleted) FROM defimon.comet_configs FINAL "
            + latest_by_comet
            + "ORDER BY comet, block_number DESC LIMIT 1 BY comet",
            by_comet,
        )
        asset_rows = self.store.dicts(
            "SELECT * EXCEPT (version, is_deleted) FROM defimon.comet_assets FINAL "
            + latest_by_comet
            + "ORDER BY comet, asset_offset, block_number DESC LIMIT 1 BY comet, asset_offset",
            by_comet,
        )
        totals_rows = self.store.dicts(
            "SELECT * EXCEPT (version, is_deleted, block_time) FROM defimon.comet_totals FINAL "
            + latest_by_comet
            + "ORDER BY comet, block_number DESC LIMIT 1 BY comet",
            by_comet,
        )
        price_rows = self.store.dicts(
            "SELECT comet, feed, price FROM defimon.comet_prices FINAL "
            + latest_by_comet
            + "ORDER BY comet, feed, block_number DESC LIMIT 1 BY comet, feed",
            by_comet,
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
        ref = (
            as_of.ref()
            if as_of.timestamp is not None
            else BlockRef(as_of.chain_id, as_of.number, as_of.hash or "", timestamp)
        )
        return {
            comet: CometMarketView(ref, config, totals[comet], prices.get(comet, {}))
            for comet, config in configs.items()
            if comet in totals
        }

    def _uncollected(
        self,
        as_of: AsOf,
        versions: Sequence[dict[str, Any]],
        snapshots: dict[str, PoolSnapshot],
    ) -> dict[str, tuple[int, int]]:
        """What a static collect(max, max) returns at the block, per position: rebuilt from
        the fee state the flow stored (the same arithmetic as the live replica)."""
        pools = sorted({v["pool"] for v in versions})
        ticks = sorted({t for v in versions for t in (v["tick_lower"], v["tick_upper"])})
        params = {"chain": as_of.chain_id, "block": as_of.number, "pools": pools}
        tick_rows = self.store.rows(
            "SELECT pool, tick, initialized, fee_growth_outside0_x128, fee_growth_outside1_x128 "
            "FROM defimon.pool_ticks FINAL WHERE chain_id = {chain:UInt64} "
            "AND pool IN {pools:Array(String)} AND tick IN {ticks:Array(Int32)} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY pool, tick, block_number DESC LIMIT 1 BY pool, tick",
            {**params, "ticks": ticks},
        )
        outside = {(r[0], int(r[1])): (int(r[3]), int(r[4])) for r in tick_rows if r[2]}
        position_rows = self.store.rows(
            "SELECT pool, owner, tick_lower, tick_upper, liquidity, fee_inside_last0, "
            "fee_inside_last1, tokens_owed0, tokens_owed1 FROM defimon.pool_positions FINAL "
            "WHERE chain_id = {chain:UInt64} AND pool IN {pools:Array(String)} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY pool, owner, tick_lower, tick_upper, block_number DESC "
            "LIMIT 1 BY pool, owner, tick_lower, tick_upper",
            params,
        )
        pool_positions = {
            (r[0], r[1], int(r[2]), int(r[3])): PoolPosition(*(int(x) for x in r[4:]))
            for r in position_rows
        }
        owed: dict[str, tuple[int, int]] = {}
        for v in versions:
            snap = snapshots.get(v["pool"])
            if snap is None:
                continue
            lower, upper = int(v["tick_lower"]), int(v["tick_upper"])
            lo, up = (
                outside.get((v["pool"], lower), (0, 0)),
                outside.get((v["pool"], upper), (0, 0)),
            )
            inside = (
                fee_growth_inside(
                    snap.tick, lower, upper, lo[0], up[0], snap.fee_growth_global0_x128
                ),
                fee_growth_inside(
                    snap.tick, lower, upper, lo[1], up[1], snap.fee_growth_global1_x128
                ),
            )
            checkpoint = NpmPosition(
                lower,
                upper,
                int(v["liquidity"]),
                int(v["fee_inside_last0"]),
                int(v["fee_inside_last1"]),
                int(v["tokens_owed0"]),
                int(v["tokens_owed1"]),
            )
            pool_position = pool_positions.get(
                (v["pool"], v["position_manager"], lower, upper), EMPTY_POSITION
            )
            owed[v["position_id"]] = checkpoint.uncollected_with(inside, pool_position)
        return owed

    def _ever_owned(self, as_of: AsOf, owner: str) -> list[dict[str, Any]]:
        """The latest version at the block of every position the owner ever held (the latest
        may be another owner's, or burned: callers decide)."""
        return self._versions(as_of, _EVER_OWNED, {"owners": [owner]})

    def portfolio(self, owner: str, as_of: AsOf) -> dict[str, Any]:
        versions = self._ever_owned(as_of, owner)
        held = [v for v in versions if v["owner"] == owner and not v["burned"]]
        positions = self._value(as_of, held)
        lending = self.lending(owner, as_of) + self.comet_lending(owner, as_of)
        balances = self.balances(owner, as_of)
        balances_usd = sum(b["value_usd"] or 0.0 for b in balances)
        total = sum(p["value_usd"] or 0.0 for p in positions) + sum(a["value_usd"] for a in lending)
        return {
            "address": owner,
            "as_of": as_of.json(),
            "total_usd": total + balances_usd,
            "balances_usd": balances_usd,
            "positions": positions,
            "lending": lending,
            "balances": balances,
        }

    def diff(self, owner: str, start: AsOf, end: AsOf) -> dict[str, Any]:
        """How the wallet's value changed from `start` to `end`, and why (api.diff)."""
        changes: list[Change] = []
        lp0 = {p["id"]: p for p in self._value(start, self._ever_owned(start, owner))}
        lp1 = {p["id"]: p for p in self._value(end, self._ever_owned(end, owner))}
        for pid in sorted(set(lp0) | set(lp1)):
            p0, p1 = lp0.get(pid), lp1.get(pid)
            held0 = p0 is not None and p0["owner"] == owner and not p0["burned"]
            held1 = p1 is not None and p1["owner"] == owner
            if not (held0 or held1):
                continue
            # Changed hands: held at one end only, and not because it was minted in between.
            transferred = held0 != held1 and (held0 or p0 is not None)
            changes.append(lp_change(p0 if held0 else None, p1 if held1 else None, transferred))

        acc0 = {a.account_id: a for a, _ in self.aave_accounts(start, [owner])}
        acc1 = {a.account_id: a for a, _ in self.aave_accounts(end, [owner])}
        pools = sorted({a.pool for a in (*acc0.values(), *acc1.values())})
        if pools:
            m0, m1 = self.aave_markets(start, pools), self.aave_markets(end, pools)
            for aid in sorted(set(acc0) | set(acc1)):
                before, after = acc0.get(aid), acc1.get(aid)
                pool = (before or after).pool  # type: ignore[union-attr]
                later, earlier = m1[pool], m0[pool]
                at_later_rates = dataclasses.replace(later, prices=earlier.prices)
                changes.append(
                    lending_change(
                        aid,
                        "aave_v3",
                        _net_usd(earlier, before),
                        _net_usd(later, after),
                        _net_usd(at_later_rates, before),
                        _net_usd(later, before),
                    )
                )
        b0 = {b["token"]: b for b in self.balances(owner, start)}
        b1 = {b["token"]: b for b in self.balances(owner, end)}
        for token in sorted(set(b0) | set(b1)):
            changes.append(
                balance_change(f"{start.chain_id}:{owner}:{token}", b0.get(token), b1.get(token))
            )
        changes += self._comet_changes(owner, start, end)
        return {"address": owner, "from": start.json(), "to": end.json(), **summarize(changes)}

    def _comet_changes(self, owner: str, start: AsOf, end: AsOf) -> list[Change]:
        """The owner's Compound V3 accounts from `start` to `end`, split as Aave's are
        (api.diff.comet_change)."""
        c0 = {a.account_id: a for a, _ in self.comet_accounts(start, [owner])}
        c1 = {a.account_id: a for a, _ in self.comet_accounts(end, [owner])}
        comets = sorted({a.comet for a in (*c0.values(), *c1.values())})
        k0, k1 = self.comet_markets(start, comets), self.comet_markets(end, comets)
        changes = []
        for cid in sorted(set(c0) | set(c1)):
            before, after = c0.get(cid), c1.get(cid)
            comet = (before or after).comet  # type: ignore[union-attr]
            changes.append(comet_change(cid, before, after, k0.get(comet), k1.get(comet)))
        return changes

    def subjects(self, as_of: AsOf, flt: Filter) -> list[dict[str, Any]]:
        """Every open position and lending account at the block that the filter matches,
        valued. Structural conditions narrow the SQL; the filter itself decides."""
        if flt.chain_id and as_of.chain_id not in flt.chain_id:
            return []
        owners = sorted(flt.owner) or None
        tokens = sorted(flt.token) or None
        found: list[dict[str, Any]] = []
        if not flt.protocol or "uniswap_v3" in flt.protocol:
            extra, params = "", dict[str, Any]()
            if owners is not None:
                extra += _EVER_OWNED
                params["owners"] = owners
            if flt.pool:
                extra += " AND pool IN {pools:Array(String)}"
                params["pools"] = sorted(flt.pool)
            if tokens is not None:
                extra += (
                    " AND (token0 IN {tokens:Array(String)} OR token1 IN {tokens:Array(String)})"
                )
                params["tokens"] = tokens
            versions = self._versions(as_of, extra, params)
            # Burned and transferred-away positions drop out after the latest version is known.
            held = [v for v in versions if not v["burned"] and (not owners or v["owner"] in owners)]
            found += self._value(as_of, held)
        # A lending account's `pool` is its market: the Aave Pool, the comet.
        pools = sorted(flt.pool) or None
        if not flt.protocol or "aave_v3" in flt.protocol:
            found += self.accounts(as_of, owners, tokens, pools)
        if not flt.protocol or "compound_v3" in flt.protocol:
            found += self.comet_subjects(as_of, owners, pools)
        return [s for s in found if flt.matches(s)]

    def balances(self, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        """The wallet's non-zero ERC-20 balances at the block, priced as of that block."""
        params: dict[str, Any] = {"chain": as_of.chain_id, "block": as_of.number, "owner": owner}
        rows = self.store.rows(
            "SELECT token, balance, block_number FROM defimon.token_balances FINAL "
            "WHERE chain_id = {chain:UInt64} AND wallet = {owner:String} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY token, block_number DESC LIMIT 1 BY token",
            params,
        )
        held = [(r[0], int(r[1]), int(r[2])) for r in rows if int(r[1])]
        if not held:
            return []
        params["tokens"] = [token for token, _balance, _block in held]
        meta = {
            r[0]: TokenInfo(r[0], r[1], int(r[2]))
            for r in self.store.rows(
                "SELECT address, symbol, decimals FROM defimon.tokens FINAL "
                "WHERE chain_id = {chain:UInt64} AND address IN {tokens:Array(String)}",
                params,
            )
        }
        prices = {
            r[0]: (TokenPrice(r[0], float(r[1]), r[2], int(r[3])), int(r[4]))
            for r in self.store.rows(
                "SELECT token, price_usd, source, hops, block_number FROM defimon.token_prices "
                "FINAL WHERE chain_id = {chain:UInt64} AND token IN {tokens:Array(String)} "
                "AND block_number <= {block:UInt64} "
                "ORDER BY token, block_number DESC LIMIT 1 BY token",
                params,
            )
        }
        ref = as_of.ref()
        out = []
        for token, balance, updated in held:
            info = meta.get(token) or TokenInfo(token, "???", 18)
            price, price_block = prices.get(token, (None, None))
            value = balance_value(balance, info.decimals, price)
            out.append(
                balance_json(
                    as_of.chain_id, owner, info, balance, price, price_block, value, ref, updated
                )
            )
        return out

    def positions(
        self,
        as_of: AsOf | Sequence[AsOf],
        flt: Filter,
        *,
        sort: str,
        descending: bool,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        """One page of `subjects` (on each chain, at its own block), ordered by `sort` (then
        id, which starts with the chain id, so ids never collide across chains), after the
        cursor."""
        if sort not in SORTS:
            raise InvalidInput(f"sort={sort!r} is not one of {', '.join(SORTS)}")
        as_ofs = [as_of] if isinstance(as_of, AsOf) else list(as_of)
        subjects = self.subjects_across(as_ofs, flt)
        rows = [(_sort_key(s, sort, descending), s) for s in subjects]
        rows.sort(key=lambda r: r[0])
        if cursor is not None:
            after = _decode_cursor(cursor, sort, descending)
            rows = [r for r in rows if r[0] > after]
        page = rows[:limit]
        more = len(rows) > limit
        return {
            "as_of": as_ofs[0].json(),
            "chains": [a.json() for a in as_ofs],
            "positions": [s for _, s in page],
            "next_cursor": _encode_cursor(page[-1][0], sort, descending) if more else None,
        }

    def subjects_across(self, as_ofs: Sequence[AsOf], flt: Filter) -> list[dict[str, Any]]:
        """`subjects` on several chains, each at its own block (chain ids in every subject)."""
        return [s for as_of in as_ofs for s in self.subjects(as_of, flt)]

    def portfolio_across(self, owner: str, as_ofs: Sequence[AsOf]) -> dict[str, Any]:
        """The wallet's portfolio on each chain (each at its own block), as one."""
        return merge_portfolios(owner, [self.portfolio(owner, as_of) for as_of in as_ofs])

    # Windows ---------------------------------------------------------------------------------

    def subject_exists(self, chain_id: int, subject_id: str) -> bool:
        found = self.store.scalar(
            "SELECT (SELECT count() FROM defimon.position_versions "
            "        WHERE chain_id = {chain:UInt64} AND position_id = {id:String}) + "
            "       (SELECT count() FROM defimon.account_versions "
            "        WHERE chain_id = {chain:UInt64} AND account_id = {id:String})",
            {"chain": chain_id, "id": subject_id},
        )
        return bool(found)

    def wallet_history(
        self,
        chain_id: int,
        owner: str,
        window: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The wallet's value per closed window: the sum over the positions and accounts it
        held then (each window row names its subject's owner at the close)."""
        rows = self.store.rows(
            "SELECT window_start, window_end, sum(value_open), sum(value_close), count() "
            "FROM defimon.position_windows FINAL "
            "WHERE chain_id = {chain:UInt64} AND owner = {owner:String} "
            "AND window = {window:String} "
            "AND window_start >= {start:DateTime('UTC')} AND window_start < {end:DateTime('UTC')} "
            "GROUP BY window_start, window_end ORDER BY window_start LIMIT {limit:UInt32}",
            {
                "chain": chain_id,
                "owner": owner,
                "window": window,
                "start": start or EPOCH,
                "end": end or NEVER,
                "limit": limit,
            },
        )
        return [
            {
                "start": _iso(r[0]),
                "end": _iso(r[1]),
                "value_open_usd": r[2],
                "value_close_usd": r[3],
                "subjects": int(r[4]),
            }
            for r in rows
        ]

    def windows(
        self,
        chain_id: int,
        subject_id: str,
        window: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Closed windows of one position or account whose start lies in [start, end)."""
        rows = self.store.dicts(
            "SELECT * FROM defimon.position_windows FINAL "
            "WHERE chain_id = {chain:UInt64} AND subject_id = {id:String} "
            "AND window = {window:String} "
            "AND window_start >= {start:DateTime('UTC')} AND window_start < {end:DateTime('UTC')} "
            "ORDER BY window_start LIMIT {limit:UInt32}",
            {
                "chain": chain_id,
                "id": subject_id,
                "window": window,
                "start": start or EPOCH,
                "end": end or NEVER,
                "limit": limit,
            },
        )
        return [_window(r) for r in rows]

    def dead_letters(self, chain_id: int, limit: int = 100) -> list[dict[str, Any]]:
        return self.store.dicts(
            "SELECT block_number, log_index, tx_hash, address, topics, data, stage, reason "
            "FROM defimon.dead_letters FINAL WHERE chain_id = {chain:UInt64} "
            "ORDER BY block_number DESC, log_index DESC LIMIT {limit:UInt32}",
            {"chain": chain_id, "limit": limit},
        )


def _per_account(
    rows: Sequence[dict[str, Any]],
) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """Lending versions (one row per account and asset) grouped by account, in id order, each
    with its newest row (the account-wide fields: owner, market, eMode)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        grouped.setdefault(r["account_id"], []).append(r)
    return [
        (aid, versions, max(versions, key=lambda r: (r["block_number"], r["log_index"])))
        for aid, versions in sorted(grouped.items())
    ]


def merge_portfolios(owner: str, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-chain portfolios as one: positions, accounts and balances side by side (each
    names its chain), totals summed over the chains. `as_of` is the first chain's; `chains`
    has the block each chain is answered at."""
    if not parts:
        raise NotFound("no chain has indexed blocks yet")
    return {
        "address": owner,
        "as_of": parts[0]["as_of"],
        "chains": [p["as_of"] for p in parts],
        "total_usd": sum(p["total_usd"] for p in parts),
        "balances_usd": sum(p["balances_usd"] for p in parts),
        "positions": [x for p in parts for x in p["positions"]],
        "lending": [x for p in parts for x in p["lending"]],
        "balances": [x for p in parts for x in p["balances"]],
    }


def _net_usd(market: AaveMarketView, account: AaveAccount | None) -> float:
    if account is None:
        return 0.0
    value = market.value(account)
    return (value.total_collateral_base - value.total_debt_base) / BASE_UNIT


# Positions any of {owners} ever held (narrows _LATEST_VERSIONS by owner).
_EVER_OWNED = (
    " AND position_id IN (SELECT position_id FROM defimon.position_versions "
    "WHERE chain_id = {chain:UInt64} AND owner IN {owners:Array(String)})"
)

# Open ends of a time range, within what DateTime('UTC') holds.
EPOCH = datetime.fromtimestamp(0, UTC)
NEVER = datetime(2106, 1, 1, tzinfo=UTC)

SORTS = ("id", "value_usd", "health_factor", "il_usd", "il_pct", "debt_usd")
SortKey = tuple[int, float, str]


def _sort_key(subject: dict[str, Any], sort: str, descending: bool) -> SortKey:
    """Missing values sort last either way; ties break by id, ascending."""
    if sort == "id":
        return (0, 0.0, subject["id"])
    value = _numeric(subject, sort)
    if value is None:
        return (1, 0.0, subject["id"])
    return (0, -value if descending else value, subject["id"])


def _encode_cursor(key: SortKey, sort: str, descending: bool) -> str:
    # A lending account without debt sorts by an infinite health factor, which JSON cannot
    # hold as a number (orjson writes null): it goes as its name, which float() reads back.
    value: float | str = key[1] if math.isfinite(key[1]) else repr(key[1])
    raw = orjson.dumps([sort, descending, key[0], value, key[2]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str, descending: bool) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        c_sort, c_desc, missing, value, sid = orjson.loads(raw)
        key = (int(missing), float(value), str(sid))
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidInput("cursor is not a next_cursor this API gave") from None
    if (c_sort, c_desc) != (sort, descending):
        raise InvalidInput("cursor belongs to another sort or order; start without it")
    return key


def _ohlc(row: dict[str, Any], prefix: str) -> dict[str, float | None]:
    return {k: row[f"{prefix}_{k}"] for k in ("open", "high", "low", "close")}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _window(row: dict[str, Any]) -> dict[str, Any]:
    """A stored window in the stream's wire format (protocols.windows.window_json)."""
    fees0, fees1 = row["fees_earned0"], row["fees_earned1"]
    return {
        "id": row["subject_id"],
        "protocol": row["protocol"],
        "chain_id": row["chain_id"],
        "owner": row["owner"],
        "window": row["window"],
        "start": _iso(row["window_start"]),
        "end": _iso(row["window_end"]),
        "value_usd": _ohlc(row, "value"),
        "il_usd": _ohlc(row, "il"),
        "health_factor": _ohlc(row, "hf"),
        "fees_earned0": None if fees0 is None else str(fees0),
        "fees_earned1": None if fees1 is None else str(fees1),
        "fees_earned_usd": row["fees_earned_usd"],
        "close_block": row["close_block"],
        "close_block_hash": row["close_block_hash"],
    }


def _position(row: dict[str, Any]) -> UniswapPosition:
    """A stored version back into the flow's dataclass (ClickHouse gives exact ints)."""
    values = {name: row[name] for name in _POSITION_FIELDS}
    values["burned"] = bool(values["burned"])
    return UniswapPosition(**values)


def parse_at(value: str | None) -> int | datetime | None:
    """`at=` is a block number (decimal) or an ISO-8601 time with a zone (Z or +hh:mm)."""
    if value is None or value == "":
        return None
    text = value.strip()
    number = decimal_uint(text)
    if number is not None:
        return number
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"at={value!r} is neither a block number nor an ISO-8601 time") from None
    if when.tzinfo is None:
        raise InvalidInput(f"at={value!r} has no time zone; add Z or an offset")
    return when
