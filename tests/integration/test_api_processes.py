"""`defimon api --processes 2`: two API processes behind one port, for real (a real nats-server,
`defimon flow` serving its chDB store over HTTP, a real anvil with the real Aave and Uniswap
bytecode).

Stream clients are spread over both processes by the kernel (checked in /proc: each process
holds some of the connections), and each gets exactly the stream's events, whichever process
serves it. An alert rule created through the process that does not evaluate rules (the
connection is placed on it, checked in /proc) takes effect: when a price shock takes a borrower
below its level, the alert fires once, is stored once, reaches a webhook once and reaches every
stream client once, on both processes.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from devnet.anvil import free_port
from devnet.lending import LendingSimulator
from tests.conftest import Devnet
from tests.integration.test_alerts import SECRET, SHOCK, Receiver, weth_share
from tests.integration.test_multiprocess import (  # noqa: F401 - `cluster` is a fixture
    Client,
    Process,
    cluster,
    stream_events,
    stream_last,
    wait_until,
    without_confirmed,
)
from tests.support import block_number


def started_processes(process: Process) -> dict[int, int]:
    """index -> pid of the API processes, from their `api.start` log lines."""
    found = {}
    for line in process.log_path.read_text().splitlines():
        if line.startswith("{") and '"api.start"' in line:
            record = json.loads(line)
            found[int(record["process"])] = int(record["pid"])
    return found


def _socket_inodes(port: int) -> dict[int, int]:
    """Established TCP connections whose local port is `port`: inode -> the peer's port."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    found[inode] = int(remote.rsplit(":", 1)[1], 16)
    return found


def connections_by_pid(port: int, pids: list[int]) -> dict[int, set[int]]:
    """pid -> the peer ports of the connections on `port` it serves."""
    inodes = _socket_inodes(port)
    out: dict[int, set[int]] = {pid: set() for pid in pids}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in inodes:
                    out[pid].add(inodes[inode])
    return out


def connection_to(port: int, pid: int, pids: list[int]) -> http.client.HTTPConnection:
    """A keep-alive HTTP connection to `port` that process `pid` serves (reconnects until the
    kernel hands one to it)."""
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        assert conn.sock is not None
        mine = conn.sock.getsockname()[1]
        if mine in connections_by_pid(port, pids)[pid]:
            return conn
        conn.close()
    raise AssertionError(f"no connection landed on process {pid}")


def post_json(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> Any:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    text = response.read()
    assert response.status == 201, text
    return json.loads(text)


def test_two_api_processes_behind_one_port_stream_everything_and_fire_alerts_once(
    devnet: Devnet,
    cluster: dict[str, Any],  # noqa: F811 - the fixture imported above
) -> None:
    start_api: Callable[..., Process] = cluster["start_api"]
    flow_processed: Callable[[], int] = cluster["flow_processed"]
    nats_url: str = cluster["nats"].url
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=3)
    lending.tick()
    lending.tick()

    def index_head() -> int:
        head = block_number(devnet.rpc_url)
        wait_until(lambda: flow_processed() >= head, f"block {head} indexed")
        return head

    index_head()
    port = free_port()
    api = start_api("api-pair", port, "--processes", "2")
    wait_until(lambda: '"api.ready"' in api.log_path.read_text(), "both API processes ready")
    pids_by_index = started_processes(api)
    assert sorted(pids_by_index) == [0, 1], pids_by_index
    pids = [pids_by_index[0], pids_by_index[1]]
    url = f"http://127.0.0.1:{port}"

    # Stream clients, until both processes hold some (the kernel spreads connections by hash).
    clients: list[Client] = []
    receiver: Receiver | None = None
    try:
        while len(clients) < 40:
            clients.append(Client(url).start())
            spread = connections_by_pid(port, pids)
            if len(clients) >= 4 and all(spread[p] for p in pids):
                break
        spread = connections_by_pid(port, pids)
        assert all(spread[p] for p in pids), f"the connections did not spread: {spread}"

        accounts = httpx.get(
            f"{url}/v1/positions",
            params={"protocol": "aave_v3", "min_debt_usd": "1"},
            timeout=60,
        ).json()
        target = max(accounts["positions"], key=weth_share)
        share = weth_share(target)
        assert share > 0.5, "a borrower should post mostly WETH"
        level = target["health_factor_float"] * (1 + SHOCK / 100 * share / 2)

        # The rule is created through process 1, which does not evaluate rules.
        hook_port = free_port()
        receiver = Receiver(hook_port, refuse=0).start()
        conn = connection_to(port, pids_by_index[1], pids)
        rule = post_json(
            conn,
            "/v1/alerts/rules",
            {
                "name": "health factor",
                "kind": "health_factor_below",
                "filter": {"protocol": "aave_v3", "min_debt_usd": "1"},
                "threshold": level,
                "hysteresis": 0.05,
                "delivery": {
                    "webhook_url": f"http://127.0.0.1:{hook_port}/hook",
                    "webhook_secret": SECRET,
                },
            },
        )
        conn.close()
        # Every process knows the rule (a listing through each of them).
        for pid in pids:
            conn = connection_to(port, pid, pids)
            conn.request("GET", "/v1/alerts/rules")
            listed = json.loads(conn.getresponse().read())["rules"]
            conn.close()
            assert rule["id"] in {r["id"] for r in listed}, f"process {pid} lacks the rule"

        def alerts() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = httpx.get(
                f"{url}/v1/alerts", params={"rule_id": rule["id"], "limit": 1000}, timeout=30
            ).json()["alerts"]
            return found

        shock_block = lending.shock("WETH", SHOCK)
        assert shock_block is not None
        devnet.simulator.step()
        head = index_head()
        wait_until(
            lambda: any(a["subject_id"] == target["id"] for a in alerts()),
            "the target's alert",
        )

        def delivered() -> bool:
            return all(
                any(
                    d["channel"] == "webhook" and d["status"] == "delivered"
                    for d in a["deliveries"]
                )
                for a in alerts()
            )

        wait_until(delivered, "webhook deliveries")
        last = stream_last(nats_url)
        wait_until(
            lambda: all(c.last_id >= last for c in clients),
            f"every client at stream sequence {last}",
        )
        fired = alerts()
        ids = {a["id"] for a in fired}
        wait_until(
            lambda: all(
                ids <= {d["id"] for _, kind, d in c.events if kind == "alert"} for c in clients
            ),
            "the alerts on every client's stream",
        )
        time.sleep(2.0)  # a second firing or delivery, if there were one, would land by now
        fired = alerts()
    finally:
        for client in clients:
            client.close()
        if receiver is not None:
            receiver.stop()

    # Fired once: one alert for the target's one crossing, at the shock's block.
    hits = [a for a in fired if a["subject_id"] == target["id"]]
    assert [a["block_number"] for a in hits] == [shock_block]
    subjects = Counter((a["subject_id"], a["block_number"]) for a in fired)
    assert max(subjects.values()) == 1, f"an alert fired twice: {subjects}"
    assert {a["id"] for a in fired} == ids, "alerts were still firing"

    # Delivered once each, signed.
    assert receiver.signed_counts() == Counter({a["id"]: 1 for a in fired})

    # Every client, on either process: exactly the stream's events, in order, and each alert
    # once.
    first = min(c.hello["last_id"] for c in clients if c.hello) + 1
    truth = {seq: (seq, kind, data) for seq, kind, data in stream_events(nats_url, first, last)}
    assert any(kind == "account" for _, kind, _ in truth.values()), "no account event streamed"
    for client in clients:
        assert client.ended is None, client.ended
        assert not client.others, client.others
        assert client.hello is not None
        streamed = [e for e in client.events if e[1] != "alert" and e[0] <= last]
        start = client.hello["last_id"] + 1
        assert without_confirmed(streamed) == [truth[s] for s in range(start, last + 1)]
        alert_ids = [d["id"] for _, kind, d in client.events if kind == "alert"]
        assert sorted(alert_ids) == sorted(set(alert_ids)), "an alert reached a client twice"
        assert set(alert_ids) == ids
    assert head >= shock_block
