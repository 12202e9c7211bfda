from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.deps import AtParam, ChainParam, QueriesDep, RuntimeDep, address, chain_for, parse_at
from schemas.api import ErrorOut, PortfolioOut, PositionsPage
from schemas.errors import InvalidInput

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
    """A wallet's positions, lending accounts and non-zero token balances, valued, with the
    totals, as of the head or `at`."""
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
