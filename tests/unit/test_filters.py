"""The filter grammar (schemas.filters): parsing, matching and its canonical form."""

from __future__ import annotations

import math

import pytest

from protocols.registry import PROTOCOLS
from schemas.errors import InvalidInput
from schemas.filters import Filter, Range
from tests.unit import test_compound_state as worked

A = "0x" + "a" * 40
B = "0x" + "b" * 40
USDC = "0x" + "1" * 40
WETH = "0x" + "2" * 40

LP = {
    "protocol": "uniswap_v3",
    "chain_id": 1,
    "owner": A,
    "pool": B,
    "token0": {"address": USDC, "symbol": "USDC", "decimals": 6},
    "token1": {"address": WETH, "symbol": "WETH", "decimals": 18},
    "value_usd": 1500.0,
    "il_usd": -12.5,
    "il_pct": -0.008,
    "in_range": True,
}
ACCOUNT = {
    "protocol": "aave_v3",
    "chain_id": 1,
    "owner": B,
    "value_usd": 800.0,
    "debt_usd": 1200.0,
    "health_factor_float": 1.08,
    "reserves": [{"asset": WETH}, {"asset": USDC}],
}
NO_DEBT = {**ACCOUNT, "debt_usd": 0.0, "health_factor_float": None}


def parse(**params: str | list[str]) -> Filter:
    return Filter.parse({k: [v] if isinstance(v, str) else v for k, v in params.items()}, PROTOCOLS)


def test_empty_filter_matches_everything() -> None:
    assert all(Filter().matches(s) for s in (LP, ACCOUNT, NO_DEBT))


def test_repeatable_params_are_or_and_params_are_and() -> None:
    f = parse(protocol=["uniswap_v3", "aave_v3"], owner=[A.upper().replace("0X", "0x")])
    assert f.matches(LP) and not f.matches(ACCOUNT)
    assert parse(token=WETH).matches(LP) and parse(token=WETH).matches(ACCOUNT)
    assert not parse(token=B).matches(LP)
    assert parse(pool=B).matches(LP) and not parse(pool=B).matches(ACCOUNT)


def test_numeric_bounds_are_inclusive_and_missing_fields_do_not_match() -> None:
    assert parse(min_value_usd="1500").matches(LP)
    assert not parse(min_value_usd="1500.01").matches(LP)
    assert parse(max_il_usd="-10").matches(LP)
    # An LP position has no health factor: a bound on it excludes the position.
    assert not parse(max_health_factor="2").matches(LP)
    assert parse(max_health_factor="1.1").matches(ACCOUNT)
    # No debt means an infinite health factor: above every minimum, below no maximum.
    assert parse(min_health_factor="1.5").matches(NO_DEBT)
    assert not parse(max_health_factor="1e300").matches(NO_DEBT)
    assert parse(min_debt_usd="1000").matches(ACCOUNT) and not parse(min_debt_usd="1").matches(LP)
    assert parse(in_range="true").matches(LP) and not parse(in_range="false").matches(LP)
    assert not parse(in_range="true").matches(ACCOUNT)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"colour": "red"}, "unknown filter"),
        ({"protocol": "curve"}, "unknown protocol"),
        ({"owner": "0x12"}, "not an address"),
        ({"chain_id": "one"}, "not a chain id"),
        ({"min_value_usd": "lots"}, "not a number"),
        ({"min_value_usd": "nan"}, "not a finite number"),
        ({"min_value_usd": "10", "max_value_usd": "5"}, "above"),
        ({"in_range": "maybe"}, "true or false"),
        ({"min_il_usd": ["1", "2"]}, "more than once"),
    ],
)
def test_bad_filters_say_what_is_wrong(params: dict[str, str | list[str]], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse(**params)


def test_the_canonical_query_parses_back_to_the_same_filter() -> None:
    f = parse(
        protocol=["aave_v3", "uniswap_v3"],
        owner=[A, B],
        token=WETH,
        min_value_usd="0.1",
        max_health_factor="1.25",
        in_range="false",
        chain_id="10",
    )
    assert Filter.parse(f.query(), PROTOCOLS) == f
    assert f.value_usd == Range(0.1, None)
    assert f.numeric and not parse(owner=A).numeric
    assert Range(None, None).holds(math.inf) and not Range(0, 1).holds(None)


def test_a_comet_account_matches_by_its_market_tokens_and_health() -> None:
    _, outs = worked.run(worked.worked_example().batches)
    borrowed = outs[1].updates[0].json()  # 10 WETH at $2,000 against 15,000 USDC: HF 1.133
    assert parse(protocol="compound_v3", pool=worked.COMET).matches(borrowed)
    assert not parse(protocol="aave_v3").matches(borrowed)
    assert not parse(pool=B).matches(borrowed)
    assert parse(token=worked.USDC).matches(borrowed) and parse(token=worked.WETH).matches(borrowed)
    assert parse(max_health_factor="1.134", min_debt_usd="15000").matches(borrowed)
    assert not parse(max_health_factor="1.133").matches(borrowed)
    assert parse(min_value_usd="5000", max_value_usd="5000").matches(borrowed)
    assert not parse(in_range="true").matches(borrowed)
