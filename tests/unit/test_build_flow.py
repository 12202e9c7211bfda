"""The whole dataflow (flows.dataflow.build_flow) run in memory: hand-made blocks through
bytewax.testing's source and run_main, into the project's own chDB store (a temporary
directory) and in-process bus.

The chain: a factory creates a pool and it is initialised (block 101); the position manager
mints NFT 1 (102: the pool's Mint, the NFT's Transfer, IncreaseLiquidity); a block 103 that a
reorg orphans mints NFT 2 and swaps one way; the canonical 103 swaps the other way. The logs
are ABI-encoded as the node returns them (protocols/uniswap_v3/events.py decodes them); swap and
mint amounts come from a pool replica stepped alongside, so the flow's replica accepts them.

After the run, every table as FINAL shows it equals a run over the canonical chain alone; the
orphaned block left no row, the bus carried the position updates and one reorg event.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytewax.testing import TestingSource, run_main
from eth_abi import encode

from flows.dataflow import build_flow
from flows.endpoint import ChainEndpoint
from flows.rows import COLUMNS
from ports.bus import InProcessBus
from ports.status import FlowStatus
from ports.store import Store
from protocols.uniswap_v3 import events as ev
from protocols.uniswap_v3.math import get_amount0_delta, get_amount1_delta, get_sqrt_ratio_at_tick
from protocols.uniswap_v3.replica import PoolReplica
from schemas.chain import BlockBatch, BlockHeader, RawLog, Rewind, TokenInfo
from schemas.chain_config import ChainConfig, UniswapV3Config
from schemas.stream import BusEvent

CHAIN = 31337
FACTORY, NPM, POOL = "0x" + "fa" * 20, "0x" + "c3" * 20, "0x" + "90" * 20
TOKEN0, TOKEN1 = "0x" + "11" * 20, "0x" + "22" * 20  # token1 is the USD token
OWNER, OTHER = "0x" + "0e" * 20, "0x" + "0f" * 20
ZERO = "0x" + "00" * 20
Q96 = 2**96
L = 10**21
T0 = 1_700_000_000  # 22:13:20 UTC: the three blocks stay in one minute (no windows close)
SHARDS = 2


def block_hash(number: int, branch: str = "") -> str:
    return "0x" + f"{number:x}{branch}".rjust(64, "0")


def t(kind: str, value: object) -> str:
    """An indexed value as a topic."""
    return "0x" + encode([kind], [value]).hex()


def data(types: list[str], values: list[object]) -> str:
    return "0x" + encode(types, values).hex()


class Chain:
    """Blocks of RawLogs, with a replica of the pool to take amounts from."""

    def __init__(self) -> None:
        self.pool = PoolReplica(fee=3000, tick_spacing=60)

    def block(
        self,
        number: int,
        logs: list[tuple[str, str, tuple[str, ...], str]],
        branch: str = "",
        tokens: dict[str, TokenInfo] | None = None,
    ) -> BlockBatch:
        """`logs`: (tx tag, address, topics, data), in order."""
        h = block_hash(number, branch)
        raw = [
            RawLog(CHAIN, number, h, i, "0x" + tx.rjust(64, "0"), 0, address, topics, payload)
            for i, (tx, address, topics, payload) in enumerate(logs)
        ]
        header = BlockHeader(CHAIN, number, h, block_hash(number - 1), T0 + 12 * (number - 101))
        # final_block below every block here: the stages keep what a rewind needs.
        return BlockBatch(header, raw, number, True, tokens=tokens or {}, final_block=100)

    def create(self) -> list[tuple[str, str, tuple[str, ...], str]]:
        self.pool.initialize(Q96, 0)
        return [
            (
                "a1",
                FACTORY,
                (ev.POOL_CREATED, t("address", TOKEN0), t("address", TOKEN1), t("uint24", 3000)),
                data(["int24", "address"], [60, POOL]),
            ),
            ("a1", POOL, (ev.INITIALIZE,), data(["uint160", "int24"], [Q96, 0])),
        ]

    def mint(
        self, tx: str, token_id: int, owner: str, lower: int, upper: int, liquidity: int
    ) -> list[tuple[str, str, tuple[str, ...], str]]:
        sqrt, tick = self.pool.sqrt_price_x96, self.pool.tick
        assert get_sqrt_ratio_at_tick(lower) < sqrt < get_sqrt_ratio_at_tick(upper)
        # In range: what the pool takes in, rounded up (UniswapV3Pool._modifyPosition).
        amount0 = get_amount0_delta(sqrt, get_sqrt_ratio_at_tick(upper), liquidity, True)
        amount1 = get_amount1_delta(get_sqrt_ratio_at_tick(lower), sqrt, liquidity, True)
        self.pool.mint(lower, upper, liquidity, owner=NPM, expect_amounts=(amount0, amount1))
        assert tick == self.pool.tick
        mint = (
            ev.MINT,
            t("address", NPM),
            t("int24", lower),
            t("int24", upper),
        )
        return [
            (
                tx,
                POOL,
                mint,
                data(
                    ["address", "uint128", "uint256", "uint256"], [NPM, liquidity, amount0, amount1]
                ),
            ),
            (
                tx,
                NPM,
                (ev.TRANSFER, t("address", ZERO), t("address", owner), t("uint256", token_id)),
                "0x",
            ),
            (
                tx,
                NPM,
                (ev.INCREASE_LIQUIDITY, t("uint256", token_id)),
                data(["uint128", "uint256", "uint256"], [liquidity, amount0, amount1]),
            ),
        ]

    def swap(
        self, tx: str, zero_for_one: bool, amount_in: int
    ) -> tuple[str, str, tuple[str, ...], str]:
        s = self.pool.swap(zero_for_one, amount_in)
        return (
            tx,
            POOL,
            (ev.SWAP, t("address", OTHER), t("address", OTHER)),
            data(
                ["int256", "int256", "uint160", "uint128", "int24"],
                [s.amount0, s.amount1, s.sqrt_price_x96, s.liquidity, s.tick],
            ),
        )


def scenario() -> tuple[list[BlockBatch], BlockBatch, Rewind, BlockBatch, Chain]:
    """Blocks 101 and 102, the orphaned 103, its Rewind, the canonical 103 (and its pool)."""
    chain = Chain()
    tokens = {TOKEN0: TokenInfo(TOKEN0, "AAA", 18), TOKEN1: TokenInfo(TOKEN1, "USD", 18)}
    common = [
        chain.block(101, chain.create(), tokens=tokens),
        chain.block(102, chain.mint("b1", 1, OWNER, -600, 600, L)),
    ]
    orphaned_chain = copy.deepcopy(chain)
    orphaned = orphaned_chain.block(
        103,
        [
            *orphaned_chain.mint("c1", 2, OWNER, -1200, 1200, L),
            orphaned_chain.swap("c2", True, 10**19),
        ],
        branch="a",
    )
    canonical = chain.block(103, [chain.swap("d1", False, 3 * 10**19)], branch="b")
    rewind = Rewind(CHAIN, 103, ((103, orphaned.header.hash),), old_head=103, new_head=103)
    return common, orphaned, rewind, canonical, chain


QUERIES = {
    "blocks": "SELECT number, hash, log_count FROM defimon.blocks FINAL ORDER BY number",
    "retracted": "SELECT number, hash FROM defimon.blocks WHERE is_deleted = 1",
    "logs": "SELECT block_number, block_hash, log_index FROM defimon.raw_logs FINAL ORDER BY ALL",
    "pools": "SELECT pool, token0, token1, fee, tick_spacing, created_block FROM defimon.pools",
    "pool_states": "SELECT block_number, block_hash, sqrt_price_x96, tick, liquidity, "
    "fee_growth_global0_x128, fee_growth_global1_x128 FROM defimon.pool_states FINAL "
    "ORDER BY block_number",
    "versions": "SELECT position_id, block_number, log_index, event, owner, tick_lower, "
    "tick_upper, liquidity, deposited0, deposited1 FROM defimon.position_versions FINAL "
    "ORDER BY block_number, log_index",
    "pool_positions": "SELECT block_number, owner, tick_lower, tick_upper, liquidity "
    "FROM defimon.pool_positions FINAL",
    "ticks": "SELECT DISTINCT tick FROM defimon.pool_ticks FINAL ORDER BY tick",
    "prices": "SELECT token, block_number, block_hash, hops FROM defimon.token_prices FINAL "
    "ORDER BY block_number, token",
}


@dataclass
class Run:
    tables: dict[str, list[tuple[Any, ...]]]  # every flow table as FINAL shows it
    found: dict[str, list[tuple[Any, ...]]]  # QUERIES' answers
    events: list[BusEvent]
    status: FlowStatus


def run(items: Sequence[BlockBatch | Rewind], data_dir: Path) -> Run:
    """build_flow over `items`, then what it stored and published. chDB serves one data
    directory per process at a time, so the store is read and closed here."""
    store = Store.connect(data_dir=data_dir)
    try:
        store.migrate()
        config = ChainConfig(
            CHAIN, UniswapV3Config(FACTORY, NPM), usd_tokens=(TOKEN1,), min_depth_usd=0
        )
        bus = InProcessBus()
        loop = asyncio.new_event_loop()
        events: list[BusEvent] = []
        bus.attach(loop, events.extend)
        status = FlowStatus()
        flow = build_flow(
            # The endpoint only gives the config: nothing connects to its URL.
            [ChainEndpoint(config, "http://127.0.0.1:9")],
            open_store=store.another,
            bus=bus,
            status=status,
            stop=threading.Event(),
            shards=SHARDS,
            source=TestingSource(list(items)),
        )
        run_main(flow)
        loop.run_until_complete(asyncio.sleep(0))  # deliver what the flow's thread handed over
        loop.close()
        tables = {}
        for table, columns in COLUMNS.items():  # identifiers from code
            kept = ", ".join(c for c in columns if c != "version")
            tables[table] = store.rows(f"SELECT {kept} FROM {table} FINAL ORDER BY ALL")
        found = {name: store.rows(sql) for name, sql in QUERIES.items()}
        return Run(tables, found, events, status)
    finally:
        store.close()


def test_build_flow_end_to_end_with_a_reorg(tmp_path: Path) -> None:
    common, orphaned, rewind, canonical, chain = scenario()
    reorged = run([*common, orphaned, rewind, canonical], tmp_path / "reorged")
    fresh = run([*common, canonical], tmp_path / "canonical")
    # The reorg left exactly what the canonical chain alone writes.
    assert reorged.tables == fresh.tables
    found = reorged.found
    assert found["blocks"] == [
        (101, block_hash(101), 2),
        (102, block_hash(102), 3),
        (103, canonical.header.hash, 1),
    ]
    # The orphaned block's rows are retracted (a newer version with is_deleted = 1).
    assert found["retracted"] == [(103, orphaned.header.hash)]
    assert [(n, h) for n, h, _ in found["logs"]] == [
        *[(101, block_hash(101))] * 2,
        *[(102, block_hash(102))] * 3,
        (103, canonical.header.hash),
    ]
    assert found["pools"] == [(POOL, TOKEN0, TOKEN1, 3000, 60, 101)]
    assert found["pool_states"] == [
        (101, block_hash(101), Q96, 0, 0, 0, 0),
        (102, block_hash(102), Q96, 0, L, 0, 0),
        (
            103,
            canonical.header.hash,
            chain.pool.sqrt_price_x96,
            chain.pool.tick,
            chain.pool.liquidity,
            chain.pool.fee_growth_global0_x128,
            chain.pool.fee_growth_global1_x128,
        ),
    ]
    assert chain.pool.fee_growth_global1_x128 > 0  # the canonical swap paid token1 fees
    # NFT 1's versions at 102 (its Transfer, then IncreaseLiquidity); NFT 2 is gone.
    mint_amounts = (
        get_amount0_delta(Q96, get_sqrt_ratio_at_tick(600), L, True),
        get_amount1_delta(get_sqrt_ratio_at_tick(-600), Q96, L, True),
    )
    assert found["versions"] == [
        (f"{CHAIN}:{NPM}:1", 102, 1, "mint", OWNER, -600, 600, 0, 0, 0),
        (f"{CHAIN}:{NPM}:1", 102, 2, "increase", OWNER, -600, 600, L, *mint_amounts),
    ]
    assert found["pool_positions"] == [(102, NPM, -600, 600, L)]
    assert found["ticks"] == [(-600,), (600,)]
    prices = found["prices"]
    assert [p for p in prices if p[0] == TOKEN1] == [(TOKEN1, 101, block_hash(101), 0)]
    assert [(n, h, hops) for tok, n, h, hops in prices if tok == TOKEN0] == [
        (101, block_hash(101), 1),
        (103, canonical.header.hash, 1),
    ]
    assert reorged.tables["defimon.dead_letters"] == []

    # The bus: NFT 1 at each block, NFT 2 only at the orphaned one, then the reorg.
    events = reorged.events
    positions = sorted(
        (e.block_number, e.block_hash, e.data["id"]) for e in events if e.kind == "position"
    )
    assert positions == sorted(
        [
            (102, block_hash(102), f"{CHAIN}:{NPM}:1"),
            (103, orphaned.header.hash, f"{CHAIN}:{NPM}:1"),
            (103, orphaned.header.hash, f"{CHAIN}:{NPM}:2"),
            (103, canonical.header.hash, f"{CHAIN}:{NPM}:1"),
        ]
    )
    reorgs = [e for e in events if e.kind == "reorg"]
    assert len(reorgs) == 1 and reorgs[0].owners == ()
    assert reorgs[0].data == {
        "chain_id": CHAIN,
        "retracted_from": 103,
        "retracted_to": 103,
        "depth": 1,
        "orphaned": [{"number": 103, "hash": orphaned.header.hash}],
        "new_head": 103,
    }
    # The canonical 103's update values NFT 1 at the canonical pool state, as the fresh run.
    last = [e for e in events if e.kind == "position" and e.block_hash == canonical.header.hash]
    assert last[0].data["tick"] == chain.pool.tick
    assert last[0].data["owner"] == OWNER and last[0].data["liquidity"] == str(L)
    assert [e.data for e in fresh.events if e.block_number == 103] == [last[0].data]
    assert sorted(e.kind for e in fresh.events) == ["position", "position"]

    assert reorged.status.reorgs == 1 and fresh.status.reorgs == 0
    assert reorged.status.chain(CHAIN).processed == 103
