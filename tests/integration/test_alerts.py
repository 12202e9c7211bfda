"""Alerts on the real devnet: rules fire live as prices move, reach the stream, a webhook that
was down for a while and a real SMTP server, and a backtest over the store fires where the
live engine did. A rule evaluates exactly the subjects /v1/positions lists for its filter.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiosmtpd.controller import Controller

from devnet.anvil import free_port
from devnet.lending import LendingSimulator
from tests.conftest import Devnet
from tests.support import LiveServer, block_number, live_server, stream_reader

SECRET = "test-secret-0123456789"
SHOCK = -35.0


class Receiver:
    """A webhook receiver: refuses the first `refuse` requests with 503, then accepts."""

    def __init__(self, port: int, refuse: int) -> None:
        self.accepted: list[tuple[bytes, str]] = []
        self.refused = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.refused < refuse:
                    outer.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.accepted.append((body, self.headers["X-Defimon-Signature"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def signed_counts(self) -> Counter[str]:
        """How many times each alert (by id) was accepted; every body signed with SECRET."""
        counts: Counter[str] = Counter()
        for body, sig in self.accepted:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(sig, expected)
            counts[orjson.loads(body)["id"]] += 1
        return counts

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def weth_share(account: dict[str, Any]) -> float:
    """How much of the account's collateral is WETH (what the shock moves)."""
    collateral = sum(r["supplied_usd"] for r in account["reserves"] if r["collateral"])
    weth = sum(
        r["supplied_usd"] for r in account["reserves"] if r["collateral"] and r["symbol"] == "WETH"
    )
    weth_debt = sum(r["debt_usd"] for r in account["reserves"] if r["symbol"] == "WETH")
    return weth / collateral if collateral and not weth_debt else 0.0


def create(server: LiveServer, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/alerts/rules", json=body, timeout=60)
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


def alerts_of(server: LiveServer, rule_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = server.get("/v1/alerts", rule_id=rule_id, limit=1000).json()[
        "alerts"
    ]
    return found


def fires(alerts: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return sorted((a["subject_id"], a["block_number"]) for a in alerts)


def test_alerts_fire_live_reach_stream_webhook_and_email_and_backtest_agrees(
    devnet: Devnet, tmp_path: Path
) -> None:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=3)
    for _ in range(2):
        devnet.simulator.step()
    lending.tick()
    lending.tick()
    chain_id = devnet.deployment.chain_id
    hook_port = free_port()  # nothing listens yet: connection refused
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    receiver: Receiver | None = None
    settings = {
        "alert_retry_base_seconds": 0.2,
        "alert_retry_cap_seconds": 1.0,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
    }
    try:
        with live_server(tmp_path, [devnet.endpoint()], **settings) as server:
            server.wait_processed(chain_id, block_number(devnet.rpc_url))
            accounts = server.get("/v1/positions", protocol="aave_v3", min_debt_usd="1").json()
            borrowers = accounts["positions"]
            assert borrowers, "the scenario should have borrowers"
            target = max(borrowers, key=weth_share)
            share = weth_share(target)
            assert share > 0.5, "a borrower should post mostly WETH"
            # Midway between its health factor now and after the shock.
            level = target["health_factor_float"] * (1 + SHOCK / 100 * share / 2)
            created_at = accounts["as_of"]["block_number"]

            hf_filter = {"protocol": "aave_v3", "min_debt_usd": "1"}
            hf_rule = create(
                server,
                {
                    "name": "health factor",
                    "kind": "health_factor_below",
                    "filter": hf_filter,
                    "threshold": level,
                    "hysteresis": 0.05,
                    "delivery": {
                        "webhook_url": f"http://127.0.0.1:{hook_port}/hook",
                        "webhook_secret": SECRET,
                        "email": "risk@example.test",
                    },
                },
            )
            liq_rule = create(
                server,
                {"name": "liquidations", "kind": "liquidation", "filter": "protocol=aave_v3"},
            )
            # The target's wallet against an all-in-one-token target: drifted from the start.
            weth = next(r["asset"] for r in target["reserves"] if r["symbol"] == "WETH")
            drift_rule = create(
                server,
                {
                    "name": "drift",
                    "kind": "allocation_drift",
                    "filter": {"owner": target["owner"]},
                    "threshold": 0.01,
                    "target_weights": {weth: 1},
                },
            )
            lp = server.get("/v1/positions", protocol="uniswap_v3", limit=1000).json()
            values = sorted(p["value_usd"] for p in lp["positions"] if p["value_usd"])
            # A level in the widest gap between values, so small moves do not cross it.
            gaps = [(b / a, (a + b) / 2) for a, b in itertools.pairwise(values)]
            lp_level = max(gaps)[1]
            lp_query = f"protocol=uniswap_v3&min_value_usd={lp_level}"
            lp_rule = create(
                server, {"name": "out of range", "kind": "out_of_range", "filter": lp_query}
            )
            # Out of range for a while: a second (block time) or more since it was seen out.
            lasting_rule = create(
                server,
                {
                    "name": "out of range a while",
                    "kind": "out_of_range",
                    "filter": "protocol=uniswap_v3",
                    "duration_seconds": 1,
                },
            )
            assert lasting_rule["duration_seconds"] == 1

            # Bad input is a 4xx with a message.
            bad = httpx.post(
                f"{server.url}/v1/alerts/rules",
                json={"name": "x", "kind": "health_factor_below", "filter": "min_value_usd=x"},
            )
            assert bad.status_code == 400 and "not a number" in bad.json()["detail"]
            bad = httpx.post(
                f"{server.url}/v1/alerts/rules",
                json={"name": "x", "kind": "value_change", "threshold": 0.1},
            )
            assert bad.status_code == 400 and "window_seconds" in bad.json()["detail"]
            assert server.get("/v1/alerts/rules/nope/subjects").status_code == 404
            listed = server.get("/v1/alerts/rules").json()["rules"]
            assert {r["id"] for r in listed} == {
                hf_rule["id"],
                liq_rule["id"],
                lp_rule["id"],
                drift_rule["id"],
                lasting_rule["id"],
            }
            assert all("webhook_secret" not in r["delivery"] for r in listed)

            streamed: list[dict[str, Any]] = []
            stop = threading.Event()
            stream_reader(f"{server.url}/v1/stream", ("alert",), streamed, stop)
            try:
                shock_block = lending.shock("WETH", SHOCK)
                liquidations = lending.liquidate_unhealthy()
                devnet.simulator.step()
                lending.step()
                head = block_number(devnet.rpc_url)
                server.wait_processed(chain_id, head)
                wait_for(
                    "the target's alert",
                    lambda: any(
                        a["subject_id"] == target["id"] for a in alerts_of(server, hf_rule["id"])
                    ),
                )
                time.sleep(1.0)  # the stream is a hop behind the engine
            finally:
                stop.set()
            assert shock_block is not None and liquidations, "the shock should liquidate"

            # Live: the target fired at the shock's block, with its block on the alert.
            hf_alerts = alerts_of(server, hf_rule["id"])
            (hit,) = [a for a in hf_alerts if a["subject_id"] == target["id"]]
            assert hit["block_number"] == shock_block
            assert hit["value"] < level
            assert hit["block_hash"] == hit["subject"]["block_hash"]

            # The stream carried every alert of the rules, with its block.
            liq_alerts = alerts_of(server, liq_rule["id"])
            assert {a["block_number"] for a in liq_alerts} == set(liquidations)
            live_ids = {
                a["id"]
                for a in hf_alerts
                + liq_alerts
                + alerts_of(server, lp_rule["id"])
                + alerts_of(server, lasting_rule["id"])
            }
            fired_after_reader = {a["id"] for a in streamed}
            assert (
                {a["id"] for a in hf_alerts if a["block_number"] >= shock_block}
                | {a["id"] for a in liq_alerts}
                <= fired_after_reader
                <= live_ids
            )
            for event in streamed:
                assert event["block_hash"] and event["block_number"] >= created_at

            # A rule evaluates exactly what /v1/positions lists for its filter.
            for rule, params in (
                (hf_rule, hf_filter),
                (lp_rule, {"protocol": "uniswap_v3", "min_value_usd": str(lp_level)}),
            ):
                scope = server.get(f"/v1/alerts/rules/{rule['id']}/subjects").json()
                page = server.get("/v1/positions", **params, limit=1000).json()
                assert scope["subjects"] == sorted(p["id"] for p in page["positions"])
                assert scope["subjects"], "the filter should select something"

            # Backtest over the same blocks fires where the live engine did.
            drift_alerts = alerts_of(server, drift_rule["id"])
            assert [a["subject_id"] for a in drift_alerts] == [f"{chain_id}:{target['owner']}"]
            lasting_alerts = alerts_of(server, lasting_rule["id"])
            assert lasting_alerts, "no position stayed out of range a second"
            assert len({a["subject_id"] for a in lasting_alerts}) == len(lasting_alerts), (
                "a position that stayed out fired twice"
            )
            for rule, live in (
                (hf_rule, hf_alerts),
                (liq_rule, liq_alerts),
                (drift_rule, drift_alerts),
                (lasting_rule, lasting_alerts),
            ):
                replay = httpx.post(
                    f"{server.url}/v1/alerts/rules/{rule['id']}/backtest",
                    params={"from": str(created_at), "to": str(head)},
                    timeout=300,
                ).json()
                assert replay["blocks_evaluated"] >= 1
                assert fires(replay["fired"]) == fires(live), rule["kind"]
            assert (
                httpx.post(
                    f"{server.url}/v1/alerts/rules/{hf_rule['id']}/backtest",
                    params={"from": str(head), "to": str(created_at)},
                ).status_code
                == 400
            )

            # The webhook receiver was down: some attempts failed; it comes back refusing twice
            # more, then gets every alert exactly once, signed.
            wait_for(
                "failed webhook attempts",
                lambda: any(
                    d["channel"] == "webhook" and d["status"] == "failed"
                    for a in alerts_of(server, hf_rule["id"])
                    for d in a["deliveries"]
                ),
            )
            receiver = Receiver(hook_port, refuse=2).start()

            def delivered(channel: str) -> bool:
                return all(
                    any(
                        d["channel"] == channel and d["status"] == "delivered"
                        for d in a["deliveries"]
                    )
                    for a in alerts_of(server, hf_rule["id"])
                )

            wait_for("webhook deliveries", lambda: delivered("webhook"))
            wait_for("email deliveries", lambda: delivered("email"))
            hf_alerts = alerts_of(server, hf_rule["id"])
            assert receiver.signed_counts() == Counter({a["id"]: 1 for a in hf_alerts})
            assert receiver.refused == 2
            log = [d for a in hf_alerts for d in a["deliveries"] if d["channel"] == "webhook"]
            assert any(d["status"] == "failed" and d["code"] == 503 for d in log)
            assert any(d["status"] == "failed" and d["code"] == 0 for d in log)  # refused

            # Each alert reached the SMTP server as an email.
            mails = [message_from_bytes(m) for m in mailbox.messages]
            assert sorted(m["X-Defimon-Alert-Id"] for m in mails) == sorted(
                a["id"] for a in hf_alerts
            )
            for mail in mails:
                assert mail["To"] == "risk@example.test"
                assert mail["Subject"].startswith("[defimon] health factor: ")

            # DELETE stops the rule; its alerts stay.
            gone = httpx.delete(f"{server.url}/v1/alerts/rules/{lp_rule['id']}")
            assert gone.status_code == 204
            assert httpx.delete(f"{server.url}/v1/alerts/rules/{lp_rule['id']}").status_code == 404
            rules_now = server.get("/v1/alerts/rules").json()["rules"]
            assert lp_rule["id"] not in {r["id"] for r in rules_now}
    finally:
        smtp.stop()
        if receiver is not None:
            receiver.stop()


def test_deliveries_and_rule_states_survive_a_restart(devnet: Devnet, tmp_path: Path) -> None:
    """Alerts fired while the receiver is down reach it after the API restarts, once each;
    conditions that already fired do not fire again after the restart."""
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=3)
    lending.tick()
    chain_id = devnet.deployment.chain_id
    hook_port = free_port()
    settings = {"alert_retry_base_seconds": 0.2, "alert_retry_cap_seconds": 0.5}
    with live_server(tmp_path, [devnet.endpoint()], **settings) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        rule = create(
            server,
            {
                "name": "any debt",
                "kind": "health_factor_below",
                "filter": {"protocol": "aave_v3", "min_debt_usd": "1"},
                "threshold": 1e9,  # every borrower is below: all fire at once
                "delivery": {
                    "webhook_url": f"http://127.0.0.1:{hook_port}/",
                    "webhook_secret": SECRET,
                },
            },
        )
        wait_for(
            "failed attempts",
            # Alerts to one receiver go in order: the first is retried, the rest wait.
            lambda: any(
                d["status"] == "failed"
                for a in alerts_of(server, rule["id"])
                for d in a["deliveries"]
            ),
        )
        before = alerts_of(server, rule["id"])
        assert before, "borrowers should fire"
    receiver = Receiver(hook_port, refuse=0).start()
    try:
        with live_server(tmp_path, [devnet.endpoint()], **settings) as server:
            wait_for("resumed deliveries", lambda: len(receiver.accepted) >= len(before))
            lending.tick()  # borrowers change: still below, still disarmed
            server.wait_processed(chain_id, block_number(devnet.rpc_url))
            after = alerts_of(server, rule["id"])
            ids = Counter(orjson.loads(body)["id"] for body, _ in receiver.accepted)
            assert ids == Counter({a["id"]: 1 for a in before})
            new = {a["id"] for a in after} - {a["id"] for a in before}
            assert all(
                a["subject_id"] not in {b["subject_id"] for b in before}
                for a in after
                if a["id"] in new
            ), "a subject that fired must not fire again while still below"
            assert all(
                any(d["status"] == "delivered" for d in a["deliveries"])
                for a in after
                if a["id"] not in new
            )
    finally:
        receiver.stop()
