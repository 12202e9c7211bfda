"""What the reader plans to read, before it reads (pure): which blocks a lending market's
state is read at, which opening balances are read, and how Transfer filters are cut."""

from __future__ import annotations

from typing import Any

from flows.balance_reader import (
    CALLS_PER_BATCH,
    PARAMETERS_PER_QUERY,
    TRANSFER,
    WALLETS_PER_QUERY,
    BalanceTracker,
    TrackedRead,
    first_appearances,
    opening_pairs,
    scan_is_cheaper,
    transfer_chunks,
)
from flows.log_limits import LogLimits
from flows.prices_reader import BlockLogs, state_read_blocks
from flows.rpc import RpcClient
from schemas.chain_config import ChainConfig, UniswapV3Config

FEED, POOL = "0x" + "fe" * 20, "0x" + "b0" * 20
A, B, C = ("0x" + c * 20 for c in ("a1", "b2", "c3"))
T1, T2, T3 = ("0x" + c * 20 for c in ("11", "22", "33"))


def blocks(*spec: tuple[int, int, tuple[str, ...]]) -> list[BlockLogs]:
    return [BlockLogs(n, t, frozenset(a)) for n, t, a in spec]


def test_a_market_is_read_where_a_feed_moved_before_each_minute_and_at_the_range_end() -> None:
    range_ = blocks(
        (10, 600, (POOL,)),
        (11, 612, (FEED,)),  # a followed feed logged
        (12, 624, (POOL,)),
        (13, 660, (POOL,)),  # a new minute: windows close on block 12
        (14, 672, (POOL,)),
        (15, 684, ()),  # no logs: counts for no window
        (16, 690, ()),  # the range's end
    )
    assert state_read_blocks(range_, {FEED}, live=False) == {11, 12, 14, 16}
    # Without feeds, a block with logs only matters where its minute ends.
    assert state_read_blocks(range_, set(), live=False) == {12, 14, 16}
    quiet = blocks((20, 600, (POOL,)), (21, 601, (POOL,)), (22, 602, (POOL,)), (23, 603, ()))
    assert state_read_blocks(quiet, set(), live=False) == {22, 23}
    assert state_read_blocks(quiet, {POOL}, live=False) == {20, 21, 22, 23}
    # Live blocks and the every-block policy: each one.
    assert state_read_blocks(quiet, set(), live=True) == {20, 21, 22, 23}
    assert state_read_blocks(quiet, set(), live=False, every_block=True) == {20, 21, 22, 23}
    assert state_read_blocks([], {FEED}, live=False) == set()


def test_openings_are_the_cross_product_or_only_the_pairs_that_received_by_then() -> None:
    new_wallets, new_tokens = {A: 5}, {T3: 7}
    every = opening_pairs(new_wallets, new_tokens, {B}, {T1, T2}, None)
    assert sorted(every) == [
        (A, T1, 5), (A, T2, 5), (A, T3, 7), (B, T3, 7),
    ]  # fmt: skip
    # A received T1 at 3 (holds it when tracked at 5), T2 only at 9 (after: opened where it
    # appears); B received T3 at 7; C is not being tracked here.
    received = {(A, T1): 3, (A, T2): 9, (B, T3): 7, (C, T1): 1, (B, T1): 2}
    only = opening_pairs(new_wallets, new_tokens, {B}, {T1, T2}, received)
    assert only == [(A, T1, 5), (B, T3, 7)]


def topic(address: str) -> str:
    return "0x" + address[2:].rjust(64, "0")


def transfer(token: str, block: int, sender: str, recipient: str) -> dict[str, Any]:
    return {
        "address": token,
        "blockNumber": hex(block),
        "topics": [TRANSFER, topic(sender), topic(recipient)],
    }


def test_a_pair_not_open_is_opened_where_it_first_appears_after_it_became_tracked() -> None:
    outsider = "0x" + "99" * 20
    logs = [
        transfer(T1, 4, outsider, A),  # A tracked from 5 in this range: before, ignored
        transfer(T1, 6, outsider, A),  # A's first T1 after tracking
        transfer(T1, 8, A, B),  # A already found; B (tracked before) holds T1 open
        transfer(T2, 8, B, A),  # B's T2: not open; A's T2 too
        transfer(T2, 9, B, A),
    ]
    is_open = {(B, T1)}.__contains__
    found = first_appearances(logs, is_open, {A: 5}, {}, {B}, {T1, T2})
    assert found == {(A, T1): 6, (B, T2): 8, (A, T2): 8}


def test_transfer_filters_stay_within_the_parameter_cap_and_the_learned_address_cap() -> None:
    wallets = [f"0x{i:040x}" for i in range(1_200)]
    tokens = [f"0x{i + 10**6:040x}" for i in range(6_000)]
    chunks = transfer_chunks(wallets, tokens, LogLimits())
    for addresses, chunk in chunks:
        assert len(chunk) <= WALLETS_PER_QUERY
        assert len(addresses) + len(chunk) + 1 <= PARAMETERS_PER_QUERY
    # Every (token, wallet) covered exactly once.
    covered = [(a, w) for addresses, chunk in chunks for a in addresses for w in chunk]
    assert len(covered) == len(set(covered)) == len(wallets) * len(tokens)
    capped = transfer_chunks(wallets, tokens, LogLimits(max_addresses=1_000))
    assert max(len(addresses) for addresses, _ in capped) == 1_000
    assert transfer_chunks([], tokens, LogLimits()) == []


def test_a_scan_is_chosen_only_when_it_costs_fewer_requests_than_the_calls() -> None:
    # One batch of calls is never worth a scan (two more round trips).
    assert not scan_is_cheaper(CALLS_PER_BATCH, 10, 50, 20_000_000, LogLimits())
    # 100,000 new wallets x 1,000 tokens: 200,000 batches of calls against 400 filters
    # (200 chunks of wallets, a Transfer and a Deposit filter each).
    assert scan_is_cheaper(10**8, 100_000, 1_000, 20_000_000, LogLimits())
    # ... unless the provider caps a request at 10,000 blocks: 2,000 requests a filter.
    assert not scan_is_cheaper(10**8, 100_000, 1_000, 20_000_000, LogLimits(max_span=10_000))


def test_the_tracker_forgets_pairs_opened_after_a_reorg_or_a_failed_read() -> None:
    config = ChainConfig(chain_id=1, uniswap_v3=UniswapV3Config(POOL, "0x" + "44" * 20))
    tracker = BalanceTracker(RpcClient("http://127.0.0.1:9"), config)
    # Before any scan every tracked pair is open: nothing to remember.
    tracker.commit(TrackedRead(openings={5: {(A, T1): 1}}, wallets={A}, tokens={T1}))
    assert tracker.opened == {}
    saved = tracker.checkpoint()
    scanned = TrackedRead(openings={8: {(B, T1): 2}}, wallets={B}, scanned=True)
    tracker.commit(scanned)
    tracker.commit(TrackedRead(openings={12: {(A, T2): 3}}, unreadable={12: {(B, T2): "x"}}))
    assert tracker.opened == {(B, T1): 8, (A, T2): 12, (B, T2): 12}
    # A reorg back to block 10 forgets what was opened after it.
    tracker.restore(tracker.snapshot, 10)
    assert tracker.opened == {(B, T1): 8}
    # A failed read rolls back to before the scan: every pair open again, nothing kept.
    tracker.rollback(saved)
    assert tracker.opened == {} and tracker.wallets == {A}
    tracker.commit(TrackedRead(openings={14: {(C, T1): 1}}, wallets={C}))
    assert tracker.opened == {}
