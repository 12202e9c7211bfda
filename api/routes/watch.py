"""Wallet watch: start showing a wallet at runtime (`POST /v1/watch`), list the watched ones.

Adding a wallet changes what the instance reads from its node (RPC cost), so it takes a
key with the `alerts` scope, the scope of the API's other state-changing routes; listing
takes `read`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from api.chains import Chains
from api.deps import AUTH_ERRORS, ChainsDep, WatchRequestsDep, address, chain_for, require
from protocols.base import ZERO_ADDRESS
from schemas.api import ErrorOut
from schemas.errors import InvalidInput

router = APIRouter(prefix="/v1/watch", tags=["watch"], responses=AUTH_ERRORS)
# How long POST waits for the seed before answering 202 (the seed then still happens).
SEED_WAIT_SECONDS = 10.0


class WatchIn(BaseModel):
    wallet: str = Field(description="Wallet address (0x and 40 hex digits)", max_length=64)
    chain_id: int | None = Field(
        None, ge=1, description="Chain id; needed only when several chains are indexed"
    )


class WatchOut(BaseModel):
    wallet: str
    chain_id: int
    mode: Literal["watch", "balances"] = Field(
        description="watch: positions, accounts and balances from from_block on (wallet "
        "watch mode); balances: the instance indexes the full protocols, so positions are "
        "shown already and this adds the wallet's ERC-20 balances"
    )
    status: Literal["watching", "pending"] = Field(
        description="pending: not seeded yet (answered 202); watching: shown from from_block"
    )
    from_block: int | None = Field(description="The first block the wallet is shown at")


class WatchedOut(BaseModel):
    chain_id: int
    mode: Literal["watch", "balances"]
    wallets: list[WatchOut]


def _mode(chains: Chains, chain_id: int) -> Literal["watch", "balances"]:
    return "watch" if chains.watch_mode(chain_id) else "balances"


@router.post(
    "",
    response_model=WatchOut,
    status_code=200,
    dependencies=[Depends(require("alerts"))],
    responses={
        202: {"model": WatchOut, "description": "Accepted; the seed is still being read"},
        400: {"model": ErrorOut, "description": "Not an address, or an unknown chain"},
    },
)
def add_watch(
    body: WatchIn, chains: ChainsDep, requests: WatchRequestsDep, response: Response
) -> dict[str, Any]:
    """Start showing a wallet: in watch mode its Uniswap V3 positions, Aave account and ERC-20
    balances are read at the current block and followed from there (exact from that block
    on); in full-protocol mode its ERC-20 balances are tracked from the next block."""
    wallet = address(body.wallet, "wallet")
    if wallet == ZERO_ADDRESS:
        raise InvalidInput("the zero address cannot be watched")
    chain = chain_for(chains, body.chain_id)
    requests.add(chain, wallet)
    block = requests.wait(chain, wallet, SEED_WAIT_SECONDS)
    if block is None:
        response.status_code = 202
    return {
        "wallet": wallet,
        "chain_id": chain,
        "mode": _mode(chains, chain),
        "status": "pending" if block is None else "watching",
        "from_block": block,
    }


@router.get(
    "",
    response_model=WatchedOut,
    dependencies=[Depends(require("read"))],
    responses={400: {"model": ErrorOut, "description": "An unknown chain"}},
)
def list_watched(
    chains: ChainsDep,
    requests: WatchRequestsDep,
    chain_id: Annotated[int | None, Query(ge=1, description="Chain id")] = None,
) -> dict[str, Any]:
    """The wallets added with `--watch` or `POST /v1/watch`, and where each starts."""
    chain = chain_for(chains, chain_id)
    mode = _mode(chains, chain)
    return {
        "chain_id": chain,
        "mode": mode,
        "wallets": [
            {"wallet": w, "chain_id": chain, "mode": mode, "status": "watching", "from_block": b}
            for w, b in sorted(requests.watched(chain).items())
        ],
    }
