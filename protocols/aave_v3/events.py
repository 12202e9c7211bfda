"""Decode Aave V3 (v3.0.2 .. v3.7) and Chainlink feed logs into small typed events (pure, no I/O).

Roles: the Pool, the PoolConfigurator, the AaveOracle, each reserve's aToken / variable debt /
stable debt token, and each price feed the oracle names. Signatures are from the
`@aave/core-v3` 1.19.3 artifacts (v3.0.2) and from the interfaces of aave-dao/aave-v3-origin
at the tags v3.1.0 .. v3.6.0 and v3.7.0 (IPool, IPoolConfigurator, IAToken, IScaledBalanceToken,
ICreditDelegationToken, IInitializable*Token, IAaveOracle, IBaseDelegation): every event any of
them declares is either decoded here or listed as ignored, so none reaches the dead letters.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from protocols.abi import DecodeError
from protocols.abi import address as _address
from protocols.abi import bounded as _bounded
from protocols.abi import signed as _signed
from protocols.abi import topic as _topic
from protocols.abi import topics as _topics
from protocols.abi import words as _words
from schemas.chain import RawLog

__all__ = ["DecodeError", "decode"]


class AaveRole(Enum):
    POOL = "aave_pool"
    CONFIGURATOR = "aave_configurator"
    ORACLE = "aave_oracle"
    A_TOKEN = "a_token"
    VARIABLE_DEBT = "variable_debt_token"
    STABLE_DEBT = "stable_debt_token"
    FEED = "price_feed"


# Pool
SUPPLY = _topic("Supply(address,address,address,uint256,uint16)")
WITHDRAW = _topic("Withdraw(address,address,address,uint256)")
BORROW = _topic("Borrow(address,address,address,uint256,uint8,uint256,uint16)")
REPAY = _topic("Repay(address,address,address,uint256,bool)")
RESERVE_DATA_UPDATED = _topic("ReserveDataUpdated(address,uint256,uint256,uint256,uint256,uint256)")
COLLATERAL_ENABLED = _topic("ReserveUsedAsCollateralEnabled(address,address)")
COLLATERAL_DISABLED = _topic("ReserveUsedAsCollateralDisabled(address,address)")
USER_EMODE_SET = _topic("UserEModeSet(address,uint8)")
LIQUIDATION_CALL = _topic("LiquidationCall(address,address,address,uint256,uint256,address,bool)")
# Configurator
RESERVE_INITIALIZED = _topic("ReserveInitialized(address,address,address,address,address)")
COLLATERAL_CONFIGURATION_CHANGED = _topic(
    "CollateralConfigurationChanged(address,uint256,uint256,uint256)"
)
EMODE_ASSET_CATEGORY_CHANGED = _topic("EModeAssetCategoryChanged(address,uint8,uint8)")
EMODE_CATEGORY_ADDED = _topic("EModeCategoryAdded(uint8,uint256,uint256,uint256,address,string)")
RESERVE_DROPPED = _topic("ReserveDropped(address)")
# Configurator, 3.2+: eMode membership is per category, as bitmaps over reserve ids.
ASSET_COLLATERAL_IN_EMODE_CHANGED = _topic("AssetCollateralInEModeChanged(address,uint8,bool)")
ASSET_BORROWABLE_IN_EMODE_CHANGED = _topic("AssetBorrowableInEModeChanged(address,uint8,bool)")
ASSET_LTVZERO_IN_EMODE_CHANGED = _topic("AssetLtvzeroInEModeChanged(address,uint8,bool)")  # 3.6+
EMODE_CATEGORY_ISOLATION_CHANGED = _topic("EModeCategoryIsolationChanged(uint8,bool)")  # 3.7
PENDING_LTV_CHANGED = _topic("PendingLtvChanged(address,uint256)")
LIQUIDATION_GRACE_PERIOD_CHANGED = _topic("LiquidationGracePeriodChanged(address,uint40)")
LIQUIDATION_GRACE_PERIOD_DISABLED = _topic("LiquidationGracePeriodDisabled(address)")
RESERVE_INTEREST_RATE_DATA_CHANGED = _topic("ReserveInterestRateDataChanged(address,address,bytes)")
# Pool, 3.3+ / 3.4+
DEFICIT_CREATED = _topic("DeficitCreated(address,address,uint256)")
DEFICIT_COVERED = _topic("DeficitCovered(address,address,uint256)")
POSITION_MANAGER_APPROVED = _topic("PositionManagerApproved(address,address)")
POSITION_MANAGER_REVOKED = _topic("PositionManagerRevoked(address,address)")
# The Pool proxy (InitializableImmutableAdminUpgradeabilityProxy): a new implementation.
UPGRADED = _topic("Upgraded(address)")
# Oracle and feeds
ASSET_SOURCE_UPDATED = _topic("AssetSourceUpdated(address,address)")
ANSWER_UPDATED = _topic("AnswerUpdated(int256,uint256,uint256)")
# OCR aggregators also carry the answer in NewTransmission (first data word, an int192):
# OCR1 (AccessControlledOffchainAggregator) and OCR2 (libocr contract2) spell it differently.
NEW_TRANSMISSION_OCR1 = _topic("NewTransmission(uint32,int192,address,int192[],bytes,bytes32)")
NEW_TRANSMISSION_OCR2 = _topic(
    "NewTransmission(uint32,int192,address,uint32,int192[],bytes,int192,bytes32,uint40)"
)
# Scaled-balance tokens
SCALED_MINT = _topic("Mint(address,address,uint256,uint256,uint256)")
SCALED_BURN = _topic("Burn(address,address,uint256,uint256,uint256)")
BALANCE_TRANSFER = _topic("BalanceTransfer(address,address,uint256,uint256)")
STABLE_MINT = _topic("Mint(address,address,uint256,uint256,uint256,uint256,uint256,uint256)")
STABLE_BURN = _topic("Burn(address,uint256,uint256,uint256,uint256,uint256)")

_IGNORED_SIGNATURES: dict[AaveRole, tuple[str, ...]] = {
    AaveRole.POOL: (
        "BackUnbacked(address,address,uint256,uint256)",
        "FlashLoan(address,address,address,uint256,uint8,uint256,uint16)",
        "IsolationModeTotalDebtUpdated(address,uint256)",
        "MintUnbacked(address,address,address,uint256,uint16)",
        "MintedToTreasury(address,uint256)",
        "RebalanceStableBorrowRate(address,address)",
        "SwapBorrowRateMode(address,address,uint8)",
    ),
    AaveRole.CONFIGURATOR: (
        "ATokenUpgraded(address,address,address)",
        "BorrowCapChanged(address,uint256,uint256)",
        "BorrowableInIsolationChanged(address,bool)",
        "BridgeProtocolFeeUpdated(uint256,uint256)",
        "DebtCeilingChanged(address,uint256,uint256)",
        "FlashloanPremiumToProtocolUpdated(uint128,uint128)",
        "FlashloanPremiumTotalUpdated(uint128,uint128)",
        "LiquidationProtocolFeeChanged(address,uint256,uint256)",
        "ReserveActive(address,bool)",
        "ReserveBorrowing(address,bool)",
        "ReserveFactorChanged(address,uint256,uint256)",
        "ReserveFlashLoaning(address,bool)",
        "ReserveFrozen(address,bool)",
        "ReserveInterestRateStrategyChanged(address,address,address)",
        "ReservePaused(address,bool)",
        "ReserveStableRateBorrowing(address,bool)",
        "SiloedBorrowingChanged(address,bool,bool)",
        "StableDebtTokenUpgraded(address,address,address)",
        "SupplyCapChanged(address,uint256,uint256)",
        "UnbackedMintCapChanged(address,uint256,uint256)",
        "VariableDebtTokenUpgraded(address,address,address)",
        "Upgraded(address)",
    ),
    AaveRole.ORACLE: (
        "BaseCurrencySet(address,uint256)",
        "FallbackOracleUpdated(address)",
    ),
    AaveRole.A_TOKEN: (
        "Transfer(address,address,uint256)",
        "Approval(address,address,uint256)",
        "Initialized(address,address,address,address,uint8,string,string,bytes)",
        # The AAVE reserve's aToken (ATokenWithDelegation, 3.4+): governance power only.
        "DelegateChanged(address,address,uint8)",
        # The token's proxy, upgraded by the configurator (updateAToken).
        "Upgraded(address)",
    ),
    AaveRole.VARIABLE_DEBT: (
        "Transfer(address,address,uint256)",
        "Approval(address,address,uint256)",
        "BorrowAllowanceDelegated(address,address,address,uint256)",
        "Initialized(address,address,address,uint8,string,string,bytes)",
        "Upgraded(address)",
    ),
    AaveRole.STABLE_DEBT: (
        "Transfer(address,address,uint256)",
        "Approval(address,address,uint256)",
        "BorrowAllowanceDelegated(address,address,address,uint256)",
        "Initialized(address,address,address,uint8,string,string,bytes)",
    ),
    AaveRole.FEED: ("NewRound(uint256,address,uint256)",),
}
IGNORED: dict[AaveRole, frozenset[str]] = {
    role: frozenset(_topic(s) for s in sigs) for role, sigs in _IGNORED_SIGNATURES.items()
}


class ReserveDataUpdated(NamedTuple):
    reserve: str
    liquidity_rate: int
    stable_borrow_rate: int
    variable_borrow_rate: int
    liquidity_index: int
    variable_borrow_index: int


class CollateralToggled(NamedTuple):
    reserve: str
    user: str
    enabled: bool


class UserEModeSet(NamedTuple):
    user: str
    category: int


class LiquidationCall(NamedTuple):
    collateral_asset: str
    debt_asset: str
    user: str
    debt_to_cover: int
    liquidated_collateral: int
    liquidator: str
    receive_a_token: bool


class UserAction(NamedTuple):
    """Supply, Withdraw, Borrow or Repay: informative (balances come from the token logs)."""

    kind: str
    reserve: str
    user: str
    amount: int


class ReserveInitialized(NamedTuple):
    asset: str
    a_token: str
    stable_debt_token: str
    variable_debt_token: str


class CollateralConfigurationChanged(NamedTuple):
    asset: str
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int


class EModeAssetCategoryChanged(NamedTuple):
    asset: str
    category: int


class EModeCategoryAdded(NamedTuple):
    category: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    price_source: str


class ReserveDropped(NamedTuple):
    """The reserve left the pool; its id is free for the next ReserveInitialized."""

    asset: str


class AssetInEModeChanged(NamedTuple):
    """3.2+: `asset`'s bit in the category's collateral, borrowable or (3.6+) ltvzero bitmap."""

    asset: str
    category: int
    bitmap: str  # "collateral" | "borrowable" | "ltvzero"
    enabled: bool


class EModeCategoryIsolationChanged(NamedTuple):
    category: int
    isolated: bool


class PoolUpgraded(NamedTuple):
    """The Pool proxy points at a new implementation: the revision in force may change."""

    implementation: str


class ReserveNotice(NamedTuple):
    """A reserve-level change that moves no account balance and no number defimon values with:
    the pending LTV of a frozen reserve (the LTV itself comes with
    CollateralConfigurationChanged), a liquidation grace period (`value`: until, 0 when
    disabled), new interest rate data (rates come with ReserveDataUpdated), a deficit covered.
    Decoded so a malformed one is a dead letter, then kept out of the state."""

    kind: str
    asset: str
    value: int


class DeficitCreated(NamedTuple):
    """3.3+: a liquidation left `amount` of `user`'s `debt_asset` debt as the reserve's deficit
    (the debt token's Burn carries the account's side)."""

    user: str
    debt_asset: str
    amount: int


class PositionManagerChanged(NamedTuple):
    """3.4+: `user` lets `manager` act for it (or no longer does); balances are unaffected."""

    user: str
    manager: str
    approved: bool


class AssetSourceUpdated(NamedTuple):
    asset: str
    source: str


class AnswerUpdated(NamedTuple):
    answer: int
    round_id: int
    updated_at: int


class ScaledDelta(NamedTuple):
    """A token `Mint` or `Burn` (aToken or variable debt), its fields as emitted. The scaled
    change behind it depends on the version and, since 3.5, on the user's previous scaled
    balance: the shard recovers it (`math.scaled_delta_from_event`)."""

    user: str
    value: int
    balance_increase: int
    index_ray: int
    burn: bool

    @property
    def moves_balance(self) -> bool:
        # A Mint of exactly the accrued interest (a transfer's, since 3.5) moves no scaled
        # balance; every other Mint or Burn does.
        return self.burn or self.value != self.balance_increase


class ScaledTransfer(NamedTuple):
    sender: str
    recipient: str
    scaled: int  # BalanceTransfer carries the scaled amount (v3.0.2: amount.rayDiv(index))
    index_ray: int


class StableDebtChanged(NamedTuple):
    """A user's stable debt after a mint or burn: new principal, rate and (block) time."""

    user: str
    principal: int
    rate: int | None  # None: unchanged (a burn keeps the user's rate unless debt reaches 0)


Event = (
    ReserveDataUpdated
    | CollateralToggled
    | UserEModeSet
    | LiquidationCall
    | UserAction
    | ReserveInitialized
    | CollateralConfigurationChanged
    | EModeAssetCategoryChanged
    | EModeCategoryAdded
    | ReserveDropped
    | AssetInEModeChanged
    | EModeCategoryIsolationChanged
    | PoolUpgraded
    | ReserveNotice
    | DeficitCreated
    | PositionManagerChanged
    | AssetSourceUpdated
    | AnswerUpdated
    | ScaledDelta
    | ScaledTransfer
    | StableDebtChanged
)


_EMODE_BITMAPS = {
    ASSET_COLLATERAL_IN_EMODE_CHANGED: "collateral",
    ASSET_BORROWABLE_IN_EMODE_CHANGED: "borrowable",
    ASSET_LTVZERO_IN_EMODE_CHANGED: "ltvzero",
}


def decode(role: AaveRole, log: RawLog) -> Event | None:
    """The event in `log`; None for a known event defimon ignores; DecodeError if unreadable."""
    if not log.topics:
        raise DecodeError("anonymous log (no topics)")
    t0 = log.topics[0]
    if role is AaveRole.A_TOKEN or role is AaveRole.VARIABLE_DEBT:
        if t0 == SCALED_MINT or t0 == SCALED_BURN:
            # Mint(caller, onBehalfOf, ...) / Burn(from, target, ...): the account is the
            # second topic of a Mint and the first of a Burn. A burn smaller than the accrued
            # interest is emitted as a Mint below its balanceIncrease (_burnScaled).
            first, second = _topics(log, 3)
            value, balance_increase, index = _words(log, 3)
            burn = t0 == SCALED_BURN
            if index == 0:
                raise DecodeError("index is 0")
            holder = _address(first if burn else second)
            return ScaledDelta(holder, value, balance_increase, index, burn)
        if t0 == BALANCE_TRANSFER and role is AaveRole.A_TOKEN:
            sender, recipient = _topics(log, 3)
            scaled, index = _words(log, 2)
            return ScaledTransfer(_address(sender), _address(recipient), scaled, index)
    elif role is AaveRole.STABLE_DEBT:
        if t0 == STABLE_MINT:
            _user, on_behalf = _topics(log, 3)
            amount, current, increase, new_rate, _avg, _supply = _words(log, 6)
            # StableDebtToken.mint emits amount + balanceIncrease; the principal becomes
            # currentBalance + amount.
            return StableDebtChanged(_address(on_behalf), current + amount - increase, new_rate)
        if t0 == STABLE_BURN:
            (sender,) = _topics(log, 2)
            amount, current, increase, _avg, _supply = _words(log, 5)
            return StableDebtChanged(_address(sender), current - amount - increase, None)
    elif role is AaveRole.POOL:
        if t0 == RESERVE_DATA_UPDATED:
            (reserve,) = _topics(log, 2)
            lr, sbr, vbr, li, vbi = _words(log, 5)
            return ReserveDataUpdated(_address(reserve), lr, sbr, vbr, li, vbi)
        if t0 == COLLATERAL_ENABLED or t0 == COLLATERAL_DISABLED:
            reserve, user = _topics(log, 3)
            _words(log, 0)
            return CollateralToggled(_address(reserve), _address(user), t0 == COLLATERAL_ENABLED)
        if t0 == USER_EMODE_SET:
            (user,) = _topics(log, 2)
            (category,) = _words(log, 1)
            return UserEModeSet(_address(user), _bounded(category, 8, "categoryId"))
        if t0 == LIQUIDATION_CALL:
            collateral, debt, user = _topics(log, 4)
            to_cover, seized, liquidator, receive = _words(log, 4)
            return LiquidationCall(
                _address(collateral),
                _address(debt),
                _address(user),
                to_cover,
                seized,
                _address(liquidator),
                bool(receive),
            )
        if t0 == SUPPLY:
            reserve, on_behalf, _ref = _topics(log, 4)
            _user, amount = _words(log, 2)
            return UserAction("supply", _address(reserve), _address(on_behalf), amount)
        if t0 == WITHDRAW:
            reserve, user, _to = _topics(log, 4)
            (amount,) = _words(log, 1)
            return UserAction("withdraw", _address(reserve), _address(user), amount)
        if t0 == BORROW:
            reserve, on_behalf, _ref = _topics(log, 4)
            _user, amount, _mode, _rate = _words(log, 4)
            return UserAction("borrow", _address(reserve), _address(on_behalf), amount)
        if t0 == REPAY:
            reserve, user, _repayer = _topics(log, 4)
            amount, _use_a = _words(log, 2)
            return UserAction("repay", _address(reserve), _address(user), amount)
        if t0 == UPGRADED:
            (implementation,) = _topics(log, 2)
            _words(log, 0)
            return PoolUpgraded(_address(implementation))
        if t0 == DEFICIT_CREATED:
            user, debt_asset = _topics(log, 3)
            (amount,) = _words(log, 1)
            return DeficitCreated(_address(user), _address(debt_asset), amount)
        if t0 == DEFICIT_COVERED:
            (reserve,) = _topics(log, 2)
            caller, amount = _words(log, 2)
            _address(caller)
            return ReserveNotice("deficit_covered", _address(reserve), amount)
        if t0 == POSITION_MANAGER_APPROVED or t0 == POSITION_MANAGER_REVOKED:
            user, manager = _topics(log, 3)
            _words(log, 0)
            return PositionManagerChanged(
                _address(user), _address(manager), t0 == POSITION_MANAGER_APPROVED
            )
    elif role is AaveRole.CONFIGURATOR:
        if t0 == RESERVE_INITIALIZED:
            asset, a_token = _topics(log, 3)
            stable, variable, _strategy = _words(log, 3)
            return ReserveInitialized(
                _address(asset), _address(a_token), _address(stable), _address(variable)
            )
        if t0 == COLLATERAL_CONFIGURATION_CHANGED:
            (asset,) = _topics(log, 2)
            ltv, lt, bonus = _words(log, 3)
            return CollateralConfigurationChanged(
                _address(asset),
                _bounded(ltv, 16, "ltv"),
                _bounded(lt, 16, "liquidationThreshold"),
                _bounded(bonus, 16, "liquidationBonus"),
            )
        if t0 == EMODE_ASSET_CATEGORY_CHANGED:
            (asset,) = _topics(log, 2)
            _old, new = _words(log, 2)
            return EModeAssetCategoryChanged(_address(asset), _bounded(new, 8, "categoryId"))
        if t0 == EMODE_CATEGORY_ADDED:
            (category,) = _topics(log, 2)
            # The label is a dynamic string after the head; only the head words are needed.
            ltv, lt, bonus, oracle = _words(log, 4, at_least=True)
            return EModeCategoryAdded(
                _bounded(category, 8, "categoryId"),
                _bounded(ltv, 16, "ltv"),
                _bounded(lt, 16, "liquidationThreshold"),
                _bounded(bonus, 16, "liquidationBonus"),
                _address(oracle),
            )
        if t0 == RESERVE_DROPPED:
            (asset,) = _topics(log, 2)
            _words(log, 0)
            return ReserveDropped(_address(asset))
        if t0 in _EMODE_BITMAPS:
            (asset,) = _topics(log, 2)
            category, enabled = _words(log, 2)
            return AssetInEModeChanged(
                _address(asset),
                _bounded(category, 8, "categoryId"),
                _EMODE_BITMAPS[t0],
                bool(_bounded(enabled, 1, "bool")),
            )
        if t0 == EMODE_CATEGORY_ISOLATION_CHANGED:
            (category,) = _topics(log, 2)
            (isolated,) = _words(log, 1)
            return EModeCategoryIsolationChanged(
                _bounded(category, 8, "categoryId"), bool(_bounded(isolated, 1, "bool"))
            )
        if t0 == PENDING_LTV_CHANGED:
            (asset,) = _topics(log, 2)
            (ltv,) = _words(log, 1)
            return ReserveNotice("pending_ltv", _address(asset), _bounded(ltv, 16, "ltv"))
        if t0 == LIQUIDATION_GRACE_PERIOD_CHANGED:
            (asset,) = _topics(log, 2)
            (until,) = _words(log, 1)
            return ReserveNotice(
                "grace_period", _address(asset), _bounded(until, 40, "gracePeriodUntil")
            )
        if t0 == LIQUIDATION_GRACE_PERIOD_DISABLED:
            (asset,) = _topics(log, 2)
            _words(log, 0)
            return ReserveNotice("grace_period", _address(asset), 0)
        if t0 == RESERVE_INTEREST_RATE_DATA_CHANGED:
            asset, strategy = _topics(log, 3)
            # `bytes data`: an offset word, a length word, then the rate data (ABI-encoded).
            offset, length = _words(log, 2, at_least=True)
            if offset != 32 or (len(log.data) - 2) // 2 < 64 + length:
                raise DecodeError("rate data shorter than its length")
            _address(strategy)
            return ReserveNotice("rate_data", _address(asset), length)
    elif role is AaveRole.ORACLE:
        if t0 == ASSET_SOURCE_UPDATED:
            asset, source = _topics(log, 3)
            return AssetSourceUpdated(_address(asset), _address(source))
    elif role is AaveRole.FEED:
        if t0 == ANSWER_UPDATED:
            current, round_id = _topics(log, 3)
            (updated_at,) = _words(log, 1)
            return AnswerUpdated(_signed(current), round_id, updated_at)
        if t0 in (NEW_TRANSMISSION_OCR1, NEW_TRANSMISSION_OCR2):
            (round_id,) = _topics(log, 2)
            words = _words(log, 4, at_least=True)
            # OCR2 names the observations' time; OCR1's is in its report context (not kept).
            updated_at = words[2] if t0 == NEW_TRANSMISSION_OCR2 else 0
            return AnswerUpdated(_signed(words[0]), round_id, updated_at)
        # An aggregator's other logs (submissions, rounds, permissions, billing: dozens over
        # the Flux, OCR and OCR2 versions) say nothing the answer does not.
        return None
    if t0 in IGNORED[role]:
        return None
    raise DecodeError(f"unknown topic {t0} for a {role.value}")
