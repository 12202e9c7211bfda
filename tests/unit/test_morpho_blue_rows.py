"""Morpho Blue's rows (protocols/morpho_blue/rows.py): every row read back by its table's
column names. `SAMPLE` is what tests/unit/test_rows.py runs through the flow's row builders with
every other protocol's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flows.rows import COLUMNS
from protocols.morpho_blue import rows
from protocols.morpho_blue.events import MarketParams
from protocols.morpho_blue.math import MarketTotals
from protocols.morpho_blue.plugin import MorphoOutput, MorphoShardOutput, PositionVersion
from protocols.morpho_blue.state import Market, Position
from schemas.morpho import MorphoMarketInfo, account_id
from schemas.positions import BlockRef

CHAIN, NUMBER, HASH, TS = 31337, 120, "0x" + "b1" * 32, 1_700_000_000
WHEN = datetime.fromtimestamp(TS, UTC)
BLOCK = BlockRef(CHAIN, NUMBER, HASH, TS)
MORPHO, LOAN, COLL, ORACLE, IRM, USER = ("0x" + f"{n:02x}" * 20 for n in range(0x31, 0x37))
MARKET = "0x" + "ab" * 32
LLTV = 86 * 10**16
TOTALS = MarketTotals(10**12, 10**18, 4 * 10**11, 4 * 10**17 - 1, TS - 12, 10**17)
ACCOUNT = account_id(CHAIN, MORPHO, MARKET, USER)


def sample() -> tuple[MorphoOutput, MorphoShardOutput]:
    info = MorphoMarketInfo(MARKET, LOAN, COLL, ORACLE, IRM, LLTV, "USDC", 6, "WETH", 18)
    market = Market(MARKET, MarketParams(LOAN, COLL, ORACLE, IRM, LLTV), TOTALS, 1_585_489_599)
    out = MorphoOutput(MORPHO, [info], [(MARKET, market, USER)], [(MARKET, 3 * 10**27, 17, "")])
    position = Position(supply_shares=5, borrow_shares=7 * 10**15, collateral=2 * 10**18)
    version = PositionVersion(ACCOUNT, MARKET, USER, position, 4, "0x" + "7a" * 32, "Borrow")
    return out, MorphoShardOutput([version], [])


SAMPLE = sample()


def named(table: str, row: tuple[Any, ...]) -> dict[str, Any]:
    assert len(row) == len(COLUMNS[table])
    return dict(zip(COLUMNS[table], row, strict=True))


def test_market_rows_by_column() -> None:
    built = rows.market_rows(SAMPLE[0], BLOCK, WHEN, 9)
    assert sorted(built) == [
        "defimon.morpho_market_reads",
        "defimon.morpho_market_states",
        "defimon.morpho_markets",
    ]
    [created] = [named("defimon.morpho_markets", r) for r in built["defimon.morpho_markets"]]
    assert created == {
        "chain_id": CHAIN,
        "morpho": MORPHO,
        "market": MARKET,
        "block_number": NUMBER,
        "block_hash": HASH,
        "loan_token": LOAN,
        "collateral_token": COLL,
        "oracle": ORACLE,
        "irm": IRM,
        "lltv": LLTV,
        "version": 9,
    }
    [state] = [
        named("defimon.morpho_market_states", r) for r in built["defimon.morpho_market_states"]
    ]
    assert state == {
        "chain_id": CHAIN,
        "market": MARKET,
        "block_number": NUMBER,
        "block_hash": HASH,
        "block_time": WHEN,
        "total_supply_assets": 10**12,
        "total_supply_shares": 10**18,
        "total_borrow_assets": 4 * 10**11,
        "total_borrow_shares": 4 * 10**17 - 1,
        "last_update": TS - 12,
        "fee": 10**17,
        "prev_borrow_rate": 1_585_489_599,
        "fee_recipient": USER,
        "version": 9,
    }
    [read] = [named("defimon.morpho_market_reads", r) for r in built["defimon.morpho_market_reads"]]
    assert (read["price"], read["borrow_rate"], read["stale"]) == (3 * 10**27, 17, "")


def test_shard_rows_are_one_position_version_per_event() -> None:
    built = rows.shard_rows(SAMPLE[1], BLOCK, WHEN, 9)
    [version] = [named("defimon.morpho_positions", r) for r in built["defimon.morpho_positions"]]
    assert version == {
        "chain_id": CHAIN,
        "account_id": ACCOUNT,
        "morpho": MORPHO,
        "market": MARKET,
        "owner": USER,
        "block_number": NUMBER,
        "log_index": 4,
        "block_hash": HASH,
        "block_time": WHEN,
        "tx_hash": "0x" + "7a" * 32,
        "event": "Borrow",
        "supply_shares": 5,
        "borrow_shares": 7 * 10**15,
        "collateral": 2 * 10**18,
        "version": 9,
    }
