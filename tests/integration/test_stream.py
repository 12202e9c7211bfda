"""The live stream over real HTTP: what a subscriber gets after a swap on the real chain.

A real anvil runs the real Uniswap V3 bytecode, the real flow indexes it, and clients read
`/v1/stream` with httpx-sse. Live events must equal the time-travel answer for their block, go
only to the wallets they concern, come with heartbeats, and be replayed after a reconnect.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from devnet.deploy import Pool
from tests.conftest import Devnet
from tests.support import LiveServer, block_number, live_server, rpc

WAIT = 20.0  # seconds for anything the flow has to index and publish


@dataclass(frozen=True)
class Event:
    id: int
    data: dict[str, Any]

    @property
    def block(self) -> int:
        number: int = self.data["block_number"]
        return number


class Subscription:
    """One `/v1/stream` client reading in the background until closed."""

    def __init__(
        self, base_url: str, owners: Sequence[str] | None = None, last_event_id: int | None = None
    ) -> None:
        self.url = base_url + "/v1/stream"
        self.owners = list(owners or [])
        self.last_event_id = last_event_id
        self.hello: dict[str, Any] | None = None
        self.events: list[Event] = []
        self.others: list[tuple[str, str]] = []  # any other event: (name, data)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None))
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscription:
        self._task = asyncio.create_task(self._read())
        await self.wait_for(lambda: self.hello is not None, "the hello event")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.aclose()

    async def _read(self) -> None:
        headers = {} if self.last_event_id is None else {"Last-Event-ID": str(self.last_event_id)}
        params = [("owner", owner) for owner in self.owners]
        async with aconnect_sse(
            self._client, "GET", self.url, params=params, headers=headers
        ) as source:
            assert source.response.status_code == 200, await source.response.aread()
            async for sse in source.aiter_sse():
                if sse.event == "hello":
                    self.hello = json.loads(sse.data)
                elif sse.event == "position":
                    self.events.append(Event(int(sse.id), json.loads(sse.data)))
                else:
                    self.others.append((sse.event, sse.data))

    @property
    def ids(self) -> list[int]:
        return [e.id for e in self.events]

    def at(self, block: int) -> list[Event]:
        return [e for e in self.events if e.block == block]

    def seen(self, block: int, **fields: Any) -> bool:
        """Whether an event at `block` has these field values."""
        return any(all(e.data[k] == v for k, v in fields.items()) for e in self.at(block))

    async def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if self._task is not None and self._task.done():
                self._task.result()  # raises what ended the stream
                raise AssertionError(f"the stream ended before {what}: {self.others}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {what} after {WAIT} s; owners {self.owners}, got events "
                    f"{[(e.id, e.block, e.data['id']) for e in self.events]}, others {self.others}"
                )
            await asyncio.sleep(0.02)


@pytest.fixture
def server(devnet: Devnet, tmp_path: Path) -> Iterator[LiveServer]:
    for _ in range(10):
        devnet.simulator.step()
    with live_server(tmp_path, [devnet.endpoint()], sse_ping_seconds=0.3) as live:
        live.wait_processed(devnet.deployment.chain_id, block_number(devnet.rpc_url))
        yield live


async def swap(devnet: Devnet, server: LiveServer, pool: Pool) -> int:
    """A swap in `pool`, once the flow has stored its block; returns the block."""
    block = await asyncio.to_thread(devnet.simulator.swap, pool)
    await asyncio.to_thread(server.wait_processed, devnet.deployment.chain_id, block)
    return block


def pool_named(devnet: Devnet, label: str) -> Pool:
    for pool in devnet.deployment.pools:
        if devnet.deployment.pool_label(pool) == label:
            return pool
    raise AssertionError(f"no pool {label}; have {devnet.deployment.pools}")


def open_positions(server: LiveServer, pool: Pool) -> list[dict[str, Any]]:
    response = server.get("/v1/positions", pool=pool.address, limit=1000)
    assert response.status_code == 200, response.text
    positions: list[dict[str, Any]] = response.json()["positions"]
    return positions


def differences(live: dict[str, Any], served: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {
        key: (live.get(key), served.get(key))
        for key in sorted(live.keys() | served.keys())
        if live.get(key, "<missing>") != served.get(key, "<missing>")
    }


async def test_live_events_equal_the_time_travel_answer_for_their_block(
    devnet: Devnet, server: LiveServer
) -> None:
    pool = pool_named(devnet, "WETH/USDC 0.05%")
    target = next(
        (p for p in open_positions(server, pool) if p["in_range"] and int(p["liquidity"]) > 0),
        None,
    )
    assert target is not None, "the seeded market has no in-range position in WETH/USDC"
    owner = target["owner"]

    async with Subscription(server.url, [owner]) as sub:
        assert sub.hello is not None and isinstance(sub.hello["last_id"], int)
        assert sub.events == [], "events before anything happened"
        block = await swap(devnet, server, pool)
        await sub.wait_for(
            partial(sub.seen, block, id=target["id"]), f"event for {target['id']} at block {block}"
        )

    assert sub.ids == sorted(set(sub.ids)), f"event ids do not increase: {sub.ids}"
    assert all(e.id > sub.hello["last_id"] for e in sub.events), (sub.hello, sub.ids)
    chain_hash = rpc(devnet.rpc_url, "eth_getBlockByNumber", [hex(block), False])["hash"]
    portfolio: dict[int, dict[str, dict[str, Any]]] = {}
    for event in sub.events:
        assert event.data["owner"] == owner, f"event {event.id} is about {event.data['owner']}"
        assert event.block == block, f"event {event.id} is for block {event.block}, not {block}"
        assert event.data["block_hash"] == chain_hash, "the event's block hash is not the chain's"
        if event.block not in portfolio:
            response = server.get(f"/v1/portfolio/{owner}", at=str(event.block))
            assert response.status_code == 200, response.text
            portfolio[event.block] = {p["id"]: p for p in response.json()["positions"]}
        served = portfolio[event.block].get(event.data["id"])
        assert served is not None, f"{event.data['id']} is not in the portfolio at {event.block}"
        assert event.data.pop("confirmed") is False  # the stream's own: 64 blocks to final
        assert differences(event.data, served) == {}, (
            f"event {event.id} ({event.data['id']}) != portfolio?at={event.block}: "
            "(live, time travel) by field"
        )
    moved = sub.at(block)[0].data
    assert moved["amount0"] != target["amount0"] or moved["amount1"] != target["amount1"], (
        "the swap did not move an in-range position's amounts"
    )


async def test_events_go_only_to_the_wallets_they_concern(
    devnet: Devnet, server: LiveServer
) -> None:
    # DAI/USDC is priced 1:1 from USDC: a swap there revalues that pool's positions only.
    pool = pool_named(devnet, "DAI/USDC 0.01%")
    barrier_pool = pool_named(devnet, "WETH/USDC 0.05%")
    # A sentinel in every filter: its event at a later block tells a client it has been sent
    # everything published before, whatever else it filters.
    sentinel = open_positions(server, barrier_pool)[0]["owner"]
    wallets = [w for w in devnet.deployment.wallets if w != sentinel]

    async with AsyncExitStack() as stack:
        everything = await stack.enter_async_context(Subscription(server.url))
        subs = {
            w: await stack.enter_async_context(Subscription(server.url, [w, sentinel]))
            for w in wallets
        }
        block = await swap(devnet, server, pool)
        barrier = await swap(devnet, server, barrier_pool)
        for wallet, sub in subs.items():
            await sub.wait_for(
                partial(sub.seen, barrier, owner=sentinel),
                f"the sentinel's event at block {barrier} for {wallet}",
            )
        await everything.wait_for(
            lambda: bool(everything.at(barrier)), f"any event at block {barrier}"
        )

    swapped = everything.at(block)
    assert swapped, f"nobody got an event for the swap in block {block}"
    assert all(e.data["pool"] == pool.address for e in swapped), "other pools revalued"
    concerned = {e.data["owner"] for e in swapped}
    idle = [w for w in wallets if w not in concerned]
    idle_with_positions = [w for w in idle if server.get(f"/v1/portfolio/{w}").json()["positions"]]
    assert concerned - {sentinel} and idle_with_positions, (
        f"the market does not exercise the filter: concerned {concerned}, idle {idle}"
    )
    for wallet, sub in subs.items():
        got = [e.id for e in sub.at(block) if e.data["owner"] != sentinel]
        expected = [e.id for e in swapped if e.data["owner"] == wallet]
        assert got == expected, f"{wallet} at block {block}: got {got}, expected {expected}"
        strangers = [e.id for e in sub.events if e.data["owner"] not in (wallet, sentinel)]
        assert strangers == [], f"{wallet} got events about other wallets: {strangers}"


async def test_heartbeat_comments_keep_an_idle_stream_alive(server: LiveServer) -> None:
    nobody = "0x" + "5e" * 20
    lines: list[tuple[float, str]] = []
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", server.url + "/v1/stream", params={"owner": nobody}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        started = time.monotonic()
        async for line in response.aiter_lines():
            lines.append((time.monotonic() - started, line))
            if sum(1 for _, text in lines if text.startswith(":")) >= 3:
                break
            assert time.monotonic() - started < 5, f"too few heartbeats in 5 s: {lines}"
    texts = [text for _, text in lines]
    assert texts[0] == "event: hello" and texts[1].startswith("data: "), texts
    pings = [at for at, text in lines if text.startswith(":")]
    assert not [t for t in texts if t.startswith(("event: position", "id:"))], texts
    gaps = [b - a for a, b in pairwise(pings)]
    assert all(0.15 < gap < 1.5 for gap in gaps), f"heartbeats every 0.3 s, got gaps {gaps}"


async def test_a_reconnect_with_last_event_id_gets_exactly_the_missed_events(
    devnet: Devnet, server: LiveServer
) -> None:
    pool = pool_named(devnet, "WETH/USDC 0.3%")
    owner = open_positions(server, pool)[0]["owner"]

    def mine(sub: Subscription, block: int) -> Callable[[], bool]:
        return partial(sub.seen, block, pool=pool.address)

    async with Subscription(server.url, [owner]) as steady:
        async with Subscription(server.url, [owner]) as first:
            block = await swap(devnet, server, pool)
            await first.wait_for(mine(first, block), f"the event at {block}")
        last_seen = first.ids[-1]

        missed_blocks = [await swap(devnet, server, pool) for _ in range(3)]
        await steady.wait_for(mine(steady, missed_blocks[-1]), f"the event at {missed_blocks[-1]}")
        missed = [e for e in steady.events if e.id > last_seen]
        assert {e.block for e in missed} >= set(missed_blocks), "no events while disconnected"

        async with Subscription(server.url, [owner], last_event_id=last_seen) as again:
            assert again.hello is not None and again.hello["last_id"] >= missed[-1].id
            await again.wait_for(lambda: len(again.events) >= len(missed), "the replay")
            replayed = again.events[: len(missed)]
            assert [e.id for e in replayed] == [e.id for e in missed], (
                f"replay after {last_seen}: got {[e.id for e in replayed]}, "
                f"expected {[e.id for e in missed]}"
            )
            assert [e.data for e in replayed] == [e.data for e in missed]

            # After the replay the stream is live again, in step with the steady client.
            block = await swap(devnet, server, pool)
            await again.wait_for(mine(again, block), f"the live event at {block}")
            await steady.wait_for(mine(steady, block), f"the live event at {block}")
            await again.wait_for(
                lambda: again.ids == [i for i in steady.ids if i > last_seen],
                f"the same events as the steady client after {last_seen}",
            )
    assert first.ids == [i for i in steady.ids if i <= last_seen], (first.ids, steady.ids)
