"""The head view: every chain's latest stored rows in memory, so a head portfolio is a lookup and
a valuation of a few objects, not a query.

What it holds is what the read sides read at the head: for each table they declare
(protocols/read_side.py `head_tables`, `HEAD_TABLES`), which the head feed carries
(schemas/head_feed.py), the newest row of each key (the table's sorting key without chain and
block), and the head block's hash and time. The read sides run unchanged
over it: their reads are `latest_rows` (`LatestRows`), which say what they ask in parts, and
`HeadReads` answers those parts from memory. Valuation is theirs, so the JSON is the store
path's for the same block by construction.

How it stays consistent with the store (`HeadViews`):
- built from the store: the chain's processed block P is taken first, then each table's
  latest rows at or before P, and the rows of later blocks (stored, not yet processed) aside;
- fed by the bus from the moment it starts reading (events that arrive during the build wait
  and are applied after it). The flow publishes rows only after it stored them, so a row whose
  event came before this process listened was in the store when it read it: nothing is lost,
  and a row seen both ways is applied twice to the same effect (newest version wins);
- rows of blocks after the processed block wait (`pending`) until the flow says the block is
  processed (the last feed event of an insert carries it), as the store path answers only up
  to the processed block;
- a reorg rebuilds the chain's view from the store (the flow announces it once the store no
  longer shows the orphaned blocks); requests are answered from the store meanwhile.

Everything here but `HeadViews`' build is pure: rows in, state out, no I/O.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog

from api.chains import Chains
from api.queries import merge_portfolios, portfolio_at, subjects_at
from ports.store import Store
from protocols.read_side import AsOf, LatestRows, ReadContext, latest_rows
from protocols.registry import HEAD_TABLES
from schemas.filters import Filter
from schemas.head_feed import ROWS, from_wire
from schemas.stream import BusEvent

log = structlog.get_logger("api.head_view")

NOBODY = "0x" + "00" * 20

Row = tuple[Any, ...]
T = TypeVar("T")
_BLOCK_COLUMNS = ("chain_id", "block_number", "log_index", "block_hash")


class NotInView(Exception):
    """A read the head view cannot answer from memory: the caller asks the store."""


@dataclass(slots=True)
class TableView:
    """One table's newest row per key, with indexes on the columns reads filter by."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...]  # the sorting key without chain and block
    temporal: bool = True
    rows: dict[Row, Row] = field(default_factory=dict)
    _at: dict[str, int] = field(default_factory=dict)
    _key_at: tuple[int, ...] = ()
    _order_at: tuple[int, ...] = ()
    _indexes: dict[int, dict[Any, set[Row]]] = field(default_factory=dict)
    _feeds: dict[tuple[str, ...], tuple[int | None, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._at = {c: i for i, c in enumerate(self.columns)}
        self._key_at = tuple(self._at[c] for c in self.key)
        order = ("block_number", "log_index", "version") if self.temporal else ("version",)
        self._order_at = tuple(self._at[c] for c in order if c in self._at)

    def put(self, row: Row) -> None:
        """Keep `row` if it is its key's newest (block, log index, version): applying a row
        twice, or an older one after a newer, changes nothing."""
        key = tuple(row[i] for i in self._key_at)
        old = self.rows.get(key)
        if old is not None and self._order(old) > self._order(row):
            return
        self.rows[key] = row
        for at, index in self._indexes.items():
            if old is not None and old[at] != row[at]:
                index[old[at]].discard(key)
            index.setdefault(row[at], set()).add(key)

    def block_of(self, row: Row) -> int:
        return int(row[self._at["block_number"]])

    def _order(self, row: Row) -> tuple[Any, ...]:
        return tuple(row[i] for i in self._order_at)

    def from_feed(self, columns: Sequence[str], values: Sequence[Any]) -> Row:
        """A feed row (its own column order, wire values) as this table's row."""
        names = tuple(columns)
        where = self._feeds.get(names)
        if where is None:
            at = {c: i for i, c in enumerate(names)}
            where = self._feeds[names] = tuple(at.get(c) for c in self.columns)
        return tuple(
            0 if i is None else from_wire(values[i], t)  # absent: is_deleted, 0 in a feed row
            for i, t in zip(where, self.types, strict=True)
        )

    def index(self, column: str) -> dict[Any, set[Row]]:
        at = self._at[column]
        found = self._indexes.get(at)
        if found is None:
            found = {}
            for key, row in self.rows.items():
                found.setdefault(row[at], set()).add(key)
            self._indexes[at] = found
        return found

    def select(self, conditions: Sequence[Condition], by: Sequence[str]) -> list[Row]:
        """The newest row per `by` among the rows that pass every condition (a column holding
        one of the values; `AnyOf`: any of its columns doing so), in `by` order."""
        alternatives = [c.parts if isinstance(c, AnyOf) else (c,) for c in conditions]
        for parts in alternatives:
            for column, _ in parts:
                if column not in self._at:
                    raise NotInView(f"no column {column}")
        if alternatives:
            # Candidates from the narrowest condition's indexes; the others check each of them.
            sized = [
                (sum(len(self.index(c).get(v, ())) for c, values in parts for v in values), parts)
                for parts in alternatives
            ]
            _, narrowest = min(sized, key=lambda s: s[0])
            # A set: a row can pass two columns of an `AnyOf` (a pool of two wanted tokens).
            keys = {k for c, values in narrowest for v in values for k in self.index(c).get(v, ())}
            candidates = [self.rows[k] for k in keys]
        else:
            candidates = list(self.rows.values())
        checks = [tuple((self._at[c], values) for c, values in parts) for parts in alternatives]
        by_at = tuple(self._at[c] for c in by)
        newest: dict[Row, Row] = {}
        for row in candidates:
            if not all(any(row[at] in values for at, values in parts) for parts in checks):
                continue
            group = tuple(row[i] for i in by_at)
            held = newest.get(group)
            if held is None or self._order(row) > self._order(held):
                newest[group] = row
        # In `by` order, as latest_rows' SQL gives them (ORDER BY its `by` columns).
        return [newest[group] for group in sorted(newest)]

    def values_where(self, column: str, where: str, values: frozenset[Any]) -> frozenset[Any]:
        """`column` of the rows whose `where` holds one of the values."""
        if column not in self._at or where not in self._at:
            raise NotInView(f"no column {column} or {where}")
        at, index = self._at[column], self.index(where)
        return frozenset(self.rows[k][at] for v in values for k in index.get(v, ()))

    def project(self, rows: Iterable[Row], columns: str) -> tuple[list[str], list[Row]]:
        names = _columns(columns, self.columns)
        at = [self._at[c] for c in names]
        return names, [tuple(r[i] for i in at) for r in rows]


def _columns(spec: str, every: Sequence[str]) -> list[str]:
    """`latest_rows`' column list: names, or `* EXCEPT (a, b)`."""
    spec = spec.strip()
    if spec.startswith("*"):
        found = re.fullmatch(r"\*(?:\s+EXCEPT\s*\(([^)]*)\))?", spec)
        if found is None:
            raise NotInView(f"columns {spec!r}")
        left_out = {c.strip() for c in (found.group(1) or "").split(",") if c.strip()}
        return [c for c in every if c not in left_out]
    return [c.strip() for c in spec.split(",")]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """A condition that holds when any of its parts (column, allowed values) does."""

    parts: tuple[tuple[str, frozenset[Any]], ...]


Condition = tuple[str, frozenset[Any]] | AnyOf

# The conditions `latest_rows` reads use: `col = {p:T}`, `col IN {p:Array(T)}`,
# `(a IN {p:Array(T)} OR b IN {q:Array(T)})` (an LP position holding either token), and
# `col IN (SELECT col FROM defimon.<same table> WHERE chain_id = {chain:UInt64} AND c IN {p:...})`
# (the positions a wallet ever held, the accounts that ever held an asset). The head view holds
# the newest row of each key only, so it reads the last as "of the rows whose newest version has
# c in p": where c is part of the key (an account's asset) that is every row that ever had it;
# where it is not (a position's owner), the callers keep only what the owner holds now, which
# both readings give alike. Anything else is not the head view's to answer.
_IN_ARRAY = r"\w+\s+IN\s+\{\w+:Array\([^)]*\)\}"
_ALTERNATIVE = re.compile(r"(?P<col>\w+)\s+IN\s+\{(?P<p>\w+):Array\([^)]*\)\}")
_CONDITION = re.compile(
    r"\s*AND\s+(?:"
    r"(?P<eq>\w+)\s*=\s*\{(?P<eq_p>\w+):[^}]+\}"
    r"|(?P<inn>\w+)\s+IN\s+\{(?P<in_p>\w+):Array\([^)]*\)\}"
    r"|\(\s*(?P<any>" + _IN_ARRAY + r"(?:\s+OR\s+" + _IN_ARRAY + r")+)\s*\)"
    r"|(?P<sub>\w+)\s+IN\s+\(SELECT\s+(?P<sub_sel>\w+)\s+FROM\s+defimon\.(?P<sub_t>\w+)\s+"
    r"WHERE\s+chain_id\s*=\s*\{chain:UInt64\}\s+AND\s+(?P<sub_c>\w+)\s+IN\s+"
    r"\{(?P<sub_p>\w+):Array\([^)]*\)\}\)"
    r")"
)


def conditions(read: LatestRows, params: Mapping[str, Any], table: TableView) -> list[Condition]:
    """A read's conditions on `table` (the read's), as (column, allowed values) or `AnyOf`."""
    out: list[Condition] = []
    at = 0
    while at < len(read.where):
        found = _CONDITION.match(read.where, at)
        if found is None:
            raise NotInView(f"condition {read.where[at:]!r}")
        if found["eq"]:
            out.append((found["eq"], frozenset([params[found["eq_p"]]])))
        elif found["inn"]:
            out.append((found["inn"], frozenset(params[found["in_p"]])))
        elif found["any"]:
            out.append(
                AnyOf(
                    tuple(
                        (alt["col"], frozenset(params[alt["p"]]))
                        for alt in _ALTERNATIVE.finditer(found["any"])
                    )
                )
            )
        else:
            if found["sub_t"] != read.table or found["sub"] != found["sub_sel"]:
                raise NotInView(f"condition {found[0]!r}")
            wanted = frozenset(params[found["sub_p"]])
            out.append((found["sub"], table.values_where(found["sub"], found["sub_c"], wanted)))
        at = found.end()
    return out


class Gate:
    """Readers at once, or the feed: many requests read a view together, and the feed (in the
    event loop) applies rows only when none is reading, without ever waiting for one. Readers
    do not starve the feed: once the flow has processed a block the view has not applied,
    `HeadViews.ready` sends new requests to the store, so the readers in drain out."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    def enter(self) -> None:
        """A reader comes in (waits only while the feed applies rows: a moment)."""
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._readers += 1

    def leave(self) -> None:
        with self._cond:
            self._readers -= 1

    def try_write(self) -> bool:
        """The feed may apply rows now (then `done_writing`); False while a reader reads."""
        with self._cond:
            if self._readers:
                return False
            self._writing = True
            return True

    def done_writing(self) -> None:
        with self._cond:
            self._writing = False
            self._cond.notify_all()


@dataclass(slots=True)
class ChainView:
    """One chain's head: its tables, the processed block, and the rows of later blocks."""

    chain_id: int
    head: int
    tables: dict[str, TableView]
    blocks: dict[int, tuple[str, int]] = field(default_factory=dict)  # number -> hash, time
    pending: list[tuple[int, str, Row]] = field(default_factory=list)  # block, table, row
    # Readers hold it for a consistent head across their reads; feed events that come meanwhile
    # wait in `held` (the event loop never waits for a reader valuing many subjects, such as
    # the alert engine's seed: requests meanwhile see the view behind and ask the store).
    gate: Gate = field(default_factory=Gate)
    held: list[BusEvent] = field(default_factory=list)

    def put(self, table: str, row: Row) -> None:
        view = self.tables[table]
        if view.temporal:
            block = view.block_of(row)
            if block > self.head:
                self.pending.append((block, table, row))
                return
        view.put(row)

    def put_block(self, number: int, block_hash: str, timestamp: int) -> None:
        if number >= self.head:
            self.blocks[number] = (block_hash, timestamp)

    def advance(self, processed: int) -> None:
        """Every block up to `processed` is stored: its waiting rows count now."""
        if processed <= self.head:
            return
        self.head = processed
        ready = [p for p in self.pending if p[0] <= processed]
        self.pending = [p for p in self.pending if p[0] > processed]
        for _, table, row in sorted(ready, key=lambda p: p[0]):
            self.tables[table].put(row)
        self.blocks = {n: b for n, b in self.blocks.items() if n >= processed}

    def apply(self, event: BusEvent) -> None:
        """One head feed event (schemas/head_feed.py)."""
        data = event.data
        table, columns = data["table"], data["columns"]
        if table == "blocks":
            at = {c: i for i, c in enumerate(columns)}
            for raw in data["rows"]:
                when = from_wire(raw[at["block_time"]], "DateTime64")
                self.put_block(int(raw[at["number"]]), raw[at["hash"]], _unix(when))
        elif table in self.tables:
            view = self.tables[table]
            for raw in data["rows"]:
                self.put(table, view.from_feed(columns, raw))
        if data["processed"] is not None:
            self.advance(int(data["processed"]))

    def as_of(self) -> AsOf:
        found = self.blocks.get(self.head)
        if found is None:  # backfill stores only blocks with watched logs
            return AsOf(self.chain_id, self.head, None, None)
        return AsOf(self.chain_id, self.head, found[0], found[1])

    def subjects(self) -> int:
        return sum(len(t.rows) for t in self.tables.values())


def _unix(when: datetime) -> int:
    return int(when.replace(tzinfo=UTC).timestamp())


class HeadReads:
    """The store's read interface (ports.store.Store's rows, dicts, scalar) over a chain's
    head view, for `latest_rows` reads at its head block."""

    def __init__(self, view: ChainView) -> None:
        self.view = view

    def _read(self, sql: str, params: Mapping[str, Any] | None) -> tuple[list[str], list[Row]]:
        if not isinstance(sql, LatestRows) or params is None:
            raise NotInView("not a latest_rows read")
        if params.get("chain") != self.view.chain_id:
            raise NotInView("another chain")
        if sql.temporal and params.get("block") != self.view.head:
            raise NotInView("not at the head")
        table = self.view.tables.get(sql.table)
        if table is None:
            raise NotInView(f"table {sql.table} is not in the head view")
        by = [c.strip() for c in sql.by.split(",")]
        return table.project(table.select(conditions(sql, params, table), by), sql.columns)

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[Row]:
        return self._read(sql, parameters)[1]

    def dicts(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        names, rows = self._read(sql, parameters)
        return [dict(zip(names, r, strict=True)) for r in rows]

    def scalar(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        raise NotInView("scalar reads")


# Building from the store ------------------------------------------------------------------


def head_tables(store: Store) -> dict[str, tuple[list[str], list[str], list[str], bool]]:
    """The tables a head answer reads (`HEAD_TABLES`, but the blocks: the view keeps their hash
    and time apart) as stored: name -> (columns, types, key, temporal)."""
    rows = store.rows(
        "SELECT t.name, t.sorting_key, c.name, c.type FROM system.tables AS t "
        "INNER JOIN system.columns AS c ON c.database = t.database AND c.table = t.name "
        "WHERE t.database = 'defimon' ORDER BY t.name, c.position"
    )
    found: dict[str, tuple[list[str], list[str], list[str], bool]] = {}
    for table, sorting, column, ch_type in rows:
        if table not in HEAD_TABLES or table == "blocks":
            continue
        entry = found.setdefault(table, ([], [], [], False))
        entry[0].append(column)
        entry[1].append(ch_type)
        if not entry[2]:
            entry[2].extend(k.strip() for k in sorting.split(",") if k.strip())
    out = {}
    for table, (columns, types, sorting, _) in found.items():
        key = [k for k in sorting if k not in _BLOCK_COLUMNS]
        out[table] = (columns, types, key, "block_number" in columns)
    return out


def load(store: Store, chain_id: int, head: int) -> ChainView:
    """A chain's head view from the store at processed block `head` (see the module doc)."""
    tables: dict[str, TableView] = {}
    view = ChainView(chain_id, head, tables)
    params = {"chain": chain_id, "block": max(head, 0)}
    for name, (columns, types, key, temporal) in head_tables(store).items():
        table = tables[name] = TableView(tuple(columns), tuple(types), tuple(key), temporal)
        if not temporal:
            sql = f"SELECT * FROM defimon.{name} FINAL WHERE chain_id = {{chain:UInt64}}"
            for row in store.rows(sql, params):
                table.put(_interned(row))
            continue
        by = ", ".join(key)
        log_index = "log_index" in columns
        for row in store.rows(latest_rows(name, "*", by, log_index=log_index), params):
            table.put(_interned(row))
        # FINAL drops a reorg's retracted rows (the tables replace by version and is_deleted);
        # without it their first versions would come back. Few rows: the unprocessed blocks'.
        later = (
            f"SELECT * FROM defimon.{name} FINAL WHERE chain_id = {{chain:UInt64}} "
            "AND block_number > {block:UInt64}"
        )
        for row in store.rows(later, params):
            view.put(name, _interned(row))
    for number, block_hash, ts in store.rows(
        "SELECT number, hash, toUnixTimestamp(block_time) FROM defimon.blocks FINAL "
        "WHERE chain_id = {chain:UInt64} AND number >= {block:UInt64}",
        params,
    ):
        view.put_block(int(number), block_hash, int(ts))
    return view


def _interned(row: Row) -> Row:
    # Addresses and ids repeat across rows (tokens, pools, owners): one copy of each.
    return tuple(sys.intern(v) if isinstance(v, str) and len(v) <= 128 else v for v in row)


@dataclass(slots=True)
class HeadViews:
    """Every chain's head view, kept from the bus in the API's event loop (`on_events`), built
    (and rebuilt after a reorg) from the store in a thread."""

    store: Store
    chains: Chains
    block_time: Callable[[int, int], int | None] | None = None
    views: dict[int, ChainView] = field(default_factory=dict)
    _waiting: dict[int, list[BusEvent]] = field(default_factory=dict)  # during a build
    _again: set[int] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _built: list[Callable[[int, bool], None]] = field(default_factory=list)
    _told: set[int] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None

    def follow(self) -> None:
        """Keep the feed's events from now on (call once the feed is attached, in the event
        loop): they wait until each chain's view is built (`start`)."""
        self._loop = asyncio.get_running_loop()
        for chain in self.chains.ids:
            self._waiting.setdefault(chain, [])

    @property
    def following(self) -> bool:
        """Whether the views are (to be) built: a feed is attached."""
        return self._loop is not None

    def when_built(self, then: Callable[[int, bool], None]) -> None:
        """Call `then(chain, built)` in the event loop once each chain's first build ends
        (`built`: False if it failed, and the store answers)."""
        self._built.append(then)

    def start(self) -> None:
        """Build every chain's view from the store, in the running loop (after `follow`, once
        the process's own start-up reads are done: they share the store)."""
        for chain in self.chains.ids:
            self._launch(chain)

    def _rebuild(self, chain: int) -> None:
        if chain in self._waiting:
            self._again.add(chain)  # a reorg during the build: build once more after it
            return
        self.views.pop(chain, None)
        self._waiting[chain] = []
        self._launch(chain)

    def _launch(self, chain: int) -> None:
        task = asyncio.get_running_loop().create_task(self._build(chain))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _build(self, chain: int) -> None:
        try:
            # An API-only process learns the flow's progress over the bus: wait a little.
            status = self.chains.status
            for _ in range(30):  # up to 3 s; without a flow anywhere it answers at the store's head
                if status.running or status.remote_seen_at is not None:
                    break
                await asyncio.sleep(0.1)
            started = time.monotonic()
            view = await asyncio.to_thread(self._load, chain)
        except Exception as exc:  # the store is unreachable: keep answering from the store
            log.warning("head_view.build_failed", chain_id=chain, error=str(exc))
            self._waiting.pop(chain, None)
            self._tell_built(chain, False)
            return
        for event in self._waiting.pop(chain):
            view.apply(event)
        if chain in self._again:
            self._again.discard(chain)
            self._rebuild(chain)
            return
        self.views[chain] = view
        log.info(
            "head_view.built",
            chain_id=chain,
            block=view.head,
            rows=view.subjects(),
            seconds=round(time.monotonic() - started, 2),
        )
        self._tell_built(chain, True)

    def _tell_built(self, chain: int, built: bool) -> None:
        if chain in self._told:
            return  # a rebuild after a reorg
        self._told.add(chain)
        for then in self._built:
            then(chain, built)

    def _load(self, chain: int) -> ChainView:
        head = self.chains.processed(chain)
        store = self.store.another()
        try:
            if head < 0:  # no flow reports progress: the newest stored block, as the store path
                found = store.scalar(
                    "SELECT max(number) FROM defimon.blocks FINAL "
                    "WHERE chain_id = {chain:UInt64} HAVING count() > 0",
                    {"chain": chain},
                )
                head = -1 if found is None else int(found)
            view = load(store, chain, head)
        finally:
            store.close()
        # One portfolio read here builds the indexes the read sides filter by (owner, wallet),
        # so the first requests do not pay for them.
        try:
            portfolio_at(ReadContext(HeadReads(view)), NOBODY, view.as_of())
        except NotInView:
            pass
        return view

    def on_events(self, events: Sequence[BusEvent]) -> None:
        """Bus listener (in the event loop): feed rows in, reorgs rebuild."""
        for event in events:
            if event.kind == "reorg":
                self._rebuild(event.chain_id)
            elif event.kind == ROWS:
                waiting = self._waiting.get(event.chain_id)
                if waiting is not None:
                    waiting.append(event)
                    continue
                view = self.views.get(event.chain_id)
                if view is not None:
                    view.held.append(event)
                    self._apply_held(view)

    def _apply_held(self, view: ChainView) -> None:
        """Apply the chain's waiting feed events unless a reader is in (then the readers'
        leaving calls this again, `_release`)."""
        if not view.gate.try_write():
            return
        try:
            held, view.held = view.held, []
            for event in held:
                view.apply(event)
        finally:
            view.gate.done_writing()

    def _release(self, view: ChainView) -> None:
        """A reader is done (in its thread): events that came meanwhile go in, in the loop."""
        view.gate.leave()
        if view.held and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._apply_held, view)

    def ready(self, chain: int) -> ChainView | None:
        """The chain's view, when it is built and has every processed block."""
        view = self.views.get(chain)
        if view is None or view.head < 0 or view.head < self.chains.processed(chain):
            return None
        return view

    def _at_head(self, chain: int, read: Callable[[ReadContext, AsOf], T]) -> tuple[AsOf, T] | None:
        """`read` through the chain's view at its head (None: not ready or not answerable
        from memory, ask the store)."""
        view = self.ready(chain)
        if view is None:
            return None
        ctx = ReadContext(HeadReads(view), self.block_time)
        view.gate.enter()
        try:
            as_of = view.as_of()
            return as_of, read(ctx, as_of)
        except NotInView as exc:
            log.warning("head_view.miss", chain_id=chain, reason=str(exc))
            return None
        finally:
            self._release(view)

    def portfolio(self, owner: str, chain: int) -> dict[str, Any] | None:
        """The wallet's portfolio on the chain at the view's head (None: ask the store)."""
        found = self._at_head(chain, lambda ctx, as_of: portfolio_at(ctx, owner, as_of))
        return None if found is None else found[1]

    def subjects_across(
        self, flt: Filter, chains: Sequence[int]
    ) -> tuple[list[AsOf], list[dict[str, Any]]] | None:
        """`Queries.subjects_across` at each chain's head, from memory, with those heads (None:
        some chain's view is not ready, ask the store)."""
        as_ofs: list[AsOf] = []
        subjects: list[dict[str, Any]] = []
        for chain in chains:
            found = self._at_head(chain, lambda ctx, as_of: subjects_at(ctx, as_of, flt))
            if found is None:
                return None
            as_ofs.append(found[0])
            subjects += found[1]
        return as_ofs, subjects

    def portfolio_across(self, owner: str, chains: Sequence[int]) -> dict[str, Any] | None:
        """`Queries.portfolio_across` at the heads, from memory (None: some chain's view is
        not ready, ask the store)."""
        parts = []
        for chain in chains:
            found = self.portfolio(owner, chain)
            if found is None:
                return None
            parts.append(found)
        return merge_portfolios(owner, parts)
