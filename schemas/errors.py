"""The exception hierarchy of defimon (web3.py style: one root, specific leaves)."""


class DefimonError(Exception):
    """Root of every error defimon raises on purpose."""


class ConfigError(DefimonError):
    """A setting or a chain config is missing or invalid."""


class InvalidInput(DefimonError, ValueError):
    """A caller passed a malformed value (an address, a block, a time)."""


class NotFound(DefimonError):
    """The thing asked for does not exist (yet), e.g. a block not indexed."""


class RpcError(DefimonError):
    """A JSON-RPC call failed."""

    def __init__(self, message: str, *, code: int | None = None, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class RpcTransportError(RpcError):
    """The node could not be reached, timed out or answered something that is not JSON-RPC."""


class RpcTimeout(RpcTransportError):
    """The node did not answer within the client's timeout."""


class RpcRateLimited(RpcTransportError):
    """The node refused for rate (HTTP 429 or a rate-limit JSON-RPC error); `retry_after` is
    what it asked us to wait, in seconds, if it said."""

    def __init__(
        self, message: str, *, code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class MalformedResponse(RpcTransportError):
    """The node answered something that is not a valid answer to the request: not JSON, the
    wrong id, no result, or a result of the wrong shape for the method. A fault, not data."""


class RpcTransientError(RpcTransportError):
    """A JSON-RPC error the node would likely not repeat (internal error, header not found,
    a busy upstream). A transport-level fault for the callers: retried, never taken as an
    answer (a reverting call, by contrast, is a plain RpcError)."""


class RangeTooLarge(RpcError):
    """`eth_getLogs` refused a filter as too large; `hint` is the provider's suggested range,
    if any. `refusal` (a flows.rpc.Refusal) says which limit it hit (block range, result
    count, response size, address count) and the limit when the provider named it;
    `endpoint` is the label of the endpoint that refused (its limits are learned); `uncut`
    is the refused filter when nothing smaller can be asked (one block, one address)."""

    def __init__(
        self,
        message: str,
        *,
        hint: tuple[int, int] | None = None,
        refusal: object = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.hint = hint
        self.refusal = refusal
        self.endpoint: str | None = None
        self.uncut: dict[str, object] | None = None


class LogsUnreadable(DefimonError):
    """One block's logs of one contract that no endpoint returns: each caps an `eth_getLogs`
    answer below what that contract logged in that block, and no filter is smaller than one
    block of one address. Not an RpcError: retrying cannot read them, and going on without
    them would serve a wrong state, so the flow stops with this message."""


class ArchiveRequired(RpcError):
    """The node has pruned the state this read needs (a historical `eth_call`, `balanceOf` at
    an old block): an answer, not a fault, and permanent for that node. Only an archive node
    can serve it; retrying cannot. `kind` names the wording matched (missing trie node,
    header not found, historical state unavailable, pruned)."""

    def __init__(self, message: str, *, kind: str, code: int | None = None) -> None:
        super().__init__(message, code=code)
        self.kind = kind


class ReorgTooDeep(DefimonError):
    """The chain reorganised below the blocks whose undo information is kept (the finality
    depth). Following on would silently mix two chains, so the flow stops; re-index from a
    block below the fork (a fresh data directory, `--from-block`)."""

    def __init__(self, chain_id: int, fork_block: int, oldest_kept: int) -> None:
        super().__init__(
            f"chain {chain_id} reorganised at or below block {fork_block}, deeper than the "
            f"blocks whose undo information is kept (from {oldest_kept}); the flow stops rather "
            "than mix two chains: raise finality_depth in the chain config and re-index from "
            "a block below the fork"
        )
        self.chain_id = chain_id
        self.fork_block = fork_block
        self.oldest_kept = oldest_kept


class StoreError(DefimonError):
    """The ClickHouse store failed."""


class QueryFailed(StoreError):
    """ClickHouse refused or stopped a query (syntax, unknown table, a limit); `code` is its
    error code."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


class Unauthorized(DefimonError):
    """No API key, or one this server does not know (401)."""


class Forbidden(DefimonError):
    """The API key lacks the scope the route needs (403)."""


class RateLimited(DefimonError):
    """The API key made too many requests; retry after `retry_after` seconds (429)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
