"""Wallet watch mode, the reading side (I/O only; the market stage seeds itself, pure).

A wallet the flow never indexed is shown from one block B on, without the chain's history:
each protocol's reader (`ProtocolReader.seed`, protocols/<name>/reader.py) reads with eth_call
at B what its market part needs to follow the wallet exactly from there (Uniswap: the wallet's
NFTs and their pools' whole state; Aave: the reserves not followed yet and the wallet's
account; Compound: each comet's state and the wallet's account), and later what a block's logs
brought the watched wallets that their logs alone cannot show (`seed_logs`: an NFT's fee
checkpoint). This module counts the calls, collects the parts and the tokens they name, and
registers the contracts to follow with the chain reader.

All of it rides on block B's batch (`BlockBatch.seeds`). From B+1 on the source follows the
contracts the wallet needs with the usual address-filtered `eth_getLogs`.

The hand-off from the API (`POST /v1/watch`) to the chain reader's thread is
`ports.watch.WatchRequests`: the API imports it without importing the flow.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from flows.chain_reader import ChainReader
from flows.rpc import RpcClient
from ports.metrics import METRICS
from protocols.base import ZERO_ADDRESS
from protocols.spec import SeedCost, Seeded
from schemas.chain import RawLog, TokenInfo
from schemas.errors import RangeTooLarge, RpcError
from schemas.watch import WatchSeed

log = structlog.get_logger("defimon.watch")

CALLS_PER_BATCH = 500


class WatchReader:
    """Seeds wallets at a block; see the module doc. Runs on the chain reader's thread, and
    is what the protocols' readers seed through (protocols.spec.Seeding)."""

    def __init__(
        self,
        rpc: RpcClient,
        reader: ChainReader,
        watched: Iterable[tuple[str, int]] = (),
    ) -> None:
        self.rpc = rpc
        self.reader = reader
        self.chain_id = reader.chain_id
        self.watched: dict[str, int] = dict(watched)  # wallet -> block it was seeded at
        self.cost = SeedCost()

    # JSON-RPC, counted (protocols.spec.Seeding) -----------------------------------------------

    def _batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Results in call order; a reverting call gives None. Faults raise: the reader
        retries the whole seed. The cost counts a batch as one request."""
        out: list[Any] = []
        for i in range(0, len(calls), CALLS_PER_BATCH):
            chunk = calls[i : i + CALLS_PER_BATCH]
            self.cost.requests += 1
            self.cost.calls += len(chunk)
            out += [None if isinstance(r, RpcError) else r for r in self.rpc.batch_each(chunk)]
        return out

    def calls(self, to_data: Sequence[tuple[str, str]], block: int) -> list[Any]:
        return self._batch(
            [("eth_call", [{"to": to, "data": data}, hex(block)]) for to, data in to_data]
        )

    def logs(self, base: dict[str, Any], start: int, end: int) -> list[dict[str, Any]]:
        """Topic-filtered logs over [start, end], split where the provider refuses a range."""
        found: list[dict[str, Any]] = []
        low, span = start, end - start + 1
        while low <= end:
            high = min(end, low + span - 1)
            self.cost.requests += 1
            self.cost.calls += 1
            try:
                found += self.rpc.get_logs({**base, "fromBlock": hex(low), "toBlock": hex(high)})
            except RangeTooLarge as exc:
                hinted = exc.hint[1] - exc.hint[0] + 1 if exc.hint else span // 2
                span = max(1, min(span // 2, hinted))
                continue
            low = high + 1
        return found

    def token_info(self, addresses: Iterable[str]) -> dict[str, TokenInfo]:
        wanted = set(addresses)
        unread = [a for a in wanted if not self.reader.knows_token(a)]
        if unread:
            self.cost.requests += 1
            self.cost.calls += 2 * len(unread)
        return self.reader.token_info(wanted)

    # Seeding ----------------------------------------------------------------------------------

    def seed(self, wallets: Iterable[str], block: int) -> WatchSeed:
        """Everything the flow needs to show these wallets exactly from the end of `block`
        on. Registers the contracts to follow with the chain reader (idempotent, so a failed
        seed can simply be read again)."""
        fresh = sorted({w.lower() for w in wallets} - self.watched.keys() - {ZERO_ADDRESS})
        started, before = time.monotonic(), (self.cost.requests, self.cost.calls)
        found: dict[str, Seeded] = {}
        if fresh:
            for reader in self.reader.readers:
                seeded = reader.seed(fresh, block, self)
                if seeded is not None:
                    found[reader.name] = seeded
        seed = self._take(tuple(fresh), found)
        self.reader.balances.track(fresh, {t for s in found.values() for t in s.tokens})
        for wallet in fresh:
            self.watched[wallet] = block
        self._count(before[1])
        log.info(
            "watch.seeded",
            chain_id=self.chain_id,
            block=block,
            wallets=len(fresh),
            protocols=sorted(found),
            requests=self.cost.requests - before[0],
            calls=self.cost.calls - before[1],
            seconds=round(time.monotonic() - started, 3),
        )
        return seed

    def seed_logs(self, logs: Sequence[RawLog], block: int) -> WatchSeed | None:
        """What this block's logs brought the watched wallets that their logs alone cannot
        show (an NFT minted or moved to one: its fee checkpoint comes from the manager), read
        at the block; None when nothing. Idempotent, so a failed read can be made again."""
        started, before = time.monotonic(), (self.cost.requests, self.cost.calls)
        found: dict[str, Seeded] = {}
        for reader in self.reader.readers:
            seeded = reader.seed_logs(logs, self.watched, block, self)
            if seeded is not None:
                found[reader.name] = seeded
        if not found:
            return None
        seed = self._take((), found)
        self.reader.balances.track((), {t for s in found.values() for t in s.tokens})
        self._count(before[1])
        log.info(
            "watch.seeded_logs",
            chain_id=self.chain_id,
            block=block,
            protocols=sorted(found),
            requests=self.cost.requests - before[0],
            calls=self.cost.calls - before[1],
            seconds=round(time.monotonic() - started, 3),
        )
        return seed

    def _take(self, wallets: tuple[str, ...], found: dict[str, Seeded]) -> WatchSeed:
        """The seed of these parts, with its tokens' metadata; the source follows the parts'
        new contracts from the next block read on."""
        infos = self.token_info({t for s in found.values() for t in s.tokens})
        for seeded in found.values():
            self.reader.children.update(seeded.follow)
        return WatchSeed(wallets, infos, {name: [s.part] for name, s in found.items()})

    def _count(self, calls_before: int) -> None:
        chain = str(self.chain_id)
        METRICS.watch_seeds.labels(chain_id=chain).inc()
        METRICS.watch_seed_calls.labels(chain_id=chain).inc(self.cost.calls - calls_before)


def merge_seeds(first: WatchSeed | None, second: WatchSeed | None) -> WatchSeed | None:
    """Two seeds read at the same block, as one: each protocol's parts in order (the second
    was read after the first)."""
    if first is None or second is None:
        return first or second
    parts = {name: list(found) for name, found in first.parts.items()}
    for name, found in second.parts.items():
        parts.setdefault(name, []).extend(found)
    return WatchSeed(first.wallets + second.wallets, {**first.tokens, **second.tokens}, parts)
