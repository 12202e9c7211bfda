"""A seeded lending market on the devnet's Aave V3: supplies, borrows near the limit, repays,
withdrawals, collateral switches, eMode, aToken transfers, moving prices and liquidations.

Wallets get fixed roles from their position in `deployment.wallets`: the last one is the
liquidator, the others cycle through supplier, borrower and eMode user. Borrowers take
90-99.5% of what they may borrow, so their health factor starts at about LT/LTV (1.03 for WETH)
and a 10-15% move of their collateral's price makes them liquidatable. Decisions depend only
on the seed and the chain state; every transaction is estimated first, so one that would
revert is logged and skipped.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from random import Random
from typing import Any

from devnet.aave import EMODE_ASSETS, EMODE_CATEGORY, AaveDeployment, AaveReserve, feed_answer
from devnet.contracts import (
    AAVE_BORROW,
    AAVE_GET_USER_ACCOUNT_DATA,
    AAVE_LIQUIDATION_CALL,
    AAVE_REPAY,
    AAVE_SET_USE_AS_COLLATERAL,
    AAVE_SET_USER_EMODE,
    AAVE_SUPPLY,
    AAVE_WITHDRAW,
    BALANCE_TRANSFER_TOPIC,
    BORROW_TOPIC,
    COLLATERAL_DISABLED_TOPIC,
    COLLATERAL_ENABLED_TOPIC,
    DATA_PROVIDER_USER_RESERVE,
    ERC20_BALANCE_OF,
    ERC20_TRANSFER,
    FEED_LATEST_ANSWER,
    INTEREST_RATE_VARIABLE,
    LIQUIDATION_CALL_TOPIC,
    MAX_UINT256,
    RATIO_GET_RATE,
    SUPPLY_TOPIC,
    USER_EMODE_SET_TOPIC,
)
from devnet.deploy import ALL_TOKEN_SPECS, Deployment
from devnet.loop import run_every
from devnet.oracles import (
    CAPO_ADAPTER,
    CHAINLINK_PROXY,
    LST_SYMBOL,
    NO_CAP,
    RATIO_UNIT,
    set_answer_tx,
    set_cap_tx,
    set_ratio_tx,
    swap_aggregator,
)
from devnet.rpc import RpcClient
from devnet.txs import send_estimated

log = logging.getLogger("defimon.devnet")

WAD = 10**18
BASE_UNIT = 10**8  # Aave's base currency: USD with 8 decimals
# roles of the non-liquidator wallets, in order, repeated
ROLE_PATTERN = ("supplier", "borrower", "borrower", "supplier", "borrower", "emode")
# borrower i posts COLLATERAL_CYCLE[i] and borrows one of DEBT_CHOICES[collateral]
COLLATERAL_CYCLE = ("WETH", "WBTC", "WETH", "USDC", "WETH", "DAI", "WBTC", "WETH", "USDC")
# with an LST reserve (the mainnet layout), two borrowers in five post it: a wstETH-collateral
# WETH-debt loop is the position an unread adapter or a frozen WETH price gets most wrong
LST_COLLATERAL_CYCLE = (LST_SYMBOL, "WETH", "WBTC", LST_SYMBOL, "USDC", "WETH", "DAI", "WBTC")
DEBT_CHOICES: dict[str, tuple[str, ...]] = {
    "WETH": ("USDC", "DAI"),
    "WBTC": ("USDC", "WETH"),
    "USDC": ("WETH",),
    "DAI": ("WETH", "WBTC"),
    LST_SYMBOL: ("WETH", "USDC"),
}
EMODE_PAIRS = (("USDC", "DAI"), ("DAI", "USDC"))  # eMode user j: (collateral, debt) = [j % 2]
BORROW_SHARE_BPS = (9000, 9950)  # of the available borrows, for a borrow near the limit
EMODE_BORROW_SHARE_BPS = (9000, 9800)  # eMode's LT/LTV is only 1.005, so keep a little room
LIQUIDITY_SHARE_BPS = 9000  # never borrow more than this share of a reserve's cash
MIN_BORROW_USD = 50
# (action, weight) for step()
ACTIONS: tuple[tuple[str, float], ...] = (
    ("supply", 3.0),
    ("borrow", 3.0),
    ("repay", 2.0),
    ("withdraw", 1.5),
    ("collateral", 1.0),
    ("emode", 1.5),
    ("a_token_transfer", 1.0),
    ("erc20_transfer", 1.0),
)
ACTIONS_PER_STEP = (3, 6)
ACTIONS_PER_TICK = (2, 4)
# feed random walk per drift, in log-price: standard deviation and pull back to the reference
VOLATILITY = {"WETH": 0.006, "WBTC": 0.005, "USDC": 0.0003, "DAI": 0.0005}
REVERSION = {"WETH": 0.03, "WBTC": 0.03, "USDC": 0.3, "DAI": 0.3}
SHOCK_PROBABILITY = 0.04  # per tick
# (symbol, low %, high %, weight): mostly crashes of the volatile collateral; a DAI depeg hits
# the stablecoin eMode loops; a WETH pump hits those who borrowed WETH against stablecoins
SHOCKS: tuple[tuple[str, float, float, float], ...] = (
    ("WETH", -18.0, -8.0, 4.0),
    ("WBTC", -15.0, -8.0, 2.0),
    ("DAI", -4.0, -2.0, 1.0),
    ("WETH", 8.0, 15.0, 1.5),
)
SECONDS_PER_TICK = 3600
# the mainnet layout's oracle events, by tick number (1 = the first tick): WETH's proxy gets a
# new aggregator; wstETH's cap is set just under its price, then released; its ratio grows
AGGREGATOR_SWAP_TICK = 3
PRICE_CAP_TICKS = (2, 6)  # set at the first, released at the second
PRICE_CAP_BELOW_BPS = 50  # the cap is set 0.5% under the adapter's uncapped price
RATIO_EVERY_TICKS = 2
RATIO_GROWTH_PPM = (5, 30)  # per move, like a rebase of staking rewards (0.5-3 bp)


@dataclass(frozen=True, slots=True)
class _Holding:
    a_balance: int  # aToken balance, with interest
    variable_debt: int  # with interest
    collateral: bool  # usage as collateral enabled


@dataclass(frozen=True, slots=True)
class _UserState:
    collateral_base: int  # USD, 8 decimals
    debt_base: int
    available_base: int  # what the user may still borrow
    ltv: int  # bps, weighted over the collateral
    health_factor: int  # wad; 2**256-1 without debt
    holdings: dict[str, _Holding]  # by symbol
    cash: dict[str, int]  # underlying held by each reserve's aToken: what can be borrowed


class LendingSimulator:
    """Drives the deployment's Aave market from its wallets; deterministic for a seed and chain."""

    def __init__(self, rpc_url: str, deployment: Deployment, seed: int = 11) -> None:
        if deployment.aave is None:
            raise ValueError("the deployment has no Aave market (deploy with aave=True)")
        if len(deployment.wallets) < 4:
            raise ValueError("the lending simulator needs at least 4 wallets")
        self.deployment = deployment
        self.aave: AaveDeployment = deployment.aave
        self._rpc = RpcClient(rpc_url)
        self._rng = Random(seed)
        # RLock: tick() calls the other public methods, and run() may share the object
        self._lock = threading.RLock()
        self.symbols = list(self.aave.reserves)
        self.liquidator = deployment.wallets[-1]
        self.users = deployment.wallets[:-1]
        roles = {
            user: ROLE_PATTERN[index % len(ROLE_PATTERN)] for index, user in enumerate(self.users)
        }
        self.suppliers = [user for user in self.users if roles[user] == "supplier"]
        self.borrowers = [user for user in self.users if roles[user] == "borrower"]
        self.emode_users = [user for user in self.users if roles[user] == "emode"]
        cycle = LST_COLLATERAL_CYCLE if LST_SYMBOL in self.aave.reserves else COLLATERAL_CYCLE
        self._collateral_of = {
            user: cycle[index % len(cycle)] for index, user in enumerate(self.borrowers)
        }
        self._emode_pair = {
            user: EMODE_PAIRS[index % len(EMODE_PAIRS)]
            for index, user in enumerate(self.emode_users)
        }
        self.sources = self.aave.sources
        # reserves priced by an adapter: their answer follows their inputs, it is not set
        self._derived = [s for s in self.symbols if self.sources[s].kind == CAPO_ADAPTER]
        self._reference = {
            symbol: feed_answer(ALL_TOKEN_SPECS[symbol][1]) for symbol in self.symbols
        }
        self._answers = self._read_answers(self.symbols)
        self._ticks = 0
        self._accounts: set[str] = set()
        self._emode: dict[str, int] = {}
        self._collateral_off: set[tuple[str, str]] = set()  # (user, symbol) switched off
        self._liquidations = 0
        self._bootstrapped = False
        self._sync()

    def close(self) -> None:
        self._rpc.close()

    # -- public API -----------------------------------------------------------------------

    def accounts(self) -> list[str]:
        """Every wallet that ever supplied, borrowed or received aTokens (sorted)."""
        with self._lock:
            return sorted(self._accounts)

    def prices(self) -> dict[str, int]:
        """The sources' current answers (USD, 8 decimals) by symbol: what AaveOracle reads."""
        with self._lock:
            return dict(self._answers)

    def step(self) -> list[int]:
        """A few random lending actions (a bootstrap of positions the first time); the blocks."""
        with self._lock:
            blocks = [] if self._bootstrapped else self._bootstrap()
            self._bootstrapped = True
            return blocks + self._actions(self._rng.randint(*ACTIONS_PER_STEP))

    def drift_prices(self) -> list[int]:
        """Move every settable source (feed or Chainlink aggregator) one step of a
        mean-reverting random walk; the blocks mined. An adapter's price follows its base."""
        with self._lock:
            blocks = []
            for symbol in self.symbols:
                if symbol in self._derived:
                    continue
                current = math.log(self._answers[symbol])
                pull = REVERSION[symbol] * (math.log(self._reference[symbol]) - current)
                answer = round(math.exp(current + pull + self._rng.gauss(0, VOLATILITY[symbol])))
                block = self._set_answer(symbol, answer)
                if block is not None:
                    blocks.append(block)
            return blocks

    def shock(self, symbol: str, pct: float) -> int | None:
        """Move one feed by `pct` percent at once (e.g. shock("WETH", -15)); the block."""
        with self._lock:
            if symbol in self._derived:
                raise ValueError(f"{symbol} is priced by an adapter: shock its base instead")
            answer = round(self._answers[symbol] * (1 + pct / 100))
            log.info("price shock: %s %+.1f%% to $%.4f", symbol, pct, answer / BASE_UNIT)
            return self._set_answer(symbol, answer)

    def set_price(self, symbol: str, answer: int) -> int | None:
        """Make AaveOracle answer exactly `answer` for `symbol` (8 decimals): a feed or a
        Chainlink aggregator is set to it; an adapter is capped at it (its ratio raised first
        if its uncapped price is below; move its base before it). The last block."""
        with self._lock:
            if symbol not in self._derived:
                return self._set_answer(symbol, answer)
            self._answers.update(self._read_answers(self.symbols))  # after a revert, say
            if answer > self.uncapped_price(symbol):
                # Raise the ratio until the uncapped price reaches it; the cap then binds.
                base = self._answers[self.sources[symbol].base_symbol or ""]
                self.move_ratio(symbol, -(-answer * RATIO_UNIT // base))
            return self.set_price_cap(symbol, answer)

    def pass_time(self, seconds: int = SECONDS_PER_TICK) -> int:
        """Advance the chain's clock and mine a block, so interest accrues; the block."""
        with self._lock:
            self._rpc.call("evm_increaseTime", [seconds])
            self._rpc.call("evm_mine", [])
            return int(self._rpc.call("eth_blockNumber"), 16)

    def unhealthy_accounts(self) -> list[str]:
        """Accounts with debt whose health factor is below 1."""
        with self._lock:
            candidates = [a for a in sorted(self._accounts) if a != self.liquidator]
            answers = self._rpc.batch(
                self._call(self.aave.pool, AAVE_GET_USER_ACCOUNT_DATA.encode(account))
                for account in candidates
            )
            unhealthy = []
            for account, answer in zip(candidates, answers, strict=True):
                _, debt, _, _, _, health_factor = AAVE_GET_USER_ACCOUNT_DATA.decode(answer)
                if debt > 0 and health_factor < WAD:
                    unhealthy.append(account)
            return unhealthy

    def liquidate_unhealthy(self) -> list[int]:
        """liquidationCall on every account with a health factor below 1; the blocks mined.

        The liquidator repays the largest debt (all it may, or half of that debt) and takes
        the largest collateral, alternately as aTokens and as the underlying.
        """
        with self._lock:
            blocks = []
            for account in self.unhealthy_accounts():
                state = self._user_state(account)
                debts = [s for s in self.symbols if state.holdings[s].variable_debt > 0]
                collaterals = [
                    s
                    for s in self.symbols
                    if state.holdings[s].a_balance > 0 and state.holdings[s].collateral
                ]
                if not debts or not collaterals:
                    continue
                debt = max(debts, key=lambda s: self._usd(s, state.holdings[s].variable_debt))
                collateral = max(
                    collaterals, key=lambda s: self._usd(s, state.holdings[s].a_balance)
                )
                receive_a_token = self._liquidations % 2 == 1
                amount = (
                    MAX_UINT256
                    if self._rng.random() < 0.5
                    else state.holdings[debt].variable_debt // 2
                )
                data = AAVE_LIQUIDATION_CALL.encode(
                    self.aave.reserves[collateral].asset,
                    self.aave.reserves[debt].asset,
                    account,
                    amount,
                    receive_a_token,
                )
                what = (
                    f"liquidate {account} (HF {state.health_factor / WAD:.4f}): "
                    f"{debt} debt for {collateral}{' aTokens' if receive_a_token else ''}"
                )
                receipt = self._send(self.liquidator, self.aave.pool, data, what)
                if receipt is None:
                    continue
                blocks.append(int(receipt["blockNumber"], 16))
                if any(entry["topics"][0] == LIQUIDATION_CALL_TOPIC for entry in receipt["logs"]):
                    self._liquidations += 1
                    log.info("%s", what)
            return blocks

    def tick(self, seconds: int = SECONDS_PER_TICK) -> list[int]:
        """One round of the demo loop: a few actions, a price drift, sometimes a shock,
        `seconds` of time passing, then liquidations. Returns the blocks mined."""
        with self._lock:
            rng = self._rng
            blocks = [] if self._bootstrapped else self._bootstrap()
            self._bootstrapped = True
            blocks += self._actions(rng.randint(*ACTIONS_PER_TICK))
            blocks += self.drift_prices()
            if rng.random() < SHOCK_PROBABILITY:
                symbol, low, high, _ = rng.choices(SHOCKS, [s[3] for s in SHOCKS])[0]
                block = self.shock(symbol, rng.uniform(low, high))
                if block is not None:
                    blocks.append(block)
            blocks += self._oracle_events()
            blocks.append(self.pass_time(seconds))
            blocks += self.liquidate_unhealthy()
            return blocks

    def swap_aggregator(self, symbol: str = "WETH") -> list[int]:
        """Point `symbol`'s Chainlink proxy at a new aggregator (a new phase, no proxy event),
        which starts at the current answer; the blocks mined."""
        with self._lock:
            source = self.sources[symbol]
            first = int(self._rpc.call("eth_blockNumber"), 16) + 1
            aggregator = swap_aggregator(
                self._rpc, self.deployment.deployer, source, self._answers[symbol]
            )
            last = int(self._rpc.call("eth_blockNumber"), 16)
            log.info("%s proxy %s now reads aggregator %s", symbol, source.address, aggregator)
            return list(range(first, last + 1))

    def uncapped_price(self, symbol: str = LST_SYMBOL) -> int:
        """An adapter's price without its cap: base answer x ratio / 1e18 (8 decimals)."""
        with self._lock:
            source = self.sources[symbol]
            assert source.base_symbol is not None
            return self._answers[source.base_symbol] * self._ratio(symbol) // RATIO_UNIT

    def set_price_cap(self, symbol: str = LST_SYMBOL, cap: int | None = None) -> int | None:
        """Set an adapter's cap (default: PRICE_CAP_BELOW_BPS under its uncapped price, so it
        binds at once); the block."""
        with self._lock:
            if cap is None:
                cap = self.uncapped_price(symbol) * (10_000 - PRICE_CAP_BELOW_BPS) // 10_000
            tx = set_cap_tx(self.deployment.deployer, self.sources[symbol], cap)
            shown = "released" if cap == NO_CAP else f"${cap / BASE_UNIT:,.4f}"
            return self._send_oracle_tx(tx.to, tx.data, f"{symbol} price cap {shown}")

    def release_price_cap(self, symbol: str = LST_SYMBOL) -> int | None:
        """Lift an adapter's cap (type(int256).max never binds); the block."""
        return self.set_price_cap(symbol, NO_CAP)

    def move_ratio(self, symbol: str = LST_SYMBOL, ratio: int | None = None) -> int | None:
        """Set an adapter's ratio (default: grown by RATIO_GROWTH_PPM, as a rebase); the block."""
        with self._lock:
            if ratio is None:
                ratio = self._ratio(symbol)
                ratio += ratio * self._rng.randint(*RATIO_GROWTH_PPM) // 1_000_000
            tx = set_ratio_tx(self.deployment.deployer, self.sources[symbol], ratio)
            return self._send_oracle_tx(tx.to, tx.data, f"{symbol} ratio to {ratio / RATIO_UNIT}")

    def _oracle_events(self) -> list[int]:
        """The mainnet layout's scheduled oracle changes for this tick (none for "feeds")."""
        self._ticks += 1
        blocks: list[int | None] = []
        proxies = [s for s in self.symbols if self.sources[s].kind == CHAINLINK_PROXY]
        if self._ticks == AGGREGATOR_SWAP_TICK:
            for symbol in proxies:
                blocks += self.swap_aggregator(symbol)
        for symbol in self._derived:
            if self._ticks % RATIO_EVERY_TICKS == 0:
                blocks.append(self.move_ratio(symbol))
            if self._ticks == PRICE_CAP_TICKS[0]:
                blocks.append(self.set_price_cap(symbol))
            elif self._ticks == PRICE_CAP_TICKS[1]:
                blocks.append(self.release_price_cap(symbol))
        return [block for block in blocks if block is not None]

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """tick() every `interval` s until `stop` is set; RPC errors are logged, not raised."""
        run_every(self.tick, stop, interval, "lending simulator")

    # -- actions --------------------------------------------------------------------------

    def _bootstrap(self) -> list[int]:
        """Liquidity in every reserve, every borrower near its limit, every eMode user looped."""
        rng = self._rng
        blocks: list[int | None] = []
        for supplier in self.suppliers:
            for symbol in self.symbols:
                blocks.append(self._supply(supplier, symbol, 10 ** rng.uniform(5.5, 6.3)))
        for borrower in self.borrowers:
            blocks.append(
                self._supply(borrower, self._collateral_of[borrower], 10 ** rng.uniform(4.5, 5.5))
            )
            blocks.append(self._borrow(borrower))
        for user in self.emode_users:
            blocks.append(self._emode_action(user))  # switches eMode on
            blocks.append(
                self._supply(user, self._emode_pair[user][0], 10 ** rng.uniform(4.5, 5.5))
            )
            blocks.append(self._emode_action(user, borrow=True))
        return [block for block in blocks if block is not None]

    def _actions(self, count: int) -> list[int]:
        rng = self._rng
        names = [name for name, _ in ACTIONS]
        weights = [weight for _, weight in ACTIONS]
        blocks = []
        for _ in range(count):
            kind = rng.choices(names, weights)[0]
            if kind == "supply":
                user = rng.choice(self.suppliers + self.borrowers)
                if user in self._collateral_of:
                    block = self._supply(user, self._collateral_of[user], 10 ** rng.uniform(3.5, 5))
                else:
                    block = self._supply(user, rng.choice(self.symbols), 10 ** rng.uniform(4, 6))
            elif kind == "borrow":
                block = self._borrow(rng.choice(self.borrowers))
            elif kind == "repay":
                block = self._repay(rng.choice(self.borrowers + self.emode_users))
            elif kind == "withdraw":
                block = self._withdraw(rng.choice(self.suppliers + self.borrowers))
            elif kind == "collateral":
                block = self._switch_collateral()
            elif kind == "emode":
                block = (
                    self._emode_action(rng.choice(self.emode_users)) if self.emode_users else None
                )
            elif kind == "a_token_transfer":
                block = self._a_token_transfer()
            else:
                block = self._erc20_transfer()
            if block is not None:
                blocks.append(block)
        return blocks

    def _supply(self, user: str, symbol: str, usd: float) -> int | None:
        amount = self._amount(symbol, usd)
        data = AAVE_SUPPLY.encode(self.aave.reserves[symbol].asset, amount, user, 0)
        return self._send_block(user, self.aave.pool, data, f"{user} supplies ${usd:,.0f} {symbol}")

    def _borrow(self, user: str) -> int | None:
        """Borrow 90-99.5% of what `user` may, or add collateral when there is little room."""
        rng = self._rng
        state = self._user_state(user)
        collateral = self._collateral_of[user]
        if state.available_base < MIN_BORROW_USD * BASE_UNIT:
            return self._supply(user, collateral, 10 ** rng.uniform(3.5, 5))
        symbol = rng.choice(DEBT_CHOICES[collateral])
        return self._borrow_near_limit(user, symbol, state, BORROW_SHARE_BPS)

    def _borrow_near_limit(
        self, user: str, symbol: str, state: _UserState, share_bps: tuple[int, int]
    ) -> int | None:
        reserve = self.aave.reserves[symbol]
        share = self._rng.randint(*share_bps)
        amount = (
            state.available_base * share // 10_000 * 10**reserve.decimals // self._answers[symbol]
        )
        amount = min(amount, state.cash[symbol] * LIQUIDITY_SHARE_BPS // 10_000)
        if self._usd(symbol, amount) < MIN_BORROW_USD:
            return None
        data = AAVE_BORROW.encode(reserve.asset, amount, INTEREST_RATE_VARIABLE, 0, user)
        what = f"{user} borrows {share / 100:.1f}% of its limit in {symbol}"
        return self._send_block(user, self.aave.pool, data, what)

    def _repay(self, user: str) -> int | None:
        rng = self._rng
        state = self._user_state(user)
        debts = [s for s in self.symbols if state.holdings[s].variable_debt > 0]
        if not debts:
            return None
        symbol = rng.choice(debts)
        debt = state.holdings[symbol].variable_debt
        # type(uint256).max repays the whole debt, interest up to the block included
        full = rng.random() < 0.35
        amount = MAX_UINT256 if full else debt * rng.randint(20, 70) // 100
        data = AAVE_REPAY.encode(
            self.aave.reserves[symbol].asset, amount, INTEREST_RATE_VARIABLE, user
        )
        what = f"{user} repays {'all' if full else 'part'} of its {symbol} debt"
        return self._send_block(user, self.aave.pool, data, what)

    def _withdraw(self, user: str) -> int | None:
        rng = self._rng
        state = self._user_state(user)
        held = [s for s in self.symbols if state.holdings[s].a_balance > 0]
        if not held:
            return None
        symbol = rng.choice(held)
        holding = state.holdings[symbol]
        amount = holding.a_balance * rng.randint(10, 50) // 100
        if state.debt_base == 0:
            if rng.random() < 0.3:
                amount = MAX_UINT256  # everything, interest included
        elif holding.collateral and state.ltv > 0:
            # keep the position within its LTV: give up at most half of the collateral value
            # the available borrows stand for
            spare_base = state.available_base * 10_000 // state.ltv // 2
            amount = min(amount, self._amount_of_base(symbol, spare_base))
        if amount == 0:
            return None
        data = AAVE_WITHDRAW.encode(self.aave.reserves[symbol].asset, amount, user)
        what = f"{user} withdraws {'all' if amount == MAX_UINT256 else 'part'} of its {symbol}"
        return self._send_block(user, self.aave.pool, data, what)

    def _switch_collateral(self) -> int | None:
        """Switch a supplier's collateral off, or one that was switched off back on."""
        rng = self._rng
        if self._collateral_off and rng.random() < 0.6:
            user, symbol = rng.choice(sorted(self._collateral_off))
            if self._user_state(user).holdings[symbol].a_balance == 0:
                self._collateral_off.discard((user, symbol))  # withdrawn or liquidated meanwhile
                return None
            enable = True
        else:
            user = rng.choice(self.suppliers)
            state = self._user_state(user)
            enabled = [
                s
                for s in self.symbols
                if state.holdings[s].a_balance > 0 and state.holdings[s].collateral
            ]
            if not enabled:
                return None
            symbol, enable = rng.choice(enabled), False
        data = AAVE_SET_USE_AS_COLLATERAL.encode(self.aave.reserves[symbol].asset, enable)
        what = f"{user} switches {symbol} collateral {'on' if enable else 'off'}"
        return self._send_block(user, self.aave.pool, data, what)

    def _emode_action(self, user: str, *, borrow: bool = False) -> int | None:
        """Enter eMode, then loop stablecoins: supply one, borrow the other near the limit."""
        if self._emode.get(user, 0) != EMODE_CATEGORY:
            # eMode refuses a user with debt outside the category (e.g. after generate_history)
            state = self._user_state(user)
            for symbol in self.symbols:
                if symbol not in EMODE_ASSETS and state.holdings[symbol].variable_debt > 0:
                    asset = self.aave.reserves[symbol].asset
                    data = AAVE_REPAY.encode(asset, MAX_UINT256, INTEREST_RATE_VARIABLE, user)
                    what = f"{user} repays its {symbol} debt to enter eMode"
                    return self._send_block(user, self.aave.pool, data, what)
            data = AAVE_SET_USER_EMODE.encode(EMODE_CATEGORY)
            return self._send_block(user, self.aave.pool, data, f"{user} enters eMode")
        collateral, debt = self._emode_pair[user]
        state = self._user_state(user)
        if not borrow and (
            state.available_base < MIN_BORROW_USD * BASE_UNIT or self._rng.random() < 0.3
        ):
            return self._supply(user, collateral, 10 ** self._rng.uniform(4, 5.3))
        return self._borrow_near_limit(user, debt, state, EMODE_BORROW_SHARE_BPS)

    def _a_token_transfer(self) -> int | None:
        rng = self._rng
        sender = rng.choice(self.suppliers)
        state = self._user_state(sender)
        held = [s for s in self.symbols if state.holdings[s].a_balance > 0]
        if not held:
            return None
        symbol = rng.choice(held)
        amount = state.holdings[symbol].a_balance * rng.randint(5, 30) // 100
        receiver = rng.choice([user for user in self.users if user != sender])
        reserve = self.aave.reserves[symbol]
        what = f"{sender} sends a{symbol} to {receiver}"
        return self._send_block(
            sender, reserve.a_token, ERC20_TRANSFER.encode(receiver, amount), what
        )

    def _erc20_transfer(self) -> int | None:
        rng = self._rng
        sender = rng.choice(self.users)
        receiver = rng.choice([user for user in self.users if user != sender])
        symbol = rng.choice(self.symbols)
        amount = self._amount(symbol, 10 ** rng.uniform(2, 4))
        data = ERC20_TRANSFER.encode(receiver, amount)
        what = f"{sender} sends {symbol} to {receiver}"
        return self._send_block(sender, self.aave.reserves[symbol].asset, data, what)

    def _set_answer(self, symbol: str, answer: int) -> int | None:
        answer = max(1, answer)
        tx = set_answer_tx(self._rpc, self.deployment.deployer, self.sources[symbol], answer)
        what = f"{symbol} {self.sources[symbol].kind} to ${answer / BASE_UNIT:,.4f}"
        return self._send_oracle_tx(tx.to, tx.data, what)

    def _send_oracle_tx(self, to: str | None, data: str, what: str) -> int | None:
        """A price-moving transaction from the deployer; then the answers are read again (an
        adapter's follows its base, ratio and cap). The block, or None if it failed."""
        assert to is not None
        receipt = self._send(self.deployment.deployer, to, data, what)
        if receipt is None or receipt["status"] != "0x1":
            return None
        self._answers.update(self._read_answers(self.symbols))
        return int(receipt["blockNumber"], 16)

    def _ratio(self, symbol: str) -> int:
        provider = self.sources[symbol].ratio_provider
        assert provider is not None
        return int(
            RATIO_GET_RATE.decode(self._rpc.call(*self._call(provider, RATIO_GET_RATE.encode())))[0]
        )

    # -- chain access ---------------------------------------------------------------------

    def _usd(self, symbol: str, amount: int) -> float:
        decimals = self.aave.reserves[symbol].decimals
        return amount * self._answers[symbol] / BASE_UNIT / 10**decimals

    def _amount(self, symbol: str, usd: float) -> int:
        decimals = self.aave.reserves[symbol].decimals
        return int(usd * BASE_UNIT * 10**decimals / self._answers[symbol])

    def _amount_of_base(self, symbol: str, base: int) -> int:
        return base * 10 ** self.aave.reserves[symbol].decimals // self._answers[symbol]

    @staticmethod
    def _call(to: str, data: str) -> tuple[str, list[Any]]:
        return "eth_call", [{"to": to, "data": data}, "latest"]

    def _user_state(self, user: str) -> _UserState:
        reserves: list[AaveReserve] = [self.aave.reserves[s] for s in self.symbols]
        calls = [self._call(self.aave.pool, AAVE_GET_USER_ACCOUNT_DATA.encode(user))]
        calls += [
            self._call(self.aave.data_provider, DATA_PROVIDER_USER_RESERVE.encode(r.asset, user))
            for r in reserves
        ]
        calls += [self._call(r.asset, ERC20_BALANCE_OF.encode(r.a_token)) for r in reserves]
        answers = self._rpc.batch(calls)
        collateral, debt, available, _, ltv, health_factor = AAVE_GET_USER_ACCOUNT_DATA.decode(
            answers[0]
        )
        holdings = {}
        for symbol, answer in zip(self.symbols, answers[1 : 1 + len(reserves)], strict=True):
            fields = DATA_PROVIDER_USER_RESERVE.decode(answer)
            holdings[symbol] = _Holding(fields[0], fields[2], fields[8])
        cash = {
            symbol: ERC20_BALANCE_OF.decode(answer)[0]
            for symbol, answer in zip(self.symbols, answers[1 + len(reserves) :], strict=True)
        }
        return _UserState(collateral, debt, available, ltv, health_factor, holdings, cash)

    def _read_answers(self, symbols: list[str]) -> dict[str, int]:
        """latestAnswer() of each symbol's source: a feed, a Chainlink proxy and an adapter
        all have it."""
        answers = self._rpc.batch(
            self._call(self.sources[symbol].address, FEED_LATEST_ANSWER.encode())
            for symbol in symbols
        )
        return {
            symbol: FEED_LATEST_ANSWER.decode(answer)[0]
            for symbol, answer in zip(symbols, answers, strict=True)
        }

    def _send(self, sender: str, to: str, data: str, what: str) -> dict[str, Any] | None:
        receipt = send_estimated(self._rpc, sender, to, data, what)
        if receipt is not None and receipt["status"] == "0x1":
            self._apply_logs(receipt["logs"])
            log.debug("%s in block %d", what, int(receipt["blockNumber"], 16))
        return receipt

    def _send_block(self, sender: str, to: str, data: str, what: str) -> int | None:
        receipt = self._send(sender, to, data, what)
        return None if receipt is None else int(receipt["blockNumber"], 16)

    def _apply_logs(self, logs: list[dict[str, Any]]) -> None:
        """Follow the accounts, eMode and collateral switches from the Pool and aToken events."""
        pool = self.aave.pool
        a_tokens = {reserve.a_token: symbol for symbol, reserve in self.aave.reserves.items()}
        for entry in logs:
            address, topics = entry["address"].lower(), entry["topics"]
            topic = topics[0]
            if address in a_tokens and topic == BALANCE_TRANSFER_TOPIC:
                self._accounts.add("0x" + topics[2][-40:])
            elif address != pool:
                continue
            elif topic in (SUPPLY_TOPIC, BORROW_TOPIC):
                self._accounts.add("0x" + topics[2][-40:])  # onBehalfOf
            elif topic == USER_EMODE_SET_TOPIC:
                self._emode["0x" + topics[1][-40:]] = int(entry["data"][2:66], 16)
            elif topic in (COLLATERAL_ENABLED_TOPIC, COLLATERAL_DISABLED_TOPIC):
                asset = "0x" + topics[1][-40:]
                key = ("0x" + topics[2][-40:], self.aave.reserve_by_asset(asset)[0])
                if topic == COLLATERAL_DISABLED_TOPIC:
                    self._collateral_off.add(key)
                else:
                    self._collateral_off.discard(key)

    def _sync(self) -> None:
        """Pick up the accounts and eMode users that already exist (e.g. from generate_history)."""
        logs = self._rpc.call(
            "eth_getLogs",
            [
                {
                    "address": [self.aave.pool, *(r.a_token for r in self.aave.reserves.values())],
                    "topics": [
                        [
                            SUPPLY_TOPIC,
                            BORROW_TOPIC,
                            BALANCE_TRANSFER_TOPIC,
                            USER_EMODE_SET_TOPIC,
                            COLLATERAL_ENABLED_TOPIC,
                            COLLATERAL_DISABLED_TOPIC,
                        ]
                    ],
                    "fromBlock": hex(self.deployment.start_block),
                    "toBlock": "latest",
                }
            ],
        )
        self._apply_logs(logs)
        if self._accounts:
            log.info("lending simulator found %d existing accounts", len(self._accounts))
