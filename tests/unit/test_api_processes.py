"""`defimon api --processes N`: the command refuses what cannot work, and the processes' sockets
share one port."""

from __future__ import annotations

import socket

import pytest

from defimon.api_processes import reuse_port_socket
from defimon.cli import main


def test_several_processes_without_nats_are_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DEFIMON_NATS_URL", raising=False)
    code = main(["api", "--chain", "ethereum", "--processes", "2"])
    assert code == 2
    error = capsys.readouterr().err
    assert "--processes 2 needs NATS" in error
    assert "in-process bus" in error and "never the others' clients" in error


def test_zero_processes_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEFIMON_NATS_URL", "nats://127.0.0.1:1")
    assert main(["api", "--chain", "ethereum", "--processes", "0"]) == 2
    assert "--processes 0: at least 1" in capsys.readouterr().err


def test_processes_listen_on_one_port_and_the_kernel_hands_each_some_connections() -> None:
    holder = reuse_port_socket("127.0.0.1", 0, listen=False)  # the launcher's: no connections
    port = holder.getsockname()[1]
    listeners = [reuse_port_socket("127.0.0.1", port) for _ in range(2)]
    clients = []
    try:
        for listener in listeners:
            listener.settimeout(0.0)
        for _ in range(64):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        accepted = []
        for listener in listeners:
            count = 0
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
            accepted.append(count)
        assert sum(accepted) == 64, accepted  # none went to the bound, not listening holder
        assert min(accepted) > 0, f"one process got every connection: {accepted}"
    finally:
        for sock in [*clients, *listeners, holder]:
            sock.close()


def test_a_port_taken_by_a_program_that_does_not_share_it_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = socket.create_server(("127.0.0.1", 0))  # no SO_REUSEPORT
    port = taken.getsockname()[1]
    monkeypatch.setenv("DEFIMON_NATS_URL", "nats://127.0.0.1:1")
    monkeypatch.setenv("DEFIMON_CLICKHOUSE_URL", "http://127.0.0.1:1")
    try:
        args = ["api", "--chain", "ethereum", "--processes", "2", "--port", str(port)]
        assert main(args) == 2
    finally:
        taken.close()
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
