"""Aave V3 as the flow sees it: its market part (the Pool's reserves, rates, eMode and oracle,
state.AaveMarket), its shard part (accounts, state.AaveShard), rows (rows.py) and stream
events. Its oracle's answers are price roots: they win over any pool route."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial

from protocols.aave_v3 import rows
from protocols.aave_v3.events import LiquidationCall
from protocols.aave_v3.read import READ_SIDE
from protocols.aave_v3.reader import NAME, aave_reader
from protocols.aave_v3.state import (
    AaveMarket,
    AaveMarketOutput,
    AaveShard,
    AaveShardInput,
    AccountUpdate,
    AccountVersion,
    account_id,
    observe_accounts,
    shard_step,
)
from protocols.base import DeadLetter
from protocols.prices import Anchor
from protocols.spec import (
    BusEntry,
    MarketBlock,
    MarketPart,
    Plugin,
    PriceRoots,
    ShardPart,
    bus_event,
)
from protocols.windows import WindowBook, WindowBoundary
from schemas.chain import RawLog
from schemas.chain_config import ChainConfig
from schemas.lending import account_json
from schemas.liquidations import liquidation_json
from schemas.positions import BlockRef, TokenPrice
from schemas.stream import BusEvent


@dataclass(slots=True)
class AavePart(MarketPart):
    market: AaveMarket
    # The oracle's answers as price roots: exact USD per whole token, and how to report it.
    anchors: dict[str, Anchor] = field(default_factory=dict)
    watching: bool = False  # wallet watch mode began (the first seed)

    def step(self, ctx: MarketBlock) -> AaveMarketOutput:
        aave, batch, block = self.market, ctx.batch, ctx.block
        if batch.seeds is not None and not self.watching:
            # Watch mode from the first block on: other wallets' accounts are never opened.
            self.watching = True
            aave.users = set()
        route: dict[int, AaveShardInput] = {}
        # The Pool's revision, where the reader read it (protocols/aave_v3/reader.py).
        out = aave.step(batch.logs, block, ctx.tokens, route, revision=batch.reads.get(NAME))
        for seed in batch.seeds.parts.get(NAME, ()) if batch.seeds is not None else ():
            _merge(out, aave.seed(seed, block, route))
        if batch.price_reads:
            _merge(out, aave.read_prices(batch.price_reads, block, route))
        if batch.seeds is not None and aave.users is not None:
            # A watched wallet without an account yet opens one with its first supply.
            aave.users.update(batch.seeds.wallets)
        for oracle in out.prices:
            if oracle.answer <= 0:
                # Never read (stale from the start): no root at all rather than a root of 0.
                self.anchors.pop(oracle.asset, None)
                continue
            usd = Fraction(oracle.answer, 10**8)
            self.anchors[oracle.asset] = (
                usd,
                TokenPrice(oracle.asset, float(usd), oracle.feed, 0, oracle.round_id, oracle.stale),
            )
        for shard, item in route.items():
            ctx.shard(shard).parts[NAME] = item
        ctx.dead_letters.extend(DeadLetter(lg, reason, NAME) for lg, reason in out.dead)
        out.pool = aave.pool
        return out

    def price_roots(self) -> PriceRoots:
        return PriceRoots(roots=self.anchors)


def _merge(out: AaveMarketOutput, seeded: AaveMarketOutput) -> None:
    """A block's Aave output plus what a seed or a price read at its end added (their values
    win)."""
    for name in ("reserves", "rates", "prices", "emode"):
        later = getattr(seeded, name)
        if not later:
            continue
        key = "category" if name == "emode" else "asset"
        replaced = {getattr(x, key) for x in later}
        setattr(out, name, [x for x in getattr(out, name) if getattr(x, key) not in replaced])
        getattr(out, name).extend(later)


def aave_market(config: ChainConfig, shards: int) -> AavePart | None:
    cfg = config.aave_v3
    if cfg is None:
        return None
    market = AaveMarket(config.chain_id, cfg.pool, cfg.pool_configurator, cfg.oracle, shards)
    if cfg.version is not None:
        market.pin(cfg.version)
    return AavePart(market)


@dataclass(slots=True)
class AaveShardOutput:
    versions: list[AccountVersion]
    updates: list[AccountUpdate]


@dataclass(slots=True)
class AaveShardPart(ShardPart):
    accounts: AaveShard = field(default_factory=AaveShard)

    def step(
        self, item: AaveShardInput | None, block: BlockRef, checkpoint: bool
    ) -> AaveShardOutput | None:
        if item is None and not (checkpoint and self.accounts.unvalued):
            return None
        versions, updates = shard_step(self.accounts, item or AaveShardInput(), block, checkpoint)
        return AaveShardOutput(versions, updates) if versions or updates else None

    def observe(
        self, item: AaveShardInput | None, windows: WindowBook, boundary: WindowBoundary
    ) -> set[str]:
        return observe_accounts(self.accounts, windows, boundary.last_block)


def account_event(u: AccountUpdate) -> BusEvent:
    data = account_json(u.account, u.value, u.reserves, u.block, u.updated_block)
    return bus_event("account", u.block, data, (u.account.user,))


def liquidation_event(pool: str, b: BlockRef, lg: RawLog, e: LiquidationCall) -> BusEvent:
    data = liquidation_json(
        account_id=account_id(b.chain_id, pool, e.user),
        chain_id=b.chain_id,
        pool=pool,
        block_number=b.number,
        block_hash=b.hash,
        block_time=b.timestamp,
        tx_hash=lg.tx_hash,
        log_index=lg.log_index,
        user=e.user,
        collateral_asset=e.collateral_asset,
        debt_asset=e.debt_asset,
        debt_to_cover=e.debt_to_cover,
        liquidated_collateral=e.liquidated_collateral,
        liquidator=e.liquidator,
        receive_a_token=e.receive_a_token,
    )
    return bus_event("liquidation", b, data, (e.user,))


def market_bus(out: AaveMarketOutput, block: BlockRef) -> Iterator[BusEntry]:
    for lg, e in out.liquidations:
        yield None, partial(liquidation_event, out.pool, block, lg, e)


def shard_bus(out: AaveShardOutput, _block: BlockRef) -> Iterator[BusEntry]:
    for a in out.updates:
        yield a.account.account_id, partial(account_event, a)


PLUGIN = Plugin(
    name=NAME,
    read=READ_SIDE,
    market=aave_market,
    shard=AaveShardPart,
    tables=rows.TABLES,
    market_rows=rows.market_rows,
    shard_rows=lambda out, b, when, version: rows.shard_rows(out.versions, b, when, version),
    market_bus=market_bus,
    shard_bus=shard_bus,
    shard_updates=lambda out: len(out.updates),
    reader=aave_reader,
)
