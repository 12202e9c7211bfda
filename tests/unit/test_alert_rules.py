"""The alert evaluator: hysteresis, cooldown and each kind, on block time."""

from __future__ import annotations

import random
from typing import Any

import pytest

from api.alerts.delivery import backoff, signature
from api.alerts.rules import (
    Delivery,
    Rule,
    Sample,
    SubjectState,
    drift,
    iso_time,
    step,
    validate,
    wallet_sample,
    wallet_weights,
)
from protocols.registry import PROTOCOLS
from schemas.errors import InvalidInput
from schemas.filters import Filter

T0 = 1_700_000_000
A = "0x" + "a" * 40
B = "0x" + "b" * 40
C = "0x" + "c" * 40


def account(hf: float | None, t: int, block: int, sid: str = "1:pool:u") -> dict[str, Any]:
    return {
        "id": sid,
        "protocol": "aave_v3",
        "chain_id": 1,
        "owner": A,
        "health_factor_float": hf,
        "value_usd": 100.0,
        "block_number": block,
        "block_hash": f"0x{block:064x}",
        "block_time": iso_time(t),
    }


def position(t: int, block: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": "1:npm:7",
        "protocol": "uniswap_v3",
        "chain_id": 1,
        "owner": A,
        "block_number": block,
        "block_hash": f"0x{block:064x}",
        "block_time": iso_time(t),
        **fields,
    }


def run(rule: Rule, subjects: list[dict[str, Any]]) -> list[int]:
    """The blocks at which the rule fires over these samples of one subject."""
    state: SubjectState | None = None
    blocks = []
    for data in subjects:
        state, fired = step(rule, state, Sample.of(data))
        blocks += [f.sample.block_number for f in fired]
    return blocks


def hf_rule(**kw: Any) -> Rule:
    return validate(Rule("r", "hf", "health_factor_below", Filter(), threshold=1.2, **kw))


def test_health_factor_fires_on_crossing_and_rearms_past_the_band() -> None:
    rule = hf_rule(hysteresis=0.1)
    hfs = [1.5, 1.19, 1.1, 1.25, 1.15, 1.31, 1.19, None]
    samples = [account(hf, T0 + 12 * i, i) for i, hf in enumerate(hfs)]
    # Fires at 1 (crossing); 1.25 is inside the band, so 1.15 does not fire again; 1.31
    # re-arms; 1.19 fires; no debt (None: infinite) re-arms.
    assert run(rule, samples) == [1, 6]


def test_first_sample_past_the_level_fires() -> None:
    assert run(hf_rule(), [account(1.0, T0, 5)]) == [5]


def test_cooldown_is_block_time_and_a_suppressed_breach_fires_after_it() -> None:
    rule = hf_rule(cooldown_seconds=100)
    hfs = [(1.0, 0), (1.3, 10), (1.0, 20), (1.0, 99), (1.0, 100), (1.3, 110), (1.0, 120)]
    samples = [account(hf, T0 + dt, i) for i, (hf, dt) in enumerate(hfs)]
    # 0 fires; re-armed at 10, but 20 and 99 are within the cooldown; 100 is not.
    # Re-armed at 110; 120 is within 100 s of the fire at 100.
    assert run(rule, samples) == [0, 4]


def test_a_subject_without_the_metric_is_skipped() -> None:
    lp = position(T0, 1, value_usd=5.0, in_range=True, il_pct=-0.5, il_usd=-1.0)
    assert run(hf_rule(), [lp]) == []
    rule = validate(Rule("r", "oor", "out_of_range", Filter()))
    assert run(rule, [account(1.0, T0, 1)]) == []


@pytest.mark.parametrize(
    ("measure", "values", "expected"),
    [
        (
            "pct",
            [(-0.01, -1.0), (-0.06, -1.0), (-0.07, -1.0), (-0.02, -1.0), (-0.08, -1.0)],
            [1, 4],
        ),
        ("usd", [(-0.5, -10.0), (-0.5, -60.0), (-0.5, 20.0), (-0.5, 51.0)], [1, 3]),
    ],
)
def test_il_above_uses_the_loss_magnitude(
    measure: str, values: list[tuple[float, float]], expected: list[int]
) -> None:
    level = 0.05 if measure == "pct" else 50.0
    band = 0.02 if measure == "pct" else 10.0
    rule = validate(
        Rule("r", "il", "il_above", Filter(), threshold=level, hysteresis=band, measure=measure)
    )
    samples = [position(T0 + i, i, il_pct=pct, il_usd=usd) for i, (pct, usd) in enumerate(values)]
    assert run(rule, samples) == expected


def test_out_of_range_fires_on_leaving_and_rearms_on_returning() -> None:
    rule = validate(Rule("r", "oor", "out_of_range", Filter()))
    flags = [True, False, False, True, False]
    assert run(rule, [position(T0 + i, i, in_range=f) for i, f in enumerate(flags)]) == [1, 4]


def test_out_of_range_for_a_duration_fires_once_it_has_lasted_and_not_for_a_short_dip() -> None:
    rule = validate(Rule("r", "oor", "out_of_range", Filter(), duration_seconds=60))
    # (seconds after T0, in range): a 30 s dip, then out from 100 s for good.
    samples = [(0, True), (10, False), (40, True), (100, False), (130, False), (160, False)]
    samples += [(170, False), (200, True), (210, False), (300, False)]
    blocks = run(rule, [position(T0 + s, i, in_range=f) for i, (s, f) in enumerate(samples)])
    # out at 100: 160 is 60 s later (fires once); back in at 200 re-arms; out at 210: 300.
    assert blocks == [5, 9]
    state, fired = step(rule, None, Sample.of(position(T0, 1, in_range=False)))
    assert not fired and state.out_since == T0
    stored = validate(Rule("r", "oor", "out_of_range", Filter()))
    assert stored.params()["duration_seconds"] == 0
    with pytest.raises(InvalidInput, match="out_of_range rules only"):
        validate(
            Rule("r", "hf", "health_factor_below", Filter(), threshold=1.2, duration_seconds=5)
        )


def test_value_change_compares_with_the_value_in_effect_a_window_ago() -> None:
    rule = validate(
        Rule("r", "vc", "value_change", Filter(), threshold=0.1, window_seconds=60, hysteresis=0.02)
    )
    # (seconds, value): nothing to compare with before 60 s of history.
    points = [(0, 100.0), (30, 150.0), (60, 105.0), (90, 120.0), (100, 120.0), (160, 100.0)]
    samples = [position(T0 + t, i, value_usd=v) for i, (t, v) in enumerate(points)]
    # at 60: base 100 (t=0) -> 5%; at 90: base 150 (t=30) -> 20% fires; at 100: base 150
    # (t=30 is still in effect at 40) -> 20%, disarmed (re-arms at <= 8%); at 160: base 120
    # (t=100) -> 16.7%, still disarmed.
    assert run(rule, samples) == [3]
    # Sampling more often does not change the value in effect at a time.
    dense = [(0, 100.0), (10, 100.0), (20, 100.0), (30, 150.0), (45, 150.0)]
    dense += [(60, 105.0), (90, 120.0)]
    blocks = run(rule, [position(T0 + t, t, value_usd=v) for t, v in dense])
    assert blocks == [90]


def test_liquidation_fires_per_event_with_cooldown() -> None:
    rule = validate(Rule("r", "liq", "liquidation", Filter(), cooldown_seconds=30))
    events = [
        {**account(None, T0 + dt, i), "log_index": i, "debt_to_cover": "5"}
        for i, dt in enumerate([0, 10, 40])
    ]
    assert run(rule, events) == [0, 2]
    with pytest.raises(InvalidInput, match="liquidation rule"):
        validate(
            Rule("r", "liq", "liquidation", Filter.parse({"max_health_factor": ["1"]}, PROTOCOLS))
        )


def lp(token0: str, token1: str, a0: int, a1: int, p0: float, p1: float) -> dict[str, Any]:
    return position(
        T0,
        3,
        token0={"address": token0, "symbol": "X", "decimals": 18},
        token1={"address": token1, "symbol": "Y", "decimals": 6},
        amount0=str(a0),
        amount1=str(a1),
        price0_usd=p0,
        price1_usd=p1,
        value_usd=0.0,
    )


def test_allocation_drift_weights_lp_amounts_and_net_lending() -> None:
    pos = lp(A, B, 2 * 10**18, 1000 * 10**6, 500.0, 1.0)  # A: $1000, B: $1000
    acct = {
        **account(2.0, T0, 2, "1:pool:a"),
        "reserves": [
            {"asset": C, "supplied_usd": 3000.0, "debt_usd": 0.0},
            {"asset": B, "supplied_usd": 0.0, "debt_usd": 1000.0},
        ],
    }
    weights = wallet_weights([pos, acct])
    assert weights == pytest.approx({A: 1000 / 4000, B: 0.0, C: 3000 / 4000})
    assert drift({A: 0.5, C: 0.5}, weights or {}) == (pytest.approx(0.25), A)
    rule = validate(
        Rule(
            "r",
            "drift",
            "allocation_drift",
            Filter(),
            threshold=0.2,
            target_weights=((A, 50), (C, 50)),
        )
    )
    assert rule.target_weights == ((A, 0.5), (C, 0.5))
    sample = wallet_sample(1, A, [pos, acct])
    assert sample is not None and sample.subject_id == f"1:{A}" and sample.block_number == 3
    state, fired = step(rule, None, sample)
    assert [f.value for f in fired] == [pytest.approx(0.25)] and not state.armed
    assert wallet_sample(1, A, [acct | {"reserves": []}]) is None


def test_validation_messages() -> None:
    def bad(**kw: Any) -> str:
        base: dict[str, Any] = {"id": "r", "name": "n", "kind": "health_factor_below"}
        base.update(kw)
        base.setdefault("filter", Filter())
        with pytest.raises(InvalidInput) as exc:
            validate(Rule(**base))
        return str(exc.value)

    assert "kind" in bad(kind="nope")
    assert "threshold" in bad(threshold=0)
    assert "window_seconds" in bad(kind="value_change", threshold=0.1)
    assert "target_weights" in bad(kind="allocation_drift", threshold=0.1)
    assert "not a token address" in bad(
        kind="allocation_drift", threshold=0.1, target_weights=(("x", 1.0),)
    )
    assert "secret" in bad(threshold=1, delivery=Delivery(webhook_url="http://x"))
    assert "email" in bad(threshold=1, delivery=Delivery(email="a@b, c@d"))
    assert "hysteresis" in bad(threshold=1, hysteresis=-1)


def test_fired_alert_ids_are_stable_and_carry_the_block() -> None:
    rule = hf_rule()
    data = account(1.0, T0, 9)
    _, (first,) = step(rule, None, Sample.of(data))
    _, (again,) = step(rule, None, Sample.of(data))
    assert first.id == again.id
    body = first.json()
    assert body["block_number"] == 9 and body["block_hash"] == data["block_hash"]
    assert body["block_time"] == iso_time(T0) and body["owner"] == A


def test_signature_and_backoff() -> None:
    # RFC 4231 test case 2.
    assert signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    rng = random.Random(1)
    delays = [backoff(n, 1.0, 20.0, rng) for n in range(1, 10)]
    for n, d in enumerate(delays, start=1):
        cap = min(20.0, 2.0 ** (n - 1))
        assert cap / 2 <= d <= cap
