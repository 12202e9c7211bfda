from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.chains import Chains
from api.deps import ChainsDep, QueriesDep, SettingsDep, StatusDep, StoreDep, SuggestedWalletsDep
from ports import __version__
from schemas.api import ChainStatusOut, HealthOut, MetaOut, ReadyOut

router = APIRouter(tags=["operations"])


def chain_statuses(chains: Chains) -> list[ChainStatusOut]:
    out = []
    for endpoint in chains.endpoints:
        progress = chains.progress(endpoint.config.chain_id)
        lag = progress.lag
        out.append(
            ChainStatusOut(
                chain_id=progress.chain_id,
                name=endpoint.config.label,
                head=progress.head if progress.head >= 0 else None,
                processed=progress.processed if progress.processed >= 0 else None,
                lag_blocks=lag,
                live=progress.live,
            )
        )
    return out


@router.get("/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}})
def healthz(status: StatusDep) -> JSONResponse:
    """Alive: the process answers and its flow thread has not died. In an API-only process
    (`defimon api`), `flow_running` is the flow process's, as it last reported over the bus."""
    failed = status.error is not None
    body = HealthOut(
        status="failed" if failed else "ok",
        flow_running=status.flow_running(),
        error=status.error,
    )
    return JSONResponse(body.model_dump(), status_code=503 if failed else 200)


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
def readyz(chains: ChainsDep, status: StatusDep, settings: SettingsDep) -> JSONResponse:
    """Ready: every chain finished its backfill and is within the allowed lag of the head.
    In an API-only process: as the flow process last reported, and it reported lately."""
    statuses = chain_statuses(chains)
    limit = settings.ready_lag_blocks
    ready = (
        bool(statuses)
        and all(c.live and c.lag_blocks is not None and c.lag_blocks <= limit for c in statuses)
        and status.error is None
        and (status.remote_seen_at is None or status.flow_running())
    )
    body = ReadyOut(ready=ready, chains=statuses)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/v1/meta", response_model=MetaOut)
def meta(
    chains: ChainsDep, queries: QueriesDep, store: StoreDep, wallets: SuggestedWalletsDep
) -> MetaOut:
    """What this server indexes, where each chain stands, and wallets worth a look."""
    statuses = chain_statuses(chains)
    for chain in statuses:
        indexed = queries.indexed_range(chain.chain_id)
        chain.first_block = indexed[0] if indexed else None
    return MetaOut(
        version=__version__,
        store=store.backend,
        chains=statuses,
        suggested_wallets=list(wallets),
    )
