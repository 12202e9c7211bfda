"""Uniswap V3's reader (I/O): the factory and the position manager are watched, the factory
announces pools, the manager's NFT transfers name the wallets whose ERC-20s are tracked.

Wallet watch mode seeds a wallet at block B without the chain's history: its position NFTs
from the manager's `Transfer` logs filtered by topic to the wallet (received, and sent away:
the last one of each token says whether it still holds it), their deposits, withdrawals and
collects from the NFTs' own logs filtered by token id; then with eth_call at B each NFT's
`positions(tokenId)`, its pool's state (slot0, liquidity, fee growth, protocol fees, spacing,
every initialized tick found from the `tickBitmap` words) and the manager's
`pool.positions(key)` for the NFTs' ranges, so the pool replica replays swaps exactly from B+1
on. An NFT that later comes to a watched wallet is seeded at its block the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eth_utils import keccak

from ports.rpc import JsonRpc
from protocols.abi import answer_words, encoded, low_address, padded, selector, signed_bits
from protocols.spec import Child, ProtocolReader, ReaderHost, Seeded, Seeding
from protocols.uniswap_v3 import events as uni
from protocols.uniswap_v3.math import MAX_TICK, MIN_TICK
from protocols.uniswap_v3.state import NAME, position_id
from schemas.chain import RawLog
from schemas.chain_config import ChainConfig
from schemas.positions import UniswapPosition
from schemas.watch import PoolPositionSeed, PoolSeed, TickSeed, UniswapSeed

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


def _word_address(word: str) -> str:
    return "0x" + word[-40:].lower()


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


class UniswapReader(ProtocolReader):
    name = NAME

    def __init__(self, config: ChainConfig, host: ReaderHost) -> None:
        uniswap = config.uniswap_v3
        assert uniswap is not None
        self.chain_id = config.chain_id
        self.factory = uniswap.factory
        self.npm = uniswap.position_manager
        self.host = host
        # History searched for a wallet's NFTs: from the config's start_block.
        self.search_from = config.start_block
        self._seeded_tokens: set[int] = set()

    def addresses(self) -> list[str]:
        return [self.factory, self.npm]

    def parents(self) -> dict[str, str]:
        return {self.factory: "factory"}

    def children(self, kind: str, item: dict[str, Any]) -> list[Child]:
        topics = item["topics"]
        data = str(item.get("data", ""))
        if topics[0] == uni.POOL_CREATED and len(topics) == 4 and len(data) == 2 + 128:
            tokens = (_word_address(topics[1]), _word_address(topics[2]))
            return [Child(int(str(item["blockNumber"]), 16), _word_address(data), tokens)]
        return []

    def wallet_topics(self) -> frozenset[str]:
        return frozenset({uni.TRANSFER})

    def wallets(self, item: dict[str, Any]) -> list[str]:
        # Position owners: the manager's ERC-721 Transfer (the token id is topic 3).
        topics = item["topics"]
        if len(topics) != 4 or item.get("address", "").lower() != self.npm:
            return []
        return [_word_address(topics[2])]

    # Watch mode -------------------------------------------------------------------------------

    def seed(self, wallets: list[str], block: int, seeding: Seeding) -> Seeded:
        ids = [padded(w) for w in wallets]
        received = seeding.logs(
            {"address": self.npm, "topics": [uni.TRANSFER, None, ids]}, self.search_from, block
        )
        sent = seeding.logs(
            {"address": self.npm, "topics": [uni.TRANSFER, ids]}, self.search_from, block
        )
        owner_of = {int(i["topics"][3], 16): "0x" + i["topics"][2][-40:].lower() for i in received}
        held = sorted(held_token_ids(received, sent))
        return self._seeded(held, owner_of, block, seeding)

    def seed_logs(
        self, logs: Sequence[RawLog], watched: Mapping[str, int], block: int, seeding: Seeding
    ) -> Seeded | None:
        """NFTs these logs minted or moved to a watched wallet that were not seeded yet:
        their fee checkpoint comes from the manager, not the logs."""
        holders = self.arrivals(logs, watched)
        return self._seeded(sorted(holders), holders, block, seeding) if holders else None

    def arrivals(self, logs: Iterable[RawLog], watched: Mapping[str, int]) -> dict[int, str]:
        """Token id -> holder of the NFTs these logs brought to watched wallets (pure)."""
        found: dict[int, str] = {}
        for lg in logs:
            if lg.address != self.npm or len(lg.topics) != 4 or lg.topics[0] != uni.TRANSFER:
                continue
            token_id, holder = int(lg.topics[3], 16), "0x" + lg.topics[2][-40:]
            if holder in watched and token_id not in self._seeded_tokens:
                found[token_id] = holder
            elif token_id in found:
                del found[token_id]  # moved on within the block
        return found

    def _seeded(
        self, held: list[int], owner_of: dict[int, str], block: int, seeding: Seeding
    ) -> Seeded:
        positions, pools = self._positions(held, owner_of, block, seeding)
        # Only once read: a seed that failed part-way is read again, these NFTs with it.
        self._seeded_tokens.update(held)
        return Seeded(
            UniswapSeed(pools, positions),
            {t for p in pools for t in (p.token0, p.token1)},
            {p.pool for p in pools if p.full},
        )

    def _positions(
        self, held: list[int], owner_of: dict[int, str], block: int, seeding: Seeding
    ) -> tuple[tuple[UniswapPosition, ...], tuple[PoolSeed, ...]]:
        if not held:
            return (), ()
        raw = seeding.calls(
            [(self.npm, _POSITIONS + encoded(["uint256"], [t])) for t in held], block
        )
        npm_positions = {}
        for token_id, out in zip(held, raw, strict=True):
            w = answer_words(out, 12)
            npm_positions[token_id] = (
                low_address(w[2]),
                low_address(w[3]),
                w[4],
                signed_bits(w[5], 24),
                signed_bits(w[6], 24),
                w[7],
                w[8],
                w[9],
                w[10],
                w[11],
            )
        # Deposits, withdrawals and collects over each NFT's life (valuation's hodl baseline).
        ids = [padded(f"0x{t:x}") for t in held]
        flows: dict[int, list[int]] = {t: [0] * 6 for t in held}
        for item in seeding.logs(
            {
                "address": self.npm,
                "topics": [[uni.INCREASE_LIQUIDITY, uni.DECREASE_LIQUIDITY, uni.COLLECT], ids],
            },
            self.search_from,
            block,
        ):
            token_id = int(item["topics"][1], 16)
            w = answer_words(item["data"], 3)
            kind = item["topics"][0]
            at = 0 if kind == uni.INCREASE_LIQUIDITY else 2 if kind == uni.DECREASE_LIQUIDITY else 4
            flows[token_id][at] += w[1]
            flows[token_id][at + 1] += w[2]
        keys = sorted({(p[0], p[1], p[2]) for p in npm_positions.values()})
        found = seeding.calls(
            [
                (self.factory, _GET_POOL + encoded(["address", "address", "uint24"], list(k)))
                for k in keys
            ],
            block,
        )
        pool_of = {
            k: low_address(answer_words(out, 1)[0]) for k, out in zip(keys, found, strict=True)
        }
        ranges: dict[str, set[tuple[int, int]]] = {}
        for p in npm_positions.values():
            ranges.setdefault(pool_of[(p[0], p[1], p[2])], set()).add((p[3], p[4]))
        pools = tuple(
            self._pool(pool, key, sorted(ranges[pool]), block, seeding)
            for key, pool in sorted(pool_of.items(), key=lambda kv: kv[1])
        )
        infos = seeding.token_info({t for k in keys for t in k[:2]})
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
        self,
        pool: str,
        key: tuple[str, str, int],
        ranges: list[tuple[int, int]],
        block: int,
        seeding: Seeding,
    ) -> PoolSeed:
        """A pool's state at `block`: whole if the flow does not follow it yet."""
        owned = seeding.calls(
            [
                (pool, _POOL_POSITIONS + pool_position_key(self.npm, lo, up)[2:])
                for lo, up in ranges
            ],
            block,
        )
        positions = []
        for (lower, upper), out in zip(ranges, owned, strict=True):
            w = answer_words(out, 5)
            positions.append(PoolPositionSeed(self.npm, lower, upper, *w))
        token0, token1, fee = key
        if self.host.follows(pool):
            return PoolSeed(pool, token0, token1, fee, 0, False, positions=tuple(positions))
        slot0, liquidity, growth0, growth1, protocol, spacing = seeding.calls(
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
        s = answer_words(slot0, 7)
        tick_spacing = signed_bits(answer_words(spacing, 1)[0], 24)
        fees = answer_words(protocol, 2)
        words = list(bitmap_words(tick_spacing))
        bitmap = seeding.calls(
            [(pool, _TICK_BITMAP + encoded(["int16"], [w])) for w in words], block
        )
        initialized = []
        for word_pos, out in zip(words, bitmap, strict=True):
            word = answer_words(out, 1)[0]
            while word:
                bit = (word & -word).bit_length() - 1
                initialized.append(((word_pos << 8) + bit) * tick_spacing)
                word &= word - 1
        infos = seeding.calls(
            [(pool, _TICKS + encoded(["int24"], [t])) for t in initialized], block
        )
        ticks = []
        for tick, out in zip(initialized, infos, strict=True):
            w = answer_words(out, 8)
            ticks.append(TickSeed(tick, w[0], signed_bits(w[1], 128), w[2], w[3]))
        return PoolSeed(
            pool,
            token0,
            token1,
            fee,
            tick_spacing,
            True,
            sqrt_price_x96=s[0],
            tick=signed_bits(s[1], 24),
            liquidity=answer_words(liquidity, 1)[0],
            fee_growth_global0_x128=answer_words(growth0, 1)[0],
            fee_growth_global1_x128=answer_words(growth1, 1)[0],
            fee_protocol=s[5],
            protocol_fees0=fees[0],
            protocol_fees1=fees[1],
            ticks=tuple(ticks),
            positions=tuple(positions),
        )


def uniswap_reader(config: ChainConfig, rpc: JsonRpc, host: ReaderHost) -> UniswapReader | None:
    return UniswapReader(config, host) if config.uniswap_v3 is not None else None
