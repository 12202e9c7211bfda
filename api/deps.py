"""Dependencies as Annotated aliases, so routes stay thin and typed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request

from api.hub import Hub
from api.queries import AsOf, Queries, parse_at
from defimon.keys import KeyFile
from defimon.runtime import Runtime
from schemas.api import ErrorOut
from schemas.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from schemas.filters import Filter
from schemas.hexutil import normalize_address


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_queries(request: Request) -> Queries:
    queries: Queries = request.app.state.queries
    return queries


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
QueriesDep = Annotated[Queries, Depends(get_queries)]
HubDep = Annotated[Hub, Depends(get_hub)]

AtParam = Annotated[
    str | None,
    Query(
        description="A block number (e.g. 1234) or an ISO-8601 time with a zone "
        "(e.g. 2026-01-01T00:00:00Z). Default: the latest indexed block.",
        max_length=64,
    ),
]
# A window span's bounds (history routes): [from, to).
FromParam = Annotated[
    str | None,
    Query(alias="from", max_length=64, description="ISO-8601 time or block number"),
]
ToParam = Annotated[str | None, Query(max_length=64, description="ISO-8601 time or block number")]
ChainParam = Annotated[
    int | None,
    Query(
        description="Chain id. Without it the portfolio spans every chain followed; other "
        "routes need it when several chains are followed.",
        ge=1,
    ),
]


def get_filter(
    protocol: Annotated[
        list[str] | None, Query(description="uniswap_v3, aave_v3 (repeatable: any of)")
    ] = None,
    chain_id: Annotated[list[str] | None, Query(description="Chain ids (repeatable)")] = None,
    owner: Annotated[list[str] | None, Query(description="Wallets (repeatable)")] = None,
    pool: Annotated[list[str] | None, Query(description="Uniswap pools (repeatable)")] = None,
    token: Annotated[
        list[str] | None, Query(description="Holding this token: LP side or reserve")
    ] = None,
    min_value_usd: Annotated[str | None, Query(max_length=40)] = None,
    max_value_usd: Annotated[str | None, Query(max_length=40)] = None,
    min_health_factor: Annotated[
        str | None, Query(max_length=40, description="Lending accounts; no debt is infinite")
    ] = None,
    max_health_factor: Annotated[str | None, Query(max_length=40)] = None,
    min_il_usd: Annotated[
        str | None, Query(max_length=40, description="IL against holding, USD (negative: loss)")
    ] = None,
    max_il_usd: Annotated[str | None, Query(max_length=40)] = None,
    min_il_pct: Annotated[str | None, Query(max_length=40)] = None,
    max_il_pct: Annotated[str | None, Query(max_length=40)] = None,
    min_debt_usd: Annotated[str | None, Query(max_length=40)] = None,
    max_debt_usd: Annotated[str | None, Query(max_length=40)] = None,
    in_range: Annotated[
        str | None, Query(max_length=8, description="true or false (LP positions)")
    ] = None,
) -> Filter:
    """The filter grammar (schemas.filters) from query parameters."""
    given = {k: v for k, v in locals().items() if v is not None}
    return Filter.parse({k: v if isinstance(v, list) else [v] for k, v in given.items()})


FilterDep = Annotated[Filter, Depends(get_filter)]


def require(scope: str) -> Callable[..., None]:
    """A dependency: the request's API key must have `scope` and be within its rate limit.

    With no key configured the server listens on loopback only and lets every request in.
    EventSource cannot send headers, so the key may also come as `?api_key=`.
    """

    def check(
        request: Request,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
        x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        keys: KeyFile = request.app.state.keys
        token = x_api_key or request.query_params.get("api_key")
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        enforced, key = keys.lookup(token)
        if not enforced:
            return
        if not token:
            raise Unauthorized("an API key is required: Authorization: Bearer <key>")
        if key is None:
            raise Unauthorized("unknown API key")
        if scope not in key.scopes:
            raise Forbidden(f"this key lacks the {scope!r} scope")
        wait = request.app.state.limiter.take(key)
        if wait is not None:
            raise RateLimited(
                f"key {key.id} is over {key.rate_per_minute} requests a minute",
                retry_after=wait,
            )

    return check


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No API key, or an unknown one"},
    403: {"model": ErrorOut, "description": "The key lacks this route's scope"},
    429: {"model": ErrorOut, "description": "Over the key's rate limit; see Retry-After"},
}


def chain_for(runtime: Runtime, chain_id: int | None) -> int:
    chains = [e.config.chain_id for e in runtime.endpoints]
    if chain_id is None:
        if len(chains) == 1:
            return chains[0]
        raise InvalidInput(f"several chains are indexed ({chains}); pass chain_id")
    if chain_id not in chains:
        raise InvalidInput(f"chain {chain_id} is not indexed here (indexed: {chains})")
    return chain_id


def chains_for(runtime: Runtime, chain_ids: Iterable[int] | None) -> list[int]:
    """The chains a request covers: those asked for (each checked), else every chain
    followed, in chain-id order."""
    asked = sorted(set(chain_ids or ()))
    if not asked:
        return sorted({e.config.chain_id for e in runtime.endpoints})
    return [chain_for(runtime, c) for c in asked]


def as_of_each(
    runtime: Runtime, queries: Queries, chains: Sequence[int], at: str | None
) -> list[AsOf]:
    """The block to answer at on each chain: `at` (a time, or a block number when there is
    one chain) else each chain's head. With several chains, a chain with nothing indexed at
    that point is left out (nothing to show there yet)."""
    when = parse_at(at)
    if len(chains) == 1:
        chain = chains[0]
        return [queries.resolve_at(chain, when, runtime.status.chain(chain).processed)]
    if isinstance(when, int):
        raise InvalidInput(
            "at= as a block number names a block of one chain; with several chains pass "
            "chain_id, or give at= as a time"
        )
    found = []
    for chain in chains:
        try:
            found.append(queries.resolve_at(chain, when, runtime.status.chain(chain).processed))
        except NotFound:
            continue
    if not found:
        raise NotFound("no chain has indexed blocks at that point yet")
    return found


def address(value: str, what: str = "address") -> str:
    try:
        return normalize_address(value)
    except InvalidInput:
        raise InvalidInput(f"{what} {value!r} is not an address (0x and 40 hex digits)") from None


__all__ = [
    "AUTH_ERRORS",
    "AtParam",
    "ChainParam",
    "FilterDep",
    "HubDep",
    "QueriesDep",
    "RuntimeDep",
    "address",
    "as_of_each",
    "chain_for",
    "chains_for",
    "parse_at",
    "require",
]
