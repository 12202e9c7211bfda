"""Comet account updates reach the stream as `account` events (the market stage's bus sink)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from flows.market import MarketOutput, MarketState, market_step
from flows.sinks import MarketBusSink
from ports.bus import InProcessBus
from protocols.compound_v3.plugin import CometPart
from protocols.compound_v3.state import CometMarket
from schemas.stream import BusEvent
from tests.unit.test_compound_state import ALICE, CHAIN, COMET, worked_example


def outputs(live: bool) -> list[MarketOutput]:
    state = MarketState(
        CHAIN, (), 2, parts={"compound_v3": CometPart(CometMarket(CHAIN, (COMET,)))}
    )
    outs = []
    for b in worked_example().batches:
        b.live = live
        state, out = market_step(state, b)
        outs.append(out)
    return outs


def test_live_updates_are_published_as_account_events_for_their_owner() -> None:
    loop = asyncio.new_event_loop()
    bus = InProcessBus()
    got: list[BusEvent] = []

    def listener(events: Sequence[BusEvent]) -> None:
        got.extend(events)

    bus.attach(loop, listener)
    sink = MarketBusSink(bus).build("market_bus", 0, 1)
    outs = outputs(live=True)
    sink.write_batch(outs)
    loop.run_until_complete(asyncio.sleep(0))
    expected = [
        u.json() for o in outs if "compound_v3" in o.parts for u in o.parts["compound_v3"].updates
    ]
    assert [e.data for e in got] == expected and len(expected) == 5
    assert {(e.kind, e.owners, e.chain_id) for e in got} == {("account", (ALICE,), CHAIN)}
    assert [e.block_number for e in got] == [1, 2, 3, 4, 5]
    loop.close()


def test_backfill_is_coalesced_to_each_accounts_latest_state() -> None:
    loop = asyncio.new_event_loop()
    bus = InProcessBus()
    got: list[BusEvent] = []

    def listener(events: Sequence[BusEvent]) -> None:
        got.extend(events)

    bus.attach(loop, listener)
    sink = MarketBusSink(bus).build("market_bus", 0, 1)
    outs = outputs(live=False)
    sink.write_batch(outs)
    sink.close()
    loop.run_until_complete(asyncio.sleep(0))
    assert [e.block_number for e in got] == [5]
    last = outs[-1].parts.get("compound_v3")
    assert last is not None
    assert got[0].data == last.updates[0].json()
    loop.close()
