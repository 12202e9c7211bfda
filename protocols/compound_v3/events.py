"""Decode Compound V3 (Comet) logs into small typed events (pure, no I/O).

Signatures are Comet's own (compound-finance/comet `contracts/CometMainInterface.sol`); the
comet address is a TransparentUpgradeableProxy that also emits the proxy's events and, through
the extension delegate, ERC-20 `Approval`. Amounts are what the contract emitted: base amounts
are *present* values (the principal change they cause depends on the index of the block), so
the flow takes the account's principal from `userBasic` read at the block, and these events
say why it changed.
"""

from __future__ import annotations

from typing import NamedTuple

from protocols.abi import DecodeError
from protocols.abi import address as _address
from protocols.abi import topic as _topic
from protocols.abi import topics as _topics
from protocols.abi import words as _words
from protocols.base import ZERO_ADDRESS
from schemas.chain import RawLog

__all__ = ["DecodeError", "decode"]


SUPPLY = _topic("Supply(address,address,uint256)")
WITHDRAW = _topic("Withdraw(address,address,uint256)")
TRANSFER = _topic("Transfer(address,address,uint256)")
SUPPLY_COLLATERAL = _topic("SupplyCollateral(address,address,address,uint256)")
WITHDRAW_COLLATERAL = _topic("WithdrawCollateral(address,address,address,uint256)")
TRANSFER_COLLATERAL = _topic("TransferCollateral(address,address,address,uint256)")
ABSORB_DEBT = _topic("AbsorbDebt(address,address,uint256,uint256)")
ABSORB_COLLATERAL = _topic("AbsorbCollateral(address,address,address,uint256,uint256)")
BUY_COLLATERAL = _topic("BuyCollateral(address,address,uint256,uint256)")
# The proxy points at a new implementation: Comet's configuration (immutables) may differ.
UPGRADED = _topic("Upgraded(address)")

IGNORED = frozenset(
    _topic(s)
    for s in (
        "PauseAction(bool,bool,bool,bool,bool)",
        "WithdrawReserves(address,uint256)",  # reserves come from the totals read
        "Approval(address,address,uint256)",  # CometExt: allowances move no balance
        "AdminChanged(address,address)",
    )
)


class BaseChanged(NamedTuple):
    """Supply, Withdraw or the base `Transfer`: the base balance of `account` changed."""

    kind: str  # supply | withdraw | transfer_in | transfer_out
    account: str
    counterparty: str
    amount: int  # present value, base units


class CollateralChanged(NamedTuple):
    kind: str  # supply_collateral | withdraw_collateral | transfer_collateral_in | ..._out
    account: str
    counterparty: str
    asset: str
    amount: int


class AbsorbDebt(NamedTuple):
    absorber: str
    borrower: str
    base_paid_out: int
    usd_value: int


class AbsorbCollateral(NamedTuple):
    absorber: str
    borrower: str
    asset: str
    collateral_absorbed: int
    usd_value: int


class BuyCollateral(NamedTuple):
    buyer: str
    asset: str
    base_amount: int
    collateral_amount: int


class Upgraded(NamedTuple):
    implementation: str


Event = BaseChanged | CollateralChanged | AbsorbDebt | AbsorbCollateral | BuyCollateral | Upgraded


def decode(log: RawLog) -> list[Event] | None:
    """The events in one comet log (a transfer is two: out of one account, into another).

    None for a known event defimon ignores; DecodeError if the log cannot be read.
    """
    if not log.topics:
        raise DecodeError("anonymous log (no topics)")
    t0 = log.topics[0]
    if t0 == SUPPLY:
        sender, dst = _topics(log, 3)
        (amount,) = _words(log, 1)
        return [BaseChanged("supply", _address(dst), _address(sender), amount)]
    if t0 == WITHDRAW:
        src, to = _topics(log, 3)
        (amount,) = _words(log, 1)
        return [BaseChanged("withdraw", _address(src), _address(to), amount)]
    if t0 == TRANSFER:
        sender, to = _topics(log, 3)
        (amount,) = _words(log, 1)
        a, b = _address(sender), _address(to)
        # Comet pairs every Supply/Withdraw with a Transfer from/to the zero address (the
        # ERC-20 view of the supply balance); only accounts count, never the zero address.
        out: list[Event] = []
        if a != ZERO_ADDRESS:
            out.append(BaseChanged("transfer_out", a, b, amount))
        if b != ZERO_ADDRESS:
            out.append(BaseChanged("transfer_in", b, a, amount))
        return out
    if t0 == SUPPLY_COLLATERAL or t0 == WITHDRAW_COLLATERAL:
        first, second, asset = _topics(log, 4)
        (amount,) = _words(log, 1)
        if t0 == SUPPLY_COLLATERAL:  # (from, dst): dst's collateral grows
            return [
                CollateralChanged(
                    "supply_collateral", _address(second), _address(first), _address(asset), amount
                )
            ]
        return [  # (src, to): src's collateral shrinks
            CollateralChanged(
                "withdraw_collateral", _address(first), _address(second), _address(asset), amount
            )
        ]
    if t0 == TRANSFER_COLLATERAL:
        sender, to, asset = _topics(log, 4)
        (amount,) = _words(log, 1)
        a, b, token = _address(sender), _address(to), _address(asset)
        return [
            CollateralChanged("transfer_collateral_out", a, b, token, amount),
            CollateralChanged("transfer_collateral_in", b, a, token, amount),
        ]
    if t0 == ABSORB_DEBT:
        absorber, borrower = _topics(log, 3)
        paid, usd = _words(log, 2)
        return [AbsorbDebt(_address(absorber), _address(borrower), paid, usd)]
    if t0 == ABSORB_COLLATERAL:
        absorber, borrower, asset = _topics(log, 4)
        seized, usd = _words(log, 2)
        return [
            AbsorbCollateral(_address(absorber), _address(borrower), _address(asset), seized, usd)
        ]
    if t0 == BUY_COLLATERAL:
        buyer, asset = _topics(log, 3)
        base_amount, collateral_amount = _words(log, 2)
        return [BuyCollateral(_address(buyer), _address(asset), base_amount, collateral_amount)]
    if t0 == UPGRADED:
        (implementation,) = _topics(log, 2)
        _words(log, 0)
        return [Upgraded(_address(implementation))]
    if t0 in IGNORED:
        return None
    raise DecodeError(f"unknown topic {t0} for a comet")


def _adjacent(decoded: list[tuple[RawLog, list[Event]]], i: int, j: int) -> list[Event]:
    """The events of comet log j if it directly neighbours log i in the same transaction."""
    if not 0 <= j < len(decoded):
        return []
    log, other = decoded[i][0], decoded[j][0]
    if other.tx_hash != log.tx_hash or abs(other.log_index - log.log_index) != 1:
        return []
    return decoded[j][1]


def base_transfer(
    decoded: list[tuple[RawLog, list[Event]]], i: int, event: BaseChanged
) -> BaseChanged | None:
    """A base `Transfer` with the zero address on one side (log i of the block's comet logs):
    None if it is the ERC-20 mirror of the Supply, Withdraw or AbsorbDebt just before it
    (Comet emits the mirror right after its event), else the leg of a base transfer between
    accounts, with the other account as counterparty when the comet emitted both legs.

    `transferBase` emits only `Transfer(src, 0)` (if src's supply shrank) and
    `Transfer(0, dst)` (if dst's supply grew), adjacent, and no Supply or Withdraw: these
    change balances as surely as a Supply does (the reader reads both accounts' userBasic).
    A transfer that only moves borrows (src borrows more, dst repays) emits nothing at all.
    """
    for before in _adjacent(decoded, i, i - 1):
        if (
            isinstance(before, BaseChanged)
            and before.account == event.account
            and (before.kind, event.kind)
            in {("supply", "transfer_in"), ("withdraw", "transfer_out")}
        ) or (
            isinstance(before, AbsorbDebt)
            and before.borrower == event.account
            and event.kind == "transfer_in"
        ):
            return None
    # The other leg: Transfer(src, 0) is followed by Transfer(0, dst) of the same transfer.
    other = _adjacent(decoded, i, i + 1 if event.kind == "transfer_out" else i - 1)
    want = "transfer_in" if event.kind == "transfer_out" else "transfer_out"
    for leg in other:
        if isinstance(leg, BaseChanged) and leg.kind == want and leg.counterparty == ZERO_ADDRESS:
            # Transfer(src, 0) right after a Withdraw is that Withdraw's mirror, not a leg.
            if want == "transfer_out" and base_transfer(decoded, i - 1, leg) is None:
                break
            return event._replace(counterparty=leg.account)
    return event


def touched(events: list[Event]) -> tuple[set[str], set[tuple[str, str]]]:
    """Accounts whose `userBasic` and (account, asset) pairs whose `userCollateral` changed."""
    accounts: set[str] = set()
    collateral: set[tuple[str, str]] = set()
    for e in events:
        if isinstance(e, BaseChanged):
            accounts.add(e.account)
        elif isinstance(e, CollateralChanged):
            # Collateral moves flip the account's assetsIn bits: its userBasic is read too.
            accounts.add(e.account)
            collateral.add((e.account, e.asset))
        elif isinstance(e, AbsorbDebt):
            accounts.add(e.borrower)
        elif isinstance(e, AbsorbCollateral):
            accounts.add(e.borrower)
            collateral.add((e.borrower, e.asset))
    return accounts, collateral
