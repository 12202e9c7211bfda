"""Decode Aave V3 (v3.0.2) and Chainlink feed logs into small typed events (pure, no I/O).

Roles: the Pool, the PoolConfigurator, the AaveOracle, each reserve's aToken / variable debt /
stable debt token, and each price feed the oracle names. Signatures are from the
`@aave/core-v3` 1.19.3 artifacts (v3.0.2).
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from flows.abi import DecodeError
from flows.abi import address as _address
from flows.abi import bounded as _bounded
from flows.abi import signed as _signed
from flows.abi import topic as _topic
from flows.abi import topics as _topics
from flows.abi import words as _words
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
        "Upgraded(address)",
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
        "ReserveDropped(address)",
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
    ),
    AaveRole.VARIABLE_DEBT: (
        "Transfer(address,address,uint256)",
        "Approval(address,address,uint256)",
        "BorrowAllowanceDelegated(address,address,address,uint256)",
        "Initialized(address,address,address,uint8,string,string,bytes)",
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


class AssetSourceUpdated(NamedTuple):
    asset: str
    source: str


class AnswerUpdated(NamedTuple):
    answer: int
    round_id: int
    updated_at: int


class ScaledDelta(NamedTuple):
    """A change of a user's scaled balance (aToken or variable debt), exactly as the token
    applied it: `amount` is the underlying amount the contract rayDiv'ed by `index`."""

    user: str
    amount: int  # positive: minted; negative: burned
    index_ray: int


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
    | AssetSourceUpdated
    | AnswerUpdated
    | ScaledDelta
    | ScaledTransfer
    | StableDebtChanged
)


def decode(role: AaveRole, log: RawLog) -> Event | None:
    """The event in `log`; None for a known event defimon ignores; DecodeError if unreadable."""
    if not log.topics:
        raise DecodeError("anonymous log (no topics)")
    t0 = log.topics[0]
    if role is AaveRole.A_TOKEN or role is AaveRole.VARIABLE_DEBT:
        if t0 == SCALED_MINT:
            _caller, on_behalf = _topics(log, 3)
            value, balance_increase, index = _words(log, 3)
            # A burn smaller than the accrued interest is emitted as a Mint of the difference
            # (ScaledBalanceTokenBase._burnScaled); a genuine mint always has value >= increase.
            return ScaledDelta(_address(on_behalf), value - balance_increase, index)
        if t0 == SCALED_BURN:
            sender, _target = _topics(log, 3)
            value, balance_increase, index = _words(log, 3)
            return ScaledDelta(_address(sender), -(value + balance_increase), index)
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
