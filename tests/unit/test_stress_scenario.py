"""The stress scenario's grammar and searches (schemas/stress.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from schemas.errors import InvalidInput
from schemas.stress import (
    Scenario,
    Shock,
    parse_bps,
    parse_horizon,
    parse_shock,
    parse_target,
    shocked,
    smallest_failing,
    time_to_failure,
)


@pytest.mark.parametrize(
    ("text", "bps"),
    [("-20%", -2_000), ("-12.5%", -1_250), ("+5", 500), ("0.01%", 1), ("-99.99%", -9_999)],
)
def test_percentages_are_whole_basis_points(text: str, bps: int) -> None:
    assert parse_bps(text) == bps


@pytest.mark.parametrize("text", ["-0.001%", "-100%", "+1000.01%", "x", "", "--5%", "5%%"])
def test_a_percentage_that_is_not_one_is_refused_with_a_sentence(text: str) -> None:
    with pytest.raises(InvalidInput, match="shock"):
        parse_bps(text)


def test_named_assets_win_over_the_market_wide_move_and_stablecoins_stay() -> None:
    shock = parse_shock("WETH:-20%, *:-30% ,0xAbC:+1%")
    assert shock == Shock({"weth": -2_000, "0xabc": 100}, -3_000)
    scenario = Scenario(shock, stables=frozenset({"0xusdc"}))
    assert scenario.bps("0xweth", "WETH") == -2_000
    assert scenario.bps("0xABC", "XYZ") == 100  # by address, any case
    assert scenario.bps("0xwbtc", "WBTC") == -3_000
    assert scenario.bps("0xusdc", "USDC") == 0
    assert Scenario(parse_shock("usdc:-1%"), frozenset({"0xusdc"})).bps("0xusdc", "USDC") == -100
    assert parse_shock(None) == Shock() and parse_shock(" ").json() == {}
    assert shock.json() == {"0xabc": 100, "weth": -2_000, "*": -3_000}


@pytest.mark.parametrize("text", ["WETH", "WETH:-1%,WETH:-2%", "*:-1%,*:-2%", ":-5%"])
def test_a_malformed_shock_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_shock(text)


def test_a_shocked_integer_price_rounds_down_like_the_contracts() -> None:
    assert shocked(300_012_345_678, -2_000) == 240_009_876_542
    assert shocked(7, -3_000) == 4  # 4.9
    assert shocked(7, 1_250) == 7  # 7.875


def test_horizons() -> None:
    assert [parse_horizon(t) for t in (None, "90", "90s", "30m", "12h", "30D")] == [
        0,
        90,
        90,
        1_800,
        43_200,
        2_592_000,
    ]
    for bad in ("-5", "1w", "5.5h", "101000000000"):
        with pytest.raises(InvalidInput, match="horizon"):
            parse_horizon(bad)


def test_the_searches_find_the_first_failing_point_exactly() -> None:
    calls: list[int] = []

    def fails_from(edge: int) -> Callable[[int], bool]:
        def fails(x: int) -> bool:
            calls.append(x)
            return x >= edge

        return fails

    for edge in (0, 1, 2, 4_999, 9_998, 9_999):
        assert smallest_failing(fails_from(edge), 9_999) == edge
    assert smallest_failing(fails_from(10_000), 9_999) is None
    calls.clear()
    assert time_to_failure(fails_from(86_400 * 400 + 17)) == 86_400 * 400 + 17
    assert len(calls) < 80, "a few dozen valuations, not a scan"
    assert time_to_failure(fails_from(10**12)) is None
    assert time_to_failure(fails_from(0)) == 0


def test_targets_are_exact_wads_above_one() -> None:
    assert parse_target(None) == 1_500_000_000_000_000_000
    assert parse_target("1.05") == 1_050_000_000_000_000_000
    assert parse_target("2") == 2 * 10**18
    assert parse_target("1.000000000000000001") == 10**18 + 1
    for bad in ("1", "0.9", "101", "1.5x", "-2", "1.0000000000000000001"):
        with pytest.raises(InvalidInput, match="target"):
            parse_target(bad)
