"""Morpho Blue 1.0.0 state (pure): markets, positions, and an account's view at a block's time.

`MorphoBlueState.step` folds one block's decoded events in log order, applying each one's
fields exactly as the contract changes its storage (`Morpho.sol`): the events carry every
amount (assets and shares as the contract rounded them, the interest and fee shares of each
accrual, a liquidation's bad debt), so the state follows `market(id)` and `position(id, user)`
without reading the chain. Two changes emit nothing and are inferred:

- the fee recipient's supply shares grow by each AccrueInterest's `feeShares` (no Supply);
- `lastUpdate` moves to the block's time at every call that accrues (supply, withdraw, borrow,
  repay, withdrawCollateral, liquidate, setFee; AccrueInterest itself), also when no
  AccrueInterest is emitted (no time elapsed, or a market without IRM). Not supplyCollateral:
  the contract skips the accrual there. A bare `accrueInterest` call on a market without IRM
  moves `lastUpdate` silently; such a market never accrues, so no balance depends on it.

The account view accrues interest to the block's own time as MorphoBalancesLib does, with the
IRM's rate from a rate model of that IRM (pure, e.g. IrmMock's) or, for an IRM without one, the
last AccrueInterest's `prevBorrowRate` (then `rate_exact` is False).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from eth_utils import keccak

from protocols.base import ZERO_ADDRESS
from protocols.journal import JournaledDict
from protocols.morpho_blue import events as ev
from protocols.morpho_blue import math as mm
from protocols.morpho_blue.events import MarketParams

# the IRM's borrowRateView for a market's stored totals (per second, WAD)
RateModel = Callable[[MarketParams, mm.MarketTotals], int]


def irm_mock_rate(params: MarketParams, totals: mm.MarketTotals) -> int:
    """IrmMock (src/mocks/IrmMock.sol): a pure function of the totals."""
    return mm.irm_mock_borrow_rate(totals)


def market_id(params: MarketParams) -> str:
    """keccak256(abi.encode(marketParams)): five static words."""
    encoded = b"".join(
        int(word, 16).to_bytes(32, "big")
        for word in (params.loan_token, params.collateral_token, params.oracle, params.irm)
    ) + params.lltv.to_bytes(32, "big")
    return "0x" + keccak(encoded).hex()


class StateError(ValueError):
    """An event that cannot apply to the state (unknown market, a balance going negative)."""


@dataclass(frozen=True, slots=True)
class Position:
    """`position(id, user)`: supply shares, borrow shares, collateral (collateral-token units)."""

    supply_shares: int = 0
    borrow_shares: int = 0
    collateral: int = 0

    def is_empty(self) -> bool:
        return self.supply_shares == 0 and self.borrow_shares == 0 and self.collateral == 0


@dataclass(frozen=True, slots=True)
class Market:
    id: str
    params: MarketParams
    totals: mm.MarketTotals
    prev_borrow_rate: int = 0  # the last AccrueInterest's (what the IRM answered then)

    @property
    def has_irm(self) -> bool:
        return self.params.irm != ZERO_ADDRESS


@dataclass(frozen=True, slots=True)
class AccountView:
    """One account in one market at a time: interest accrued to `timestamp`."""

    market_id: str
    account: str
    timestamp: int
    supply_shares: int  # the fee recipient's include the fee shares accrued since lastUpdate
    borrow_shares: int
    collateral: int
    supply_assets: int  # expectedSupplyAssets: rounded down
    borrow_assets: int  # expectedBorrowAssets: rounded up (what _isHealthy calls borrowed)
    price: int  # the oracle's price() (1e36 scale: loan units per collateral unit)
    collateral_value: int  # collateral at the price, in loan-token units (rounded down)
    max_borrow: int  # collateral_value wMulDown lltv
    health: int | None  # max_borrow / borrow_assets in WAD (rounded down); None without debt
    liquidatable: bool  # !_isHealthy: health < WAD
    rate_exact: bool  # False: the IRM has no rate model, its last prevBorrowRate was used


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a block changed: positions, and markets whose totals or fee changed (every
    account of those is worth revaluing)."""

    accounts: frozenset[tuple[str, str]]  # (market id, account)
    markets: frozenset[str]


def _sub(value: int, amount: int, what: str) -> int:
    if amount > value:
        raise StateError(f"{what} would go negative ({value} - {amount})")
    return value - amount


def apply_to_market(market: Market, event: ev.Event, timestamp: int) -> Market:
    """The market after one of its events (the contract's storage writes, in its order)."""
    t = market.totals
    if isinstance(event, ev.AccrueInterest):
        t = replace(
            t,
            total_borrow_assets=t.total_borrow_assets + event.interest,
            total_supply_assets=t.total_supply_assets + event.interest,
            total_supply_shares=t.total_supply_shares + event.fee_shares,
        )
        market = replace(market, prev_borrow_rate=event.prev_borrow_rate)
    elif isinstance(event, ev.Supply):
        t = replace(
            t,
            total_supply_shares=t.total_supply_shares + event.shares,
            total_supply_assets=t.total_supply_assets + event.assets,
        )
    elif isinstance(event, ev.Withdraw):
        t = replace(
            t,
            total_supply_shares=_sub(t.total_supply_shares, event.shares, "totalSupplyShares"),
            total_supply_assets=_sub(t.total_supply_assets, event.assets, "totalSupplyAssets"),
        )
    elif isinstance(event, ev.Borrow):
        t = replace(
            t,
            total_borrow_shares=t.total_borrow_shares + event.shares,
            total_borrow_assets=t.total_borrow_assets + event.assets,
        )
    elif isinstance(event, ev.Repay):
        t = replace(
            t,
            total_borrow_shares=_sub(t.total_borrow_shares, event.shares, "totalBorrowShares"),
            # the repaid assets may exceed the total by one (rounded up): floored at zero
            total_borrow_assets=mm.zero_floor_sub(t.total_borrow_assets, event.assets),
        )
    elif isinstance(event, ev.Liquidate):
        shares = _sub(t.total_borrow_shares, event.repaid_shares, "totalBorrowShares")
        assets = mm.zero_floor_sub(t.total_borrow_assets, event.repaid_assets)
        # bad debt (the borrower has no collateral left) is written off both sides
        t = replace(
            t,
            total_borrow_shares=_sub(shares, event.bad_debt_shares, "totalBorrowShares"),
            total_borrow_assets=_sub(assets, event.bad_debt_assets, "totalBorrowAssets"),
            total_supply_assets=_sub(
                t.total_supply_assets, event.bad_debt_assets, "totalSupplyAssets"
            ),
        )
    elif isinstance(event, ev.SetFee):
        t = replace(t, fee=event.new_fee)
    elif not isinstance(event, (ev.SupplyCollateral, ev.WithdrawCollateral)):
        raise StateError(f"{type(event).__name__} is not a market event")
    if not isinstance(event, ev.SupplyCollateral):
        # every other market call accrues first (maybe silently): lastUpdate is now
        t = replace(t, last_update=timestamp)
    return replace(market, totals=t)


def apply_to_position(position: Position, event: ev.Event) -> Position:
    """The position of the event's account (on_behalf / borrower) after the event."""
    p = position
    if isinstance(event, ev.Supply):
        return replace(p, supply_shares=p.supply_shares + event.shares)
    if isinstance(event, ev.Withdraw):
        return replace(p, supply_shares=_sub(p.supply_shares, event.shares, "supplyShares"))
    if isinstance(event, ev.Borrow):
        return replace(p, borrow_shares=p.borrow_shares + event.shares)
    if isinstance(event, ev.Repay):
        return replace(p, borrow_shares=_sub(p.borrow_shares, event.shares, "borrowShares"))
    if isinstance(event, ev.SupplyCollateral):
        return replace(p, collateral=p.collateral + event.assets)
    if isinstance(event, ev.WithdrawCollateral):
        return replace(p, collateral=_sub(p.collateral, event.assets, "collateral"))
    if isinstance(event, ev.Liquidate):
        borrow = _sub(p.borrow_shares, event.repaid_shares, "borrowShares")
        return replace(
            p,
            borrow_shares=_sub(borrow, event.bad_debt_shares, "borrowShares"),
            collateral=_sub(p.collateral, event.seized_assets, "collateral"),
        )
    raise StateError(f"{type(event).__name__} changes no account position")


def account_of(event: ev.Event) -> str | None:
    """The account whose position an event changes (None for market-only events)."""
    if isinstance(
        event,
        (ev.Supply, ev.Withdraw, ev.Borrow, ev.Repay, ev.SupplyCollateral, ev.WithdrawCollateral),
    ):
        return event.on_behalf
    if isinstance(event, ev.Liquidate):
        return event.borrower
    return None


def view_account(
    market: Market,
    position: Position,
    account: str,
    timestamp: int,
    price: int,
    borrow_rate: int,
    *,
    fee_recipient: bool = False,
    rate_exact: bool = True,
) -> AccountView:
    """The account at `timestamp` with the oracle at `price`; `borrow_rate`: the IRM's
    borrowRateView for the stored totals (unused without IRM or without elapsed time).

    For the market's fee recipient (`fee_recipient`), the fee shares the accrual would mint
    are counted in its supply: MorphoBalancesLib leaves them out (IMorpho warns of it), the
    contract credits them at the next accrual.
    """
    balances = mm.expected_market_balances(
        market.totals, timestamp, borrow_rate, has_irm=market.has_irm
    )
    supply_shares = position.supply_shares
    if fee_recipient:
        supply_shares += balances.total_supply_shares - market.totals.total_supply_shares
    supply_assets = mm.expected_supply_assets(supply_shares, balances)
    borrowed = mm.expected_borrow_assets(position.borrow_shares, balances)
    value = mm.collateral_value(position.collateral, price)
    max_borrow = mm.w_mul_down(value, market.params.lltv)
    # _isHealthy: no borrow shares is healthy (and borrowed >= 1 whenever there are shares)
    health = mm.health_factor(max_borrow, borrowed) if position.borrow_shares else None
    return AccountView(
        market_id=market.id,
        account=account,
        timestamp=timestamp,
        supply_shares=supply_shares,
        borrow_shares=position.borrow_shares,
        collateral=position.collateral,
        supply_assets=supply_assets,
        borrow_assets=borrowed,
        price=price,
        collateral_value=value,
        max_borrow=max_borrow,
        health=health,
        liquidatable=position.borrow_shares != 0 and max_borrow < borrowed,
        rate_exact=rate_exact,
    )


@dataclass(slots=True)
class MorphoBlueState:
    """One Morpho Blue contract: its markets and positions, folded block by block."""

    owner: str = ZERO_ADDRESS
    fee_recipient: str = ZERO_ADDRESS
    irms: set[str] = field(default_factory=set)
    lltvs: set[int] = field(default_factory=set)
    markets: dict[str, Market] = field(default_factory=JournaledDict)
    # (market id, account) -> position; empty positions are dropped
    positions: dict[tuple[str, str], Position] = field(default_factory=JournaledDict)
    # IRM address -> its pure rate model (IrmMock's on the devnet)
    rate_models: dict[str, RateModel] = field(default_factory=dict)

    def step(self, timestamp: int, events: Iterable[ev.Event]) -> StepResult:
        """Apply one block's events (in log order) at the block's `timestamp`.

        A StateError (an event the state cannot follow) leaves the block half applied: the
        state no longer mirrors the contract, and the caller must treat it as fatal.
        """
        accounts: set[tuple[str, str]] = set()
        markets: set[str] = set()
        for event in events:
            if isinstance(event, ev.CreateMarket):
                totals = mm.MarketTotals(last_update=timestamp)
                self.markets[event.id] = Market(event.id, event.params, totals)
                markets.add(event.id)
            elif isinstance(event, ev.SetOwner):
                self.owner = event.new_owner
            elif isinstance(event, ev.SetFeeRecipient):
                self.fee_recipient = event.new_fee_recipient
            elif isinstance(event, ev.EnableIrm):
                self.irms.add(event.irm)
            elif isinstance(event, ev.EnableLltv):
                self.lltvs.add(event.lltv)
            elif isinstance(event, (ev.FlashLoan, ev.SetAuthorization, ev.IncrementNonce)):
                pass  # no balance moves
            else:
                market = self.markets.get(event.id)
                if market is None:
                    raise StateError(f"{type(event).__name__} for unknown market {event.id}")
                after = apply_to_market(market, event, timestamp)
                if after.totals != market.totals:
                    markets.add(event.id)
                self.markets[event.id] = after
                if isinstance(event, ev.AccrueInterest):
                    if event.fee_shares:
                        # the fee recipient's shares grow without a Supply event
                        key = (event.id, self.fee_recipient)
                        held = self.position(*key)
                        fee = event.fee_shares
                        self._put(key, replace(held, supply_shares=held.supply_shares + fee))
                        accounts.add(key)
                    continue
                account = account_of(event)
                if account is not None:
                    key = (event.id, account)
                    self._put(key, apply_to_position(self.position(*key), event))
                    accounts.add(key)
        return StepResult(frozenset(accounts), frozenset(markets))

    def _put(self, key: tuple[str, str], position: Position) -> None:
        if position.is_empty():
            self.positions.pop(key, None)
        else:
            self.positions[key] = position

    def position(self, market: str, account: str) -> Position:
        return self.positions.get((market, account), Position())

    def accounts(self, market: str) -> Iterator[str]:
        """The accounts with a non-empty position in `market`."""
        return (account for (held_in, account) in self.positions if held_in == market)

    def borrow_rate(self, market: Market) -> tuple[int, bool]:
        """The IRM's rate for the market's stored totals, and whether it is exact."""
        model = self.rate_models.get(market.params.irm)
        if model is None:
            return market.prev_borrow_rate, False
        return model(market.params, market.totals), True

    def expected_balances(self, market: str, timestamp: int) -> mm.MarketTotals:
        """MorphoBalancesLib.expectedMarketBalances at `timestamp`."""
        held = self.markets[market]
        rate, _ = self.borrow_rate(held)
        return mm.expected_market_balances(held.totals, timestamp, rate, has_irm=held.has_irm)

    def view(self, market: str, account: str, timestamp: int, price: int) -> AccountView:
        """The account at a block's `timestamp`, with the market oracle's `price()`."""
        held = self.markets[market]
        rate, exact = self.borrow_rate(held)
        return view_account(
            held,
            self.position(market, account),
            account,
            timestamp,
            price,
            rate,
            fee_recipient=account == self.fee_recipient,
            rate_exact=exact,
        )
