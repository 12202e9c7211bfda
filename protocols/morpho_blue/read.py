"""Morpho Blue accounts read back from the store (protocols/read_side.py).

An account at block N is its latest position version at or before N, valued with its market as
stored then (the latest `morpho_market_states` row), the latest oracle price and IRM rate read
by then (`morpho_market_reads`), accrued to N's own time by the function the live path values
with (plugin.account_value), in the lending account shape.

Its part of the diff splits each account as an Aave account's is split: the earlier position at
the later market and time with the earlier prices (interest), then at the later prices (price);
the rest is the owner's doing (or a liquidation's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from protocols.morpho_blue.advice import advice
from protocols.morpho_blue.events import MarketParams
from protocols.morpho_blue.math import MarketTotals
from protocols.morpho_blue.state import Market, Position
from protocols.morpho_blue.stress import stress_account
from protocols.morpho_blue.value import MarketSnapshot, account_value
from protocols.read_side import (
    ALL_UNTIMED,
    AsOf,
    Change,
    ReadContext,
    ReadSide,
    latest_rows,
    lending_change,
)
from schemas.morpho import (
    PROTOCOL_MORPHO_BLUE,
    MorphoAccountValue,
    MorphoMarketInfo,
    morpho_account_json,
)
from schemas.stress import Scenario


def open_positions(
    ctx: ReadContext, as_of: AsOf, owners: Sequence[str] | None, markets: Sequence[str] | None
) -> list[tuple[str, str, str, str, Position, int]]:
    """(account id, morpho, market, owner, position, block of its latest version) of every
    account holding something at the block."""
    params: dict[str, Any] = {"chain": as_of.chain_id, "block": as_of.number}
    where = ""
    if owners is not None:
        where += " AND owner IN {owners:Array(String)}"
        params["owners"] = list(owners)
    if markets is not None:
        where += " AND market IN {markets:Array(String)}"
        params["markets"] = list(markets)
    rows = ctx.store.dicts(
        latest_rows(
            "morpho_positions",
            "account_id, morpho, market, owner, supply_shares, borrow_shares, collateral, "
            "block_number",
            "account_id",
            where,
            log_index=True,
        ),
        params,
    )
    out = []
    for r in rows:
        position = Position(int(r["supply_shares"]), int(r["borrow_shares"]), int(r["collateral"]))
        if not position.is_empty():
            out.append(
                (
                    r["account_id"],
                    r["morpho"],
                    r["market"],
                    r["owner"],
                    position,
                    int(r["block_number"]),
                )
            )
    return out


def snapshots(ctx: ReadContext, as_of: AsOf, markets: Sequence[str]) -> dict[str, MarketSnapshot]:
    """Each market as stored at the block, with the price and rate read by then (a market
    without a state row by then is left out)."""
    if not markets:
        return {}
    params = {"chain": as_of.chain_id, "block": as_of.number, "markets": list(markets)}
    in_markets = " AND market IN {markets:Array(String)}"
    created = ctx.store.dicts(
        latest_rows(
            "morpho_markets",
            "market, loan_token, collateral_token, oracle, irm, lltv",
            "market",
            in_markets,
        ),
        params,
    )
    states = {
        r["market"]: r
        for r in ctx.store.dicts(
            latest_rows("morpho_market_states", ALL_UNTIMED, "market", in_markets), params
        )
    }
    reads = {
        r["market"]: r
        for r in ctx.store.dicts(
            latest_rows(
                "morpho_market_reads", "market, price, borrow_rate, stale", "market", in_markets
            ),
            params,
        )
    }
    tokens = ctx.token_info(
        as_of.chain_id,
        sorted({t for r in created for t in (r["loan_token"], r["collateral_token"])}),
    )
    out = {}
    for c in created:
        state = states.get(c["market"])
        if state is None:
            continue
        loan, coll = tokens.get(c["loan_token"]), tokens.get(c["collateral_token"])
        params_ = MarketParams(
            c["loan_token"], c["collateral_token"], c["oracle"], c["irm"], int(c["lltv"])
        )
        info = MorphoMarketInfo(
            c["market"],
            c["loan_token"],
            c["collateral_token"],
            c["oracle"],
            c["irm"],
            int(c["lltv"]),
            loan.symbol if loan else "???",
            loan.decimals if loan else 18,
            coll.symbol if coll else "???",
            coll.decimals if coll else 18,
        )
        totals = MarketTotals(
            int(state["total_supply_assets"]),
            int(state["total_supply_shares"]),
            int(state["total_borrow_assets"]),
            int(state["total_borrow_shares"]),
            int(state["last_update"]),
            int(state["fee"]),
        )
        market = Market(c["market"], params_, totals, int(state["prev_borrow_rate"]))
        read = reads.get(c["market"])
        out[c["market"]] = MarketSnapshot(
            info,
            market,
            state["fee_recipient"],
            None if read is None else int(read["price"]),
            int(read["borrow_rate"]) if read is not None else market.prev_borrow_rate,
            read is not None,
            "" if read is None else read["stale"],
        )
    return out


def _valued(
    ctx: ReadContext, as_of: AsOf, owners: Sequence[str] | None, markets: Sequence[str] | None
) -> list[tuple[str, str, str, MorphoMarketInfo, MorphoAccountValue, int]]:
    held = open_positions(ctx, as_of, owners, markets)
    if not held:
        return []
    ref = ctx.timed_ref(as_of)
    found = snapshots(ctx, as_of, sorted({m for _, _, m, _, _, _ in held}))
    loans = sorted({s.info.loan_token for s in found.values()})
    prices = ctx.token_prices(as_of, loans)
    out = []
    for aid, morpho, market, owner, position, updated in held:
        snapshot = found.get(market)
        if snapshot is None:
            continue
        loan = prices.get(snapshot.info.loan_token)
        value = account_value(
            snapshot, position, owner, ref.timestamp, None if loan is None else loan[0].usd
        )
        if value is not None:
            out.append((aid, morpho, owner, snapshot.info, value, updated))
    return out


def morpho_subjects(
    ctx: ReadContext, as_of: AsOf, owners: Sequence[str] | None, markets: Sequence[str] | None
) -> list[dict[str, Any]]:
    valued = _valued(ctx, as_of, owners, markets)
    ref = ctx.timed_ref(as_of) if valued else None
    out = []
    for _aid, morpho, owner, info, value, updated in valued:
        assert ref is not None
        out.append(morpho_account_json(as_of.chain_id, morpho, owner, info, value, ref, updated))
    return out


def _net_usd(info: MorphoMarketInfo, value: MorphoAccountValue) -> float:
    """What the account owns in USD (0 where the loan token has no price)."""
    if value.loan_usd is None:
        return 0.0
    loan_unit = 10**info.loan_decimals
    collateral = value.collateral_value / loan_unit * value.loan_usd  # at the market's oracle
    return collateral + (value.supply_assets - value.borrow_assets) / loan_unit * value.loan_usd


def owned_markets(
    ctx: ReadContext, as_of: AsOf, owner: str
) -> tuple[
    list[tuple[str, str, str, str, Position, int]], dict[str, MarketSnapshot], dict[str, float]
]:
    """The owner's positions at the block, their markets and each loan token's USD price."""
    held = open_positions(ctx, as_of, [owner], None)
    if not held:
        return [], {}, {}
    found = snapshots(ctx, as_of, sorted({m for _, _, m, _, _, _ in held}))
    loans = sorted({s.info.loan_token for s in found.values()})
    return held, found, {t: p[0].usd for t, p in ctx.token_prices(as_of, loans).items()}


class MorphoBlueRead(ReadSide):
    name = PROTOCOL_MORPHO_BLUE
    section = "lending"
    alert_kinds = frozenset({"health_factor_below"})
    head_reads = frozenset(
        {"morpho_positions", "morpho_markets", "morpho_market_states", "morpho_market_reads"}
    )
    stresses = True

    def portfolio(self, ctx: ReadContext, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        return morpho_subjects(ctx, as_of, [owner], None)

    def subjects(
        self,
        ctx: ReadContext,
        as_of: AsOf,
        owners: Sequence[str] | None,
        tokens: Sequence[str] | None,
        pools: Sequence[str] | None,
    ) -> list[dict[str, Any]]:
        # A lending account's `pool` is its market; a token condition is left to the filter.
        return morpho_subjects(ctx, as_of, owners, pools)

    advises = True

    def advice(
        self, ctx: ReadContext, owner: str, as_of: AsOf, target_wad: int, horizon: int
    ) -> list[dict[str, Any]]:
        held, found, usd = owned_markets(ctx, as_of, owner)
        if not held:
            return []
        ref = ctx.timed_ref(as_of)
        out = []
        for aid, _morpho, market, _owner, position, _updated in held:
            snapshot = found.get(market)
            at = ref.timestamp + horizon
            answer = (
                None
                if snapshot is None
                else advice(snapshot, position, at, target_wad, usd.get(snapshot.info.loan_token))
            )
            if answer is not None:
                out.append(
                    {
                        "id": aid,
                        "protocol": self.name,
                        "chain_id": as_of.chain_id,
                        "pool": market,
                        "owner": owner,
                        "block_number": as_of.number,
                        "valued_at": at,
                        **answer,
                    }
                )
        return out

    def stress(
        self, ctx: ReadContext, owner: str, as_of: AsOf, scenario: Scenario
    ) -> list[dict[str, Any]]:
        held, found, usd = owned_markets(ctx, as_of, owner)
        if not held:
            return []
        ref = ctx.timed_ref(as_of)
        out = []
        for _aid, morpho, market, _owner, position, updated in held:
            snapshot = found.get(market)
            if snapshot is None:
                continue
            stressed = stress_account(
                morpho,
                owner,
                position,
                snapshot,
                ref,
                usd.get(snapshot.info.loan_token),
                scenario,
                updated,
            )
            if stressed is not None:
                out.append(stressed)
        return out

    def changes(self, ctx: ReadContext, owner: str, start: AsOf, end: AsOf) -> list[Change]:
        p0 = {aid: (m, pos) for aid, _, m, _, pos, _ in open_positions(ctx, start, [owner], None)}
        p1 = {aid: (m, pos) for aid, _, m, _, pos, _ in open_positions(ctx, end, [owner], None)}
        markets = sorted({m for m, _ in (*p0.values(), *p1.values())})
        s0, s1 = snapshots(ctx, start, markets), snapshots(ctx, end, markets)
        t0 = ctx.timestamp(start) or 0
        t1 = ctx.timestamp(end) or 0
        loans = sorted({s.info.loan_token for s in (*s0.values(), *s1.values())})
        usd0 = {t: p[0].usd for t, p in ctx.token_prices(start, loans).items()}
        usd1 = {t: p[0].usd for t, p in ctx.token_prices(end, loans).items()}

        def worth(
            snapshot: MarketSnapshot | None, held: Position | None, t: int, usd: dict[str, float]
        ) -> float:
            if snapshot is None or held is None:
                return 0.0
            value = account_value(snapshot, held, owner, t, usd.get(snapshot.info.loan_token))
            return 0.0 if value is None else _net_usd(snapshot.info, value)

        changes = []
        for aid in sorted(set(p0) | set(p1)):
            market = (p0.get(aid) or p1[aid])[0]
            before = p0.get(aid, (market, None))[1]
            after = p1.get(aid, (market, None))[1]
            e0, e1 = s0.get(market), s1.get(market)
            v0, v1 = worth(e0, before, t0, usd0), worth(e1, after, t1, usd1)
            if e0 is None or e1 is None or before is None:
                changes.append(lending_change(aid, self.name, v0, v1, v0, v0))
                continue
            # the later market and time with the earlier prices (the oracle's and the loan's)
            at_later_rates = replace(e1, price=e0.price)
            changes.append(
                lending_change(
                    aid,
                    self.name,
                    v0,
                    v1,
                    worth(at_later_rates, before, t1, usd0),
                    worth(e1, before, t1, usd1),
                )
            )
        return changes

    def subject_exists(self, ctx: ReadContext, chain_id: int, subject_id: str) -> bool:
        found = ctx.store.scalar(
            "SELECT count() FROM defimon.morpho_positions "
            "WHERE chain_id = {chain:UInt64} AND account_id = {id:String}",
            {"chain": chain_id, "id": subject_id},
        )
        return bool(found)


READ_SIDE = MorphoBlueRead()
