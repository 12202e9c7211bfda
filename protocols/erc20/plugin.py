"""ERC-20 balances of tracked wallets as the flow sees it: a market part that applies the
tracked tokens' Transfer logs and the opening balances the reader read (book.py), valued at
the block's prices once they are routed; rows (rows.py) and stream events. It runs on every
chain: any protocol's wallet may hold tokens."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

from protocols.base import DeadLetter
from protocols.erc20 import rows
from protocols.erc20.book import STAGE, BalanceBook, BalanceChange, balance_step
from protocols.erc20.read import READ_SIDE
from protocols.spec import BusEntry, MarketBlock, MarketPart, Plugin, bus_event
from schemas.balances import balance_json
from schemas.chain_config import ChainConfig
from schemas.positions import BlockRef, TokenPrice
from schemas.stream import BusEvent

NAME = STAGE


@dataclass(slots=True)
class BalancesPart(MarketPart):
    book: BalanceBook = field(default_factory=BalanceBook)

    def step(self, ctx: MarketBlock) -> None:
        return None  # balances are valued at the block's prices: see priced

    def priced(
        self, ctx: MarketBlock, out: object, changed: Sequence[TokenPrice]
    ) -> list[BalanceChange] | None:
        done = balance_step(self.book, ctx.batch, ctx.tokens, ctx.prices, changed)
        ctx.dead_letters.extend(DeadLetter(lg, reason, STAGE) for lg, reason in done.dead)
        return done.changes or None


def balances_market(config: ChainConfig, shards: int) -> BalancesPart:
    return BalancesPart()


def balance_event(c: BalanceChange, b: BlockRef) -> BusEvent:
    data = balance_json(
        b.chain_id,
        c.wallet,
        c.token,
        c.balance,
        c.price,
        c.price_block,
        c.value_usd,
        b,
        c.updated_block,
    )
    return bus_event("balance", b, data, (c.wallet,))


def market_bus(changes: list[BalanceChange], block: BlockRef) -> Iterator[BusEntry]:
    for c in changes:
        yield (block.chain_id, c.wallet, c.token), partial(balance_event, c, block)


PLUGIN = Plugin(
    name=NAME,
    read=READ_SIDE,
    market=balances_market,
    tables=rows.TABLES,
    market_rows=rows.market_rows,
    market_bus=market_bus,
)
