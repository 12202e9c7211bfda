"""The window fold (protocols.windows): OHLC per resolution, closing by block time, quiet and
final subjects, fees earned, and independence from which subjects were revalued."""

from __future__ import annotations

from protocols.windows import (
    Observation,
    Subject,
    WindowBook,
    WindowBoundary,
    WindowRow,
    crosses_boundary,
    window_json,
)
from schemas.positions import BlockRef

T0 = 1_800_000_000 // 86400 * 86400  # a day boundary
LP = Subject(1, "1:0xnpm:7", "uniswap_v3", "0xowner")
QUIET = Subject(1, "1:0xnpm:8", "uniswap_v3", "0xother")


def block(n: int, ts: int) -> BlockRef:
    return BlockRef(1, n, f"0x{n:064x}", ts)


def boundary(last: int, last_ts: int, now: int) -> WindowBoundary:
    return WindowBoundary(block(last, last_ts), now)


def by(rows: list[WindowRow], window: str, subject: Subject = LP) -> list[WindowRow]:
    return [r for r in rows if r.window == window and r.subject == subject]


def test_a_boundary_is_crossed_only_when_the_minute_changes() -> None:
    assert crosses_boundary(None, T0) is None
    assert crosses_boundary(block(1, T0), T0 + 59) is None
    crossed = crosses_boundary(block(1, T0 + 59), T0 + 60)
    assert crossed == WindowBoundary(block(1, T0 + 59), T0 + 60)


def test_minute_windows_open_at_the_previous_close_and_hours_fold_them() -> None:
    book = WindowBook()
    rows: list[WindowRow] = []
    values = [100.0, 120.0, 90.0, 110.0]
    for i, v in enumerate(values):
        book.observe(LP, Observation(value_usd=v, il_usd=-v / 100))
        # The last block of minute i, then the first block of minute i + 1.
        rows += book.close(boundary(i, T0 + 60 * i + 30, T0 + 60 * (i + 1) + 5), {LP.subject_id})
    minutes = by(rows, "1m")
    assert [(r.start - T0, r.end - T0) for r in minutes] == [
        (0, 60),
        (60, 120),
        (120, 180),
        (180, 240),
    ]
    assert [(r.value.open, r.value.close) for r in minutes] == [
        (100.0, 100.0),
        (100.0, 120.0),
        (120.0, 90.0),
        (90.0, 110.0),
    ]
    assert (minutes[2].value.high, minutes[2].value.low) == (120.0, 90.0)
    assert minutes[3].il.close == -1.1
    assert minutes[3].close_block.number == 3
    assert by(rows, "1h") == []  # the hour has not ended

    # The first block of the next hour closes the hour (and the day stays open).
    rows = book.close(boundary(9, T0 + 3599, T0 + 3600), set())
    (hour,) = by(rows, "1h")
    assert (hour.start, hour.end) == (T0, T0 + 3600)
    assert (hour.value.open, hour.value.high, hour.value.low, hour.value.close) == (
        100.0,
        120.0,
        90.0,
        110.0,
    )
    assert by(rows, "1d") == []


def test_quiet_subjects_close_their_windows_too() -> None:
    book = WindowBook()
    book.observe(LP, Observation(value_usd=5.0))
    book.observe(QUIET, Observation(value_usd=7.0))
    book.close(boundary(1, T0 + 10, T0 + 61), {LP.subject_id, QUIET.subject_id})
    book.observe(LP, Observation(value_usd=6.0))
    rows = book.close(boundary(2, T0 + 70, T0 + 125), {LP.subject_id})
    (quiet,) = by(rows, "1m", QUIET)
    assert (quiet.start, quiet.value.open, quiet.value.close) == (T0 + 60, 7.0, 7.0)
    (moved,) = by(rows, "1m")
    assert (moved.value.open, moved.value.close) == (5.0, 6.0)


def test_revaluing_an_unchanged_subject_changes_nothing() -> None:
    """A live run revalues more often than a backfill; the rows must not tell."""
    rows = []
    for observed_again in (True, False):
        book = WindowBook()
        book.observe(LP, Observation(value_usd=3.0))
        book.close(boundary(1, T0 + 10, T0 + 60), {LP.subject_id})
        if observed_again:
            book.observe(LP, Observation(value_usd=3.0))
        out = book.close(
            boundary(2, T0 + 70, T0 + 3600), {LP.subject_id} if observed_again else set()
        )
        rows.append([window_json(r) for r in out])
    assert rows[0] == rows[1]


def test_a_final_subject_closes_every_window_and_leaves() -> None:
    book = WindowBook()
    book.observe(LP, Observation(value_usd=10.0))
    book.close(boundary(1, T0 + 10, T0 + 60), {LP.subject_id})
    book.observe(LP, Observation(value_usd=0.0, final=True))
    rows = book.close(boundary(2, T0 + 70, T0 + 120), {LP.subject_id})
    assert sorted(r.window for r in rows) == ["1d", "1h", "1m"]
    assert all(r.value.close == 0.0 for r in rows)
    assert LP.subject_id not in book.subjects
    assert book.close(boundary(3, T0 + 130, T0 + 180), set()) == []


def test_a_gap_closes_the_last_window_and_the_next_starts_at_the_new_minute() -> None:
    book = WindowBook()
    book.observe(LP, Observation(value_usd=1.0))
    rows = book.close(boundary(1, T0 + 10, T0 + 600), {LP.subject_id})
    (minute,) = by(rows, "1m")
    assert minute.start == T0
    rows = book.close(boundary(2, T0 + 610, T0 + 700), set())
    (minute,) = by(rows, "1m")
    assert minute.start == T0 + 600


def test_fees_earned_are_the_growth_of_lifetime_fees_valued_at_the_close() -> None:
    book = WindowBook()

    def at(fees0: int, fees1: int) -> Observation:
        return Observation(1.0, None, None, fees0, fees1, 2.0, 1.0, 18, 6)

    book.observe(LP, at(10**18, 5 * 10**6))
    (first,) = by(book.close(boundary(1, T0 + 10, T0 + 60), {LP.subject_id}), "1m")
    # A subject's first window counts from zero: those fees were earned since it appeared.
    assert (first.fees0, first.fees1, first.fees_usd) == (10**18, 5 * 10**6, 7.0)
    book.observe(LP, at(3 * 10**18, 5 * 10**6))
    (second,) = by(book.close(boundary(2, T0 + 70, T0 + 120), {LP.subject_id}), "1m")
    assert (second.fees0, second.fees1, second.fees_usd) == (2 * 10**18, 0, 4.0)


def test_health_factor_without_debt_is_null_and_does_not_break_the_fold() -> None:
    account = Subject(1, "1:0xpool:0xuser", "aave_v3", "0xuser")
    book = WindowBook()
    for i, hf in enumerate([None, 1.5, 1.2, None]):
        book.observe(account, Observation(value_usd=1.0, health_factor=hf))
        rows = book.close(boundary(i, T0 + 60 * i, T0 + 60 * (i + 1)), {account.subject_id})
    (last,) = by(rows, "1m", account)
    assert (last.health_factor.open, last.health_factor.close) == (1.2, None)
    rows = book.close(boundary(9, T0 + 3599, T0 + 3600), set())
    (hour,) = by(rows, "1h", account)
    assert (hour.health_factor.high, hour.health_factor.low) == (1.5, 1.2)
    assert window_json(hour)["health_factor"]["close"] is None


def test_a_dormant_subject_keeps_its_windows_until_its_day_ends_then_leaves() -> None:
    """An emptied account re-supplied the same day continues its windows: a second window with
    the same start would share the key a reorg retracts rows by."""
    book = WindowBook()
    book.observe(LP, Observation(value_usd=10.0))
    book.close(boundary(1, T0 + 10, T0 + 60), {LP.subject_id})
    book.observe(LP, Observation(value_usd=0.0, dormant=True))
    rows = book.close(boundary(2, T0 + 70, T0 + 120), {LP.subject_id})
    assert [r.window for r in rows] == ["1m"]  # the hour and the day stay open
    book.observe(LP, Observation(value_usd=4.0))
    rows = book.close(boundary(3, T0 + 130, T0 + 3600), {LP.subject_id})
    (hour,) = by(rows, "1h")
    assert (hour.start, hour.value.open, hour.value.low, hour.value.close) == (T0, 10.0, 0.0, 4.0)
    starts = {(r.window, r.start) for r in rows}
    book.observe(LP, Observation(value_usd=0.0, dormant=True))
    rows = book.close(boundary(4, T0 + 3610, T0 + 86400 + 5), {LP.subject_id})
    assert sorted(r.window for r in rows) == ["1d", "1h", "1m"]
    assert not starts & {(r.window, r.start) for r in rows}
    assert LP.subject_id not in book.subjects
    assert book.close(boundary(5, T0 + 86410, T0 + 86470), set()) == []
