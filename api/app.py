"""The FastAPI application: routes, error mapping, the page, /metrics, and the hub's wiring."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.alerts.engine import AlertEngine
from api.alerts.store import AlertStore
from api.hub import Hub
from api.queries import Queries
from api.routes import alerts, health, portfolio, sql, stream, watch
from defimon import __version__
from defimon.analyst_runner import AnalystSql
from defimon.analyst_sql import SqlLimits, SqlTimeout
from defimon.bus import SequencedBus
from defimon.keys import KeyFile, RateLimiter
from defimon.metrics import METRICS
from defimon.runtime import Runtime
from flows.rpc import RpcClient
from schemas.api import ErrorOut
from schemas.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    RpcError,
    StoreError,
    Unauthorized,
)

STATIC = Path(__file__).parent / "static"


def _block_time_from_nodes(runtime: Runtime) -> Callable[[int, int], int | None]:
    """A block's timestamp from the chain's node, for blocks the store does not hold."""
    clients = {
        e.config.chain_id: RpcClient(e.http_urls, timeout=5, chain_id=e.config.chain_id)
        for e in runtime.endpoints
    }

    @lru_cache(maxsize=65536)
    def block_time(chain_id: int, number: int) -> int | None:
        client = clients.get(chain_id)
        if client is None:
            return None
        try:
            block = client.call("eth_getBlockByNumber", [hex(number), False])
            return int(block["timestamp"], 16)
        except (RpcError, KeyError, TypeError, ValueError):
            return None

    return block_time


def create_app(runtime: Runtime, *, start_flow: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        bus = runtime.bus
        if isinstance(bus, SequencedBus):
            # Event ids are the bus's own, the same in every API process.
            bus.attach_sequenced(loop, app.state.hub.publish_sequenced)
            bus.attach(loop, app.state.alerts.on_events)
            app.state.hub.start_at(await bus.started())
        else:
            bus.attach(loop, app.state.hub.publish)
            bus.attach(loop, app.state.alerts.on_events)
        await app.state.alerts.start()
        if start_flow:
            runtime.start_flow()
        yield
        await app.state.alerts.stop()
        if isinstance(bus, SequencedBus):
            await bus.aclose()
        # Runtime.stop joins the flow thread; keep the loop free while it flushes.
        await asyncio.to_thread(runtime.stop)
        # chDB binds one data path per process until every handle is closed.
        app.state.queries.store.close()
        app.state.analyst.close()
        app.state.alerts.store.close()

    app = FastAPI(
        title="defimon",
        version=__version__,
        description="Real-time DeFi positions, exact to the wei, block by block.",
        lifespan=lifespan,
        # Validation errors are answered as one sentence (see _validation below), not as
        # FastAPI's list of error objects: document that shape for every route.
        responses={422: {"model": ErrorOut, "description": "A parameter is malformed"}},
    )
    app.state.runtime = runtime
    app.state.queries = Queries(runtime.store.another(), _block_time_from_nodes(runtime))
    app.state.analyst = AnalystSql(runtime.store, SqlLimits.from_settings(runtime.settings))
    app.state.hub = Hub(
        runtime.settings.sse_queue_size,
        runtime.settings.sse_replay,
        runtime.bus if isinstance(runtime.bus, SequencedBus) else None,
    )
    app.state.keys = KeyFile(runtime.settings.keys_path)
    app.state.limiter = RateLimiter()
    app.state.alerts = AlertEngine(
        AlertStore(runtime.store.another()), app.state.hub, app.state.queries, runtime
    )

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(SqlTimeout)
    async def _sql_timeout(_: Request, exc: SqlTimeout) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=408)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(RateLimited)
    async def _rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        retry = str(max(1, math.ceil(exc.retry_after)))
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": retry})

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StoreError)
    async def _store(_: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"detail": problems}, status_code=422)

    app.include_router(health.router)
    app.include_router(portfolio.router)
    app.include_router(stream.router)
    app.include_router(sql.router)
    app.include_router(alerts.router)
    app.include_router(watch.router)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        runtime.status.export()
        return Response(generate_latest(METRICS.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app
