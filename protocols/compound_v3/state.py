"""Compound V3 (Comet) state machine (pure), run inside the per-chain market stage.

`CometMarket.step` folds one block: the comet's configuration, stored totals and prices as the
reader read them at that block (`BlockBatch.reads[NAME]`), and its logs. Each account event yields a
version of the account with its end-of-block principal and collateral (exact: read from the
comet, not re-derived); absorbs and collateral sales are recorded as liquidations. At checkpoint
blocks every account whose own state, comet totals or prices changed is valued, with interest
accrued from the stored totals to the block's own timestamp (`accruedInterestIndices`), exactly
as `balanceOf` / `borrowBalanceOf` compute it; the liquidation flag is `isLiquidatable` as the
contract evaluates it (stored indices), with `absorbable` the same test after accrual.

Comet is not sharded: it stays on the market stage (its accounts are few next to LP positions,
and every account of a comet depends on that comet's totals, read at every block it moves).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from protocols.compound_v3 import events as ev
from protocols.compound_v3 import math as cm
from protocols.journal import JournaledDict, JournaledObjects
from schemas.chain import BlockBatch, RawLog, TokenInfo
from schemas.comet import (
    MAX_UINT256,
    CometAccount,
    CometAccountValue,
    CometCollateralValue,
    CometConfig,
    CometReads,
    CometTotalsBasic,
    comet_account_id,
    comet_account_json,
)
from schemas.positions import BlockRef

NAME = "compound_v3"

STAGE = "compound_v3"


@dataclass(frozen=True, slots=True)
class CometAccountVersion:
    """One account event, with the account's state at the end of that block."""

    account: CometAccount
    asset: str  # the collateral that moved; "" for the base balance
    block: BlockRef
    log_index: int
    tx_hash: str
    event: str
    amount: int  # the event's own amount (present value for base events)
    counterparty: str


@dataclass(frozen=True, slots=True)
class CometAccountUpdate:
    account: CometAccount
    value: CometAccountValue
    config: CometConfig
    block: BlockRef
    updated_block: int

    def json(self) -> dict[str, Any]:
        return comet_account_json(
            self.account, self.value, self.config, self.block, self.updated_block
        )


@dataclass(frozen=True, slots=True)
class CometLiquidation:
    """AbsorbDebt, AbsorbCollateral or BuyCollateral, as the comet emitted it."""

    comet: str
    kind: str  # absorb_debt | absorb_collateral | buy_collateral
    log: RawLog
    actor: str  # absorber or buyer
    borrower: str  # "" for a sale
    asset: str  # "" for absorb_debt (the base)
    amount: int  # basePaidOut | collateralAbsorbed | baseAmount
    value: int  # usdValue | usdValue | collateralAmount


@dataclass(slots=True)
class CometOutput:
    configs: list[CometConfig] = field(default_factory=list)
    totals: list[tuple[str, CometTotalsBasic]] = field(default_factory=list)
    prices: list[tuple[str, str, int]] = field(default_factory=list)  # comet, feed, price
    versions: list[CometAccountVersion] = field(default_factory=list)
    updates: list[CometAccountUpdate] = field(default_factory=list)
    liquidations: list[CometLiquidation] = field(default_factory=list)
    dead: list[tuple[RawLog, str]] = field(default_factory=list)


def rate_params(config: CometConfig) -> cm.InterestRateParams:
    return cm.InterestRateParams(
        supply_kink=config.supply_kink,
        supply_per_second_interest_rate_base=config.supply_per_second_interest_rate_base,
        supply_per_second_interest_rate_slope_low=config.supply_per_second_interest_rate_slope_low,
        supply_per_second_interest_rate_slope_high=config.supply_per_second_interest_rate_slope_high,
        borrow_kink=config.borrow_kink,
        borrow_per_second_interest_rate_base=config.borrow_per_second_interest_rate_base,
        borrow_per_second_interest_rate_slope_low=config.borrow_per_second_interest_rate_slope_low,
        borrow_per_second_interest_rate_slope_high=config.borrow_per_second_interest_rate_slope_high,
    )


def _is_in(assets_in: int, offset: int) -> bool:
    return bool(assets_in & (1 << offset))


def value_comet_account(
    account: CometAccount,
    config: CometConfig,
    totals: CometTotalsBasic,
    prices: Mapping[str, int],
    timestamp: int,
    *,
    skip_zero_lcf: bool = True,
) -> CometAccountValue:
    """The account at a block with this timestamp, from the comet's stored totals then.

    Collateral counts as Comet counts it: the assets whose `assetsIn` bit is set, in offset
    order. A price that was never read counts as 0 (and makes the liquidation flags None, as
    the contract would revert reading it); the health factor is the derived one
    (liquidation-weighted collateral / debt, both in USD with 8 decimals).
    """
    stored = cm.CometTotals(
        totals.base_supply_index,
        totals.base_borrow_index,
        totals.total_supply_base,
        totals.total_borrow_base,
        totals.last_accrual_time,
    )
    supply_index, borrow_index = stored.accrued_indices(
        rate_params(config), max(timestamp, totals.last_accrual_time)
    )
    principal, scale = account.principal, config.base_scale
    base_price = prices.get(config.base_token_price_feed, 0)
    supplied = cm.present_value_supply(supply_index, principal) if principal > 0 else 0
    borrowed = cm.present_value_borrow(borrow_index, -principal) if principal < 0 else 0
    collaterals = [
        cm.CometCollateral(
            balance=account.collateral.get(info.asset, 0),
            price=prices.get(info.price_feed, 0),
            scale=info.scale,
            liquidate_collateral_factor=info.liquidate_collateral_factor,
            borrow_collateral_factor=info.borrow_collateral_factor,
            liquidation_factor=info.liquidation_factor,
            asset=info.asset,
        )
        for info in config.assets
        if _is_in(account.assets_in, info.offset) or account.collateral.get(info.asset, 0)
    ]
    priced = [c for c in collaterals if c.price > 0]
    values = {c.asset: cm.mul_price(c.balance, c.price, c.scale) for c in priced}
    base_known = base_price > 0
    debt = (
        cm.debt_value(principal, supply_index, borrow_index, base_price, scale) if base_known else 0
    )

    def flag(si: int, bi: int) -> bool | None:
        try:
            return cm.is_liquidatable(
                principal, si, bi, base_price, scale, collaterals, skip_zero_lcf=skip_zero_lcf
            )
        except cm.BadPrice:
            return None

    if principal >= 0:
        health = MAX_UINT256
    elif not base_known:
        health = 0  # a debt of unknown value: never reported as safe
    else:
        found = cm.health_factor(
            principal,
            supply_index,
            borrow_index,
            base_price,
            scale,
            priced,
            skip_zero_lcf=skip_zero_lcf,
        )
        health = MAX_UINT256 if found is None else found
    rows = []
    for c in collaterals:
        liquidation = None
        if c.price > 0 and principal < 0 and base_known:
            liquidation = cm.liquidation_price(
                principal,
                supply_index,
                borrow_index,
                base_price,
                scale,
                priced,
                priced.index(c),
                skip_zero_lcf=skip_zero_lcf,
            )
        rows.append(
            CometCollateralValue(c.asset, c.balance, c.price, values.get(c.asset, 0), liquidation)
        )
    return CometAccountValue(
        supplied=supplied,
        borrowed=borrowed,
        base_price=base_price,
        supply_value=cm.mul_price(supplied, base_price, scale),
        debt_value=debt,
        collateral_value=sum(values.values()),
        liquidation_threshold_value=cm.weighted_collateral_value(
            priced, skip_zero_lcf=skip_zero_lcf
        ),
        borrow_capacity_value=sum(
            cm.mul_factor(values[c.asset], c.borrow_collateral_factor) for c in priced
        ),
        health_factor=health,
        is_liquidatable=flag(totals.base_supply_index, totals.base_borrow_index),
        absorbable=flag(supply_index, borrow_index),
        collaterals=tuple(rows),
    )


@dataclass(frozen=True, slots=True)
class CometMarketView:
    """A comet as of one block: its configuration, stored totals and prices then, and the
    block's time: enough to value any account state at that block."""

    block: BlockRef
    config: CometConfig
    totals: CometTotalsBasic
    prices: Mapping[str, int]  # price feed -> getPrice(feed), 8 decimals

    def value(self, account: CometAccount) -> CometAccountValue:
        return value_comet_account(
            account, self.config, self.totals, self.prices, self.block.timestamp
        )


def net_value(value: CometAccountValue) -> int:
    """What the account owns, USD with 8 decimals: collateral and base supply, less the debt
    (the `value_usd` of `comet_account_json`, as an exact integer)."""
    return value.collateral_value + value.supply_value - value.debt_value


def prices_held(
    later: CometConfig,
    earlier: CometConfig,
    earlier_prices: Mapping[str, int],
    later_prices: Mapping[str, int],
) -> dict[str, int]:
    """The later configuration's feeds, each answering what the same asset's feed answered
    under the earlier configuration: prices held while indices and time move on. Prices are
    per feed and an upgrade may give an asset another feed, so the match is by asset. An
    asset the earlier configuration did not list keeps its later price (no earlier state
    holds it); one listed but never priced keeps that (0), as the earlier valuation had it."""
    feed_of = {earlier.base_token: earlier.base_token_price_feed}
    feed_of.update({a.asset: a.price_feed for a in earlier.assets})
    out = dict(later_prices)
    for asset, feed in (
        (later.base_token, later.base_token_price_feed),
        *((a.asset, a.price_feed) for a in later.assets),
    ):
        if asset in feed_of:
            out[feed] = earlier_prices.get(feed_of[asset], 0)
    return out


def with_symbols(config: CometConfig, tokens: Mapping[str, TokenInfo]) -> CometConfig:
    """The configuration with the symbols the flow's token table knows."""

    def symbol(address: str) -> str:
        info = tokens.get(address)
        return info.symbol if info else "???"

    return replace(
        config,
        base_symbol=symbol(config.base_token),
        assets=tuple(replace(a, symbol=symbol(a.asset)) for a in config.assets),
    )


@dataclass(slots=True)
class CometMarket:
    chain_id: int
    comets: tuple[str, ...]
    configs: dict[str, CometConfig] = field(default_factory=dict)
    totals: dict[str, CometTotalsBasic] = field(default_factory=dict)
    prices: dict[str, dict[str, int]] = field(default_factory=dict)  # comet -> feed -> price
    accounts: dict[str, CometAccount] = field(default_factory=JournaledDict)
    updated_block: dict[str, int] = field(default_factory=JournaledDict)
    comet_accounts: dict[str, set[str]] = field(default_factory=JournaledObjects)
    unvalued: set[str] = field(default_factory=set)
    # Watch mode: the wallets whose accounts are kept (None: every account the logs show).
    users: set[str] | None = None
    _moved: set[str] = field(default_factory=set)  # known accounts the block's reads changed

    def _account(self, comet: str, user: str) -> CometAccount:
        aid = comet_account_id(self.chain_id, comet, user)
        found = self.accounts.get(aid)
        return found if found is not None else CometAccount(self.chain_id, comet, user, aid)

    def step(
        self, batch: BlockBatch, block: BlockRef, tokens: Mapping[str, TokenInfo]
    ) -> CometOutput:
        out = CometOutput()
        changed_comets: set[str] = set()
        repriced = False
        read: dict[str, CometReads] = batch.reads.get(NAME, {})
        seeds: dict[str, CometReads] = {}
        if batch.seeds is not None:
            # Watch mode from its first seed on: other wallets' accounts are never opened.
            self.users = (self.users or set()) | set(batch.seeds.wallets)
            for part in batch.seeds.parts.get(NAME, ()):
                seeds.update(part)
        # 1. What the reader read at the end of this block: configuration, totals, prices,
        #    and the touched accounts' principal and collateral (a seed's too: the same
        #    end-of-block state).
        for comet, reads in [*sorted(read.items()), *sorted(seeds.items())]:
            if comet not in self.comets:
                continue
            repriced |= self._take(comet, reads, tokens, out, changed_comets)
        # 2. The logs: why each account changed (one version per event).
        decoded: list[tuple[RawLog, list[ev.Event]]] = []
        for log in batch.logs:
            if log.address not in self.comets:
                continue
            try:
                decoded.append((log, ev.decode(log) or []))
            except ev.DecodeError as exc:
                out.dead.append((log, str(exc)))
        for i, (log, events) in enumerate(decoded):
            for event in events:
                applied: ev.Event | None = event
                if isinstance(event, ev.BaseChanged) and event.counterparty == ev.ZERO_ADDRESS:
                    # None: the ERC-20 mirror of a Supply, Withdraw or absorb
                    applied = ev.base_transfer(decoded, i, event)
                if applied is not None:
                    self._apply(log, applied, read.get(log.address), block, out)
        out.dead.sort(key=lambda dead: dead[0].log_index)  # in log order, as they came
        # An account first seen here had its every collateral read, not only what the block
        # moved (it may hold some from before the start block): a version for each of those.
        first: dict[str, CometAccountVersion] = {}
        moved: set[tuple[str, str]] = set()
        for v in out.versions:
            first.setdefault(v.account.account_id, v)
            moved.add((v.account.account_id, v.asset))
        for comet, reads in sorted(read.items()):
            for (user, asset), balance in sorted(reads.collateral.items()):
                aid = comet_account_id(self.chain_id, comet, user)
                seen = first.get(aid)
                if seen is None or not balance or (aid, asset) in moved:
                    continue
                out.versions.append(
                    replace(
                        seen, account=self.accounts[aid], asset=asset,
                        event="collateral_read", amount=0, counterparty="",
                    )
                )  # fmt: skip
        # Known accounts that changed with no event of theirs: a base transfer that moved only
        # borrows emits nothing (the reader re-read every account when the comet accrued
        # without an event that explains it).
        versioned = {v.account.account_id for v in out.versions}
        for aid in sorted(self._moved - versioned):
            account = self.accounts[aid]
            self.updated_block[aid] = block.number
            self.comet_accounts.setdefault(account.comet, set()).add(aid)
            self.unvalued.add(aid)
            out.versions.append(
                CometAccountVersion(account, "", block, 0, "", "unlogged_transfer", 0, "")
            )
        self._moved = set()
        # Seeded accounts: a version each, valued at this block like any changed account.
        for comet, reads in sorted(seeds.items()):
            self._seeded(comet, reads, block, out)
        # 3. Valuation at checkpoints, accrued to the block's own time.
        for comet in changed_comets:
            self.unvalued |= self.comet_accounts.get(comet, set())
        # A price move values the accounts at its own block, checkpoint or not: it can make
        # an account absorbable in a block where the comet emitted nothing.
        if batch.checkpoint or repriced:
            self._value(block, out)
        return out

    def _take(
        self,
        comet: str,
        reads: CometReads,
        tokens: Mapping[str, TokenInfo],
        out: CometOutput,
        changed_comets: set[str],
    ) -> bool:
        """Apply one comet's end-of-block reads; True if a price moved."""
        repriced = False
        if reads.config is not None:
            config = with_symbols(reads.config, tokens)
            if self.configs.get(comet) != config:
                self.configs[comet] = config
                out.configs.append(config)
                changed_comets.add(comet)
        if reads.totals is not None and self.totals.get(comet) != reads.totals:
            self.totals[comet] = reads.totals
            out.totals.append((comet, reads.totals))
            changed_comets.add(comet)
        known = self.prices.setdefault(comet, {})
        for feed, price in sorted(reads.prices.items()):
            if known.get(feed) != price:
                known[feed] = price
                out.prices.append((comet, feed, price))
                changed_comets.add(comet)
                repriced = True
        for user, basic in reads.users.items():
            account = self._account(comet, user)
            if account.account_id in self.accounts and (
                account.principal != basic.principal or account.assets_in != basic.assets_in
            ):
                self._moved.add(account.account_id)
            self.accounts[account.account_id] = replace(
                account, principal=basic.principal, assets_in=basic.assets_in
            )
        for (user, asset), balance in reads.collateral.items():
            account = self._account(comet, user)
            held = {a: b for a, b in account.collateral.items() if a != asset}
            if balance:
                held[asset] = balance
            self.accounts[account.account_id] = replace(account, collateral=held)
        return repriced

    def _seeded(self, comet: str, reads: CometReads, block: BlockRef, out: CometOutput) -> None:
        """Watch mode: a wallet's account as the comet holds it at the seed block (versions
        with event "seed"), exact from here on like any account the logs touched."""
        if comet not in self.comets:
            return
        for user in sorted(reads.users):
            account = self._account(comet, user)
            aid = account.account_id
            if not account.is_open or any(v.account.account_id == aid for v in out.versions):
                continue  # nothing to show yet, or this block's own events versioned it
            self.updated_block[aid] = block.number
            self.comet_accounts.setdefault(comet, set()).add(aid)
            self.unvalued.add(aid)
            # One version for the base, one per collateral held (each asset's latest version
            # carries its balance), at log index 0: no event of the block is theirs.
            for asset in ["", *sorted(a for a, b in account.collateral.items() if b)]:
                out.versions.append(
                    CometAccountVersion(account, asset, block, 0, "", "seed", 0, "")
                )

    def _apply(
        self,
        log: RawLog,
        event: ev.Event,
        reads: CometReads | None,
        block: BlockRef,
        out: CometOutput,
    ) -> None:
        comet = log.address
        if isinstance(event, ev.Upgraded):
            if reads is None or reads.config is None:
                out.dead.append((log, "upgraded, but the new configuration was not readable"))
            return
        if isinstance(event, ev.BuyCollateral):
            out.liquidations.append(
                CometLiquidation(
                    comet,
                    "buy_collateral",
                    log,
                    event.buyer,
                    "",
                    event.asset,
                    event.base_amount,
                    event.collateral_amount,
                )
            )
            return
        if isinstance(event, ev.AbsorbDebt):
            out.liquidations.append(
                CometLiquidation(
                    comet,
                    "absorb_debt",
                    log,
                    event.absorber,
                    event.borrower,
                    "",
                    event.base_paid_out,
                    event.usd_value,
                )
            )
            user, asset, kind, amount, other = (
                event.borrower,
                "",
                "absorb_debt",
                event.base_paid_out,
                event.absorber,
            )
        elif isinstance(event, ev.AbsorbCollateral):
            out.liquidations.append(
                CometLiquidation(
                    comet,
                    "absorb_collateral",
                    log,
                    event.absorber,
                    event.borrower,
                    event.asset,
                    event.collateral_absorbed,
                    event.usd_value,
                )
            )
            user, asset, kind, amount, other = (
                event.borrower,
                event.asset,
                "absorb_collateral",
                event.collateral_absorbed,
                event.absorber,
            )
        elif isinstance(event, ev.CollateralChanged):
            user, asset, kind, amount, other = (
                event.account,
                event.asset,
                event.kind,
                event.amount,
                event.counterparty,
            )
        else:
            user, asset, kind, amount, other = (
                event.account,
                "",
                event.kind,
                event.amount,
                event.counterparty,
            )
        if user == comet or (self.users is not None and user not in self.users):
            # The protocol's own collateral (absorbed, then sold: some builds' buyCollateral
            # emits WithdrawCollateral from the comet itself) is reserves, not an account;
            # in watch mode only the watched wallets' accounts are kept.
            return
        if reads is None:
            out.dead.append((log, "the comet answered no reads at this block (not a comet?)"))
            return
        missing = []
        if user not in reads.users:
            missing.append(f"userBasic({user})")
        if asset and (user, asset) not in reads.collateral:
            missing.append(f"userCollateral({user}, {asset})")
        if missing:
            why = "; ".join(reads.errors[:3]) if reads.errors else "none"
            out.dead.append(
                (log, f"no {' and '.join(missing)} read at this block (read errors: {why})")
            )
            return
        account = self._account(comet, user)
        aid = account.account_id
        self.updated_block[aid] = block.number
        self.comet_accounts.setdefault(comet, set()).add(aid)
        self.unvalued.add(aid)
        out.versions.append(
            CometAccountVersion(
                account, asset, block, log.log_index, log.tx_hash, kind, amount, other
            )
        )

    def _value(self, block: BlockRef, out: CometOutput) -> None:
        waiting = set()
        for aid in sorted(self.unvalued):
            account = self.accounts.get(aid)
            if account is None:
                continue
            config = self.configs.get(account.comet)
            totals = self.totals.get(account.comet)
            if config is None or totals is None:
                waiting.add(aid)
                continue
            value = value_comet_account(
                account, config, totals, self.prices.get(account.comet, {}), block.timestamp
            )
            out.updates.append(
                CometAccountUpdate(
                    account, value, config, block, self.updated_block.get(aid, block.number)
                )
            )
            if not account.is_open:
                # A closed account changes again only through an event, which re-creates it.
                self.accounts.pop(aid, None)
                self.updated_block.pop(aid, None)
                self.comet_accounts.get(account.comet, set()).discard(aid)
        self.unvalued = waiting
