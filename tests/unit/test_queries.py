"""The protocol-neutral read side (api.queries) on a real chDB store seeded with a few rows:
which block an answer is as of, `at=` parsing, the portfolio, positions and diff assembled
from the read sides, merging chains, windows, and the read sides a protocol filter selects.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api.alerts.backtest import protocols_of
from api.alerts.rules import KINDS
from api.queries import AsOf, Queries, merge_portfolios, parse_at, read_sides
from ports.store import Store
from protocols.registry import PLUGINS, READ_SIDES
from schemas.errors import InvalidInput, NotFound
from schemas.filters import Filter
from tests.unit.store_seed import migrated_store, seed

CHAIN = 1
WALLET = "0x" + "ab" * 20
SUBJECT = f"{CHAIN}:0x{'c0' * 20}:7"


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path: Path = tmp_path_factory.mktemp("queries")
    with migrated_store(path) as s:
        # Blocks 10, 11 and 13, 12 s apart: 12 had no watched log, so backfill stored no row.
        seed(
            s,
            "blocks",
            [
                {"chain_id": CHAIN, "number": n, "hash": f"0x{n:02x}", "block_time": at(t)}
                for n, t in ((10, 1000), (11, 1012), (13, 1036))
            ],
        )
        seed(
            s,
            "position_windows",
            [
                {
                    "chain_id": CHAIN,
                    "subject_id": SUBJECT,
                    "protocol": "uniswap_v3",
                    "owner": WALLET,
                    # Hours: minute windows older than 90 days are dropped (the table's TTL).
                    "window": "1h",
                    "window_start": at(start),
                    "window_end": at(start + 3600),
                    "value_open": value,
                    "value_high": value + 2.0,
                    "value_low": value - 1.0,
                    "value_close": value + 1.0,
                    "il_open": None,
                    "il_high": None,
                    "il_low": None,
                    "il_close": None,
                    "hf_open": None,
                    "hf_high": None,
                    "hf_low": None,
                    "hf_close": None,
                    "fees_earned0": 5,
                    "fees_earned1": None,
                    "fees_earned_usd": 0.25,
                    "close_block": close,
                    "close_block_hash": f"0x{close:02x}",
                }
                for start, value, close in ((0, 100.0, 13), (3600, 101.0, 13))
            ],
        )
        yield s


@pytest.fixture(scope="module")
def queries(store: Store) -> Queries:
    return Queries(store)


def test_at_is_a_block_number_or_a_zoned_time() -> None:
    assert parse_at(None) is None
    assert parse_at("") is None
    assert parse_at(" 42 ") == 42
    assert parse_at("2024-01-02T03:04:05Z") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_at("2024-01-02T05:04:05+02:00") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="no time zone"):
        parse_at("2024-01-02T03:04:05")
    with pytest.raises(InvalidInput, match="neither a block number nor an ISO-8601 time"):
        parse_at("yesterday")
    with pytest.raises(InvalidInput, match="neither"):
        parse_at("-1")


def test_the_answer_is_as_of_the_head_or_the_block_asked(queries: Queries) -> None:
    assert queries.indexed_range(CHAIN) == (10, 13)
    assert queries.resolve_at(CHAIN, None, None) == AsOf(CHAIN, 13, "0x0d", 1036)
    # The flow's processed head, when known, is the latest an answer may be as of.
    assert queries.resolve_at(CHAIN, None, 11) == AsOf(CHAIN, 11, "0x0b", 1012)
    assert queries.resolve_at(CHAIN, 10, None) == AsOf(CHAIN, 10, "0x0a", 1000)
    # A block inside the range the store has no row for: nothing changed in it.
    gap = queries.resolve_at(CHAIN, 12, None)
    assert gap == AsOf(CHAIN, 12, None, None)
    assert gap.json() == {
        "chain_id": CHAIN,
        "block_number": 12,
        "block_hash": None,
        "block_time": None,
    }
    assert queries.resolve_at(CHAIN, 11, None).json() == {
        "chain_id": CHAIN,
        "block_number": 11,
        "block_hash": "0x0b",
        "block_time": "1970-01-01T00:16:52Z",
    }


def test_a_time_resolves_to_the_last_block_at_or_before_it(queries: Queries) -> None:
    assert queries.resolve_at(CHAIN, at(1012), None).number == 11
    assert queries.resolve_at(CHAIN, at(1035), None).number == 11
    assert queries.resolve_at(CHAIN, at(5000), None).number == 13
    assert queries.resolve_at(CHAIN, at(5000), 11).number == 11  # not past the head
    with pytest.raises(NotFound, match="no indexed block at or before"):
        queries.resolve_at(CHAIN, at(999), None)


def test_blocks_outside_the_indexed_range_are_not_found(queries: Queries) -> None:
    with pytest.raises(
        NotFound, match="block 14 is not indexed yet; the latest indexed block is 13"
    ):
        queries.resolve_at(CHAIN, 14, None)
    with pytest.raises(
        NotFound, match="block 12 is not indexed yet; the latest indexed block is 11"
    ):
        queries.resolve_at(CHAIN, 12, 11)
    with pytest.raises(NotFound, match="block 9 is before the indexed range, which starts at 10"):
        queries.resolve_at(CHAIN, 9, None)
    with pytest.raises(NotFound, match="chain 2 has no indexed blocks yet"):
        queries.resolve_at(2, None, None)


def test_a_blocks_time_comes_from_the_store_else_from_the_node(store: Store) -> None:
    without_node = Queries(store)
    assert without_node.time_of(CHAIN, 13) == at(1036)
    assert without_node.time_of(CHAIN, at(7)) == at(7)
    assert without_node.time_of(CHAIN, None) is None
    with pytest.raises(NotFound, match="the time of block 12 is not known"):
        without_node.time_of(CHAIN, 12)
    asked: list[tuple[int, int]] = []

    def node_time(chain_id: int, number: int) -> int:
        asked.append((chain_id, number))
        return 1000 + 12 * (number - 10)

    with_node = Queries(store, node_time)
    assert with_node.time_of(CHAIN, 12) == at(1024)
    assert with_node.time_of(CHAIN, 13) == at(1036)  # stored: the node is not asked
    assert asked == [(CHAIN, 12)]
    assert with_node.ctx.timed_ref(AsOf(CHAIN, 12, None, None)).timestamp == 1024
    with pytest.raises(NotFound, match="block 12's time is unknown"):
        without_node.ctx.timed_ref(AsOf(CHAIN, 12, None, None))


def test_a_wallet_without_subjects_has_an_empty_portfolio_and_diff(queries: Queries) -> None:
    start = queries.resolve_at(CHAIN, 10, None)
    end = queries.resolve_at(CHAIN, 13, None)
    assert queries.portfolio(WALLET, end) == {
        "address": WALLET,
        "as_of": end.json(),
        "total_usd": 0,
        "balances_usd": 0,
        "positions": [],
        "lending": [],
        "balances": [],
    }
    assert queries.diff(WALLET, start, end) == {
        "address": WALLET,
        "from": start.json(),
        "to": end.json(),
        "value_from": 0,
        "value_to": 0,
        "change": 0.0,
        "explained": {"price": 0.0, "interest": 0.0, "fees": 0.0, "actions": 0.0},
        "subjects": [],
    }
    for side in READ_SIDES:
        assert queries.portfolio_of(side.name, WALLET, end) == []
    with pytest.raises(InvalidInput, match="no read side"):
        queries.portfolio_of("nothing_v1", WALLET, end)


def test_a_page_of_nothing_and_a_sort_that_does_not_exist(queries: Queries) -> None:
    end = queries.resolve_at(CHAIN, None, None)
    page = queries.positions(
        end, Filter(), sort="value_usd", descending=True, limit=10, cursor=None
    )
    assert page == {
        "as_of": end.json(),
        "chains": [end.json()],
        "positions": [],
        "next_cursor": None,
    }
    assert queries.subjects(end, Filter(chain_id=frozenset({2}))) == []
    with pytest.raises(InvalidInput, match="sort='size' is not one of id, value_usd"):
        queries.positions(end, Filter(), sort="size", descending=False, limit=1, cursor=None)


def test_per_chain_portfolios_merge_into_one() -> None:
    def part(chain: int, total: float, balances: float) -> dict[str, Any]:
        return {
            "address": WALLET,
            "as_of": {"chain_id": chain},
            "total_usd": total,
            "balances_usd": balances,
            "positions": [{"id": f"{chain}:p"}],
            "lending": [{"id": f"{chain}:a"}],
            "balances": [{"token": f"{chain}:t"}],
        }

    assert merge_portfolios(WALLET, [part(1, 10.0, 1.0), part(10, 5.5, 0.5)]) == {
        "address": WALLET,
        "as_of": {"chain_id": 1},
        "chains": [{"chain_id": 1}, {"chain_id": 10}],
        "total_usd": 15.5,
        "balances_usd": 1.5,
        "positions": [{"id": "1:p"}, {"id": "10:p"}],
        "lending": [{"id": "1:a"}, {"id": "10:a"}],
        "balances": [{"token": "1:t"}, {"token": "10:t"}],
    }
    with pytest.raises(NotFound, match="no chain has indexed blocks yet"):
        merge_portfolios(WALLET, [])


def test_windows_are_read_in_the_streams_wire_format(queries: Queries) -> None:
    [first, second] = queries.windows(CHAIN, SUBJECT, "1h", None, None, 10)
    assert first == {
        "id": SUBJECT,
        "protocol": "uniswap_v3",
        "chain_id": CHAIN,
        "owner": WALLET,
        "window": "1h",
        "start": "1970-01-01T00:00:00Z",
        "end": "1970-01-01T01:00:00Z",
        "value_usd": {"open": 100.0, "high": 102.0, "low": 99.0, "close": 101.0},
        "il_usd": {"open": None, "high": None, "low": None, "close": None},
        "health_factor": {"open": None, "high": None, "low": None, "close": None},
        "fees_earned0": "5",
        "fees_earned1": None,
        "fees_earned_usd": 0.25,
        "close_block": 13,
        "close_block_hash": "0x0d",
    }
    assert second["start"] == "1970-01-01T01:00:00Z"
    # [start, end) by window start.
    assert queries.windows(CHAIN, SUBJECT, "1h", at(1), None, 10) == [second]
    assert queries.windows(CHAIN, SUBJECT, "1h", None, at(3600), 10) == [first]
    assert queries.windows(CHAIN, SUBJECT, "1d", None, None, 10) == []
    assert queries.wallet_history(CHAIN, WALLET, "1h", None, None, 1) == [
        {
            "start": "1970-01-01T00:00:00Z",
            "end": "1970-01-01T01:00:00Z",
            "value_open_usd": 100.0,
            "value_close_usd": 101.0,
            "subjects": 1,
        }
    ]
    # Windows alone do not make a subject: its protocol's versions do.
    assert not queries.subject_exists(CHAIN, SUBJECT)


def test_a_protocol_filter_selects_read_sides_in_registry_order() -> None:
    names = [side.name for side in READ_SIDES]
    assert names == [p.name for p in PLUGINS if p.read is not None]
    first_four = ["aave_v3", "compound_v3", "uniswap_v3", "erc20"]
    assert [n for n in names if n in first_four] == first_four  # Aave's accounts first
    assert [s.name for s in read_sides()] == names
    assert [s.name for s in read_sides({"uniswap_v3", "compound_v3"})] == [
        "compound_v3",
        "uniswap_v3",
    ]
    assert read_sides({"nothing_v1"}) == ()
    # Each list of the portfolio is some read side's.
    assert {side.section for side in READ_SIDES} == {"positions", "lending", "balances"}


def test_a_backtest_reads_only_the_protocols_with_the_kinds_metric() -> None:
    got = {kind: protocols_of(kind) for kind in KINDS}
    assert {"aave_v3", "compound_v3"} <= (got["health_factor_below"] or set())
    assert "uniswap_v3" not in (got["health_factor_below"] or set())
    assert got["il_above"] == got["out_of_range"] == frozenset({"uniswap_v3"})
    assert got["value_change"] is got["liquidation"] is got["allocation_drift"] is None
    # each from the read sides' own lists (a protocol added later says its kinds itself)
    for kind, protocols in got.items():
        if protocols is not None:
            assert protocols == {s.name for s in READ_SIDES if kind in s.alert_kinds}
