"""Uniswap V3 LP positions read back from the store (protocols/read_side.py).

A position at block N is its latest structural version at or before N, valued with the pool
state and token prices at or before N and the fees a static collect would return then, by the
same pure functions the live flow uses.

Its part of the diff (`lp_change`, values from `position_json` at both ends):
- fees: growth of the position's lifetime fees (collected + owed by a static collect -
  principal withdrawn), in token units, valued at the later prices;
- actions: tokens the owner put in (deposits) minus what they took out (collects), valued at
  the later prices; a position that changed hands counts wholly as an action;
- price: the rest, which is the market's doing (including impermanent loss).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from typing import Any

from protocols.read_side import AsOf, Change, ReadContext, ReadSide, latest_rows, token_usd
from protocols.uniswap_v3.advice import (
    LOOKBACK_SECONDS,
    price_grid,
    range_exits,
    seconds_in_range,
    statement,
)
from protocols.uniswap_v3.fee_tracker import NpmPosition
from protocols.uniswap_v3.math import fee_growth_inside, in_range
from protocols.uniswap_v3.replica import EMPTY_POSITION, PoolPosition
from protocols.uniswap_v3.stress import stress_position
from protocols.uniswap_v3.valuation import value_position
from schemas.positions import (
    PROTOCOL_UNISWAP_V3,
    PoolSnapshot,
    TokenPrice,
    UniswapPosition,
    position_json,
)
from schemas.stress import Scenario

# The store's columns carry the structural fields under the same names.
_POSITION_FIELDS = tuple(f.name for f in fields(UniswapPosition))
_SELECT_POSITION = ", ".join(_POSITION_FIELDS) + ", block_number"

# Positions any of {owners} ever held (narrows `versions` by owner).
_EVER_OWNED = (
    " AND position_id IN (SELECT position_id FROM defimon.position_versions "
    "WHERE chain_id = {chain:UInt64} AND owner IN {owners:Array(String)})"
)


def versions(
    ctx: ReadContext, as_of: AsOf, extra: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """The latest version of each position at or before the block (`extra`: conditions)."""
    sql = latest_rows("position_versions", _SELECT_POSITION, "position_id", extra, log_index=True)
    return ctx.store.dicts(sql, {"chain": as_of.chain_id, "block": as_of.number, **params})


def ever_owned(ctx: ReadContext, as_of: AsOf, owner: str) -> list[dict[str, Any]]:
    """The latest version at the block of every position the owner ever held (the latest
    may be another owner's, or burned: callers decide)."""
    return versions(ctx, as_of, _EVER_OWNED, {"owners": [owner]})


def held_by(ctx: ReadContext, as_of: AsOf, owner: str) -> list[dict[str, Any]]:
    """The owner's positions at the block (not burned, not transferred away)."""
    return [v for v in ever_owned(ctx, as_of, owner) if v["owner"] == owner and not v["burned"]]


def value(ctx: ReadContext, as_of: AsOf, held: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored versions valued at the block, in `position_json`."""
    if not held:
        return []
    ref = as_of.ref()
    return [
        position_json(pos, value_position(pos, *inputs), ref, int(v["block_number"]))
        for v, pos, inputs in priced(ctx, as_of, held)
    ]


def stressed(
    ctx: ReadContext, as_of: AsOf, held: Sequence[dict[str, Any]], scenario: Scenario
) -> list[dict[str, Any]]:
    """Stored versions now and under the scenario (protocols/uniswap_v3/stress.py)."""
    if not held:
        return []
    ref = as_of.ref()
    out = []
    for v, pos, inputs in priced(ctx, as_of, held):
        now, moved, pool, moves = stress_position(pos, *inputs, scenario)
        updated = int(v["block_number"])
        out.append(
            {
                "id": pos.position_id,
                "protocol": PROTOCOL_UNISWAP_V3,
                "chain_id": pos.chain_id,
                "pool": pos.pool,
                "owner": v["owner"],
                "shocks_bps": moves,
                "pool_sqrt_price_x96": None if pool is None else str(pool.sqrt_price_x96),
                "pool_tick": None if pool is None else pool.tick,
                "now": position_json(pos, now, ref, updated),
                "stressed": position_json(pos, moved, ref, updated),
            }
        )
    return out


def advised(ctx: ReadContext, as_of: AsOf, held: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each position's grid, range exits, time in range and fees per day over the lookback
    (protocols/uniswap_v3/advice.py), and the statement they make."""
    if not held:
        return []
    end = ctx.timed_ref(as_of).timestamp
    out = []
    for v, pos, (pool, price0, price1, owed) in priced(ctx, as_of, held):
        if pool is None or pool.sqrt_price_x96 == 0:
            continue
        opened = ctx.store.scalar(_OPENED, {"chain": as_of.chain_id, "id": pos.position_id})
        start = max(int(opened or 0), end - LOOKBACK_SECONDS)
        inside, observed = seconds_in_range(
            _ticks(ctx, as_of, pos.pool, start), start, end, pos.tick_lower, pos.tick_upper
        )
        fees = ctx.store.rows(
            _FEES, {"chain": as_of.chain_id, "id": pos.position_id, "start": start, "end": end}
        )[0]
        fee_span = int(fees[2] or 0) - int(fees[1] or 0)
        exits = range_exits(pos, pool)
        out.append(
            {
                "id": pos.position_id,
                "protocol": PROTOCOL_UNISWAP_V3,
                "chain_id": pos.chain_id,
                "pool": pos.pool,
                "owner": v["owner"],
                "block_number": as_of.number,
                "in_range": in_range(pool.tick, pos.tick_lower, pos.tick_upper)
                and pos.liquidity > 0,
                "tick": pool.tick,
                "range": exits,
                "grid": price_grid(pos, pool, price0, price1, owed),
                "lookback": {"start": start, "end": end},
                "seconds_in_range": inside,
                "seconds_observed": observed,
                "in_range_pct": inside / observed * 100 if observed else None,
                "fees_usd": fees[0],
                "fees_per_day_usd": fees[0] * 86_400 / fee_span
                if fees[0] and fee_span > 0
                else None,
                "statement": statement(pos, pool, exits),
            }
        )
    return out


# The position's first version's time: when it opened.
_OPENED = (
    "SELECT toUnixTimestamp(min(block_time)) FROM defimon.position_versions FINAL "
    "WHERE chain_id = {chain:UInt64} AND position_id = {id:String}"
)
# Its 1-hour windows' fees in the lookback, and the span they cover.
_FEES = (
    "SELECT sum(fees_earned_usd), toUnixTimestamp(min(window_start)), "
    "toUnixTimestamp(max(window_end)) FROM defimon.position_windows FINAL "
    "WHERE chain_id = {chain:UInt64} AND subject_id = {id:String} AND window = '1h' "
    "AND window_start >= toDateTime({start:UInt64}) AND window_end <= toDateTime({end:UInt64})"
)


def _ticks(ctx: ReadContext, as_of: AsOf, pool: str, start: int) -> list[tuple[int, int]]:
    """The pool's tick at `start` (its last change at or before it) and each change since,
    up to the block: (unix time, tick)."""
    params = {"chain": as_of.chain_id, "pool": pool, "block": as_of.number, "start": start}
    where = (
        "FROM defimon.pool_states FINAL WHERE chain_id = {chain:UInt64} AND pool = {pool:String} "
        "AND block_number <= {block:UInt64} AND "
    )
    before = ctx.store.rows(
        f"SELECT toUnixTimestamp(block_time), tick {where}"
        "toUnixTimestamp(block_time) <= {start:UInt64} ORDER BY block_number DESC LIMIT 1",
        params,
    )
    since = ctx.store.rows(
        f"SELECT toUnixTimestamp(block_time), tick {where}"
        "toUnixTimestamp(block_time) > {start:UInt64} ORDER BY block_number",
        params,
    )
    return [(int(t), int(k)) for t, k in (*before, *since)]


# What valuing one position reads: its pool, its tokens' prices, what a static collect pays.
Inputs = tuple[PoolSnapshot | None, TokenPrice | None, TokenPrice | None, tuple[int, int] | None]


def priced(
    ctx: ReadContext, as_of: AsOf, held: Sequence[dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], UniswapPosition, Inputs]]:
    """Each stored version, its position, and what valuing it at the block reads (read once
    for all of them)."""
    snapshots, prices, owed = valuation_inputs(ctx, as_of, held)
    for v in held:
        pos = _position(v)
        inputs = (
            snapshots.get(pos.pool),
            prices.get(pos.token0),
            prices.get(pos.token1),
            owed.get(pos.position_id),
        )
        yield v, pos, inputs


def valuation_inputs(
    ctx: ReadContext, as_of: AsOf, held: Sequence[dict[str, Any]]
) -> tuple[dict[str, PoolSnapshot], dict[str, TokenPrice], dict[str, tuple[int, int]]]:
    """What valuing these versions at the block reads: pool states, token prices, and what a
    static collect would return."""
    pools = sorted({v["pool"] for v in held})
    tokens = sorted({t for v in held for t in (v["token0"], v["token1"])})
    pool_rows = ctx.store.rows(
        latest_rows(
            "pool_states",
            "pool, sqrt_price_x96, tick, liquidity, fee_growth_global0_x128, "
            "fee_growth_global1_x128",
            "pool",
            " AND pool IN {pools:Array(String)}",
        ),
        {"chain": as_of.chain_id, "block": as_of.number, "pools": pools},
    )
    snapshots = {
        r[0]: PoolSnapshot(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]))
        for r in pool_rows
    }
    prices = {t: price for t, (price, _block) in ctx.token_prices(as_of, tokens).items()}
    return snapshots, prices, uncollected(ctx, as_of, held, snapshots)


def uncollected(
    ctx: ReadContext,
    as_of: AsOf,
    held: Sequence[dict[str, Any]],
    snapshots: dict[str, PoolSnapshot],
) -> dict[str, tuple[int, int]]:
    """What a static collect(max, max) returns at the block, per position: rebuilt from
    the fee state the flow stored (the same arithmetic as the live replica)."""
    pools = sorted({v["pool"] for v in held})
    ticks = sorted({t for v in held for t in (v["tick_lower"], v["tick_upper"])})
    params = {"chain": as_of.chain_id, "block": as_of.number, "pools": pools}
    tick_rows = ctx.store.rows(
        latest_rows(
            "pool_ticks",
            "pool, tick, initialized, fee_growth_outside0_x128, fee_growth_outside1_x128",
            "pool, tick",
            " AND pool IN {pools:Array(String)} AND tick IN {ticks:Array(Int32)}",
        ),
        {**params, "ticks": ticks},
    )
    outside = {(r[0], int(r[1])): (int(r[3]), int(r[4])) for r in tick_rows if r[2]}
    position_rows = ctx.store.rows(
        latest_rows(
            "pool_positions",
            "pool, owner, tick_lower, tick_upper, liquidity, fee_inside_last0, "
            "fee_inside_last1, tokens_owed0, tokens_owed1",
            "pool, owner, tick_lower, tick_upper",
            " AND pool IN {pools:Array(String)}",
        ),
        params,
    )
    pool_positions = {
        (r[0], r[1], int(r[2]), int(r[3])): PoolPosition(*(int(x) for x in r[4:]))
        for r in position_rows
    }
    owed: dict[str, tuple[int, int]] = {}
    for v in held:
        snap = snapshots.get(v["pool"])
        if snap is None:
            continue
        lower, upper = int(v["tick_lower"]), int(v["tick_upper"])
        lo, up = (
            outside.get((v["pool"], lower), (0, 0)),
            outside.get((v["pool"], upper), (0, 0)),
        )
        inside = (
            fee_growth_inside(snap.tick, lower, upper, lo[0], up[0], snap.fee_growth_global0_x128),
            fee_growth_inside(snap.tick, lower, upper, lo[1], up[1], snap.fee_growth_global1_x128),
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


def _position(row: dict[str, Any]) -> UniswapPosition:
    """A stored version back into the flow's dataclass (ClickHouse gives exact ints)."""
    values = {name: row[name] for name in _POSITION_FIELDS}
    values["burned"] = bool(values["burned"])
    return UniswapPosition(**values)


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
        fees += token_usd(_lifetime_fees(after, side) - _lifetime_fees(before, side), dec, price)
        put_in = int((after or {}).get(f"deposited{side}", 0)) - int(
            (before or {}).get(f"deposited{side}", 0)
        )
        taken = int((after or {}).get(f"collected{side}", 0)) - int(
            (before or {}).get(f"collected{side}", 0)
        )
        actions += token_usd(put_in - taken, dec, price)
    return Change(
        ref["id"],
        ref["protocol"],
        v0,
        v1,
        price=v1 - v0 - fees - actions,
        fees=fees,
        actions=actions,
    )


class UniswapV3Read(ReadSide):
    name = PROTOCOL_UNISWAP_V3
    section = "positions"
    alert_kinds = frozenset({"il_above", "out_of_range"})
    head_reads = frozenset({"position_versions", "pool_states", "pool_ticks", "pool_positions"})

    stresses = True
    advises = True

    def portfolio(self, ctx: ReadContext, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        return value(ctx, as_of, held_by(ctx, as_of, owner))

    def advice(
        self, ctx: ReadContext, owner: str, as_of: AsOf, target_wad: int, horizon: int
    ) -> list[dict[str, Any]]:
        return advised(ctx, as_of, held_by(ctx, as_of, owner))

    def stress(
        self, ctx: ReadContext, owner: str, as_of: AsOf, scenario: Scenario
    ) -> list[dict[str, Any]]:
        return stressed(ctx, as_of, held_by(ctx, as_of, owner), scenario)

    def subjects(
        self,
        ctx: ReadContext,
        as_of: AsOf,
        owners: Sequence[str] | None,
        tokens: Sequence[str] | None,
        pools: Sequence[str] | None,
    ) -> list[dict[str, Any]]:
        extra, params = "", dict[str, Any]()
        if owners is not None:
            extra += _EVER_OWNED
            params["owners"] = list(owners)
        if pools is not None:
            extra += " AND pool IN {pools:Array(String)}"
            params["pools"] = list(pools)
        if tokens is not None:
            extra += " AND (token0 IN {tokens:Array(String)} OR token1 IN {tokens:Array(String)})"
            params["tokens"] = list(tokens)
        found = versions(ctx, as_of, extra, params)
        # Burned and transferred-away positions drop out after the latest version is known.
        held = [v for v in found if not v["burned"] and (not owners or v["owner"] in owners)]
        return value(ctx, as_of, held)

    def changes(self, ctx: ReadContext, owner: str, start: AsOf, end: AsOf) -> list[Change]:
        lp0 = {p["id"]: p for p in value(ctx, start, ever_owned(ctx, start, owner))}
        lp1 = {p["id"]: p for p in value(ctx, end, ever_owned(ctx, end, owner))}
        changes = []
        for pid in sorted(set(lp0) | set(lp1)):
            p0, p1 = lp0.get(pid), lp1.get(pid)
            held0 = p0 is not None and p0["owner"] == owner and not p0["burned"]
            held1 = p1 is not None and p1["owner"] == owner
            if not (held0 or held1):
                continue
            # Changed hands: held at one end only, and not because it was minted in between.
            transferred = held0 != held1 and (held0 or p0 is not None)
            changes.append(lp_change(p0 if held0 else None, p1 if held1 else None, transferred))
        return changes

    def subject_exists(self, ctx: ReadContext, chain_id: int, subject_id: str) -> bool:
        found = ctx.store.scalar(
            "SELECT count() FROM defimon.position_versions "
            "WHERE chain_id = {chain:UInt64} AND position_id = {id:String}",
            {"chain": chain_id, "id": subject_id},
        )
        return bool(found)


READ_SIDE = UniswapV3Read()
