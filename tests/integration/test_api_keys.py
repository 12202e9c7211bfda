"""API keys over real HTTP: created by the CLI, checked per scope, limited per key, revoked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import Devnet
from tests.support import block_number, live_server


def keys_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "defimon.cli", "keys", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=False,
    )


def test_keys_gate_every_route_by_scope_and_rate(devnet: Devnet, tmp_path: Path) -> None:
    devnet.simulator.step()
    chain_id = devnet.deployment.chain_id
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        # No key configured: open (the server listens on loopback only).
        assert server.get("/v1/positions").status_code == 200

        made = keys_cli(tmp_path, "create", "--scopes", "read", "--rate-per-minute", "2")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        assert token.startswith("dmk_") and "only time" in made.stderr
        assert token not in (tmp_path / "api_keys.json").read_text()
        listed = keys_cli(tmp_path, "list")
        assert "read" in listed.stdout and token not in listed.stdout

        missing = server.get("/v1/positions")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert server.get("/v1/positions", api_key="dmk_nope").status_code == 401
        assert server.get("/healthz").status_code == 200, "operations stay open"

        bearer = {"Authorization": f"Bearer {token}"}
        sql = httpx.post(f"{server.url}/v1/sql", json={"sql": "SELECT 1"}, headers=bearer)
        assert sql.status_code == 403 and "'sql' scope" in sql.json()["detail"]
        # A burst of the per-minute rate goes through; then 429 with Retry-After. (Counted
        # until the first refusal, so a slow machine's refill cannot make this flaky.)
        responses = []
        for _ in range(12):
            responses.append(httpx.get(f"{server.url}/v1/positions", headers={"X-API-Key": token}))
            if responses[-1].status_code != 200:
                break
        assert len(responses) >= 3 and all(r.status_code == 200 for r in responses[:2])
        limited = responses[-1]
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1

        key_id = listed.stdout.split()[0]
        assert keys_cli(tmp_path, "revoke", key_id).returncode == 0
        assert httpx.get(f"{server.url}/v1/positions", headers=bearer).status_code == 401
