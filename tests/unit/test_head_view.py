"""The head view's state (api/head_view.py): newest row per key, rows of unprocessed blocks
waiting, the feed's wire format, reads answered from memory as the store's SQL would, and a
reorg rebuilding the chain's view from a real chDB store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from api.chains import Chains
from api.head_view import (
    ChainView,
    HeadReads,
    HeadViews,
    NotInView,
    TableView,
    head_tables,
    load,
)
from flows.endpoint import ChainEndpoint
from flows.rows import COLUMNS, retraction_statements
from flows.sinks import reorg_event
from ports.status import FlowStatus
from ports.store import Store
from protocols.read_side import (
    AS_OF_READS,
    TOKEN_INFO,
    ReadSide,
    latest_rows,
)
from protocols.read_side import (
    head_tables as tables_read,
)
from protocols.registry import HEAD_TABLES, READ_SIDES
from schemas.chain import Rewind
from schemas.chain_config import ChainConfig
from schemas.head_feed import rows_events
from schemas.stream import BusEvent

CHAIN = 31337
BIG = 2**200 + 7  # beyond what JSON numbers (and orjson) carry
ALICE, BOB = "0x" + "a1" * 20, "0x" + "b0" * 20
TOKEN_A, TOKEN_B, TOKEN_C = "0x" + "0a" * 20, "0x" + "0b" * 20, "0x" + "0c" * 20
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

BALANCE_COLUMNS = COLUMNS["defimon.token_balances"]


def balances_table() -> TableView:
    columns = (*BALANCE_COLUMNS, "is_deleted")
    types = tuple(
        {
            "chain_id": "UInt64",
            "block_number": "UInt64",
            "balance": "UInt256",
            "version": "UInt64",
            "is_deleted": "UInt8",
            "block_time": "DateTime64(3, 'UTC')",
        }.get(c, "String")
        for c in columns
    )
    return TableView(columns, types, ("wallet", "token"))


def balance(wallet: str, token: str, amount: int, block: int, version: int = 1) -> tuple[Any, ...]:
    values = {
        "chain_id": CHAIN,
        "wallet": wallet,
        "token": token,
        "block_number": block,
        "block_hash": f"0x{block:064x}",
        "block_time": WHEN.replace(tzinfo=None),
        "balance": amount,
        "version": version,
        "is_deleted": 0,
    }
    return tuple(values[c] for c in (*BALANCE_COLUMNS, "is_deleted"))


def chain_view(head: int) -> ChainView:
    return ChainView(CHAIN, head, {"token_balances": balances_table()})


def read_balances(view: ChainView, wallet: str) -> list[tuple[Any, ...]]:
    sql = latest_rows(
        "token_balances", "token, balance, block_number", "token", " AND wallet = {owner:String}"
    )
    return HeadReads(view).rows(sql, {"chain": CHAIN, "block": view.head, "owner": wallet})


def test_the_newest_row_of_a_key_wins_whatever_the_order_it_comes_in() -> None:
    view = chain_view(10)
    view.put("token_balances", balance(ALICE, TOKEN_A, 5, 7))
    view.put("token_balances", balance(ALICE, TOKEN_A, 9, 9))
    view.put("token_balances", balance(ALICE, TOKEN_A, 5, 7))  # older, again: ignored
    view.put("token_balances", balance(ALICE, TOKEN_B, 1, 3))
    view.put("token_balances", balance(BOB, TOKEN_A, 2, 8))
    assert read_balances(view, ALICE) == [(TOKEN_A, 9, 9), (TOKEN_B, 1, 3)]
    assert read_balances(view, BOB) == [(TOKEN_A, 2, 8)]
    # The same row again (a replay) changes nothing; a newer version of the same block wins.
    view.put("token_balances", balance(BOB, TOKEN_A, 2, 8))
    view.put("token_balances", balance(BOB, TOKEN_A, 3, 8, version=2))
    assert read_balances(view, BOB) == [(TOKEN_A, 3, 8)]


def test_the_index_follows_a_key_whose_filtered_column_changes() -> None:
    table = TableView(
        ("position_id", "owner", "block_number", "version"),
        ("String", "String", "UInt64", "UInt64"),
        ("position_id",),
    )
    table.put(("p1", ALICE, 1, 1))
    assert [r[0] for r in table.select([("owner", frozenset([ALICE]))], ["position_id"])] == ["p1"]
    table.put(("p1", BOB, 2, 1))  # transferred
    assert table.select([("owner", frozenset([ALICE]))], ["position_id"]) == []
    assert table.select([("owner", frozenset([BOB]))], ["position_id"]) == [("p1", BOB, 2, 1)]


def test_rows_of_unprocessed_blocks_wait_for_the_processed_block() -> None:
    view = chain_view(10)
    view.put("token_balances", balance(ALICE, TOKEN_A, 5, 10))
    view.put("token_balances", balance(ALICE, TOKEN_A, 6, 11))  # stored, block 11 not processed
    view.put("token_balances", balance(ALICE, TOKEN_A, 7, 12))
    assert read_balances(view, ALICE) == [(TOKEN_A, 5, 10)]
    view.advance(11)
    assert read_balances(view, ALICE) == [(TOKEN_A, 6, 11)]
    view.advance(9)  # never backwards
    assert view.head == 11
    view.advance(12)
    assert read_balances(view, ALICE) == [(TOKEN_A, 7, 12)] and not view.pending


def test_feed_events_carry_big_integers_times_and_the_processed_block() -> None:
    # As the flow writes a row: an aware time, no is_deleted.
    written = zip(BALANCE_COLUMNS, balance(ALICE, TOKEN_A, BIG, 11), strict=False)
    rows = [tuple(WHEN if c == "block_time" else v for c, v in written)]
    block = [(CHAIN, 11, "0xb11", "0xb10", WHEN, 3, 1)]
    events = rows_events(
        CHAIN,
        {"defimon.token_balances": rows, "defimon.blocks": block, "defimon.raw_logs": [(1,)]},
        COLUMNS,
        11,
        HEAD_TABLES,
    )
    # raw_logs are not the head's; the last event says the block is processed.
    assert [e.data["table"] for e in events] == ["token_balances", "blocks", None]
    view = chain_view(10)
    for event in events[:-1]:
        wire = BusEvent(event.kind, event.chain_id, event.block_number, "", _json(event.data))
        view.apply(wire)
        assert read_balances(view, ALICE) == []  # block 11 is not processed yet
    view.apply(events[-1])
    assert read_balances(view, ALICE) == [(TOKEN_A, BIG, 11)]
    stored = view.tables["token_balances"].rows[(ALICE, TOKEN_A)]
    assert stored[BALANCE_COLUMNS.index("block_time")] == WHEN.replace(tzinfo=None)
    assert view.as_of().json()["block_hash"] == "0xb11"
    assert view.as_of().timestamp == int(WHEN.timestamp())


def test_the_feed_carries_and_the_view_holds_only_what_the_read_sides_declare(
    tmp_path: Path,
) -> None:
    class Pools(ReadSide):  # a read side that would value from the pool registry
        name, section = "pools_reader", "positions"
        head_reads = frozenset({"pools"})

    assert tables_read((Pools(),)) == AS_OF_READS | {"pools"}
    assert tables_read(READ_SIDES) == HEAD_TABLES
    for side in READ_SIDES:
        assert side.head_reads and side.head_reads <= HEAD_TABLES, side.name
    # One row of every stored table in one insert: only the declared tables go on the feed.
    stored = {table: [tuple(range(len(columns)))] for table, columns in COLUMNS.items()}
    carried = {e.data["table"] for e in rows_events(CHAIN, stored, COLUMNS, 1, HEAD_TABLES)} - {
        None
    }
    assert carried == HEAD_TABLES
    assert not carried & {"raw_logs", "dead_letters", "position_windows", "pools", "liquidations"}
    store = Store.connect(data_dir=tmp_path)
    try:
        store.migrate()
        assert set(head_tables(store)) == HEAD_TABLES - {"blocks"}  # blocks: kept apart
    finally:
        store.close()


def stored_row(table: str, block: int, **values: Any) -> tuple[Any, ...]:
    """A row of a stored table as the flow writes it: these values, the rest zero or empty."""
    defaults = {"chain_id": CHAIN, "block_number": block, "block_hash": f"0x{block:064x}"}
    row = {**defaults, "block_time": WHEN.replace(tzinfo=None), "version": 1, **values}
    columns = COLUMNS[f"defimon.{table}"]
    return tuple(row.get(c, 0 if c in NUMBERS else "") for c in columns)


NUMBERS = {"log_index", "decimals0", "decimals1", "fee", "tick_lower", "tick_upper", "burned"}
NUMBERS |= {"token_id", "liquidity", "deposited0", "deposited1", "withdrawn0", "withdrawn1"}
NUMBERS |= {"collected0", "collected1", "fee_inside_last0", "fee_inside_last1", "tokens_owed0"}
NUMBERS |= {"tokens_owed1", "emode", "scaled_supply", "scaled_variable_debt", "collateral"}
NUMBERS |= {"stable_principal", "stable_rate", "stable_updated"}


def test_filtered_reads_from_memory_are_the_stores(tmp_path: Path) -> None:
    """The read sides' conditions for /v1/positions' filters (a token on either side of a pool,
    the accounts that ever held an asset, the positions an owner holds), answered from a view
    loaded from a real store and by the store itself, alike."""
    positions = [  # id, owner, token0, token1, block
        ("p1", ALICE, TOKEN_A, TOKEN_B, 1),
        ("p2", BOB, TOKEN_B, TOKEN_C, 2),
        ("p3", ALICE, TOKEN_C, TOKEN_A, 2),
        ("p1", BOB, TOKEN_A, TOKEN_B, 3),  # p1 changes hands
    ]
    accounts = [  # account, asset, supply, block
        ("a1", TOKEN_A, 5, 1),
        ("a1", TOKEN_B, 7, 2),
        ("a2", TOKEN_C, 9, 2),
        ("a1", TOKEN_A, 0, 3),  # a1 withdrew A: it still holds B
    ]
    store = Store.connect(data_dir=tmp_path)
    try:
        store.migrate()
        for table, rows in (
            (
                "position_versions",
                [
                    stored_row("position_versions", b, position_id=i, owner=o, token0=t0, token1=t1)
                    for i, o, t0, t1, b in positions
                ],
            ),
            (
                "account_versions",
                [
                    stored_row(
                        "account_versions", b, account_id=a, owner=ALICE, asset=t, scaled_supply=n
                    )
                    for a, t, n, b in accounts
                ],
            ),
        ):
            names = COLUMNS[f"defimon.{table}"]
            store.insert(f"defimon.{table}", names, list(zip(*rows, strict=True)))
        view = load(store, CHAIN, 3)
        either = " AND (token0 IN {tokens:Array(String)} OR token1 IN {tokens:Array(String)})"
        ever_owned = (
            " AND position_id IN (SELECT position_id FROM defimon.position_versions "
            "WHERE chain_id = {chain:UInt64} AND owner IN {owners:Array(String)})"
        )
        ever_held = (
            " AND account_id IN (SELECT account_id FROM defimon.account_versions "
            "WHERE chain_id = {chain:UInt64} AND asset IN {tokens:Array(String)})"
        )
        position = ("position_versions", "position_id, owner, block_number", "position_id")
        account = ("account_versions", "account_id, asset, scaled_supply", "account_id, asset")
        reads: list[tuple[tuple[str, str, str], str, dict[str, Any]]] = [
            (position, either, {"tokens": [TOKEN_A]}),
            (position, either, {"tokens": [TOKEN_A, TOKEN_B]}),  # p1 holds both: once
            (
                position,
                either + " AND owner IN {owners:Array(String)}",
                {"tokens": [TOKEN_C], "owners": [ALICE]},
            ),
            (account, ever_held, {"tokens": [TOKEN_A]}),  # a1, both assets
            (account, ever_held, {"tokens": [TOKEN_C, TOKEN_B]}),
        ]
        for (table, columns, by), where, params in reads:
            sql = latest_rows(table, columns, by, where, log_index=True)
            bound = {"chain": CHAIN, "block": 3, **params}
            assert HeadReads(view).rows(sql, bound) == store.rows(sql, bound), (table, where)
            assert store.rows(sql, bound), "nothing compared"
        # Ever owned, as the portfolio keeps it: what the owner holds now, alike both ways.
        sql = latest_rows(*position, ever_owned, log_index=True)
        for owner in (ALICE, BOB):
            bound = {"chain": CHAIN, "block": 3, "owners": [owner]}
            held = {r for r in HeadReads(view).rows(sql, bound) if r[1] == owner}
            assert held == {r for r in store.rows(sql, bound) if r[1] == owner} and held
    finally:
        store.close()


def _json(data: dict[str, Any]) -> dict[str, Any]:
    """As a feed event's data comes back from NATS."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(data))
    return loaded


def test_reads_the_view_cannot_answer_go_to_the_store() -> None:
    view = chain_view(10)
    reads = HeadReads(view)
    params = {"chain": CHAIN, "block": 10, "owner": ALICE}
    with pytest.raises(NotInView):  # not at the head: time travel is the store's
        reads.rows(latest_rows("token_balances", "token", "token", ""), {**params, "block": 9})
    with pytest.raises(NotInView):
        reads.rows("SELECT 1", params)
    with pytest.raises(NotInView):  # a condition outside the grammar
        reads.rows(latest_rows("token_balances", "token", "token", " AND balance > 0"), params)
    with pytest.raises(NotInView):
        reads.rows(TOKEN_INFO, {"chain": CHAIN, "tokens": [TOKEN_A]})  # no tokens table here


def test_a_reorg_rebuilds_the_chain_from_the_store(tmp_path: Path) -> None:
    store = Store.connect(data_dir=tmp_path)
    try:
        store.migrate()
        rows = [balance(ALICE, TOKEN_A, 5, 3)[:-1], balance(ALICE, TOKEN_A, 8, 4)[:-1]]
        store.insert("defimon.token_balances", BALANCE_COLUMNS, list(zip(*rows, strict=True)))
        assert set(head_tables(store)) >= {"token_balances", "position_versions", "tokens"}
        assert "raw_logs" not in head_tables(store)
        assert read_balances(load(store, CHAIN, 3), ALICE) == [(TOKEN_A, 5, 3)]
        assert load(store, CHAIN, 3).pending  # block 4 is stored, not yet processed

        status = FlowStatus()
        status.chain(CHAIN).processed = 4
        config = ChainConfig(CHAIN, feeds=((TOKEN_A, TOKEN_B),))
        views = HeadViews(store, Chains([ChainEndpoint(config, "http://127.0.0.1:9")], status))

        async def scenario() -> None:
            views.follow()
            views.start()
            while views.ready(CHAIN) is None:
                await asyncio.sleep(0.01)
            view = views.ready(CHAIN)
            assert view is not None and read_balances(view, ALICE) == [(TOKEN_A, 8, 4)]
            # The store retracts block 4, then the flow says so: the view reads the store again.
            rewind = Rewind(CHAIN, 4, ((4, f"0x{4:064x}"),), old_head=4, new_head=4)
            for sql, params in retraction_statements(rewind, version=2):
                store.command(sql, params)
            status.rewound(CHAIN, 4)
            views.on_events([reorg_event(rewind)])
            assert views.ready(CHAIN) is None  # the store answers meanwhile
            while views.ready(CHAIN) is None:
                await asyncio.sleep(0.01)
            rebuilt = views.ready(CHAIN)
            assert rebuilt is not None and read_balances(rebuilt, ALICE) == [(TOKEN_A, 5, 3)]
            # The new branch's block 4 (no balance change) is processed: the retracted row of
            # the orphaned block 4 does not come back.
            views.on_events(rows_events(CHAIN, {}, COLUMNS, 4, HEAD_TABLES))
            assert rebuilt.head == 4 and read_balances(rebuilt, ALICE) == [(TOKEN_A, 5, 3)]

        asyncio.run(scenario())
    finally:
        store.close()


def test_the_feed_does_not_wait_for_a_reader_and_its_rows_follow_it(tmp_path: Path) -> None:
    store = Store.connect(data_dir=tmp_path)
    try:
        store.migrate()
        row = balance(ALICE, TOKEN_A, 5, 3)[:-1]
        store.insert("defimon.token_balances", BALANCE_COLUMNS, list(zip(*[row], strict=True)))
        status = FlowStatus()
        status.chain(CHAIN).processed = 3
        config = ChainConfig(CHAIN, feeds=((TOKEN_A, TOKEN_B),))
        views = HeadViews(store, Chains([ChainEndpoint(config, "http://127.0.0.1:9")], status))
        built: list[tuple[int, bool]] = []
        views.when_built(lambda chain, ok: built.append((chain, ok)))

        async def scenario() -> None:
            views.follow()
            views.start()
            while views.ready(CHAIN) is None:
                await asyncio.sleep(0.01)
            view = views.ready(CHAIN)
            assert view is not None and built == [(CHAIN, True)]
            view.gate.enter()  # a reader values many subjects in its thread
            later = balance(ALICE, TOKEN_A, 11, 4)[:-1]
            status.chain(CHAIN).processed = 4
            # The event loop goes on (a blocking wait here would never return).
            views.on_events(
                rows_events(CHAIN, {"defimon.token_balances": [later]}, COLUMNS, 4, HEAD_TABLES)
            )
            assert view.held and view.head == 3
            assert views.ready(CHAIN) is None  # behind the flow: the store answers meanwhile
            await asyncio.to_thread(views._release, view)  # the reader is done
            while views.ready(CHAIN) is None:
                await asyncio.sleep(0.01)
            assert read_balances(view, ALICE) == [(TOKEN_A, 11, 4)] and not view.held

        asyncio.run(scenario())
        assert built == [(CHAIN, True)]
    finally:
        store.close()
