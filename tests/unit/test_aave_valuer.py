"""Valuing a block's accounts in one batch (`Valuer`) gives, to the wei, what valuing each
account alone by the contract math gives (`account_data`, `liquidation_price`: checked against
the contracts' own vectors in test_aave_vectors.py), under every version's rules, with eMode
categories, stale and missing prices, stable debt and reserves without indices; and a window
boundary takes a checkpoint's values only for the block they were computed at."""

from __future__ import annotations

import pickle
from random import Random

import pytest

from protocols.aave_v3 import math as am
from protocols.aave_v3.state import (
    AaveShard,
    AaveShardInput,
    AccountEvent,
    Valuer,
    account_id,
    math_version,
    observe_accounts,
    shard_step,
)
from protocols.windows import WindowBook
from schemas.lending import (
    AAVE_VERSIONS,
    AaveAccount,
    AccountReserveState,
    AccountValue,
    EModeInfo,
    OraclePrice,
    ReserveInfo,
    ReserveRates,
    ReserveValue,
)
from schemas.positions import BlockRef

RAY = 10**27
POOL = "0x" + "70" * 20
ZERO = "0x" + "00" * 20
NOW = 1_700_000_000


def asset(n: int) -> str:
    return f"0x{n:040x}"


def reference(
    account: AaveAccount,
    reserves: dict[str, ReserveInfo],
    rates: dict[str, ReserveRates],
    prices: dict[str, OraclePrice],
    emode: dict[int, EModeInfo],
    version: str,
) -> AccountValue:
    """One account alone, reserve by reserve through the contract math (as value_account
    computed it before the batch)."""
    rules = math_version(version)
    rows = []
    for a, held in sorted(account.reserves.items()):
        info, rate, price = reserves.get(a), rates.get(a), prices.get(a)
        if info is None or rate is None:
            continue
        income = am.normalized_income(
            rate.liquidity_index, rate.liquidity_rate, rate.last_update, NOW, rules
        )
        index = am.normalized_variable_debt(
            rate.variable_borrow_index, rate.variable_borrow_rate, rate.last_update, NOW, rules
        )
        stable = am.stable_debt_balance(
            held.stable_principal, held.stable_rate, held.stable_updated, NOW
        )
        rows.append(
            am.AccountReserve(
                asset=a,
                decimals=info.decimals,
                price=price.answer if price is not None and price.answer > 0 else 0,
                collateral_enabled=held.collateral,
                ltv=info.ltv,
                liquidation_threshold=info.liquidation_threshold,
                emode_category=info.emode_category,
                a_token_balance=am.a_token_balance(held.scaled_supply, income, rules),
                debt=am.variable_debt_balance(held.scaled_variable_debt, index, rules) + stable,
                reserve_id=info.reserve_id,
            )
        )
    bitmaps = rules.emode_bitmaps
    categories = {
        c: am.EModeCategory(
            i.ltv,
            i.liquidation_threshold,
            i.liquidation_bonus,
            collateral_bitmap=i.collateral_bitmap if bitmaps else None,
            borrowable_bitmap=i.borrowable_bitmap if bitmaps else None,
            ltvzero_bitmap=i.ltvzero_bitmap,
            isolated=i.isolated,
        )
        for c, i in emode.items()
    }
    data = am.account_data(
        rows, user_emode=account.emode, emode_categories=categories, version=rules
    )

    def stale(a: str) -> str:
        p = prices.get(a)
        if p is None:
            return "no price read from the oracle yet"
        return p.stale or ("" if p.answer > 0 else f"the oracle answered {p.answer}")

    return AccountValue(
        data.total_collateral_base,
        data.total_debt_base,
        data.avg_ltv,
        data.avg_liquidation_threshold,
        data.health_factor,
        tuple(
            ReserveValue(
                r.asset,
                r.a_token_balance,
                r.debt,
                r.price,
                r.collateral_enabled,
                am.liquidation_price(
                    rows,
                    r.asset,
                    user_emode=account.emode,
                    emode_categories=categories,
                    version=rules,
                )
                if r.collateral_enabled and r.a_token_balance and data.total_debt_base
                else None,
                stale(r.asset),
            )
            for r in rows
        ),
        tuple(
            f"{reserves[r.asset].symbol}: {stale(r.asset)}"
            for r in rows
            if stale(r.asset) and (r.a_token_balance or r.debt)
        ),
    )


def market(
    rng: Random,
) -> tuple[
    dict[str, ReserveInfo], dict[str, ReserveRates], dict[str, OraclePrice], dict[int, EModeInfo]
]:
    reserves, rates, prices = {}, {}, {}
    for n in range(1, 7):
        a = asset(n)
        lt = rng.choice([0, 7_500, 8_250, 8_600])
        reserves[a] = ReserveInfo(
            a,
            "",
            "",
            "",
            f"R{n}",
            rng.choice([6, 8, 18]),
            ltv=0 if lt == 0 else rng.choice([0, lt - 500]),
            liquidation_threshold=lt,
            liquidation_bonus=10_500,
            emode_category=rng.choice([0, 1, 2]),
            reserve_id=n - 1,
        )
        if n != 6:  # reserve 6: no ReserveDataUpdated yet (not valued)
            rates[a] = ReserveRates(
                a,
                rng.randint(0, RAY // 10),
                rng.randint(0, RAY // 5),
                rng.randint(0, RAY // 4),
                RAY + rng.randint(0, RAY // 3),
                RAY + rng.randint(0, RAY // 2),
                NOW - rng.choice([0, 1, 12, 86_400 * 30]),
            )
        kind = rng.random()
        if kind < 0.7:
            prices[a] = OraclePrice(a, rng.randint(10**6, 10**12), 1, 0, "", 1)
        elif kind < 0.8:
            prices[a] = OraclePrice(a, rng.randint(10**6, 10**12), 1, 0, "", 1, stale="gone")
        elif kind < 0.9:
            prices[a] = OraclePrice(a, 0, 1, 0, "", 1)
        # else: never read
    emode = {
        1: EModeInfo(
            1, 9_000, 9_300, 10_100, ZERO, collateral_bitmap=0b00111, ltvzero_bitmap=0b100
        ),
        2: EModeInfo(2, 9_500, 9_700, 10_100, ZERO, collateral_bitmap=0b11000, isolated=True),
    }
    return reserves, rates, prices, emode


def accounts(rng: Random, count: int) -> list[AaveAccount]:
    out = []
    for i in range(count):
        held = {}
        for n in rng.sample(range(1, 7), rng.randint(0, 4)):
            a = asset(n)
            stable = rng.random() < 0.2
            held[a] = AccountReserveState(
                a,
                scaled_supply=rng.choice([0, rng.randint(1, 10**24)]),
                scaled_variable_debt=rng.choice([0, 0, rng.randint(1, 10**22)]),
                stable_principal=rng.randint(1, 10**21) if stable else 0,
                stable_rate=rng.randint(0, RAY // 5) if stable else 0,
                stable_updated=NOW - rng.randint(0, 10**6) if stable else 0,
                collateral=rng.random() < 0.7,
            )
        user = f"0x{i:040x}"
        out.append(AaveAccount(1, POOL, user, user, rng.choice([0, 0, 1, 2]), held))
    return out


@pytest.mark.parametrize("version", AAVE_VERSIONS)
def test_a_batch_values_every_account_as_alone(version: str) -> None:
    rng = Random(version)
    checked = liquidation_prices = 0
    for _ in range(4):
        reserves, rates, prices, emode = market(rng)
        valuer = Valuer(reserves, rates, prices, emode, NOW, version)  # one for the batch
        for account in accounts(rng, 150):
            try:
                expected = reference(account, reserves, rates, prices, emode, version)
            except (am.MathError, ValueError) as exc:
                with pytest.raises(type(exc)):
                    valuer.value(account)
                continue
            assert valuer.value(account) == expected
            checked += 1
            liquidation_prices += sum(r.liquidation_price is not None for r in expected.reserves)
    assert checked > 400 and liquidation_prices > 50  # the cases are not all trivial


def test_an_emode_category_not_supplied_raises_even_without_reserves() -> None:
    account = AaveAccount(1, POOL, "0x01", "0x01", 3, {})
    with pytest.raises(ValueError, match="eMode category 3"):
        Valuer({}, {}, {}, {}, NOW).value(account)


def funded_shard(users: int) -> tuple[AaveShard, BlockRef]:
    weth, usdc = asset(1), asset(2)
    block = BlockRef(1, 100, "0xaa", NOW)
    item = AaveShardInput(
        1,
        POOL,
        reserves={
            weth: ReserveInfo(weth, "", "", "", "WETH", 18, 8_000, 8_250, 10_500, reserve_id=0),
            usdc: ReserveInfo(usdc, "", "", "", "USDC", 6, 7_500, 8_000, 10_500, reserve_id=1),
        },
        rates={
            a: ReserveRates(a, RAY // 50, 0, RAY // 20, RAY, RAY, NOW - 3_600) for a in (weth, usdc)
        },
        prices={
            weth: OraclePrice(weth, 3_000 * 10**8, 1, 0, "", 1),
            usdc: OraclePrice(usdc, 10**8, 1, 0, "", 1),
        },
    )
    for i in range(users):
        user = f"0x{i + 1:040x}"
        item.events += [
            AccountEvent("supply_scaled", user, 2 * i, "0xt", weth, scaled_delta=10**18 + i),
            AccountEvent("collateral", user, 2 * i, "0xt", weth, enabled=True),
            AccountEvent("debt_scaled", user, 2 * i + 1, "0xt", usdc, scaled_delta=10**9 + i),
        ]
    state = AaveShard()
    shard_step(state, item, block, checkpoint=True)
    return state, block


def observations(state: AaveShard, block: BlockRef) -> dict[str, object]:
    book, dirty = WindowBook(), set(state.window_dirty)
    observe_accounts(state, book, block)
    state.window_dirty |= dirty  # observed again by the next call
    assert len(book.subjects) == len(state.accounts)
    return {sid: held.last for sid, held in book.subjects.items()}


def test_a_boundary_takes_the_values_of_its_own_block_only() -> None:
    state, block = funded_shard(5)
    assert len(state.valued) == 5
    # Without the checkpoint's values (as after a restart or an undo): valued again, same.
    fresh = pickle.loads(pickle.dumps(state))
    assert not fresh.valued and fresh == state
    expected = observations(fresh, block)
    assert observations(state, block) == expected
    # The checkpoint's values are what the boundary takes for that very block...
    aid = account_id(1, POOL, f"0x{1:040x}")
    hash_, _ = state.valued[aid]
    state.valued[aid] = (hash_, AccountValue(7 * 10**8, 0, 0, 0, am.UINT256_MAX, ()))
    assert observations(state, block)[aid] != expected[aid]
    # ...and never for another block at the same height (a reorg's) or a later one.
    other = BlockRef(1, 100, "0xbb", NOW)
    assert observations(state, other) == expected
    later = BlockRef(1, 101, "0xcc", NOW + 12)
    assert observations(state, later) != expected
