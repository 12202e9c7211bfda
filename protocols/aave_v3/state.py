"""Aave V3 state machines (pure), in the same two stages as Uniswap's:

1. `AaveMarket`, inside the per-chain market stage: reserves and their configuration, rates and
   indices (`ReserveDataUpdated`), eMode categories, the oracle's feeds and their answers; it
   turns token and pool logs into per-account events, routed to the account's shard.
2. `AaveShard`, inside each position shard: accounts (scaled balances, stable debt, collateral
   flags, eMode), one version per change, and valuation at each checkpoint: collateral, debt,
   health factor and liquidation prices, accrued to the block's own timestamp, so the numbers
   equal `Pool.getUserAccountData` at every block, not only at blocks with an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

from protocols.aave_v3 import events as ev
from protocols.aave_v3 import math as am
from protocols.base import shard_of
from protocols.journal import JournaledDict, JournaledObjects
from protocols.windows import Observation, Subject, WindowBook
from schemas.chain import RawLog, TokenInfo
from schemas.lending import (
    AAVE_VERSIONS,
    BASE_UNIT,
    AaveAccount,
    AccountReserveState,
    AccountValue,
    EModeInfo,
    OraclePrice,
    ReserveInfo,
    ReserveRates,
    ReserveValue,
    health_factor_float,
)
from schemas.positions import BlockRef
from schemas.prices import ZERO, SourceRead
from schemas.watch import AaveSeed

PROTOCOL_AAVE_V3 = "aave_v3"
DEFAULT_VERSION = AAVE_VERSIONS[0]
# Versions seeded at a block sort after the block's own logs.
SEED_LOG_INDEX = 1 << 24
_ZERO = "0x" + "00" * 20


def oracle_price(
    asset: str, read: SourceRead, previous: OraclePrice | None, block: int
) -> OraclePrice:
    """What `AaveOracle.getAssetPrice(asset)` gives at the end of `block`, from the source as
    read then: its `latestAnswer()` if positive, else the fallback oracle's price. A source
    that cannot be read is never a price of 0: the last good answer is kept, marked stale."""
    answer = read.answer
    if answer is not None and answer > 0 and read.source != ZERO:
        return OraclePrice(asset, answer, 0, 0, read.source, block)
    fallback = dict(read.fallback).get(asset)
    if fallback is not None and fallback > 0:
        return OraclePrice(asset, fallback, 0, 0, read.source, block)
    if read.source == ZERO:
        why = "no source and the fallback oracle has no price"
    elif answer is None:
        why = f"source {read.source} unreadable: {read.error or 'reverted'}"
    else:
        why = f"source {read.source} answered {answer} and the fallback oracle has no price"
    if previous is not None and previous.stale.startswith(why + " since block "):
        return previous  # still so: nothing new to store or revalue
    last = previous.answer if previous is not None else 0
    return OraclePrice(asset, last, 0, 0, read.source, block, stale=f"{why} since block {block}")


def same_price(a: OraclePrice | None, b: OraclePrice) -> bool:
    """Same answer from the same source, equally stale: nothing for anyone to revalue."""
    return a is not None and (a.answer, a.feed, a.stale) == (b.answer, b.feed, b.stale)


def account_id(chain_id: int, pool: str, user: str) -> str:
    return f"{chain_id}:{pool}:{user}"


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """One change to one account, as the shard applies it (in log order)."""

    kind: str  # supply_scaled | debt_scaled | stable | collateral | emode | liquidated
    user: str
    log_index: int
    tx_hash: str
    asset: str = ""
    scaled_delta: int = 0
    # A Mint/Burn as the token emitted it (index_ray != 0): the shard, which knows the
    # previous scaled balance, recovers the exact scaled delta by the version's rules.
    value: int = 0
    balance_increase: int = 0
    index_ray: int = 0
    burn: bool = False
    principal: int = 0
    rate: int | None = None
    timestamp: int = 0
    enabled: bool = False
    category: int = 0


@dataclass(slots=True)
class AaveShardInput:
    chain_id: int = 0
    pool: str = ""
    events: list[AccountEvent] = field(default_factory=list)
    reserves: dict[str, ReserveInfo] = field(default_factory=dict)
    rates: dict[str, ReserveRates] = field(default_factory=dict)
    prices: dict[str, OraclePrice] = field(default_factory=dict)
    emode: dict[int, EModeInfo] = field(default_factory=dict)
    # Wallet watch mode: accounts as read with eth_call at this block, after its events.
    seeds: list[AaveAccount] = field(default_factory=list)
    # The Aave version in force (events.VERSIONS), sent when it changes ("": unchanged).
    version: str = ""


@dataclass(slots=True)
class AaveMarketOutput:
    reserves: list[ReserveInfo] = field(default_factory=list)
    rates: list[ReserveRates] = field(default_factory=list)
    prices: list[OraclePrice] = field(default_factory=list)
    emode: list[EModeInfo] = field(default_factory=list)
    dead: list[tuple[RawLog, str]] = field(default_factory=list)
    liquidations: list[tuple[RawLog, ev.LiquidationCall]] = field(default_factory=list)
    # (revision, version) when the version in force was set or changed at this block
    # (revision 0: pinned by the chain config).
    version: tuple[int, str] | None = None
    pool: str = ""  # the Pool these are of


@dataclass(slots=True)
class AaveMarket:
    chain_id: int
    pool: str
    configurator: str
    oracle: str
    shards: int
    reserves: dict[str, ReserveInfo] = field(default_factory=dict)
    rates: dict[str, ReserveRates] = field(default_factory=dict)
    emode: dict[int, EModeInfo] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # asset -> oracle source
    # source -> the contract whose logs carry its answers: a proxy's current aggregator,
    # else the source itself (polled sources have none that matter)
    emitters: dict[str, str] = field(default_factory=dict)
    feed_assets: dict[str, set[str]] = field(default_factory=dict)  # emitter -> assets
    prices: dict[str, OraclePrice] = field(default_factory=dict)
    # token contract -> (role, asset)
    tokens: dict[str, tuple[ev.AaveRole, str]] = field(default_factory=dict)
    asset_shards: dict[str, set[int]] = field(default_factory=dict)
    # Wallet watch mode: only these users' accounts are kept (None: every account).
    users: set[str] | None = None
    # The version in force (events.VERSIONS): pinned by the chain config, else from the
    # Pool's revision as the reader reads it (first block, each Upgraded of the Pool proxy).
    version: str = DEFAULT_VERSION
    revision: int = 0
    pinned: bool = False
    announced: bool = False
    # reserve id -> asset: ReserveInitialized takes the first free id, ReserveDropped frees it
    # (PoolLogic.executeInitReserve), as the pool's reserves list does.
    reserve_list: dict[int, str] = field(default_factory=dict)

    def role_of(self, address: str) -> tuple[ev.AaveRole, str] | None:
        found = self.tokens.get(address)
        if found is not None:
            return found
        if address == self.pool:
            return ev.AaveRole.POOL, ""
        if address == self.configurator:
            return ev.AaveRole.CONFIGURATOR, ""
        if address == self.oracle:
            return ev.AaveRole.ORACLE, ""
        if address in self.feed_assets:
            return ev.AaveRole.FEED, ""
        return None

    def step(
        self,
        logs: list[RawLog],
        block: BlockRef,
        token_info: dict[str, TokenInfo],
        route: dict[int, AaveShardInput],
        revision: int | None = None,
    ) -> AaveMarketOutput:
        """Apply a block's Aave logs; fill `route` (shard -> input) with what each shard needs.
        Prices read with eth_call at the block's end follow with `read_prices`.

        `revision`: the Pool's `POOL_REVISION()` read at this block (its first, or one whose
        logs upgrade the Pool proxy); its rules apply from this block on."""
        out = AaveMarketOutput()
        if self.pinned:
            if not self.announced:
                self._announce(0, out, route)
        elif revision is not None:
            self._set_revision(revision, out, route)
        changed_rates: set[str] = set()
        changed_prices: set[str] = set()
        changed_reserves: set[str] = set()

        def to_shard(event: AccountEvent) -> None:
            if self.users is not None and event.user not in self.users:
                return
            shard = shard_of(account_id(self.chain_id, self.pool, event.user), self.shards)
            item = route.setdefault(shard, AaveShardInput(self.chain_id, self.pool))
            item.events.append(event)
            if event.asset:
                self.asset_shards.setdefault(event.asset, set()).add(shard)
                # What a shard needs to value an account that just touched this reserve.
                if event.asset in self.reserves:
                    item.reserves[event.asset] = self.reserves[event.asset]
                if event.asset in self.rates:
                    item.rates[event.asset] = self.rates[event.asset]
                if event.asset in self.prices:
                    item.prices[event.asset] = self.prices[event.asset]
            if event.kind == "emode" or not item.emode:
                item.emode.update(self.emode)

        for log in logs:
            found = self.role_of(log.address)
            if found is None:
                continue
            role, asset = found
            try:
                event = ev.decode(role, log)
            except ev.DecodeError as exc:
                out.dead.append((log, str(exc)))
                continue
            if event is None:
                continue
            at = (log.log_index, log.tx_hash)
            if isinstance(event, ev.ScaledDelta):
                kind = "supply_scaled" if role is ev.AaveRole.A_TOKEN else "debt_scaled"
                if event.moves_balance:
                    to_shard(
                        AccountEvent(
                            kind,
                            event.user,
                            *at,
                            asset,
                            value=event.value,
                            balance_increase=event.balance_increase,
                            index_ray=event.index_ray,
                            burn=event.burn,
                        )
                    )
            elif isinstance(event, ev.ScaledTransfer):
                if event.sender != event.recipient and event.scaled:
                    to_shard(
                        AccountEvent(
                            "supply_scaled", event.sender, *at, asset, scaled_delta=-event.scaled
                        )
                    )
                    to_shard(
                        AccountEvent(
                            "supply_scaled", event.recipient, *at, asset, scaled_delta=event.scaled
                        )
                    )
            elif isinstance(event, ev.StableDebtChanged):
                to_shard(
                    AccountEvent(
                        "stable",
                        event.user,
                        *at,
                        asset,
                        principal=event.principal,
                        rate=event.rate,
                        timestamp=block.timestamp,
                    )
                )
            elif isinstance(event, ev.CollateralToggled):
                to_shard(
                    AccountEvent(
                        "collateral", event.user, *at, event.reserve, enabled=event.enabled
                    )
                )
            elif isinstance(event, ev.UserEModeSet):
                to_shard(AccountEvent("emode", event.user, *at, category=event.category))
            elif isinstance(event, ev.LiquidationCall):
                if self.users is None or event.user in self.users:
                    out.liquidations.append((log, event))
            elif isinstance(event, ev.ReserveDataUpdated):
                self.rates[event.reserve] = ReserveRates(
                    event.reserve,
                    event.liquidity_rate,
                    event.stable_borrow_rate,
                    event.variable_borrow_rate,
                    event.liquidity_index,
                    event.variable_borrow_index,
                    block.timestamp,
                )
                changed_rates.add(event.reserve)
            elif isinstance(event, ev.ReserveInitialized):
                info = token_info.get(event.asset) or TokenInfo(event.asset, "???", 18)
                self.reserves[event.asset] = ReserveInfo(
                    event.asset,
                    event.a_token,
                    event.stable_debt_token,
                    event.variable_debt_token,
                    info.symbol,
                    info.decimals,
                    reserve_id=self._take_reserve_id(event.asset),
                )
                self._watch_tokens(self.reserves[event.asset])
                changed_reserves.add(event.asset)
            elif isinstance(event, ev.ReserveDropped):
                dropped = self.reserves.get(event.asset)
                if dropped is not None and self.reserve_list.get(dropped.reserve_id) == event.asset:
                    del self.reserve_list[dropped.reserve_id]
            elif isinstance(event, ev.AssetInEModeChanged):
                if self._set_emode_bit(event, out, route):
                    changed_reserves.add(event.asset)
            elif isinstance(event, ev.EModeCategoryIsolationChanged):
                current = self.emode.get(event.category)
                if current is not None:
                    self._put_emode(replace(current, isolated=event.isolated), out, route)

            elif isinstance(event, ev.CollateralConfigurationChanged):
                if event.asset in self.reserves:
                    self.reserves[event.asset] = replace(
                        self.reserves[event.asset],
                        ltv=event.ltv,
                        liquidation_threshold=event.liquidation_threshold,
                        liquidation_bonus=event.liquidation_bonus,
                    )
                    changed_reserves.add(event.asset)
            elif isinstance(event, ev.EModeAssetCategoryChanged):
                if event.asset in self.reserves:
                    self.reserves[event.asset] = replace(
                        self.reserves[event.asset], emode_category=event.category
                    )
                    changed_reserves.add(event.asset)
            elif isinstance(event, ev.EModeCategoryAdded):
                # Also emitted when a category is reconfigured: its bitmaps stay (3.2+).
                current = self.emode.get(event.category)
                category = EModeInfo(
                    event.category,
                    event.ltv,
                    event.liquidation_threshold,
                    event.liquidation_bonus,
                    event.price_source,
                )
                if current is not None:
                    category = replace(
                        current,
                        ltv=event.ltv,
                        liquidation_threshold=event.liquidation_threshold,
                        liquidation_bonus=event.liquidation_bonus,
                        price_source=event.price_source,
                    )
                self._put_emode(category, out, route)
            elif isinstance(event, ev.AssetSourceUpdated):
                # Its price at this block is read with eth_call at the block's end (the
                # reader always reads a source where it is announced): `read_prices`.
                self._set_source(event.asset, event.source)
            elif isinstance(event, ev.AnswerUpdated):
                for feed_asset in sorted(self.feed_assets.get(log.address, ())):
                    self.prices[feed_asset] = OraclePrice(
                        feed_asset,
                        event.answer,
                        event.round_id,
                        event.updated_at,
                        self.sources.get(feed_asset, log.address),
                        block.number,
                    )
                    changed_prices.add(feed_asset)
        self._fan_out(out, route, changed_rates, changed_prices, changed_reserves)
        return out

    # Pool version, reserve ids, eMode categories ------------------------------------------

    def pin(self, version: str) -> None:
        """The chain config's `[aave_v3] version`: revisions read from the chain are ignored."""
        self.version, self.pinned, self.announced = version, True, False

    def _set_revision(
        self, revision: int, out: AaveMarketOutput, route: dict[int, AaveShardInput]
    ) -> None:
        if revision == self.revision:
            return
        try:
            version = version_of_revision(revision)
        except ValueError:
            # Not an Aave V3 Pool revision (0: no pool there yet): keep the rules in force.
            return
        self.revision, self.version = revision, version
        self._announce(revision, out, route)

    def _announce(
        self, revision: int, out: AaveMarketOutput, route: dict[int, AaveShardInput]
    ) -> None:
        """The version in force from this block on: stored, and sent to every shard."""
        self.announced = True
        out.version = (revision, self.version)
        for shard in range(self.shards):
            item = route.setdefault(shard, AaveShardInput(self.chain_id, self.pool))
            item.version = self.version

    def _take_reserve_id(self, asset: str) -> int:
        for reserve_id, listed in self.reserve_list.items():
            if listed == asset:
                return reserve_id
        free = 0
        while free in self.reserve_list:
            free += 1
        self.reserve_list[free] = asset
        return free

    def _watch_tokens(self, info: ReserveInfo) -> None:
        self.tokens[info.a_token] = (ev.AaveRole.A_TOKEN, info.asset)
        self.tokens[info.variable_debt_token] = (ev.AaveRole.VARIABLE_DEBT, info.asset)
        # Reserves listed since 3.2 have no stable debt token (stableDebtToken = 0x0).
        if int(info.stable_debt_token, 16):
            self.tokens[info.stable_debt_token] = (ev.AaveRole.STABLE_DEBT, info.asset)

    def _put_emode(
        self, category: EModeInfo, out: AaveMarketOutput, route: dict[int, AaveShardInput]
    ) -> None:
        self.emode[category.category] = category
        out.emode = [c for c in out.emode if c.category != category.category] + [category]
        for item in route.values():
            item.emode[category.category] = category
        # Accounts in this category live in any shard: each gets the new category.
        for shard in range(self.shards):
            item = route.setdefault(shard, AaveShardInput(self.chain_id, self.pool))
            item.emode[category.category] = category

    def _set_emode_bit(
        self, event: ev.AssetInEModeChanged, out: AaveMarketOutput, route: dict[int, AaveShardInput]
    ) -> bool:
        info = self.reserves.get(event.asset)
        if info is None or info.reserve_id < 0:
            return False
        known = self.emode.get(event.category) or EModeInfo(event.category, 0, 0, 0, _ZERO)
        field_name = f"{event.bitmap}_bitmap"
        bit = 1 << info.reserve_id
        bitmap = getattr(known, field_name)
        bitmap = bitmap | bit if event.enabled else bitmap & ~bit
        self._put_emode(replace(known, **{field_name: bitmap}), out, route)
        return True

    def _set_source(self, asset: str, source: str) -> None:
        old = self.sources.get(asset)
        if old is not None:
            self.feed_assets.get(self.emitters.get(old, old), set()).discard(asset)
        self.sources[asset] = source
        emitter = self.emitters.setdefault(source, source)
        self.feed_assets.setdefault(emitter, set()).add(asset)

    def read_prices(
        self, reads: Mapping[str, SourceRead], block: BlockRef, route: dict[int, AaveShardInput]
    ) -> AaveMarketOutput:
        """Apply the sources as read at the end of this block (after its logs and any seed):
        a proxy's aggregator (a new one is followed from here on: a new phase) and the price
        `AaveOracle.getAssetPrice` gives, stale with the reason when it cannot be read."""
        out = AaveMarketOutput()
        changed: set[str] = set()
        swapped: set[str] = set()
        own = set(self.sources.values())
        for source, read in sorted(reads.items()):
            if source not in own:
                continue  # the chain config's own feeds, read alongside (protocols/prices.py)
            if read.kind == "proxy" and read.aggregator:
                old = self.emitters.get(source, source)
                if old != read.aggregator:
                    swapped.add(source)
                    moved = {a for a, s in self.sources.items() if s == source}
                    if old in self.feed_assets:
                        self.feed_assets[old] -= moved
                    self.emitters[source] = read.aggregator
                    self.feed_assets.setdefault(read.aggregator, set()).update(moved)
        for asset, source in sorted(self.sources.items()):
            found = reads.get(source)
            if found is None or self._logged(asset, found, swapped):
                continue
            price = oracle_price(asset, found, self.prices.get(asset), block.number)
            if not same_price(self.prices.get(asset), price):
                self.prices[asset] = price
                changed.add(asset)
        self._fan_out(out, route, set(), changed, set())
        return out

    def _logged(self, asset: str, read: SourceRead, swapped: set[str]) -> bool:
        """A feed's (or a proxy's, on the same aggregator) answer changes only with a round,
        and every round logs it (`AnswerUpdated`): the logs already gave the price, and the
        read adds nothing but the chance of a node answering for another block. The read
        counts where the logs cannot say: at the source's first read, on a new aggregator,
        when it fails (stale) or gives no positive answer (the fallback), and on recovery."""
        current = self.prices.get(asset)
        return (
            read.kind in ("feed", "proxy")
            and read.source not in swapped
            and read.answer is not None
            and read.answer > 0
            and current is not None
            and not current.stale
            and current.feed == read.source
            and current.answer > 0
        )

    def _fan_out(
        self,
        out: AaveMarketOutput,
        route: dict[int, AaveShardInput],
        changed_rates: set[str],
        changed_prices: set[str],
        changed_reserves: set[str],
    ) -> None:
        out.reserves = [self.reserves[a] for a in sorted(changed_reserves)]
        out.rates = [self.rates[a] for a in sorted(changed_rates)]
        out.prices = [self.prices[a] for a in sorted(changed_prices)]
        # Fan-out: a reserve's new rates, configuration or price go to every shard holding an
        # account exposed to that reserve, within this block.
        for asset in changed_rates | changed_prices | changed_reserves:
            for shard in self.asset_shards.get(asset, ()):
                item = route.setdefault(shard, AaveShardInput(self.chain_id, self.pool))
                if asset in changed_rates:
                    item.rates[asset] = self.rates[asset]
                if asset in changed_prices:
                    item.prices[asset] = self.prices[asset]
                if asset in changed_reserves:
                    item.reserves[asset] = self.reserves[asset]

    def seed(
        self, seed: AaveSeed, block: BlockRef, route: dict[int, AaveShardInput]
    ) -> AaveMarketOutput:
        """Wallet watch mode: take reserves, rates, oracle sources and answers and eMode
        categories read at this block (for reserves not followed yet), and open the watched
        accounts as read then, each as one version per reserve after the block's logs."""
        out = AaveMarketOutput()
        if self.users is None:
            self.users = set()
        for info in seed.reserves:
            self.reserves[info.asset] = info
            if info.reserve_id >= 0:
                self.reserve_list[info.reserve_id] = info.asset
            self._watch_tokens(info)
        for rate in seed.rates:
            self.rates[rate.asset] = rate
        for price in seed.prices:
            self._set_source(price.asset, price.feed)
            self.prices[price.asset] = price
        for category in seed.emode:
            self.emode[category.category] = category
            out.emode.append(category)
        for account in seed.accounts:
            if account.user in self.users:
                continue  # already watched: its events keep it current
            self.users.add(account.user)
            shard = shard_of(account.account_id, self.shards)
            item = route.setdefault(shard, AaveShardInput(self.chain_id, self.pool))
            item.emode.update(self.emode)
            item.seeds.append(account)
            for asset in account.reserves:
                self.asset_shards.setdefault(asset, set()).add(shard)
                if asset in self.reserves:
                    item.reserves[asset] = self.reserves[asset]
                if asset in self.rates:
                    item.rates[asset] = self.rates[asset]
                if asset in self.prices:
                    item.prices[asset] = self.prices[asset]
        self._fan_out(
            out,
            route,
            {r.asset for r in seed.rates},
            {p.asset for p in seed.prices},
            {r.asset for r in seed.reserves},
        )
        if seed.source_reads:
            # A proxy's aggregator as read then: its logs carry the seeded prices from here on.
            read = self.read_prices({r.source: r for r in seed.source_reads}, block, route)
            known = {p.asset for p in read.prices}
            out.prices = [p for p in out.prices if p.asset not in known] + read.prices
        return out


# ---------------------------------------------------------------------------------------------
# Account shards


@dataclass(frozen=True, slots=True)
class AccountVersion:
    account: AaveAccount
    asset: str  # the reserve that changed ("" for an eMode change)
    block: BlockRef
    log_index: int
    tx_hash: str
    event: str


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    account: AaveAccount
    value: AccountValue
    block: BlockRef
    updated_block: int
    reserves: Mapping[str, ReserveInfo]  # symbols and decimals for the wire format


class _Cache(dict[str, tuple[str, AccountValue]]):
    """A dict that pickles (and copies) empty: what it holds can be computed again."""

    def __reduce__(self) -> tuple[type[_Cache], tuple[()]]:
        return _Cache, ()


@dataclass(slots=True)
class AaveShard:
    chain_id: int = 0
    pool: str = ""
    accounts: dict[str, AaveAccount] = field(default_factory=JournaledDict)
    updated_block: dict[str, int] = field(default_factory=JournaledDict)
    reserves: dict[str, ReserveInfo] = field(default_factory=dict)
    rates: dict[str, ReserveRates] = field(default_factory=dict)
    prices: dict[str, OraclePrice] = field(default_factory=dict)
    emode: dict[int, EModeInfo] = field(default_factory=dict)
    asset_accounts: dict[str, set[str]] = field(default_factory=JournaledObjects)
    unvalued: set[str] = field(default_factory=set)
    # Accounts whose inputs changed since the last window boundary (protocols.windows).
    window_dirty: set[str] = field(default_factory=set)
    version: str = DEFAULT_VERSION
    # Each account's value at the last checkpoint that valued it, with that block's hash: a
    # window boundary right after it observes that same block's state, so it takes the value
    # rather than computing it again. A hash names one block on one fork, so a value of a
    # block a reorg retracted is never taken. Only a cache: not compared, pickled empty
    # (undo copies, snapshots).
    valued: dict[str, tuple[str, AccountValue]] = field(default_factory=_Cache, compare=False)


def _scaled_delta(e: AccountEvent, previous_scaled: int, version: am.AaveVersion) -> int:
    """The scaled-balance change behind a token Mint/Burn, exactly as the token applied it."""
    debt = e.kind == "debt_scaled"
    try:
        return am.scaled_delta_from_event(
            burn=e.burn,
            value=e.value,
            balance_increase=e.balance_increase,
            index=e.index_ray,
            previous_scaled=previous_scaled,
            debt=debt,
            version=version,
        )
    except am.MathError:
        # The event disagrees with the scaled balance we hold (an account first seen after
        # its opening events, in a window the flow did not read): take the amount the token
        # scaled, by the direction TokenMath uses, as the nearest reading.
        amount = am.mint_burn_amount(
            burn=e.burn, value=e.value, balance_increase=e.balance_increase
        )
        scale = am.ray_div_ceil if (amount >= 0) == debt else am.ray_div_floor
        scaled = scale(abs(amount), e.index_ray)
        return scaled if amount >= 0 else -scaled


def apply_account_event(
    account: AaveAccount, e: AccountEvent, version: am.AaveVersion = am.V3_0_2
) -> AaveAccount:
    if e.kind == "emode":
        return replace(account, emode=e.category)
    current = account.reserves.get(e.asset) or AccountReserveState(e.asset)
    if e.kind == "supply_scaled":
        delta = e.scaled_delta
        if e.index_ray:
            delta = _scaled_delta(e, current.scaled_supply, version)
        current = replace(current, scaled_supply=current.scaled_supply + delta)
    elif e.kind == "debt_scaled":
        delta = e.scaled_delta
        if e.index_ray:
            delta = _scaled_delta(e, current.scaled_variable_debt, version)
        current = replace(current, scaled_variable_debt=current.scaled_variable_debt + delta)
    elif e.kind == "stable":
        current = replace(
            current,
            stable_principal=e.principal,
            stable_rate=current.stable_rate if e.rate is None else e.rate,
            stable_updated=e.timestamp if e.principal else 0,
        )
        if not e.principal:
            current = replace(current, stable_rate=0)
    elif e.kind == "collateral":
        current = replace(current, collateral=e.enabled)
    reserves = dict(account.reserves)
    reserves[e.asset] = current
    return replace(account, reserves=reserves)


@lru_cache(maxsize=16)
def math_version(version: str) -> am.AaveVersion:
    """The math's rules object for a version name (schemas.lending.AAVE_VERSIONS)."""
    return am.AaveVersion.parse(version)


def version_of_revision(revision: int) -> str:
    """The version name (schemas.lending.AAVE_VERSIONS) of a Pool answering POOL_REVISION()
    = `revision`. A revision newer than any known follows the newest rules (the nearest
    guess; a chain config can pin the version); 0 or an unknown older one is a ValueError."""
    if revision > max(am.POOL_REVISIONS):
        return AAVE_VERSIONS[-1]
    found = am.AaveVersion.from_pool_revision(revision)
    return DEFAULT_VERSION if found < am.V3_1 else f"{found.major}.{found.minor}"


@lru_cache(maxsize=4096)
def normalized_indices(
    rate: ReserveRates, timestamp: int, version: am.AaveVersion = am.V3_0_2
) -> tuple[int, int]:
    """A reserve's normalized income and debt at a block time: the same for every account of
    the reserve in that block, so a price update over 10,000 accounts computes them once."""
    return (
        am.normalized_income(
            rate.liquidity_index, rate.liquidity_rate, rate.last_update, timestamp, version
        ),
        am.normalized_variable_debt(
            rate.variable_borrow_index,
            rate.variable_borrow_rate,
            rate.last_update,
            timestamp,
            version,
        ),
    )


@lru_cache(maxsize=256)
def _categories(
    emode: tuple[tuple[int, EModeInfo], ...], version: am.AaveVersion
) -> dict[int, am.EModeCategory]:
    # v3.0.2 eMode categories may name their own price source; none of the markets defimon
    # deploys does, and reading it would need that source's feed (left for later). Since 3.2
    # a category applies to the reserves of its bitmaps (None before: the reserve's field).
    bitmaps = version.emode_bitmaps
    return {
        c: am.EModeCategory(
            i.ltv,
            i.liquidation_threshold,
            i.liquidation_bonus,
            collateral_bitmap=i.collateral_bitmap if bitmaps else None,
            borrowable_bitmap=i.borrowable_bitmap if bitmaps else None,
            ltvzero_bitmap=i.ltvzero_bitmap,
            isolated=i.isolated,
        )
        for c, i in emode
    }


def value_account(
    account: AaveAccount,
    reserves: dict[str, ReserveInfo],
    rates: dict[str, ReserveRates],
    prices: dict[str, OraclePrice],
    emode: dict[int, EModeInfo],
    timestamp: int,
    *,
    version: str = DEFAULT_VERSION,
) -> AccountValue:
    """The account as `Pool.getUserAccountData` sees it at a block with this timestamp, by
    the rules of the Aave `version` in force then."""
    return Valuer(reserves, rates, prices, emode, timestamp, version).value(account)


# What every account valued at one block shares about one reserve: its configuration, its
# normalized income and debt, its price (0: none), why that price is stale ("" if it is not)
# and 10**decimals.
_ReserveAt = tuple[ReserveInfo, int, int, int, str, int]


class Valuer:
    """Values accounts at one block as `getUserAccountData` does (`value_account`), computing
    what the block's accounts share once rather than per account: each reserve's accrued
    indices, price and staleness, and GenericLogic's terms of each (reserve, eMode category,
    collateral bit). Every account's own figures (balances, its reserves' collateral and debt
    in base units, each rounded on its own as GenericLogic rounds them, and their sums) are
    still computed from its own integers: the result is the same, to the wei, as valuing the
    account alone. One walk over an account gives its health factor and every liquidation
    price (each is the totals less the asset's own part)."""

    __slots__ = (
        "_at",
        "_categories",
        "_prices",
        "_rates",
        "_reserves",
        "_rules",
        "_terms",
        "_timestamp",
    )

    def __init__(
        self,
        reserves: Mapping[str, ReserveInfo],
        rates: Mapping[str, ReserveRates],
        prices: Mapping[str, OraclePrice],
        emode: Mapping[int, EModeInfo],
        timestamp: int,
        version: str = DEFAULT_VERSION,
    ) -> None:
        self._reserves, self._rates, self._prices = reserves, rates, prices
        self._timestamp = timestamp
        self._rules = math_version(version)
        self._categories = _categories(tuple(sorted(emode.items())), self._rules)
        self._at: dict[str, _ReserveAt | None] = {}
        self._terms: dict[tuple[str, int, bool], am.ReserveTerms] = {}

    def _reserve_at(self, asset: str) -> _ReserveAt | None:
        info, rate = self._reserves.get(asset), self._rates.get(asset)
        if info is None or rate is None:
            return None  # not valued: no configuration or indices yet
        income, debt_index = normalized_indices(rate, self._timestamp, self._rules)
        price = self._prices.get(asset)
        # A stale price keeps its last good answer (0 only if there never was one: the value
        # then says so in `stale`).
        answer = price.answer if price is not None and price.answer > 0 else 0
        return info, income, debt_index, answer, _stale_reason(price), 10**info.decimals

    def value(self, account: AaveAccount) -> AccountValue:
        rules, timestamp, known = self._rules, self._timestamp, self._at
        held_rows = []
        for asset, held in sorted(account.reserves.items()):
            if asset in known:
                at = known[asset]
            else:
                at = known[asset] = self._reserve_at(asset)
            if at is None:
                continue
            supplied = am.a_token_balance(held.scaled_supply, at[1], rules)
            debt = am.variable_debt_balance(held.scaled_variable_debt, at[2], rules)
            if held.stable_principal:
                debt += am.stable_debt_balance(
                    held.stable_principal, held.stable_rate, held.stable_updated, timestamp
                )
            held_rows.append((asset, held.collateral, at, supplied, debt))
        user_emode = account.emode
        # Raises for a category not supplied, as account_data does (even with no reserve).
        emode = am.emode_for(user_emode, self._categories)
        parts = []
        for asset, collateral, at, supplied, debt in held_rows:
            key = (asset, user_emode, collateral)
            terms = self._terms.get(key)
            if terms is None:
                terms = self._terms[key] = am.reserve_terms(
                    _kind_of(asset, at[0], at[3], collateral), user_emode, emode, rules
                )
            parts.append(am.reserve_part(terms, supplied, debt, True, at[5], rules))
        collateral_total, total_debt, avg_ltv, avg_lt, health, _, weighted = am.account_sums(
            parts, rules
        )
        values = []
        stale = []
        for (asset, collateral, at, supplied, debt), (terms, collateral_base, debt_base) in zip(
            held_rows, parts, strict=True
        ):
            liquidation = None
            if collateral and supplied and total_debt:
                own = terms.counts_as_collateral
                liquidation = am.liquidation_price_from(
                    at[5],
                    weighted - (collateral_base * terms.liquidation_threshold if own else 0),
                    total_debt - debt_base,
                    supplied * terms.liquidation_threshold if own else 0,
                    debt,
                )
            reason = at[4]
            values.append(
                ReserveValue(asset, supplied, debt, at[3], collateral, liquidation, reason)
            )
            if reason and (supplied or debt):
                stale.append(f"{at[0].symbol}: {reason}")
        return AccountValue(
            collateral_total, total_debt, avg_ltv, avg_lt, health, tuple(values), tuple(stale)
        )


def _kind_of(asset: str, info: ReserveInfo, price: int, collateral: bool) -> am.AccountReserve:
    """A reserve as `reserve_terms` reads it: configuration, price and collateral bit (no
    balances: the terms do not depend on them)."""
    return am.AccountReserve(
        asset=asset,
        decimals=info.decimals,
        price=price,
        collateral_enabled=collateral,
        ltv=info.ltv,
        liquidation_threshold=info.liquidation_threshold,
        emode_category=info.emode_category,
        a_token_balance=0,
        debt=0,
        reserve_id=info.reserve_id,
    )


def _stale_reason(price: OraclePrice | None) -> str:
    if price is None:
        return "no price read from the oracle yet"
    if price.stale:
        return price.stale
    return "" if price.answer > 0 else f"the oracle answered {price.answer}"


def shard_step(
    state: AaveShard, item: AaveShardInput, block: BlockRef, checkpoint: bool
) -> tuple[list[AccountVersion], list[AccountUpdate]]:
    """Apply one block's account events; value the changed accounts at checkpoints."""
    if item.pool:
        state.chain_id, state.pool = item.chain_id, item.pool
    chain_id, pool = state.chain_id, state.pool
    state.reserves.update(item.reserves)
    state.rates.update(item.rates)
    state.prices.update(item.prices)
    state.emode.update(item.emode)
    versions: list[AccountVersion] = []
    changed: set[str] = set()
    if item.version and item.version != state.version:
        # New rules from this block on (rounding, eMode): every account is valued again.
        state.version = item.version
        changed |= set(state.accounts)
    for index, seeded in enumerate(item.seeds):
        # The account as the contracts hold it at this block: one version per reserve (each
        # row carries that reserve's whole state), after the block's own events.
        aid = seeded.account_id
        state.accounts[aid] = seeded
        state.updated_block[aid] = block.number
        assets = sorted(seeded.reserves) or [""]
        for offset, asset in enumerate(assets):
            if asset:
                state.asset_accounts.setdefault(asset, set()).add(aid)
            at = SEED_LOG_INDEX + index * 4096 + offset
            versions.append(AccountVersion(seeded, asset, block, at, "", "watch"))
        changed.add(aid)
    for e in item.events:
        aid = account_id(chain_id, pool, e.user)
        account = state.accounts.get(aid) or AaveAccount(chain_id, pool, e.user, aid, 0, {})
        account = apply_account_event(account, e, math_version(state.version))
        state.accounts[aid] = account
        state.updated_block[aid] = block.number
        if e.asset:
            state.asset_accounts.setdefault(e.asset, set()).add(aid)
        versions.append(AccountVersion(account, e.asset, block, e.log_index, e.tx_hash, e.kind))
        changed.add(aid)
    for asset in set(item.rates) | set(item.prices) | set(item.reserves):
        changed |= state.asset_accounts.get(asset, set())
    if item.emode:
        changed |= {a for a, acc in state.accounts.items() if acc.emode}
    state.unvalued |= changed
    state.window_dirty |= changed
    updates: list[AccountUpdate] = []
    if not checkpoint:
        return versions, updates
    reserves = dict(state.reserves)  # one snapshot per block, shared by its updates
    valuer = Valuer(
        state.reserves, state.rates, state.prices, state.emode, block.timestamp, state.version
    )
    valued = state.valued
    for aid in sorted(state.unvalued):
        account = state.accounts[aid]
        value = valuer.value(account)
        valued[aid] = (block.hash, value)
        updates.append(
            AccountUpdate(account, value, block, state.updated_block.get(aid, 0), reserves)
        )
    state.unvalued.clear()
    return versions, updates


def holds_anything(account: AaveAccount) -> bool:
    return any(
        r.scaled_supply or r.scaled_variable_debt or r.stable_principal
        for r in account.reserves.values()
    )


def observe_accounts(state: AaveShard, book: WindowBook, block: BlockRef) -> set[str]:
    """Observe, for the windows, every account that holds something, as of `block` (the last
    before the boundary: the state as it is now).

    Unlike an LP position, an account changes with time alone (interest), so every account
    in the book is valued at the block, not only those whose inputs changed: a window's close
    is then what `getUserAccountData` said at the window's last block. An account valued at
    that very block (a checkpoint: live, every block) takes that value; the others are valued
    now. An account that holds nothing
    is dormant: its windows close as they end, and it leaves the book when its day window ends
    empty, coming back with its next supply; one never seen holding anything is not observed.
    """
    observed: set[str] = set()
    in_book = {aid for aid in book.subjects if aid in state.accounts}
    valuer = Valuer(
        state.reserves, state.rates, state.prices, state.emode, block.timestamp, state.version
    )
    valued = state.valued
    for aid in sorted(state.window_dirty | in_book):
        account = state.accounts.get(aid)
        if account is None:
            continue
        held = holds_anything(account)
        if not held and aid not in book.subjects:
            continue
        cached = valued.get(aid)
        if cached is not None and cached[0] == block.hash:
            value = cached[1]
        else:
            value = valuer.value(account)
        book.observe(
            Subject(account.chain_id, aid, account.protocol, account.user),
            Observation(
                value_usd=(value.total_collateral_base - value.total_debt_base) / BASE_UNIT,
                health_factor=health_factor_float(value.health_factor),
                dormant=not held,
            ),
        )
        observed.add(aid)
    state.window_dirty.clear()
    return observed
