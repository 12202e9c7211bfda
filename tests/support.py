"""Test helpers: a live defimon server (real uvicorn, real HTTP) and chain calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from eth_abi import decode, encode
from eth_utils import keccak
from httpx_sse import connect_sse

from api.app import create_app
from defimon.runtime import Runtime
from devnet.anvil import free_port
from flows.endpoint import ChainEndpoint
from flows.rows import COLUMNS
from ports.settings import Settings
from ports.store import Store


def rpc(url: str, method: str, params: list[Any]) -> Any:
    body = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=30
    ).json()
    if "error" in body:
        raise RuntimeError(f"{method}: {body['error']}")
    return body["result"]


def block_number(url: str) -> int:
    return int(rpc(url, "eth_blockNumber", []), 16)


def selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


def eth_call(url: str, to: str, data: str, block: int, sender: str | None = None) -> str | None:
    """The call's return data, or None if it reverted."""
    tx: dict[str, Any] = {"to": to, "data": data}
    if sender:
        tx["from"] = sender
    try:
        result: str = rpc(url, "eth_call", [tx, hex(block)])
    except RuntimeError:
        return None
    return result


class Npm:
    """The position manager's own answers, at any block."""

    def __init__(self, url: str, address: str) -> None:
        self.url, self.address = url, address

    def owner_of(self, token_id: int, block: int) -> str | None:
        out = eth_call(
            self.url,
            self.address,
            selector("ownerOf(uint256)") + encode(["uint256"], [token_id]).hex(),
            block,
        )
        return None if out is None else "0x" + out[-40:]

    def position(self, token_id: int, block: int) -> tuple[Any, ...]:
        out = eth_call(
            self.url,
            self.address,
            selector("positions(uint256)") + encode(["uint256"], [token_id]).hex(),
            block,
        )
        assert out is not None
        return tuple(
            decode(
                [
                    "uint96",
                    "address",
                    "address",
                    "address",
                    "uint24",
                    "int24",
                    "int24",
                    "uint128",
                    "uint256",
                    "uint256",
                    "uint128",
                    "uint128",
                ],
                bytes.fromhex(out[2:]),
            )
        )

    def decrease_all(
        self, token_id: int, liquidity: int, owner: str, block: int
    ) -> tuple[int, int]:
        """What decreaseLiquidity of the full liquidity returns, simulated from the owner."""
        data = (
            selector("decreaseLiquidity((uint256,uint128,uint256,uint256,uint256))")
            + encode(
                ["(uint256,uint128,uint256,uint256,uint256)"],
                [(token_id, liquidity, 0, 0, 2**64)],
            ).hex()
        )
        out = eth_call(self.url, self.address, data, block, owner)
        assert out is not None, f"decreaseLiquidity({token_id}) reverted at {block}"
        a0, a1 = decode(["uint256", "uint256"], bytes.fromhex(out[2:]))
        return int(a0), int(a1)


def minted_token_ids(url: str, npm: str) -> list[int]:
    """Every position NFT ever minted, from the position manager's Transfer(0x0, ...) logs."""
    transfer = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
    logs = rpc(
        url,
        "eth_getLogs",
        [
            {
                "fromBlock": "0x0",
                "toBlock": "latest",
                "address": npm,
                "topics": [transfer, "0x" + "0" * 64],
            }
        ],
    )
    return sorted(int(lg["topics"][3], 16) for lg in logs)


def _collect_data(token_id: int, owner: str) -> str:
    max128 = 2**128 - 1
    return (
        selector("collect((uint256,address,uint128,uint128))")
        + encode(["(uint256,address,uint128,uint128)"], [(token_id, owner, max128, max128)]).hex()
    )


def collect_all(npm: Npm, token_id: int, owner: str, block: int) -> tuple[int, int]:
    """What collect(max, max) pays the owner, simulated at the block."""
    out = eth_call(npm.url, npm.address, _collect_data(token_id, owner), block, owner)
    assert out is not None, f"collect({token_id}) reverted at {block}"
    a0, a1 = decode(["uint256", "uint256"], bytes.fromhex(out[2:]))
    return int(a0), int(a1)


class LiveServer:
    def __init__(self, runtime: Runtime, port: int, *, start_flow: bool = True) -> None:
        self.runtime = runtime
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.app = create_app(
            runtime.api_parts(),
            on_start=runtime.start_flow if start_flow else None,
            on_stop=runtime.stop,
        )
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=3,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self, timeout: float = 30) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=30)

    def wait_processed(self, chain_id: int, block: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.runtime.status.chain(chain_id).processed < block:
            if self.runtime.status.error:
                raise RuntimeError(self.runtime.status.error)
            if time.monotonic() > deadline:
                at = self.runtime.status.chain(chain_id).processed
                raise TimeoutError(f"block {block} not processed (at {at})")
            time.sleep(0.02)


@contextmanager
def live_server(
    data_dir: Path,
    endpoints: list[ChainEndpoint],
    **settings: Any,
) -> Iterator[LiveServer]:
    runtime = Runtime(Settings(data_dir=data_dir, **settings), endpoints)
    server = LiveServer(runtime, free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def collect_events(
    url: str,
    kinds: tuple[str, ...],
    into: list[dict[str, Any]],
    stop: threading.Event,
    params: dict[str, Any] | None = None,
    connected: threading.Event | None = None,
) -> None:
    """Read an SSE stream (in a thread) until `stop`, keeping the data of events of `kinds`.
    `connected` is set at the stream's first event (`hello`: the server has subscribed the
    client). A connection lost after `stop` is the end of the test, not an error."""
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(5.0, read=None)) as client,
            connect_sse(client, "GET", url, params=params) as source,
        ):
            for event in source.iter_sse():
                if connected is not None:
                    connected.set()
                if stop.is_set():
                    return
                if event.event in kinds:
                    into.append(event.json())
    except httpx.HTTPError:
        if not stop.is_set():
            raise


def stream_reader(
    url: str,
    kinds: tuple[str, ...],
    into: list[dict[str, Any]],
    stop: threading.Event,
    params: dict[str, Any] | None = None,
) -> threading.Thread:
    """`collect_events` in a thread of its own, returned once the stream is open (its `hello`
    arrived, so the server has subscribed it): what a test does next is on the stream, however
    slowly a loaded machine connects."""
    connected = threading.Event()
    reader = threading.Thread(
        target=collect_events,
        args=(url, kinds, into, stop, params),
        kwargs={"connected": connected},
        daemon=True,
    )
    reader.start()
    assert connected.wait(60), f"the stream at {url} did not open"
    return reader


def chain_tables(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every table the flow writes, as FINAL shows it, without the version (when a row was
    written): equal for any two runs over the same chain, however they ran (live or backfill,
    killed, through faults, with reorgs, on more workers). Blocks: those with logs (a live run
    also stores empty blocks, and a backfill reads no parent hash for blocks it took from
    eth_getLogs)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, columns in COLUMNS.items():  # names from code, never from input
        if table == "defimon.blocks":
            sql = (
                "SELECT chain_id, number, hash, block_time, log_count FROM defimon.blocks FINAL "
                "WHERE log_count > 0 ORDER BY ALL"
            )
        else:
            kept = ", ".join(c for c in columns if c != "version")
            sql = f"SELECT {kept} FROM {table} FINAL ORDER BY ALL"
        out[table] = store.rows(sql)
    return out
