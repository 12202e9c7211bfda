"""Compound V3 as the flow sees it: one market part for every comet of the chain (the reader
reads each comet's configuration, totals, prices and touched accounts at the block:
compound_v3/reader.py), rows (rows.py) and stream events. Comet accounts are valued on the
market stage (there are few per comet and each needs the comet's whole state), so Compound has
no shard part. A USD-based comet's prices price what nothing else priced."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial

from protocols.base import DeadLetter
from protocols.compound_v3 import rows
from protocols.compound_v3.read import READ_SIDE
from protocols.compound_v3.reader import comet_reader
from protocols.compound_v3.state import NAME, CometAccountUpdate, CometMarket, CometOutput
from protocols.prices import Anchor
from protocols.spec import BusEntry, MarketBlock, MarketPart, Plugin, PriceRoots, bus_event
from schemas.chain_config import ChainConfig
from schemas.comet import PRICE_UNIT, CometConfig
from schemas.positions import BlockRef, TokenPrice
from schemas.stream import BusEvent


def comet_anchors(
    configs: Mapping[str, CometConfig],
    prices: Mapping[str, Mapping[str, int]],
    usd_tokens: Iterable[str],
) -> dict[str, Anchor]:
    """The USD-based comets' prices of their base and collateral assets (`prices`: comet ->
    feed -> `getPrice(feed)` as last read). Comets in address order; the first to price a
    token wins."""
    usd = set(usd_tokens)
    out: dict[str, Anchor] = {}
    for comet in sorted(configs):
        config = configs[comet]
        if config.base_token not in usd:
            continue
        known = prices.get(comet, {})
        pairs = [(config.base_token, config.base_token_price_feed)]
        pairs += [(a.asset, a.price_feed) for a in config.assets]
        for token, feed in pairs:
            price = known.get(feed)
            if price is None or price <= 0 or token in out:
                continue
            value = Fraction(price, PRICE_UNIT)
            out[token] = value, TokenPrice(token, float(value), feed, 0)
    return out


@dataclass(slots=True)
class CometPart(MarketPart):
    market: CometMarket
    usd_tokens: tuple[str, ...] = ()
    anchors: dict[str, Anchor] = field(default_factory=dict)

    def step(self, ctx: MarketBlock) -> CometOutput:
        comet = self.market
        out = comet.step(ctx.batch, ctx.block, ctx.tokens)
        ctx.dead_letters.extend(DeadLetter(lg, why, NAME) for lg, why in out.dead)
        if out.prices or out.configs:
            self.anchors = comet_anchors(comet.configs, comet.prices, self.usd_tokens)
        return out

    def price_roots(self) -> PriceRoots:
        return PriceRoots(fills=self.anchors)


def comet_market(config: ChainConfig, shards: int) -> CometPart | None:
    cfg = config.compound_v3
    if cfg is None or not cfg.comets:
        return None
    return CometPart(CometMarket(config.chain_id, cfg.comets), config.usd_tokens)


def comet_account_event(u: CometAccountUpdate) -> BusEvent:
    """Compound V3 accounts go out in the lending account shape."""
    return bus_event("account", u.block, u.json(), (u.account.user,))


def market_bus(out: CometOutput, _block: BlockRef) -> Iterator[BusEntry]:
    for u in out.updates:
        yield u.account.account_id, partial(comet_account_event, u)


PLUGIN = Plugin(
    name=NAME,
    read=READ_SIDE,
    market=comet_market,
    tables=rows.TABLES,
    market_rows=rows.market_rows,
    market_bus=market_bus,
    market_updates=lambda out: len(out.updates),
    reader=comet_reader,
)
