"""Aave V3 (v3.0.2) math against published vectors and the v3.0.2 bytecode.

Sources of the numbers:
- aave/aave-utilities packages/math-utils/src/pool-math.test.ts (real YFI user, HF, balances)
  and src/formatters/compounded-interest/calculate-compounded-interest.test.ts
- aave/aave-v3-core test-suites/wadraymath.spec.ts (operands and overflow bounds)
- "bytecode": values returned by the v3.0.2 libraries themselves (WadRayMath, MathUtils,
  GenericLogic.calculateUserAccountData from devnet/node_modules/@aave/core-v3@1.19.3,
  compiled with npm solc 0.8.20 into a harness and run on anvil), recorded here.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.aave_v3 import math as m

MAX = m.UINT256_MAX


def encode_reserve_configuration(config: m.ReserveConfig) -> int:
    """The ReserveConfiguration setters (setLtv, setLiquidationThreshold, ...) in one word."""
    data = 0
    for name, (start, width) in m.RESERVE_CONFIGURATION_LAYOUT.items():
        value = int(getattr(config, name))
        assert 0 <= value < 1 << width, name
        data |= value << start
    return data


# --- WadRayMath / PercentageMath ------------------------------------------------------------

# aave-v3-core test-suites/wadraymath.spec.ts operands; results from the v3.0.2 bytecode.
A = 134534543232342353231234
B = 13265462389132757665657


def test_wadraymath_spec_operands() -> None:
    assert m.wad_mul(A, B) == 1784662923287792467070443765
    assert m.wad_div(A, B) == 10141715327055228122
    assert m.ray_mul(A, B) == 1784662923287792467
    assert m.ray_div(A, B) == 10141715327055228122033939726
    assert m.wad_mul(0, B) == m.wad_mul(A, 0) == 0
    assert m.ray_mul(0, B) == m.ray_mul(A, 0) == 0


def test_wadraymath_spec_overflow_bounds() -> None:
    # wadraymath.spec.ts: `tooLargeA = (MAX - HALF) / b + 1` reverts; one less does not.
    for mul, half in ((m.wad_mul, m.HALF_WAD), (m.ray_mul, m.HALF_RAY)):
        limit = (MAX - half) // B
        mul(limit, B)
        with pytest.raises(m.MathError):
            mul(limit + 1, B)
    for div, one in ((m.wad_div, m.WAD), (m.ray_div, m.RAY)):
        limit = (MAX - B // 2) // one
        div(limit, B)
        with pytest.raises(m.MathError):
            div(limit + 1, B)
        with pytest.raises(m.MathError):
            div(A, 0)
    with pytest.raises(m.MathError):
        m.wad_to_ray(MAX // 10**9 + 1)
    assert m.wad_to_ray(10**18) == 10**27


def test_ray_to_wad_rounds_half_up() -> None:
    half = 10**9 // 2
    assert m.ray_to_wad(10**27) == 10**18
    assert m.ray_to_wad(10**27 + half - 1) == 10**18
    assert m.ray_to_wad(10**27 + half) == 10**18 + 1
    # wadraymath.spec.ts: even MAX - half + 1 does not revert (the +1 cannot overflow).
    too_large = MAX - half + 1
    assert abs(m.ray_to_wad(too_large) * 10**9 - too_large) <= half


def test_half_up_rounding_edges() -> None:
    assert m.wad_mul(1, m.HALF_WAD) == 1  # exactly 0.5 wei rounds up
    assert m.wad_mul(1, m.HALF_WAD - 1) == 0
    assert m.ray_mul(1, m.HALF_RAY) == 1
    assert m.ray_mul(1, m.HALF_RAY - 1) == 0
    assert m.wad_div(1, 2 * m.WAD) == 1  # 0.5 -> 1
    assert m.wad_div(1, 2 * m.WAD + 2) == 0
    assert m.ray_div(1, 3 * m.RAY) == 0
    assert m.percent_mul(1, 5_000) == 1
    assert m.percent_mul(1, 4_999) == 0
    assert m.percent_mul(12345, 0) == 0
    assert m.percent_div(1, 20_000) == 1
    assert m.percent_div(1, 20_001) == 0
    with pytest.raises(m.MathError):
        m.percent_div(1, 0)
    with pytest.raises(m.MathError):
        m.percent_mul((MAX - 5_000) // 7 + 1, 7)


# --- MathUtils / ReserveLogic ---------------------------------------------------------------


def test_yfi_user_normalized_income() -> None:
    # pool-math.test.ts: user 0xa5a69107816c5e3dfa5561e6b621dfe6294f6e5b, block 11581421, YFI.
    last, now = 1609673617, 1609675535  # Δt = 1918 s
    income = m.normalized_income(
        1001723339432542553527150680, 22461916953455574582370088, last, now
    )
    assert m.a_token_balance(161316503206059870, income) == 161594727054623229


def test_pool_math_linear_interest_and_income() -> None:
    # pool-math.test.ts: rate 0.5e18 (ray), Δt = 100000100 s.
    last, now = 1629942200, 1729942300
    assert m.calculate_linear_interest(500000000000000000, last, now) == (
        1000000001585491184677828513
    )
    assert m.normalized_income(1048540642417873765200833079, 500000000000000000, last, now) == (
        1048540644080325710530799122
    )
    # "should return index if rate is 0"
    index = 1048540642417873800000000000
    assert m.normalized_income(index, 0, last, now) == index


def test_pool_math_compounded_balance() -> None:
    # pool-math.test.ts getCompoundedBalance: principal 10000, index, rate 0.5e18.
    debt_index = m.normalized_variable_debt(
        1048540642417873765200833079, 500000000000000000, 1629942200, 1729942300
    )
    assert m.variable_debt_balance(10000, debt_index) == 10485


def test_pool_math_compounded_stable_balance() -> None:
    # pool-math.test.ts getCompoundedStableBalance: 2e18 at 0.5e18 (ray) for 120000000 s.
    assert m.stable_debt_balance(2 * 10**18, 500000000000000000, 1629942229, 1749942229) == (
        2000000003805175038
    )
    assert m.stable_debt_balance(0, 10**27, 0, 10**9) == 0


def test_pool_math_compounded_interest_differs_from_aave_utilities() -> None:
    # pool-math.test.ts expects 1000000001585491184589599100 from aave-utilities'
    # per-second binomial (rate / SECONDS_PER_YEAR first). The v3 contract squares the
    # annual rate first: rayMul(0.5e18, 0.5e18) / SPY² floors to 0, so the result equals the
    # linear interest. We follow the contract.
    value = m.calculate_compounded_interest(500000000000000000, 1629942200, 1729942300)
    assert value == 1000000001585491184677828513
    assert value != 1000000001585491184589599100


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        # calculate-compounded-interest.test.ts, Δt = 1 s (higher binomial terms vanish)
        (109284236984257451326752610, 1000000003465380421875236280),
        (38568743388028395681971229, 1000000001223006829909576220),
    ],
)
def test_aave_utilities_one_second_compounding(rate: int, expected: int) -> None:
    assert m.calculate_compounded_interest(rate, 1606992400, 1606992401) == expected


@pytest.mark.parametrize(
    ("rate", "dt", "expected"),
    [
        # recorded from the v3.0.2 MathUtils bytecode
        (5 * 10**25, 86400, 1000136995684207123907444230),
        (2 * 10**26, 31536000, 1221332933560973813055552000),
        (10**27, 31536000, 2666663803286306996604104000),
        (3 * 10**27, 2 * 31536000, 60999971807112020037320416000),
        (52345678901234567890123456, 3600, 1000005975551969721280592794),
        (10**27, 2, 1000000063419584973040080661),
        (10**27, 3, 1000000095129378967826514355),
    ],
)
def test_compounded_interest_bytecode_values(rate: int, dt: int, expected: int) -> None:
    assert m.calculate_compounded_interest(rate, 1_600_000_000, 1_600_000_000 + dt) == expected


def test_index_is_stored_value_in_the_update_block() -> None:
    assert m.normalized_income(123 * 10**25, 10**27, 1000, 1000) == 123 * 10**25
    assert m.normalized_variable_debt(456 * 10**25, 10**27, 1000, 1000) == 456 * 10**25
    assert m.calculate_compounded_interest(10**27, 5, 5) == m.RAY


def test_future_timestamp_reverts() -> None:
    with pytest.raises(m.MathError):
        m.calculate_linear_interest(10**25, 101, 100)
    with pytest.raises(m.MathError):
        m.normalized_variable_debt(m.RAY, 10**25, 101, 100)


def test_zero_scaled_debt_is_zero() -> None:
    assert m.variable_debt_balance(0, 3 * m.RAY) == 0


# --- Configuration bitmaps ------------------------------------------------------------------


def test_decode_hand_encoded_configuration() -> None:
    # ltv 8000 (0x1F40), LT 8250 (0x203A), bonus 10500 (0x2904), 18 decimals, active.
    config = m.decode_reserve_configuration(0x0112_2904_203A_1F40)
    assert (config.ltv, config.liquidation_threshold, config.liquidation_bonus) == (
        8000,
        8250,
        10500,
    )
    assert config.decimals == 18
    assert config.active
    assert not (config.frozen or config.paused or config.borrowing_enabled)
    assert config.emode_category == config.borrow_cap == config.debt_ceiling == 0


def test_decode_top_fields() -> None:
    data = (
        (2**40 - 1) << 212  # debt ceiling, max
        | 7 << 168  # eMode category
        | 1000 << 152  # liquidation protocol fee 10%
        | 123456 << 116  # supply cap
        | 654321 << 80  # borrow cap
        | 1500 << 64  # reserve factor
        | 1 << 63  # flash loans enabled
        | 1 << 62  # siloed
        | 1 << 61  # borrowable in isolation
        | 0b11111 << 56  # active, frozen, borrowing, stable borrowing, paused
    )
    config = m.decode_reserve_configuration(data)
    assert config.debt_ceiling == 2**40 - 1
    assert config.emode_category == 7
    assert config.liquidation_protocol_fee == 1000
    assert (config.supply_cap, config.borrow_cap) == (123456, 654321)
    assert config.reserve_factor == 1500
    assert config.flashloan_enabled and config.siloed_borrowing and config.borrowable_in_isolation
    assert config.active and config.frozen and config.paused
    assert config.borrowing_enabled and config.stable_borrowing_enabled
    assert config.unbacked_mint_cap == 0


_reserve_configs = st.builds(
    m.ReserveConfig,
    ltv=st.integers(0, 2**16 - 1),
    liquidation_threshold=st.integers(0, 2**16 - 1),
    liquidation_bonus=st.integers(0, 2**16 - 1),
    decimals=st.integers(0, 255),
    active=st.booleans(),
    frozen=st.booleans(),
    borrowing_enabled=st.booleans(),
    stable_borrowing_enabled=st.booleans(),
    paused=st.booleans(),
    borrowable_in_isolation=st.booleans(),
    siloed_borrowing=st.booleans(),
    reserve_factor=st.integers(0, 2**16 - 1),
    borrow_cap=st.integers(0, 2**36 - 1),
    supply_cap=st.integers(0, 2**36 - 1),
    liquidation_protocol_fee=st.integers(0, 2**16 - 1),
    emode_category=st.integers(0, 255),
    unbacked_mint_cap=st.integers(0, 2**36 - 1),
    debt_ceiling=st.integers(0, 2**40 - 1),
    flashloan_enabled=st.booleans(),
)


@given(_reserve_configs)
def test_configuration_round_trip(config: m.ReserveConfig) -> None:
    assert m.decode_reserve_configuration(encode_reserve_configuration(config)) == config


@given(st.integers(0, MAX))
def test_configuration_decode_encode_keeps_used_bits(data: int) -> None:
    used = (1 << 252) - 1  # bits 252..255 are unused in v3.0.2
    config = m.decode_reserve_configuration(data)
    assert encode_reserve_configuration(config) == data & used


def test_user_configuration_bits() -> None:
    # reserve 0 borrowed; reserve 1 collateral; reserve 127 both (the last valid id).
    user = 1 << 0 | 1 << 3 | 3 << 254
    assert m.is_borrowing(user, 0) and not m.is_using_as_collateral(user, 0)
    assert m.is_using_as_collateral(user, 1) and not m.is_borrowing(user, 1)
    assert m.is_borrowing(user, 127) and m.is_using_as_collateral(user, 127)
    assert not m.is_using_as_collateral_or_borrowing(user, 2)
    with pytest.raises(m.MathError):
        m.is_borrowing(user, 128)


# --- GenericLogic.calculateUserAccountData ----------------------------------------------------


def test_health_factor_from_balances_vectors() -> None:
    # pool-math.test.ts calculateHealthFactorFromBalances: 1.66666666666666666667 and 1.
    assert m.health_factor_from_balances(10**17, 3 * 10**16, 5000) == 1666666666666666667
    assert m.health_factor_from_balances(10**17, 5 * 10**16, 5000) == m.WAD
    assert m.health_factor_from_balances(10**17, 0, 5000) == MAX


def _reserve(
    asset: str,
    *,
    price: int,
    decimals: int = 18,
    supplied: int = 0,
    debt: int = 0,
    lt: int = 8000,
    ltv: int = 7500,
    collateral: bool = True,
    category: int = 0,
) -> m.AccountReserve:
    return m.AccountReserve(
        asset=asset,
        decimals=decimals,
        price=price,
        collateral_enabled=collateral,
        ltv=ltv,
        liquidation_threshold=lt,
        emode_category=category,
        a_token_balance=supplied,
        debt=debt,
    )


def test_account_data_pool_math_hf_vector() -> None:
    # The same 1e17 / 3e16 / LT 50% vector through the full account computation.
    data = m.account_data(
        [
            _reserve("C", price=10**8, decimals=8, supplied=10**17, lt=5000, ltv=4000),
            _reserve("D", price=10**8, decimals=8, debt=3 * 10**16, collateral=False),
        ]
    )
    assert data.total_collateral_base == 10**17
    assert data.total_debt_base == 3 * 10**16
    assert (data.avg_ltv, data.avg_liquidation_threshold) == (4000, 5000)
    assert data.health_factor == 1666666666666666667
    assert data.available_borrows_base == 10**16
    assert not data.has_zero_ltv_collateral
    assert not data.is_liquidatable


def test_empty_account() -> None:
    assert m.account_data([]) == m.AccountData(0, 0, 0, 0, MAX, False)


# One account over four reserves, valued by the v3.0.2 GenericLogic bytecode (see module doc).
# Per reserve: decimals, LT, LTV, eMode category, liquidityIndex, liquidityRate,
# variableBorrowIndex, variableBorrowRate, seconds since update, oracle price, scaled aToken,
# scaled variable debt, stable debt balance. User config 230 = collateral on 0, 2, 3 and
# borrowing on 1, 3.
_GOLDEN_RESERVES = (
    (18, 8250, 8000, 1, 1023456789012345678901234567, 31234567890123456789012345,
     1045678901234567890123456789, 52345678901234567890123456, 3600, 200012345678,
     5 * 10**18 + 123, 0, 0),
    (6, 8700, 8500, 2, 1001234567890123456789012345, 41234567890123456789012345,
     1012345678901234567890123456, 61234567890123456789012345, 86400, 100010000,
     0, 7000 * 10**6 + 1, 123456789),
    (8, 7500, 0, 0, 10**27, 0, 10**27, 0, 0, 4200012345678, 12345678, 0, 0),
    (18, 9300, 9000, 1, 1000500000000000000000000000, 10**24, 1000700000000000000000000000,
     2 * 10**24, 12, 230000000000, 2 * 10**18, 10**18 // 3, 0),
)  # fmt: skip
_GOLDEN_USER_CONFIG = 230
_NOW = 1_700_000_000


def _golden_positions() -> list[m.AccountReserve]:
    positions = []
    for i, row in enumerate(_GOLDEN_RESERVES):
        dec, lt, ltv, cat, li, lr, vi, vr, dt, price, scaled, vscaled, stable = row
        income = m.normalized_income(li, lr, _NOW - dt, _NOW)
        debt_index = m.normalized_variable_debt(vi, vr, _NOW - dt, _NOW)
        positions.append(
            m.AccountReserve(
                asset=f"R{i}",
                decimals=dec,
                price=price,
                collateral_enabled=m.is_using_as_collateral(_GOLDEN_USER_CONFIG, i),
                ltv=ltv,
                liquidation_threshold=lt,
                emode_category=cat,
                a_token_balance=m.a_token_balance(scaled, income),
                debt=m.variable_debt_balance(vscaled, debt_index) + stable,
                reserve_id=i,
                borrowing=m.is_borrowing(_GOLDEN_USER_CONFIG, i),
            )
        )
    return positions


@pytest.mark.parametrize(
    ("user_emode", "emode_price", "expected"),
    [
        (0, 0, (2002273615136, 797898994246, 6158, 8297, 2082076090405259092, True)),
        (1, 0, (2002273615136, 797898994246, 6669, 8833, 2216581668863115410, True)),
        (1, 199900000000, (1941468608329, 787858637572, 6596, 8819, 2173208598640931928, True)),
    ],
)
def test_account_data_matches_bytecode(
    user_emode: int, emode_price: int, expected: tuple[int, int, int, int, int, bool]
) -> None:
    categories = {1: m.EModeCategory(9000, 9300, 10100, price=emode_price)}
    data = m.account_data(_golden_positions(), user_emode=user_emode, emode_categories=categories)
    assert (
        data.total_collateral_base,
        data.total_debt_base,
        data.avg_ltv,
        data.avg_liquidation_threshold,
        data.health_factor,
        data.has_zero_ltv_collateral,
    ) == expected


def test_emode_price_applies_to_debt_of_the_category() -> None:
    categories = {1: m.EModeCategory(9000, 9300, price=2 * 10**8)}
    positions = [
        _reserve("C", price=10**8, supplied=10**18, category=1),
        _reserve("D", price=10**8, debt=10**18, collateral=False, category=1),
        _reserve("X", price=10**8, debt=10**18, collateral=False, category=2),
    ]
    data = m.account_data(positions, user_emode=1, emode_categories=categories)
    assert data.total_collateral_base == 2 * 10**8
    assert data.total_debt_base == 3 * 10**8  # 2e8 (eMode price) + 1e8 (other category)
    assert data.avg_liquidation_threshold == 9300
    assert data.avg_ltv == 9000
    # Not in eMode: per-asset prices and LTs.
    plain = m.account_data(positions, emode_categories=categories)
    assert (plain.total_collateral_base, plain.total_debt_base) == (10**8, 2 * 10**8)
    assert plain.avg_liquidation_threshold == 8000


def test_zero_ltv_flag_checks_reserve_ltv_even_in_emode() -> None:
    categories = {1: m.EModeCategory(9000, 9300)}
    data = m.account_data(
        [_reserve("C", price=10**8, supplied=10**18, ltv=0, category=1)],
        user_emode=1,
        emode_categories=categories,
    )
    assert data.has_zero_ltv_collateral
    assert data.avg_ltv == 0  # LTV 0 adds nothing, even with an eMode LTV
    assert data.avg_liquidation_threshold == 9300


def test_lt_zero_or_bit_off_is_not_collateral() -> None:
    data = m.account_data(
        [
            _reserve("A", price=10**8, supplied=10**18, lt=0, ltv=0),
            _reserve("B", price=10**8, supplied=10**18, collateral=False),
            _reserve("D", price=10**8, debt=10**17, collateral=False),
        ]
    )
    assert data.total_collateral_base == 0
    assert data.health_factor == 0
    assert not data.has_zero_ltv_collateral  # LT 0 reserves never reach the LTV check
    assert data.is_liquidatable


def test_debt_is_priced_after_summing_variable_and_stable() -> None:
    # 0.6 + 0.6 base wei: floor(1.2) = 1 when summed first, 0 + 0 when priced separately.
    summed = m.account_data([_reserve("D", price=6, decimals=1, debt=2, collateral=False)])
    assert summed.total_debt_base == 1


def test_missing_emode_category_is_an_error() -> None:
    with pytest.raises(ValueError, match="eMode category 3"):
        m.account_data([], user_emode=3, emode_categories={})


def test_close_factor() -> None:
    assert m.close_factor(m.CLOSE_FACTOR_HF_THRESHOLD + 1) == 5_000
    assert m.close_factor(m.CLOSE_FACTOR_HF_THRESHOLD) == 10_000
    assert m.max_liquidatable_debt(1001, 96 * 10**16) == 501  # 500.5 rounds half up
    assert m.max_liquidatable_debt(1001, 94 * 10**16) == 1001


# --- Liquidation price ----------------------------------------------------------------------


def _eth_usdc(eth: int = 10 * 10**18, usdc_debt: int = 10_000 * 10**6) -> list[m.AccountReserve]:
    return [
        _reserve("WETH", price=2000 * 10**8, supplied=eth, lt=8250, ltv=8000),
        _reserve("USDC", price=10**8, decimals=6, debt=usdc_debt, collateral=False),
    ]


def test_liquidation_price_single_collateral() -> None:
    # 10 ETH, LT 82.5%, 10,000 USDC debt: P = 10000 / (10 * 0.825) = 1212.1212...
    price = m.liquidation_price(_eth_usdc(), "WETH")
    assert price == 121212121213
    at = [*_eth_usdc()]
    at[0] = _reserve("WETH", price=price, supplied=10 * 10**18, lt=8250, ltv=8000)
    assert not m.account_data(at).is_liquidatable
    below = [_reserve("WETH", price=price - 10**6, supplied=10 * 10**18, lt=8250), at[1]]
    assert m.account_data(below).is_liquidatable


def test_liquidation_price_none_cases() -> None:
    assert m.liquidation_price(_eth_usdc(usdc_debt=0), "WETH") is None  # no debt
    assert m.liquidation_price(_eth_usdc(), "WBTC") is None  # not held
    assert m.liquidation_price(_eth_usdc(), "USDC") is None  # only borrowed
    # Borrowed more of the asset than its weighted collateral: a fall never liquidates.
    self_borrow = [_reserve("WETH", price=2000 * 10**8, supplied=10**18, debt=10**18)]
    assert m.liquidation_price(self_borrow, "WETH") is None
    # Other collateral alone covers the debt.
    covered = [*_eth_usdc(), _reserve("DAI", price=10**8, supplied=10**24, lt=8000)]
    assert m.liquidation_price(covered, "WETH") is None


def test_liquidation_price_with_partial_self_borrow() -> None:
    # 10 ETH supplied at LT 80%, 2 ETH borrowed, 5,000 USDC debt:
    # 10·P·0.8 = 2·P + 5000  ->  P = 5000 / 6 = 833.33...
    positions = [
        _reserve("WETH", price=2000 * 10**8, supplied=10 * 10**18, debt=2 * 10**18, lt=8000),
        _reserve("USDC", price=10**8, decimals=6, debt=5000 * 10**6, collateral=False),
    ]
    assert m.liquidation_price(positions, "WETH") == 83333333334


# --- Properties -----------------------------------------------------------------------------

_rates = st.integers(0, 10 * m.RAY)
_dts = st.integers(0, 5 * m.SECONDS_PER_YEAR)


@given(_rates, _dts, _dts)
def test_compounded_interest_monotone_in_time(rate: int, dt1: int, dt2: int) -> None:
    lo, hi = sorted((dt1, dt2))
    assert m.calculate_compounded_interest(rate, 0, lo) <= m.calculate_compounded_interest(
        rate, 0, hi
    )


@given(_rates, _rates, _dts)
def test_interest_monotone_in_rate(r1: int, r2: int, dt: int) -> None:
    lo, hi = sorted((r1, r2))
    assert m.calculate_linear_interest(lo, 0, dt) <= m.calculate_linear_interest(hi, 0, dt)
    assert m.calculate_compounded_interest(lo, 0, dt) <= m.calculate_compounded_interest(hi, 0, dt)


@given(_rates, _dts)
def test_compounded_at_least_linear_and_close_to_the_series(rate: int, dt: int) -> None:
    value = m.calculate_compounded_interest(rate, 0, dt)
    assert value >= m.calculate_linear_interest(rate, 0, dt)
    # Each floor loses < 1 of its unit: the second term at most n(n-1)/2 wei, the third
    # n(n-1)(n-2)/6 · (1 + rate/RAY/SPY) wei, plus one for each final division.
    x_num, x_den = rate, m.RAY * m.SECONDS_PER_YEAR
    n = dt
    series = m.RAY * (
        x_den**3
        + n * x_num * x_den**2
        + n * (n - 1) // 2 * x_num**2 * x_den
        + n * (n - 1) * (n - 2) // 6 * x_num**3
    )
    exact = series // x_den**3
    slack = n * n + n**3 * (2 + rate // (m.RAY * m.SECONDS_PER_YEAR)) + 3
    assert exact - slack <= value <= exact + 1


@settings(max_examples=200)
@given(
    st.integers(1, 10**30),
    st.integers(m.RAY, 3 * m.RAY),
    st.integers(0, 10**27),
    st.integers(0, 10**8),
    st.integers(0, 10**8),
)
def test_normalized_income_monotone_in_time(
    scaled: int, index: int, rate: int, dt1: int, dt2: int
) -> None:
    lo, hi = sorted((dt1, dt2))
    assert m.normalized_income(index, rate, 0, lo) <= m.normalized_income(index, rate, 0, hi)
    assert m.a_token_balance(scaled, m.normalized_income(index, rate, 0, lo)) <= (
        m.a_token_balance(scaled, m.normalized_income(index, rate, 0, hi))
    )


@given(
    st.integers(1, 10**12),
    st.integers(1, 10**12),
    st.integers(10**15, 10**24),
    st.integers(1, 10**23),
    st.integers(1, 9999),
)
def test_health_factor_monotone_in_prices(
    p1: int, p2: int, supplied: int, debt: int, lt: int
) -> None:
    lo, hi = sorted((p1, p2))

    def hf(collateral_price: int, debt_price: int) -> int:
        return m.account_data(
            [
                _reserve("C", price=collateral_price, supplied=supplied, lt=lt, ltv=lt),
                _reserve("D", price=debt_price, debt=debt, collateral=False),
            ]
        ).health_factor

    assert hf(lo, 10**8) <= hf(hi, 10**8)
    assert hf(10**8, lo) >= hf(10**8, hi)


@given(
    st.integers(10**16, 10**22),
    st.integers(10**6, 10**13),
    st.integers(100, 9999),
    st.integers(10**8, 10**15),
)
def test_liquidation_price_brackets_hf_one(eth: int, usdc: int, lt: int, other: int) -> None:
    positions = [
        _reserve("WETH", price=2000 * 10**8, supplied=eth, lt=lt, ltv=lt),
        _reserve("DAI", price=10**8, supplied=other, lt=5000, ltv=5000),
        _reserve("USDC", price=10**8, decimals=6, debt=usdc, collateral=False),
    ]
    price = m.liquidation_price(positions, "WETH")
    if price is None:
        return

    def hf(p: int) -> int:
        moved = [_reserve("WETH", price=p, supplied=eth, lt=lt, ltv=lt), *positions[1:]]
        return m.account_data(moved).health_factor

    # Floors (per-reserve values, the averaged LT) cost at most a few 1e-4 of HF.
    assert hf(price) >= m.WAD - m.WAD // 1000
    if price > 1:
        assert hf(price - 1) < m.WAD + m.WAD // 1000
