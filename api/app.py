"""The FastAPI application: routes, error mapping, the page, /metrics, and the hub's wiring.

It is built from its parts (`ApiParts`), not from the process that runs it: `defimon run`
and `defimon demo` hand it the parts of a process that also runs the flow, `defimon api`
those of a process without one (so neither Bytewax nor the flow is imported there).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from api.alerts.engine import AlertEngine
from api.alerts.store import AlertStore
from api.chains import Chains
from api.connection import record
from api.head_view import HeadViews
from api.hub import Hub
from api.queries import Queries
from api.routes import alerts, health, portfolio, sql, stream, watch
from flows.endpoint import ChainEndpoint
from flows.rpc import RpcClient
from ports import __version__
from ports.analyst_runner import AnalystSql
from ports.analyst_sql import SqlLimits, SqlTimeout
from ports.bus import Bus, Peers, SequencedBus
from ports.keys import KeyFile, RateLimiter
from ports.metrics import METRICS
from ports.settings import Settings
from ports.status import FlowStatus
from ports.store import Store
from ports.watch import WatchRequests
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


@dataclass(frozen=True, slots=True)
class ApiParts:
    """What the API is built from; the composition root (defimon/) wires them."""

    settings: Settings
    # The process's store handle: the API opens its own handles from it (`another`) and
    # closes those; the owner closes this one.
    store: Store
    bus: Bus  # events in; attached to the hub and the alert engine while serving
    # The flow's progress: this process's flow, or (defimon api) the flow process's as the
    # bus reports it.
    status: FlowStatus
    endpoints: Sequence[ChainEndpoint]
    watch_requests: WatchRequests  # POST /v1/watch hands wallets to the chain readers here
    suggested_wallets: tuple[str, ...] = ()
    # The stored rows (schemas/head_feed.py), for the head view; None: no head view.
    head_feed: Bus | None = None
    # Several API processes behind one port: the others, and whether this one evaluates the
    # alert rules (exactly one does; see api/alerts/engine.py).
    peers: Peers | None = None
    evaluates_alerts: bool = True


def _block_time_from_nodes(
    endpoints: Sequence[ChainEndpoint],
) -> Callable[[int, int], int | None]:
    """A block's timestamp from the chain's node, for blocks the store does not hold."""
    clients = {
        e.config.chain_id: RpcClient(e.http_urls, timeout=5, chain_id=e.config.chain_id)
        for e in endpoints
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


class _App(FastAPI):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Before any middleware wraps `send`: the stream writes to the connection under it.
        if scope["type"] == "http":
            record(scope, send)
        await super().__call__(scope, receive, send)


def create_app(
    parts: ApiParts,
    *,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> FastAPI:
    """The app over `parts`. `on_start` runs once the bus is attached (where the one-process
    runtime starts its flow); `on_stop` runs, off the event loop, once the alert engine has
    stopped (where the owner stops its flow and closes the bus and its store handle)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        bus = parts.bus
        if isinstance(bus, SequencedBus):
            # Event ids are the bus's own, the same in every API process.
            bus.attach_sequenced(loop, app.state.hub.publish_sequenced)
            bus.attach(loop, app.state.alerts.on_events)
            app.state.hub.start_at(await bus.started())
        else:
            bus.attach(loop, app.state.hub.publish)
            bus.attach(loop, app.state.alerts.on_events)
        head_feed = parts.head_feed
        if head_feed is not None:
            # Following the feed before reading the store: see api/head_view.py.
            head_feed.attach(loop, app.state.head_views.on_events)
            if isinstance(head_feed, SequencedBus):
                await head_feed.started()
            app.state.head_views.follow()
        await app.state.alerts.start()
        if on_start is not None:
            on_start()
        if head_feed is not None:
            app.state.head_views.start()
        yield
        await app.state.alerts.stop()
        if isinstance(bus, SequencedBus):
            await bus.aclose()
        if isinstance(head_feed, SequencedBus):
            await head_feed.aclose()
        if on_stop is not None:
            # Stopping a flow joins its thread; keep the loop free while its sinks flush.
            await asyncio.to_thread(on_stop)
        # chDB binds one data path per process until every handle is closed.
        app.state.queries.store.close()
        app.state.analyst.close()
        app.state.alerts.store.close()

    app = _App(
        title="defimon",
        version=__version__,
        description="Real-time DeFi positions, exact to the wei, block by block.",
        lifespan=lifespan,
        # Validation errors are answered as one sentence (see _validation below), not as
        # FastAPI's list of error objects: document that shape for every route.
        responses={422: {"model": ErrorOut, "description": "A parameter is malformed"}},
    )
    # What the routes take, each as its own dependency (api/deps.py).
    settings = parts.settings
    app.state.settings = settings
    app.state.store = parts.store
    app.state.status = parts.status
    app.state.chains = Chains(parts.endpoints, parts.status)
    app.state.watch_requests = parts.watch_requests
    app.state.suggested_wallets = parts.suggested_wallets
    app.state.queries = Queries(parts.store.another(), _block_time_from_nodes(parts.endpoints))
    # The head portfolio from memory (api/head_view.py); built once the bus is attached.
    app.state.head_views = HeadViews(
        parts.store, app.state.chains, app.state.queries.ctx.block_time
    )
    app.state.analyst = AnalystSql(parts.store, SqlLimits.from_settings(settings))
    app.state.hub = Hub(
        settings.sse_queue_size,
        settings.sse_replay,
        parts.bus if isinstance(parts.bus, SequencedBus) else None,
    )
    app.state.keys = KeyFile(settings.keys_path)
    app.state.limiter = RateLimiter()
    app.state.alerts = AlertEngine(
        AlertStore(parts.store.another()),
        app.state.hub,
        app.state.queries,
        app.state.chains,
        settings,
        evaluates=parts.evaluates_alerts,
        peers=parts.peers,
        head=app.state.head_views,
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
        parts.status.export()
        return Response(generate_latest(METRICS.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app
