"""Replay a rule over history with the live evaluator (api/alerts/rules.py).

The rule's subjects are rebuilt from the store at every indexed block in [from, to] with the
same time-travel valuation `/v1/positions?at=` uses (Queries.subjects), and fed to `step` in
block order; liquidation rules replay `defimon.liquidations`. Because the evaluator runs on
block time, the fires equal the live engine's wherever the live engine saw the same states:
the engine samples a subject when the flow revalues it (an event, a price or pool change),
the backtest at every indexed block. The two differ only where a level is crossed by interest
accrual alone, between two updates of an account: the backtest sees that at the block where
it happens, the live engine at the account's next update.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from api.alerts.rules import SUBJECT_KINDS, Fired, Rule, Sample, SubjectState, step, wallet_sample
from api.queries import AsOf, Queries
from protocols.aave_v3.state import account_id
from schemas.errors import InvalidInput
from schemas.liquidations import liquidation_json

# Kinds whose metric only some protocols have: the others' subjects never yield a sample.
_PROTOCOLS_OF = {
    "health_factor_below": frozenset({"aave_v3", "compound_v3"}),
    "il_above": frozenset({"uniswap_v3"}),
    "out_of_range": frozenset({"uniswap_v3"}),
}


def backtest(
    queries: Queries, rule: Rule, start: AsOf, end: AsOf, max_blocks: int
) -> dict[str, Any]:
    chain = start.chain_id
    if rule.kind == "liquidation":
        samples = _liquidations(queries, chain, start.number, end.number)
        states: dict[str, SubjectState] = {}
        fired: list[Fired] = []
        for sample in samples:
            if rule.filter.matches(sample.data):
                states[sample.subject_id], out = step(rule, states.get(sample.subject_id), sample)
                fired += out
        return _result(rule, start, end, len({s.block_number for s in samples}), fired)

    blocks = _blocks(queries, start, end)
    if len(blocks) > max_blocks:
        raise InvalidInput(
            f"[from, to] holds {len(blocks)} indexed blocks; a backtest replays at most "
            f"{max_blocks}: narrow the range"
        )
    flt = rule.filter
    protocols = _PROTOCOLS_OF.get(rule.kind)
    if protocols is not None and not flt.protocol:
        flt = dataclasses.replace(flt, protocol=protocols)
    states = {}
    fired = []
    for as_of in blocks:
        subjects = queries.subjects(as_of, flt)
        if rule.kind in SUBJECT_KINDS:
            samples = [Sample.of(s) for s in subjects]
        else:  # allocation_drift: one sample per wallet
            wallets: dict[str, list[dict[str, Any]]] = {}
            for s in subjects:
                wallets.setdefault(s["owner"], []).append(s)
            samples = [
                w
                for owner, held in sorted(wallets.items())
                if (w := wallet_sample(chain, owner, held)) is not None
            ]
        for sample in sorted(samples, key=lambda s: s.subject_id):
            states[sample.subject_id], out = step(rule, states.get(sample.subject_id), sample)
            fired += out
    return _result(rule, start, end, len(blocks), fired)


def _blocks(queries: Queries, start: AsOf, end: AsOf) -> list[AsOf]:
    """`start`, then every indexed block after it up to `end` (with its hash and time)."""
    rows = queries.store.rows(
        "SELECT number, hash, toUnixTimestamp(block_time) FROM defimon.blocks FINAL "
        "WHERE chain_id = {chain:UInt64} AND number > {start:UInt64} AND number <= {end:UInt64} "
        "ORDER BY number",
        {"chain": start.chain_id, "start": start.number, "end": end.number},
    )
    first = start
    if first.timestamp is None:
        ts = queries.timestamp(start)
        first = dataclasses.replace(start, timestamp=ts)
    return [first] + [AsOf(start.chain_id, int(n), h, int(t)) for n, h, t in rows]


def _liquidations(queries: Queries, chain: int, start: int, end: int) -> list[Sample]:
    rows = queries.store.dicts(
        "SELECT pool, block_number, log_index, block_hash, toUnixTimestamp(block_time) AS ts, "
        "tx_hash, owner, collateral_asset, debt_asset, debt_to_cover, liquidated_collateral, "
        "liquidator, receive_a_token FROM defimon.liquidations FINAL "
        "WHERE chain_id = {chain:UInt64} AND block_number >= {start:UInt64} "
        "AND block_number <= {end:UInt64} ORDER BY block_number, log_index",
        {"chain": chain, "start": start, "end": end},
    )
    return [
        Sample.of(
            liquidation_json(
                account_id=account_id(chain, r["pool"], r["owner"]),
                chain_id=chain,
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
        )
        for r in rows
    ]


def _result(
    rule: Rule, start: AsOf, end: AsOf, evaluated: int, fired: list[Fired]
) -> dict[str, Any]:
    return {
        "rule_id": rule.id,
        "from": start.json(),
        "to": end.json(),
        "blocks_evaluated": evaluated,
        "fired": [_without_subject(f.json()) for f in fired],
    }


def _without_subject(alert: dict[str, Any]) -> dict[str, Any]:
    # The subject's full state at each fire would make long replays heavy; the id and block
    # are enough to ask /v1/positions?at= for it.
    alert.pop("subject", None)
    return alert
