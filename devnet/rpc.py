"""A tiny raw JSON-RPC client for the devnet.

web3.py costs around a millisecond of Python per request; the devnet tools send tens of
thousands of requests, so they talk JSON-RPC directly (httpx keep-alive + orjson) and batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import httpx
import orjson

from schemas.errors import RpcError, RpcTransportError

__all__ = ["RpcClient", "RpcError", "RpcTransportError"]

Call = tuple[str, Sequence[Any]]


class RpcClient:
    """JSON-RPC over one keep-alive HTTP connection; safe to share between threads."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url
        self._http = httpx.Client(timeout=timeout, headers={"content-type": "application/json"})
        self._next_free_id = 1
        self._id_lock = threading.Lock()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _take_ids(self, count: int) -> int:
        """Reserve `count` consecutive request ids; returns the first."""
        with self._id_lock:
            first = self._next_free_id
            self._next_free_id += count
            return first

    def _post(self, payload: object) -> Any:
        try:
            response = self._http.post(self.url, content=orjson.dumps(payload))
            response.raise_for_status()
            return orjson.loads(response.content)
        except httpx.HTTPError as exc:
            raise RpcTransportError(f"{self.url}: {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise RpcTransportError(f"{self.url} answered something that is not JSON") from exc

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One request; returns `result` or raises RpcError with the node's message."""
        request_id = self._take_ids(1)
        reply = self._post(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
        )
        return _result(method, reply)

    def batch(self, calls: Iterable[Call], *, raise_errors: bool = True) -> list[Any]:
        """Many requests in one HTTP round trip; results in the order of `calls`.

        With `raise_errors=False` a failed request yields its RpcError instead of raising,
        so one reverted transaction does not hide the hashes of the others.
        """
        call_list = list(calls)
        if not call_list:
            return []
        methods = [method for method, _ in call_list]
        first_id = self._take_ids(len(call_list))
        payload = [
            {"jsonrpc": "2.0", "id": first_id + offset, "method": method, "params": list(params)}
            for offset, (method, params) in enumerate(call_list)
        ]
        replies = self._post(payload)
        if not isinstance(replies, list):
            # a node answers a malformed batch with a single error object
            raise RpcError(
                _message(replies.get("error", {}))
                if isinstance(replies, dict)
                else "bad batch reply"
            )
        by_id = {reply.get("id"): reply for reply in replies}
        results: list[Any] = []
        for offset, method in enumerate(methods):
            reply = by_id.get(first_id + offset)
            if reply is None:
                error: Any = RpcError(f"{method}: no reply in the batch")
            else:
                try:
                    error = _result(method, reply)
                except RpcError as exc:
                    error = exc
            if raise_errors and isinstance(error, RpcError):
                raise error
            results.append(error)
        return results


def _message(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    message = str(error.get("message", "unknown error"))
    data = error.get("data")
    if isinstance(data, str) and data and data not in message:
        message = f"{message} ({data})"
    return message


def _result(method: str, reply: Any) -> Any:
    if not isinstance(reply, dict):
        raise RpcTransportError(f"{method}: not a JSON-RPC reply: {reply!r:.200}")
    if "error" in reply:
        error = reply["error"]
        code = error.get("code") if isinstance(error, dict) else None
        data = error.get("data") if isinstance(error, dict) else None
        raise RpcError(f"{method}: {_message(error)}", code=code, data=data)
    return reply.get("result")
