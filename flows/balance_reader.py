"""Reading what ERC-20 balances need from a node (I/O only; the fold is protocols/erc20/book.py).

Tracked wallets are those the protocols' logs name (each reader's `wallets`: the owners of
position NFTs, the Aave users, ...) and the config's `[wallets] watch` list. Tracked tokens are
the tokens the flow knows: those the watched contracts announce (pool tokens, reserve assets;
the watched contracts themselves, aTokens and debt tokens among them, are lending positions
already, so never balances here).

For every range, a tracked token's `Transfer` logs are read filtered by topic to the tracked
wallets (sender in the list, then recipient in the list), never all of a token's transfers.
When a wallet or a token becomes tracked at block d, `balanceOf` is read at d for each new
(wallet, token) pair and delivered with block d as its opening balance; the fold ignores that
pair's transfers up to d, which the opening balance already counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from flows.rpc import RpcClient
from protocols.abi import topic as event_topic
from protocols.base import ZERO_ADDRESS
from protocols.spec import ProtocolReader
from schemas.chain_config import ChainConfig
from schemas.errors import ArchiveRequired

log = structlog.get_logger("defimon.source")

_BALANCE_OF = "0x70a08231"  # balanceOf(address)
WALLETS_PER_QUERY = 500  # topic lists per eth_getLogs; providers cap request sizes
CALLS_PER_BATCH = 500

# The ERC-20 Transfer: the balances' own log (a standard, not a protocol's)
TRANSFER = event_topic("Transfer(address,address,uint256)")


def _topic_address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


def _padded(wallet: str) -> str:
    return "0x" + wallet[2:].rjust(64, "0")


@dataclass(slots=True)
class TrackedRead:
    """What one range added: not applied to the tracker until `commit` (a failed range is
    read again, and must discover the same wallets again)."""

    logs: list[dict[str, Any]] = field(default_factory=list)
    openings: dict[int, dict[tuple[str, str], int]] = field(default_factory=dict)
    # block -> (wallet, token) -> why its opening balance could not be read (a pruned node):
    # the pair stays closed (no balance shown) and goes to dead letters with the reason.
    unreadable: dict[int, dict[tuple[str, str], str]] = field(default_factory=dict)
    wallets: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)


class BalanceTracker:
    def __init__(
        self,
        rpc: RpcClient,
        config: ChainConfig,
        wallets: Iterable[str] = (),
        tokens: Iterable[str] = (),
        readers: Sequence[ProtocolReader] = (),
    ) -> None:
        self.rpc = rpc
        self.wallets: set[str] = set(wallets)
        self.tokens: set[str] = set(tokens)
        # topic0 -> the protocols' readers that say which wallets such a log names
        self.wallet_topics: dict[str, list[ProtocolReader]] = {}
        for reader in readers:
            for t0 in reader.wallet_topics():
                self.wallet_topics.setdefault(t0, []).append(reader)
        # The watch list (and the config's priced tokens) start at the first block read.
        self._pending_wallets = set(config.watch_wallets) - self.wallets - {ZERO_ADDRESS}
        self._pending_tokens = {token for token, _feed in config.feeds} - self.tokens
        self.snapshot = self._snapshot()
        # Wallet watch mode tracks the watched wallets only, not every wallet its logs name.
        self.discover = True

    def track(self, wallets: Iterable[str], tokens: Iterable[str]) -> None:
        """Track these wallets and tokens too, from the next block read on."""
        self._pending_wallets |= set(wallets) - self.wallets - {ZERO_ADDRESS}
        self._pending_tokens |= set(tokens) - self.tokens

    def _snapshot(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(sorted(self.wallets)), tuple(sorted(self.tokens))

    def discover_wallets(self, raw: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Wallets first named in these logs, with the first block that names them."""
        found: dict[str, int] = {}
        if not self.discover:
            return found
        topics_of = self.wallet_topics
        for item in raw:
            topics = item.get("topics")
            if not topics:
                continue
            readers = topics_of.get(topics[0])
            if readers is None:
                continue
            for reader in readers:
                for wallet in reader.wallets(item):
                    if wallet == ZERO_ADDRESS or wallet in self.wallets:
                        continue
                    block = int(item["blockNumber"], 16)
                    if block < found.get(wallet, block + 1):
                        found[wallet] = block
        return found

    def read(
        self,
        raw: Sequence[dict[str, Any]],
        tokens: Iterable[tuple[str, int]],
        excluded: set[str],
        flt: dict[str, object],
        start: int,
    ) -> TrackedRead:
        """Transfers and opening balances for one range (or block) starting at `start`.

        `tokens` are the (token, block) the range's parents announced; `excluded` the watched
        contracts (aTokens and debt tokens among them), which are never balances here.
        """
        new_wallets = self.discover_wallets(raw)
        for wallet in self._pending_wallets:
            new_wallets[wallet] = start
        new_tokens: dict[str, int] = dict.fromkeys(self._pending_tokens, start)
        for token, block in tokens:
            if token not in self.tokens and token not in excluded:
                new_tokens[token] = min(block, new_tokens.get(token, block))
        for token in excluded & new_tokens.keys():
            del new_tokens[token]
        out = TrackedRead(wallets=set(new_wallets), tokens=set(new_tokens))
        pairs: list[tuple[str, str, int]] = []
        for wallet, since in new_wallets.items():
            for token in self.tokens:
                pairs.append((wallet, token, since))
            for token, token_since in new_tokens.items():
                pairs.append((wallet, token, max(since, token_since)))
        for wallet in self.wallets:
            for token, token_since in new_tokens.items():
                pairs.append((wallet, token, token_since))
        for (wallet, token, block), balance in zip(pairs, self.balances_of(pairs), strict=True):
            if isinstance(balance, ArchiveRequired):
                out.unreadable.setdefault(block, {})[(wallet, token)] = str(balance)
            else:
                out.openings.setdefault(block, {})[(wallet, token)] = balance
        tracked_tokens = (self.tokens | out.tokens) - excluded
        logs = self.transfers(flt, self.wallets | out.wallets, tracked_tokens)
        out.logs = _tracked_only(logs, new_wallets, new_tokens, self.wallets, self.tokens)
        return out

    def checkpoint(self) -> tuple[set[str], set[str], set[str], set[str]]:
        return (
            set(self.wallets),
            set(self.tokens),
            set(self._pending_wallets),
            set(self._pending_tokens),
        )

    def rollback(self, checkpoint: tuple[set[str], set[str], set[str], set[str]]) -> None:
        """Back to a checkpoint: a read that committed and then failed is read again."""
        self.wallets, self.tokens, self._pending_wallets, self._pending_tokens = checkpoint
        self.snapshot = self._snapshot()

    def restore(self, snapshot: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
        """Back to what was tracked after an earlier block (a reorg rolled the state back)."""
        self.wallets, self.tokens = set(snapshot[0]), set(snapshot[1])
        self.snapshot = snapshot

    def open_pending(
        self, block: int, excluded: set[str]
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], str]]:
        """Opening balances at `block` of the wallets and tokens waiting to be tracked, and
        track them from now on: for a block already read, whose transfers they include. Also
        the pairs whose balance the node could not read (why, by pair)."""
        wallets, tokens = set(self._pending_wallets), set(self._pending_tokens) - excluded
        pairs = [(w, t, block) for w in sorted(wallets) for t in sorted(self.tokens | tokens)]
        pairs += [(w, t, block) for w in sorted(self.wallets) for t in sorted(tokens)]
        balances = self.balances_of(pairs)
        self.commit(TrackedRead(wallets=wallets, tokens=tokens))
        opened: dict[tuple[str, str], int] = {}
        unreadable: dict[tuple[str, str], str] = {}
        for (w, t, _block), b in zip(pairs, balances, strict=True):
            if isinstance(b, ArchiveRequired):
                unreadable[(w, t)] = str(b)
            else:
                opened[(w, t)] = b
        return opened, unreadable

    def commit(self, read: TrackedRead) -> None:
        if read.wallets or read.tokens or self._pending_wallets or self._pending_tokens:
            self.wallets |= read.wallets
            self.tokens |= read.tokens
            self._pending_wallets.clear()
            self._pending_tokens.clear()
            self.snapshot = self._snapshot()

    def transfer_filters(
        self, flt: dict[str, object], wallets: set[str], tokens: set[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The filters of `tokens`' Transfer logs from, then to, `wallets` (chunked)."""
        if not wallets or not tokens:
            return [], []
        addresses, ordered = sorted(tokens), [_padded(w) for w in sorted(wallets)]
        chunks = [
            ordered[i : i + WALLETS_PER_QUERY] for i in range(0, len(ordered), WALLETS_PER_QUERY)
        ]
        senders = [{**flt, "address": addresses, "topics": [TRANSFER, chunk]} for chunk in chunks]
        recipients = [
            {**flt, "address": addresses, "topics": [TRANSFER, None, chunk]} for chunk in chunks
        ]
        return senders, recipients

    def next_filters(self, flt: dict[str, object], excluded: set[str]) -> list[dict[str, Any]]:
        """The Transfer filters a read of `flt` will make if nothing new becomes tracked in
        it (for reading them ahead)."""
        senders, recipients = self.transfer_filters(flt, self.wallets, self.tokens - excluded)
        return senders + recipients

    def transfers(
        self, flt: dict[str, object], wallets: set[str], tokens: set[str]
    ) -> list[dict[str, Any]]:
        """Transfer logs of `tokens` from or to `wallets`, each once."""
        by_sender, by_recipient = self.transfer_filters(flt, wallets, tokens)
        senders = {_padded(w) for w in wallets}
        found: list[dict[str, Any]] = []
        for sent in by_sender:
            found += self.rpc.get_logs(sent)
        for received in by_recipient:
            for item in self.rpc.get_logs(received):
                # A transfer between two tracked wallets came with the senders already.
                if str(item["topics"][1]).lower() not in senders:
                    found.append(item)
        return found

    def balances_of(self, pairs: Sequence[tuple[str, str, int]]) -> list[int | ArchiveRequired]:
        """balanceOf(wallet) of each (wallet, token, block), at that block, batched; an
        ArchiveRequired in place of a balance the node has pruned (never a made-up 0)."""
        out: list[int | ArchiveRequired] = []
        for i in range(0, len(pairs), CALLS_PER_BATCH):
            calls = [
                ("eth_call", [{"to": token, "data": _BALANCE_OF + _padded(wallet)[2:]}, hex(block)])
                for wallet, token, block in pairs[i : i + CALLS_PER_BATCH]
            ]
            results = self.rpc.batch_each(calls)  # a reverting balanceOf: unreadable
            for (wallet, token, block), result in zip(
                pairs[i : i + CALLS_PER_BATCH], results, strict=True
            ):
                if isinstance(result, ArchiveRequired):
                    out.append(result)
                else:
                    out.append(_balance(result, wallet, token, block))
        return out


def _tracked_only(
    logs: list[dict[str, Any]],
    new_wallets: dict[str, int],
    new_tokens: dict[str, int],
    wallets: set[str],
    tokens: set[str],
) -> list[dict[str, Any]]:
    """The transfers that move a tracked balance: a pair becomes tracked at its opening block
    (whose balance already includes that block's transfers), so a range read that found a new
    wallet or token mid-range drops the transfers before it. The stored logs then do not
    depend on where the ranges fell (a live run and a backfill store the same)."""
    if not new_wallets and not new_tokens:
        return logs
    kept = []
    for item in logs:
        block = int(item["blockNumber"], 16)
        token = str(item["address"]).lower()
        token_since = new_tokens.get(token, -1 if token in tokens else None)
        if token_since is None:
            continue
        topics = item["topics"]
        if len(topics) < 3:
            continue  # malformed; the market stage dead-letters what it cannot decode
        for topic in (topics[1], topics[2]):
            wallet = _topic_address(str(topic))
            since = new_wallets.get(wallet, -1 if wallet in wallets else None)
            if since is not None and block > max(since, token_since):
                kept.append(item)
                break
    return kept


def _balance(result: object, wallet: str, token: str, block: int) -> int:
    if isinstance(result, str) and len(result) >= 66:
        try:
            return int(result[2:66], 16)
        except ValueError:
            pass
    # Not an ERC-20 balance (a reverting or odd token): start from zero, its transfers still
    # apply, and a shortfall shows up as a dead letter.
    log.warning("balance.unreadable", wallet=wallet, token=token, block=block)
    return 0
