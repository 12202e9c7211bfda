from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.deps import AtParam, ChainParam, QueriesDep, RuntimeDep, address, chain_for, parse_at
from flows.windows import WINDOW_SECONDS
from schemas.api import ErrorOut, HistoryOut, PortfolioOut, PositionsPage
from schemas.errors import InvalidInput, NotFound

router = APIRouter(prefix="/v1", tags=["positions"])
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed input"},
    404: {"model": ErrorOut, "description": "Block or time not indexed"},
}


@router.get("/portfolio/{wallet}", response_model=PortfolioOut, responses=ERRORS)
def portfolio(
    wallet: Annotated[str, Path(description="Wallet address (0x…)", max_length=64)],
    runtime: RuntimeDep,
    queries: QueriesDep,
    at: AtParam = None,
    chain_id: ChainParam = None,
) -> dict[str, Any]:
    """A wallet's positions, valued, with the total, as of the head or `at`."""
    owner = address(wallet, "wallet")
    chain = chain_for(runtime, chain_id)
    as_of = queries.resolve_at(chain, parse_at(at), runtime.status.chain(chain).processed)
    return queries.portfolio(owner, as_of)


@router.get("/positions", response_model=PositionsPage, responses=ERRORS)
def positions(
    runtime: RuntimeDep,
    queries: QueriesDep,
    owner: Annotated[str | None, Query(max_length=64)] = None,
    protocol: Annotated[str | None, Query(max_length=32, description="uniswap_v3")] = None,
    pool: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
    at: AtParam = None,
    chain_id: ChainParam = None,
) -> dict[str, Any]:
    """Open positions, filtered, ordered by id, one page at a time."""
    if protocol is not None and protocol not in ("uniswap_v3",):
        raise InvalidInput(f"unknown protocol {protocol!r}; known: uniswap_v3")
    chain = chain_for(runtime, chain_id)
    as_of = queries.resolve_at(chain, parse_at(at), runtime.status.chain(chain).processed)
    return queries.positions(
        as_of,
        owner=address(owner, "owner") if owner is not None else None,
        protocol=protocol,
        pool=address(pool, "pool") if pool is not None else None,
        limit=limit,
        cursor=cursor,
    )


@router.get("/positions/{position_id}/history", response_model=HistoryOut, responses=ERRORS)
def history(
    position_id: Annotated[
        str,
        Path(
            description="A position id (chain_id:position_manager:token_id) or a lending "
            "account id, as the portfolio gives them",
            max_length=200,
        ),
    ],
    queries: QueriesDep,
    window: Annotated[str, Query(description="1m, 1h or 1d")] = "1h",
    from_: Annotated[
        str | None,
        Query(alias="from", max_length=64, description="ISO-8601 time or block number"),
    ] = None,
    to: Annotated[
        str | None, Query(max_length=64, description="ISO-8601 time or block number")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Closed windows of a position or lending account: open, high, low and close of its USD
    value, IL and health factor, and the fees it earned, for windows starting in [from, to)."""
    if window not in WINDOW_SECONDS:
        raise InvalidInput(f"window={window!r} is not one of {', '.join(WINDOW_SECONDS)}")
    chain_text = position_id.split(":", 1)[0]
    if not chain_text.isdigit():
        raise InvalidInput(f"{position_id!r} is not a position or account id")
    chain = int(chain_text)
    start, end = (queries.time_of(chain, parse_at(v)) for v in (from_, to))
    if start is not None and end is not None and start >= end:
        raise InvalidInput("from must be before to")
    if not queries.subject_exists(chain, position_id):
        raise NotFound(f"no position or account {position_id!r}")
    rows = queries.windows(chain, position_id, window, start, end, limit + 1)
    return {
        "id": position_id,
        "window": window,
        "windows": rows[:limit],
        "truncated": len(rows) > limit,
    }
