"""A fault-injecting JSON-RPC proxy: a real HTTP server and a real WebSocket server in front
of a node (anvil), for the provider-fault tests.

It forwards every request and, with a seeded RNG, answers a fraction of them with a fault a
real provider produces:

- `rate_limited`: HTTP 429 with `Retry-After` (alternately seconds and an HTTP date);
- `timeout`: no answer until after the client's timeout, then the socket closes;
- `drop`: the connection closes without an answer;
- `non_json`: a 200 whose body is an HTML error page;
- `truncated`: the node's answer cut in half;
- `wrong_id`: the node's answer with another request's id;
- `range_too_large` (eth_getLogs): Alchemy's refusal, with its "this block range should
  work: [0x.., 0x..]" hint;
- `bad_log` (eth_getLogs): the node's logs with one log missing fields;
- `batch_missing` (batches): the node's answers with one of them left out;
- `ws_drop` (WebSocket): the socket to the client closes abruptly while it follows heads.

Besides faults, it can answer as a provider with limits does (`limits`, every time, not at a
rate): refuse an `eth_getLogs` over a block span, an address count or a result count with that
provider's literal wording; answer `eth_call`s of given selectors at a numbered block as a
pruned node does ("missing trie node"); and add a fixed latency to every HTTP request.

The fault kind is the applicable one injected least so far (ties broken by the RNG), so every
kind shows up after a few dozen faults. `counts` says how many of each were injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from devnet.anvil import free_port

GENERAL = ("rate_limited", "timeout", "drop", "non_json", "truncated", "wrong_id")
GET_LOGS = ("range_too_large", "bad_log")
BATCH = ("batch_missing",)
HTTP_KINDS = GENERAL + GET_LOGS + BATCH
WS_KINDS = ("ws_drop",)
ALL_KINDS = HTTP_KINDS + WS_KINDS

ALCHEMY_RANGE = (
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range "
    "and no limit on the response size, or you can request any block range with a cap of 10K "
    "logs in the response. Based on your parameters, this block range should work: [{}, {}]"
)


@dataclass(frozen=True)
class ProviderLimits:
    """Refusals a provider makes every time (None: no such limit). The wordings are the
    providers' own: `{span}`, `{cap}` are filled in."""

    max_span: int | None = None
    span_refusal: tuple[int, str] = (-32602, "range {span} exceeds limit of {cap}")  # Infura
    max_addresses: int | None = None
    address_refusal: tuple[int, str] = (-32000, "Please, specify less number of addresses")
    max_results: int | None = None
    results_refusal: tuple[int, str] = (-32005, "query returned more than {cap} results")
    # eth_call of these selectors at a numbered block: a pruned node's answer (geth's words)
    pruned_selectors: frozenset[str] = frozenset()
    pruned_refusal: tuple[int, str] = (
        -32000,
        "missing trie node 9a1d1b3d3c9b26e1c7d3f06f8a1e6fbd5c0e0b9fb0e4d2f1e7a0c3b2a1f0e9d8 "
        "(path ) state 0x9a1d1b3d3c9b26e1c7d3f06f8a1e6fbd5c0e0b9fb0e4d2f1e7a0c3b2a1f0e9d8 is "
        "not available",
    )


class FaultProxy:
    def __init__(
        self,
        upstream_http: str,
        upstream_ws: str | None = None,
        *,
        fault_rate: float = 0.1,
        ws_drop_rate: float = 0.1,
        seed: int = 0,
        hang_seconds: float = 2.0,
        retry_after_seconds: int = 1,
        kinds: tuple[str, ...] = HTTP_KINDS,
        limits: ProviderLimits | None = None,
        latency: float = 0.0,
    ) -> None:
        self.upstream_http = upstream_http
        self.upstream_ws = upstream_ws
        self.fault_rate = fault_rate
        self.ws_drop_rate = ws_drop_rate
        self.hang_seconds = hang_seconds
        self.retry_after_seconds = retry_after_seconds
        self.rng = random.Random(seed)
        self.kinds = kinds
        self.counts: Counter[str] = Counter()
        self.limits = limits or ProviderLimits()
        self.latency = latency  # seconds added to every HTTP request
        # refusals made under `limits`: span, addresses, results, pruned
        self.refused: Counter[str] = Counter()
        # (kind, filter) of every eth_getLogs refused under `limits`
        self.refused_filters: list[tuple[str, dict[str, Any]]] = []
        self.most_addresses = 0  # the longest address list an eth_getLogs filter carried
        self.logs_served = 0  # logs answered to eth_getLogs under a result cap
        self.methods: Counter[str] = Counter()  # requests by method ("batch:<first>" for batches)
        # (monotonic time, fault kind or "" for a clean answer) of every HTTP request
        self.history: list[tuple[float, str]] = []
        self.requests = 0
        self.ws_connections = 0
        self.http_port = free_port()
        self.ws_port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._error: BaseException | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def missing_kinds(self, kinds: tuple[str, ...] = ALL_KINDS) -> list[str]:
        return [k for k in kinds if self.counts[k] == 0]

    # Lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"fault proxy did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._http = httpx.AsyncClient(timeout=60)
        http_server = await asyncio.start_server(self._serve_http, "127.0.0.1", self.http_port)
        ws_server = await serve(self._serve_ws, "127.0.0.1", self.ws_port)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            ws_server.close()
            http_server.close()
            for task in self._handlers:
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(http_server.wait_closed(), 2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws_server.wait_closed(), 2)
            await self._http.aclose()

    # Choosing faults ---------------------------------------------------------------------

    def _fault_for(self, request: Any) -> str | None:
        if self.rng.random() >= self.fault_rate:
            return None
        kinds = list(GENERAL)
        if isinstance(request, list):
            kinds += BATCH
        elif isinstance(request, dict) and request.get("method") == "eth_getLogs":
            kinds += GET_LOGS
        kinds = [k for k in kinds if k in self.kinds]
        if not kinds:
            return None
        fewest = min(self.counts[k] for k in kinds)
        candidates = [k for k in kinds if self.counts[k] == fewest]
        # Faults only this kind of request can carry first: they are the rare chances.
        specific = [k for k in candidates if k not in GENERAL]
        kind = self.rng.choice(specific or candidates)
        self.counts[kind] += 1
        return kind

    # HTTP ----------------------------------------------------------------------------------

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length)
                answer = await self._answer(body)
                if answer is None:  # drop or hang: no answer on this connection, ever
                    writer.transport.abort()
                    return
                status, headers, payload = answer
                head = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}"]
                head += [f"{k}: {v}" for k, v in headers.items()]
                head += [f"Content-Length: {len(payload)}", "Connection: keep-alive", "", ""]
                writer.write("\r\n".join(head).encode("latin-1") + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        self.requests += 1
        json_type = {"Content-Type": "application/json"}
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            request = None
        if isinstance(request, dict):
            self.methods[str(request.get("method"))] += 1
        elif isinstance(request, list) and request and isinstance(request[0], dict):
            self.methods[f"batch:{request[0].get('method')}"] += 1
        limited = await self._limited(request)
        if limited is not None:
            return 200, json_type, orjson.dumps(limited)
        kind = self._fault_for(request) if request is not None else None
        seconds_form = kind == "rate_limited" and self.counts[kind] % 2 == 1
        self.history.append(
            (
                time.monotonic(),
                f"{kind}:{'seconds' if seconds_form else 'date'}"
                if kind == "rate_limited"
                else kind or "",
            )
        )
        if kind == "drop":
            return None
        if kind == "timeout":
            await asyncio.sleep(self.hang_seconds)
            return None
        if kind == "rate_limited":
            if seconds_form:
                retry_after = str(self.retry_after_seconds)
            else:
                retry_after = formatdate(time.time() + self.retry_after_seconds, usegmt=True)
            return 429, {"Retry-After": retry_after, "Content-Type": "text/plain"}, b"slow down"
        if kind == "non_json":
            return 200, {"Content-Type": "text/html"}, b"<html><body>502 Bad Gateway</body></html>"
        if kind == "range_too_large":
            assert isinstance(request, dict)
            return 200, json_type, orjson.dumps(self._range_error(request))
        upstream = await self._http.post(
            self.upstream_http, content=body, headers={"content-type": "application/json"}
        )
        payload = upstream.content
        if kind is None:
            return upstream.status_code, json_type, payload
        answer = orjson.loads(payload)
        if kind == "truncated":
            return 200, json_type, payload[: max(1, len(payload) // 2)]
        if kind == "wrong_id":
            target = answer[self.rng.randrange(len(answer))] if isinstance(answer, list) else answer
            target["id"] = (target.get("id") or 0) + 1_000_000
        elif kind == "batch_missing":
            del answer[self.rng.randrange(len(answer))]
        elif kind == "bad_log":
            logs = answer.get("result")
            if isinstance(logs, list) and logs:
                victim = logs[self.rng.randrange(len(logs))]
                victim.pop(self.rng.choice(["transactionHash", "blockNumber", "topics", "data"]))
            elif isinstance(logs, list):
                logs.append({"address": "0x" + "00" * 20, "topics": [], "data": "0x"})
        return 200, json_type, orjson.dumps(answer)

    # Provider limits ---------------------------------------------------------------------------

    def _refuse(
        self, request: dict[str, Any], what: str, refusal: tuple[int, str], **fill: Any
    ) -> Any:
        self.refused[what] += 1
        if request.get("method") == "eth_getLogs":
            self.refused_filters.append((what, (request.get("params") or [{}])[0]))
        code, message = refusal
        return {
            "jsonrpc": "2.0",
            "id": request.get("id"),
            "error": {"code": code, "message": message.format(**fill)},
        }

    def _pruned(self, request: Any) -> bool:
        if not isinstance(request, dict) or request.get("method") != "eth_call":
            return False
        params = request.get("params") or []
        if len(params) < 2 or not isinstance(params[0], dict):
            return False
        block, data = params[1], str(params[0].get("data", ""))
        numbered = isinstance(block, str) and block.startswith("0x")
        return numbered and data[:10] in self.limits.pruned_selectors

    async def _limited(self, request: Any) -> Any:
        """The answer a provider with `limits` gives instead of the node's, or None."""
        limits = self.limits
        if isinstance(request, list) and any(self._pruned(r) for r in request):
            answers = {
                r.get("id"): self._refuse(r, "pruned", limits.pruned_refusal)
                for r in request
                if self._pruned(r)
            }
            rest = [r for r in request if not self._pruned(r)]
            if rest:
                upstream = await self._http.post(
                    self.upstream_http,
                    content=orjson.dumps(rest),
                    headers={"content-type": "application/json"},
                )
                for item in upstream.json():
                    answers[item.get("id")] = item
            return [answers[r.get("id")] for r in request]
        if self._pruned(request):
            return self._refuse(request, "pruned", limits.pruned_refusal)
        if not isinstance(request, dict) or request.get("method") != "eth_getLogs":
            return None
        flt = (request.get("params") or [{}])[0]
        if not isinstance(flt, dict):
            return None
        addresses = flt.get("address")
        if isinstance(addresses, list):
            self.most_addresses = max(self.most_addresses, len(addresses))
        if limits.max_span is not None and "fromBlock" in flt:
            span = int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1
            if span > limits.max_span:
                return self._refuse(
                    request, "span", limits.span_refusal, span=span, cap=limits.max_span
                )
        if (
            limits.max_addresses is not None
            and isinstance(addresses, list)
            and len(addresses) > limits.max_addresses
        ):
            return self._refuse(
                request, "addresses", limits.address_refusal, cap=limits.max_addresses
            )
        if limits.max_results is None:
            return None
        upstream = await self._http.post(
            self.upstream_http,
            content=orjson.dumps(request),
            headers={"content-type": "application/json"},
        )
        answer = upstream.json()
        if isinstance(answer.get("result"), list) and len(answer["result"]) > limits.max_results:
            return self._refuse(request, "results", limits.results_refusal, cap=limits.max_results)
        self.logs_served += len(answer.get("result") or ())
        return answer  # within the cap: the node's answer (not asked twice)

    def _range_error(self, request: dict[str, Any]) -> dict[str, Any]:
        params = request.get("params") or [{}]
        flt = params[0] if isinstance(params[0], dict) else {}
        low = str(flt.get("fromBlock", "0x0"))
        try:
            start = int(low, 16)
            end = int(str(flt.get("toBlock", low)), 16)
            hint_end = hex(start + max(0, (end - start) // 2))
        except (TypeError, ValueError):
            low, hint_end = "0x0", "0x0"
        return {
            "jsonrpc": "2.0",
            "id": request.get("id"),
            "error": {"code": -32602, "message": ALCHEMY_RANGE.format(low, hint_end)},
        }

    # WebSocket ------------------------------------------------------------------------------

    async def _serve_ws(self, client: ServerConnection) -> None:
        if self.upstream_ws is None:
            await client.close(1011, "no upstream")
            return
        self.ws_connections += 1
        async with ws_connect(self.upstream_ws, max_size=None) as upstream:

            async def to_upstream() -> None:
                async for message in client:
                    await upstream.send(message)

            async def to_client() -> None:
                async for message in upstream:
                    notification = b'"eth_subscription"' in (
                        message if isinstance(message, bytes) else message.encode()
                    )
                    if notification and self.rng.random() < self.ws_drop_rate:
                        self.counts["ws_drop"] += 1
                        client.transport.abort()  # no close frame: a dropped connection
                        return
                    await client.send(message)

            tasks = [asyncio.ensure_future(to_upstream()), asyncio.ensure_future(to_client())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            except ConnectionClosed:
                pass
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(BaseException):
                        await task
