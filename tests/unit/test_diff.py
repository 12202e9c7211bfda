"""The diff's attribution (each protocol's read side, protocols/<name>/read.py; the lending
splits in protocols/read_side.py; the totals in api/diff.py) on hand-made versions: an LP
position split into fees, the owner's actions and price; a lending account into interest,
price and actions; a token balance into repricing and transfers. Amounts are chosen so every
USD figure is exact in binary floating point, so each part is asserted exactly. (Compound V3
accounts: tests/unit/test_comet_diff.py; totals at a billion dollars:
tests/unit/test_diff_summary.py.)
"""

from __future__ import annotations

from typing import Any

from api.diff import summarize
from protocols.erc20.read import balance_change
from protocols.read_side import Change, exact_lending_change, lending_change
from protocols.uniswap_v3.read import lp_change

E18, E6 = 10**18, 10**6


def version(value_usd: float | None, **fields: int | None) -> dict[str, Any]:
    """A position as position_json gives it (the fields the diff reads): WETH/USDC at 2000."""
    amounts: dict[str, str | None] = {
        f"{name}{side}": "0"
        for name in ("deposited", "withdrawn", "collected", "uncollected")
        for side in (0, 1)
    }
    amounts.update({k: None if v is None else str(v) for k, v in fields.items()})
    return {
        "id": "1:0xnpm:7",
        "protocol": "uniswap_v3",
        "token0": {"decimals": 18},
        "token1": {"decimals": 6},
        "price0_usd": 2000.0,
        "price1_usd": 1.0,
        "value_usd": value_usd,
        **amounts,
    }


def parts(c: Change) -> tuple[float, float, float, float]:
    return (c.price, c.interest, c.fees, c.actions)


def test_lp_fees_actions_and_price() -> None:
    # 1 WETH + 2000 USDC in, 0.25 WETH + 500 USDC of fees owed.
    before = version(
        5000.0, deposited0=E18, deposited1=2000 * E6, uncollected0=E18 // 4, uncollected1=500 * E6
    )
    # Then: another 1 WETH + 2000 USDC in, the fees collected, 0.5 WETH + 250 USDC owed since.
    after = version(
        9000.0,
        deposited0=2 * E18,
        deposited1=4000 * E6,
        collected0=E18 // 4,
        collected1=500 * E6,
        uncollected0=E18 // 2,
        uncollected1=250 * E6,
    )
    c = lp_change(before, after, transferred=False)
    # fees: lifetime fees grew by 0.5 WETH (1000) and 250 USDC (250);
    # actions: deposits 1 WETH + 2000 USDC minus collects 0.25 WETH + 500 USDC, at 2000 and 1.
    assert parts(c) == (-250.0, 0.0, 1250.0, 3000.0)
    assert (c.value_from, c.value_to) == (5000.0, 9000.0)
    assert c.price + c.fees + c.actions == c.value_to - c.value_from


def test_withdrawn_principal_is_an_action_not_a_fee() -> None:
    before = version(4000.0, deposited0=E18, deposited1=2000 * E6)
    # Half the liquidity removed and collected: 0.5 WETH + 1000 USDC of principal.
    after = version(
        2000.0,
        deposited0=E18,
        deposited1=2000 * E6,
        withdrawn0=E18 // 2,
        withdrawn1=1000 * E6,
        collected0=E18 // 2,
        collected1=1000 * E6,
    )
    assert parts(lp_change(before, after, transferred=False)) == (0.0, 0.0, 0.0, -2000.0)
    # Withdrawn but not yet collected: owed principal is no fee either, and nothing was taken.
    owed = version(
        4000.0,
        deposited0=E18,
        deposited1=2000 * E6,
        withdrawn0=E18 // 2,
        withdrawn1=1000 * E6,
        uncollected0=E18 // 2,
        uncollected1=1000 * E6,
    )
    assert parts(lp_change(before, owed, transferred=False)) == (0.0, 0.0, 0.0, 0.0)


def test_a_position_opened_left_or_transferred() -> None:
    opened = version(4000.0, deposited0=E18, deposited1=2000 * E6)
    assert parts(lp_change(None, opened, transferred=False)) == (0.0, 0.0, 0.0, 4000.0)
    # Gone from the wallet (not by transfer): its deposits leave as the owner's action.
    closed = lp_change(opened, None, transferred=False)
    assert (closed.value_from, closed.value_to) == (4000.0, 0.0)
    assert parts(closed) == (0.0, 0.0, 0.0, -4000.0)
    # A transfer is wholly the owner's doing, whatever else moved.
    moved = version(4100.0, deposited0=E18, deposited1=2000 * E6, uncollected0=E18)
    assert parts(lp_change(opened, moved, transferred=True)) == (0.0, 0.0, 0.0, 100.0)
    # Not owed-known (no static collect yet): owed counts 0; a value of None counts 0.
    unknown = version(None, deposited0=E18, deposited1=2000 * E6, uncollected0=None)
    assert parts(lp_change(opened, unknown, transferred=False)) == (-4000.0, 0.0, 0.0, 0.0)


def test_lending_parts_from_the_counterfactual_values() -> None:
    c = lending_change("acct", "aave_v3", 100.0, 150.0, 102.5, 110.0)
    # interest: earlier balances at later indices (prices held); price: then at later prices.
    assert parts(c) == (7.5, 2.5, 0.0, 40.0)
    assert c.json() == {
        "id": "acct",
        "protocol": "aave_v3",
        "value_from": 100.0,
        "value_to": 150.0,
        "change": 50.0,
        "price": 7.5,
        "interest": 2.5,
        "fees": 0.0,
        "actions": 40.0,
    }


def test_exact_lending_parts_are_integer_differences_divided_last() -> None:
    unit = 10**8  # Comet and Aave base currency: USD with 8 decimals
    worth = 123_456_789_012_345_678  # about 1.2 billion dollars
    c = exact_lending_change("acct", "compound_v3", unit, worth, worth + 10, worth + 3, worth + 7)
    assert parts(c) == (4 / unit, 3 / unit, 0.0, 3 / unit)
    # Subtracting the rounded values instead would lose the cents' fractions.
    assert (worth + 3) / unit - worth / unit != 3 / unit


def test_balance_repricing_and_transfers() -> None:
    before = {"amount": str(3 * E18), "decimals": 18, "price_usd": 2.0, "value_usd": 6.0}
    after = {"amount": str(5 * E18), "decimals": 18, "price_usd": 2.5, "value_usd": 12.5}
    c = balance_change("1:0xw:0xt", before, after)
    # The 3 tokens held gained 0.5 each; the 2 that came in are worth 5.0.
    assert (c.protocol, parts(c)) == ("erc20", (1.5, 0.0, 0.0, 5.0))
    # Unpriced at either end: nothing is the market's.
    unpriced = {**before, "price_usd": None, "value_usd": None}
    assert parts(balance_change("b", unpriced, after)) == (0.0, 0.0, 0.0, 12.5)
    assert parts(balance_change("b", None, after)) == (0.0, 0.0, 0.0, 12.5)
    assert parts(balance_change("b", before, None)) == (0.0, 0.0, 0.0, -6.0)


def test_summarize_totals_and_orders_the_subjects() -> None:
    changes = [
        Change("b", "erc20", 6.0, 12.5, price=1.5, actions=5.0),
        Change("a", "aave_v3", 100.0, 150.0, price=7.5, interest=2.5, actions=40.0),
    ]
    total = summarize(changes)
    assert total["value_from"] == 106.0 and total["value_to"] == 162.5
    assert total["change"] == 56.5
    assert total["explained"] == {"price": 9.0, "interest": 2.5, "fees": 0.0, "actions": 45.0}
    assert [s["id"] for s in total["subjects"]] == ["a", "b"]
    assert total["subjects"][1]["change"] == 6.5
    assert summarize([])["explained"] == {
        "price": 0.0,
        "interest": 0.0,
        "fees": 0.0,
        "actions": 0.0,
    }
