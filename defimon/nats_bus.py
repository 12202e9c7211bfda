"""The bus between processes: NATS JetStream.

The flow process publishes every event to a JetStream stream (subjects
`<prefix>.<chain_id>.<kind>`); each API process reads it with an ordered push consumer that
starts after the stream's last message at startup, and hands the events to its hub with their
**stream sequence** as the event id. Every API process sees the same ids, so a client can resume
on any of them, and one that lacks a resume point in its ring reads it back from the stream.

Flow side: `publish` is called from the flow's thread and never blocks. Events go through a
bounded buffer to a background thread with its own asyncio loop, which publishes them pipelined
and waits for JetStream's acks; on a failure (a server restart) it reconnects and sends the same
batch again. Each message carries `Nats-Msg-Id`, a hash of the event's identity and content, so
a resend, or a Bytewax replay after a crash, is dropped by the server's duplicate window. When
the buffer is full (the server is down for long), events are dropped and counted
(`defimon_bus_dropped_events`): the flow and the store keep going, and the store stays the truth.

The flow also sends its progress every second on a plain NATS subject (`<prefix>` with
`.status` in place of `.events`), not into the stream: API processes mirror it into their
FlowStatus for /healthz, /readyz and the `confirmed` flag.

API processes behind one port (`defimon api --processes N`) talk to each other on plain subjects
too (`<prefix>.peers.<topic>`, ports/bus.py `Peers`): a rule changed, an alert fired. These are
not events of the chain, so they stay out of the stream and its sequence.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import nats
import orjson
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from ports.bus import Listener, Peers, SequencedBus, SequencedListener
from ports.metrics import METRICS
from ports.status import FlowStatus
from schemas.stream import BusEvent

log = structlog.get_logger("defimon.nats")

ACK_TIMEOUT = 10.0  # seconds for JetStream to ack one batch before it is sent again
STATUS_SECONDS = 1.0
HEAD_FEED_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class NatsConfig:
    url: str
    stream: str = "DEFIMON"
    prefix: str = "defimon"
    max_msgs: int = 1_000_000
    max_age_seconds: float = 86_400.0
    duplicate_window_seconds: float = 120.0
    buffer_events: int = 100_000  # flow side: events waiting for the server before drops

    @property
    def events_subject(self) -> str:
        return f"{self.prefix}.events.>"

    @property
    def status_subject(self) -> str:
        return f"{self.prefix}.status"

    def subject(self, event: BusEvent) -> str:
        return f"{self.prefix}.events.{event.chain_id}.{event.kind}"

    def head_feed(self) -> NatsConfig:
        """The head feed's stream (schemas/head_feed.py): the stored rows for API head views,
        apart from the events so stream clients and their ids never see them. Kept briefly:
        an API process builds its view from the store and then follows the feed live."""
        return replace(
            self,
            stream=f"{self.stream}_HEAD",
            prefix=f"{self.prefix}.head",
            max_age_seconds=HEAD_FEED_SECONDS,
        )

    def peers_subject(self, topic: str) -> str:
        return f"{self.prefix}.peers.{topic}"


def _raw_event(event: BusEvent) -> dict[str, Any]:
    return {
        "k": event.kind,
        "c": event.chain_id,
        "n": event.block_number,
        "h": event.block_hash,
        "d": event.data,
        "o": event.owners,
        "t": event.produced_at,
    }


def encode_event(event: BusEvent) -> bytes:
    """Compact JSON; `produced_at` rides along for the latency metric."""
    return orjson.dumps(_raw_event(event))


def decode_event(body: bytes) -> BusEvent:
    return _event(orjson.loads(body))


def _event(raw: dict[str, Any]) -> BusEvent:
    return BusEvent(
        kind=raw["k"],
        chain_id=raw["c"],
        block_number=raw["n"],
        block_hash=raw["h"],
        data=raw["d"],
        owners=tuple(raw["o"]),
        produced_at=raw["t"],
    )


def message_id(event: BusEvent) -> str:
    """The event's identity: kind, chain, block (number and hash) and its data. A replay of the
    same block produces the same events, hence the same ids; a reorged block has another hash."""
    digest = hashlib.blake2b(digest_size=16)
    head = f"{event.kind}|{event.chain_id}|{event.block_number}|{event.block_hash}|"
    digest.update(head.encode())
    digest.update(orjson.dumps(event.data, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def status_snapshot(status: FlowStatus) -> dict[str, Any]:
    """What this flow process knows of each chain. In a cluster of flow processes each knows
    part: a chain's head where its source's partition runs (Bytewax spreads them over the
    workers), what is stored where the store's one sink partition runs (worker 0), so each
    sends only what it knows."""
    chains = []
    for c in status.chains():
        chain: dict[str, Any] = {"chain_id": c.chain_id}
        if c.head >= 0:
            chain["head"] = c.head
        if c.first_block >= 0:  # this process stores the chain's rows
            chain |= {"processed": c.processed, "live": c.live, "first_block": c.first_block}
        chains.append(chain)
    return {
        "running": status.running,
        "error": status.error,
        "sent_at": time.time(),
        "chains": chains,
    }


def apply_status(status: FlowStatus, snapshot: dict[str, Any]) -> None:
    """Mirror a flow process's progress into this process's FlowStatus (the parts it sent)."""
    status.running = bool(snapshot.get("running"))
    status.error = snapshot.get("error")
    status.remote_seen_at = time.monotonic()
    for chain in snapshot.get("chains", []):
        progress = status.chain(int(chain["chain_id"]))
        if "head" in chain:
            progress.head = int(chain["head"])
        if "processed" in chain:
            progress.processed = int(chain["processed"])
            progress.live = bool(chain["live"])
            progress.first_block = int(chain["first_block"])


async def connect(url: str, name: str) -> NatsClient:
    """Connect, waiting for the server if it is not up yet; reconnect forever afterwards."""
    delay = 0.2
    while True:
        try:
            return await nats.connect(
                servers=[url],
                name=name,
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=_log_error,
                disconnected_cb=_log_disconnected,
                reconnected_cb=_log_reconnected,
            )
        except Exception as exc:  # the server is not up yet (or refuses): try again
            log.warning("nats.connect_retry", url=url, error=str(exc) or type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _log_error(exc: Exception) -> None:
    log.warning("nats.error", error=str(exc) or type(exc).__name__)


async def _log_disconnected() -> None:
    log.warning("nats.disconnected")


async def _log_reconnected() -> None:
    log.info("nats.reconnected")


async def ensure_stream(js: JetStreamContext, config: NatsConfig) -> js_api.StreamInfo:
    """Create the stream, or bring its limits to the configured ones."""
    stream = js_api.StreamConfig(
        name=config.stream,
        subjects=[config.events_subject],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        max_msgs=config.max_msgs,
        max_age=config.max_age_seconds,
        duplicate_window=config.duplicate_window_seconds,
        discard=js_api.DiscardPolicy.OLD,
    )
    try:
        await js.stream_info(config.stream)
    except NotFoundError:
        return await js.add_stream(stream)
    return await js.update_stream(stream)


class NatsBus(SequencedBus, Peers):
    def __init__(self, config: NatsConfig, *, status: FlowStatus | None = None) -> None:
        self.config = config
        # Flow side: the status to send; API side: the status to mirror into.
        self.status = status
        self._lock = threading.Lock()
        self._buffered = 0
        self.published = 0  # acked by JetStream
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[list[BusEvent] | None] | None = None
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        # API side
        self._listeners: list[Listener] = []
        self._sequenced: list[SequencedListener] = []
        self._consumer: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[int] | None = None
        self._reader: NatsClient | None = None
        self._reader_js: JetStreamContext | None = None
        self._pending: list[tuple[int, BusEvent]] = []
        # Peers: who this process is to the others, and what it follows.
        self._peer_id = uuid.uuid4().hex
        self._peer_listeners: list[tuple[asyncio.AbstractEventLoop, str, Listener]] = []
        self._peer_tasks: set[asyncio.Task[Any]] = set()
        self._peers_connected: NatsClient | None = None

    # ---- flow side ------------------------------------------------------------------------

    def start_publisher(self) -> None:
        """Start the publishing thread (publish does this on first use)."""
        with self._lock:
            if self._thread is not None:
                return
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run_publisher, args=(ready,), name="defimon-nats", daemon=True
            )
            self._thread.start()
        ready.wait(10)

    def publish(self, events: Sequence[BusEvent]) -> None:
        if not events:
            return
        if self._thread is None:
            self.start_publisher()
        with self._lock:
            if self._buffered + len(events) > self.config.buffer_events:
                self.dropped += len(events)
                METRICS.bus_dropped_events.inc(len(events))
                log.warning("bus.overflow", dropped=len(events), buffered=self._buffered)
                return
            self._buffered += len(events)
            self._idle.clear()
        assert self._loop is not None and self._queue is not None
        self._loop.call_soon_threadsafe(self._queue.put_nowait, list(events))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every event handed to `publish` is acked (or dropped)."""
        return self._idle.wait(timeout)

    def _run_publisher(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._queue = asyncio.Queue()
        ready.set()
        try:
            loop.run_until_complete(self._publisher_main())
        finally:
            loop.close()

    async def _publisher_main(self) -> None:
        assert self._queue is not None
        nc = await connect(self.config.url, "defimon-flow")
        js = nc.jetstream(timeout=ACK_TIMEOUT)
        await self._ensure_stream_retrying(js)
        status_task = asyncio.create_task(self._send_status(nc)) if self.status else None
        try:
            while True:
                batch = await self._queue.get()
                if batch is None:
                    break
                await self._publish_batch(js, batch)
                with self._lock:
                    self._buffered -= len(batch)
                    if self._buffered == 0:
                        self._idle.set()
        finally:
            if status_task is not None:
                status_task.cancel()
            try:
                await nc.drain()
            except Exception:  # closing is best effort
                pass

    async def _ensure_stream_retrying(self, js: JetStreamContext) -> None:
        while True:
            try:
                await ensure_stream(js, self.config)
                return
            except Exception as exc:  # JetStream not ready yet (a server restarting)
                log.warning("nats.stream_retry", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _publish_batch(self, js: JetStreamContext, batch: list[BusEvent]) -> None:
        messages = [(self.config.subject(e), encode_event(e), message_id(e)) for e in batch]
        attempt = 0
        while True:
            futures: list[asyncio.Future[js_api.PubAck]] = []
            try:
                for subject, body, msg_id in messages:
                    futures.append(
                        await js.publish_async(
                            subject, body, headers={"Nats-Msg-Id": msg_id}, wait_stall=ACK_TIMEOUT
                        )
                    )
                await asyncio.wait_for(asyncio.gather(*futures), ACK_TIMEOUT)
                self.published += len(messages)
                METRICS.bus_published_events.inc(len(messages))
                return
            except Exception as exc:  # no ack: the server restarted or is away; send again
                for future in futures:
                    future.cancel()  # frees the client's in-flight slots
                attempt += 1
                log.warning(
                    "bus.publish_retry",
                    attempt=attempt,
                    events=len(messages),
                    error=str(exc) or type(exc).__name__,
                )
                await asyncio.sleep(min(0.2 * attempt, 2.0))
                await self._ensure_stream_retrying(js)

    async def _send_status(self, nc: NatsClient) -> None:
        assert self.status is not None
        while True:
            try:
                await nc.publish(
                    self.config.status_subject, orjson.dumps(status_snapshot(self.status))
                )
            except Exception as exc:  # disconnected: the next one goes after the reconnect
                log.debug("nats.status_failed", error=str(exc))
            await asyncio.sleep(STATUS_SECONDS)

    # ---- API side -------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, listener: Listener) -> None:
        self._listeners.append(listener)
        self._start_consumer(loop)

    def attach_sequenced(
        self, loop: asyncio.AbstractEventLoop, listener: SequencedListener
    ) -> None:
        """Like attach, with each event's stream sequence."""
        self._sequenced.append(listener)
        self._start_consumer(loop)

    def _start_consumer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._consumer is None:
            self._ready = loop.create_future()
            self._consumer = loop.create_task(self._consume())

    async def started(self) -> int:
        """Once the consumer is reading: the stream's last sequence before it started."""
        assert self._ready is not None, "attach first"
        return await self._ready

    async def _consume(self) -> None:
        nc = await connect(self.config.url, "defimon-api")
        self._reader = nc
        js = nc.jetstream(timeout=ACK_TIMEOUT)
        self._reader_js = js
        info = await ensure_stream(js, self.config)  # the API may start before the flow
        last = info.state.last_seq
        if self.status is not None:
            status = self.status

            async def on_status(msg: Msg) -> None:
                try:
                    apply_status(status, orjson.loads(msg.data))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("bus.bad_status", error=str(exc))

            await nc.subscribe(self.config.status_subject, cb=on_status)
        self._peers_connected = nc  # from here on, `follow` subscribes by itself
        for _, topic, listener in list(self._peer_listeners):
            await self._subscribe_peers(nc, topic, listener)
        await js.subscribe(
            self.config.events_subject,
            stream=self.config.stream,
            cb=self._on_message,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
            config=js_api.ConsumerConfig(opt_start_seq=last + 1),
        )
        log.info("bus.consuming", stream=self.config.stream, after=last)
        assert self._ready is not None
        self._ready.set_result(last)

    async def _on_message(self, msg: Msg) -> None:
        try:
            item = (msg.metadata.sequence.stream, decode_event(msg.data))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("bus.bad_message", subject=msg.subject, error=str(exc))
            return
        # Messages that arrive in one turn of the loop reach the listeners as one batch.
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._deliver)
        self._pending.append(item)

    def _deliver(self) -> None:
        batch, self._pending = self._pending, []
        for sequenced in self._sequenced:
            sequenced(batch)
        if self._listeners:
            events = [e for _, e in batch]
            for listener in self._listeners:
                listener(events)

    # ---- peers (API processes behind one port) ---------------------------------------------

    def announce(self, topic: str, events: Sequence[BusEvent]) -> None:
        nc = self._reader
        if nc is None:
            log.warning("bus.peers_not_connected", topic=topic)
            return
        body = orjson.dumps([_raw_event(e) for e in events])
        headers = {"Defimon-Sender": self._peer_id}
        self._spawn(nc.publish(self.config.peers_subject(topic), body, headers=headers))

    def follow(self, loop: asyncio.AbstractEventLoop, topic: str, listener: Listener) -> None:
        self._peer_listeners.append((loop, topic, listener))
        if self._peers_connected is not None:  # _consume subscribed the earlier ones
            self._spawn(self._subscribe_peers(self._peers_connected, topic, listener))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._peer_tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._peer_tasks.discard)

    async def _subscribe_peers(self, nc: NatsClient, topic: str, listener: Listener) -> None:
        async def on_notice(msg: Msg) -> None:
            if (msg.headers or {}).get("Defimon-Sender") == self._peer_id:
                return  # this process's own announcement
            try:
                events = [_event(raw) for raw in orjson.loads(msg.data)]
            except (ValueError, KeyError, TypeError) as exc:
                log.error("bus.bad_notice", subject=msg.subject, error=str(exc))
                return
            listener(events)

        await nc.subscribe(self.config.peers_subject(topic), cb=on_notice)

    async def between(
        self, first: int, last: int, wants: Callable[[BusEvent], bool], limit: int
    ) -> tuple[list[tuple[int, BusEvent]], bool] | None:
        """The stream's events with sequences first..last that `wants` takes, at most `limit`
        of them, and whether that is all of them; None when `first` is no longer kept."""
        js = self._reader_js
        assert js is not None, "the consumer is not running"
        info = await js.stream_info(self.config.stream)
        if first < info.state.first_seq or last > info.state.last_seq:
            return None
        found: list[tuple[int, BusEvent]] = []
        if first > last:
            return found, True
        reader = await js.pull_subscribe(
            self.config.events_subject,
            stream=self.config.stream,
            config=js_api.ConsumerConfig(
                deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=first,
                ack_policy=js_api.AckPolicy.NONE,
                inactive_threshold=30.0,
                mem_storage=True,
            ),
        )
        try:
            seq = first - 1
            while seq < last:
                for msg in await reader.fetch(min(256, last - seq), timeout=ACK_TIMEOUT):
                    seq = msg.metadata.sequence.stream
                    if seq > last:
                        break
                    event = decode_event(msg.data)
                    if wants(event):
                        found.append((seq, event))
                        if len(found) >= limit:
                            return found, seq >= last
        finally:
            try:
                await reader.unsubscribe()
            except Exception:  # the ephemeral consumer expires by itself
                pass
        return found, True

    async def last_sequence(self) -> int:
        js = self._reader_js
        assert js is not None, "the consumer is not running"
        info = await js.stream_info(self.config.stream)
        return info.state.last_seq

    def close(self) -> None:
        if self._loop is not None and self._queue is not None and not self._loop.is_closed():
            self.flush(10)
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
            except RuntimeError:  # the loop already ended
                pass
            if self._thread is not None:
                self._thread.join(10)

    async def aclose(self) -> None:
        """API side: stop reading."""
        if self._consumer is not None:
            self._consumer.cancel()
        if self._reader is not None:
            try:
                await self._reader.close()
            except Exception:  # best effort
                pass
