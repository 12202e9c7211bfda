"""The flow process's small HTTP port (`defimon flow --health-port`): /healthz and /metrics.

`defimon flow` has no API; this is what an orchestrator probes and Prometheus scrapes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ports.metrics import METRICS
from ports.status import FlowStatus


class _Handler(BaseHTTPRequestHandler):
    server: FlowHealthServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/healthz":
            status = self.server.status
            ok = self.server.alive() and status.error is None
            body = orjson.dumps(
                {
                    "status": "ok" if ok else "failed",
                    "flow_running": status.running,
                    "error": status.error,
                    "chains": [
                        {
                            "chain_id": c.chain_id,
                            "head": c.head,
                            "processed": c.processed,
                            "lag_blocks": c.lag,
                            "live": c.live,
                        }
                        for c in status.chains()
                    ],
                }
            )
            self._send(200 if ok else 503, body, "application/json")
        elif self.path == "/metrics":
            self.server.status.export()
            self._send(200, generate_latest(METRICS.registry), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b'{"detail": "Not Found"}', "application/json")

    def _send(self, code: int, body: bytes, media_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FlowHealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], status: FlowStatus, alive: Callable[[], bool]
    ) -> None:
        super().__init__(address, _Handler)
        self.status = status
        self.alive = alive

    def start(self) -> FlowHealthServer:
        threading.Thread(target=self.serve_forever, name="defimon-health", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
