"""The live alert engine, in the API's event loop beside the hub.

It listens to the bus like the hub does and keeps the latest wire JSON of every open position
and lending account that a rule selects or that an event brought: seeded at the head at
start-up (each rule's filter) and when a rule is created, then kept current by `position` and
`account` events. The seed reads the API's head view (api/head_view.py) where it is built (at
start-up the engine waits for each chain's build rather than read the store beside it); the
store seeds a chain whose view cannot answer (no head feed, a failed build).

Each event is evaluated by every enabled rule whose filter matches it, with the pure evaluator
(api/alerts/rules.py); liquidation rules take `liquidation` events; allocation-drift rules
evaluate a wallet once the events of a block have settled (a block's events arrive in several
batches, one per shard).

Fired alerts go through one writer task, in order: stored (ClickHouse), then published to the
hub as `alert` events (so `/v1/stream` carries them, with their block), then queued for
delivery. Rule states (armed, last fired) are stored on every change, so a restart does not
fire again for a condition that already fired.

With several API processes behind one port (`defimon api --processes N`, `peers` set), exactly
one of them evaluates (`evaluates`): the others keep the rules and the subjects (for the routes)
but fire nothing and deliver nothing, so an alert fires once. Rules live in the store: a process
that creates or deletes one tells the others, which reload them (and, every
RULES_REFRESH_SECONDS, reload anyway, in case a notice was lost). The evaluator hands the alerts
it fires to the other processes, whose stream clients get them as its own clients do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from api.alerts.delivery import Deliverer, Job
from api.alerts.rules import (
    SUBJECT_KINDS,
    Fired,
    Rule,
    Sample,
    SubjectState,
    step,
    wallet_sample,
)
from api.alerts.store import AlertStore
from api.chains import Chains
from api.head_view import HeadViews
from api.hub import Hub
from api.queries import Queries
from ports.bus import Peers
from ports.settings import Settings
from schemas.errors import NotFound, StoreError
from schemas.filters import Filter
from schemas.stream import BusEvent

log = structlog.get_logger("defimon.alerts")

WALLET_SETTLE_SECONDS = 0.25  # let the other shards' events of the block arrive
RULES_REFRESH_SECONDS = 10.0  # peers: notices are at most once; the store is the truth

Transition = tuple[str, str, SubjectState]


def _closed(data: dict[str, Any]) -> bool:
    """A subject that left `/v1/positions`: a burned position, an emptied account."""
    if data.get("burned"):
        return True
    if "reserves" in data:
        return not any(
            r.get("supplied") not in ("0", None) or r.get("debt") not in ("0", None)
            for r in data["reserves"]
        )
    return False


class AlertEngine:
    def __init__(
        self,
        store: AlertStore,
        hub: Hub,
        queries: Queries,
        chains: Chains,
        settings: Settings,
        *,
        evaluates: bool = True,
        peers: Peers | None = None,
        head: HeadViews | None = None,
    ) -> None:
        self.store = store
        self.head = head
        self.evaluates = evaluates
        self.peers = peers
        self.hub = hub
        self.queries = queries
        self.chains = chains
        self.settings = settings
        self.deliverer = Deliverer(store, settings)
        self.rules: dict[str, Rule] = {}
        self.states: dict[str, dict[str, SubjectState]] = {}
        self.subjects: dict[str, dict[str, Any]] = {}
        self._by_owner: dict[tuple[int, str], set[str]] = {}
        self._wallets: dict[tuple[int, str], None] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._out: asyncio.Queue[tuple[list[Fired], list[Transition]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._refreshes: set[asyncio.Task[None]] = set()
        self._seeds: set[asyncio.Task[None]] = set()
        self.seeded: set[int] = set()  # chains whose start-up seed is done
        self.fired = 0

    # Life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write())
        rules = await asyncio.to_thread(self.store.rules)
        states = await asyncio.to_thread(self.store.states)
        self.rules = {r.id: r for r in rules}
        self.states = {r.id: states.get(r.id, {}) for r in rules}
        if self.head is not None and self.head.following:
            self.head.when_built(self._seed_built)
        else:
            await self._seed(list(self.rules.values()), list(self.rules.values()))
            self.seeded.update(self.chains.ids)
        if self.peers is not None:
            self.peers.follow(loop, "rules", lambda _: self._refresh_soon())
            if not self.evaluates:
                self.peers.follow(loop, "alerts", self.hub.publish)
            self._refresher = loop.create_task(self._refresh_every(RULES_REFRESH_SECONDS))
        if self.evaluates:
            await self._resume_deliveries()

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self._flush is not None:
            self._flush.cancel()
        await self._out.join()
        if self._writer is not None:
            self._writer.cancel()
        await self.deliverer.close()

    def _seed_built(self, chain: int, built: bool) -> None:
        """A chain's head view is built (or failed to be): seed its subjects, every rule."""

        async def seed() -> None:
            rules = list(self.rules.values())
            await self._seed(rules, rules, [chain])
            self.seeded.add(chain)

        task = asyncio.get_running_loop().create_task(seed())
        self._seeds.add(task)
        task.add_done_callback(self._seeds.discard)

    async def _seed(
        self, scopes: Sequence[Rule], rules: list[Rule], chains: Sequence[int] | None = None
    ) -> None:
        """Merge the subjects the `scopes` rules select at the head into the cache; evaluate
        `rules` on them. Only what some rule selects: every other subject matters to no rule
        until an event brings it (then it is kept), and valuing every subject takes minutes
        at 1,000,000 positions."""
        found: dict[str, dict[str, Any]] = {}
        for chain in self.chains.ids if chains is None else chains:
            for rule in scopes:
                for data in await self._at_head(chain, rule.filter):
                    found.setdefault(data["id"], data)
        fresh = [d for d in found.values() if self._remember(d)]
        self._evaluate(fresh, rules)

    async def _at_head(self, chain: int, flt: Filter) -> list[dict[str, Any]]:
        """The filter's subjects on the chain at its head: from the head view, else the store."""
        if self.head is not None:
            got = await asyncio.to_thread(self.head.subjects_across, flt, [chain])
            if got is not None:
                return got[1]
        processed = self.chains.processed(chain)
        try:
            as_of = await asyncio.to_thread(self.queries.resolve_at, chain, None, processed)
            return await asyncio.to_thread(self.queries.subjects, as_of, flt)
        except NotFound:
            return []  # nothing indexed yet: the events will bring the subjects

    async def _resume_deliveries(self) -> None:
        max_age = self.settings.alert_max_age_seconds
        since = datetime.now(UTC) - timedelta(seconds=max_age)
        payloads = await asyncio.to_thread(self.store.alert_payloads, since)
        if not payloads:
            return
        progress = await asyncio.to_thread(
            self.store.delivery_progress, [p["id"] for p, _ in payloads]
        )
        resumed = 0
        for payload, fired_at in payloads:
            rule = self.rules.get(payload["rule_id"])
            if rule is None:
                continue
            for job in self._jobs(rule, payload, fired_at):
                attempts, done = progress.get((job.alert_id, job.channel), (0, False))
                if not done:
                    job.attempts = attempts
                    self.deliverer.enqueue(job)
                    resumed += 1
        if resumed:
            log.info("alerts.deliveries_resumed", count=resumed)

    # Rules -----------------------------------------------------------------------------------

    async def add_rule(self, rule: Rule) -> None:
        await asyncio.to_thread(self.store.save_rule, rule)
        await self._adopt(rule)
        self._tell_peers()

    async def _adopt(self, rule: Rule) -> None:
        self.rules[rule.id] = rule
        self.states[rule.id] = {}
        # The rule's whole scope as of now, from the store: what /v1/positions lists.
        await self._seed([rule], [])
        self._evaluate([d for d in self.subjects.values() if rule.filter.matches(d)], [rule])

    async def delete_rule(self, rule: Rule) -> None:
        await asyncio.to_thread(self.store.save_rule, rule, deleted=True)
        self._forget(rule.id)
        self._tell_peers()

    def _forget(self, rule_id: str) -> None:
        self.rules.pop(rule_id, None)
        self.states.pop(rule_id, None)

    def _tell_peers(self) -> None:
        if self.peers is not None:
            self.peers.announce("rules", [])

    def _refresh_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self._refresh_rules())
        self._refreshes.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._refreshes.discard)

    async def _refresh_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self._refresh_rules()

    async def _refresh_rules(self) -> None:
        """Take up the rules another process created or deleted (the store holds them all)."""
        try:
            stored = {r.id: r for r in await asyncio.to_thread(self.store.rules)}
        except StoreError as exc:  # the next notice or refresh tries again
            log.warning("alerts.rules_refresh_failed", error=str(exc))
            return
        for rule_id in [r for r in self.rules if r not in stored]:
            self._forget(rule_id)
        for rule_id, rule in stored.items():
            if rule_id not in self.rules:
                await self._adopt(rule)

    def scope(self, rule: Rule) -> list[dict[str, Any]]:
        """The subjects the rule evaluates now (their latest state)."""
        return [d for _, d in sorted(self.subjects.items()) if rule.filter.matches(d)]

    # Events ----------------------------------------------------------------------------------

    def on_events(self, events: Sequence[BusEvent]) -> None:
        """Bus listener (in the event loop)."""
        changed: list[dict[str, Any]] = []
        liquidations: list[dict[str, Any]] = []
        for event in events:
            if event.kind in ("position", "account"):
                if self._remember(event.data):
                    changed.append(event.data)
            elif event.kind == "liquidation":
                liquidations.append(event.data)
        active = [r for r in self.rules.values() if r.enabled] if self.evaluates else []
        self._evaluate(changed, active, settle=True)
        if not any(r.kind == "allocation_drift" for r in active):
            self._wallets.clear()
        fired: list[Fired] = []
        transitions: list[Transition] = []
        for rule in active:
            if rule.kind != "liquidation":
                continue
            for data in liquidations:
                if rule.filter.matches(data):
                    self._step(rule, Sample.of(data), fired, transitions)
        self._emit(fired, transitions)

    def _remember(self, data: dict[str, Any]) -> bool:
        """Keep the subject's latest state; False if `data` is older than what is kept."""
        sid = data["id"]
        held = self.subjects.get(sid)
        if held is not None and int(held["block_number"]) > int(data["block_number"]):
            return False  # a replayed or coalesced older state
        if held is not None:
            self._by_owner.get((held["chain_id"], held["owner"]), set()).discard(sid)
            if held["owner"] != data["owner"]:
                self._wallets[(held["chain_id"], held["owner"])] = None
        if _closed(data):
            self.subjects.pop(sid, None)
            for states in self.states.values():
                states.pop(sid, None)
            self._wallets[(data["chain_id"], data["owner"])] = None
            return False
        self.subjects[sid] = data
        self._by_owner.setdefault((data["chain_id"], data["owner"]), set()).add(sid)
        return True

    def _evaluate(
        self, changed: Iterable[dict[str, Any]], rules: list[Rule], *, settle: bool = False
    ) -> None:
        """Evaluate `rules` on changed subjects; drift rules on their wallets, at once or
        (`settle`) once the rest of the block's events have arrived."""
        if not self.evaluates:
            rules = []  # another process evaluates: keep the subjects only
        fired: list[Fired] = []
        transitions: list[Transition] = []
        per_subject = [r for r in rules if r.kind in SUBJECT_KINDS]
        drift = [r for r in rules if r.kind == "allocation_drift"]
        wallets: dict[tuple[int, str], None] = {}
        for data in changed:
            sample: Sample | None = None
            for rule in per_subject:
                if rule.filter.matches(data):
                    sample = sample or Sample.of(data)
                    self._step(rule, sample, fired, transitions)
            wallets[(data["chain_id"], data["owner"])] = None
        self._emit(fired, transitions)
        if not drift:
            return
        if settle:
            self._wallets.update(wallets)
            self._schedule_wallets()
        else:
            self._evaluate_wallets(wallets, drift)

    def _schedule_wallets(self) -> None:
        if self._flush is None and self._wallets:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(WALLET_SETTLE_SECONDS, self._flush_wallets)

    def _flush_wallets(self) -> None:
        self._flush = None
        wallets, self._wallets = self._wallets, {}
        drift = [r for r in self.rules.values() if r.enabled and r.kind == "allocation_drift"]
        self._evaluate_wallets(wallets, drift)

    def _evaluate_wallets(self, wallets: Iterable[tuple[int, str]], rules: list[Rule]) -> None:
        fired: list[Fired] = []
        transitions: list[Transition] = []
        for chain, owner in wallets:
            held = [self.subjects[s] for s in sorted(self._by_owner.get((chain, owner), ()))]
            for rule in rules:
                sample = wallet_sample(chain, owner, [d for d in held if rule.filter.matches(d)])
                if sample is not None:
                    self._step(rule, sample, fired, transitions)
        self._emit(fired, transitions)

    def _step(
        self, rule: Rule, sample: Sample, fired: list[Fired], transitions: list[Transition]
    ) -> None:
        states = self.states.setdefault(rule.id, {})
        before = states.get(sample.subject_id)
        after, out = step(rule, before, sample)
        states[sample.subject_id] = after
        was = before or SubjectState()
        if (was.armed, was.last_fired) != (after.armed, after.last_fired):
            transitions.append((rule.id, sample.subject_id, after))
        fired += out

    def _emit(self, fired: list[Fired], transitions: list[Transition]) -> None:
        if fired or transitions:
            self._out.put_nowait((fired, transitions))

    async def _write(self) -> None:
        while True:
            fired, transitions = await self._out.get()
            try:
                await self._deliver(fired, transitions)
            except Exception as exc:  # keep the engine alive; the log says what was lost
                log.error("alerts.write_failed", error=str(exc), alerts=len(fired))
            finally:
                self._out.task_done()

    async def _deliver(self, fired: list[Fired], transitions: list[Transition]) -> None:
        try:
            await asyncio.to_thread(self.store.save_alerts, fired)
            await asyncio.to_thread(self.store.save_states, transitions)
        except StoreError as exc:
            # Still tell the stream and the receivers: an alert not stored beats a lost one.
            log.error("alerts.store_failed", error=str(exc))
        now = datetime.now(UTC)
        events = []
        for f in fired:
            self.fired += 1
            rule = self.rules.get(f.rule_id)
            payload = f.json()
            owner = payload.get("owner")
            if rule is None or rule.delivery.stream:
                s = f.sample
                events.append(
                    BusEvent(
                        kind="alert",
                        chain_id=s.chain_id,
                        block_number=s.block_number,
                        block_hash=s.block_hash,
                        data=payload,
                        owners=(owner,) if owner else (),
                    )
                )
            if rule is not None:
                for job in self._jobs(rule, payload, now):
                    self.deliverer.enqueue(job)
        if events:
            self.hub.publish(events)
            if self.peers is not None:  # the other processes' stream clients
                self.peers.announce("alerts", events)

    @staticmethod
    def _jobs(rule: Rule, payload: dict[str, Any], fired_at: datetime) -> list[Job]:
        d, jobs = rule.delivery, []
        created = fired_at.timestamp()
        if d.webhook_url:
            jobs.append(
                Job(
                    payload["id"],
                    rule.id,
                    "webhook",
                    d.webhook_url,
                    payload,
                    d.webhook_secret,
                    created=created,
                )
            )
        if d.email:
            jobs.append(Job(payload["id"], rule.id, "email", d.email, payload, created=created))
        return jobs
