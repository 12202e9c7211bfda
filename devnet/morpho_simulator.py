"""A seeded Morpho Blue market on the devnet: lenders, borrowers near their limit, a price that
follows the rest of the devnet, and liquidations (partial, or with bad debt after a large drop).

Wallets get fixed roles: the Morpho simulator takes the MORPHO_WALLETS wallets just before the
last one (Aave's liquidator); the last of those is Morpho's liquidator, the others cycle
through lender, borrower, borrower, borrower. Every wallet is shared with the Uniswap simulator
and the Aave one, which is safe because DevnetSimulator runs them in one thread and every
transaction here is mined (automine, or a block of its own) before the next: the node's
pending nonce is always the right one.

Each tick: the OracleMock follows WETH's price in USDC (Aave's oracle, WETH / USDC: it moves
with the feeds' drift and shocks; without Aave, a mean-reverting walk with Aave's parameters),
the accounts that became liquidatable are liquidated, then a few random actions; standalone,
`seconds` of chain time pass (in DevnetSimulator the lending round moves the clock). Borrowers
take 80-97% of their max borrow, so a 3-20% drop of WETH makes them liquidatable; a position
whose collateral, less the liquidation incentive, is worth less than its debt (past a ~10%
drop) is underwater: the liquidator seizes all its collateral and Morpho books the rest as
bad debt. Decisions use the contract's exact math (protocols/morpho_blue) on the chain's
state; every transaction is estimated first, so one that would revert is logged and skipped.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from fractions import Fraction
from random import Random
from typing import Any

from devnet.contracts import ORACLE_GET_ASSET_PRICE
from devnet.deploy import ALL_TOKEN_SPECS, Deployment, Token
from devnet.lending import REVERSION, SHOCK_PROBABILITY, SHOCKS, VOLATILITY
from devnet.morpho import (
    MORPHO_MARKET,
    MORPHO_POSITION,
    ORACLE_PRICE,
    MorphoActions,
    MorphoDeployment,
    oracle_price,
)
from devnet.rpc import RpcClient
from devnet.txs import Tx, mine_block, send_estimated
from protocols.morpho_blue import events as ev
from protocols.morpho_blue import math as mm
from protocols.morpho_blue.state import AccountView, Market, Position, irm_mock_rate, view_account
from schemas.chain import RawLog

log = logging.getLogger("defimon.devnet")

MORPHO_WALLETS = 8  # lenders, borrowers and the liquidator
ROLE_PATTERN = ("lender", "borrower", "borrower", "borrower")
MIN_WALLETS = 4  # a lender, two borrowers, the liquidator
BORROW_SHARE_BPS = (8000, 9700)  # of the max borrow, for a borrow near the limit
LIQUIDITY_SHARE_BPS = 9000  # never borrow or withdraw more than this share of the cash
KEEP_HEALTH_BPS = 8000  # a collateral withdrawal leaves the debt under this share of max borrow
PARTIAL_LIQUIDATION_BPS = (3000, 6000)  # of the borrow shares, or of the collateral
MIN_AMOUNT_USD = 50
# log10 of USD amounts: bootstrap supply per lender, collateral per borrower, later actions
BOOTSTRAP_SUPPLY_USD = (5.5, 6.3)
BOOTSTRAP_COLLATERAL_USD = (4.5, 5.5)
SUPPLY_USD = (4.0, 5.5)
COLLATERAL_USD = (3.5, 5.0)
ACTIONS: tuple[tuple[str, float], ...] = (
    ("supply", 2.0),
    ("withdraw", 1.0),
    ("supply_collateral", 1.0),
    ("borrow", 4.0),
    ("repay", 1.5),
    ("withdraw_collateral", 1.0),
)
ACTIONS_PER_TICK = (2, 4)
_OPENING_EVENTS = ("Supply", "SupplyCollateral", "Borrow")  # name an account with a position
# the collateral's shocks among the lending simulator's (standalone walk only)
_OWN_SHOCKS = [(low, high, weight) for symbol, low, high, weight in SHOCKS if symbol == "WETH"]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The market, the oracle and the given accounts at the latest block."""

    market: Market
    price: int
    timestamp: int
    positions: dict[str, Position]

    def view(self, account: str) -> AccountView:
        rate = irm_mock_rate(self.market.params, self.market.totals)
        return view_account(
            self.market, self.positions[account], account, self.timestamp, self.price, rate
        )

    @property
    def balances(self) -> mm.MarketTotals:
        """The totals with interest to the latest block (what the next call starts from)."""
        rate = irm_mock_rate(self.market.params, self.market.totals)
        return mm.expected_market_balances(self.market.totals, self.timestamp, rate)

    @property
    def cash(self) -> int:
        balances = self.balances
        return balances.total_supply_assets - balances.total_borrow_assets


class MorphoSimulator:
    """Drives the deployment's Morpho market from its wallets; deterministic for a seed and
    chain state."""

    def __init__(self, rpc_url: str, deployment: Deployment, seed: int = 13) -> None:
        if deployment.morpho is None:
            raise ValueError("the deployment has no Morpho market (deploy with morpho=True)")
        if len(deployment.wallets) < MIN_WALLETS + 1:
            raise ValueError(f"the Morpho simulator needs at least {MIN_WALLETS + 1} wallets")
        self.deployment = deployment
        self.morpho: MorphoDeployment = deployment.morpho
        self.actions = MorphoActions(self.morpho)
        self._rpc = RpcClient(rpc_url)
        self._rng = Random(seed)
        self._lock = threading.RLock()  # tick() calls the other public methods
        wallets = deployment.wallets[:-1][-MORPHO_WALLETS:]  # the last one is Aave's liquidator
        self.liquidator = wallets[-1]
        users = wallets[:-1]
        roles = {user: ROLE_PATTERN[index % len(ROLE_PATTERN)] for index, user in enumerate(users)}
        self.lenders = [user for user in users if roles[user] == "lender"]
        self.borrowers = [user for user in users if roles[user] == "borrower"]
        by_address = {token.address: token for token in deployment.tokens.values()}
        self.loan: Token = by_address[self.morpho.params.loan_token]
        self.collateral: Token = by_address[self.morpho.params.collateral_token]
        self._reference = (
            ALL_TOKEN_SPECS[self.collateral.symbol][1] / (ALL_TOKEN_SPECS[self.loan.symbol][1])
        )
        self._price = self._read_price()
        self._accounts: set[str] = set()
        self._liquidations = 0
        self._bootstrapped = False
        self._sync()

    def close(self) -> None:
        self._rpc.close()

    # -- public API -----------------------------------------------------------------------

    def accounts(self) -> list[str]:
        """Every wallet that ever supplied, posted collateral or borrowed (sorted)."""
        with self._lock:
            return sorted(self._accounts)

    @property
    def price(self) -> int:
        """The OracleMock's price (1e36 scale: loan units per collateral unit)."""
        return self._price

    def tick(self, seconds: int = 0) -> list[int]:
        """One round: the price follows the devnet, liquidations, a few actions (a bootstrap of
        positions the first time), then `seconds` of chain time (0: the caller moves the clock).
        Returns the blocks mined."""
        with self._lock:
            blocks = self.follow_price()
            blocks += self.liquidate_unhealthy()
            if not self._bootstrapped:
                blocks += self._bootstrap()
                self._bootstrapped = True
            blocks += self._actions(self._rng.randint(*ACTIONS_PER_TICK))
            if seconds > 0:
                self._rpc.call("evm_increaseTime", [seconds])
                self._rpc.call("evm_mine", [])
                blocks.append(int(self._rpc.call("eth_blockNumber"), 16))
            return blocks

    def target_price(self) -> int:
        """Where the oracle should be: WETH's price in USDC on Aave's oracle, or (no Aave) one
        step of the mean-reverting walk, sometimes a shock."""
        with self._lock:
            aave = self.deployment.aave
            if aave is not None:
                answers = self._rpc.batch(
                    self._call(aave.oracle, ORACLE_GET_ASSET_PRICE.encode(token.address))
                    for token in (self.collateral, self.loan)
                )
                collateral_usd, loan_usd = (ORACLE_GET_ASSET_PRICE.decode(a)[0] for a in answers)
                return self._oracle_price(Fraction(collateral_usd, loan_usd))
            symbol = self.collateral.symbol
            current = math.log(self._price)
            pull = REVERSION[symbol] * (math.log(self._oracle_price(self._reference)) - current)
            step = self._rng.gauss(0, VOLATILITY[symbol])
            if self._rng.random() < SHOCK_PROBABILITY:
                low, high, _ = self._rng.choices(_OWN_SHOCKS, [s[2] for s in _OWN_SHOCKS])[0]
                step += math.log(1 + self._rng.uniform(low, high) / 100)
            return round(math.exp(current + pull + step))

    def follow_price(self) -> list[int]:
        """Move the oracle to target_price() if it changed; the block."""
        with self._lock:
            return self.set_price(self.target_price())

    def set_price(self, price: int) -> list[int]:
        """Set the OracleMock's price (1e36 scale); the block, none if unchanged.

        The market's interest is accrued in the same block (an AccrueInterest log): a real
        Morpho oracle moves with the Chainlink feed it reads, in a block with that feed's
        log, while OracleMock moves alone. So that, as on a real chain, a backfill reads the
        market in the block the price moved (it reads where watched logs are; live reads
        every block), the move comes with a Morpho log."""
        with self._lock:
            if price == self._price:
                return []
            what = f"Morpho oracle to {self._usd_price(price):,.2f} {self.loan.symbol}"
            txs = [self.actions.set_price(price), self.actions.accrue_interest(self.liquidator)]
            try:
                receipts = mine_block(self._rpc, txs, check=False)
            finally:
                self._rpc.call("evm_setAutomine", [True])
            if any(r["status"] != "0x1" for r in receipts):
                log.warning("%s: reverted, skipped", what)
                return []
            self._price = price
            log.debug("%s", what)
            return [int(receipts[0]["blockNumber"], 16)]

    def reload_price(self) -> int:
        """Read the oracle's price again (after an evm_revert, say); the price."""
        with self._lock:
            self._price = self._read_price()
            return self._price

    def views(self, accounts: list[str]) -> dict[str, AccountView]:
        """The accounts at the latest block: interest accrued, health at the oracle's price."""
        with self._lock:
            snapshot = self._snapshot(accounts)
            return {account: snapshot.view(account) for account in accounts}

    def liquidatable_accounts(self) -> list[str]:
        """Borrowers whose debt exceeds their max borrow at the latest block."""
        with self._lock:
            snapshot = self._snapshot(sorted(self._accounts - {self.liquidator}))
            return [a for a in snapshot.positions if snapshot.view(a).liquidatable]

    def liquidate_unhealthy(self) -> list[int]:
        """Liquidate every liquidatable account; the blocks mined.

        An underwater position (seizing all its collateral repays less than its debt) loses all
        its collateral, and Morpho writes the rest of the debt off as bad debt. Any other is
        liquidated in part: alternately a share of its borrow shares repaid, or a share of its
        collateral seized.
        """
        with self._lock:
            snapshot = self._snapshot(sorted(self._accounts - {self.liquidator}))
            lif = mm.liquidation_incentive_factor(self.morpho.params.lltv)
            balances = snapshot.balances
            blocks = []
            for account, position in snapshot.positions.items():
                view = snapshot.view(account)
                if not view.liquidatable:
                    continue
                # what seizing all the collateral repays (`liquidate` with seizedAssets)
                repaid_all = mm.w_div_up(
                    mm.mul_div_up(position.collateral, snapshot.price, mm.ORACLE_PRICE_SCALE), lif
                )
                shares_all = mm.to_shares_up(
                    repaid_all, balances.total_borrow_assets, balances.total_borrow_shares
                )
                share = self._rng.randint(*PARTIAL_LIQUIDATION_BPS)
                if shares_all < position.borrow_shares:
                    tx = self.actions.liquidate(self.liquidator, account, position.collateral)
                    how = "all its collateral (bad debt)"
                elif self._liquidations % 2 == 0:
                    repaid = position.borrow_shares * share // 10_000
                    tx = self.actions.liquidate(self.liquidator, account, repaid_shares=repaid)
                    how = f"{share / 100:.0f}% of its debt"
                else:
                    seized = position.collateral * share // 10_000
                    tx = self.actions.liquidate(self.liquidator, account, seized)
                    how = f"{share / 100:.0f}% of its collateral"
                health = (view.health or 0) / mm.WAD
                what = f"Morpho: liquidate {account} (health {health:.4f}): {how}"
                block = self._send(tx, what)
                if block is not None:
                    self._liquidations += 1
                    blocks.append(block)
                    log.info("%s", what)
            return blocks

    # -- actions --------------------------------------------------------------------------

    def _bootstrap(self) -> list[int]:
        """Cash from every lender, then every borrower posts collateral and borrows."""
        rng = self._rng
        blocks: list[int | None] = []
        for lender in self.lenders:
            blocks.append(self._supply(lender, 10 ** rng.uniform(*BOOTSTRAP_SUPPLY_USD)))
        for borrower in self.borrowers:
            usd = 10 ** rng.uniform(*BOOTSTRAP_COLLATERAL_USD)
            blocks.append(self._supply_collateral(borrower, usd))
            blocks.append(self._borrow(borrower))
        return [block for block in blocks if block is not None]

    def _actions(self, count: int) -> list[int]:
        rng = self._rng
        names = [name for name, _ in ACTIONS]
        weights = [weight for _, weight in ACTIONS]
        blocks = []
        for _ in range(count):
            kind = rng.choices(names, weights)[0]
            if kind == "supply":
                block = self._supply(rng.choice(self.lenders), 10 ** rng.uniform(*SUPPLY_USD))
            elif kind == "withdraw":
                block = self._withdraw(rng.choice(self.lenders))
            elif kind == "supply_collateral":
                usd = 10 ** rng.uniform(*COLLATERAL_USD)
                block = self._supply_collateral(rng.choice(self.borrowers), usd)
            elif kind == "borrow":
                block = self._borrow(rng.choice(self.borrowers))
            elif kind == "repay":
                block = self._repay(rng.choice(self.borrowers))
            else:
                block = self._withdraw_collateral(rng.choice(self.borrowers))
            if block is not None:
                blocks.append(block)
        return blocks

    def _supply(self, lender: str, usd: float) -> int | None:
        amount = round(usd * 10**self.loan.decimals)
        return self._send(self.actions.supply(lender, amount), f"{lender} supplies ${usd:,.0f}")

    def _withdraw(self, lender: str) -> int | None:
        """Part of the supply, or all of it (by shares) when the cash allows."""
        rng = self._rng
        snapshot = self._snapshot([lender])
        view = snapshot.view(lender)
        if view.supply_shares == 0:
            return None
        room = snapshot.cash * LIQUIDITY_SHARE_BPS // 10_000
        if rng.random() < 0.2 and view.supply_assets <= room:
            tx = self.actions.withdraw(lender, shares=view.supply_shares)
            return self._send(tx, f"{lender} withdraws all its supply")
        amount = min(view.supply_assets * rng.randint(10, 50) // 100, room)
        if amount < self._loan_units(MIN_AMOUNT_USD):
            return None
        return self._send(self.actions.withdraw(lender, amount), f"{lender} withdraws part")

    def _supply_collateral(self, borrower: str, usd: float) -> int | None:
        loan_units = Fraction(usd) * 10**self.loan.decimals
        amount = int(loan_units * mm.ORACLE_PRICE_SCALE / self._price)
        what = f"{borrower} posts ${usd:,.0f} of {self.collateral.symbol}"
        return self._send(self.actions.supply_collateral(borrower, amount), what)

    def _borrow(self, borrower: str) -> int | None:
        """Borrow up to 80-97% of the max borrow, or post collateral when there is no room."""
        rng = self._rng
        snapshot = self._snapshot([borrower])
        view = snapshot.view(borrower)
        share = rng.randint(*BORROW_SHARE_BPS)
        amount = view.max_borrow * share // 10_000 - view.borrow_assets
        amount = min(amount, snapshot.cash * LIQUIDITY_SHARE_BPS // 10_000)
        if amount < self._loan_units(MIN_AMOUNT_USD):
            if view.max_borrow * share // 10_000 > view.borrow_assets:
                return None  # room, but no cash
            return self._supply_collateral(borrower, 10 ** rng.uniform(*COLLATERAL_USD))
        what = f"{borrower} borrows up to {share / 100:.1f}% of its max borrow"
        return self._send(self.actions.borrow(borrower, amount), what)

    def _repay(self, borrower: str) -> int | None:
        """All the debt (by shares, so nothing is left) or a part of it (by assets)."""
        rng = self._rng
        view = self._snapshot([borrower]).view(borrower)
        if view.borrow_shares == 0:
            return None
        if rng.random() < 0.25:
            tx = self.actions.repay(borrower, shares=view.borrow_shares)
            return self._send(tx, f"{borrower} repays all its debt")
        amount = view.borrow_assets * rng.randint(20, 70) // 100
        return self._send(self.actions.repay(borrower, amount), f"{borrower} repays part")

    def _withdraw_collateral(self, borrower: str) -> int | None:
        """Without debt, all or part of the collateral; with debt, part of what keeps the debt
        under KEEP_HEALTH_BPS of the max borrow."""
        rng = self._rng
        view = self._snapshot([borrower]).view(borrower)
        if view.collateral == 0:
            return None
        if view.borrow_shares == 0:
            amount = view.collateral if rng.random() < 0.5 else view.collateral // 2
        else:
            limit = view.max_borrow * KEEP_HEALTH_BPS // 10_000
            if limit <= view.borrow_assets:
                return None
            # the share of the collateral the debt does not need at KEEP_HEALTH_BPS
            spare = view.collateral * (limit - view.borrow_assets) // limit
            amount = spare * rng.randint(30, 100) // 100
        if amount == 0:
            return None
        tx = self.actions.withdraw_collateral(borrower, amount)
        return self._send(tx, f"{borrower} withdraws {self.collateral.symbol} collateral")

    # -- chain ----------------------------------------------------------------------------

    def _snapshot(self, accounts: list[str]) -> _Snapshot:
        """market(id), price(), the accounts' position() and the latest block's time, in one
        batch (nothing is mined in between: the simulators share one thread)."""
        d = self.morpho
        calls: list[tuple[str, list[Any]]] = [
            self._call(d.morpho, MORPHO_MARKET.encode(bytes.fromhex(d.market_id[2:]))),
            self._call(d.oracle, ORACLE_PRICE.encode()),
            ("eth_getBlockByNumber", ["latest", False]),
        ]
        calls += [
            self._call(d.morpho, MORPHO_POSITION.encode(bytes.fromhex(d.market_id[2:]), account))
            for account in accounts
        ]
        answers = self._rpc.batch(calls)
        totals = mm.MarketTotals(*MORPHO_MARKET.decode(answers[0]))
        positions = {
            account: Position(*MORPHO_POSITION.decode(answer))
            for account, answer in zip(accounts, answers[3:], strict=True)
        }
        return _Snapshot(
            Market(d.market_id, d.params, totals),
            ORACLE_PRICE.decode(answers[1])[0],
            int(answers[2]["timestamp"], 16),
            positions,
        )

    def _read_price(self) -> int:
        _, params = self._call(self.morpho.oracle, ORACLE_PRICE.encode())
        price: int = ORACLE_PRICE.decode(self._rpc.call("eth_call", params))[0]
        return price

    def _send(self, tx: Tx, what: str) -> int | None:
        assert tx.to is not None
        receipt = send_estimated(self._rpc, tx.sender, tx.to, tx.data, what)
        if receipt is None or receipt["status"] != "0x1":
            return None
        self._apply_logs(receipt["logs"])
        return int(receipt["blockNumber"], 16)

    def _apply_logs(self, logs: list[dict[str, Any]]) -> None:
        """Follow the accounts from Morpho's Supply, SupplyCollateral and Borrow events."""
        for entry in logs:
            if entry["address"].lower() != self.morpho.morpho:
                continue
            event = ev.decode(_raw_log(entry))
            if (
                isinstance(event, (ev.Supply, ev.SupplyCollateral, ev.Borrow))
                and event.id == self.morpho.market_id
            ):
                self._accounts.add(event.on_behalf)

    def _sync(self) -> None:
        """Pick up the accounts that already exist (a simulator restarted on the same chain)."""
        logs = self._rpc.call(
            "eth_getLogs",
            [
                {
                    "address": self.morpho.morpho,
                    "topics": [[ev.TOPICS[name] for name in _OPENING_EVENTS]],
                    "fromBlock": hex(self.morpho.start_block),
                    "toBlock": "latest",
                }
            ],
        )
        self._apply_logs(logs)
        if self._accounts:
            log.info("Morpho simulator found %d existing accounts", len(self._accounts))

    @staticmethod
    def _call(to: str, data: str) -> tuple[str, list[Any]]:
        return ("eth_call", [{"to": to, "data": data}, "latest"])

    def _oracle_price(self, loan_per_collateral: Fraction) -> int:
        return oracle_price(loan_per_collateral, self.loan.decimals, self.collateral.decimals)

    def _usd_price(self, price: int) -> float:
        """The oracle's price as loan tokens per collateral token."""
        scale = 10 ** (self.collateral.decimals - self.loan.decimals)
        return price * scale / mm.ORACLE_PRICE_SCALE

    def _loan_units(self, usd: int) -> int:
        return usd * 10**self.loan.decimals


def _raw_log(entry: dict[str, Any]) -> RawLog:
    return RawLog(
        0,  # the chain id: the decoder does not read it
        int(entry["blockNumber"], 16),
        entry["blockHash"],
        int(entry["logIndex"], 16),
        entry["transactionHash"],
        int(entry["transactionIndex"], 16),
        entry["address"].lower(),
        tuple(topic.lower() for topic in entry["topics"]),
        entry["data"].lower(),
    )
