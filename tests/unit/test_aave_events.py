"""Aave V3 log decoding across the releases in force (v3.0.2 .. v3.7): logs ABI-encoded with
eth_abi from the events as the sources declare them, topics hashed with eth_utils.

The signature list is every event declared by the interfaces and contracts of
aave-dao/aave-v3-origin at the tags v3.1.0 .. v3.6.0 and v3.7.0 (IPool, IPoolConfigurator,
IAToken, IScaledBalanceToken, ICreditDelegationToken, IInitializableAToken,
IInitializableDebtToken, IAaveOracle, IBaseDelegation, the proxies' `Upgraded`), by the
contract that emits it: none may reach the dead letters.
"""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from protocols.aave_v3 import events as ev
from protocols.aave_v3.events import AaveRole
from schemas.chain import RawLog

ASSET = "0x" + "a5" * 20
USER = "0x" + "0e" * 20
OTHER = "0x" + "b0" * 20
RAY = 10**27

# (role, signature) of every event the contracts of v3.1 .. v3.7 emit.
SOURCES: list[tuple[AaveRole, str]] = (
    [
        (AaveRole.POOL, s)
        for s in (
            "BackUnbacked(address,address,uint256,uint256)",
            "Borrow(address,address,address,uint256,uint8,uint256,uint16)",
            "DeficitCovered(address,address,uint256)",
            "DeficitCreated(address,address,uint256)",
            "FlashLoan(address,address,address,uint256,uint8,uint256,uint16)",
            "IsolationModeTotalDebtUpdated(address,uint256)",
            "LiquidationCall(address,address,address,uint256,uint256,address,bool)",
            "MintUnbacked(address,address,address,uint256,uint16)",
            "MintedToTreasury(address,uint256)",
            "PositionManagerApproved(address,address)",
            "PositionManagerRevoked(address,address)",
            "RebalanceStableBorrowRate(address,address)",
            "Repay(address,address,address,uint256,bool)",
            "ReserveDataUpdated(address,uint256,uint256,uint256,uint256,uint256)",
            "ReserveUsedAsCollateralDisabled(address,address)",
            "ReserveUsedAsCollateralEnabled(address,address)",
            "Supply(address,address,address,uint256,uint16)",
            "SwapBorrowRateMode(address,address,uint8)",
            "Upgraded(address)",
            "UserEModeSet(address,uint8)",
            "Withdraw(address,address,address,uint256)",
        )
    ]
    + [
        (AaveRole.CONFIGURATOR, s)
        for s in (
            "ATokenUpgraded(address,address,address)",
            "AssetBorrowableInEModeChanged(address,uint8,bool)",
            "AssetCollateralInEModeChanged(address,uint8,bool)",
            "AssetLtvzeroInEModeChanged(address,uint8,bool)",
            "BorrowCapChanged(address,uint256,uint256)",
            "BorrowableInIsolationChanged(address,bool)",
            "BridgeProtocolFeeUpdated(uint256,uint256)",
            "CollateralConfigurationChanged(address,uint256,uint256,uint256)",
            "DebtCeilingChanged(address,uint256,uint256)",
            "EModeAssetCategoryChanged(address,uint8,uint8)",
            "EModeCategoryAdded(uint8,uint256,uint256,uint256,address,string)",
            "EModeCategoryIsolationChanged(uint8,bool)",
            "FlashloanPremiumToProtocolUpdated(uint128,uint128)",
            "FlashloanPremiumTotalUpdated(uint128,uint128)",
            "LiquidationGracePeriodChanged(address,uint40)",
            "LiquidationGracePeriodDisabled(address)",
            "LiquidationProtocolFeeChanged(address,uint256,uint256)",
            "PendingLtvChanged(address,uint256)",
            "ReserveActive(address,bool)",
            "ReserveBorrowing(address,bool)",
            "ReserveDropped(address)",
            "ReserveFactorChanged(address,uint256,uint256)",
            "ReserveFlashLoaning(address,bool)",
            "ReserveFrozen(address,bool)",
            "ReserveInitialized(address,address,address,address,address)",
            "ReserveInterestRateDataChanged(address,address,bytes)",
            "ReserveInterestRateStrategyChanged(address,address,address)",
            "ReservePaused(address,bool)",
            "ReserveStableRateBorrowing(address,bool)",
            "SiloedBorrowingChanged(address,bool,bool)",
            "StableDebtTokenUpgraded(address,address,address)",
            "SupplyCapChanged(address,uint256,uint256)",
            "UnbackedMintCapChanged(address,uint256,uint256)",
            "Upgraded(address)",
            "VariableDebtTokenUpgraded(address,address,address)",
        )
    ]
    + [
        (AaveRole.ORACLE, s)
        for s in (
            "AssetSourceUpdated(address,address)",
            "BaseCurrencySet(address,uint256)",
            "FallbackOracleUpdated(address)",
        )
    ]
    + [
        (AaveRole.A_TOKEN, s)
        for s in (
            "Approval(address,address,uint256)",
            "BalanceTransfer(address,address,uint256,uint256)",
            "Burn(address,address,uint256,uint256,uint256)",
            "DelegateChanged(address,address,uint8)",
            "Initialized(address,address,address,address,uint8,string,string,bytes)",
            "Mint(address,address,uint256,uint256,uint256)",
            "Transfer(address,address,uint256)",
            "Upgraded(address)",
        )
    ]
    + [
        (AaveRole.VARIABLE_DEBT, s)
        for s in (
            "Approval(address,address,uint256)",
            "BorrowAllowanceDelegated(address,address,address,uint256)",
            "Burn(address,address,uint256,uint256,uint256)",
            "Initialized(address,address,address,uint8,string,string,bytes)",
            "Mint(address,address,uint256,uint256,uint256)",
            "Transfer(address,address,uint256)",
            "Upgraded(address)",
        )
    ]
)


def t0(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def word(value: object, kind: str = "address") -> str:
    return "0x" + encode([kind], [value]).hex()


def make_log(signature: str, topics: list[str], types: list[str], values: list[object]) -> RawLog:
    data = "0x" + encode(types, values).hex()
    return RawLog(1, 100, "0xbb", 3, "0xtx", 0, ASSET, (t0(signature), *topics), data)


def test_every_event_of_the_releases_in_force_is_known() -> None:
    """Each signature is decoded or deliberately ignored for the contract that emits it."""
    decoded_topics = {
        AaveRole.POOL: {
            ev.SUPPLY,
            ev.WITHDRAW,
            ev.BORROW,
            ev.REPAY,
            ev.RESERVE_DATA_UPDATED,
            ev.COLLATERAL_ENABLED,
            ev.COLLATERAL_DISABLED,
            ev.USER_EMODE_SET,
            ev.LIQUIDATION_CALL,
            ev.UPGRADED,
            ev.DEFICIT_CREATED,
            ev.DEFICIT_COVERED,
            ev.POSITION_MANAGER_APPROVED,
            ev.POSITION_MANAGER_REVOKED,
        },
        AaveRole.CONFIGURATOR: {
            ev.RESERVE_INITIALIZED,
            ev.COLLATERAL_CONFIGURATION_CHANGED,
            ev.EMODE_ASSET_CATEGORY_CHANGED,
            ev.EMODE_CATEGORY_ADDED,
            ev.RESERVE_DROPPED,
            ev.ASSET_COLLATERAL_IN_EMODE_CHANGED,
            ev.ASSET_BORROWABLE_IN_EMODE_CHANGED,
            ev.ASSET_LTVZERO_IN_EMODE_CHANGED,
            ev.EMODE_CATEGORY_ISOLATION_CHANGED,
            ev.PENDING_LTV_CHANGED,
            ev.LIQUIDATION_GRACE_PERIOD_CHANGED,
            ev.LIQUIDATION_GRACE_PERIOD_DISABLED,
            ev.RESERVE_INTEREST_RATE_DATA_CHANGED,
        },
        AaveRole.ORACLE: {ev.ASSET_SOURCE_UPDATED},
        AaveRole.A_TOKEN: {ev.SCALED_MINT, ev.SCALED_BURN, ev.BALANCE_TRANSFER},
        AaveRole.VARIABLE_DEBT: {ev.SCALED_MINT, ev.SCALED_BURN},
    }
    unknown = [
        (role.value, sig)
        for role, sig in SOURCES
        if t0(sig) not in decoded_topics[role] and t0(sig) not in ev.IGNORED[role]
    ]
    assert unknown == []


def test_pool_upgraded_names_the_new_implementation() -> None:
    log = make_log("Upgraded(address)", [word(OTHER)], [], [])
    assert ev.decode(AaveRole.POOL, log) == ev.PoolUpgraded(OTHER)


def test_deficit_created() -> None:
    log = make_log(
        "DeficitCreated(address,address,uint256)",
        [word(USER), word(ASSET)],
        ["uint256"],
        [12_345],
    )
    assert ev.decode(AaveRole.POOL, log) == ev.DeficitCreated(USER, ASSET, 12_345)


def test_deficit_covered() -> None:
    log = make_log(
        "DeficitCovered(address,address,uint256)",
        [word(ASSET)],
        ["address", "uint256"],
        [OTHER, 77],
    )
    assert ev.decode(AaveRole.POOL, log) == ev.ReserveNotice("deficit_covered", ASSET, 77)


@pytest.mark.parametrize(
    ("signature", "approved"),
    [
        ("PositionManagerApproved(address,address)", True),
        ("PositionManagerRevoked(address,address)", False),
    ],
)
def test_position_manager(signature: str, approved: bool) -> None:
    log = make_log(signature, [word(USER), word(OTHER)], [], [])
    assert ev.decode(AaveRole.POOL, log) == ev.PositionManagerChanged(USER, OTHER, approved)


@pytest.mark.parametrize(
    ("signature", "bitmap"),
    [
        ("AssetCollateralInEModeChanged(address,uint8,bool)", "collateral"),
        ("AssetBorrowableInEModeChanged(address,uint8,bool)", "borrowable"),
        ("AssetLtvzeroInEModeChanged(address,uint8,bool)", "ltvzero"),
    ],
)
@pytest.mark.parametrize("enabled", [True, False])
def test_asset_in_emode_bitmaps(signature: str, bitmap: str, enabled: bool) -> None:
    log = make_log(signature, [word(ASSET)], ["uint8", "bool"], [3, enabled])
    assert ev.decode(AaveRole.CONFIGURATOR, log) == ev.AssetInEModeChanged(
        ASSET, 3, bitmap, enabled
    )


def test_emode_category_isolation() -> None:
    log = make_log(
        "EModeCategoryIsolationChanged(uint8,bool)", [word(2, "uint8")], ["bool"], [True]
    )
    assert ev.decode(AaveRole.CONFIGURATOR, log) == ev.EModeCategoryIsolationChanged(2, True)


def test_emode_category_added_of_3_2_has_no_price_source() -> None:
    log = make_log(
        "EModeCategoryAdded(uint8,uint256,uint256,uint256,address,string)",
        [word(1, "uint8")],
        ["uint256", "uint256", "uint256", "address", "string"],
        [9_300, 9_500, 10_100, "0x" + "00" * 20, "ETH correlated"],
    )
    assert ev.decode(AaveRole.CONFIGURATOR, log) == ev.EModeCategoryAdded(
        1, 9_300, 9_500, 10_100, "0x" + "00" * 20
    )


def test_reserve_dropped() -> None:
    log = make_log("ReserveDropped(address)", [word(ASSET)], [], [])
    assert ev.decode(AaveRole.CONFIGURATOR, log) == ev.ReserveDropped(ASSET)


def test_reserve_initialized_without_stable_debt_token() -> None:
    """Reserves listed since 3.2 name stableDebtToken 0x0."""
    zero = "0x" + "00" * 20
    log = make_log(
        "ReserveInitialized(address,address,address,address,address)",
        [word(ASSET), word(OTHER)],
        ["address", "address", "address"],
        [zero, USER, "0x" + "55" * 20],
    )
    assert ev.decode(AaveRole.CONFIGURATOR, log) == ev.ReserveInitialized(ASSET, OTHER, zero, USER)


def test_pending_ltv_and_grace_periods_are_notices() -> None:
    pending = make_log("PendingLtvChanged(address,uint256)", [word(ASSET)], ["uint256"], [8_000])
    grace = make_log(
        "LiquidationGracePeriodChanged(address,uint40)", [word(ASSET)], ["uint40"], [1_700_000]
    )
    disabled = make_log("LiquidationGracePeriodDisabled(address)", [word(ASSET)], [], [])
    assert [ev.decode(AaveRole.CONFIGURATOR, lg) for lg in (pending, grace, disabled)] == [
        ev.ReserveNotice("pending_ltv", ASSET, 8_000),
        ev.ReserveNotice("grace_period", ASSET, 1_700_000),
        ev.ReserveNotice("grace_period", ASSET, 0),
    ]


def test_reserve_interest_rate_data_changed() -> None:
    # The rate data of the v3.2+ DefaultReserveInterestRateStrategyV2: an encoded struct.
    rate_data = encode(["uint16", "uint32", "uint32", "uint32"], [9_000, 0, 400, 6_000])
    log = make_log(
        "ReserveInterestRateDataChanged(address,address,bytes)",
        [word(ASSET), word(OTHER)],
        ["bytes"],
        [rate_data],
    )
    assert ev.decode(AaveRole.CONFIGURATOR, log) == ev.ReserveNotice(
        "rate_data", ASSET, len(rate_data)
    )
    truncated = log._replace(data=log.data[:-64])
    with pytest.raises(ev.DecodeError):
        ev.decode(AaveRole.CONFIGURATOR, truncated)


def test_a_bool_word_with_high_bits_is_a_decode_error() -> None:
    log = make_log(
        "AssetCollateralInEModeChanged(address,uint8,bool)",
        [word(ASSET)],
        ["uint8", "uint256"],
        [1, 2],
    )
    with pytest.raises(ev.DecodeError):
        ev.decode(AaveRole.CONFIGURATOR, log)


@pytest.mark.parametrize("role", [AaveRole.A_TOKEN, AaveRole.VARIABLE_DEBT])
def test_mint_and_burn_carry_the_raw_fields(role: AaveRole) -> None:
    mint = make_log(
        "Mint(address,address,uint256,uint256,uint256)",
        [word(OTHER), word(USER)],
        ["uint256", "uint256", "uint256"],
        [1_000, 7, RAY + 5],
    )
    burn = make_log(
        "Burn(address,address,uint256,uint256,uint256)",
        [word(USER), word(OTHER)],
        ["uint256", "uint256", "uint256"],
        [400, 3, RAY + 9],
    )
    assert ev.decode(role, mint) == ev.ScaledDelta(USER, 1_000, 7, RAY + 5, False)
    assert ev.decode(role, burn) == ev.ScaledDelta(USER, 400, 3, RAY + 9, True)


def test_a_transfers_interest_mint_moves_no_scaled_balance() -> None:
    # 3.5+ AToken._transfer emits Mint(value == balanceIncrease) for the accrued interest.
    interest = ev.ScaledDelta(USER, 42, 42, RAY, False)
    assert not interest.moves_balance
    assert ev.ScaledDelta(USER, 41, 42, RAY, False).moves_balance  # a burn below interest
    assert ev.ScaledDelta(USER, 0, 0, RAY, True).moves_balance
