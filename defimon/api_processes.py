"""`defimon api --processes N`: N API processes behind one port.

Each process listens on a socket of its own bound to the same address with SO_REUSEPORT, so the
kernel spreads new connections over the processes (by connection hash, evenly) and none accepts
for another. Each follows the NATS bus as a lone `defimon api` does, so a stream client gets the
same events, with the same ids, whichever process serves it. Process 0 evaluates the alert
rules; the others tell it when rules change and stream the alerts it fires (ports/bus.py Peers,
api/alerts/engine.py).

The launcher holds the address (bound, not listening, so it gets no connections): the port is
known before the processes start (port 0 picks a free one) and another program cannot take it
between them. It logs `api.ready` once every process serves, passes SIGINT/SIGTERM on, and
stops them all when one exits (a supervisor restarts the whole set, which is cheap: an API
process rebuilds what it holds from the store and the bus).
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import socket
import sys
import threading
from multiprocessing.connection import wait
from multiprocessing.synchronize import Event

import structlog

from defimon.logs import configure
from ports.settings import Settings
from schemas.errors import ConfigError, DefimonError

log = structlog.get_logger("defimon.api")
BACKLOG = 2048  # uvicorn's default; a burst of thousands of stream clients queues here


def reuse_port_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket on (host, port) that other processes may bind too (SO_REUSEPORT)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def launch(args: argparse.Namespace, settings: Settings, host: str, count: int) -> int:
    """Run `count` API processes on (host, settings.port) until a signal or one of them exits."""
    try:
        holder = reuse_port_socket(host, settings.port, listen=False)
    except OSError as exc:  # taken by a program that does not share it, or no such address
        raise ConfigError(f"cannot listen on {host}:{settings.port}: {exc}") from None
    port = holder.getsockname()[1]
    child_settings = settings.model_copy(update={"host": host, "port": port})
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited loop
    ready = [context.Event() for _ in range(count)]
    processes = [
        context.Process(
            target=_process,
            args=(args, child_settings, index, count, ready[index]),
            name=f"defimon-api-{index}",
        )
        for index in range(count)
    ]
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        for process in processes:
            process.start()
        announced = False
        while not stop.is_set():
            ended = wait([p.sentinel for p in processes], timeout=0.2)
            if ended:
                gone = [p for p in processes if not p.is_alive()]
                code = next((p.exitcode for p in gone if p.exitcode), 0) or 1
                log.error(
                    "api.process_exited",
                    processes=[p.name for p in gone],
                    codes=[p.exitcode for p in gone],
                    reason="stopping the others; restart the set",
                )
                break
            if not announced and all(e.is_set() for e in ready):
                announced = True
                log.info("api.ready", processes=count, url=f"http://{host}:{port}/")
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: uvicorn stops gracefully
        for process in processes:
            process.join(15)
            if process.is_alive():
                process.kill()
                process.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        holder.close()
    if stop.is_set():
        log.info("run.stopped", processes=count)
    return code


def _process(
    args: argparse.Namespace, settings: Settings, index: int, count: int, ready: Event
) -> None:
    """One API process (in a spawned interpreter)."""
    from defimon.cli import _exit_on_sigterm, api_process

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    configure(settings.log_level, settings.log_format)
    try:
        api_process(args, settings, index=index, count=count, on_ready=ready.set)
    except KeyboardInterrupt:
        pass
    except DefimonError as exc:  # said as the one-process command says it
        print(f"defimon: {exc}", file=sys.stderr)
        sys.exit(2)
