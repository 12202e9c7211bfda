"""Read Comet's state with eth_call at the blocks the flow needs it (I/O only).

Comet emits no event when interest accrues, and its base amounts are present values, so the
principal an event leaves depends on the index at that instant. Rather than re-deriving it, the
reader asks the comet, at the end of each block where it must (every live block; in backfill,
each block with the comet's own logs, and where `ReaderHost.state_read_blocks` says any market
is read: a followed feed logged, the last block with logs before a window boundary, the range's
end): `totalsBasic()`, `userBasic(account)` and `userCollateral(account, asset)` for what the
block touched, and `getPrice(feed)` for every feed it uses. Between reads, interest is the
fold's (accrued to each block's time from the stored totals, exactly as Comet projects them);
a feed that moves with no log the flow follows is seen at the next read. Its configuration is
read when it is first seen and again after each proxy `Upgraded`. The answers go on
`BlockBatch.reads["compound_v3"]` (comet -> CometReads); the pure fold
(protocols/compound_v3/state.py) turns them into account versions and values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog

from ports.rpc import JsonRpc
from protocols.compound_v3 import calls as rd
from protocols.compound_v3 import events as ev
from protocols.compound_v3.state import NAME
from protocols.spec import ProtocolReader, ReaderHost, Seeded, Seeding
from schemas.chain import BlockBatch
from schemas.chain_config import ChainConfig
from schemas.comet import CometConfig, CometReads
from schemas.errors import RpcError, RpcTransportError

log = structlog.get_logger("defimon.comet")


def silent_accrual(before: int, accrued: int, timestamp: int, events: Sequence[ev.Event]) -> bool:
    """True if the comet accrued (lastAccrualTime moved) where no event of this block says
    which base balances changed: at an earlier block the flow did not read (no comet log),
    or at this one without a base event (Supply, Withdraw, base Transfer, AbsorbDebt).
    Collateral moves and collateral sales do not accrue."""
    if accrued == before:
        return False
    explained = accrued == timestamp and any(
        isinstance(e, ev.BaseChanged | ev.AbsorbDebt) for e in events
    )
    return not explained


class CometReader(ProtocolReader):
    """The comets' logs are watched (they announce nothing), their state read as above."""

    name = NAME

    def __init__(self, rpc: JsonRpc, comets: Sequence[str], host: ReaderHost) -> None:
        self.rpc = rpc
        self.comets = tuple(comets)
        self._token_infos = host.token_infos
        self._host = host
        self.configs: dict[str, CometConfig] = {}
        # Accounts whose every collateral balance was read once; the others get that read
        # when first seen (they may hold collateral from before the start block).
        self._seen: set[tuple[str, str]] = set()
        self._warned: set[str] = set()
        # Watch mode: only these accounts are read (None: every account the logs touch).
        self.users: set[str] | None = None
        self.requests = 0  # JSON-RPC batches sent, and the eth_calls in them (for the costs)
        self.calls = 0
        self._last_accrual: dict[str, int] = {}  # comet -> lastAccrualTime last read

    def addresses(self) -> list[str]:
        return list(self.comets)

    def checkpoint(self) -> tuple[dict[str, CometConfig], set[tuple[str, str]], dict[str, int]]:
        return dict(self.configs), set(self._seen), dict(self._last_accrual)

    def rollback(self, saved: Any) -> None:
        self.configs, self._seen, self._last_accrual = saved

    def read(self, batches: list[BlockBatch]) -> None:
        """Fill `batch.reads[NAME]` for the batches where a comet must be read: every live
        block; in backfill its own logs' blocks and the host's `state_read_blocks` (a
        followed feed's update, a window's last block, a range's end).

        Prices are read at each of them, not only where the comet emitted logs: a price moves
        without a comet event (`getPrice` reads the feed), and an account becomes absorbable
        in that block. The cost is one JSON-RPC batch per such block and comet:
        `totalsBasic` + one `getPrice` per distinct feed (+ the accounts the block touched).
        """
        every = self._host.state_read_blocks(batches)
        for batch in batches:
            by_comet: dict[str, list[Any]] = {}
            for lg in batch.logs:
                if lg.address in self.comets:
                    by_comet.setdefault(lg.address, []).append(lg)
            for comet in self.comets:
                logs = by_comet.get(comet, [])
                # A comet not readable yet (not deployed) is tried again only where it
                # emitted logs or at a checkpoint, not at every watched block.
                known = comet in self.configs and batch.header.number in every
                if logs or batch.checkpoint or known:
                    reads = self._read_block(comet, batch, logs)
                    if reads is not None:
                        batch.reads.setdefault(NAME, {})[comet] = reads

    def _block(self, batch: BlockBatch) -> dict[str, str] | str:
        # By hash (EIP-1898) where known: a reorg cannot answer for another block.
        return {"blockHash": batch.header.hash} if batch.header.hash else hex(batch.header.number)

    def _calls(self, comet: str, datas: list[str], block: object) -> list[Any]:
        """eth_call each data at the block; an answer that failed is an RpcError instance."""
        calls = [("eth_call", [{"to": comet, "data": d}, block]) for d in datas]
        if not calls:
            return []
        self.requests += 1
        self.calls += len(calls)
        # A node out of reach raises (RpcTransportError): the source retries the whole range,
        # so a network fault never turns into a missing read.
        return self.rpc.batch_each(calls)

    def seed(self, wallets: list[str], block: int, seeding: Seeding) -> Seeded:
        """Watch mode: `comets` below, counted in the seed's cost; the part is comet ->
        CometReads, its tokens every comet's base and collateral assets."""
        before = (self.requests, self.calls)
        found = self.comets_at(wallets, block)
        seeding.cost.requests += self.requests - before[0]
        seeding.cost.calls += self.calls - before[1]
        tokens: set[str] = set()
        for reads in found.values():
            if reads.config is not None:
                tokens |= {reads.config.base_token, *(a.asset for a in reads.config.assets)}
        return Seeded(found, tokens)

    def comets_at(self, users: Sequence[str], block: int) -> dict[str, CometReads]:
        """Watch mode: each comet's configuration, totals and prices at the end of `block`,
        and these wallets' `userBasic` and every `userCollateral`, so their accounts are
        exact from that block on without the comet's history. One batch per comet (two more
        the first time, for the configuration). A comet not readable there is left out."""
        wanted = sorted(set(users))
        if self.users is None:
            self.users = set()
        self.users.update(wanted)
        out: dict[str, CometReads] = {}
        for comet in self.comets:
            if comet not in self.configs:
                try:
                    self.configs[comet], _tokens = self._read_config(comet, hex(block))
                except RpcTransportError:
                    raise  # the source reads the whole seed again
                except (RpcError, rd.DecodeError) as exc:
                    log.warning("comet.seed_unreadable", comet=comet, block=block, error=str(exc))
                    continue
            reads = self._read_state(comet, hex(block), wanted, set(), set(wanted))
            reads.config = self.configs[comet]
            out[comet] = reads
        return out

    def _read_config(self, comet: str, block: object) -> tuple[CometConfig, list[str]]:
        """The configuration, and its tokens (the base first) for their metadata."""
        first = self._calls(comet, [*rd.CONFIG_SELECTORS, rd.NUM_ASSETS], block)
        for result in first:
            if isinstance(result, RpcError):
                raise result
        count = rd.decode_num_assets(first[-1])
        infos = self._calls(comet, [rd.asset_info_data(i) for i in range(count)], block)
        assets = []
        for result in infos:
            if isinstance(result, RpcError):
                raise result
            assets.append(rd.decode_asset_info(result))
        config = rd.decode_config(comet, first[:-1], assets)
        return config, [config.base_token, *(a.asset for a in assets)]

    def _read_block(self, comet: str, batch: BlockBatch, logs: list[Any]) -> CometReads | None:
        reads = CometReads()
        block = self._block(batch)
        by_log: list[tuple[Any, list[ev.Event]]] = []
        for lg in logs:
            try:
                by_log.append((lg, ev.decode(lg) or []))
            except ev.DecodeError:
                continue  # the fold dead-letters it with the reason
        decoded = [e for _lg, events in by_log for e in events]
        # A base transfer leg whose other side emitted nothing (src only borrowed more, or
        # dst only repaid): that account changed silently, whoever it is.
        half_transfer = any(
            (leg := ev.base_transfer(by_log, i, e)) is not None
            and leg.counterparty == ev.ZERO_ADDRESS
            for i, (_lg, events) in enumerate(by_log)
            for e in events
            if isinstance(e, ev.BaseChanged) and e.counterparty == ev.ZERO_ADDRESS
        )
        upgraded = any(isinstance(e, ev.Upgraded) for e in decoded)
        if comet not in self.configs or upgraded:
            try:
                reads.config, tokens = self._read_config(comet, block)
                self.configs[comet] = reads.config
                # Symbols for the wire format; the fold names the assets from the token table.
                batch.tokens.update(self._token_infos(tokens))
            except RpcTransportError:
                raise
            except (RpcError, rd.DecodeError) as exc:
                # Not deployed yet at this block, or not a comet: try again at the next one.
                if comet not in self._warned:  # once: it is tried at every checkpoint
                    self._warned.add(comet)
                    log.warning("comet.config_unreadable", comet=comet, error=str(exc))
                if comet not in self.configs:
                    return None
                reads.errors.append(f"configuration: {exc}")
        accounts, pairs = ev.touched(decoded)
        # The comet's own collateral (sold by buyCollateral) is reserves, not an account.
        accounts.discard(comet)
        if self.users is not None:
            accounts &= self.users
        pairs = {(a, asset) for a, asset in pairs if a in accounts}
        fresh = {a for a in accounts if (comet, a) not in self._seen}
        combined = self._read_state(comet, block, sorted(accounts), pairs, fresh)
        combined.config, combined.errors = reads.config, reads.errors + combined.errors
        if combined.totals is not None:
            accrued = combined.totals.last_accrual_time
            before = self._last_accrual.get(comet)
            self._last_accrual[comet] = accrued
            if half_transfer or (
                before is not None
                and silent_accrual(before, accrued, batch.header.timestamp, decoded)
            ):
                self._read_every_account(comet, block, combined)
        return combined

    def _read_every_account(self, comet: str, block: object, reads: CometReads) -> None:
        """The comet accrued without an event that says whose base balance moved: a base
        `transfer` that only moved borrows (src borrows more, dst repays) emits nothing at
        all. Read every known account's userBasic again (one more batch, only then)."""
        known = sorted(
            a
            for c, a in self._seen
            if c == comet and a not in reads.users and (self.users is None or a in self.users)
        )
        results = self._calls(comet, [rd.user_basic_data(a) for a in known], block)
        for a, result in zip(known, results, strict=True):
            try:
                if isinstance(result, RpcError):
                    raise result
                reads.users[a] = rd.decode_user_basic(result)
            except (RpcError, rd.DecodeError) as exc:
                reads.errors.append(f"userBasic({a}): {exc}")

    def _read_state(
        self,
        comet: str,
        block: object,
        users: Sequence[str],
        pairs: set[tuple[str, str]],
        fresh: set[str],
    ) -> CometReads:
        """One batch: `totalsBasic`, each user's `userBasic`, the (user, asset) collateral
        `pairs` and every asset's for the `fresh` users (never read in full: they may hold
        collateral from before), and `getPrice` of every feed."""
        reads = CometReads()
        config = self.configs[comet]
        wanted = set(pairs)
        for a in fresh:
            wanted |= {(a, info.asset) for info in config.assets}
        collateral = sorted(wanted)
        feeds = config.feeds()
        datas = [
            rd.TOTALS_BASIC,
            *(rd.user_basic_data(a) for a in users),
            *(rd.user_collateral_data(a, asset) for a, asset in collateral),
            *(rd.get_price_data(f) for f in feeds),
        ]
        results = iter(self._calls(comet, datas, block))

        def take(what: str, decoder: Callable[[object], Any]) -> Any:
            result = next(results)
            try:
                if isinstance(result, RpcError):
                    raise result
                return decoder(result)
            except (RpcError, rd.DecodeError) as exc:
                reads.errors.append(f"{what}: {exc}")
                return None

        reads.totals = take("totalsBasic()", rd.decode_totals_basic)
        for a in users:
            found = take(f"userBasic({a})", rd.decode_user_basic)
            if found is not None:
                reads.users[a] = found
                self._seen.add((comet, a))
        for a, asset in collateral:
            balance = take(f"userCollateral({a}, {asset})", rd.decode_user_collateral)
            if balance is not None:
                reads.collateral[(a, asset)] = balance
        for feed in feeds:
            price = take(f"getPrice({feed})", rd.decode_price)
            if price is not None:
                reads.prices[feed] = price
        if reads.errors:
            log.warning(
                "comet.reads_failed",
                comet=comet,
                block=block,
                errors=reads.errors[:5],
            )
        return reads


def comet_reader(config: ChainConfig, rpc: JsonRpc, host: ReaderHost) -> CometReader | None:
    cfg = config.compound_v3
    if cfg is None or not cfg.comets:
        return None
    return CometReader(rpc, cfg.comets, host)
