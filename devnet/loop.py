"""The simulators' clock: one action every `interval` seconds until told to stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from devnet.rpc import RpcError, RpcTransportError

log = logging.getLogger("defimon.devnet")


def run_every(
    action: Callable[[], object], stop: threading.Event, interval: float, what: str
) -> None:
    """Call `action` every `interval` s until `stop` is set. A failed RPC is logged and the
    loop goes on; the node going away ends it only if we are shutting down."""
    done = 0
    while not stop.is_set():
        try:
            action()
            done += 1
        except RpcTransportError:
            if stop.is_set():
                break  # the node went away because we are shutting down
            raise
        except RpcError as exc:
            log.warning("%s failed: %s", what, exc)
        stop.wait(interval)
    log.info("%s stopped after %d rounds", what, done)
