"""Aave V3's reader (I/O): the Pool, its configurator and its oracle are watched; the
configurator announces each reserve's aToken and debt tokens, the oracle its price sources
(read by the shared price service, flows/prices_reader.py, which this oracle configures).

The Pool's `POOL_REVISION()` is read (unless the config pins the version) at the first block
read, or while the pool has no code yet at its first log, and at every block where its proxy
logs `Upgraded`: `BlockBatch.reads["aave_v3"]` is the revision read at that block, and the
market applies that revision's rules from there on.

The Pool's `Supply`/`Borrow` (on behalf of), aToken and debt-token `Mint` (on behalf of) and
aToken `BalanceTransfer` (to) name the wallets whose ERC-20s are tracked.

Wallet watch mode reads, at the seed block, the reserves the flow does not follow yet (data,
configuration, oracle source and answer), the eMode categories, and each wallet's scaled
balances, stable debt, collateral flags and eMode.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

import structlog
from eth_abi import decode

from ports.rpc import JsonRpc
from protocols.aave_v3.events import (
    ASSET_SOURCE_UPDATED,
    BALANCE_TRANSFER,
    BORROW,
    RESERVE_INITIALIZED,
    SCALED_MINT,
    STABLE_MINT,
    SUPPLY,
    UPGRADED,
)
from protocols.aave_v3.state import account_id, oracle_price
from protocols.abi import answer_words, encoded, low_address, selector
from protocols.spec import Child, ProtocolReader, ReaderHost, Seeded, Seeding
from schemas.chain import BlockBatch
from schemas.chain_config import ChainConfig
from schemas.errors import RpcError, RpcTransportError
from schemas.lending import AaveAccount, AccountReserveState, EModeInfo, ReserveInfo, ReserveRates
from schemas.prices import SourceRead
from schemas.watch import AaveSeed

log = structlog.get_logger("defimon.source")

NAME = "aave_v3"

_POOL_REVISION = "0x0148170e"  # POOL_REVISION(): the Aave Pool's implementation revision
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

# topic0 -> whether only the Pool's logs name a wallet (else any watched token's do)
_WALLET_TOPICS = {
    SUPPLY: True,
    BORROW: True,
    SCALED_MINT: False,
    STABLE_MINT: False,
    BALANCE_TRANSFER: False,
}


def _word_address(word: str) -> str:
    return "0x" + word[-40:].lower()


def _decode_uint(value: object) -> int | None:
    if not isinstance(value, str) or len(value) < 3:
        return None
    try:
        return int(value[:66], 16)
    except ValueError:
        return None


class AaveReader(ProtocolReader):
    name = NAME

    def __init__(self, config: ChainConfig, rpc: JsonRpc, host: ReaderHost) -> None:
        aave = config.aave_v3
        assert aave is not None
        self.chain_id = config.chain_id
        self.rpc = rpc
        self.host = host
        self.pool, self.configurator, self.oracle = aave.pool, aave.pool_configurator, aave.oracle
        self.price_reads = aave.price_reads
        # The revision is read only when the config does not pin the version.
        self.read_revision = aave.version is None
        self._revision_read = False
        self._emode_seen: set[int] = set()  # watch mode: categories seeded already

    def addresses(self) -> list[str]:
        return [self.pool, self.configurator, self.oracle]

    def parents(self) -> dict[str, str]:
        return {self.configurator: "configurator", self.oracle: "oracle"}

    def children(self, kind: str, item: dict[str, Any]) -> list[Child]:
        topics = item["topics"]
        block = int(str(item["blockNumber"]), 16)
        if kind == "configurator" and topics[0] == RESERVE_INITIALIZED and len(topics) == 3:
            data = str(item.get("data", ""))
            if len(data) != 2 + 192:
                return []
            asset = _word_address(topics[1])
            announced = [
                _word_address(topics[2]),
                *(_word_address(w) for w in (data[2:66], data[66:130])),
            ]
            # Reserves listed since 3.2 have no stable debt token: stableDebtToken = 0x0.
            return [
                Child(block, token, (asset,) if i == 0 else ())
                for i, token in enumerate(announced)
                if int(token, 16)
            ]
        if kind == "oracle" and topics[0] == ASSET_SOURCE_UPDATED and len(topics) == 3:
            return [Child(block, _word_address(topics[2]), (_word_address(topics[1]),), "feed")]
        return []

    def price_oracle(self) -> tuple[str, str]:
        return self.oracle, self.price_reads

    # The Pool's revision ----------------------------------------------------------------------

    def read(self, batches: list[BlockBatch]) -> None:
        """POOL_REVISION() at the first block read (or, while the pool has no code yet, at
        its first log) and at every block where the Pool proxy was upgraded; each goes on its
        block's batch (every such block has one: it has a watched log, or it is the first)."""
        if not self.read_revision or not batches:
            return
        pool_logs = [
            (b, lg.topics[0] if lg.topics else None)
            for b in batches
            for lg in b.logs
            if lg.address == self.pool
        ]
        if not self._revision_read and not self._read_revision(batches[0]) and pool_logs:
            self._read_revision(pool_logs[0][0])
        upgraded = {id(b): b for b, t0 in pool_logs if t0 == UPGRADED}
        for batch in upgraded.values():
            if NAME not in batch.reads:
                self._read_revision(batch)

    def _read_revision(self, batch: BlockBatch) -> bool:
        try:
            out = self.rpc.call(
                "eth_call", [{"to": self.pool, "data": _POOL_REVISION}, hex(batch.header.number)]
            )
        except RpcTransportError:
            raise  # a fault, not an answer: the source reads the range again
        except RpcError as exc:
            log.warning("aave.revision_unreadable", pool=self.pool, error=str(exc))
            return False
        revision = _decode_uint(out)
        if not revision:
            return False  # no pool there yet (no code): the rules stay as they are
        batch.reads[NAME] = revision
        self._revision_read = True
        return True

    def checkpoint(self) -> bool:
        return self._revision_read

    def rollback(self, saved: Any) -> None:
        self._revision_read = bool(saved)

    # Wallets ----------------------------------------------------------------------------------

    def wallet_topics(self) -> frozenset[str]:
        return frozenset(_WALLET_TOPICS)

    def wallets(self, item: dict[str, Any]) -> list[str]:
        topics = item["topics"]
        if len(topics) < 3:
            return []
        if _WALLET_TOPICS[topics[0]] and item.get("address", "").lower() != self.pool:
            return []
        return [_word_address(topics[2])]

    # Watch mode -------------------------------------------------------------------------------

    def seed(self, wallets: list[str], block: int, seeding: Seeding) -> Seeded:
        pool = self.pool
        (listed,) = seeding.calls([(pool, _RESERVES_LIST)], block)
        assets = [a.lower() for a in decode(["address[]"], bytes.fromhex(listed[2:]))[0]]
        data = seeding.calls(
            [(pool, _RESERVE_DATA + encoded(["address"], [a])) for a in assets], block
        )
        reserves: dict[str, list[int]] = {
            a: answer_words(out, 15) for a, out in zip(assets, data, strict=True)
        }
        new = [a for a in assets if not self.host.follows(low_address(reserves[a][8]))]
        infos = seeding.token_info(assets)
        seed_reserves, rates, prices = [], [], []
        source_reads: dict[str, SourceRead] = {}
        if new:
            sources = seeding.calls(
                [(self.oracle, _SOURCE_OF_ASSET + encoded(["address"], [a])) for a in new], block
            )
            feeds = {
                a: low_address(answer_words(out, 1)[0]) for a, out in zip(new, sources, strict=True)
            }
            # Classified and followed like an announced source; read as the oracle reads it.
            source_reads = self.host.read_sources([(block, feeds[a], a) for a in new], block)
            for asset in new:
                w = reserves[asset]
                config = w[0]
                seed_reserves.append(
                    ReserveInfo(
                        asset,
                        low_address(w[8]),
                        low_address(w[9]),
                        low_address(w[10]),
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
        accounts, categories = self._accounts(wallets, assets, reserves, block, seeding)
        emode = self._emode(sorted(categories - {0} - self._emode_seen), block, seeding)
        seed = AaveSeed(
            tuple(seed_reserves),
            tuple(rates),
            tuple(prices),
            tuple(emode),
            tuple(accounts),
            tuple(source_reads[s] for s in sorted(source_reads)),
        )
        follow = {
            t
            for r in seed_reserves
            for t in (r.a_token, r.stable_debt_token, r.variable_debt_token)
        }
        return Seeded(seed, {r.asset for r in seed_reserves}, follow)

    def _accounts(
        self,
        wallets: list[str],
        assets: list[str],
        reserves: dict[str, list[int]],
        block: int,
        seeding: Seeding,
    ) -> tuple[list[AaveAccount], set[int]]:
        """The wallets' accounts: every reserve's token balances, configuration and eMode;
        and the eMode categories the reserves and the accounts name."""
        pool = self.pool
        calls: list[tuple[str, str]] = []
        for wallet in wallets:
            arg = encoded(["address"], [wallet])
            calls += [(pool, _USER_CONFIGURATION + arg), (pool, _USER_EMODE + arg)]
            for asset in assets:
                w = reserves[asset]
                a_token, stable, variable = low_address(w[8]), low_address(w[9]), low_address(w[10])
                calls += [(a_token, _SCALED_BALANCE + arg), (variable, _SCALED_BALANCE + arg)]
                if w[9]:  # reserves listed since 3.2 have no stable debt token
                    calls += [
                        (stable, _PRINCIPAL_BALANCE + arg),
                        (stable, _USER_STABLE_RATE + arg),
                        (stable, _USER_LAST_UPDATED + arg),
                    ]
        results = iter(seeding.calls(calls, block))
        accounts = []
        categories = {(reserves[a][0] >> 168) & 0xFF for a in assets}
        for wallet in wallets:
            user_config = answer_words(next(results), 1)[0]
            emode = answer_words(next(results), 1)[0]
            categories.add(emode)
            held: dict[str, AccountReserveState] = {}
            for asset in assets:
                scaled, debt, principal, rate, updated = (
                    answer_words(next(results), 1)[0] if i < 2 or reserves[asset][9] else 0
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
            aid = account_id(self.chain_id, pool, wallet)
            if held or emode:
                accounts.append(AaveAccount(self.chain_id, pool, wallet, aid, emode, held))
        return accounts, categories

    def _emode(self, wanted: list[int], block: int, seeding: Seeding) -> list[EModeInfo]:
        if not wanted:
            return []
        getters = (_EMODE_CATEGORY, *_EMODE_BITMAPS)
        found = iter(
            seeding.calls(
                [(self.pool, g + encoded(["uint8"], [c])) for c in wanted for g in getters],
                block,
            )
        )
        out = []
        for category in wanted:
            answer = next(found)
            ltv, threshold, bonus, source, _label = decode(
                ["(uint16,uint16,uint16,address,string)"], bytes.fromhex(answer[2:])
            )[0]
            # Each getter's answer, 0 where an older pool reverts.
            bitmaps = [answer_words(r, 1)[0] if r is not None else 0 for r in islice(found, 4)]
            out.append(
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
        return out


def aave_reader(config: ChainConfig, rpc: JsonRpc, host: ReaderHost) -> AaveReader | None:
    return AaveReader(config, rpc, host) if config.aave_v3 is not None else None
