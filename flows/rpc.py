"""A lean JSON-RPC client for the hot path (logs, headers, batched calls).

web3.py formats every log into AttributeDicts, which costs about ten times what the bytes
cost to fetch (see shared/notes: ~2,600 logs/s against ~30,000 raw). Backfill speed is the
point of this client, so it speaks JSON-RPC directly over a keep-alive HTTP connection with
orjson; web3.py is used where its help is worth it (the WebSocket head subscription).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from schemas.errors import RangeTooLarge, RpcError, RpcTransportError

# Providers word their "range too large" refusals differently; these cover the usual ones
# (Infura/Alchemy "[0x..., 0x...]" hints, "maximum block range: N", "more than 10000 results").
_HINT_RANGE = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")
_HINT_SPAN = re.compile(r"(?:block range|range)[^0-9]{0,30}?(\d{2,9})", re.IGNORECASE)
_RANGE_WORDS = re.compile(
    r"range|too many|more than|limit exceeded|response size|query timeout|too large",
    re.IGNORECASE,
)


class RpcClient:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self._ids = itertools.count(1)
        self._http = httpx.Client(
            timeout=timeout,
            headers={"content-type": "application/json"},
            limits=httpx.Limits(max_keepalive_connections=4, max_connections=8),
        )

    def close(self) -> None:
        self._http.close()

    def _post(self, payload: Any) -> Any:
        try:
            response = self._http.post(self.url, content=orjson.dumps(payload))
        except httpx.HTTPError as exc:
            raise RpcTransportError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise RpcTransportError(
                f"{self.url}: HTTP {response.status_code}: {response.text[:200]}",
                code=response.status_code,
            )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise RpcTransportError(f"{self.url}: answer is not JSON: {exc}") from exc

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        body = self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        return _result(method, body)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several calls in one request; results in call order. Any error raises."""
        if not calls:
            return []
        first = next(self._ids)
        payload = [
            {"jsonrpc": "2.0", "id": first + i, "method": m, "params": list(p)}
            for i, (m, p) in enumerate(calls)
        ]
        for _ in range(len(calls) - 1):
            next(self._ids)
        body = self._post(payload)
        if not isinstance(body, list):
            # Some nodes answer a whole batch with one error object.
            raise RpcError(f"batch answered with a non-list: {str(body)[:200]}")
        by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
        out = []
        for i, (method, _params) in enumerate(calls):
            item = by_id.get(first + i)
            if item is None:
                raise RpcError(f"batch answer lacks the result of {method}")
            out.append(_result(method, item))
        return out

    # Typed helpers -------------------------------------------------------------------------

    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def get_logs(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        result = self.call("eth_getLogs", [flt])
        if not isinstance(result, list):
            raise RpcError(f"eth_getLogs answered a {type(result).__name__}, not a list")
        return result


def _result(method: str, body: Any) -> Any:
    if not isinstance(body, dict):
        raise RpcError(f"{method}: malformed answer: {str(body)[:200]}")
    error = body.get("error")
    if error is not None:
        message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
        code = error.get("code") if isinstance(error, dict) else None
        data = error.get("data") if isinstance(error, dict) else None
        if method == "eth_getLogs" and _RANGE_WORDS.search(message + str(data or "")):
            raise RangeTooLarge(f"{method}: {message}", hint=_parse_hint(message + str(data or "")))
        raise RpcError(f"{method}: {message}", code=code, data=data)
    if "result" not in body:
        raise RpcError(f"{method}: answer has neither result nor error")
    return body["result"]


def _parse_hint(message: str) -> tuple[int, int] | None:
    """The provider's suggested (from, to), or (0, span-1) when it only states a maximum span."""
    found = _HINT_RANGE.search(message)
    if found:
        return int(found.group(1), 16), int(found.group(2), 16)
    span = _HINT_SPAN.search(message)
    if span:
        return 0, int(span.group(1)) - 1
    return None
