"""Reading what ERC-20 balances need from a node (I/O only; the fold is protocols/erc20/book.py).

Tracked wallets are those the protocols' logs name (each reader's `wallets`: the owners of
position NFTs, the Aave users, ...) and the config's `[wallets] watch` list. Tracked tokens are
the tokens the flow knows: those the watched contracts announce (pool tokens, reserve assets;
the watched contracts themselves, aTokens and debt tokens among them, are lending positions
already, so never balances here).

For every range, a tracked token's `Transfer` logs are read filtered by topic to the tracked
wallets (sender in the list, then recipient in the list), never all of a token's transfers;
each filter is cut within the providers' caps before it is sent (`transfer_chunks`).

Opening balances: a (wallet, token) pair is opened by `balanceOf` read at a block d and
delivered with d; the fold ignores that pair's transfers up to d, which the balance already
counts. Which pairs, when a wallet or a token becomes tracked at d (`opening_pairs`):

- few new pairs (one batch of calls): every one, at d;
- more: only the pairs that ever received the token, by `Transfer` (or WETH's `Deposit`, which
  mints without one) up to d, found with one topic-filtered `eth_getLogs` from block 0 per
  chunk of wallets (`received`), when that costs fewer requests than the calls would (a
  provider's learned range cap can make it cost more). A pair that never received the token
  holds none at d. A token whose balances appear with neither log is read wrong there.

A tracked pair not opened yet holds zero; it is opened at the first block where it appears in
a tracked `Transfer` (`first_appearances`), read there. So the reads are linear in the pairs
that hold or move a token, not wallets x tokens. Which pairs are open is the tracker's memory
(`opened`, kept once a scan chose: before, every tracked pair is open); a pair it forgot (a
restart, a reorg) is read again where it next appears: an opening is exact whatever the fold
held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from flows.log_limits import LogLimits
from flows.rpc import RpcClient
from protocols.abi import topic as event_topic
from protocols.base import ZERO_ADDRESS
from protocols.spec import ProtocolReader
from schemas.chain_config import ChainConfig
from schemas.errors import ArchiveRequired

log = structlog.get_logger("defimon.source")

_BALANCE_OF = "0x70a08231"  # balanceOf(address)
WALLETS_PER_QUERY = 500  # topic lists per eth_getLogs; providers cap request sizes
# Addresses and topics in one eth_getLogs: Infura documents 5,000 parameters.
PARAMETERS_PER_QUERY = 5_000
CALLS_PER_BATCH = 500

# The ERC-20 Transfer: the balances' own log (a standard, not a protocol's)
TRANSFER = event_topic("Transfer(address,address,uint256)")
# WETH9's deposit: it mints to `dst` (topic 1) without a Transfer
DEPOSIT = event_topic("Deposit(address,uint256)")

Pair = tuple[str, str]  # (wallet, token)


def transfer_chunks(
    wallets: Sequence[str], tokens: Sequence[str], limits: LogLimits
) -> list[tuple[list[str], list[str]]]:
    """(token addresses, wallet topics) of the filters that cover `tokens` x `wallets`: at
    most WALLETS_PER_QUERY wallets, as many tokens as the parameters left allow (and the
    provider's learned address cap), so no filter is refused for its size."""
    out: list[tuple[list[str], list[str]]] = []
    for i in range(0, len(wallets), WALLETS_PER_QUERY):
        chunk = list(wallets[i : i + WALLETS_PER_QUERY])
        room = max(1, PARAMETERS_PER_QUERY - len(chunk) - 1)  # the topic0 is one more
        if limits.max_addresses is not None:
            room = min(room, limits.max_addresses)
        out += [(list(tokens[j : j + room]), chunk) for j in range(0, len(tokens), room)]
    return out


def scan_is_cheaper(pairs: int, wallets: int, tokens: int, until: int, limits: LogLimits) -> bool:
    """Whether finding which of `pairs` ever received their token (two topic filters per
    chunk over [0, until], cut by the learned range cap) costs fewer requests than reading
    every pair's balanceOf (batches of CALLS_PER_BATCH). One batch is never worth a scan."""
    if pairs <= CALLS_PER_BATCH:
        return False
    spans = 1 if limits.max_span is None else -(-(until + 1) // limits.max_span)
    per_chunk = max(1, PARAMETERS_PER_QUERY - WALLETS_PER_QUERY - 1)
    if limits.max_addresses is not None:
        per_chunk = min(per_chunk, limits.max_addresses)
    chunks = -(-wallets // WALLETS_PER_QUERY) * -(-tokens // per_chunk)
    return 2 * chunks * spans < -(-pairs // CALLS_PER_BATCH)


def opening_pairs(
    new_wallets: Mapping[str, int],
    new_tokens: Mapping[str, int],
    wallets: Iterable[str],
    tokens: Iterable[str],
    received: Mapping[Pair, int] | None,
) -> list[tuple[str, str, int]]:
    """The (wallet, token, block) whose balanceOf opens a pair that becomes tracked: a new
    wallet with every token, an old wallet with every new token, each at the later of the
    two's first blocks. With `received` (the first block each pair received its token, from
    `received`), only those that received it by then: any other holds zero."""
    if received is None:
        pairs: list[tuple[str, str, int]] = []
        for wallet, since in new_wallets.items():
            for token in tokens:
                pairs.append((wallet, token, since))
            for token, token_since in new_tokens.items():
                pairs.append((wallet, token, max(since, token_since)))
        for wallet in wallets:
            for token, token_since in new_tokens.items():
                pairs.append((wallet, token, token_since))
        return pairs
    old_wallets, old_tokens = set(wallets), set(tokens)
    out = []
    for (wallet, token), first in sorted(received.items()):
        wallet_from, token_from = new_wallets.get(wallet), new_tokens.get(token)
        if wallet_from is not None and token_from is not None:
            at = max(wallet_from, token_from)
        elif wallet_from is not None and token in old_tokens:
            at = wallet_from
        elif token_from is not None and wallet in old_wallets:
            at = token_from
        else:
            continue  # tracked before: opened then, or where it first appears
        if first <= at:
            out.append((wallet, token, at))
    return out


def first_appearances(
    logs: Iterable[dict[str, Any]],
    is_open: Callable[[Pair], bool],
    new_wallets: Mapping[str, int],
    new_tokens: Mapping[str, int],
    wallets: set[str],
    tokens: set[str],
) -> dict[Pair, int]:
    """Tracked pairs that appear in these Transfer logs while not open, with the first block
    each appears at after it became tracked (`new_*`: tracked from that block in this
    range; `wallets`, `tokens`: tracked before it): each is opened there."""
    found: dict[Pair, int] = {}
    for item in logs:
        topics = item["topics"]
        token = str(item["address"]).lower()
        token_since = new_tokens.get(token, -1 if token in tokens else None)
        if token_since is None or len(topics) < 3:
            continue
        block = int(item["blockNumber"], 16)
        for topic in (topics[1], topics[2]):
            wallet = _topic_address(str(topic))
            since = new_wallets.get(wallet, -1 if wallet in wallets else None)
            if since is None or block <= max(since, token_since):
                continue
            pair = (wallet, token)
            if block < found.get(pair, block + 1) and not is_open(pair):
                found[pair] = block
    return found


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
    scanned: bool = False  # its openings are the pairs that received their token only


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
        # (wallet, token) -> the block its opening balance was read at (or found unreadable):
        # the pairs the fold holds. A tracked pair not here holds zero, or was forgotten.
        self.opened: dict[Pair, int] = {}
        self._read_to = -1  # the last block whose openings are in `opened`
        # Every tracked pair was opened when it became tracked (all of wallets x tokens, the
        # cross product), so `opened` need not hold them: until the first scan, or a resume
        # (which pairs the fold holds is not known then).
        self._all_open = not (self.wallets and self.tokens)
        # Which pairs to open when many become tracked: None by cost (`scan_is_cheaper`);
        # True always those that received the token, False always every pair.
        self.scan: bool | None = None

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
        received: dict[Pair, int] | None = None
        cross = len(new_wallets) * (len(self.tokens) + len(new_tokens))
        cross += len(self.wallets) * len(new_tokens)
        until = max([*new_wallets.values(), *new_tokens.values()], default=start)
        scanned_wallets = len(new_wallets) + (len(self.wallets) if new_tokens else 0)
        scanned_tokens = len(self.tokens) + len(new_tokens)
        scan = self.scan
        if scan is None and cross:
            limits = self.rpc.log_limits()
            scan = scan_is_cheaper(cross, scanned_wallets, scanned_tokens, until, limits)
        if scan and cross:
            received = self.received(new_wallets, new_tokens, until)
            out.scanned = True
        pairs = opening_pairs(new_wallets, new_tokens, self.wallets, self.tokens, received)
        self._open(out, pairs)
        tracked_tokens = (self.tokens | out.tokens) - excluded
        logs = self.transfers(flt, self.wallets | out.wallets, tracked_tokens)
        out.logs = _tracked_only(logs, new_wallets, new_tokens, self.wallets, self.tokens)
        if self._all_open and not out.scanned:
            return out
        # Pairs seen moving while not open (zero when tracked, or forgotten): read where
        # they first appear.
        just_opened = {p for at in (out.openings, out.unreadable) for b in at.values() for p in b}
        appear = first_appearances(
            out.logs,
            lambda pair: pair in self.opened or pair in just_opened,
            new_wallets,
            new_tokens,
            self.wallets,
            self.tokens,
        )
        self._open(out, [(w, t, block) for (w, t), block in sorted(appear.items())])
        return out

    def _open(self, out: TrackedRead, pairs: list[tuple[str, str, int]]) -> None:
        """Read these pairs' opening balances into `out` (an unreadable one with its reason)."""
        for (wallet, token, block), balance in zip(pairs, self.balances_of(pairs), strict=True):
            if isinstance(balance, ArchiveRequired):
                out.unreadable.setdefault(block, {})[(wallet, token)] = str(balance)
            else:
                out.openings.setdefault(block, {})[(wallet, token)] = balance

    def received(
        self, new_wallets: Mapping[str, int], new_tokens: Mapping[str, int], until: int
    ) -> dict[Pair, int]:
        """The first block at which each pair about to be tracked received its token, up to
        `until`: new wallets with every token, old wallets with the new tokens (`Transfer`
        to the wallet, or WETH's `Deposit` for it), from block 0."""
        groups = [(sorted(new_wallets), sorted(self.tokens | set(new_tokens)))]
        if new_tokens and self.wallets:
            groups.append((sorted(self.wallets), sorted(new_tokens)))
        limits = self.rpc.log_limits()
        first: dict[Pair, int] = {}
        base = {"fromBlock": "0x0", "toBlock": hex(until)}
        for wallets, tokens in groups:
            for addresses, chunk in transfer_chunks(wallets, tokens, limits):
                padded = [_padded(w) for w in chunk]
                for topics, at in (([TRANSFER, None, padded], 2), ([DEPOSIT, padded], 1)):
                    for item in self.rpc.get_logs({**base, "address": addresses, "topics": topics}):
                        item_topics = item["topics"]
                        if len(item_topics) <= at:
                            continue
                        pair = (_topic_address(str(item_topics[at])), str(item["address"]).lower())
                        block = int(item["blockNumber"], 16)
                        if block < first.get(pair, block + 1):
                            first[pair] = block
        return first

    def checkpoint(self) -> tuple[set[str], set[str], set[str], set[str], int, bool]:
        return (
            set(self.wallets),
            set(self.tokens),
            set(self._pending_wallets),
            set(self._pending_tokens),
            self._read_to,
            self._all_open,
        )

    def rollback(
        self, checkpoint: tuple[set[str], set[str], set[str], set[str], int, bool]
    ) -> None:
        """Back to a checkpoint: a read that committed and then failed is read again."""
        self.wallets, self.tokens, self._pending_wallets, self._pending_tokens = checkpoint[:4]
        self._forget_after(checkpoint[4])
        self._all_open = checkpoint[5]
        self.snapshot = self._snapshot()

    def restore(
        self, snapshot: tuple[tuple[str, ...], tuple[str, ...]], block: int | None = None
    ) -> None:
        """Back to what was tracked after an earlier block (a reorg rolled the state back);
        pairs opened after `block` are forgotten (None: every pair: each is read again where
        it next appears)."""
        self.wallets, self.tokens = set(snapshot[0]), set(snapshot[1])
        self._forget_after(-1 if block is None else block)
        self.snapshot = snapshot

    def _forget_after(self, block: int) -> None:
        if self._read_to > block:
            self.opened = {pair: at for pair, at in self.opened.items() if at <= block}
            self._read_to = block

    def open_pending(
        self, block: int, excluded: set[str]
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], str]]:
        """Opening balances at `block` of the wallets and tokens waiting to be tracked, and
        track them from now on: for a block already read, whose transfers they include. Also
        the pairs whose balance the node could not read (why, by pair)."""
        wallets, tokens = set(self._pending_wallets), set(self._pending_tokens) - excluded
        pairs = [(w, t, block) for w in sorted(wallets) for t in sorted(self.tokens | tokens)]
        pairs += [(w, t, block) for w in sorted(self.wallets) for t in sorted(tokens)]
        read = TrackedRead(wallets=wallets, tokens=tokens)
        self._open(read, pairs)
        self.commit(read)
        return read.openings.get(block, {}), read.unreadable.get(block, {})

    def commit(self, read: TrackedRead) -> None:
        if read.scanned:
            self._all_open = False
        if not self._all_open:
            for at in (read.openings, read.unreadable):
                for block, pairs in at.items():
                    self._read_to = max(self._read_to, block)
                    for pair in pairs:
                        self.opened[pair] = block
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
        chunks = [
            (addresses, [_padded(w) for w in chunk])
            for addresses, chunk in transfer_chunks(
                sorted(wallets), sorted(tokens), self.rpc.log_limits()
            )
        ]
        senders = [{**flt, "address": a, "topics": [TRANSFER, w]} for a, w in chunks]
        recipients = [{**flt, "address": a, "topics": [TRANSFER, None, w]} for a, w in chunks]
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
