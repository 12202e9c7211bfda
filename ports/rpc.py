"""The JSON-RPC calls a protocol's reader makes (eth_call batches at a block), as a port: the
protocol folders read the chain through this, and `flows/rpc.py`'s client is what plugs in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

_R = TypeVar("_R")
_T = TypeVar("_T")


class JsonRpc(Protocol):
    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One call; errors raise (schemas.errors.RpcError, RpcTransportError)."""
        ...

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several calls in one request, results in call order; any error raises."""
        ...

    def batch_each(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Like `batch`, but a refused call gives its RpcError in its place."""
        ...

    def ahead(self, read: Callable[[_R], _T], arg: _R) -> Future[_T]:
        """Start `read(arg)` now on the client's read-ahead workers (several in flight), for
        the caller to take later: live blocks' state read before they are applied."""
        ...
