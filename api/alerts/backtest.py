"""Replay a rule over history with the live evaluator (api/alerts/rules.py).

The rule's subjects are rebuilt from the store at every indexed block in [from, to] with the
same time-travel valuation `/v1/positions?at=` uses (Queries.subjects), and fed to `step` in
block order; liquidation rules replay the stored liquidations (Queries.liquidations). Because
the evaluator runs on block time, the fires equal the live engine's wherever the live engine
saw the same states: the engine samples a subject when the flow revalues it (an event, a price
or pool change), the backtest at every indexed block. The two differ only where a level is
crossed by interest accrual alone, between two updates of an account: the backtest sees that
at the block where it happens, the live engine at the account's next update.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from api.alerts.rules import SUBJECT_KINDS, Fired, Rule, Sample, SubjectState, step, wallet_sample
from api.queries import AsOf, Queries, read_sides
from schemas.errors import InvalidInput


def protocols_of(kind: str) -> frozenset[str] | None:
    """The protocols whose subjects have the kind's metric, when only some do (the read sides
    that list the kind): the others' subjects never yield a sample, so they are not read."""
    found = frozenset(side.name for side in read_sides() if kind in side.alert_kinds)
    return found or None


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
    protocols = protocols_of(rule.kind)
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
    return [Sample.of(x) for x in queries.liquidations(chain, start, end)]


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
