"""Start and stop a local anvil node (the binary from the npm package, no Foundry install)."""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

log = logging.getLogger("defimon.devnet")

NODE_MODULES = Path(__file__).parent / "node_modules"
_ANVIL_BINARY = NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
START_TIMEOUT = 10.0
STOP_GRACE = 3.0


def anvil_binary() -> Path:
    """The anvil executable: $DEFIMON_ANVIL, else npm `@foundry-rs/anvil-linux-amd64`'s."""
    override = os.environ.get("DEFIMON_ANVIL")
    binary = Path(override) if override else _ANVIL_BINARY
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise FileNotFoundError(
            f"anvil not found at {binary}; install it with `make deps` "
            "(or `npm ci --prefix devnet`), or on another platform point DEFIMON_ANVIL at an "
            "anvil binary (npm @foundry-rs/anvil-<platform>)"
        )
    return binary


PR_SET_PDEATHSIG = 1
# Resolved here, in the parent: between fork and exec the child may only make the call
# (loading a library there could deadlock on a lock another thread held at fork time).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM when the parent goes, even by SIGKILL.

    (Strictly, when the thread that started it ends: start nodes from long-lived threads.)
    """
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Anvil:
    """An anvil process bound to 127.0.0.1, in its own process group; use as a context manager."""

    def __init__(
        self,
        port: int | None = None,
        chain_id: int = 31337,
        accounts: int = 20,
        block_time: float | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._port = port
        self._chain_id = chain_id
        self._accounts = accounts
        self._block_time = block_time
        self._extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._home: str | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("anvil has not been started, so it has no port yet")
        return self._port

    @property
    def chain_id(self) -> int:
        return self._chain_id

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        args = [
            str(anvil_binary()),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--chain-id", str(self._chain_id),
            "--accounts", str(self._accounts),
            "--balance", "1000000",
            "--code-size-limit", "100000",
            "--silent",
        ]  # fmt: skip
        if self._block_time is not None:
            args += ["--block-time", f"{self._block_time:g}"]
        return args + list(self._extra_args)

    def start(self) -> Anvil:
        """Launch anvil and wait until it answers `eth_chainId`."""
        if self._process is not None:
            return self
        if self._port is None:
            self._port = free_port()
        command = self.command()
        # a file, not a pipe: nobody drains a pipe while the node runs, and a full one blocks it
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        # anvil writes historical states it evicts from memory under $HOME/.foundry/anvil/tmp
        # and removes them only on a clean exit: give each node a home of its own, removed by
        # stop(), so killed nodes never fill the disk (a test run starts dozens).
        self._home = tempfile.mkdtemp(prefix="defimon-anvil-")
        # own session = own process group, so stop() kills exactly this node and nothing else
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,
            env={**os.environ, "HOME": self._home},
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl call, resolved above
        )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info(
            "anvil pid %d listening on %s (chain id %d)",
            self._process.pid,
            self.rpc_url,
            self._chain_id,
        )
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        with httpx.Client(timeout=1.0) as http:
            while True:
                if self._process.poll() is not None:
                    stderr = ""
                    if self._stderr is not None:
                        self._stderr.seek(0)
                        stderr = self._stderr.read().decode(errors="replace")
                    code = self._process.returncode
                    raise RuntimeError(
                        f"anvil exited with code {code} before answering: {stderr.strip()[:500]}"
                    )
                try:
                    reply = http.post(self.rpc_url, json=request).json()
                    if int(reply["result"], 16) == self._chain_id:
                        return
                except (httpx.HTTPError, ValueError, KeyError):
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"anvil did not answer eth_chainId on {self.rpc_url} "
                        f"within {START_TIMEOUT:g} s"
                    )
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after a grace period; safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None
        log.info("anvil pid %d stopped", process.pid)

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the group id is the pid because of start_new_session
    except ProcessLookupError:
        pass
