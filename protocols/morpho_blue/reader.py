"""Morpho Blue's reading side (I/O through `ports.rpc.JsonRpc`): the Morpho contract is watched
from the start; each CreateMarket announces its tokens (their metadata goes on the batch); at a
block the flow must value accounts at, each market's oracle `price()` and its IRM's
`borrowRateView` for the market as stored then (`market(id)`) are read with eth_call.

Which blocks: every live block, and in backfill every block with any watched log (the blocks a
backfill emits, whatever range they fell in, so a restarted backfill reads where an
uninterrupted one does), for every market. An oracle's price that moves in a block with no
watched log during a backfill is seen at the next such block (live blocks: every block, exact)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ports.rpc import JsonRpc
from protocols.abi import DecodeError, return_words, selector
from protocols.base import ZERO_ADDRESS
from protocols.morpho_blue import calls
from protocols.morpho_blue import events as ev
from protocols.morpho_blue.events import MarketParams
from protocols.morpho_blue.math import MarketTotals
from protocols.spec import Child, ProtocolReader, ReaderHost
from schemas.chain import BlockBatch
from schemas.chain_config import ChainConfig
from schemas.errors import RpcError

NAME = "morpho_blue"
MARKET = selector("market(bytes32)")
_CREATE_MARKET = ev.TOPICS["CreateMarket"]
_BATCH = 200  # calls per JSON-RPC batch


@dataclass(frozen=True, slots=True)
class MarketRead:
    """What a market's oracle and IRM answered at a block (None: not read or not readable)."""

    price: int | None
    borrow_rate: int | None
    error: str = ""  # why the price could not be read ('' when it was)


class MorphoReader(ProtocolReader):
    name = NAME

    def __init__(self, rpc: JsonRpc, morpho: str) -> None:
        self.rpc = rpc
        self.morpho = morpho
        self.markets: dict[str, MarketParams] = {}

    @classmethod
    def for_chain(cls, config: ChainConfig, rpc: JsonRpc, host: ReaderHost) -> MorphoReader | None:
        if config.morpho_blue is None:
            return None
        return cls(rpc, config.morpho_blue.morpho)

    def addresses(self) -> list[str]:
        return [self.morpho]

    def parents(self) -> dict[str, str]:
        return {self.morpho: NAME}

    def children(self, kind: str, item: dict[str, Any]) -> list[Child]:
        # A new market's tokens: their metadata goes on the batch (the contract is watched).
        topics = item.get("topics") or []
        if kind != NAME or not topics or topics[0] != _CREATE_MARKET:
            return []
        try:
            params = _params(item)
        except (KeyError, ValueError, TypeError):
            return []
        return [Child(int(item["blockNumber"], 16), self.morpho, (params[0], params[1]))]

    def resume_state(self) -> tuple[tuple[str, MarketParams], ...] | None:
        # The markets created before a restart's resume block are read at every block after it.
        # (A market created after it, known from the read-ahead, is read before its creation
        # too: harmless, the market stage ignores reads of markets it does not know.)
        return tuple(sorted(dict(self.markets).items())) or None

    def resume(self, saved: Any) -> None:
        self.markets = {market: MarketParams(*params) for market, params in saved}

    def checkpoint(self) -> dict[str, MarketParams]:
        return dict(self.markets)

    def rollback(self, saved: Any) -> None:
        self.markets = dict(saved)

    def read(self, batches: list[BlockBatch]) -> None:
        wanted: list[tuple[BlockBatch, list[str]]] = []
        for batch in batches:
            for log in batch.logs:
                if log.address == self.morpho and log.topics and log.topics[0] == _CREATE_MARKET:
                    try:
                        created = ev.decode(log)
                    except DecodeError:
                        continue  # the market stage dead-letters it
                    assert isinstance(created, ev.CreateMarket)
                    self.markets[created.id] = created.params
            # Every live block; in backfill every block with a watched log (whatever range it
            # fell in: a restarted backfill reads at the same blocks as an uninterrupted one).
            if self.markets and (batch.live or batch.logs):
                wanted.append((batch, sorted(self.markets)))
        # All the blocks' reads in two rounds (market() and price(), then borrowRateView for
        # the totals read), however many blocks: a backfill range costs two round trips.
        pairs = [(batch.header.number, market) for batch, markets in wanted for market in markets]
        found = self._read(pairs)
        for batch, markets in wanted:
            n = batch.header.number
            batch.reads[NAME] = {market: found[n, market] for market in markets}

    def _calls(self, calls_: list[tuple[str, list[Any]]]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(calls_), _BATCH):
            out += self.rpc.batch_each(calls_[start : start + _BATCH])
        return out

    def _read(self, pairs: list[tuple[int, str]]) -> dict[tuple[int, str], MarketRead]:
        first: list[tuple[str, list[Any]]] = []
        for block, market in pairs:
            at = hex(block)
            oracle = self.markets[market].oracle
            first.append(("eth_call", [{"to": self.morpho, "data": MARKET + market[2:]}, at]))
            first.append(("eth_call", [{"to": oracle, "data": calls.PRICE}, at]))
        answers = self._calls(first)
        totals: dict[tuple[int, str], MarketTotals] = {}
        prices: dict[tuple[int, str], int | str] = {}
        for i, pair in enumerate(pairs):
            stored, price = answers[2 * i], answers[2 * i + 1]
            if not isinstance(stored, RpcError):
                try:
                    totals[pair] = MarketTotals(*return_words(stored, 6))
                except DecodeError:
                    pass
            if isinstance(price, RpcError):
                prices[pair] = str(price)
            else:
                try:
                    prices[pair] = calls.decode_uint(price, "price()")
                except DecodeError as exc:
                    prices[pair] = str(exc)
        rated = [p for p in pairs if p in totals and self.markets[p[1]].irm != ZERO_ADDRESS]
        second = [
            (
                "eth_call",
                [
                    {
                        "to": self.markets[market].irm,
                        "data": calls.borrow_rate_view_data(self.markets[market], totals[pair]),
                    },
                    hex(pair[0]),
                ],
            )
            for pair in rated
            for market in (pair[1],)
        ]
        rates: dict[tuple[int, str], int] = {}
        for pair, answer in zip(rated, self._calls(second) if second else [], strict=True):
            if isinstance(answer, RpcError):
                continue
            try:
                rates[pair] = calls.decode_uint(answer, "borrowRateView")
            except DecodeError:
                continue
        out = {}
        for pair in pairs:
            price = prices[pair]
            rate = rates.get(pair, 0 if self.markets[pair[1]].irm == ZERO_ADDRESS else None)
            if isinstance(price, str):
                out[pair] = MarketRead(None, rate, price or "no answer")
            else:
                out[pair] = MarketRead(price, rate)
        return out


def _params(item: dict[str, Any]) -> MarketParams:
    """CreateMarket's data: the five words of MarketParams."""
    data = item["data"]
    words = [int(data[2 + 64 * i : 66 + 64 * i], 16) for i in range(5)]
    if len(data) != 2 + 64 * 5:
        raise ValueError("CreateMarket data is not five words")
    loan, collateral, oracle, irm = (f"0x{w:040x}" for w in words[:4])
    return MarketParams(loan, collateral, oracle, irm, words[4])
