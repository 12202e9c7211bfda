"""`defimon api` runs no flow, so it imports neither Bytewax nor the flow's Bytewax modules.

The real command line, in its own process, around a real nats-server (JetStream) and a real
chDB store served over ClickHouse's HTTP interface (as `defimon flow --store-http-port`
serves it). The process records its loaded modules once it serves, after real HTTP requests
(JSON, analyst SQL through the store, an SSE stream carrying an event published to NATS) and
at exit.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from defimon.ch_http import ChdbHttpEngine, ClickHouseHttpServer, store_users
from defimon.nats_bus import NatsBus, NatsConfig
from devnet.anvil import free_port
from ports.store import Store
from schemas.stream import BusEvent
from tests.nats_server import NatsServer

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "store-secret"
OWNER = "0x" + "ab" * 20

# The command line as `defimon` runs it, plus a record of sys.modules: on SIGUSR1 and at exit.
RECORDING_CLI = """
import json, os, signal, sys

def record(moment):
    with open(os.environ["MODULES_RECORD"], "a") as out:
        out.write(json.dumps({"moment": moment, "modules": sorted(sys.modules)}) + "\\n")

signal.signal(signal.SIGUSR1, lambda *_: record("signal"))
from defimon.cli import main

code = main(sys.argv[1:])
record("exit")
sys.exit(code)
"""


def bytewax_modules() -> set[str]:
    """Our modules that import Bytewax themselves (found in the source, so a new one counts)."""
    found = set()
    for package in ("defimon", "flows", "api", "ports", "schemas"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                if any(n == "bytewax" or n.startswith("bytewax.") for n in names):
                    found.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def flow_side(modules: list[str], ours: set[str]) -> list[str]:
    return [m for m in modules if m == "bytewax" or m.startswith("bytewax.") or m in ours]


def wait_for(condition: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"defimon api exited ({process.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after 60 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    """A migrated chDB store, served over ClickHouse's HTTP interface: the API's URL for it."""
    local = Store.connect(None, tmp_path / "flow")
    local.migrate()
    engine = ChdbHttpEngine((tmp_path / "flow").resolve() / "chdb")
    server = ClickHouseHttpServer(
        ("127.0.0.1", 0), engine, store_users("defimon", PASSWORD, "analyst", None)
    ).start()
    try:
        yield f"http://defimon:{PASSWORD}@127.0.0.1:{server.port}"
    finally:
        server.stop()
        local.close()


def test_defimon_api_serves_without_importing_bytewax_or_the_flow(
    tmp_path: Path, store_url: str
) -> None:
    ours = bytewax_modules()
    # The check below means something only if it knows the flow's modules.
    assert {"flows.dataflow", "flows.source", "defimon.runtime"} <= ours
    nats = NatsServer(tmp_path / "nats").start()
    port = free_port()
    record = tmp_path / "modules.jsonl"
    log = tmp_path / "api.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DEFIMON_NATS_URL": nats.url,
        "DEFIMON_CLICKHOUSE_URL": store_url,
        "DEFIMON_LOG_FORMAT": "json",
        "MODULES_RECORD": str(record),
    }
    command = [
        *("api", "--chain", "ethereum", "--rpc", f"http://127.0.0.1:{free_port()}"),
        *("--port", str(port), "--data-dir", str(tmp_path / "api")),
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", RECORDING_CLI, *command],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def records() -> list[dict[str, Any]]:
        if not record.exists():
            return []
        return [json.loads(line) for line in record.read_text().splitlines()]

    def recorded_now() -> list[str]:
        before = len(records())
        process.send_signal(signal.SIGUSR1)
        wait_for(lambda: len(records()) > before, "module record", process, log)
        modules: list[str] = records()[-1]["modules"]
        return modules

    try:
        wait_for(lambda: listening(port), "listening API", process, log)
        started = recorded_now()
        assert "api.app" in started and "ports.store" in started, "not the API's modules"
        assert flow_side(started, ours) == [], "imported at start-up"

        base = f"http://127.0.0.1:{port}"
        health = httpx.get(f"{base}/healthz", timeout=30)
        assert health.status_code == 200, health.text
        assert health.json()["flow_running"] is False  # no flow process has reported
        meta = httpx.get(f"{base}/v1/meta", timeout=30).json()
        assert [c["chain_id"] for c in meta["chains"]] == [1]
        assert meta["store"] == "clickhouse"
        # Through the store over HTTP: what the migration wrote.
        sql = httpx.post(
            f"{base}/v1/sql",
            json={"sql": "SELECT count() AS n FROM defimon.schema_info"},
            timeout=30,
        )
        assert sql.status_code == 200, sql.text
        assert sql.json()["rows"][0][0] > 0
        watched = httpx.get(f"{base}/v1/watch", timeout=30).json()
        assert watched == {"chain_id": 1, "mode": "balances", "wallets": []}

        # An event a flow process would publish reaches an SSE client through NATS.
        received: list[dict[str, Any]] = []
        hello = threading.Event()
        done = threading.Event()

        def read_stream() -> None:
            with (
                httpx.Client(timeout=httpx.Timeout(10.0, read=30.0)) as client,
                connect_sse(client, "GET", f"{base}/v1/stream") as source,
            ):
                for sse in source.iter_sse():
                    if sse.event == "hello":
                        hello.set()
                    elif sse.event == "position":
                        received.append(json.loads(sse.data))
                        done.set()
                        return

        reader = threading.Thread(target=read_stream, daemon=True)
        reader.start()
        assert hello.wait(30), "no hello on /v1/stream"
        publisher = NatsBus(NatsConfig(nats.url))
        try:
            publisher.publish(
                [BusEvent("position", 1, 7, "0x" + "cd" * 32, {"id": "p1", "owner": OWNER})]
            )
            assert publisher.flush(30)
        finally:
            publisher.close()
        assert done.wait(30), "the published event did not reach the stream"
        assert received == [{"id": "p1", "owner": OWNER, "confirmed": False}]

        served = recorded_now()
        assert "api.routes.stream" in served
        assert flow_side(served, ours) == [], "imported while serving"

        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-3000:]
        final = records()[-1]
        assert final["moment"] == "exit"
        assert flow_side(final["modules"], ours) == [], "imported by the end"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        nats.stop()
