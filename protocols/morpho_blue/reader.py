"""Morpho Blue's reading side (I/O through `ports.rpc.JsonRpc`): the Morpho contract is watched
from the start; each CreateMarket announces its tokens (their metadata goes on the batch); at a
block the flow must value accounts at, each market's oracle `price()` and its IRM's
`borrowRateView` for the market as stored then (`market(id)`) are read with eth_call.

Which blocks: every market at every live block (the head: an oracle moves without a log of the
market's). In backfill, a market where its own logs are (they move its totals, so the IRM's
rate), and every market where the flow needs state whatever the logs say
(`ReaderHost.state_read_blocks`): where a followed price feed logged, the last block with logs
before each window boundary, and the range's end. Between them interest is computed, not read:
the accrual to a block's time is MorphoBalancesLib's math (state.py) on the totals and the rate
last read, which only the market's own logs change for an IRM whose rate is a function of the
totals (IrmMock; an adaptive IRM's rate also drifts with time: seen at the next read). An
oracle's price that moves with no log during a backfill (a mock's setter, a feed the flow does
not follow) is seen at the next read point, as the price reader's polled sources are.

Cost: one JSON-RPC batch per range or live block (the IRM is asked about the totals last read
in the same batch; a second batch only where a Morpho log moved them), and live blocks' reads
start ahead with their logs (`prefetch`): a 250 ms chain behind 100 ms round trips is followed
(tests/integration/test_fast_chain.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
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
_AHEAD_KEPT = 64  # live blocks' reads started ahead and not taken yet (a reorg, say)
Known = tuple[tuple[str, MarketParams], ...]  # the markets known when a read was started


@dataclass(frozen=True, slots=True)
class MarketRead:
    """What a market's oracle and IRM answered at a block (None: not read or not readable)."""

    price: int | None
    borrow_rate: int | None
    error: str = ""  # why the price could not be read ('' when it was)


@dataclass(frozen=True, slots=True)
class _Job:
    """One round of reads: the markets' parameters, (block, market) pairs, each block's
    eth_call block tag, and each market's totals as last read (the IRM is asked about them
    in the same round: right unless a Morpho log in the block moved them)."""

    markets: Mapping[str, MarketParams]
    pairs: list[tuple[int, str]]
    tags: dict[int, Any]
    guesses: Mapping[str, MarketTotals]


_Found = tuple[dict[tuple[int, str], MarketRead], dict[tuple[int, str], MarketTotals]]


class MorphoReader(ProtocolReader):
    name = NAME

    def __init__(self, rpc: JsonRpc, morpho: str, host: ReaderHost) -> None:
        self.rpc = rpc
        self.morpho = morpho
        self.host = host
        self.markets: dict[str, MarketParams] = {}
        # live block -> (its hash, the markets then, their reads started ahead)
        self._ahead: dict[int, tuple[str, Known, Future[_Found]]] = {}
        self._totals: dict[str, MarketTotals] = {}  # market -> its totals as last read

    @classmethod
    def for_chain(cls, config: ChainConfig, rpc: JsonRpc, host: ReaderHost) -> MorphoReader | None:
        if config.morpho_blue is None:
            return None
        return cls(rpc, config.morpho_blue.morpho, host)

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
        every = self.host.state_read_blocks(batches)
        for batch in batches:
            moved: set[str] = set()  # the markets this block's Morpho logs name
            for log in batch.logs:
                if log.address == self.morpho and len(log.topics) > 1:
                    moved.add(log.topics[1].lower())
                if log.address == self.morpho and log.topics and log.topics[0] == _CREATE_MARKET:
                    try:
                        created = ev.decode(log)
                    except DecodeError:
                        continue  # the market stage dead-letters it
                    assert isinstance(created, ev.CreateMarket)
                    self.markets[created.id] = created.params
            # Every market where the flow needs its state whatever its logs (every live
            # block; in backfill where a price feed moved, before a window boundary, at the
            # range's end); elsewhere a market where its own logs moved its totals.
            if batch.header.number in every:
                markets = sorted(self.markets)
            else:
                markets = sorted(moved & self.markets.keys())
            if markets:
                wanted.append((batch, markets))
        # All the blocks' reads in one round (market(), price(), and borrowRateView for the
        # totals last read, right where no Morpho log moved them), then borrowRateView again
        # where the totals moved: a backfill range costs one or two round trips. A live
        # block's reads started ahead (`prefetch`) are taken if nothing changed since.
        known: Known = tuple(sorted(self.markets.items()))
        if len(wanted) == 1 and len(batches) == 1:
            ahead = self._ahead.pop(batches[0].header.number, None)
            if ahead is not None and ahead[:2] == (batches[0].header.hash, known):
                self._put(wanted, ahead[2].result())
                return
        job = _Job(
            dict(known),
            [(batch.header.number, market) for batch, markets in wanted for market in markets],
            {
                batch.header.number: _tag(batch.header.number, batch.header.hash)
                for batch in batches
            },
            dict(self._totals),
        )
        self._put(wanted, self._read(job))

    def _put(self, wanted: list[tuple[BlockBatch, list[str]]], found: _Found) -> None:
        reads, totals = found
        for batch, markets in wanted:
            n = batch.header.number
            batch.reads[NAME] = {market: reads[n, market] for market in markets}
        for (_n, market), read_totals in sorted(totals.items()):
            self._totals[market] = read_totals  # the latest block's, pairs in block order

    def prefetch(self, blocks: Sequence[tuple[int, str]]) -> None:
        if not self.markets:
            return
        known: Known = tuple(sorted(self.markets.items()))
        for n, block_hash in blocks:
            if n not in self._ahead:
                pairs = [(n, market) for market, _params in known]
                job = _Job(dict(known), pairs, {n: _tag(n, block_hash)}, dict(self._totals))
                self._ahead[n] = (block_hash, known, self.rpc.ahead(self._read, job))
        while len(self._ahead) > _AHEAD_KEPT:
            self._ahead.pop(next(iter(self._ahead)))[2].cancel()

    def _calls(self, calls_: list[tuple[str, list[Any]]]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(calls_), _BATCH):
            out += self.rpc.batch_each(calls_[start : start + _BATCH])
        return out

    def _rate_call(self, job: _Job, pair: tuple[int, str], totals: MarketTotals) -> Any:
        params = job.markets[pair[1]]
        data = calls.borrow_rate_view_data(params, totals)
        return ("eth_call", [{"to": params.irm, "data": data}, job.tags[pair[0]]])

    def _read(self, job: _Job) -> _Found:
        """What each market's oracle and IRM answered at each block, and the totals stored
        then. Runs on the read-ahead workers too, so it reads nothing of the reader's state."""
        first: list[tuple[str, list[Any]]] = []
        guessed: list[tuple[int, str]] = []
        for pair in job.pairs:
            block, market = pair
            at, params = job.tags[block], job.markets[market]
            first.append(("eth_call", [{"to": self.morpho, "data": MARKET + market[2:]}, at]))
            first.append(("eth_call", [{"to": params.oracle, "data": calls.PRICE}, at]))
        for pair in job.pairs:
            guess = job.guesses.get(pair[1])
            if guess is not None and job.markets[pair[1]].irm != ZERO_ADDRESS:
                guessed.append(pair)
                first.append(self._rate_call(job, pair, guess))
        answers = self._calls(first)
        totals: dict[tuple[int, str], MarketTotals] = {}
        prices: dict[tuple[int, str], int | str] = {}
        for i, pair in enumerate(job.pairs):
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
        rate_answers: dict[tuple[int, str], Any] = {}
        for pair, answer in zip(guessed, answers[2 * len(job.pairs) :], strict=True):
            if totals.get(pair) == job.guesses[pair[1]]:
                rate_answers[pair] = answer
        again = [
            p
            for p in job.pairs
            if p in totals and p not in rate_answers and job.markets[p[1]].irm != ZERO_ADDRESS
        ]
        second = [self._rate_call(job, pair, totals[pair]) for pair in again]
        rate_answers.update(zip(again, self._calls(second) if second else [], strict=True))
        rates: dict[tuple[int, str], int] = {}
        for pair, answer in rate_answers.items():
            if isinstance(answer, RpcError):
                continue
            try:
                rates[pair] = calls.decode_uint(answer, "borrowRateView")
            except DecodeError:
                continue
        out = {}
        for pair in job.pairs:
            price = prices[pair]
            rate = rates.get(pair, 0 if job.markets[pair[1]].irm == ZERO_ADDRESS else None)
            if isinstance(price, str):
                out[pair] = MarketRead(None, rate, price or "no answer")
            else:
                out[pair] = MarketRead(price, rate)
        return out, totals


def _tag(number: int, block_hash: str) -> Any:
    # By hash (EIP-1898) where known: a reorg cannot answer for another block.
    return {"blockHash": block_hash} if block_hash else hex(number)


def _params(item: dict[str, Any]) -> MarketParams:
    """CreateMarket's data: the five words of MarketParams."""
    data = item["data"]
    words = [int(data[2 + 64 * i : 66 + 64 * i], 16) for i in range(5)]
    if len(data) != 2 + 64 * 5:
        raise ValueError("CreateMarket data is not five words")
    loan, collateral, oracle, irm = (f"0x{w:040x}" for w in words[:4])
    return MarketParams(loan, collateral, oracle, irm, words[4])
