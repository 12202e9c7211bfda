"""One process, everything in it: the flow in a worker thread, the API in the event loop.

chDB locks its data directory to one process, so the embedded mode is this single process;
the flow writes through its own store handle and the API reads through another. The ports
(store, bus, status, watch requests) are wired by `Instance`; this adds the flow, and is the
only module of the composition root that imports Bytewax.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import structlog
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from defimon.instance import Instance
from defimon.recovery import discard_uncommitted_snapshots, retired_steps
from flows.dataflow import build_flow
from flows.endpoint import ChainEndpoint
from flows.source import HeadFollowing
from ports.bus import Bus
from ports.metrics import METRICS
from ports.settings import Settings
from schemas.errors import ConfigError, DefimonError

log = structlog.get_logger("defimon.runtime")

RECOVERY_PARTITIONS = 4  # fixed for the life of a data directory; allows up to 4 workers


def tune_gc() -> None:
    """The flow keeps hundreds of thousands of long-lived small objects (positions, accounts,
    ticks). CPython's default thresholds rescan them every few hundred allocations; raising the
    first threshold makes young collections rarer without letting garbage pile up, because the
    flow creates little cyclic garbage (measured: about +30% backfill, fewer 100 ms pauses)."""
    gc.set_threshold(50_000, 20, 100)
    if _time_collections not in gc.callbacks:
        gc.callbacks.append(_time_collections)


# Once live: young collections of 10,000 objects instead of 50,000 (measured 25-56 ms each on
# the loaded 2-core machine; a fifth of that each, five times as often).
LIVE_GC_THRESHOLD = (10_000, 20, 100)


def freeze_when_live(live: Callable[[], bool], stop: threading.Event, poll: float = 0.5) -> bool:
    """Once `live()`: move every object there is (the state the backfill built) out of the
    collector's reach, and make young collections smaller. Otherwise the first older
    collection after the backfill rescans that whole heap on the live path (measured: 379 ms
    for one, after 2,500 live blocks). The state's objects are freed by reference counting
    when replaced, so freezing them leaks only garbage cycles among them, which the flow
    does not make. False if stopped first."""
    while not stop.is_set():
        if live():
            gc.freeze()
            gc.set_threshold(*LIVE_GC_THRESHOLD)
            log.info("gc.frozen", objects=gc.get_freeze_count(), threshold=LIVE_GC_THRESHOLD)
            return True
        stop.wait(poll)
    return False


_collection_started: float | None = None


def _time_collections(phase: str, info: dict[str, int]) -> None:
    """Every collection's pause, per generation, in /metrics (defimon_flow_stage_seconds):
    whichever thread runs it holds the interpreter lock, so the flow waits as well."""
    global _collection_started
    if phase == "start":
        _collection_started = time.perf_counter()
    elif _collection_started is not None:
        METRICS.flow_stage_seconds.labels(stage=f"gc_gen{info['generation']}").observe(
            time.perf_counter() - _collection_started
        )
        _collection_started = None


def root_cause(exc: BaseException) -> BaseException:
    """Bytewax wraps an operator's exception in its own; the first of ours in the chain says
    what went wrong (e.g. ReorgTooDeep), else the innermost."""
    seen: BaseException | None = exc
    innermost = exc
    while seen is not None:
        if isinstance(seen, DefimonError):
            return seen
        innermost = seen
        seen = seen.__cause__ or seen.__context__
    return innermost


class Runtime(Instance):
    def __init__(
        self,
        settings: Settings,
        endpoints: list[ChainEndpoint],
        *,
        suggested_wallets: tuple[str, ...] = (),
        bus: Bus | None = None,
        head_feed: Bus | None = None,
    ) -> None:
        tune_gc()
        super().__init__(
            settings,
            endpoints,
            suggested_wallets=suggested_wallets,
            bus=bus,
            head_feed=head_feed,
        )
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def recovery_dir(self) -> Path:
        return self.settings.data_dir / "recovery"

    def _recovery(self) -> RecoveryConfig:
        if not self.recovery_dir.exists():
            self.recovery_dir.mkdir(parents=True)
            init_db_dir(self.recovery_dir, RECOVERY_PARTITIONS)
        else:
            retired = retired_steps(self.recovery_dir)
            if retired:
                raise ConfigError(
                    f"the recovery directory {self.recovery_dir} holds the state of an earlier "
                    f"defimon under step ids {', '.join(retired)} (now 'market' and "
                    f"'positions'); delete it (rm -r {self.recovery_dir}): the flow then reads "
                    "each chain again from its start block and writes the same rows"
                )
            discard_uncommitted_snapshots(self.recovery_dir)
        return RecoveryConfig(str(self.recovery_dir))

    def start_flow(
        self,
        *,
        workers_per_process: int = 1,
        process_id: int | None = None,
        addresses: list[str] | None = None,
    ) -> None:
        """Run the dataflow in a thread. Several Bytewax processes (`addresses`, one
        `process_id` each) share the recovery partitions, so workers in all processes
        together are at most RECOVERY_PARTITIONS."""
        processes = len(addresses) if addresses else 1
        if workers_per_process * processes > RECOVERY_PARTITIONS:
            raise ConfigError(
                f"{workers_per_process} workers x {processes} processes exceeds the recovery "
                f"store's {RECOVERY_PARTITIONS} partitions"
            )
        flow = build_flow(
            self.endpoints,
            open_store=self.store.another,
            bus=self.bus,
            status=self.status,
            stop=self.stop_event,
            shards=self.settings.shards,
            following=HeadFollowing(
                self.settings.poll_interval,
                self.settings.reorg_check_seconds,
                self.settings.head_timeout_seconds,
            ),
            watch_requests=self.watch_requests,
            # API processes (this one's, or defimon api's over NATS) keep a head view from it.
            head_feed=self.head_feed,
        )
        recovery = self._recovery()

        def run() -> None:
            self.status.running = True
            try:
                cli_main(
                    flow,
                    workers_per_process=workers_per_process,
                    process_id=process_id,
                    addresses=addresses,
                    epoch_interval=timedelta(seconds=self.settings.epoch_seconds),
                    recovery_config=recovery,
                )
                # Every block counted here is stored: the sinks flushed on the way out.
                processed = {str(c.chain_id): c.processed for c in self.status.chains()}
                log.info("flow.stopped", processed=processed)
            except BaseException as exc:  # the API keeps serving and reports it at /healthz
                cause = root_cause(exc)
                self.status.error = f"{type(cause).__name__}: {cause}"
                # Bytewax wraps the step's own exception; the traceback names it.
                log.error("flow.failed", error=self.status.error, exc_info=exc)
            finally:
                self.status.running = False

        self._thread = threading.Thread(target=run, name="defimon-flow", daemon=True)
        self._thread.start()
        chains = [e.config.chain_id for e in self.endpoints]
        threading.Thread(
            target=freeze_when_live,
            args=(lambda: all(self.status.chain(c).live for c in chains), self.stop_event),
            name="defimon-gc-live",
            daemon=True,
        ).start()

    def flow_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the flow (its sinks flush on the way out), then close the bus and the store."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("flow.stop_timeout", seconds=timeout)
        super().stop(timeout)
