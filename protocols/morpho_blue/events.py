"""Decode Morpho Blue 1.0.0 logs into small typed events (pure, no I/O).

Signatures are EventsLib's (`src/libraries/EventsLib.sol`); `Id` is a bytes32 and
`MarketParams` the tuple (loanToken, collateralToken, oracle, irm, lltv). Every event the
contract emits is decoded, also those that move no balance (owner, authorizations, flash
loans), so an unknown topic from the Morpho address is a real surprise (DecodeError).
Market ids are lower-case 0x hex (32 bytes), addresses lower-case 0x hex.
"""

from __future__ import annotations

from typing import NamedTuple

from protocols.abi import DecodeError
from protocols.abi import address as _address
from protocols.abi import topic as _topic
from protocols.abi import topics as _topics
from protocols.abi import words as _words
from schemas.chain import RawLog

__all__ = ["SIGNATURES", "DecodeError", "Event", "MarketParams", "decode"]

_MARKET_PARAMS = "(address,address,address,address,uint256)"

# event name -> canonical signature
SIGNATURES: dict[str, str] = {
    "SetOwner": "SetOwner(address)",
    "SetFee": "SetFee(bytes32,uint256)",
    "SetFeeRecipient": "SetFeeRecipient(address)",
    "EnableIrm": "EnableIrm(address)",
    "EnableLltv": "EnableLltv(uint256)",
    "CreateMarket": f"CreateMarket(bytes32,{_MARKET_PARAMS})",
    "Supply": "Supply(bytes32,address,address,uint256,uint256)",
    "Withdraw": "Withdraw(bytes32,address,address,address,uint256,uint256)",
    "Borrow": "Borrow(bytes32,address,address,address,uint256,uint256)",
    "Repay": "Repay(bytes32,address,address,uint256,uint256)",
    "SupplyCollateral": "SupplyCollateral(bytes32,address,address,uint256)",
    "WithdrawCollateral": "WithdrawCollateral(bytes32,address,address,address,uint256)",
    "Liquidate": "Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)",
    "FlashLoan": "FlashLoan(address,address,uint256)",
    "SetAuthorization": "SetAuthorization(address,address,address,bool)",
    "IncrementNonce": "IncrementNonce(address,address,uint256)",
    "AccrueInterest": "AccrueInterest(bytes32,uint256,uint256,uint256)",
}
TOPICS: dict[str, str] = {name: _topic(signature) for name, signature in SIGNATURES.items()}
_NAME_OF_TOPIC = {topic0: name for name, topic0 in TOPICS.items()}


class MarketParams(NamedTuple):
    loan_token: str
    collateral_token: str
    oracle: str
    irm: str  # the zero address: a market without interest
    lltv: int  # WAD


class SetOwner(NamedTuple):
    new_owner: str


class SetFee(NamedTuple):
    id: str
    new_fee: int  # WAD


class SetFeeRecipient(NamedTuple):
    new_fee_recipient: str


class EnableIrm(NamedTuple):
    irm: str


class EnableLltv(NamedTuple):
    lltv: int


class CreateMarket(NamedTuple):
    id: str
    params: MarketParams


class Supply(NamedTuple):
    id: str
    caller: str
    on_behalf: str
    assets: int
    shares: int


class Withdraw(NamedTuple):
    id: str
    caller: str
    on_behalf: str
    receiver: str
    assets: int
    shares: int


class Borrow(NamedTuple):
    id: str
    caller: str
    on_behalf: str
    receiver: str
    assets: int
    shares: int


class Repay(NamedTuple):
    id: str
    caller: str
    on_behalf: str
    assets: int  # may be 1 over the market's totalBorrowAssets
    shares: int


class SupplyCollateral(NamedTuple):
    id: str
    caller: str
    on_behalf: str
    assets: int


class WithdrawCollateral(NamedTuple):
    id: str
    caller: str
    on_behalf: str
    receiver: str
    assets: int


class Liquidate(NamedTuple):
    id: str
    caller: str
    borrower: str
    repaid_assets: int  # may be 1 over the market's totalBorrowAssets
    repaid_shares: int
    seized_assets: int
    bad_debt_assets: int
    bad_debt_shares: int


class FlashLoan(NamedTuple):
    caller: str
    token: str
    assets: int


class SetAuthorization(NamedTuple):
    caller: str
    authorizer: str
    authorized: str
    new_is_authorized: bool


class IncrementNonce(NamedTuple):
    caller: str
    authorizer: str
    used_nonce: int


class AccrueInterest(NamedTuple):
    id: str
    prev_borrow_rate: int  # what the IRM's borrowRate answered, per second in WAD
    interest: int
    fee_shares: int


Event = (
    SetOwner
    | SetFee
    | SetFeeRecipient
    | EnableIrm
    | EnableLltv
    | CreateMarket
    | Supply
    | Withdraw
    | Borrow
    | Repay
    | SupplyCollateral
    | WithdrawCollateral
    | Liquidate
    | FlashLoan
    | SetAuthorization
    | IncrementNonce
    | AccrueInterest
)


def _id(word: int) -> str:
    return f"0x{word:064x}"


def _bool(word: int) -> bool:
    if word > 1:
        raise DecodeError("bool word is neither 0 nor 1")
    return word == 1


def decode(log: RawLog) -> Event:
    """The event in one log of the Morpho contract; DecodeError if it cannot be read."""
    if not log.topics:
        raise DecodeError("anonymous log (no topics)")
    name = _NAME_OF_TOPIC.get(log.topics[0])
    if name is None:
        raise DecodeError(f"unknown topic {log.topics[0]} for Morpho Blue")
    # Layouts: indexed parameters are topics, the others data words, in declaration order.
    if name == "AccrueInterest":
        (market,) = _topics(log, 2)
        rate, interest, fee_shares = _words(log, 3)
        return AccrueInterest(_id(market), rate, interest, fee_shares)
    if name == "Supply" or name == "Repay":
        market, caller, on_behalf = _topics(log, 4)
        assets, shares = _words(log, 2)
        kind = Supply if name == "Supply" else Repay
        return kind(_id(market), _address(caller), _address(on_behalf), assets, shares)
    if name == "Withdraw" or name == "Borrow":
        market, on_behalf, receiver = _topics(log, 4)
        caller, assets, shares = _words(log, 3)
        moved = Withdraw if name == "Withdraw" else Borrow
        return moved(
            _id(market),
            _address(caller),
            _address(on_behalf),
            _address(receiver),
            assets,
            shares,
        )
    if name == "SupplyCollateral":
        market, caller, on_behalf = _topics(log, 4)
        (assets,) = _words(log, 1)
        return SupplyCollateral(_id(market), _address(caller), _address(on_behalf), assets)
    if name == "WithdrawCollateral":
        market, on_behalf, receiver = _topics(log, 4)
        caller, assets = _words(log, 2)
        return WithdrawCollateral(
            _id(market), _address(caller), _address(on_behalf), _address(receiver), assets
        )
    if name == "Liquidate":
        market, caller, borrower = _topics(log, 4)
        repaid_assets, repaid_shares, seized, bad_assets, bad_shares = _words(log, 5)
        return Liquidate(
            _id(market),
            _address(caller),
            _address(borrower),
            repaid_assets,
            repaid_shares,
            seized,
            bad_assets,
            bad_shares,
        )
    if name == "CreateMarket":
        (market,) = _topics(log, 2)
        # a static tuple is encoded in place: five words
        loan, collateral, oracle, irm, lltv = _words(log, 5)
        params = MarketParams(
            _address(loan), _address(collateral), _address(oracle), _address(irm), lltv
        )
        return CreateMarket(_id(market), params)
    if name == "SetFee":
        (market,) = _topics(log, 2)
        (fee,) = _words(log, 1)
        return SetFee(_id(market), fee)
    if name == "FlashLoan":
        caller, token = _topics(log, 3)
        (assets,) = _words(log, 1)
        return FlashLoan(_address(caller), _address(token), assets)
    if name == "SetAuthorization":
        caller, authorizer, authorized = _topics(log, 4)
        (flag,) = _words(log, 1)
        return SetAuthorization(
            _address(caller), _address(authorizer), _address(authorized), _bool(flag)
        )
    if name == "IncrementNonce":
        caller, authorizer = _topics(log, 3)
        (used,) = _words(log, 1)
        return IncrementNonce(_address(caller), _address(authorizer), used)
    if name == "EnableLltv":
        _topics(log, 1)
        (lltv,) = _words(log, 1)
        return EnableLltv(lltv)
    # SetOwner, SetFeeRecipient, EnableIrm: one indexed address, no data
    (who,) = _topics(log, 2)
    _words(log, 0)
    if name == "SetOwner":
        return SetOwner(_address(who))
    if name == "SetFeeRecipient":
        return SetFeeRecipient(_address(who))
    return EnableIrm(_address(who))
