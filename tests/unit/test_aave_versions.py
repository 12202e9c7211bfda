"""The version rules of protocols.aave_v3.math on hand-made cases (the vectors in
test_aave_vectors.py check them against the contracts): what each release changed, and the
clear errors for inputs a version cannot use."""

from __future__ import annotations

from dataclasses import replace

import pytest

from protocols.aave_v3 import math as m

RAY = m.RAY


def reserve(
    reserve_id: int,
    *,
    supplied: int = 0,
    debt: int = 0,
    lt: int = 8_000,
    ltv: int = 7_500,
    category: int = 0,
    price: int = 10**8,
    decimals: int = 18,
) -> m.AccountReserve:
    return m.AccountReserve(
        asset=f"r{reserve_id}",
        decimals=decimals,
        price=price,
        collateral_enabled=supplied > 0,
        ltv=ltv,
        liquidation_threshold=lt,
        emode_category=category,
        a_token_balance=supplied,
        debt=debt,
        reserve_id=reserve_id,
        borrowing=debt > 0,
    )


def test_version_from_text_and_pool_revision() -> None:
    assert m.AaveVersion.parse("3.7") == m.AaveVersion.parse("v3.7.0") == m.V3_7
    assert m.AaveVersion.parse("3.0.2") == m.V3_0_2
    assert m.AaveVersion.parse("3.0.1") < m.V3_1
    assert m.AaveVersion.from_pool_revision(1) == m.V3_0_2
    assert m.AaveVersion.from_pool_revision(9) == m.V3_5
    assert m.AaveVersion.from_pool_revision(11) == m.LATEST == m.V3_7
    assert str(m.V3_7) == "3.7.0"
    for bad in ("3", "3.x", "2.0", "3.8", "4.0.0", ""):
        with pytest.raises(ValueError, match="Aave version"):
            m.AaveVersion.parse(bad)
    with pytest.raises(ValueError, match="pin the Aave version"):
        m.AaveVersion.from_pool_revision(12)


def test_rules_switch_at_their_release() -> None:
    assert m.AaveVersion(3, 1).emode_price_source and not m.V3_2.emode_price_source
    assert not m.V3_3.compounded_interest_x and m.V3_4.compounded_interest_x
    assert not m.V3_4.directional_rounding and m.V3_5.directional_rounding
    assert m.V3_5.collateral_needs_lt and not m.V3_6.collateral_needs_lt
    assert not m.V3_6.isolated_emode and m.V3_7.isolated_emode


def test_collateral_only_inside_an_emode() -> None:
    """3.6+: a reserve with LT 0 counts as collateral, with the eMode LT, for a user in a
    category whose collateral bitmap holds it; before 3.6 it counts for nothing."""
    rows = [reserve(0, supplied=10**18, lt=0, ltv=0), reserve(1, debt=5 * 10**17)]
    categories = {1: m.EModeCategory(ltv=9_000, liquidation_threshold=9_300, collateral_bitmap=1)}
    new = m.account_data(rows, user_emode=1, emode_categories=categories, version=m.V3_7)
    assert new.total_collateral_base == 10**8
    assert new.avg_liquidation_threshold == 9_300
    assert new.avg_ltv == 9_000
    assert new.health_factor == 93 * 10**16 * 2
    old = m.account_data(rows, user_emode=1, emode_categories=categories, version=m.V3_5)
    assert old.total_collateral_base == 0 and old.health_factor == 0
    # Outside the eMode it counts at LT 0, with LTV 0 (3.6+), so it only sets the flag.
    plain = m.account_data(rows, version=m.V3_7)
    assert plain.total_collateral_base == 10**8 and plain.health_factor == 0
    assert plain.has_zero_ltv_collateral


def test_isolated_emode_and_ltvzero_bitmap() -> None:
    rows = [reserve(0, supplied=10**18), reserve(1, supplied=10**18), reserve(2, debt=10**17)]
    isolated = m.EModeCategory(
        ltv=9_000, liquidation_threshold=9_300, collateral_bitmap=0b1, isolated=True
    )
    v37 = m.account_data(rows, user_emode=1, emode_categories={1: isolated}, version=m.V3_7)
    v36 = m.account_data(rows, user_emode=1, emode_categories={1: isolated}, version=m.V3_6)
    assert v37.avg_ltv == 9_000 // 2 and v37.has_zero_ltv_collateral  # reserve 1: LTV 0
    assert v36.avg_ltv == (9_000 + 7_500) // 2 and not v36.has_zero_ltv_collateral
    assert v37.avg_liquidation_threshold == v36.avg_liquidation_threshold == (9_300 + 8_000) // 2
    ltvzero = m.EModeCategory(
        ltv=9_000, liquidation_threshold=9_300, collateral_bitmap=0b11, ltvzero_bitmap=0b10
    )
    data = m.account_data(rows, user_emode=1, emode_categories={1: ltvzero}, version=m.V3_6)
    assert data.avg_ltv == 9_000 // 2 and data.has_zero_ltv_collateral
    assert data.avg_liquidation_threshold == 9_300


def test_emode_by_bitmap_not_by_the_reserve_field() -> None:
    """3.2+: the category covers the reserves in its bitmap, whatever their (deprecated)
    configuration field says; with no bitmap given, the v3.0.x rule applies."""
    rows = [reserve(0, supplied=10**18, category=1), reserve(1, debt=10**17)]
    by_bitmap = {1: m.EModeCategory(ltv=9_000, liquidation_threshold=9_500, collateral_bitmap=0)}
    data = m.account_data(rows, user_emode=1, emode_categories=by_bitmap, version=m.V3_7)
    assert data.avg_liquidation_threshold == 8_000
    legacy = {1: m.EModeCategory(ltv=9_000, liquidation_threshold=9_500)}
    data = m.account_data(rows, user_emode=1, emode_categories=legacy, version=m.V3_7)
    assert data.avg_liquidation_threshold == 9_500


def test_a_bitmap_needs_the_reserve_id() -> None:
    row = m.AccountReserve("weth", 18, 10**8, True, 8_000, 8_500, 0, 10**18, 0)
    categories = {1: m.EModeCategory(ltv=9_000, liquidation_threshold=9_300, collateral_bitmap=1)}
    with pytest.raises(ValueError, match="reserve_id -1 is needed"):
        m.account_data([row], user_emode=1, emode_categories=categories, version=m.V3_7)
    # Not in eMode: no bitmap is read, so no id is needed.
    assert m.account_data([row], version=m.V3_7).total_collateral_base == 10**8


def test_health_factor_sum_and_debt_rounding_since_3_5() -> None:
    """3.5+ rounds debt up and divides Σ(collateral·LT) once; 3.0.2 floors the debt and
    averages the LT first. One wei of debt worth 1/3 base unit shows both."""
    rows = [
        reserve(0, supplied=10**18, lt=8_001),
        reserve(1, supplied=10**18 + 1, lt=7_003),
        reserve(2, debt=10**18 + 1, price=10**8 + 1, decimals=18),
    ]
    old = m.account_data(rows, version=m.V3_0_2)
    new = m.account_data(rows, version=m.V3_5)
    assert old.total_debt_base == 10**8 + 1 and new.total_debt_base == 10**8 + 2
    weighted = 10**8 * 8_001 + 10**8 * 7_003
    assert new.health_factor == m.wad_div(weighted, 10**8 + 2) // 10_000
    assert old.health_factor == m.wad_div(
        m.percent_mul(2 * 10**8, weighted // (2 * 10**8)), 10**8 + 1
    )


def test_scaled_delta_rejects_an_event_that_disagrees() -> None:
    index = 1_100_000_000_000_000_000_000_000_000
    good = m.scaled_delta_from_event(
        burn=False, value=11, balance_increase=0, index=index, previous_scaled=0, debt=False,
        version=m.V3_7,
    )  # fmt: skip
    assert good == 10  # floor(10 · 1.1) = 11
    with pytest.raises(m.MathError, match="no scaled balance"):
        # At index 2.5 scaled 0, 1, 2 are worth 0, 2, 5: no scaled balance is worth 1.
        m.scaled_delta_from_event(
            burn=False, value=1, balance_increase=0, index=5 * RAY // 2, previous_scaled=0,
            debt=False, version=m.V3_7,
        )  # fmt: skip
    with pytest.raises(m.MathError, match="exceeds the balance"):
        m.scaled_delta_from_event(
            burn=True, value=100, balance_increase=0, index=index, previous_scaled=10,
            debt=False, version=m.V3_7,
        )  # fmt: skip
    with pytest.raises(m.MathError, match="below 1 ray"):
        m.scaled_delta_from_event(
            burn=False, value=1, balance_increase=0, index=RAY - 1, previous_scaled=0,
            debt=True, version=m.V3_7,
        )  # fmt: skip
    # v3.0.2: the underlying amount rayDiv'ed, whatever the previous balance.
    assert m.scaled_delta_from_event(
        burn=True, value=5, balance_increase=6, index=index, previous_scaled=0, debt=True
    ) == -m.ray_div(11, index)


def test_liquidation_price_follows_the_version() -> None:
    """Collateral only in eMode (LT 0) has a liquidation price under 3.7 and none under 3.5,
    and at that price the account's HF crosses 1."""
    rows = [reserve(0, supplied=10**18, lt=0, ltv=0, price=2_000 * 10**8),
            reserve(1, debt=1_000 * 10**6, decimals=6)]  # fmt: skip
    categories = {1: m.EModeCategory(ltv=9_000, liquidation_threshold=9_300, collateral_bitmap=1)}
    assert (
        m.liquidation_price(rows, "r0", user_emode=1, emode_categories=categories, version=m.V3_5)
        is None
    )
    price = m.liquidation_price(
        rows, "r0", user_emode=1, emode_categories=categories, version=m.V3_7
    )
    assert price is not None
    assert price == -(-1_000 * 10**8 * 10_000 // 9_300)

    def hf(p: int) -> int:
        moved = [replace(rows[0], price=p), rows[1]]
        data = m.account_data(moved, user_emode=1, emode_categories=categories, version=m.V3_7)
        return data.health_factor

    assert hf(price) >= m.WAD > hf(price - 1)
