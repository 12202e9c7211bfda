"""One defimon process's ports wired together, without a flow: what `defimon api` runs on.
`Runtime` (defimon/runtime.py) adds the flow; only it imports Bytewax."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flows.endpoint import ChainEndpoint
from ports.bus import Bus, InProcessBus, Peers
from ports.settings import Settings
from ports.status import FlowStatus
from ports.store import Store
from ports.watch import WatchRequests

if TYPE_CHECKING:  # the API (FastAPI, uvicorn) loads only for the commands that serve it
    from api.app import ApiParts


class Instance:
    def __init__(
        self,
        settings: Settings,
        endpoints: list[ChainEndpoint],
        *,
        suggested_wallets: tuple[str, ...] = (),
        bus: Bus | None = None,
        head_feed: Bus | None = None,
        peers: Peers | None = None,
        evaluates_alerts: bool = True,
    ) -> None:
        self.settings = settings
        # `defimon api --processes N`: the other processes, and whether this one evaluates.
        self.peers = peers
        self.evaluates_alerts = evaluates_alerts
        self.endpoints = endpoints
        self.suggested_wallets = suggested_wallets
        self.bus: Bus = bus or InProcessBus()
        # The stored rows, for the API's head view (schemas/head_feed.py): a bus of its own, so
        # stream clients and their event ids never see them.
        self.head_feed: Bus = head_feed or InProcessBus()
        # This process's flow's progress; in `defimon api` the bus fills it in from the flow
        # process's reports.
        self.status = FlowStatus()
        # Wallets added at runtime (POST /v1/watch), handed to the chain readers.
        self.watch_requests = WatchRequests()
        self.store = Store.connect(
            settings.clickhouse_url, settings.data_dir, settings.clickhouse_analyst_url
        )
        self.store.migrate()

    def api_parts(self) -> ApiParts:
        from api.app import ApiParts

        return ApiParts(
            settings=self.settings,
            store=self.store,
            bus=self.bus,
            head_feed=self.head_feed,
            status=self.status,
            endpoints=self.endpoints,
            watch_requests=self.watch_requests,
            suggested_wallets=self.suggested_wallets,
            peers=self.peers,
            evaluates_alerts=self.evaluates_alerts,
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Close the bus (it sends what it holds), then the store. (`timeout` is for a flow
        to end: Runtime.stop's.)"""
        self.bus.close()
        self.head_feed.close()
        self.store.close()
