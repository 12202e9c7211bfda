"""`defimon run` as a separate process, the way an operator runs it: for tests that kill it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from devnet.anvil import free_port

REPO = Path(__file__).resolve().parent.parent


def defimon_command() -> list[str]:
    """The installed `defimon` script next to this Python, else the module."""
    script = Path(sys.executable).parent / "defimon"
    return [str(script)] if script.exists() else [sys.executable, "-m", "defimon.cli"]


class DefimonProcess:
    """One `defimon run` process; its JSON log lines go to `log_path`."""

    def __init__(
        self,
        chain_config: Path,
        rpc_url: str,
        data_dir: Path,
        log_path: Path,
        *,
        ws_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            *defimon_command(),
            "--log-format",
            "json",
            "run",
            "--chain-config",
            str(chain_config),
            "--rpc",
            rpc_url,
            "--data-dir",
            str(data_dir),
            "--port",
            str(self.port),
        ]
        if ws_url:
            command += ["--ws", ws_url]
        environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self._log = log_path.open("ab")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environment,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def events(self) -> list[dict[str, Any]]:
        """The structured log lines written so far (other lines are skipped)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by SIGKILL
        return out

    def logged(self, event: str) -> bool:
        return any(e.get("event") == event for e in self.events())

    def wait_logged(self, *events: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(self.logged(e) for e in events):
            if not self.alive():
                raise RuntimeError(f"defimon exited ({self.process.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"none of {events} logged: {self.tail()}")
            time.sleep(0.02)

    def chain(self) -> dict[str, Any] | None:
        """The first chain's status from /v1/meta, or None while the API is not up."""
        try:
            meta = httpx.get(self.url + "/v1/meta", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return None
        chains: list[dict[str, Any]] = meta.get("chains") or []
        return chains[0] if chains else None

    def wait_processed(self, block: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            chain = self.chain()
            if chain is not None and (chain.get("processed") or -1) >= block:
                return
            if not self.alive():
                raise RuntimeError(f"defimon exited ({self.process.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"block {block} not processed ({chain}): {self.tail()}")
            time.sleep(0.05)

    def wait_live(self, timeout: float = 120) -> None:
        """Until the flow has stored a live block (the backfill is processed, not just read)."""
        deadline = time.monotonic() + timeout
        while not (self.chain() or {}).get("live"):
            if not self.alive():
                raise RuntimeError(f"defimon exited ({self.process.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not live: {self.tail()}")
            time.sleep(0.05)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=30)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._log.close()

    def terminate(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        """Ask it to stop and wait; the exit code."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(30)
            self._log.close()

    def close(self) -> None:
        """Whatever the test did: no process left behind. A test that fails while waiting
        must not leave a flow running on the cores the tests after it share."""
        if self.alive():
            self.process.kill()
            self.process.wait(30)
        self._log.close()

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
