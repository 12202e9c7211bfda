"""Data access for the API: the protocol-neutral part of every read, over the protocols' read
sides (protocols/read_side.py, listed in protocols/registry.py).

Here: which block an answer is as of (`resolve_at`, `parse_at`), the portfolio, positions,
aggregates and diff assembled from every read side's part, paging cursors and sorting, and the
windows every protocol's subjects share (defimon.position_windows). What a protocol's subjects
are and how they are valued at a block is its read side's.
Every query binds its values server-side ({name:Type}); nothing is pasted into SQL.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from api.diff import Change, summarize
from ports.store import Store
from protocols.read_side import SECTIONS, AsOf, ReadContext, ReadSide
from protocols.registry import READ_SIDES
from schemas.errors import InvalidInput, NotFound
from schemas.filters import Filter
from schemas.filters import numeric_field as _numeric
from schemas.hexutil import decimal_uint
from schemas.stress import Scenario

__all__ = [
    "AsOf",
    "Queries",
    "check_sort",
    "merge_portfolios",
    "parse_at",
    "portfolio_at",
    "positions_page",
    "read_sides",
    "subjects_at",
]


def read_sides(names: Collection[str] = ()) -> tuple[ReadSide, ...]:
    """The read sides with these names (a `protocol=` filter), in registry order; all when
    none are named."""
    return tuple(side for side in READ_SIDES if not names or side.name in names)


class Queries:
    def __init__(
        self, store: Store, block_time: Callable[[int, int], int | None] | None = None
    ) -> None:
        self.store = store
        self.ctx = ReadContext(store, block_time)

    # Blocks ---------------------------------------------------------------------------------

    def indexed_range(self, chain_id: int) -> tuple[int, int] | None:
        row = self.store.rows(
            "SELECT min(number), max(number), count() FROM defimon.blocks FINAL "
            "WHERE chain_id = {chain:UInt64}",
            {"chain": chain_id},
        )
        if not row or row[0][2] == 0:
            return None
        return int(row[0][0]), int(row[0][1])

    def resolve_at(self, chain_id: int, at: int | datetime | None, head: int | None) -> AsOf:
        """The block to answer as of: `at` as a block number or a time, else the head."""
        indexed = self.indexed_range(chain_id)
        if indexed is None:
            raise NotFound(f"chain {chain_id} has no indexed blocks yet")
        first, last = indexed
        latest = head if head is not None and head >= 0 else last
        if at is None:
            number = latest
        elif isinstance(at, datetime):
            found = self.store.scalar(
                "SELECT max(number) FROM defimon.blocks FINAL WHERE chain_id = {chain:UInt64} "
                "AND block_time <= {t:DateTime64(3, 'UTC')} HAVING count() > 0",
                {"chain": chain_id, "t": at},
            )
            if found is None:
                raise NotFound(f"no indexed block at or before {at.isoformat()}")
            number = min(int(found), latest)
        else:
            if at > latest:
                raise NotFound(
                    f"block {at} is not indexed yet; the latest indexed block is {latest}"
                )
            if at < first:
                raise NotFound(f"block {at} is before the indexed range, which starts at {first}")
            number = at
        rows = self.store.rows(
            "SELECT hash, toUnixTimestamp(block_time) FROM defimon.blocks FINAL "
            "WHERE chain_id = {chain:UInt64} AND number = {n:UInt64} LIMIT 1",
            {"chain": chain_id, "n": number},
        )
        if rows:
            return AsOf(chain_id, number, rows[0][0], int(rows[0][1]))
        # Backfill stores only blocks with watched logs; nothing changed in the others.
        return AsOf(chain_id, number, None, None)

    def timestamp(self, as_of: AsOf) -> int | None:
        return self.ctx.timestamp(as_of)

    def time_of(self, chain_id: int, at: int | datetime | None) -> datetime | None:
        """A point given as a block number or a time, as a time."""
        if at is None or isinstance(at, datetime):
            return at
        ts = self.timestamp(self.resolve_at(chain_id, at, None))
        if ts is None:
            raise NotFound(f"the time of block {at} is not known")
        return datetime.fromtimestamp(ts, UTC)

    # Portfolio, positions, diff ----------------------------------------------------------------

    def portfolio_of(self, protocol: str, owner: str, as_of: AsOf) -> list[dict[str, Any]]:
        """One protocol's part of the wallet's portfolio at the block."""
        parts = read_sides({protocol})
        if not parts:
            raise InvalidInput(f"protocol {protocol!r} has no read side")
        return parts[0].portfolio(self.ctx, owner, as_of)

    def portfolio(self, owner: str, as_of: AsOf) -> dict[str, Any]:
        return portfolio_at(self.ctx, owner, as_of)

    def diff(self, owner: str, start: AsOf, end: AsOf) -> dict[str, Any]:
        """How the wallet's value changed from `start` to `end`, and why: each read side's
        `changes`, summed (api.diff)."""
        changes: list[Change] = []
        for side in READ_SIDES:
            changes += side.changes(self.ctx, owner, start, end)
        return {"address": owner, "from": start.json(), "to": end.json(), **summarize(changes)}

    def subjects(self, as_of: AsOf, flt: Filter) -> list[dict[str, Any]]:
        return subjects_at(self.ctx, as_of, flt)

    def liquidations(self, chain_id: int, start: int, end: int) -> list[dict[str, Any]]:
        """Every liquidation in blocks [start, end], in block and log order."""
        found = [
            x for side in READ_SIDES for x in side.liquidations(self.ctx, chain_id, start, end)
        ]
        return sorted(found, key=lambda x: (x["block_number"], x["log_index"]))

    def positions(
        self,
        as_of: AsOf | Sequence[AsOf],
        flt: Filter,
        *,
        sort: str,
        descending: bool,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        """One page of `subjects` (on each chain, at its own block): `positions_page`."""
        check_sort(sort)
        as_ofs = [as_of] if isinstance(as_of, AsOf) else list(as_of)
        return positions_page(
            as_ofs,
            self.subjects_across(as_ofs, flt),
            sort=sort,
            descending=descending,
            limit=limit,
            cursor=cursor,
        )

    def subjects_across(self, as_ofs: Sequence[AsOf], flt: Filter) -> list[dict[str, Any]]:
        """`subjects` on several chains, each at its own block (chain ids in every subject)."""
        return [s for as_of in as_ofs for s in self.subjects(as_of, flt)]

    def portfolio_across(self, owner: str, as_ofs: Sequence[AsOf]) -> dict[str, Any]:
        """The wallet's portfolio on each chain (each at its own block), as one."""
        return merge_portfolios(owner, [self.portfolio(owner, as_of) for as_of in as_ofs])

    def advice(
        self, owner: str, as_ofs: Sequence[AsOf], target_wad: int, horizon: int
    ) -> dict[str, Any]:
        """What to do about the wallet's subjects (each chain at its own block): every read
        side that advises, its answers in its portfolio section."""
        sections: dict[str, list[dict[str, Any]]] = {name: [] for name in SECTIONS}
        for as_of in as_ofs:
            for side in READ_SIDES:
                if side.advises:
                    sections[side.section] += side.advice(
                        self.ctx, owner, as_of, target_wad, horizon
                    )
        return {
            "address": owner,
            "as_of": as_ofs[0].json(),
            "chains": [a.json() for a in as_ofs],
            "target": str(target_wad),
            "horizon_seconds": horizon,
            "not_advised": sorted(s.name for s in READ_SIDES if not s.advises),
            "lending": sections["lending"],
            "positions": sections["positions"],
        }

    def stress(self, owner: str, scenarios: Sequence[tuple[AsOf, Scenario]]) -> dict[str, Any]:
        """The wallet's subjects now and under each chain's scenario (each at its own block):
        every read side that stresses, its subjects in its portfolio section."""
        sections: dict[str, list[dict[str, Any]]] = {name: [] for name in SECTIONS}
        for as_of, scenario in scenarios:
            for side in READ_SIDES:
                if side.stresses and side.section in sections:
                    sections[side.section] += side.stress(self.ctx, owner, as_of, scenario)
        as_ofs = [as_of for as_of, _ in scenarios]
        lending = sections["lending"]
        subjects = [item for name in SECTIONS for item in sections[name]]
        return {
            "address": owner,
            "as_of": as_ofs[0].json(),
            "chains": [a.json() for a in as_ofs],
            "shock": scenarios[0][1].shock.json(),
            "horizon_seconds": scenarios[0][1].horizon,
            "not_stressed": sorted(s.name for s in READ_SIDES if not s.stresses),
            "value_usd": sum(a["now"]["value_usd"] or 0.0 for a in subjects),
            "stressed_value_usd": sum(a["stressed"]["value_usd"] or 0.0 for a in subjects),
            "liquidatable": sum(1 for a in lending if a["liquidatable"]),
            **sections,
        }

    # Windows ---------------------------------------------------------------------------------

    def subject_exists(self, chain_id: int, subject_id: str) -> bool:
        return any(side.subject_exists(self.ctx, chain_id, subject_id) for side in READ_SIDES)

    def wallet_history(
        self,
        chain_id: int,
        owner: str,
        window: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The wallet's value per closed window: the sum over the positions and accounts it
        held then (each window row names its subject's owner at the close)."""
        rows = self.store.rows(
            "SELECT window_start, window_end, sum(value_open), sum(value_close), count() "
            "FROM defimon.position_windows FINAL "
            "WHERE chain_id = {chain:UInt64} AND owner = {owner:String} "
            "AND window = {window:String} "
            "AND window_start >= {start:DateTime('UTC')} AND window_start < {end:DateTime('UTC')} "
            "GROUP BY window_start, window_end ORDER BY window_start LIMIT {limit:UInt32}",
            {
                "chain": chain_id,
                "owner": owner,
                "window": window,
                "start": start or EPOCH,
                "end": end or NEVER,
                "limit": limit,
            },
        )
        return [
            {
                "start": _iso(r[0]),
                "end": _iso(r[1]),
                "value_open_usd": r[2],
                "value_close_usd": r[3],
                "subjects": int(r[4]),
            }
            for r in rows
        ]

    def windows(
        self,
        chain_id: int,
        subject_id: str,
        window: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Closed windows of one position or account whose start lies in [start, end)."""
        rows = self.store.dicts(
            "SELECT * FROM defimon.position_windows FINAL "
            "WHERE chain_id = {chain:UInt64} AND subject_id = {id:String} "
            "AND window = {window:String} "
            "AND window_start >= {start:DateTime('UTC')} AND window_start < {end:DateTime('UTC')} "
            "ORDER BY window_start LIMIT {limit:UInt32}",
            {
                "chain": chain_id,
                "id": subject_id,
                "window": window,
                "start": start or EPOCH,
                "end": end or NEVER,
                "limit": limit,
            },
        )
        return [_window(r) for r in rows]

    def dead_letters(self, chain_id: int, limit: int = 100) -> list[dict[str, Any]]:
        return self.store.dicts(
            "SELECT block_number, log_index, tx_hash, address, topics, data, stage, reason "
            "FROM defimon.dead_letters FINAL WHERE chain_id = {chain:UInt64} "
            "ORDER BY block_number DESC, log_index DESC LIMIT {limit:UInt32}",
            {"chain": chain_id, "limit": limit},
        )


def subjects_at(ctx: ReadContext, as_of: AsOf, flt: Filter) -> list[dict[str, Any]]:
    """Every open position and lending account at the block that the filter matches, valued,
    read through `ctx` (the store, or the head view). Structural conditions narrow the reads;
    the filter itself decides."""
    if flt.chain_id and as_of.chain_id not in flt.chain_id:
        return []
    owners = sorted(flt.owner) or None
    tokens = sorted(flt.token) or None
    # A lending account's `pool` is its market.
    pools = sorted(flt.pool) or None
    found: list[dict[str, Any]] = []
    for side in read_sides(flt.protocol):
        found += side.subjects(ctx, as_of, owners, tokens, pools)
    return [s for s in found if flt.matches(s)]


def positions_page(
    as_ofs: Sequence[AsOf],
    subjects: Sequence[dict[str, Any]],
    *,
    sort: str,
    descending: bool,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """/v1/positions' answer: one page of the subjects (each chain's at its block in
    `as_ofs`), ordered by `sort` (then id, which starts with the chain id, so ids never
    collide across chains), after the cursor."""
    check_sort(sort)
    rows = [(_sort_key(s, sort, descending), s) for s in subjects]
    rows.sort(key=lambda r: r[0])
    if cursor is not None:
        after = _decode_cursor(cursor, sort, descending)
        rows = [r for r in rows if r[0] > after]
    page = rows[:limit]
    more = len(rows) > limit
    return {
        "as_of": as_ofs[0].json(),
        "chains": [a.json() for a in as_ofs],
        "positions": [s for _, s in page],
        "next_cursor": _encode_cursor(page[-1][0], sort, descending) if more else None,
    }


def portfolio_at(ctx: ReadContext, owner: str, as_of: AsOf) -> dict[str, Any]:
    """The wallet's portfolio on one chain at the block, every read side's part, read through
    `ctx` (the store, or the head view: api/head_view.py)."""
    sections: dict[str, list[dict[str, Any]]] = {name: [] for name in SECTIONS}
    for side in READ_SIDES:
        sections[side.section] += side.portfolio(ctx, owner, as_of)
    # Summed per list in the portfolio's order (a float sum in another order may differ).
    usd = {
        name: sum(s["value_usd"] or 0.0 for s in subjects) for name, subjects in sections.items()
    }
    return {
        "address": owner,
        "as_of": as_of.json(),
        "total_usd": usd["positions"] + usd["lending"] + usd["balances"],
        "balances_usd": usd["balances"],
        **sections,
    }


def merge_portfolios(owner: str, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-chain portfolios as one: positions, accounts and balances side by side (each
    names its chain), totals summed over the chains. `as_of` is the first chain's; `chains`
    has the block each chain is answered at."""
    if not parts:
        raise NotFound("no chain has indexed blocks yet")
    return {
        "address": owner,
        "as_of": parts[0]["as_of"],
        "chains": [p["as_of"] for p in parts],
        "total_usd": sum(p["total_usd"] for p in parts),
        "balances_usd": sum(p["balances_usd"] for p in parts),
        **{name: [x for p in parts for x in p[name]] for name in SECTIONS},
    }


# Open ends of a time range, within what DateTime('UTC') holds.
EPOCH = datetime.fromtimestamp(0, UTC)
NEVER = datetime(2106, 1, 1, tzinfo=UTC)

SORTS = ("id", "value_usd", "health_factor", "il_usd", "il_pct", "debt_usd")
SortKey = tuple[int, float, str]


def check_sort(sort: str) -> None:
    """A page's `sort` is one of SORTS (checked before any subject is valued)."""
    if sort not in SORTS:
        raise InvalidInput(f"sort={sort!r} is not one of {', '.join(SORTS)}")


def _sort_key(subject: dict[str, Any], sort: str, descending: bool) -> SortKey:
    """Missing values sort last either way; ties break by id, ascending."""
    if sort == "id":
        return (0, 0.0, subject["id"])
    value = _numeric(subject, sort)
    if value is None:
        return (1, 0.0, subject["id"])
    return (0, -value if descending else value, subject["id"])


def _encode_cursor(key: SortKey, sort: str, descending: bool) -> str:
    # A lending account without debt sorts by an infinite health factor, which JSON cannot
    # hold as a number (orjson writes null): it goes as its name, which float() reads back.
    value: float | str = key[1] if math.isfinite(key[1]) else repr(key[1])
    raw = orjson.dumps([sort, descending, key[0], value, key[2]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str, descending: bool) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        c_sort, c_desc, missing, value, sid = orjson.loads(raw)
        key = (int(missing), float(value), str(sid))
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidInput("cursor is not a next_cursor this API gave") from None
    if (c_sort, c_desc) != (sort, descending):
        raise InvalidInput("cursor belongs to another sort or order; start without it")
    return key


def _ohlc(row: dict[str, Any], prefix: str) -> dict[str, float | None]:
    return {k: row[f"{prefix}_{k}"] for k in ("open", "high", "low", "close")}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _window(row: dict[str, Any]) -> dict[str, Any]:
    """A stored window in the stream's wire format (protocols.windows.window_json)."""
    fees0, fees1 = row["fees_earned0"], row["fees_earned1"]
    return {
        "id": row["subject_id"],
        "protocol": row["protocol"],
        "chain_id": row["chain_id"],
        "owner": row["owner"],
        "window": row["window"],
        "start": _iso(row["window_start"]),
        "end": _iso(row["window_end"]),
        "value_usd": _ohlc(row, "value"),
        "il_usd": _ohlc(row, "il"),
        "health_factor": _ohlc(row, "hf"),
        "fees_earned0": None if fees0 is None else str(fees0),
        "fees_earned1": None if fees1 is None else str(fees1),
        "fees_earned_usd": row["fees_earned_usd"],
        "close_block": row["close_block"],
        "close_block_hash": row["close_block_hash"],
    }


def parse_at(value: str | None) -> int | datetime | None:
    """`at=` is a block number (decimal) or an ISO-8601 time with a zone (Z or +hh:mm)."""
    if value is None or value == "":
        return None
    text = value.strip()
    number = decimal_uint(text)
    if number is not None:
        return number
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"at={value!r} is neither a block number nor an ISO-8601 time") from None
    if when.tzinfo is None:
        raise InvalidInput(f"at={value!r} has no time zone; add Z or an offset")
    return when
