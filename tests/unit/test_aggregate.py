"""/v1/aggregate's grammar and arithmetic (api.aggregate)."""

from __future__ import annotations

import math

import pytest

from api.aggregate import aggregate, parse_group_by, parse_metrics, quantile
from schemas.errors import InvalidInput

A, B = "0x" + "a" * 40, "0x" + "b" * 40
USDC, WETH = "0x" + "1" * 40, "0x" + "2" * 40


def lp(owner: str, value: float, il: float) -> dict[str, object]:
    return {
        "id": f"lp-{owner}-{value}",
        "protocol": "uniswap_v3",
        "chain_id": 1,
        "owner": owner,
        "token0": {"address": USDC},
        "token1": {"address": WETH},
        "value_usd": value,
        "il_usd": il,
    }


def account(owner: str, value: float, hf: float | None) -> dict[str, object]:
    return {
        "id": f"acc-{owner}",
        "protocol": "aave_v3",
        "chain_id": 1,
        "owner": owner,
        "value_usd": value,
        "debt_usd": 0.0 if hf is None else 100.0,
        "health_factor_float": hf,
        "reserves": [{"asset": WETH}],
    }


SUBJECTS = [
    lp(A, 100.0, -1.0),
    lp(A, 300.0, -3.0),
    lp(B, 50.0, 0.0),
    account(A, 70.0, 1.2),
    account(B, 10.0, None),
]


def test_groups_and_metrics() -> None:
    metrics = parse_metrics(
        "count, sum(value_usd), avg(il_usd), quantile(0.5,value_usd), min(health_factor)"
    )
    groups = aggregate(SUBJECTS, parse_group_by("protocol"), metrics)
    by = {g["key"]["protocol"]: g["metrics"] for g in groups}
    assert by["uniswap_v3"] == {
        "count": 3,
        "sum(value_usd)": 450.0,
        "avg(il_usd)": -4.0 / 3,
        "quantile(0.5,value_usd)": 100.0,
        "min(health_factor)": None,
    }
    # No debt is an infinite health factor: counted, but kept out of the numbers.
    assert by["aave_v3"]["count"] == 2 and by["aave_v3"]["min(health_factor)"] == 1.2


def test_grouping_by_token_counts_exposure_once_per_token() -> None:
    groups = aggregate(SUBJECTS, parse_group_by("token,owner"), parse_metrics("count"))
    counts = {(g["key"]["token"], g["key"]["owner"]): g["metrics"]["count"] for g in groups}
    assert counts == {(USDC, A): 2, (USDC, B): 1, (WETH, A): 3, (WETH, B): 2}


def test_no_group_is_one_total() -> None:
    (total,) = aggregate(SUBJECTS, (), parse_metrics("sum(value_usd),max(debt_usd)"))
    assert total == {"key": {}, "metrics": {"sum(value_usd)": 530.0, "max(debt_usd)": 100.0}}


def test_quantile_interpolates_like_numpy() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 1.0) == 4.0
    assert math.isclose(quantile([0.0, 10.0], 0.9), 9.0)


@pytest.mark.parametrize(
    ("group_by", "metrics", "message"),
    [
        ("colour", None, "cannot group by"),
        ("owner,owner", None, "distinct"),
        (None, "median(value_usd)", "is not count"),
        (None, "sum(secret)", "cannot aggregate"),
        (None, "quantile(2,value_usd)", "is not count"),
        (None, "sum(value_usd);DROP TABLE x", "is not count"),
    ],
)
def test_bad_requests_say_what_is_wrong(
    group_by: str | None, metrics: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_group_by(group_by)
        parse_metrics(metrics)
