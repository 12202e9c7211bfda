"""Wallet watch mode, the reading side (I/O only; the market stage seeds itself, pure).

A wallet the flow never indexed is shown from one block B on, without the chain's history:

- its position NFTs from the position manager's `Transfer` logs filtered by topic to the
  wallet (received, and sent away: the last one of each token says whether it still holds
  it), their deposits, withdrawals and collects from the NFTs' own logs filtered by token id;
- with eth_call at B: each NFT's `positions(tokenId)`, its pool's state (slot0, liquidity, fee
  growth, protocol fees, spacing, every initialized tick found from the `tickBitmap` words)
  and the manager's `pool.positions(key)` for the NFTs' ranges, so the pool replica replays
  swaps exactly from B+1 on; Aave's reserves (data, configuration, oracle source and answer,
  eMode categories) and the wallet's scaled balances, stable debt, collateral flags and eMode;
  each comet's configuration, `totalsBasic` and prices, and the wallet's `userBasic` and every
  `userCollateral` (from then on the comet reader reads only watched wallets' accounts).

All of it rides on block B's batch (`BlockBatch.seeds`). From B+1 on the source follows the
contracts the wallet needs (its pools, the position manager, the Aave pool, configurator,
oracle, reserve tokens and feeds) with the usual address-filtered `eth_getLogs`.

The hand-off from the API (`POST /v1/watch`) to the chain reader's thread is
`ports.watch.WatchRequests`: the API imports it without importing the flow.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

import structlog
from eth_abi import decode, encode
from eth_utils import keccak

from flows.chain_reader import ChainReader
from flows.rpc import RpcClient
from ports.metrics import METRICS
from protocols.aave_v3.state import account_id, oracle_price
from protocols.abi import selector
from protocols.base import ZERO_ADDRESS
from protocols.uniswap_v3 import events as uni
from protocols.uniswap_v3.math import MAX_TICK, MIN_TICK
from protocols.uniswap_v3.state import position_id
from schemas.chain import RawLog, TokenInfo
from schemas.comet import CometReads
from schemas.errors import RangeTooLarge, RpcError
from schemas.lending import (
    AaveAccount,
    AccountReserveState,
    EModeInfo,
    ReserveInfo,
    ReserveRates,
)
from schemas.positions import UniswapPosition
from schemas.prices import SourceRead
from schemas.watch import AaveSeed, PoolPositionSeed, PoolSeed, TickSeed, WatchSeed

log = structlog.get_logger("defimon.watch")

CALLS_PER_BATCH = 500


_POSITIONS = selector("positions(uint256)")
_GET_POOL = selector("getPool(address,address,uint24)")
_SLOT0 = selector("slot0()")
_LIQUIDITY = selector("liquidity()")
_FEE_GROWTH0 = selector("feeGrowthGlobal0X128()")
_FEE_GROWTH1 = selector("feeGrowthGlobal1X128()")
_PROTOCOL_FEES = selector("protocolFees()")
_TICK_SPACING = selector("tickSpacing()")
_TICK_BITMAP = selector("tickBitmap(int16)")
_TICKS = selector("ticks(int24)")
_POOL_POSITIONS = selector("positions(bytes32)")
_RESERVES_LIST = selector("getReservesList()")
_RESERVE_DATA = selector("getReserveData(address)")
_USER_CONFIGURATION = selector("getUserConfiguration(address)")
_USER_EMODE = selector("getUserEMode(address)")
_EMODE_CATEGORY = selector("getEModeCategoryData(uint8)")
# 3.2+ (3.6+ ltvzero, 3.7 isolated); an older pool reverts, read as 0.
_EMODE_BITMAPS = (
    selector("getEModeCategoryCollateralBitmap(uint8)"),
    selector("getEModeCategoryBorrowableBitmap(uint8)"),
    selector("getEModeCategoryLtvzeroBitmap(uint8)"),
    selector("getIsEModeCategoryIsolated(uint8)"),
)
_SOURCE_OF_ASSET = selector("getSourceOfAsset(address)")
_SCALED_BALANCE = selector("scaledBalanceOf(address)")
_PRINCIPAL_BALANCE = selector("principalBalanceOf(address)")
_USER_STABLE_RATE = selector("getUserStableRate(address)")
_USER_LAST_UPDATED = selector("getUserLastUpdated(address)")


def _padded(address: str) -> str:
    return "0x" + address[2:].rjust(64, "0")


def _arg(types: list[str], values: list[Any]) -> str:
    return encode(types, values).hex()


def _words(data: str, count: int) -> list[int]:
    if not isinstance(data, str) or len(data) < 2 + 64 * count:
        raise RpcError(f"eth_call answered {str(data)[:80]!r}, expected {count} words")
    return [int(data[2 + 64 * i : 66 + 64 * i], 16) for i in range(count)]


def _signed(word: int, bits: int) -> int:
    word &= (1 << bits) - 1
    return word - (1 << bits) if word >> (bits - 1) else word


def _address(word: int) -> str:
    return f"0x{word & ((1 << 160) - 1):040x}"


def pool_position_key(owner: str, tick_lower: int, tick_upper: int) -> str:
    """keccak256(abi.encodePacked(owner, tickLower, tickUpper)), as the pool keys positions."""
    packed = (
        bytes.fromhex(owner[2:])
        + (tick_lower % (1 << 24)).to_bytes(3, "big")
        + (tick_upper % (1 << 24)).to_bytes(3, "big")
    )
    return "0x" + keccak(packed).hex()


def bitmap_words(tick_spacing: int) -> range:
    """Every tickBitmap word a pool of this spacing can use."""
    return range((MIN_TICK // tick_spacing) >> 8, ((MAX_TICK // tick_spacing) >> 8) + 1)


def held_token_ids(received: Iterable[dict[str, Any]], sent: Iterable[dict[str, Any]]) -> set[int]:
    """Token ids whose last Transfer involving the wallet was towards it (pure)."""
    last: dict[int, tuple[int, int, bool]] = {}
    for items, incoming in ((received, True), (sent, False)):
        for item in items:
            token_id = int(item["topics"][3], 16)
            at = (int(item["blockNumber"], 16), int(item["logIndex"], 16))
            if token_id not in last or at > last[token_id][:2]:
                last[token_id] = (*at, incoming)
    return {t for t, (_b, _i, incoming) in last.items() if incoming}


@dataclass(slots=True)
class SeedCost:
    """JSON-RPC requests (HTTP round trips) and calls (batched calls count one each)."""

    requests: int = 0
    calls: int = 0


class WatchReader:
    """Seeds wallets at a block; see the module doc. Runs on the chain reader's thread."""

    def __init__(
        self,
        rpc: RpcClient,
        reader: ChainReader,
        watched: Iterable[tuple[str, int]] = (),
    ) -> None:
        self.rpc = rpc
        self.reader = reader
        self.config = reader.config
        self.chain_id = reader.chain_id
        # No Uniswap in the config: no NFT is searched for or seeded ("" matches no log).
        uniswap = self.config.uniswap_v3
        self.npm = uniswap.position_manager if uniswap is not None else ""
        self.factory = uniswap.factory if uniswap is not None else ""
        # History searched for a wallet's NFTs: from the config's start_block.
        self.search_from = self.config.start_block
        self.watched: dict[str, int] = dict(watched)  # wallet -> block it was seeded at
        self.cost = SeedCost()
        self._emode_seen: set[int] = set()
        self._seeded_tokens: set[int] = set()

    # JSON-RPC, counted ---------------------------------------------------------------------

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

    def _calls(self, to_data: Sequence[tuple[str, str]], block: int) -> list[Any]:
        return self._batch(
            [("eth_call", [{"to": to, "data": data}, hex(block)]) for to, data in to_data]
        )

    def _logs(self, base: dict[str, Any], start: int, end: int) -> list[dict[str, Any]]:
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

    # Seeding ----------------------------------------------------------------------------------

    def seed(self, wallets: Iterable[str], block: int) -> WatchSeed:
        """Everything the flow needs to show these wallets exactly from the end of `block`
        on. Registers the contracts to follow with the chain reader (idempotent, so a failed
        seed can simply be read again)."""
        fresh = sorted({w.lower() for w in wallets} - self.watched.keys() - {ZERO_ADDRESS})
        started, before = time.monotonic(), (self.cost.requests, self.cost.calls)
        positions, pools = self._uniswap(fresh, block) if fresh and self.npm else ((), ())
        aave = self._aave(fresh, block) if fresh and self.config.aave_v3 is not None else None
        comet = self._comet(fresh, block)
        tokens = {t for p in pools for t in (p.token0, p.token1)}
        if aave is not None:
            tokens |= {r.asset for r in aave.reserves}
        for reads in comet.values():
            if reads.config is not None:
                tokens |= {reads.config.base_token, *(a.asset for a in reads.config.assets)}
        infos = self._token_infos(tokens)
        # Follow the new contracts from the next block read on; track the wallets' ERC-20s.
        self.reader.children.update(p.pool for p in pools if p.full)
        if aave is not None:
            for r in aave.reserves:
                self.reader.children.update((r.a_token, r.stable_debt_token, r.variable_debt_token))
        self.reader.balances.track(fresh, tokens)
        for wallet in fresh:
            self.watched[wallet] = block
        self._count(before[1])
        log.info(
            "watch.seeded",
            chain_id=self.chain_id,
            block=block,
            wallets=len(fresh),
            positions=len(positions),
            pools=len(pools),
            accounts=len(aave.accounts) if aave else 0,
            requests=self.cost.requests - before[0],
            calls=self.cost.calls - before[1],
            seconds=round(time.monotonic() - started, 3),
        )
        return WatchSeed(tuple(fresh), infos, pools, positions, aave, comet)

    def _comet(self, wallets: list[str], block: int) -> dict[str, CometReads]:
        """The comets' state and the wallets' accounts at `block` (protocols/compound_v3/reader)."""
        comet = self.reader.comet
        if not wallets or comet is None:
            return {}
        before = (comet.requests, comet.calls)
        found = comet.seed(wallets, block)
        self.cost.requests += comet.requests - before[0]
        self.cost.calls += comet.calls - before[1]
        return found

    def _count(self, calls_before: int) -> None:
        chain = str(self.chain_id)
        METRICS.watch_seeds.labels(chain_id=chain).inc()
        METRICS.watch_seed_calls.labels(chain_id=chain).inc(self.cost.calls - calls_before)

    def _token_infos(self, addresses: Iterable[str]) -> dict[str, TokenInfo]:
        wanted = set(addresses)
        unread = [a for a in wanted if not self.reader.knows_token(a)]
        if unread:
            self.cost.requests += 1
            self.cost.calls += 2 * len(unread)
        return self.reader.token_info(wanted)

    def new_tokens(self, logs: Iterable[RawLog]) -> dict[int, str]:
        """NFTs these logs minted or moved to a watched wallet that were not seeded yet
        (token id -> holder): their fee checkpoint comes from the manager, not the logs."""
        found: dict[int, str] = {}
        if not self.npm:
            return found
        for lg in logs:
            if lg.address != self.npm or len(lg.topics) != 4 or lg.topics[0] != uni.TRANSFER:
                continue
            token_id, holder = int(lg.topics[3], 16), "0x" + lg.topics[2][-40:]
            if holder in self.watched and token_id not in self._seeded_tokens:
                found[token_id] = holder
            elif token_id in found:
                del found[token_id]  # moved on within the block
        return found

    def seed_tokens(self, holders: dict[int, str], block: int) -> WatchSeed:
        """Seed NFTs that came to watched wallets at `block` (see `new_tokens`)."""
        started, before = time.monotonic(), (self.cost.requests, self.cost.calls)
        positions, pools = self._positions(sorted(holders), holders, block)
        tokens = {t for p in pools for t in (p.token0, p.token1)}
        infos = self._token_infos(tokens)
        self.reader.children.update(p.pool for p in pools if p.full)
        self.reader.balances.track((), tokens)
        self._count(before[1])
        log.info(
            "watch.seeded_nfts",
            chain_id=self.chain_id,
            block=block,
            positions=len(positions),
            pools=len(pools),
            requests=self.cost.requests - before[0],
            calls=self.cost.calls - before[1],
            seconds=round(time.monotonic() - started, 3),
        )
        return WatchSeed((), infos, pools, positions)

    def _uniswap(
        self, wallets: list[str], block: int
    ) -> tuple[tuple[UniswapPosition, ...], tuple[PoolSeed, ...]]:
        padded = [_padded(w) for w in wallets]
        received = self._logs(
            {"address": self.npm, "topics": [uni.TRANSFER, None, padded]}, self.search_from, block
        )
        sent = self._logs(
            {"address": self.npm, "topics": [uni.TRANSFER, padded]}, self.search_from, block
        )
        owner_of = {int(i["topics"][3], 16): "0x" + i["topics"][2][-40:].lower() for i in received}
        held = sorted(held_token_ids(received, sent))
        return self._positions(held, owner_of, block)

    def _positions(
        self, held: list[int], owner_of: dict[int, str], block: int
    ) -> tuple[tuple[UniswapPosition, ...], tuple[PoolSeed, ...]]:
        if not held:
            return (), ()
        self._seeded_tokens.update(held)
        raw = self._calls([(self.npm, _POSITIONS + _arg(["uint256"], [t])) for t in held], block)
        npm_positions = {}
        for token_id, out in zip(held, raw, strict=True):
            w = _words(out, 12)
            npm_positions[token_id] = (
                _address(w[2]),
                _address(w[3]),
                w[4],
                _signed(w[5], 24),
                _signed(w[6], 24),
                w[7],
                w[8],
                w[9],
                w[10],
                w[11],
            )
        # Deposits, withdrawals and collects over each NFT's life (valuation's hodl baseline).
        ids = [_padded(f"0x{t:x}") for t in held]
        flows: dict[int, list[int]] = {t: [0] * 6 for t in held}
        for item in self._logs(
            {
                "address": self.npm,
                "topics": [[uni.INCREASE_LIQUIDITY, uni.DECREASE_LIQUIDITY, uni.COLLECT], ids],
            },
            self.search_from,
            block,
        ):
            token_id = int(item["topics"][1], 16)
            w = _words(item["data"], 3)
            kind = item["topics"][0]
            at = 0 if kind == uni.INCREASE_LIQUIDITY else 2 if kind == uni.DECREASE_LIQUIDITY else 4
            flows[token_id][at] += w[1]
            flows[token_id][at + 1] += w[2]
        keys = sorted({(p[0], p[1], p[2]) for p in npm_positions.values()})
        found = self._calls(
            [
                (self.factory, _GET_POOL + _arg(["address", "address", "uint24"], list(k)))
                for k in keys
            ],
            block,
        )
        pool_of = {k: _address(_words(out, 1)[0]) for k, out in zip(keys, found, strict=True)}
        ranges: dict[str, set[tuple[int, int]]] = {}
        for p in npm_positions.values():
            ranges.setdefault(pool_of[(p[0], p[1], p[2])], set()).add((p[3], p[4]))
        pools = tuple(
            self._pool(pool, key, sorted(ranges[pool]), block)
            for key, pool in sorted(pool_of.items(), key=lambda kv: kv[1])
        )
        infos = self._token_infos({t for k in keys for t in k[:2]})
        positions = []
        for token_id in held:
            t0, t1, fee, lower, upper, liquidity, in0, in1, owed0, owed1 = npm_positions[token_id]
            f = flows[token_id]
            positions.append(
                UniswapPosition(
                    chain_id=self.chain_id,
                    position_id=position_id(self.chain_id, self.npm, token_id),
                    position_manager=self.npm,
                    token_id=token_id,
                    pool=pool_of[(t0, t1, fee)],
                    token0=t0,
                    token1=t1,
                    symbol0=infos[t0].symbol,
                    symbol1=infos[t1].symbol,
                    decimals0=infos[t0].decimals,
                    decimals1=infos[t1].decimals,
                    fee=fee,
                    owner=owner_of[token_id],
                    tick_lower=lower,
                    tick_upper=upper,
                    liquidity=liquidity,
                    deposited0=f[0],
                    deposited1=f[1],
                    withdrawn0=f[2],
                    withdrawn1=f[3],
                    collected0=f[4],
                    collected1=f[5],
                    fee_inside_last0=in0,
                    fee_inside_last1=in1,
                    tokens_owed0=owed0,
                    tokens_owed1=owed1,
                )
            )
        return tuple(positions), pools

    def _pool(
        self, pool: str, key: tuple[str, str, int], ranges: list[tuple[int, int]], block: int
    ) -> PoolSeed:
        """A pool's state at `block`: whole if the flow does not follow it yet."""
        owned = self._calls(
            [
                (pool, _POOL_POSITIONS + pool_position_key(self.npm, lo, up)[2:])
                for lo, up in ranges
            ],
            block,
        )
        positions = []
        for (lower, upper), out in zip(ranges, owned, strict=True):
            w = _words(out, 5)
            positions.append(PoolPositionSeed(self.npm, lower, upper, *w))
        token0, token1, fee = key
        full = pool not in self.reader.children
        if not full:
            return PoolSeed(pool, token0, token1, fee, 0, False, positions=tuple(positions))
        slot0, liquidity, growth0, growth1, protocol, spacing = self._calls(
            [
                (pool, _SLOT0),
                (pool, _LIQUIDITY),
                (pool, _FEE_GROWTH0),
                (pool, _FEE_GROWTH1),
                (pool, _PROTOCOL_FEES),
                (pool, _TICK_SPACING),
            ],
            block,
        )
        s = _words(slot0, 7)
        tick_spacing = _signed(_words(spacing, 1)[0], 24)
        fees = _words(protocol, 2)
        words = list(bitmap_words(tick_spacing))
        bitmap = self._calls([(pool, _TICK_BITMAP + _arg(["int16"], [w])) for w in words], block)
        initialized = []
        for word_pos, out in zip(words, bitmap, strict=True):
            word = _words(out, 1)[0]
            while word:
                bit = (word & -word).bit_length() - 1
                initialized.append(((word_pos << 8) + bit) * tick_spacing)
                word &= word - 1
        infos = self._calls([(pool, _TICKS + _arg(["int24"], [t])) for t in initialized], block)
        ticks = []
        for tick, out in zip(initialized, infos, strict=True):
            w = _words(out, 8)
            ticks.append(TickSeed(tick, w[0], _signed(w[1], 128), w[2], w[3]))
        return PoolSeed(
            pool,
            token0,
            token1,
            fee,
            tick_spacing,
            True,
            sqrt_price_x96=s[0],
            tick=_signed(s[1], 24),
            liquidity=_words(liquidity, 1)[0],
            fee_growth_global0_x128=_words(growth0, 1)[0],
            fee_growth_global1_x128=_words(growth1, 1)[0],
            fee_protocol=s[5],
            protocol_fees0=fees[0],
            protocol_fees1=fees[1],
            ticks=tuple(ticks),
            positions=tuple(positions),
        )

    def _aave(self, wallets: list[str], block: int) -> AaveSeed:
        aave = self.config.aave_v3
        assert aave is not None
        (listed,) = self._calls([(aave.pool, _RESERVES_LIST)], block)
        assets = [a.lower() for a in decode(["address[]"], bytes.fromhex(listed[2:]))[0]]
        data = self._calls(
            [(aave.pool, _RESERVE_DATA + _arg(["address"], [a])) for a in assets], block
        )
        reserves: dict[str, list[int]] = {
            a: _words(out, 15) for a, out in zip(assets, data, strict=True)
        }
        new = [a for a in assets if _address(reserves[a][8]) not in self.reader.children]
        infos = self._token_infos(assets)
        seed_reserves, rates, prices = [], [], []
        source_reads: dict[str, SourceRead] = {}
        if new:
            sources = self._calls(
                [(aave.oracle, _SOURCE_OF_ASSET + _arg(["address"], [a])) for a in new], block
            )
            feeds = {a: _address(_words(out, 1)[0]) for a, out in zip(new, sources, strict=True)}
            # Classified and followed like an announced source; read as the oracle reads it.
            self.reader.prices.announce([(block, feeds[a], a) for a in new])
            source_reads = self.reader.prices.read([block])[block]
            for asset in new:
                w = reserves[asset]
                config = w[0]
                seed_reserves.append(
                    ReserveInfo(
                        asset,
                        _address(w[8]),
                        _address(w[9]),
                        _address(w[10]),
                        infos[asset].symbol,
                        infos[asset].decimals,
                        ltv=config & 0xFFFF,
                        liquidation_threshold=(config >> 16) & 0xFFFF,
                        liquidation_bonus=(config >> 32) & 0xFFFF,
                        emode_category=(config >> 168) & 0xFF,
                        reserve_id=w[7],
                    )
                )
                # getReserveData: liquidityIndex, liquidityRate, variableBorrowIndex,
                # variableBorrowRate, stableBorrowRate, lastUpdateTimestamp (words 1..6)
                rates.append(ReserveRates(asset, w[2], w[5], w[4], w[1], w[3], w[6]))
                prices.append(oracle_price(asset, source_reads[feeds[asset]], None, block))
        # The wallets' accounts: every reserve's token balances, configuration and eMode.
        calls: list[tuple[str, str]] = []
        for wallet in wallets:
            arg = _arg(["address"], [wallet])
            calls += [(aave.pool, _USER_CONFIGURATION + arg), (aave.pool, _USER_EMODE + arg)]
            for asset in assets:
                w = reserves[asset]
                a_token, stable, variable = _address(w[8]), _address(w[9]), _address(w[10])
                calls += [(a_token, _SCALED_BALANCE + arg), (variable, _SCALED_BALANCE + arg)]
                if w[9]:  # reserves listed since 3.2 have no stable debt token
                    calls += [
                        (stable, _PRINCIPAL_BALANCE + arg),
                        (stable, _USER_STABLE_RATE + arg),
                        (stable, _USER_LAST_UPDATED + arg),
                    ]
        results = iter(self._calls(calls, block))
        accounts = []
        categories = {(reserves[a][0] >> 168) & 0xFF for a in assets}
        for wallet in wallets:
            user_config = _words(next(results), 1)[0]
            emode = _words(next(results), 1)[0]
            categories.add(emode)
            held: dict[str, AccountReserveState] = {}
            for asset in assets:
                scaled, debt, principal, rate, updated = (
                    _words(next(results), 1)[0] if i < 2 or reserves[asset][9] else 0
                    for i in range(5)
                )
                reserve_id = reserves[asset][7]
                collateral = bool((user_config >> (2 * reserve_id + 1)) & 1)
                if scaled or debt or principal or collateral:
                    held[asset] = AccountReserveState(
                        asset,
                        scaled,
                        debt,
                        principal,
                        rate if principal else 0,
                        updated if principal else 0,
                        collateral,
                    )
            aid = account_id(self.chain_id, aave.pool, wallet)
            if held or emode:
                accounts.append(AaveAccount(self.chain_id, aave.pool, wallet, aid, emode, held))
        wanted = sorted(categories - {0} - self._emode_seen)
        emode_out = []
        if wanted:
            getters = (_EMODE_CATEGORY, *_EMODE_BITMAPS)
            found = iter(
                self._calls(
                    [(aave.pool, g + _arg(["uint8"], [c])) for c in wanted for g in getters],
                    block,
                )
            )
            for category in wanted:
                out = next(found)
                ltv, threshold, bonus, source, _label = decode(
                    ["(uint16,uint16,uint16,address,string)"], bytes.fromhex(out[2:])
                )[0]
                # Each getter's answer, 0 where an older pool reverts.
                bitmaps = [_words(r, 1)[0] if r is not None else 0 for r in islice(found, 4)]
                emode_out.append(
                    EModeInfo(
                        category,
                        ltv,
                        threshold,
                        bonus,
                        source.lower(),
                        bitmaps[0],
                        bitmaps[1],
                        bitmaps[2],
                        bool(bitmaps[3]),
                    )
                )
            self._emode_seen.update(wanted)
        return AaveSeed(
            tuple(seed_reserves),
            tuple(rates),
            tuple(prices),
            tuple(emode_out),
            tuple(accounts),
            tuple(source_reads[s] for s in sorted(source_reads)),
        )


def merge_seeds(first: WatchSeed | None, second: WatchSeed | None) -> WatchSeed | None:
    """Two seeds read at the same block, as one (the second's NFTs were seeded after)."""
    if first is None or second is None:
        return first or second
    return WatchSeed(
        first.wallets + second.wallets,
        {**first.tokens, **second.tokens},
        first.pools + second.pools,
        first.positions + second.positions,
        first.aave,
        _merge_comet(first.comet, second.comet),
    )


def _merge_comet(
    first: dict[str, CometReads], second: dict[str, CometReads]
) -> dict[str, CometReads]:
    """Comet reads of two seeds at one block: the comet's state is the same; the accounts add."""
    merged = dict(first)
    for comet, reads in second.items():
        known = merged.get(comet)
        merged[comet] = (
            reads
            if known is None
            else replace(
                known,
                users={**known.users, **reads.users},
                collateral={**known.collateral, **reads.collateral},
                errors=known.errors + reads.errors,
            )
        )
    return merged
