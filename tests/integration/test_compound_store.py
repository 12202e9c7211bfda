"""Compound V3 through the store: the fold's rows in chDB, read back by the portfolio API.

The worked example (tests/unit/test_compound_state.py) runs through the real market stage
with interest on, its rows go through the same table columns the sink writes, and the
portfolio at each block (time travel, `at=`) must equal what the flow valued, and so what
the stream sent, at that block: principal and collateral from the stored versions, totals
and prices from the stored reads, accrued to the block's time by the same pure function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.aggregate import aggregate, parse_metrics
from api.queries import Queries
from flows.market import MarketState, market_step
from flows.rows import COLUMNS, SinkBatch, chain_rows, market_rows
from ports.store import Store
from protocols.compound_v3 import math as cm
from protocols.compound_v3.plugin import CometPart
from protocols.compound_v3.state import CometMarket
from protocols.registry import PROTOCOLS
from schemas.filters import Filter
from tests.unit.test_compound_state import ALICE, CHAIN, COMET, E18, worked_example

RATES = cm.InterestRateParams.from_per_year(
    supply_kink=8 * 10**17,
    supply_per_year_interest_rate_base=0,
    supply_per_year_interest_rate_slope_low=3 * 10**16,
    supply_per_year_interest_rate_slope_high=2 * E18,
    borrow_kink=8 * 10**17,
    borrow_per_year_interest_rate_base=2 * 10**16,
    borrow_per_year_interest_rate_slope_low=5 * 10**16,
    borrow_per_year_interest_rate_slope_high=3 * E18,
)


def insert(store: Store, sink: SinkBatch) -> None:
    for table, rows in sink.rows.items():
        if rows:
            store.insert(table, COLUMNS[table], list(zip(*rows, strict=True)))


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store.connect(None, tmp_path / "data")
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def test_portfolio_time_travel_equals_the_flow_at_every_block(store: Store) -> None:
    state = MarketState(
        CHAIN, (), 2, parts={"compound_v3": CometPart(CometMarket(CHAIN, (COMET,)))}
    )
    streamed: dict[int, dict[str, Any]] = {}
    for b in worked_example(RATES).batches:
        state, out = market_step(state, b)
        insert(store, chain_rows(b))
        insert(store, market_rows(out))
        assert "compound_v3" in out.parts
        for update in out.parts["compound_v3"].updates:
            streamed[b.header.number] = update.json()
    assert sorted(streamed) == [1, 2, 3, 4, 5]  # 5: the sale moved the totals
    queries = Queries(store)
    for number, sent in streamed.items():
        as_of = queries.resolve_at(CHAIN, number, None)
        [account] = queries.portfolio(ALICE, as_of)["lending"]
        assert account == sent, number
    # Interest is on: by block 3 (no comet log, price drop) the debt has accrued past 15,000.
    base = streamed[3]["reserves"][0]
    assert int(base["debt"]) > 15_000 * 10**6
    assert streamed[3]["is_liquidatable"] is True
    # After the absorb she is a supplier of what was left, earning interest.
    as_of = queries.resolve_at(CHAIN, 5, None)
    [after] = queries.portfolio(ALICE, as_of)["lending"]
    assert after["health_factor_float"] is None and after["block_number"] == 5
    assert int(after["reserves"][0]["supplied"]) >= int(streamed[4]["reserves"][0]["supplied"])
    assert after["reserves"][1:] == []  # no collateral left


def test_a_wallet_without_comet_accounts_has_none(store: Store) -> None:
    state = MarketState(CHAIN, (), 2)
    for b in worked_example().batches[:1]:
        state, out = market_step(state, b)
        insert(store, chain_rows(b))
        insert(store, market_rows(out))
    queries = Queries(store)
    as_of = queries.resolve_at(CHAIN, 1, None)
    assert queries.portfolio_of("compound_v3", "0x" + "99" * 20, as_of) == []
    assert (
        queries.portfolio_of("compound_v3", ALICE, as_of) == []
    )  # comets not configured: nothing folded


def test_positions_aggregates_and_the_diff_read_comet_accounts(store: Store) -> None:
    state = MarketState(
        CHAIN, (), 2, parts={"compound_v3": CometPart(CometMarket(CHAIN, (COMET,)))}
    )
    for b in worked_example(RATES).batches:
        state, out = market_step(state, b)
        insert(store, chain_rows(b))
        insert(store, market_rows(out))
    queries = Queries(store)
    at3 = queries.resolve_at(CHAIN, 3, None)
    [account] = queries.portfolio(ALICE, at3)["lending"]
    assert queries.subjects(at3, Filter()) == [account]
    for selects in ({"protocol": ["compound_v3"]}, {"pool": [COMET]}, {"owner": [ALICE]}):
        assert queries.subjects(at3, Filter.parse(selects, PROTOCOLS)) == [account], selects
    for excludes in (
        {"protocol": ["aave_v3"]},
        {"pool": ["0x" + "99" * 20]},
        {"min_debt_usd": ["1e9"]},
    ):
        assert queries.subjects(at3, Filter.parse(excludes, PROTOCOLS)) == [], excludes
    page = queries.positions(
        at3, Filter(), sort="health_factor", descending=False, limit=10, cursor=None
    )
    assert page["positions"] == [account]
    [group] = aggregate([account], ("protocol",), parse_metrics("count,sum(debt_usd)"))
    assert group["metrics"]["count"] == 1
    assert group["metrics"]["sum(debt_usd)"] == account["debt_usd"] > 15_000

    # Block 3: WETH fell from $2,000 to $1,700 and 12 seconds passed: 10 WETH x -$300 of
    # price, to the cent; the debt's 12 seconds of interest; nothing of hers.
    at2 = queries.resolve_at(CHAIN, 2, None)
    [part] = queries.diff(ALICE, at2, at3)["subjects"]
    assert (part["protocol"], part["price"], part["actions"]) == ("compound_v3", -3_000.0, 0.0)
    assert part["interest"] < 0
    assert part["price"] + part["interest"] == pytest.approx(part["change"], abs=1e-9)
    # Block 4: the absorb took her collateral and her debt: the change is none of the market's.
    at4 = queries.resolve_at(CHAIN, 4, None)
    [absorbed] = queries.diff(ALICE, at3, at4)["subjects"]
    assert absorbed["price"] == 0.0 and absorbed["actions"] == pytest.approx(absorbed["change"])
