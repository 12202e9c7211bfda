"""Morpho Blue as the flow sees it (protocols/spec.py): its market part follows the Morpho
contract's markets and positions from its logs (state.py) and what the reader read at the block
(each market oracle's `price()` and its IRM's `borrowRateView`: reader.py); its shard part keeps
the accounts (one user in one isolated market) and values them at the block's own time, as
`MorphoBalancesLib` and `_isHealthy` do; rows (rows.py), stream events, windows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

from protocols.abi import DecodeError
from protocols.base import DeadLetter, shard_of
from protocols.morpho_blue import events as ev
from protocols.morpho_blue import rows
from protocols.morpho_blue.read import READ_SIDE
from protocols.morpho_blue.reader import NAME, MarketRead, MorphoReader
from protocols.morpho_blue.state import Market, MorphoBlueState, Position, StateError
from protocols.morpho_blue.value import MarketSnapshot, account_value
from protocols.spec import BusEntry, MarketBlock, MarketPart, Plugin, ShardPart, bus_event
from protocols.windows import Observation, Subject, WindowBook, WindowBoundary
from schemas.chain_config import ChainConfig
from schemas.morpho import (
    PROTOCOL_MORPHO_BLUE,
    MorphoAccountValue,
    MorphoMarketInfo,
    account_id,
    morpho_account_json,
)
from schemas.positions import BlockRef, TokenPrice
from schemas.stream import BusEvent

assert NAME == PROTOCOL_MORPHO_BLUE

# ---------------------------------------------------------------------------------------------
# What the market stage sends a shard, and what it outputs


@dataclass(frozen=True, slots=True)
class PositionVersion:
    """position(id, user) after one event."""

    account_id: str
    market: str
    user: str
    position: Position
    log_index: int
    tx_hash: str
    event: str


@dataclass(slots=True)
class MorphoShardInput:
    chain_id: int = 0
    morpho: str = ""
    versions: list[PositionVersion] = field(default_factory=list)
    markets: dict[str, MarketSnapshot] = field(default_factory=dict)
    prices: dict[str, TokenPrice] = field(default_factory=dict)  # loan tokens' USD


@dataclass(slots=True)
class MorphoOutput:
    """The market stage's Morpho output for one block (rows: rows.py)."""

    morpho: str
    new_markets: list[MorphoMarketInfo] = field(default_factory=list)
    states: list[tuple[str, Market, str]] = field(default_factory=list)  # market, it, fee rcpt
    reads: list[tuple[str, int, int, str]] = field(default_factory=list)  # price, rate, stale


# ---------------------------------------------------------------------------------------------
# The market part


@dataclass(slots=True)
class MorphoMarket(MarketPart):
    chain_id: int
    morpho: str
    shards: int
    state: MorphoBlueState = field(default_factory=MorphoBlueState)
    infos: dict[str, MorphoMarketInfo] = field(default_factory=dict)
    # market -> the last good read, and why the latest one failed ('' when it did not)
    reads: dict[str, MarketRead] = field(default_factory=dict)
    stale: dict[str, str] = field(default_factory=dict)
    market_shards: dict[str, set[int]] = field(default_factory=dict)
    loan_markets: dict[str, set[str]] = field(default_factory=dict)  # loan token -> markets

    def _input(self, ctx: MarketBlock, shard: int) -> MorphoShardInput:
        return ctx.part(shard, NAME, lambda: MorphoShardInput(self.chain_id, self.morpho))

    def step(self, ctx: MarketBlock) -> MorphoOutput | None:
        block = ctx.block
        out = MorphoOutput(self.morpho)
        dirty: set[str] = set()
        for log in ctx.batch.logs:
            if log.address != self.morpho:
                continue
            try:
                event = ev.decode(log)
                changed = self.state.step(block.timestamp, [event])
            except (DecodeError, StateError) as exc:
                ctx.dead_letters.append(DeadLetter(log, str(exc), NAME))
                continue
            if isinstance(event, ev.CreateMarket):
                out.new_markets.append(self._created(ctx, event))
            dirty |= changed.markets
            for market, user in sorted(changed.accounts):
                aid = account_id(self.chain_id, self.morpho, market, user)
                shard = shard_of(aid, self.shards)
                self.market_shards.setdefault(market, set()).add(shard)
                kind = type(event).__name__
                position = self.state.position(market, user)
                self._input(ctx, shard).versions.append(
                    PositionVersion(aid, market, user, position, log.log_index, log.tx_hash, kind)
                )
                dirty.add(market)
        read: dict[str, MarketRead] = ctx.batch.reads.get(NAME) or {}
        for market, got in sorted(read.items()):
            if market not in self.state.markets:
                continue
            before, stale_before = self.reads.get(market), self.stale.get(market, "")
            if got.error:
                reason = f"oracle {self.infos[market].oracle} unreadable: {got.error}"
                self.stale[market] = stale_before or f"{reason} since block {block.number}"
                if before is not None:
                    # the rate is still a function of the stored totals: keep the new one if read
                    rate = got.borrow_rate if got.borrow_rate is not None else before.borrow_rate
                    self.reads[market] = MarketRead(before.price, rate)
            else:
                self.stale.pop(market, None)
                self.reads[market] = got
            now = self.reads.get(market)
            if now is not None and (now != before or self.stale.get(market, "") != stale_before):
                dirty.add(market)
                out.reads.append(
                    (market, now.price or 0, now.borrow_rate or 0, self.stale.get(market, ""))
                )
        for market in sorted(dirty):
            held = self.state.markets[market]
            out.states.append((market, held, self.state.fee_recipient))
            snapshot = self._snapshot(market)
            for shard in self.market_shards.get(market, ()):
                self._input(ctx, shard).markets[market] = snapshot
        if not (out.new_markets or out.states or out.reads):
            return None
        return out

    def _created(self, ctx: MarketBlock, event: ev.CreateMarket) -> MorphoMarketInfo:
        p = event.params
        loan, coll = ctx.token(p.loan_token), ctx.token(p.collateral_token)
        info = MorphoMarketInfo(
            event.id,
            p.loan_token,
            p.collateral_token,
            p.oracle,
            p.irm,
            p.lltv,
            loan.symbol,
            loan.decimals,
            coll.symbol,
            coll.decimals,
        )
        self.infos[event.id] = info
        self.loan_markets.setdefault(p.loan_token, set()).add(event.id)
        return info

    def _snapshot(self, market: str) -> MarketSnapshot:
        held = self.state.markets[market]
        read = self.reads.get(market)
        if read is not None and read.borrow_rate is not None:
            rate, exact = read.borrow_rate, True
        else:
            rate, exact = self.state.borrow_rate(held)
        return MarketSnapshot(
            self.infos[market],
            held,
            self.state.fee_recipient,
            None if read is None else read.price,
            rate,
            exact,
            self.stale.get(market, ""),
        )

    def priced(
        self, ctx: MarketBlock, out: MorphoOutput | None, changed: Sequence[TokenPrice]
    ) -> MorphoOutput | None:
        # A loan token's USD price goes to the shards of its markets; a shard that got a
        # market's snapshot gets the price with it (a new account needs both).
        for price in changed:
            for market in self.loan_markets.get(price.token, ()):
                for shard in self.market_shards.get(market, ()):
                    self._input(ctx, shard).prices[price.token] = price
        for item in ctx.inputs.values():
            mine = item.parts.get(NAME)
            if mine is None:
                continue
            for version in mine.versions:
                if version.market not in mine.markets:
                    mine.markets[version.market] = self._snapshot(version.market)
            for snapshot in mine.markets.values():
                token = snapshot.info.loan_token
                if token in ctx.prices:
                    mine.prices[token] = ctx.prices[token]
        return out


def morpho_market(config: ChainConfig, shards: int) -> MorphoMarket | None:
    cfg = config.morpho_blue
    if cfg is None:
        return None
    return MorphoMarket(config.chain_id, cfg.morpho, shards)


# ---------------------------------------------------------------------------------------------
# The shard part


@dataclass(frozen=True, slots=True)
class MorphoAccountUpdate:
    """An account valued at the end of a block: what the stream sends."""

    chain_id: int
    morpho: str
    user: str
    info: MorphoMarketInfo
    value: MorphoAccountValue
    block: BlockRef
    updated_block: int

    @property
    def account_id(self) -> str:
        return account_id(self.chain_id, self.morpho, self.info.market, self.user)

    def json(self) -> dict[str, object]:
        return morpho_account_json(
            self.chain_id,
            self.morpho,
            self.user,
            self.info,
            self.value,
            self.block,
            self.updated_block,
        )


@dataclass(slots=True)
class MorphoShardOutput:
    versions: list[PositionVersion] = field(default_factory=list)
    updates: list[MorphoAccountUpdate] = field(default_factory=list)


@dataclass(slots=True)
class MorphoShard(ShardPart):
    # account id -> (market, user, position)
    accounts: dict[str, tuple[str, str, Position]] = field(default_factory=dict)
    markets: dict[str, MarketSnapshot] = field(default_factory=dict)
    prices: dict[str, TokenPrice] = field(default_factory=dict)
    market_accounts: dict[str, set[str]] = field(default_factory=dict)
    updated_block: dict[str, int] = field(default_factory=dict)
    unvalued: set[str] = field(default_factory=set)
    window_dirty: set[str] = field(default_factory=set)
    chain_id: int = 0
    morpho: str = ""

    def step(
        self, item: MorphoShardInput | None, block: BlockRef, checkpoint: bool
    ) -> MorphoShardOutput | None:
        out = MorphoShardOutput()
        if item is not None:
            changed: set[str] = set()
            self.chain_id, self.morpho = item.chain_id, item.morpho
            self.markets.update(item.markets)
            self.prices.update(item.prices)
            for v in item.versions:
                self.accounts[v.account_id] = (v.market, v.user, v.position)
                self.market_accounts.setdefault(v.market, set()).add(v.account_id)
                self.updated_block[v.account_id] = block.number
                out.versions.append(v)
                changed.add(v.account_id)
            for market in item.markets:
                changed |= self.market_accounts.get(market, set())
            for token in item.prices:
                for market, snapshot in self.markets.items():
                    if snapshot.info.loan_token == token:
                        changed |= self.market_accounts.get(market, set())
            self.unvalued |= changed
            self.window_dirty |= changed
        if checkpoint and self.unvalued:
            for aid in sorted(self.unvalued):
                update = self._value(aid, block)
                if update is not None:
                    out.updates.append(update)
                market, _user, position = self.accounts[aid]
                if position.is_empty():
                    # Emptied: its last update (all zero) is out; it comes back with its next
                    # event. Its windows close as they end (dormant).
                    self.market_accounts.get(market, set()).discard(aid)
            self.unvalued.clear()
        return out if out.versions or out.updates else None

    def _view(self, aid: str, timestamp: int) -> MorphoAccountValue | None:
        market, user, position = self.accounts[aid]
        snapshot = self.markets.get(market)
        if snapshot is None:
            return None
        loan = self.prices.get(snapshot.info.loan_token)
        return account_value(
            snapshot, position, user, timestamp, None if loan is None else loan.usd
        )

    def _value(self, aid: str, block: BlockRef) -> MorphoAccountUpdate | None:
        value = self._view(aid, block.timestamp)
        if value is None:
            return None
        market, user, _ = self.accounts[aid]
        return MorphoAccountUpdate(
            self.chain_id,
            self.morpho,
            user,
            self.markets[market].info,
            value,
            block,
            self.updated_block.get(aid, block.number),
        )

    def observe(
        self, item: MorphoShardInput | None, windows: WindowBook, boundary: WindowBoundary
    ) -> set[str]:
        """Every account in the book or changed, at the boundary's time: interest accrues
        with time alone, so a window's close is the contract's view at its last block."""
        observed: set[str] = set()
        timestamp = boundary.last_block.timestamp
        in_book = {aid for aid in windows.subjects if aid in self.accounts}
        for aid in sorted(self.window_dirty | in_book):
            market, user, position = self.accounts[aid]
            held = not position.is_empty()
            if not held and aid not in windows.subjects:
                continue
            value = self._view(aid, timestamp)
            if value is None:
                continue
            json = morpho_account_json(
                self.chain_id,
                self.morpho,
                user,
                self.markets[market].info,
                value,
                boundary.last_block,
            )
            windows.observe(
                Subject(self.chain_id, aid, PROTOCOL_MORPHO_BLUE, user),
                Observation(
                    value_usd=json["value_usd"],
                    health_factor=json["health_factor_float"],
                    dormant=not held,
                ),
            )
            observed.add(aid)
        self.window_dirty.clear()
        return observed


# ---------------------------------------------------------------------------------------------
# Stream events and the plugin


def account_event(u: MorphoAccountUpdate) -> BusEvent:
    """Morpho accounts go out in the lending account shape."""
    return bus_event("account", u.block, u.json(), (u.user,))


def shard_bus(out: MorphoShardOutput, _block: BlockRef) -> Iterator[BusEntry]:
    for u in out.updates:
        yield u.account_id, partial(account_event, u)


PLUGIN = Plugin(
    name=NAME,
    read=READ_SIDE,
    market=morpho_market,
    shard=MorphoShard,
    tables=rows.TABLES,
    market_rows=rows.market_rows,
    shard_rows=rows.shard_rows,
    shard_bus=shard_bus,
    shard_updates=lambda out: len(out.updates),
    reader=MorphoReader.for_chain,
)
