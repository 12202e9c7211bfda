"""Scale-out, for real: `defimon flow` and two `defimon api` processes around a real
nats-server (JetStream) and a real anvil with the real Uniswap V3 bytecode.

The flow process owns the chDB store and serves it over ClickHouse's HTTP interface; the API
processes read it with the clickhouse-connect HTTP client and read events from the stream. SSE
clients are connected to both APIs when one of them is killed (SIGKILL) and started again;
its clients resume with Last-Event-ID, one on the restarted process (which has to read what
they missed back from JetStream) and one on the other process. Every client must end up with
exactly the stream's events, in order, no gap and no duplicate, as a client that never
disconnected did; and the store answers through an API process, exact to the chain.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from httpx_sse import connect_sse

from devnet.anvil import free_port
from tests.conftest import Devnet
from tests.nats_server import NatsServer
from tests.support import Npm, block_number

ROOT = Path(__file__).resolve().parents[2]
WAIT = 90.0  # seconds for anything a process has to start, index or deliver
PASSWORD = "store-secret"


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout: float = WAIT,
    state: Callable[[], object] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s {state()}")
        time.sleep(0.05)


class Process:
    """A `defimon ...` subprocess, its output in a file for when something fails."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "defimon.cli", *args],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self) -> str:
        return self.log_path.read_text()[-3000:]

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(30)

    def stop(self) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(30)


def get_json(url: str) -> tuple[int, Any]:
    try:
        response = httpx.get(url, timeout=10)
    except httpx.HTTPError:
        return 0, None
    return response.status_code, response.json()


@dataclass
class Client:
    """An SSE client of /v1/stream in a thread: every data event as (id, kind, data)."""

    url: str
    last_event_id: int | None = None
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    others: list[tuple[str, str]] = field(default_factory=list)
    hello: dict[str, Any] | None = None
    ended: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Client:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        wait_until(lambda: self.hello is not None or self.ended is not None, "hello")
        assert self.hello is not None, f"the stream did not open: {self.ended!r}"
        return self

    def _read(self) -> None:
        headers = {} if self.last_event_id is None else {"Last-Event-ID": str(self.last_event_id)}
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client,
                connect_sse(client, "GET", self.url + "/v1/stream", headers=headers) as source,
            ):
                for sse in source.iter_sse():
                    if self.stop.is_set():
                        return
                    if sse.event == "hello":
                        self.hello = json.loads(sse.data)
                    elif sse.event in ("reset", "lagged"):
                        self.others.append((sse.event, sse.data))
                    elif sse.data:  # (a heartbeat comes as an empty `message`)
                        self.events.append((int(sse.id), sse.event, json.loads(sse.data)))
        except BaseException as exc:  # the server went away: the test looks at `ended`
            self.ended = exc

    @property
    def last_id(self) -> int:
        return self.events[-1][0] if self.events else (self.hello or {}).get("last_id", 0)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(15)


async def _read_stream(url: str, first: int, last: int) -> list[tuple[int, str, dict[str, Any]]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        out = []
        for seq in range(first, last + 1):
            msg = await js.get_msg("DEFIMON", seq)
            assert msg.data is not None
            raw = json.loads(msg.data)
            out.append((seq, raw["k"], raw["d"]))
        return out
    finally:
        await nc.close()


async def _last_seq(url: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("DEFIMON")
        return info.state.last_seq
    finally:
        await nc.close()


def stream_events(url: str, first: int, last: int) -> list[tuple[int, str, dict[str, Any]]]:
    """What JetStream holds, read directly: (sequence, kind, data)."""
    return asyncio.run(_read_stream(url, first, last))


def stream_last(url: str) -> int:
    return asyncio.run(_last_seq(url))


def without_confirmed(
    events: list[tuple[int, str, dict[str, Any]]],
) -> list[tuple[int, str, dict[str, Any]]]:
    """The stream adds `confirmed` (as of delivery) to each event's data."""
    return [(i, k, {n: v for n, v in d.items() if n != "confirmed"}) for i, k, d in events]


@pytest.fixture
def cluster(devnet: Devnet, tmp_path: Path) -> Iterator[dict[str, Any]]:
    for _ in range(6):
        devnet.simulator.step()
    server = NatsServer(tmp_path / "nats").start()
    chain_config = tmp_path / "chain.toml"
    chain_config.write_text(devnet.deployment.to_chain_config().to_toml())
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DEFIMON_NATS_URL": server.url,
        "DEFIMON_LOG_FORMAT": "json",
        "DEFIMON_SSE_PING_SECONDS": "0.5",
        "DEFIMON_STORE_HTTP_PASSWORD": PASSWORD,
    }
    chain = [
        "--rpc",
        devnet.rpc_url,
        "--ws",
        devnet.anvil.ws_url,
        "--chain-config",
        str(chain_config),
    ]
    store_port, health_port = free_port(), free_port()
    processes: list[Process] = []
    flow = Process(
        "flow",
        [
            "flow",
            *chain,
            "--data-dir",
            str(tmp_path / "flow"),
            "--store-http-port",
            str(store_port),
            "--health-port",
            str(health_port),
        ],
        env,
        logs,
    )
    processes.append(flow)
    api_env = {**env, "DEFIMON_CLICKHOUSE_URL": f"http://defimon:{PASSWORD}@127.0.0.1:{store_port}"}

    def start_api(name: str, port: int, *extra: str) -> Process:
        process = Process(
            name,
            ["api", *chain, "--port", str(port), "--data-dir", str(tmp_path / name), *extra],
            api_env,
            logs,
        )
        processes.append(process)
        wait_until(
            lambda: not process.alive() or get_json(f"http://127.0.0.1:{port}/readyz")[0] == 200,
            f"{name} ready",
        )
        assert process.alive(), f"{name} exited:\n{process.tail()}"
        return process

    def flow_processed() -> int:
        code, body = get_json(f"http://127.0.0.1:{health_port}/healthz")
        if code != 200:
            assert flow.alive(), f"the flow exited:\n{flow.tail()}"
            return -1
        return max((c["processed"] for c in body["chains"]), default=-1)

    try:
        head = block_number(devnet.rpc_url)
        wait_until(lambda: flow_processed() >= head, f"the flow at block {head}")

        def two_apis() -> tuple[Process, str, str]:
            """API processes a and b over the flow's store; a is the one tests kill."""
            port_a, port_b = free_port(), free_port()
            api_a = start_api("api-a", port_a)
            start_api("api-b", port_b)
            return api_a, f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"

        def step_and_index() -> int:
            devnet.simulator.step()
            block = block_number(devnet.rpc_url)
            wait_until(lambda: flow_processed() >= block, f"block {block} indexed")
            return block

        yield {
            "nats": server,
            "flow": flow,
            "start_api": start_api,
            "flow_processed": flow_processed,
            "two_apis": two_apis,
            "step_and_index": step_and_index,
        }
    finally:
        for process in reversed(processes):
            process.stop()
        server.stop()


def test_clients_resume_across_a_killed_api_process_with_exactly_the_streams_events(
    devnet: Devnet, cluster: dict[str, Any]
) -> None:
    start_api: Callable[[str, int], Process] = cluster["start_api"]
    step_and_index: Callable[[], int] = cluster["step_and_index"]
    nats_url: str = cluster["nats"].url
    api_a, url_a, url_b = cluster["two_apis"]()
    port_a = int(url_a.rsplit(":", 1)[1])

    steady = Client(url_b).start()  # never disconnects
    to_restarted = Client(url_a).start()
    to_other = Client(url_a).start()
    clients = [steady, to_restarted, to_other]
    try:
        assert steady.hello == to_restarted.hello, "two API processes disagree on the last id"

        step_and_index()
        wait_until(
            lambda: all(c.events for c in clients), "events for every client before the kill"
        )

        api_a.kill()
        wait_until(
            lambda: to_restarted.ended is not None and to_other.ended is not None,
            "the killed API's clients to notice",
        )
        seen_before = (to_restarted.last_id, to_other.last_id)
        # Events the killed API's clients miss while it is down.
        step_and_index()
        wait_until(
            lambda: steady.last_id > max(seen_before),
            "events while the API is down",
            state=lambda: (seen_before, steady.last_id, steady.ended, stream_last(nats_url)),
        )

        start_api("api-a-restarted", port_a)
        resumed = Client(url_a, last_event_id=to_restarted.last_id).start()
        moved = Client(url_b, last_event_id=to_other.last_id).start()
        clients += [resumed, moved]
        assert resumed.hello is not None and resumed.hello["last_id"] > to_restarted.last_id, (
            "the restarted API already had the missed events: the stream was not read back"
        )

        step_and_index()
        final = step_and_index()
        start = steady.hello["last_id"] if steady.hello else 0
        wait_until(lambda: stream_last(nats_url) > start, "events in the stream")
        target = stream_last(nats_url)
        wait_until(
            lambda: all(c.last_id >= target for c in (steady, resumed, moved)),
            f"every client at stream sequence {target}",
        )
    finally:
        for client in clients:
            client.close()

    assert steady.ended is None, f"the steady client's stream ended: {steady.ended!r}"
    assert steady.hello is not None
    for client in clients:
        assert not any(name in ("reset", "lagged") for name, _ in client.others), client.others

    first = steady.hello["last_id"] + 1
    truth = stream_events(nats_url, first, max(c.last_id for c in clients))
    by_seq = {seq: (seq, kind, data) for seq, kind, data in truth}
    assert len(truth) == max(c.last_id for c in clients) - first + 1

    def expected(start: int, end: int) -> list[tuple[int, str, dict[str, Any]]]:
        return [by_seq[s] for s in range(start, end + 1)]

    assert without_confirmed(steady.events) == expected(first, steady.last_id), (
        "the client that never disconnected did not get exactly the stream's events"
    )
    for before, after, name in (
        (to_restarted, resumed, "resumed on the restarted API"),
        (to_other, moved, "resumed on the other API"),
    ):
        joined = without_confirmed(before.events + after.events)
        ids = [seq for seq, _, _ in joined]
        assert ids == sorted(set(ids)), f"client {name}: duplicate or reordered ids"
        assert joined == expected(before.events[0][0], after.last_id), (
            f"client {name}: a gap, a duplicate or a changed event against the stream"
        )
        assert after.events and after.events[0][0] == before.last_id + 1
    assert any(kind == "position" for _, kind, _ in truth), "no position event was streamed"

    # The store through an API process (its store is the flow's chDB, over HTTP): a wallet's
    # portfolio at the last block, exact to the position manager's own view.
    # The API processes know the flow's progress from its status messages (every second).
    wait_until(lambda: min(api_processed(url_a), api_processed(url_b)) >= final, "APIs at final")
    npm = Npm(devnet.rpc_url, devnet.deployment.position_manager)
    checked = 0
    for wallet in devnet.deployment.wallets[:3]:
        response = httpx.get(f"{url_a}/v1/portfolio/{wallet}", params={"at": final}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["as_of"]["block_number"] == final
        for position in body["positions"]:
            onchain = npm.position(int(position["token_id"]), final)
            assert int(position["liquidity"]) == onchain[7], position["id"]
            checked += 1
        other = httpx.get(f"{url_b}/v1/portfolio/{wallet}", params={"at": final}, timeout=30)
        assert other.json() == body, "two API processes answer differently from one store"
    assert checked > 0, "no position to check in the wallets' portfolios"

    ready = httpx.get(f"{url_a}/readyz", timeout=10).json()
    assert ready["ready"] and ready["chains"][0]["processed"] >= final, ready


def api_processed(url: str) -> int:
    code, body = get_json(f"{url}/readyz")
    return body["chains"][0]["processed"] or -1 if code in (200, 503) and body else -1


def status_at(url: str, block: int) -> bool:
    return api_processed(url) >= block


def head_portfolio(url: str, wallet: str, block: int) -> dict[str, Any]:
    """The wallet's head portfolio from the API's head view once it is at `block` or later."""
    found: list[dict[str, Any]] = []

    def served() -> bool:
        response = httpx.get(f"{url}/v1/portfolio/{wallet}", timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        if response.headers.get("x-served-from") != "head-view":
            return False
        if body["as_of"]["block_number"] < block:
            return False
        found.append(body)
        return True

    wait_until(served, f"{url}'s head view at block {block}")
    return found[-1]


def test_a_restarted_api_serves_the_head_portfolios_of_one_that_never_stopped(
    devnet: Devnet, cluster: dict[str, Any]
) -> None:
    """Head views over NATS: the restarted API builds its view from the store and follows the
    feed from there; after blocks it missed, both APIs answer every wallet's head portfolio
    alike (and as the store does at that block), and its SSE client resumes without a gap."""
    start_api: Callable[[str, int], Process] = cluster["start_api"]
    step_and_index: Callable[[], int] = cluster["step_and_index"]
    nats_url: str = cluster["nats"].url
    api_a, url_a, url_b = cluster["two_apis"]()
    port_a = int(url_a.rsplit(":", 1)[1])
    wallets = devnet.deployment.wallets

    block = step_and_index()
    for wallet in wallets:
        assert head_portfolio(url_a, wallet, block) == head_portfolio(url_b, wallet, block)
    before = Client(url_a).start()
    clients = [before]
    try:
        step_and_index()
        wait_until(lambda: bool(before.events), "events before the kill")
        api_a.kill()
        wait_until(lambda: before.ended is not None, "the killed API's client to notice")
        # Blocks with events for the wallets while it is down.
        step_and_index()
        step_and_index()
        start_api("api-a-restarted", port_a)
        after = Client(url_a, last_event_id=before.last_id).start()
        clients.append(after)
        final = step_and_index()
        target = stream_last(nats_url)
        wait_until(lambda: after.last_id >= target, f"the resumed client at {target}")
    finally:
        for client in clients:
            client.close()

    compared = 0
    for wallet in wallets:
        restarted = head_portfolio(url_a, wallet, final)
        steady = head_portfolio(url_b, wallet, final)
        at = restarted["as_of"]["block_number"]
        if steady["as_of"]["block_number"] != at:  # a block came in between: ask again
            steady = head_portfolio(url_b, wallet, at)
            restarted = head_portfolio(url_a, wallet, steady["as_of"]["block_number"])
        assert restarted == steady, f"{wallet}: the restarted API's head differs"
        # The store path answers up to the block the flow's status (every second) reported.
        wait_until(partial(status_at, url_b, at), f"the API's status at block {at}")
        store = httpx.get(f"{url_b}/v1/portfolio/{wallet}", params={"at": at}, timeout=30)
        assert store.json() == restarted, f"{wallet}: the head view differs from the store"
        compared += len(restarted["positions"])
    assert compared > 0, "no position in any wallet's head portfolio"

    assert not any(name in ("reset", "lagged") for name, _ in after.others), after.others
    joined = without_confirmed(before.events + after.events)
    truth = stream_events(nats_url, joined[0][0], after.last_id)
    assert joined == truth, "the resumed client missed, repeated or changed an event"
    assert after.events and after.events[0][0] == before.last_id + 1
    assert any(kind == "position" for _, kind, _ in after.events), "no position event resumed"
