"""Record a node's JSON-RPC answers once, then replay them from a cheap local server.

On a 2-core machine the devnet's anvil takes one core while a backfill reads it, so a figure of
1 process against 2 measures the node as much as defimon. A recording takes the node out of the
race: every call the flow makes during one backfill is kept, and a replay server answers the
same calls from memory, in a process of its own, so `defimon run`, `defimon flow` and the
benchmarks' flows backfill against it unchanged (the chain config's RPC URL points at it).

- **record**: a proxy in front of the node. Each request is forwarded as it is, and each call
  of it (a batch split into its calls, answers matched by id) is kept keyed by (method,
  params), JSON-RPC ids ignored; a call asked again keeps the newest answer (the node's head at
  the end of the run). The file is gzip JSON lines, one per distinct call:
  `{"method": ..., "params": ..., "result": ...}` (or `"error"`).
- **serve**: answers each call from the recording, with the request's own id; every answer is
  serialised once at load, so a request costs its parse and a dictionary look-up. A call that
  is not in the recording gets a JSON-RPC error naming it (and is counted), so a run that
  diverges from the recorded one fails loudly instead of reading something else.
  `replay_stats` answers how many calls were answered and which were missed.

The server is the standard library's threading HTTP/1.1 server: a backfill makes a few hundred
to a few thousand requests (batches and ranges of logs), so its per-request cost (~0.1 ms of
header parsing) is far below the flow's; what it costs in CPU is measured where it is used
(`bench.backfill_workers` reports the server process's CPU seconds beside each replayed run).

    python -m devnet.replay record --upstream http://127.0.0.1:8545 --out rec.jsonl.gz --port 8600
    python -m devnet.replay serve rec.jsonl.gz --port 8600
"""

from __future__ import annotations

import argparse
import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson

from devnet.anvil import free_port

STATS_METHOD = "replay_stats"
MISSED_KEPT = 20  # missed calls named in replay_stats (the count is exact)
NOT_RECORDED = -32099  # a code of the server-error range no node uses; not retried by the flow


# Pure parts: keys and the split of an exchange into calls ------------------------------------


def call_key(method: str, params: Any) -> bytes:
    """What identifies a call whatever its id: the method and its params (keys sorted, so two
    processes building the same filter in another key order still match)."""
    return orjson.dumps([method, params if params is not None else []], option=orjson.OPT_SORT_KEYS)


def split_exchange(request: Any, response: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """The (method, params, answer) of every call of one request and its response; a batch is
    split into its calls and each answer found by id. `answer` holds `result` or `error`.
    Calls without an answer (a node that failed the whole batch) are left out: the replay
    then misses them, loudly, rather than serve an answer the node never gave."""
    calls = request if isinstance(request, list) else [request]
    answers = response if isinstance(response, list) else [response]
    by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
    out: list[tuple[str, Any, dict[str, Any]]] = []
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            continue
        answer = by_id.get(call.get("id"))
        if answer is None and len(calls) == 1 and len(answers) == 1:
            answer = by_id.get(None)  # an error the node could not attach to the request
        if answer is None:
            continue
        if "result" in answer:
            out.append((call["method"], call.get("params") or [], {"result": answer["result"]}))
        elif "error" in answer:
            out.append((call["method"], call.get("params") or [], {"error": answer["error"]}))
    return out


def _envelope(request_id: Any, tail: bytes) -> bytes:
    return b'{"jsonrpc":"2.0","id":' + orjson.dumps(request_id) + tail


class Recording:
    """The answers of a recording, each serialised once (`,"result":...}` after the id)."""

    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self._answers = answers
        self._lock = threading.Lock()
        self.answered = 0
        self.missed = 0
        self.missed_calls: list[str] = []

    def __len__(self) -> int:
        return len(self._answers)

    @classmethod
    def from_lines(cls, lines: Iterable[bytes]) -> Recording:
        answers: dict[bytes, bytes] = {}
        for line in lines:
            if not line.strip():
                continue
            item = orjson.loads(line)
            key = call_key(item["method"], item["params"])
            if "error" in item:
                answers[key] = b',"error":' + orjson.dumps(item["error"]) + b"}"
            else:
                answers[key] = b',"result":' + orjson.dumps(item["result"]) + b"}"
        return cls(answers)

    @classmethod
    def load(cls, path: Path) -> Recording:
        with gzip.open(path, "rb") as lines:
            return cls.from_lines(lines)

    def answer_one(self, call: Any) -> bytes:
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return _envelope(None, b',"error":{"code":-32600,"message":"invalid request"}}')
        request_id, method = call.get("id"), call["method"]
        if method == STATS_METHOD:
            with self._lock:
                stats = {
                    "calls": len(self._answers),
                    "answered": self.answered,
                    "missed": self.missed,
                    "missed_calls": list(self.missed_calls),
                }
            return _envelope(request_id, b',"result":' + orjson.dumps(stats) + b"}")
        key = call_key(method, call.get("params"))
        tail = self._answers.get(key)
        if tail is not None:
            with self._lock:
                self.answered += 1
            return _envelope(request_id, tail)
        named = key.decode()[:300]
        with self._lock:
            self.missed += 1
            if len(self.missed_calls) < MISSED_KEPT:
                self.missed_calls.append(named)
        print(f"replay: not in the recording: {named}", file=sys.stderr, flush=True)
        error = {"code": NOT_RECORDED, "message": f"replay: not in the recording: {named}"}
        return _envelope(request_id, b',"error":' + orjson.dumps(error) + b"}")

    def answer(self, body: bytes) -> bytes:
        """The response body for a request body (one call or a batch)."""
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _envelope(None, b',"error":{"code":-32700,"message":"parse error"}}')
        if isinstance(request, list):
            return b"[" + b",".join(self.answer_one(c) for c in request) + b"]"
        return self.answer_one(request)


class Recorder:
    """The calls seen through the recording proxy, newest answer per call."""

    def __init__(self) -> None:
        self._lines: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, request: Any, response: Any) -> None:
        for method, params, answer in split_exchange(request, response):
            line = orjson.dumps({"method": method, "params": params, **answer})
            with self._lock:
                self._lines[call_key(method, params)] = line

    def lines(self) -> list[bytes]:
        with self._lock:
            return list(self._lines.values())

    def save(self, path: Path) -> int:
        """Write the recording (gzip JSON lines); the number of calls written."""
        lines = self.lines()
        with gzip.open(path, "wb", compresslevel=3) as out:
            for line in lines:
                out.write(line + b"\n")
        return len(lines)


# The HTTP edge -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the flow's client holds its connections
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        status, answer = self.server.respond(body)
        # Head and body in one write, without Nagle: written apart, the body waited for the
        # client's delayed ACK of the head (~40 ms a request: the replayed backfill ran at half
        # the live one's speed).
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(answer)}\r\n\r\n"
        )
        self.wfile.write(head.encode() + answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would cost more than the answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def respond(self, body: bytes) -> tuple[int, bytes]:
        raise NotImplementedError


class ReplayServer(_Server):
    def __init__(self, recording: Recording, port: int) -> None:
        self.recording = recording
        super().__init__(("127.0.0.1", port), _Handler)

    def respond(self, body: bytes) -> tuple[int, bytes]:
        return 200, self.recording.answer(body)


class RecordingProxy(_Server):
    """Forwards every request to `upstream` and keeps its calls' answers in `recorder`."""

    def __init__(self, upstream: str, port: int, recorder: Recorder | None = None) -> None:
        self.upstream = upstream
        self.recorder = recorder or Recorder()
        self._http = httpx.Client(timeout=120.0, headers={"content-type": "application/json"})
        super().__init__(("127.0.0.1", port), _Handler)

    def respond(self, body: bytes) -> tuple[int, bytes]:
        try:
            response = self._http.post(self.upstream, content=body)
        except httpx.HTTPError as exc:
            return 502, orjson.dumps({"error": f"upstream: {type(exc).__name__}: {exc}"})
        if response.status_code == 200:
            try:
                self.recorder.add(orjson.loads(body), orjson.loads(response.content))
            except orjson.JSONDecodeError:
                pass  # not JSON-RPC: forwarded, not kept
        return response.status_code, response.content

    def server_close(self) -> None:
        super().server_close()
        self._http.close()


class Proxy:
    """A recording proxy served from a thread of this process; use as a context manager.
    Recording is not measured, so its cost may land anywhere."""

    def __init__(self, upstream: str) -> None:
        self.server = RecordingProxy(upstream, free_port())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="replay-recorder", daemon=True
        )

    @property
    def recorder(self) -> Recorder:
        return self.server.recorder

    def __enter__(self) -> Proxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


class Replay:
    """`python -m devnet.replay serve` in a process of its own (so its cost is not the flow's
    interpreter's); use as a context manager. `cpu_seconds` reads its CPU time so far."""

    def __init__(self, recording: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._command = [
            sys.executable,
            "-m",
            "devnet.replay",
            "serve",
            str(recording),
            f"--port={self.port}",
        ]
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Replay:
        self._process = subprocess.Popen(self._command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120  # a large recording takes seconds to load
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the replay server exited with {self._process.returncode}")
            try:
                self.stats()
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise TimeoutError(f"the replay server did not answer on {self.url}") from None
                time.sleep(0.05)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stats(self) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": 1, "method": STATS_METHOD, "params": []}
        stats: dict[str, Any] = httpx.post(self.url, json=body, timeout=2.0).json()["result"]
        return stats

    def cpu_seconds(self) -> float:
        """User and system CPU time of the server process so far (Linux /proc)."""
        assert self._process is not None
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Command line ------------------------------------------------------------------------------


def _serve_until_signalled(server: _Server) -> None:
    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devnet.replay", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record", help="proxy to a node, keep every call's answer")
    record.add_argument("--upstream", required=True, help="the node's HTTP JSON-RPC URL")
    record.add_argument("--out", required=True, type=Path, help="recording file (.jsonl.gz)")
    record.add_argument("--port", type=int, default=8600)
    serve = commands.add_parser("serve", help="answer JSON-RPC from a recording")
    serve.add_argument("recording", type=Path)
    serve.add_argument("--port", type=int, default=8600)
    args = parser.parse_args(argv)
    if args.command == "record":
        proxy = RecordingProxy(args.upstream, args.port)
        print(f"recording {args.upstream} on http://127.0.0.1:{args.port}", file=sys.stderr)
        _serve_until_signalled(proxy)
        written = proxy.recorder.save(args.out)
        print(f"recorded {written} calls to {args.out}", file=sys.stderr)
    else:
        recording = Recording.load(args.recording)
        server = ReplayServer(recording, args.port)
        print(f"replaying {len(recording)} calls on http://127.0.0.1:{args.port}", file=sys.stderr)
        _serve_until_signalled(server)


if __name__ == "__main__":
    main()
