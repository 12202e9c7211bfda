"""Per-position tumbling windows of 1 minute, 1 hour and 1 day, driven by block time (pure).

Determinism on replay is the design constraint. A live run values positions at every block
and a backfill only at the end of each read range, so neither can feed the windows. Instead
each subject (an LP position or a lending account) is observed on a fixed grid: at every
minute boundary, i.e. when the first block of a new minute arrives, with the state as of the
last block of the minute that ended. Only blocks with logs count; empty blocks carry no state
change, and a backfill never sees them. Both kinds of run then cross the same boundaries with
the same state, and close the same windows with the same numbers.

- A 1-minute window's open is the previous window's close (the value at its start), and its
  close is the observation at its end; the 1-hour and 1-day windows fold those observations.
- Every subject is observed at every boundary, so quiet positions close their windows too. A
  subject whose inputs did not change keeps its last observation and is not revalued.
- A subject that can never change again (a burned position) closes all its open windows at
  the next boundary and leaves the book.
- A subject that holds nothing but may hold again (an emptied lending account) is dormant: its
  windows close when they end, as anyone's, and it leaves the book when its day window ends
  with it still empty. Closing early would let a re-supply the same day open a second window
  with the same start, the key a reorg retracts rows by.
- Fees earned are the growth of the position's lifetime fees over the window, in token units,
  valued at the window's closing prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from protocols.journal import JournaledDict
from schemas.positions import BlockRef

# (label, seconds), finest first: each boundary of a coarser window is one of a finer one.
RESOLUTIONS: tuple[tuple[str, int], ...] = (("1m", 60), ("1h", 3600), ("1d", 86400))
WINDOW_SECONDS = dict(RESOLUTIONS)
GRID = RESOLUTIONS[0][1]


@dataclass(frozen=True, slots=True)
class WindowBoundary:
    """The first block of a new minute arrived: observe everything as of `last_block`
    (the last block before it), then close the windows that end at or before `now`."""

    last_block: BlockRef
    now: int


def crosses_boundary(previous: BlockRef | None, timestamp: int) -> WindowBoundary | None:
    if previous is None or timestamp // GRID <= previous.timestamp // GRID:
        return None
    return WindowBoundary(previous, timestamp)


@dataclass(frozen=True, slots=True)
class Observation:
    """A subject's figures at one boundary. Fees are lifetime totals in token units."""

    value_usd: float | None
    il_usd: float | None = None
    health_factor: float | None = None  # None: no debt (infinite) or not a lending account
    fees0: int | None = None
    fees1: int | None = None
    price0_usd: float | None = None  # per whole token
    price1_usd: float | None = None
    decimals0: int = 0
    decimals1: int = 0
    final: bool = False  # the subject can never change again
    dormant: bool = False  # holds nothing now, may hold again: leaves when its day ends


@dataclass(frozen=True, slots=True)
class Subject:
    """What a window row says about whose it is."""

    chain_id: int
    subject_id: str
    protocol: str
    owner: str


# The book's values are replaced, never changed in place (a new window, a new observation): the
# book is a journaled dict, whose undo keeps the values replaced (protocols/journal.py).


@dataclass(frozen=True, slots=True)
class Ohlc:
    open: float | None
    high: float | None
    low: float | None
    close: float | None

    @classmethod
    def start(cls, x: float | None) -> Ohlc:
        # Frozen, so one None-valued Ohlc serves every figure a subject does not have (an
        # account's IL, a position's health factor): fewer objects made at every boundary.
        return _NO_OHLC if x is None else cls(x, x, x, x)

    def added(self, x: float | None) -> Ohlc:
        if x is None:
            return self if self.close is None else Ohlc(self.open, self.high, self.low, None)
        high = x if self.high is None or x > self.high else self.high
        low = x if self.low is None or x < self.low else self.low
        return Ohlc(self.open, high, low, x)


_NO_OHLC = Ohlc(None, None, None, None)


@dataclass(frozen=True, slots=True)
class OpenWindow:
    start: int
    value: Ohlc
    il: Ohlc
    health_factor: Ohlc
    fees0_start: int | None
    fees1_start: int | None

    @classmethod
    def opening(cls, start: int, at: Observation, first: bool = False) -> OpenWindow:
        # A subject's first window counts its fees from zero: they were all earned in it.
        return cls(
            start,
            Ohlc.start(at.value_usd),
            Ohlc.start(at.il_usd),
            Ohlc.start(at.health_factor),
            0 if first and at.fees0 is not None else at.fees0,
            0 if first and at.fees1 is not None else at.fees1,
        )

    def added(self, at: Observation) -> OpenWindow:
        return OpenWindow(
            self.start,
            self.value.added(at.value_usd),
            self.il.added(at.il_usd),
            self.health_factor.added(at.health_factor),
            self.fees0_start,
            self.fees1_start,
        )


@dataclass(frozen=True, slots=True)
class WindowRow:
    subject: Subject
    window: str  # 1m | 1h | 1d
    start: int
    end: int
    value: Ohlc
    il: Ohlc
    health_factor: Ohlc
    fees0: int | None
    fees1: int | None
    fees_usd: float | None
    close_block: BlockRef


_NONE_OPEN: tuple[OpenWindow | None, ...] = (None,) * len(RESOLUTIONS)


@dataclass(frozen=True, slots=True)
class SubjectWindows:
    subject: Subject
    last: Observation
    open: tuple[OpenWindow | None, ...] = _NONE_OPEN


@dataclass(slots=True)
class WindowBook:
    """The open windows of every subject of one shard."""

    subjects: dict[str, SubjectWindows] = field(default_factory=JournaledDict)

    def observe(self, subject: Subject, at: Observation) -> None:
        held = self.subjects.get(subject.subject_id)
        opened = _NONE_OPEN if held is None else held.open
        self.subjects[subject.subject_id] = SubjectWindows(subject, at, opened)

    def close(self, boundary: WindowBoundary, observed: set[str]) -> list[WindowRow]:
        """Fold the latest observations into the open windows and close the ended ones.

        `observed` names the subjects observed anew at this boundary; the others repeat
        their last observation, which changes nothing but the 1-minute close.
        """
        rows: list[WindowRow] = []
        at_block, now = boundary.last_block, boundary.now
        finished = []
        last = len(RESOLUTIONS) - 1
        subjects = self.subjects
        for sid in sorted(subjects):
            held = subjects[sid]
            at = held.last
            leaves = at.final
            opened = list(held.open)
            for i, (label, seconds) in enumerate(RESOLUTIONS):
                window = opened[i]
                if window is None:
                    start = at_block.timestamp // seconds * seconds
                    window = opened[i] = OpenWindow.opening(start, at, first=True)
                elif sid in observed:
                    window = opened[i] = window.added(at)
                ends = now // seconds * seconds > window.start
                if not (ends or at.final):
                    continue
                rows.append(_row(held.subject, label, seconds, window, at, at_block))
                opened[i] = None if at.final else OpenWindow.opening(now // seconds * seconds, at)
                # Every finer window ended with the coarsest: nothing open is lost.
                leaves = leaves or (at.dormant and i == last)
            if leaves:
                finished.append(sid)
            else:
                subjects[sid] = SubjectWindows(held.subject, at, tuple(opened))
        for sid in finished:
            del subjects[sid]
        return rows


def _row(
    subject: Subject,
    label: str,
    seconds: int,
    window: OpenWindow,
    at: Observation,
    block: BlockRef,
) -> WindowRow:
    fees0 = _growth(window.fees0_start, at.fees0)
    fees1 = _growth(window.fees1_start, at.fees1)
    fees_usd = None
    p0, p1 = at.price0_usd, at.price1_usd
    if fees0 is not None and fees1 is not None and p0 is not None and p1 is not None:
        fees_usd = fees0 * p0 / 10**at.decimals0 + fees1 * p1 / 10**at.decimals1
    return WindowRow(
        subject,
        label,
        window.start,
        window.start + seconds,
        window.value,
        window.il,
        window.health_factor,
        fees0,
        fees1,
        fees_usd,
        block,
    )


def _growth(start: int | None, end: int | None) -> int | None:
    if end is None:
        return None
    return end - (start or 0)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def ohlc_json(o: Ohlc) -> dict[str, float | None]:
    return {"open": o.open, "high": o.high, "low": o.low, "close": o.close}


def window_json(row: WindowRow) -> dict[str, Any]:
    """The wire format of a closed window, shared by the stream and the history endpoint."""
    s = row.subject
    return {
        "id": s.subject_id,
        "protocol": s.protocol,
        "chain_id": s.chain_id,
        "owner": s.owner,
        "window": row.window,
        "start": _iso(row.start),
        "end": _iso(row.end),
        "value_usd": ohlc_json(row.value),
        "il_usd": ohlc_json(row.il),
        "health_factor": ohlc_json(row.health_factor),
        "fees_earned0": None if row.fees0 is None else str(row.fees0),
        "fees_earned1": None if row.fees1 is None else str(row.fees1),
        "fees_earned_usd": row.fees_usd,
        "close_block": row.close_block.number,
        "close_block_hash": row.close_block.hash,
    }
