"""Data access for the API: SQL over the versioned tables, valued with the flow's own math.

"Portfolio at block N" takes each position's latest structural version at or before N, the
pool state and token prices at or before N, and values them with the same pure function the
live flow uses, so a time-travel answer equals what the stream said at that block.
Every query binds its values server-side ({name:Type}); nothing is pasted into SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from defimon.store import Store
from flows.aave_v3.state import value_account
from flows.erc20.book import balance_value
from flows.uniswap_v3.math import fee_growth_inside
from flows.uniswap_v3.replica import EMPTY_POSITION, NpmPosition, PoolPosition
from flows.uniswap_v3.valuation import value_position
from schemas.balances import balance_json
from schemas.chain import TokenInfo
from schemas.errors import InvalidInput, NotFound
from schemas.lending import (
    AaveAccount,
    AccountReserveState,
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

    def lending(self, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        """The owner's Aave accounts at the block, valued as getUserAccountData would."""
        params = {"chain": as_of.chain_id, "block": as_of.number, "owner": owner}
        rows = self.store.dicts(
            "SELECT account_id, pool, asset, emode, scaled_supply, scaled_variable_debt, "
            "stable_principal, stable_rate, stable_updated, collateral, block_number, log_index "
            "FROM defimon.account_versions FINAL "
            "WHERE chain_id = {chain:UInt64} AND owner = {owner:String} "
            "AND block_number <= {block:UInt64} "
            "ORDER BY account_id, asset, block_number DESC, log_index DESC "
            "LIMIT 1 BY account_id, asset",
            params,
        )
        if not rows:
            return []
        timestamp = self.timestamp(as_of)
        if timestamp is None:
            raise NotFound(f"block {as_of.number}'s time is unknown (not stored, node unreachable)")
        pools = sorted({r["pool"] for r in rows})
        by_pool = {"chain": as_of.chain_id, "block": as_of.number, "pools": pools}
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
        assets = sorted({r["asset"] for r in reserve_rows})
        price_rows = self.store.dicts(
            "SELECT asset, feed, answer, round_id, updated_at, block_number "
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
            )
            for p in price_rows
        }
        ref = (
            as_of.ref()
            if as_of.timestamp is not None
            else BlockRef(as_of.chain_id, as_of.number, as_of.hash or "", timestamp)
        )
        out = []
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
                )
                for e in emode_rows
                if e["pool"] == pool
            }
            accounts: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                if r["pool"] == pool:
                    accounts.setdefault(r["account_id"], []).append(r)
            for aid, held in sorted(accounts.items()):
                latest = max(held, key=lambda r: (r["block_number"], r["log_index"]))
                account = AaveAccount(
                    as_of.chain_id,
                    pool,
                    owner,
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
                        for r in held
                        if r["asset"]
                    },
                )
                if not any(
                    h.scaled_supply or h.scaled_variable_debt or h.stable_principal
                    for h in account.reserves.values()
                ):
                    continue  # a closed account
                value = value_account(account, reserves, rates, prices, emode, timestamp)
                out.append(account_json(account, value, reserves, ref, int(latest["block_number"])))
        return out

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

    def portfolio(self, owner: str, as_of: AsOf) -> dict[str, Any]:
        versions = self._versions(
            as_of,
            "AND position_id IN (SELECT position_id FROM defimon.position_versions "
            "WHERE chain_id = {chain:UInt64} AND owner = {owner:String})",
            {"owner": owner},
        )
        held = [v for v in versions if v["owner"] == owner and not v["burned"]]
        positions = self._value(as_of, held)
        lending = self.lending(owner, as_of)
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
        as_of: AsOf,
        *,
        owner: str | None,
        protocol: str | None,
        pool: str | None,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        extra, params = "", dict[str, Any]()
        if cursor is not None:
            extra += " AND position_id > {cursor:String}"
            params["cursor"] = cursor
        if owner is not None:
            extra += (
                " AND position_id IN (SELECT position_id FROM defimon.position_versions "
                "WHERE chain_id = {chain:UInt64} AND owner = {owner:String})"
            )
            params["owner"] = owner
        if pool is not None:
            extra += " AND pool = {pool:String}"
            params["pool"] = pool
        if protocol is not None and protocol != "uniswap_v3":
            return {"as_of": as_of.json(), "positions": [], "next_cursor": None}
        # Burned and transferred-away positions are filtered after picking the latest version.
        outer = "burned = 0" + (" AND owner = {owner:String}" if owner is not None else "")
        sql = (
            f"SELECT * FROM ({_LATEST_VERSIONS.replace('{extra}', extra)}) WHERE {outer} "
            "ORDER BY position_id LIMIT {limit:UInt32}"
        )
        page = self.store.dicts(
            sql, {"chain": as_of.chain_id, "block": as_of.number, "limit": limit, **params}
        )
        next_cursor = page[-1]["position_id"] if len(page) >= limit else None
        return {
            "as_of": as_of.json(),
            "positions": self._value(as_of, page),
            "next_cursor": next_cursor,
        }

    def dead_letters(self, chain_id: int, limit: int = 100) -> list[dict[str, Any]]:
        return self.store.dicts(
            "SELECT block_number, log_index, tx_hash, address, topics, data, stage, reason "
            "FROM defimon.dead_letters FINAL WHERE chain_id = {chain:UInt64} "
            "ORDER BY block_number DESC, log_index DESC LIMIT {limit:UInt32}",
            {"chain": chain_id, "limit": limit},
        )


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
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"at={value!r} is neither a block number nor an ISO-8601 time") from None
    if when.tzinfo is None:
        raise InvalidInput(f"at={value!r} has no time zone; add Z or an offset")
    return when
