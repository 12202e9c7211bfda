"""Dependencies as Annotated aliases, so routes stay thin and typed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request

from api.chains import Chains
from api.head_view import HeadViews
from api.hub import Hub
from api.queries import AsOf, Queries, parse_at, read_sides
from ports.keys import KeyFile
from ports.settings import Settings
from ports.status import FlowStatus
from ports.store import Store
from ports.watch import WatchRequests
from protocols.registry import PROTOCOLS
from schemas.api import ErrorOut
from schemas.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from schemas.filters import Filter
from schemas.hexutil import normalize_address

# Each route takes only what it uses; create_app (api/app.py) puts these on app.state.


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    """The process's store handle (its backend, its settings); queries go through Queries."""
    store: Store = request.app.state.store
    return store


def get_status(request: Request) -> FlowStatus:
    status: FlowStatus = request.app.state.status
    return status


def get_chains(request: Request) -> Chains:
    chains: Chains = request.app.state.chains
    return chains


def get_watch_requests(request: Request) -> WatchRequests:
    requests: WatchRequests = request.app.state.watch_requests
    return requests


def get_suggested_wallets(request: Request) -> tuple[str, ...]:
    wallets: tuple[str, ...] = request.app.state.suggested_wallets
    return wallets


def get_queries(request: Request) -> Queries:
    queries: Queries = request.app.state.queries
    return queries


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
StatusDep = Annotated[FlowStatus, Depends(get_status)]
ChainsDep = Annotated[Chains, Depends(get_chains)]
WatchRequestsDep = Annotated[WatchRequests, Depends(get_watch_requests)]
SuggestedWalletsDep = Annotated[tuple[str, ...], Depends(get_suggested_wallets)]
QueriesDep = Annotated[Queries, Depends(get_queries)]


def get_head_views(request: Request) -> HeadViews:
    views: HeadViews = request.app.state.head_views
    return views


HeadViewsDep = Annotated[HeadViews, Depends(get_head_views)]
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


_PROTOCOL_HELP = ", ".join(side.name for side in read_sides()) + " (repeatable: any of)"


def get_filter(
    protocol: Annotated[list[str] | None, Query(description=_PROTOCOL_HELP)] = None,
    chain_id: Annotated[list[str] | None, Query(description="Chain ids (repeatable)")] = None,
    owner: Annotated[list[str] | None, Query(description="Wallets (repeatable)")] = None,
    pool: Annotated[
        list[str] | None,
        Query(
            description="markets (repeatable): an LP position's pool, a lending account's market"
        ),
    ] = None,
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
    return Filter.parse({k: v if isinstance(v, list) else [v] for k, v in given.items()}, PROTOCOLS)


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


def chain_for(chains: Chains, chain_id: int | None) -> int:
    return chains.one(chain_id)


def chains_for(chains: Chains, chain_ids: Iterable[int] | None) -> list[int]:
    """The chains a request covers: those asked for (each checked), else every chain
    followed, in chain-id order."""
    return chains.some(chain_ids)


def as_of_each(
    chains: Chains, queries: Queries, chain_ids: Sequence[int], at: str | None
) -> list[AsOf]:
    """The block to answer at on each chain: `at` (a time, or a block number when there is
    one chain) else each chain's head. With several chains, a chain with nothing indexed at
    that point is left out (nothing to show there yet)."""
    when = parse_at(at)
    if len(chain_ids) == 1:
        chain = chain_ids[0]
        return [queries.resolve_at(chain, when, chains.processed(chain))]
    if isinstance(when, int):
        raise InvalidInput(
            "at= as a block number names a block of one chain; with several chains pass "
            "chain_id, or give at= as a time"
        )
    found = []
    for chain in chain_ids:
        try:
            found.append(queries.resolve_at(chain, when, chains.processed(chain)))
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
    "ChainsDep",
    "FilterDep",
    "HeadViewsDep",
    "HubDep",
    "QueriesDep",
    "SettingsDep",
    "StatusDep",
    "StoreDep",
    "SuggestedWalletsDep",
    "WatchRequestsDep",
    "address",
    "as_of_each",
    "chain_for",
    "chains_for",
    "parse_at",
    "require",
]
