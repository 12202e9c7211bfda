from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from api.aggregate import aggregate as aggregate_subjects
from api.aggregate import parse_group_by, parse_metrics
from api.chains import Chains
from api.deps import (
    AUTH_ERRORS,
    AtParam,
    ChainParam,
    ChainsDep,
    FilterDep,
    FromParam,
    HeadViewsDep,
    QueriesDep,
    ToParam,
    address,
    as_of_each,
    chain_for,
    chains_for,
    parse_at,
    require,
)
from api.head_view import HeadViews
from api.queries import AsOf, Queries, check_sort, positions_page
from protocols.windows import WINDOW_SECONDS
from schemas.api import (
    AdviceOut,
    AggregateOut,
    DiffOut,
    ErrorOut,
    HistoryOut,
    PortfolioOut,
    PositionsPage,
    StressOut,
    WalletHistoryOut,
)
from schemas.errors import InvalidInput, NotFound
from schemas.filters import Filter
from schemas.hexutil import decimal_uint
from schemas.stress import Scenario, parse_horizon, parse_shock, parse_target

router = APIRouter(
    prefix="/v1",
    tags=["positions"],
    dependencies=[Depends(require("read"))],
    responses=AUTH_ERRORS,
)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed input"},
    404: {"model": ErrorOut, "description": "Block or time not indexed"},
}


@router.get("/portfolio/{wallet}", response_model=PortfolioOut, responses=ERRORS)
def portfolio(
    wallet: Annotated[str, Path(description="Wallet address (0x…)", max_length=64)],
    chains: ChainsDep,
    queries: QueriesDep,
    views: HeadViewsDep,
    response: Response,
    at: AtParam = None,
    chain_id: ChainParam = None,
) -> dict[str, Any]:
    """A wallet's positions, lending accounts and non-zero token balances, valued, with the
    totals, as of the head or `at`: on every chain followed (each at its own head, or at the
    time `at`), or on `chain_id` only. Every item names its chain; totals sum the chains.
    At the head it is answered from memory once this process's head view is built
    (`X-Served-From: head-view`), with the same JSON the store gives for that block."""
    owner = address(wallet, "wallet")
    wanted = chains_for(chains, None if chain_id is None else [chain_id])
    if at is None:
        found = views.portfolio_across(owner, wanted)
        if found is not None:
            response.headers["X-Served-From"] = "head-view"
            return found
    return queries.portfolio_across(owner, as_of_each(chains, queries, wanted, at))


@router.get("/portfolio/{wallet}/stress", response_model=StressOut, responses=ERRORS)
def portfolio_stress(
    wallet: Annotated[str, Path(description="Wallet address (0x…)", max_length=64)],
    chains: ChainsDep,
    queries: QueriesDep,
    shock: Annotated[
        str | None,
        Query(
            max_length=2000,
            description="Price moves, e.g. WETH:-20%,WBTC:-15% (by symbol or address), or "
            "*:-30% for every asset that is not a stablecoin (the chain's usd_tokens stay "
            "unless named); whole basis points",
        ),
    ] = None,
    horizon: Annotated[
        str | None,
        Query(max_length=32, description="Interest accrues this long first: 3600, 12h, 30d"),
    ] = None,
    at: AtParam = None,
    chain_id: ChainParam = None,
) -> dict[str, Any]:
    """The wallet's lending accounts now and under joint price shocks, valued by the same
    exact functions as the live path (health factor, collateral and debt as the protocol's
    own view would answer at the shocked prices), with the uniform drop of each account's
    collateral at which it becomes liquidatable and the time until interest alone takes it
    there."""
    owner = address(wallet, "wallet")
    moves = parse_shock(shock)
    seconds = parse_horizon(horizon)
    as_ofs = as_of_each(
        chains, queries, chains_for(chains, None if chain_id is None else [chain_id]), at
    )
    return queries.stress(
        owner,
        [(a, Scenario(moves, chains.stablecoins(a.chain_id), seconds)) for a in as_ofs],
    )


@router.get("/portfolio/{wallet}/advice", response_model=AdviceOut, responses=ERRORS)
def portfolio_advice(
    wallet: Annotated[str, Path(description="Wallet address (0x…)", max_length=64)],
    chains: ChainsDep,
    queries: QueriesDep,
    target: Annotated[
        str | None,
        Query(max_length=24, description="Target health factor, e.g. 1.5 (the default)"),
    ] = None,
    horizon: Annotated[
        str | None,
        Query(max_length=32, description="Answer for this much later (interest accrued): 12h"),
    ] = None,
    at: AtParam = None,
    chain_id: ChainParam = None,
) -> dict[str, Any]:
    """What to do: for each lending account below the target health factor, the smallest
    exact amount of each debt asset to repay, or of each collateral asset to add, that
    reaches it (found by revaluing the account after the move with the contract's own
    arithmetic); each answer names the block, time and prices it rests on."""
    owner = address(wallet, "wallet")
    target_wad = parse_target(target)
    seconds = parse_horizon(horizon)
    wanted = chains_for(chains, None if chain_id is None else [chain_id])
    return queries.advice(owner, as_of_each(chains, queries, wanted, at), target_wad, seconds)


@router.get("/portfolio/{wallet}/diff", response_model=DiffOut, responses=ERRORS)
def portfolio_diff(
    wallet: Annotated[str, Path(description="Wallet address (0x…)", max_length=64)],
    chains: ChainsDep,
    queries: QueriesDep,
    from_: Annotated[
        str, Query(alias="from", max_length=64, description="Block number or ISO-8601 time")
    ],
    to: Annotated[
        str | None,
        Query(max_length=64, description="Block number or ISO-8601 time; default: the head"),
    ] = None,
    chain_id: ChainParam = None,
) -> dict[str, Any]:
    """How the wallet's value changed between two points, and why: price moves, interest,
    fees and the owner's own actions, each in USD; they sum to the change."""
    owner = address(wallet, "wallet")
    chain = chain_for(chains, chain_id)
    head = chains.processed(chain)
    start = queries.resolve_at(chain, parse_at(from_), head)
    end = queries.resolve_at(chain, parse_at(to), head)
    if start.number > end.number:
        raise InvalidInput("from is after to")
    return queries.diff(owner, start, end)


@router.get("/portfolio/{wallet}/history", response_model=WalletHistoryOut, responses=ERRORS)
def portfolio_history(
    wallet: Annotated[str, Path(description="Wallet address (0x…)", max_length=64)],
    chains: ChainsDep,
    queries: QueriesDep,
    window: Annotated[str, Query(description="1m, 1h or 1d")] = "1m",
    from_: FromParam = None,
    to: ToParam = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1440,
    chain_id: ChainParam = None,
) -> dict[str, Any]:
    """The wallet's value per closed window (the sum of its positions' and accounts' window
    opens and closes): what the page's chart draws."""
    owner = address(wallet, "wallet")
    chain = chain_for(chains, chain_id)
    start, end = window_span(queries, chain, window, from_, to)
    rows = queries.wallet_history(chain, owner, window, start, end, limit + 1)
    return {
        "address": owner,
        "window": window,
        "windows": rows[:limit],
        "truncated": len(rows) > limit,
    }


@router.get("/positions", response_model=PositionsPage, responses=ERRORS)
def positions(
    chains: ChainsDep,
    queries: QueriesDep,
    views: HeadViewsDep,
    flt: FilterDep,
    response: Response,
    sort: Annotated[
        str, Query(description="id, value_usd, health_factor, il_usd, il_pct or debt_usd")
    ] = "id",
    order: Annotated[str, Query(description="asc or desc")] = "asc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=400, description="next_cursor of the previous page")
    ] = None,
    at: AtParam = None,
) -> dict[str, Any]:
    """Open LP positions and lending accounts matching the filter, valued, sorted, one page
    at a time, on every chain followed (or those in `chain_id`). Subjects without the sort
    field come last. At the head it is answered from memory once this process's head view is
    built (`X-Served-From: head-view`), with the same JSON the store gives for that block."""
    if order not in ("asc", "desc"):
        raise InvalidInput(f"order={order!r} is not asc or desc")
    check_sort(sort)
    as_ofs, subjects = subjects_for(chains, queries, views, flt, at, response)
    return positions_page(
        as_ofs, subjects, sort=sort, descending=order == "desc", limit=limit, cursor=cursor
    )


@router.get("/aggregate", response_model=AggregateOut, responses=ERRORS)
def aggregate(
    chains: ChainsDep,
    queries: QueriesDep,
    views: HeadViewsDep,
    flt: FilterDep,
    response: Response,
    group_by: Annotated[
        str | None,
        Query(max_length=100, description="Comma-separated: protocol, chain, token, pool, owner"),
    ] = None,
    metrics: Annotated[
        str | None,
        Query(
            max_length=1000,
            description="Comma-separated: count, sum(f), avg(f), min(f), max(f), quantile(q,f) "
            "for f in value_usd, il_usd, il_pct, debt_usd, health_factor, uncollected_usd",
        ),
    ] = None,
    at: AtParam = None,
) -> dict[str, Any]:
    """Positions and accounts matching the filter, grouped and aggregated, on every chain
    followed (or those in `chain_id`), each at its own head or at the time `at`. At the head
    it is answered from memory once this process's head view is built (as /v1/positions)."""
    dims, wanted = parse_group_by(group_by), parse_metrics(metrics)
    as_ofs, subjects = subjects_for(chains, queries, views, flt, at, response)
    return {
        "as_of": as_ofs[0].json(),
        "chains": [a.json() for a in as_ofs],
        "group_by": list(dims),
        "groups": aggregate_subjects(subjects, dims, wanted),
    }


def subjects_for(
    chains: Chains,
    queries: Queries,
    views: HeadViews,
    flt: Filter,
    at: str | None,
    response: Response,
) -> tuple[list[AsOf], list[dict[str, Any]]]:
    """The filter's subjects on the chains it covers, with the block each chain is answered
    at: at the heads from the head view when it can answer (and the response says so), else
    from the store."""
    wanted = chains_for(chains, flt.chain_id)
    if at is None:
        found = views.subjects_across(flt, wanted)
        if found is not None:
            response.headers["X-Served-From"] = "head-view"
            return found
    as_ofs = as_of_each(chains, queries, wanted, at)
    return as_ofs, queries.subjects_across(as_ofs, flt)


def window_span(
    queries: Queries, chain: int, window: str, from_: str | None, to: str | None
) -> tuple[datetime | None, datetime | None]:
    """A history request's window length checked, and its bounds as times."""
    if window not in WINDOW_SECONDS:
        raise InvalidInput(f"window={window!r} is not one of {', '.join(WINDOW_SECONDS)}")
    start, end = (queries.time_of(chain, parse_at(v)) for v in (from_, to))
    if start is not None and end is not None and start >= end:
        raise InvalidInput("from must be before to")
    return start, end


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
    from_: FromParam = None,
    to: ToParam = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Closed windows of a position or lending account: open, high, low and close of its USD
    value, IL and health factor, and the fees it earned, for windows starting in [from, to)."""
    chain = decimal_uint(position_id.split(":", 1)[0])
    if chain is None:
        raise InvalidInput(f"{position_id!r} is not a position or account id")
    start, end = window_span(queries, chain, window, from_, to)
    if not queries.subject_exists(chain, position_id):
        raise NotFound(f"no position or account {position_id!r}")
    rows = queries.windows(chain, position_id, window, start, end, limit + 1)
    return {
        "id": position_id,
        "window": window,
        "windows": rows[:limit],
        "truncated": len(rows) > limit,
    }
