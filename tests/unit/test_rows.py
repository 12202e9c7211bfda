"""The row builders on small hand-made stage outputs: each protocol's own (protocols/<name>/
rows.py market_rows/shard_rows) and the flow's (flows/rows.py chain_rows, market_rows,
shard_rows), which add the core tables and merge every part's rows. Every row has exactly the
columns COLUMNS names for its table, each value under the column it belongs to; each protocol
writes exactly the tables it declares; a Rewind on any path becomes the same retraction marker;
retraction statements cover every block table.

Rows are read back as {column: value} through COLUMNS, so a value built in the wrong position
shows up under the wrong name. Values are distinct on purpose: a swap of two columns of the
same type fails.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import pytest

from flows.market import MarketOutput
from flows.rows import (
    COLUMNS,
    CORE_COLUMNS,
    RETRACTABLE,
    SinkBatch,
    chain_rows,
    market_rows,
    retraction_statements,
    shard_rows,
)
from protocols.aave_v3 import rows as aave_rows
from protocols.aave_v3.events import LiquidationCall
from protocols.aave_v3.plugin import AaveShardOutput
from protocols.aave_v3.state import AaveMarketOutput, AccountVersion
from protocols.base import DeadLetter
from protocols.compound_v3 import rows as comet_rows
from protocols.compound_v3.state import CometAccountVersion, CometLiquidation, CometOutput
from protocols.erc20 import rows as erc20_rows
from protocols.erc20.book import BalanceChange
from protocols.registry import PLUGINS, PROTOCOLS
from protocols.spec import Row, Rows, ShardInput, ShardOutput
from protocols.uniswap_v3 import rows as uniswap_rows
from protocols.uniswap_v3.replica import PoolPosition, TickInfo
from protocols.uniswap_v3.state import (
    PoolInfo,
    PositionVersion,
    UniswapOutput,
    UniswapShardOutput,
)
from protocols.windows import Ohlc, Subject, WindowRow
from schemas.chain import BlockBatch, BlockHeader, RawLog, Rewind, TokenInfo
from schemas.comet import CometAccount, CometAssetInfo, CometConfig, CometTotalsBasic
from schemas.lending import (
    AaveAccount,
    AccountReserveState,
    EModeInfo,
    OraclePrice,
    ReserveInfo,
    ReserveRates,
)
from schemas.positions import BlockRef, PoolSnapshot, TokenPrice, UniswapPosition

CHAIN = 31337
NUMBER = 120
HASH = "0x" + "b1" * 32
PARENT = "0x" + "b0" * 32
TS = 1_700_000_000
WHEN = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
TX = "0x" + "7a" * 32
BLOCK = BlockRef(CHAIN, NUMBER, HASH, TS)
VERSION = 777  # what the protocol builders are handed (the flow's are time_ns)


def addr(n: int) -> str:
    return "0x" + f"{n:02x}" * 20


POOL, TOKEN0, TOKEN1, NPM, OWNER = addr(1), addr(2), addr(3), addr(4), addr(5)
AAVE_POOL, ASSET, DEBT_ASSET, COMET, FEED = addr(6), addr(7), addr(8), addr(9), addr(10)
LOG = RawLog(CHAIN, NUMBER, HASH, 3, TX, 1, POOL, ("0x" + "e1" * 32, "0x" + "e2" * 32), "0x01")
TOKEN0_INFO = TokenInfo(TOKEN0, "AAA", 18)
PRICE = TokenPrice(TOKEN0, 2.5, POOL, 1)


def named(table: str, row: Row) -> dict[str, Any]:
    columns = COLUMNS[table]
    assert len(row) == len(columns), table
    return dict(zip(columns, row, strict=True))


def read(rows: Rows, name: str) -> list[dict[str, Any]]:
    """A protocol builder's rows of one table by column, each row's version checked and
    dropped."""
    out = []
    for row in rows[name]:
        found = named(name, row)
        assert found.pop("version") == VERSION, name
        out.append(found)
    return out


def table(batch: SinkBatch, name: str) -> list[dict[str, Any]]:
    """The flow batch's rows of one table by column, each row's version checked and dropped."""
    out = []
    for row in batch.rows[name]:
        found = named(name, row)
        version = found.pop("version")
        assert isinstance(version, int) and version > 1_600_000_000 * 10**9  # time_ns
        out.append(found)
    return out


def versions(batch: SinkBatch) -> set[int]:
    return {named(t, r)["version"] for t, rows in batch.rows.items() for r in rows}


# --- each protocol's stage outputs --------------------------------------------------------


def uniswap_output() -> UniswapOutput:
    return UniswapOutput(
        BLOCK,
        new_pools=[PoolInfo(POOL, TOKEN0, TOKEN1, 3000, 60, NUMBER - 1)],
        pool_snapshots=[PoolSnapshot(POOL, 2**96, -5, 91, 92, 93)],
        ticks=[(POOL, -60, TickInfo(101, -102, 103, 104)), (POOL, 60, None)],
        pool_positions=[(POOL, (NPM, -60, 60), PoolPosition(111, 112, 113, 114, 115))],
    )


def uniswap_shard_output() -> UniswapShardOutput:
    position = UniswapPosition(
        CHAIN,
        f"{CHAIN}:{NPM}:7",
        NPM,
        7,
        POOL,
        TOKEN0,
        TOKEN1,
        "AAA",
        "BBB",
        18,
        6,
        3000,
        OWNER,
        -60,
        120,
        liquidity=201,
        deposited0=202,
        deposited1=203,
        withdrawn0=204,
        withdrawn1=205,
        collected0=206,
        collected1=207,
        burned=True,
        fee_inside_last0=208,
        fee_inside_last1=209,
        tokens_owed0=210,
        tokens_owed1=211,
    )
    return UniswapShardOutput([PositionVersion(position, BLOCK, 8, TX, "burn")], [])


def aave_output() -> AaveMarketOutput:
    return AaveMarketOutput(
        reserves=[
            ReserveInfo(ASSET, addr(11), addr(12), addr(13), "WETH", 18, 8000, 8250, 10500, 1, 4)
        ],
        rates=[ReserveRates(ASSET, 21, 22, 23, 24, 25, TS - 60)],
        prices=[OraclePrice(ASSET, 2_000 * 10**8, 77, TS - 30, FEED, NUMBER, "stale: no answer")],
        emode=[EModeInfo(1, 9000, 9300, 10100, addr(14), 0b101, 0b11, 0b100, True)],
        # The part moves these to the block's dead letters (they are not rows of its own).
        dead=[(LOG._replace(log_index=9), "aave: bad data")],
        liquidations=[
            (
                LOG._replace(log_index=5),
                LiquidationCall(ASSET, DEBT_ASSET, OWNER, 31, 32, addr(15), True),
            )
        ],
        version=(5, "3.3"),
        pool=AAVE_POOL,
    )


def aave_shard_output() -> AaveShardOutput:
    held = AccountReserveState(ASSET, 301, 302, 303, 304, TS - 7, collateral=True)
    account = AaveAccount(CHAIN, AAVE_POOL, OWNER, f"{CHAIN}:{AAVE_POOL}:{OWNER}", 2, {ASSET: held})
    return AaveShardOutput(
        [
            AccountVersion(account, ASSET, BLOCK, 9, TX, "supply"),
            AccountVersion(account, DEBT_ASSET, BLOCK, 10, TX, "repay"),  # no reserve held
        ],
        [],
    )


def comet_output() -> CometOutput:
    config = CometConfig(
        COMET,
        TOKEN1,
        addr(16),
        10**6,
        41,
        42,
        43,
        44,
        45,
        46,
        47,
        48,
        49,
        50,
        (CometAssetInfo(0, ASSET, addr(17), 10**18, 51, 52, 53, 54, "WETH"),),
        "USDC",
    )
    account = CometAccount(CHAIN, COMET, OWNER, f"{CHAIN}:{COMET}:{OWNER}", -61, 0b1, {ASSET: 62})
    return CometOutput(
        configs=[config],
        totals=[(COMET, CometTotalsBasic(71, 72, 73, 74, 75, 76, TS - 5, 3))],
        prices=[(COMET, FEED, 99_000_000)],
        versions=[
            CometAccountVersion(account, ASSET, BLOCK, 6, TX, "supply_collateral", 63, addr(18))
        ],
        liquidations=[
            CometLiquidation(
                COMET, "absorb_debt", LOG._replace(log_index=7), addr(19), OWNER, "", 81, 82
            )
        ],
    )


def balance_changes() -> list[BalanceChange]:
    return [
        BalanceChange(OWNER, TOKEN0_INFO, 121, PRICE, NUMBER, NUMBER),
        BalanceChange(addr(20), TOKEN0_INFO, 122, PRICE, NUMBER, NUMBER - 9, moved=False),
    ]


# protocol -> (its market part's output, its shard part's output), None where it has none.
# A protocol added later keeps its sample in its own test module, tests/unit/test_<name>_rows.py
# (`SAMPLE`), found here by name.
PARTS: dict[str, tuple[Any, Any]] = {
    "uniswap_v3": (uniswap_output(), uniswap_shard_output()),
    "aave_v3": (aave_output(), aave_shard_output()),
    "compound_v3": (comet_output(), None),
    "erc20": (balance_changes(), None),
}
for _plugin in PLUGINS:
    if _plugin.name not in PARTS:
        try:
            _module = importlib.import_module(f"tests.unit.test_{_plugin.name}_rows")
        except ModuleNotFoundError:
            continue
        PARTS[_plugin.name] = _module.SAMPLE


# --- chain_rows ---------------------------------------------------------------------------


def test_chain_rows_are_the_block_and_its_logs() -> None:
    second = LOG._replace(log_index=4, address=TOKEN0, topics=(), data="0x")
    batch = BlockBatch(BlockHeader(CHAIN, NUMBER, HASH, PARENT, TS), [LOG, second], 130, True)
    out = chain_rows(batch)
    assert (out.chain_id, out.block_number, out.live, out.rewind) == (CHAIN, NUMBER, True, None)
    assert (out.expects_shards, out.shard) == (None, None)
    assert sorted(out.rows) == ["defimon.blocks", "defimon.raw_logs"]
    assert table(out, "defimon.blocks") == [
        {
            "chain_id": CHAIN,
            "number": NUMBER,
            "hash": HASH,
            "parent_hash": PARENT,
            "block_time": WHEN,
            "log_count": 2,
        }
    ]
    logs = table(out, "defimon.raw_logs")
    assert logs[0] == {
        "chain_id": CHAIN,
        "block_number": NUMBER,
        "block_hash": HASH,
        "log_index": 3,
        "tx_hash": TX,
        "tx_index": 1,
        "address": POOL,
        "topics": ("0x" + "e1" * 32, "0x" + "e2" * 32),
        "data": "0x01",
        "block_time": WHEN,
    }
    assert (logs[1]["log_index"], logs[1]["address"], logs[1]["topics"]) == (4, TOKEN0, ())
    assert len(versions(out)) == 1  # one version for the whole block


# --- each protocol's builders -------------------------------------------------------------


def test_every_protocol_writes_exactly_the_tables_it_declares() -> None:
    # A new protocol needs a sample: tests/unit/test_<name>_rows.py SAMPLE.
    assert sorted(PARTS) == sorted(PROTOCOLS)
    for plugin in PLUGINS:
        market_part, shard_part = PARTS[plugin.name]
        written: list[str] = []
        for build, part in ((plugin.market_rows, market_part), (plugin.shard_rows, shard_part)):
            assert (build is None) == (part is None), plugin.name
            if build is not None:
                built = build(part, BLOCK, WHEN, VERSION)
                assert all(built[t] for t in built), f"{plugin.name}: an empty sample table"
                written += built
        # Once each: the market and the shard part never write the same table.
        assert sorted(written) == sorted(plugin.tables), plugin.name
        assert not set(plugin.tables) & set(CORE_COLUMNS)


def test_uniswap_market_rows() -> None:
    rows = uniswap_rows.market_rows(uniswap_output(), BLOCK, WHEN, VERSION)
    key = {"chain_id": CHAIN}
    at = {**key, "block_number": NUMBER, "block_hash": HASH}
    assert read(rows, "defimon.pools") == [
        {
            **key,
            "pool": POOL,
            "protocol": "uniswap_v3",
            "token0": TOKEN0,
            "token1": TOKEN1,
            "fee": 3000,
            "tick_spacing": 60,
            "created_block": NUMBER - 1,
        }
    ]
    assert read(rows, "defimon.pool_states") == [
        {
            **at,
            "pool": POOL,
            "block_time": WHEN,
            "sqrt_price_x96": 2**96,
            "tick": -5,
            "liquidity": 91,
            "fee_growth_global0_x128": 92,
            "fee_growth_global1_x128": 93,
        }
    ]
    # A cleared tick is a row too, uninitialised and zeroed.
    assert read(rows, "defimon.pool_ticks") == [
        {
            **at,
            "pool": POOL,
            "tick": -60,
            "initialized": 1,
            "liquidity_gross": 101,
            "liquidity_net": -102,
            "fee_growth_outside0_x128": 103,
            "fee_growth_outside1_x128": 104,
        },
        {
            **at,
            "pool": POOL,
            "tick": 60,
            "initialized": 0,
            "liquidity_gross": 0,
            "liquidity_net": 0,
            "fee_growth_outside0_x128": 0,
            "fee_growth_outside1_x128": 0,
        },
    ]
    assert read(rows, "defimon.pool_positions") == [
        {
            **at,
            "pool": POOL,
            "owner": NPM,
            "tick_lower": -60,
            "tick_upper": 60,
            "liquidity": 111,
            "fee_inside_last0": 112,
            "fee_inside_last1": 113,
            "tokens_owed0": 114,
            "tokens_owed1": 115,
        }
    ]


def test_uniswap_shard_rows() -> None:
    rows = uniswap_rows.shard_rows(uniswap_shard_output(), BLOCK, WHEN, VERSION)
    assert read(rows, "defimon.position_versions") == [
        {
            "chain_id": CHAIN,
            "position_id": f"{CHAIN}:{NPM}:7",
            "protocol": "uniswap_v3",
            "block_number": NUMBER,
            "log_index": 8,
            "block_hash": HASH,
            "block_time": WHEN,
            "tx_hash": TX,
            "event": "burn",
            "owner": OWNER,
            "position_manager": NPM,
            "token_id": 7,
            "pool": POOL,
            "token0": TOKEN0,
            "token1": TOKEN1,
            "symbol0": "AAA",
            "symbol1": "BBB",
            "decimals0": 18,
            "decimals1": 6,
            "fee": 3000,
            "tick_lower": -60,
            "tick_upper": 120,
            "liquidity": 201,
            "deposited0": 202,
            "deposited1": 203,
            "withdrawn0": 204,
            "withdrawn1": 205,
            "collected0": 206,
            "collected1": 207,
            "burned": 1,
            "fee_inside_last0": 208,
            "fee_inside_last1": 209,
            "tokens_owed0": 210,
            "tokens_owed1": 211,
        }
    ]


def test_aave_market_rows() -> None:
    rows = aave_rows.market_rows(aave_output(), BLOCK, WHEN, VERSION)
    at = {"chain_id": CHAIN, "pool": AAVE_POOL, "block_number": NUMBER, "block_hash": HASH}
    assert read(rows, "defimon.aave_reserves") == [
        {
            **at,
            "asset": ASSET,
            "a_token": addr(11),
            "stable_debt_token": addr(12),
            "variable_debt_token": addr(13),
            "symbol": "WETH",
            "decimals": 18,
            "ltv": 8000,
            "liquidation_threshold": 8250,
            "liquidation_bonus": 10500,
            "emode_category": 1,
            "reserve_id": 4,
        }
    ]
    assert read(rows, "defimon.aave_reserve_rates") == [
        {
            **at,
            "asset": ASSET,
            "block_time": WHEN,
            "liquidity_rate": 21,
            "stable_borrow_rate": 22,
            "variable_borrow_rate": 23,
            "liquidity_index": 24,
            "variable_borrow_index": 25,
            "last_update": TS - 60,
        }
    ]
    assert read(rows, "defimon.aave_emode_categories") == [
        {
            **at,
            "category": 1,
            "ltv": 9000,
            "liquidation_threshold": 9300,
            "liquidation_bonus": 10100,
            "price_source": addr(14),
            "collateral_bitmap": 0b101,
            "borrowable_bitmap": 0b11,
            "ltvzero_bitmap": 0b100,
            "isolated": 1,
        }
    ]
    assert read(rows, "defimon.aave_pool_versions") == [
        {**at, "revision": 5, "aave_version": "3.3"}
    ]
    # Oracle prices are per asset, not per pool.
    assert read(rows, "defimon.oracle_prices") == [
        {
            "chain_id": CHAIN,
            "asset": ASSET,
            "block_number": NUMBER,
            "block_hash": HASH,
            "block_time": WHEN,
            "feed": FEED,
            "answer": 2_000 * 10**8,
            "round_id": 77,
            "updated_at": TS - 30,
            "stale": "stale: no answer",
        }
    ]
    assert read(rows, "defimon.liquidations") == [
        {
            **at,
            "log_index": 5,
            "block_time": WHEN,
            "tx_hash": TX,
            "owner": OWNER,
            "collateral_asset": ASSET,
            "debt_asset": DEBT_ASSET,
            "debt_to_cover": 31,
            "liquidated_collateral": 32,
            "liquidator": addr(15),
            "receive_a_token": 1,
        }
    ]


def test_an_aave_block_that_set_no_version_writes_no_version_row() -> None:
    out = aave_output()
    out.version = None
    assert aave_rows.market_rows(out, BLOCK, WHEN, VERSION)["defimon.aave_pool_versions"] == []


def test_aave_shard_rows() -> None:
    rows = aave_rows.shard_rows(aave_shard_output().versions, BLOCK, WHEN, VERSION)
    base = {
        "chain_id": CHAIN,
        "account_id": f"{CHAIN}:{AAVE_POOL}:{OWNER}",
        "protocol": "aave_v3",
        "pool": AAVE_POOL,
        "owner": OWNER,
        "block_number": NUMBER,
        "block_hash": HASH,
        "block_time": WHEN,
        "tx_hash": TX,
        "emode": 2,
    }
    assert read(rows, "defimon.account_versions") == [
        {
            **base,
            "asset": ASSET,
            "log_index": 9,
            "event": "supply",
            "scaled_supply": 301,
            "scaled_variable_debt": 302,
            "stable_principal": 303,
            "stable_rate": 304,
            "stable_updated": TS - 7,
            "collateral": 1,
        },
        {
            **base,
            "asset": DEBT_ASSET,
            "log_index": 10,
            "event": "repay",
            "scaled_supply": 0,
            "scaled_variable_debt": 0,
            "stable_principal": 0,
            "stable_rate": 0,
            "stable_updated": 0,
            "collateral": 0,
        },
    ]


def test_compound_market_rows() -> None:
    rows = comet_rows.market_rows(comet_output(), BLOCK, WHEN, VERSION)
    at = {"chain_id": CHAIN, "comet": COMET, "block_number": NUMBER, "block_hash": HASH}
    assert read(rows, "defimon.comet_configs") == [
        {
            **at,
            "base_token": TOKEN1,
            "base_symbol": "USDC",
            "base_token_price_feed": addr(16),
            "base_scale": 10**6,
            "supply_kink": 41,
            "supply_per_second_interest_rate_base": 42,
            "supply_per_second_interest_rate_slope_low": 43,
            "supply_per_second_interest_rate_slope_high": 44,
            "borrow_kink": 45,
            "borrow_per_second_interest_rate_base": 46,
            "borrow_per_second_interest_rate_slope_low": 47,
            "borrow_per_second_interest_rate_slope_high": 48,
            "store_front_price_factor": 49,
            "base_borrow_min": 50,
        }
    ]
    assert read(rows, "defimon.comet_assets") == [
        {
            **at,
            "asset_offset": 0,
            "asset": ASSET,
            "symbol": "WETH",
            "price_feed": addr(17),
            "scale": 10**18,
            "borrow_collateral_factor": 51,
            "liquidate_collateral_factor": 52,
            "liquidation_factor": 53,
            "supply_cap": 54,
        }
    ]
    assert read(rows, "defimon.comet_totals") == [
        {
            **at,
            "block_time": WHEN,
            "base_supply_index": 71,
            "base_borrow_index": 72,
            "tracking_supply_index": 73,
            "tracking_borrow_index": 74,
            "total_supply_base": 75,
            "total_borrow_base": 76,
            "last_accrual_time": TS - 5,
            "pause_flags": 3,
        }
    ]
    assert read(rows, "defimon.comet_prices") == [
        {**at, "feed": FEED, "block_time": WHEN, "price": 99_000_000}
    ]
    assert read(rows, "defimon.comet_account_versions") == [
        {
            **at,
            "account_id": f"{CHAIN}:{COMET}:{OWNER}",
            "owner": OWNER,
            "asset": ASSET,
            "log_index": 6,
            "block_time": WHEN,
            "tx_hash": TX,
            "event": "supply_collateral",
            "amount": 63,
            "counterparty": addr(18),
            "principal": -61,
            "assets_in": 0b1,
            "collateral": 62,  # the moved asset's balance
        }
    ]
    assert read(rows, "defimon.comet_liquidations") == [
        {
            **at,
            "log_index": 7,
            "block_time": WHEN,
            "tx_hash": TX,
            "kind": "absorb_debt",
            "actor": addr(19),
            "borrower": OWNER,
            "asset": "",
            "amount": 81,
            "value": 82,
        }
    ]


def test_erc20_rows_store_only_balances_that_moved() -> None:
    rows = erc20_rows.market_rows(balance_changes(), BLOCK, WHEN, VERSION)
    # A repricing alone goes to the stream, not the store.
    assert read(rows, "defimon.token_balances") == [
        {
            "chain_id": CHAIN,
            "block_number": NUMBER,
            "block_hash": HASH,
            "wallet": OWNER,
            "token": TOKEN0,
            "block_time": WHEN,
            "balance": 121,
        }
    ]


# --- the flow's market_rows and shard_rows: core tables, every part merged ------------------


def dead_letters() -> list[DeadLetter]:
    return [
        DeadLetter(LOG, "unknown topic"),
        DeadLetter(LOG._replace(log_index=9), "aave: bad data", "aave_v3"),
        DeadLetter(LOG._replace(log_index=11, address=TOKEN0), "erc20: short data", "erc20"),
    ]


def market_output(parts: tuple[str, ...] = PROTOCOLS) -> MarketOutput:
    return MarketOutput(
        block=BLOCK,
        head=NUMBER + 2,
        live=False,
        log_count=7,
        new_tokens=[TOKEN0_INFO],
        prices=[PRICE],
        dead_letters=dead_letters(),
        shard_inputs={3: ShardInput(BLOCK, False, 3), 1: ShardInput(BLOCK, False, 1)},
        parts={name: PARTS[name][0] for name in parts},
    )


def same_rows(batch: SinkBatch, built: Rows) -> None:
    """The flow's batch holds a protocol builder's rows, as built (but for the version)."""
    for name in built:
        assert table(batch, name) == read(built, name), name


def test_market_rows_add_the_core_tables_and_every_parts_rows() -> None:
    out = market_rows(market_output())
    assert (out.chain_id, out.block_number, out.live, out.block_time) == (CHAIN, NUMBER, False, TS)
    assert out.expects_shards == (1, 3)  # sorted: the sink reports them to FlowStatus
    at = {"chain_id": CHAIN, "block_number": NUMBER, "block_hash": HASH}
    assert table(out, "defimon.tokens") == [
        {"chain_id": CHAIN, "address": TOKEN0, "symbol": "AAA", "decimals": 18}
    ]
    assert table(out, "defimon.token_prices") == [
        {**at, "token": TOKEN0, "block_time": WHEN, "price_usd": 2.5, "source": POOL, "hops": 1}
    ]
    # Every protocol's dead letters, in the order the parts appended them, with their stage.
    dead = table(out, "defimon.dead_letters")
    assert [(d["log_index"], d["stage"], d["reason"]) for d in dead] == [
        (3, "uniswap_v3", "unknown topic"),
        (9, "aave_v3", "aave: bad data"),
        (11, "erc20", "erc20: short data"),
    ]
    assert dead[0] == {
        **at,
        "log_index": 3,
        "tx_hash": TX,
        "address": POOL,
        "topics": ["0x" + "e1" * 32, "0x" + "e2" * 32],
        "data": "0x01",
        "stage": "uniswap_v3",
        "reason": "unknown topic",
    }
    market_tables = {"defimon.tokens", "defimon.token_prices", "defimon.dead_letters"}
    for plugin in PLUGINS:
        if plugin.market_rows is not None:
            built = plugin.market_rows(PARTS[plugin.name][0], BLOCK, WHEN, VERSION)
            same_rows(out, built)
            market_tables |= set(built)
    assert set(out.rows) == market_tables
    assert len(versions(out)) == 1


def test_a_market_without_lending_has_no_lending_tables() -> None:
    out = market_rows(market_output(("uniswap_v3", "erc20")))
    assert not any(t.startswith(("defimon.aave", "defimon.comet")) for t in out.rows)
    assert "defimon.liquidations" not in out.rows and "defimon.oracle_prices" not in out.rows
    assert "defimon.pool_states" in out.rows and "defimon.token_balances" in out.rows
    # The dead letters are the block's, whichever parts produced output.
    assert len(out.rows["defimon.dead_letters"]) == 3


def window() -> WindowRow:
    return WindowRow(
        Subject(CHAIN, f"{CHAIN}:{NPM}:7", "uniswap_v3", OWNER),
        "1m",
        TS - 120,
        TS - 60,
        Ohlc(1.0, 4.0, 0.5, 2.0),
        Ohlc(-0.1, 0.0, -0.3, -0.2),
        Ohlc(None, None, None, None),
        401,
        -402,
        3.5,
        BlockRef(CHAIN, NUMBER - 4, "0x" + "c4" * 32, TS - 61),
    )


def shard_output() -> ShardOutput:
    parts = {name: shard for name, (_market, shard) in PARTS.items() if shard is not None}
    return ShardOutput(BLOCK, True, 5, [window()], parts)


def test_shard_rows_of_every_part_and_the_windows() -> None:
    out = shard_rows(shard_output())
    assert (out.chain_id, out.block_number, out.live, out.shard) == (CHAIN, NUMBER, True, 5)
    assert out.expects_shards is None
    same_rows(out, uniswap_rows.shard_rows(uniswap_shard_output(), BLOCK, WHEN, VERSION))
    same_rows(out, aave_rows.shard_rows(aave_shard_output().versions, BLOCK, WHEN, VERSION))
    assert [(r["position_id"], r["event"]) for r in table(out, "defimon.position_versions")] == [
        (f"{CHAIN}:{NPM}:7", "burn")
    ]
    assert [(r["asset"], r["event"]) for r in table(out, "defimon.account_versions")] == [
        (ASSET, "supply"),
        (DEBT_ASSET, "repay"),
    ]
    assert table(out, "defimon.position_windows") == [
        {
            "chain_id": CHAIN,
            "subject_id": f"{CHAIN}:{NPM}:7",
            "protocol": "uniswap_v3",
            "owner": OWNER,
            "window": "1m",
            "window_start": datetime(2023, 11, 14, 22, 11, 20, tzinfo=UTC),
            "window_end": datetime(2023, 11, 14, 22, 12, 20, tzinfo=UTC),
            "value_open": 1.0,
            "value_high": 4.0,
            "value_low": 0.5,
            "value_close": 2.0,
            "il_open": -0.1,
            "il_high": 0.0,
            "il_low": -0.3,
            "il_close": -0.2,
            "hf_open": None,
            "hf_high": None,
            "hf_low": None,
            "hf_close": None,
            "fees_earned0": 401,
            "fees_earned1": -402,
            "fees_earned_usd": 3.5,
            "close_block": NUMBER - 4,  # the window's, not the block that closed it
            "close_block_hash": "0x" + "c4" * 32,
        }
    ]
    assert len(versions(out)) == 1


def test_a_shard_without_windows_writes_no_window_table() -> None:
    quiet = shard_output()
    quiet.windows = []
    out = shard_rows(quiet)
    # every shard part's tables (account_versions, position_versions, ...), no window table
    expected = {
        table
        for plugin in PLUGINS
        if plugin.shard_rows is not None and PARTS[plugin.name][1] is not None
        for table in plugin.shard_rows(PARTS[plugin.name][1], BLOCK, WHEN, VERSION)
    }
    assert {"defimon.account_versions", "defimon.position_versions"} <= expected
    assert sorted(out.rows) == sorted(expected)


def test_a_shard_with_only_windows_writes_only_them() -> None:
    out = shard_rows(ShardOutput(BLOCK, False, 2, [window()]))
    assert list(out.rows) == ["defimon.position_windows"] and out.shard == 2


# --- Rewind -------------------------------------------------------------------------------

REWIND = Rewind(CHAIN, NUMBER - 1, ((NUMBER - 1, "0x" + "d1" * 32), (NUMBER, HASH)), NUMBER, 125)


@pytest.mark.parametrize("build", [chain_rows, market_rows, shard_rows])
def test_a_rewind_on_any_path_is_the_same_marker(build: Any) -> None:
    out = build(REWIND)
    assert out == SinkBatch(CHAIN, NUMBER - 2, True, {}, rewind=REWIND)


def test_retraction_statements_cover_every_block_table_with_its_block_columns() -> None:
    statements = retraction_statements(REWIND, 555)
    targets = [sql.split()[2] for sql, _ in statements]
    # Every table but the block-less metadata, once each: every protocol's tables included.
    assert sorted(targets) == sorted(set(COLUMNS) - {"defimon.pools", "defimon.tokens"})
    assert targets == list(RETRACTABLE)
    for plugin in PLUGINS:
        assert set(plugin.tables) - {"defimon.pools"} <= set(targets), plugin.name
    for sql, params in statements:
        assert params == {
            "chain": CHAIN,
            "fork": NUMBER - 1,
            "hashes": sorted(["0x" + "d1" * 32, HASH]),
            "version": 555,
        }
        name = sql.split()[2]
        kept = [c for c in COLUMNS[name] if c != "version"]
        number, block_hash = RETRACTABLE[name]
        assert sql == (
            f"INSERT INTO {name} ({', '.join(kept)}, version, is_deleted) "
            f"SELECT {', '.join(kept)}, {{version:UInt64}}, 1 FROM {name} FINAL "
            f"WHERE chain_id = {{chain:UInt64}} AND {number} >= {{fork:UInt64}} "
            f"AND {block_hash} IN {{hashes:Array(String)}}"
        )
    assert RETRACTABLE["defimon.blocks"] == ("number", "hash")
    assert RETRACTABLE["defimon.position_windows"] == ("close_block", "close_block_hash")
    assert RETRACTABLE["defimon.raw_logs"] == ("block_number", "block_hash")
    assert RETRACTABLE["defimon.account_versions"] == ("block_number", "block_hash")
