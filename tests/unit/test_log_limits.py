"""Providers' eth_getLogs refusals, in their own words, and how defimon converges on them.

Every refusal below is a provider's or client's literal text (and code), with where it was
seen. Each is fed to the real classifier (flows/rpc.classify_error) by a simulated provider
that applies that provider's rule to every filter; the read (flows/log_limits.read_logs, as
RpcClient.get_logs runs it) must be served within three tries, never refused again for a limit
it learned, and return exactly the logs a provider without limits returns, in log order.

Sources of the wordings:
- Infura: "range 1000000 exceeds limit of 10000" (-32602) INFURA/infura#237; "query returned
  more than 10000 results" (-32005) status-im/nimbus-eth2#1823, OffchainLabs/prysm#7827.
- Alchemy: "Log response size exceeded. You can make eth_getLogs requests with up to a 2K
  block range ... this block range should work: [0x..., 0x...]" (-32602, its paid plans);
  "You can make eth_getLogs requests with up to a 500 block range. Based on your parameters,
  this block range should work: [0x123c9b2, 0x123cba5]" (-32600) BobTheBuidler/dank_mids#772.
- QuickNode: "eth_getLogs is limited to a 10,000 range" (-32614, with HTTP 413)
  eternalsafe/wallet#57, OffchainLabs/arbitrum-sdk#609.
- geth (--rpc.rangelimit) and publicnode: "exceed maximum block range: 5000" (seen in
  several public clients' code; publicnode answers 50000 on some chains).
- publicnode: "Please, specify less number of addresses" (no number; Lasso RPC's adapters).
- reth: "query exceeds max block range 5000" (-32602) paradigmxyz/reth#8558; "query exceeds
  max results 20000, retry with the range 25766988-25775072" (-32602) paradigmxyz/reth#23810,
  base/base#2421; reth-based L2s: "block range is larger than max block range, block range =
  5120, max block range = 5000" (-32000) enviodev/hyperindex#605.
- erigon (--rpc.blockrange.limit, --rpc.logs.maxresults): "query block range exceeds server
  limit, narrow your filter: 1000", "query returns too many logs, narrow your filter: 20000"
  erigontech/erigon#19721, trezor/blockbook#1692.
- Arbitrum (nitro): "logs matched by query exceeds limit of 10000"; Ankr: "block range is too
  wide" (-32600, 3,000 blocks); llamarpc/Ankr: "query exceeds max results"; Base: "block range
  too large"; 1RPC "response size should not greater than N bytes" (ponder-sh/ponder
  packages/utils/src/getLogsRetryHelper.ts and its tests).
- Nethermind: no literal refusal text could be found (its limit is a config option); its
  answers fall to the generic wordings.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from flows.log_limits import (
    ADDRESSES,
    MAX_REFUSALS,
    RANGE,
    RESULTS,
    SIZE,
    LogLimits,
    Refusal,
    filter_addresses,
    filter_span,
    log_order,
    parse_refusal,
    plan,
    read_logs,
)
from flows.rpc import classify_error, parse_hint
from schemas.errors import RangeTooLarge

ALCHEMY_PAID = (
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range "
    "and no limit on the response size, or you can request any block range with a cap of 10K "
    "logs in the response. Based on your parameters, this block range should work: [{}, {}]"
)
ALCHEMY_FREE = (
    "You can make eth_getLogs requests with up to a 500 block range. Based on your parameters, "
    "this block range should work: [{}, {}]"
)


# Parsing ----------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("range 1000000 exceeds limit of 10000", Refusal(RANGE, 10_000)),
        ("query returned more than 10000 results", Refusal(RESULTS, 10_000)),
        (
            "query returned more than 10000 results. Try with this block range [0x10, 0x20].",
            Refusal(RESULTS, 10_000, (0x10, 0x20)),
        ),
        (
            ALCHEMY_PAID.format("0x1e8480", "0x1e8b2f"),
            Refusal(RESULTS, 10_000, (0x1E8480, 0x1E8B2F)),
        ),
        (
            ALCHEMY_FREE.format("0x123c9b2", "0x123cba5"),
            Refusal(RANGE, 500, (0x123C9B2, 0x123CBA5)),
        ),
        ("eth_getLogs is limited to a 10,000 range", Refusal(RANGE, 10_000)),
        ("exceed maximum block range: 5000", Refusal(RANGE, 5_000)),
        ("exceed maximum block range: 50000", Refusal(RANGE, 50_000)),
        ("query exceeds max block range 5000", Refusal(RANGE, 5_000)),
        (
            "query exceeds max results 20000, retry with the range 25766988-25775072",
            Refusal(RESULTS, 20_000, (25_766_988, 25_775_072)),
        ),
        (
            "block range is larger than max block range, block range = 5120, "
            "max block range = 5000",
            Refusal(RANGE, 5_000),
        ),
        ("query block range exceeds server limit, narrow your filter: 1000", Refusal(RANGE, 1_000)),
        ("query returns too many logs, narrow your filter: 20000", Refusal(RESULTS, 20_000)),
        ("logs matched by query exceeds limit of 10000", Refusal(RESULTS, 10_000)),
        ("block range is too wide", Refusal(RANGE, 3_000)),
        ("block range is too wide (maximum 1024)", Refusal(RANGE, 1_024)),
        ("Please, specify less number of addresses", Refusal(ADDRESSES)),
        ("a maximum of 5,000 parameters in a single request", Refusal(ADDRESSES, 5_000)),
        ("response size should not greater than 10000000 bytes", Refusal(SIZE)),
        ("block range too large", Refusal(RANGE)),
        ("Block range is too large", Refusal(RANGE)),
    ],
)
def test_refusals_are_parsed_by_kind_with_the_limit_they_name(
    message: str, expected: Refusal
) -> None:
    assert parse_refusal(message) == expected
    exc = classify_error("eth_getLogs", {"code": -32602, "message": message})
    assert isinstance(exc, RangeTooLarge)
    assert exc.refusal == expected


def test_infura_names_the_request_and_the_limit_and_the_limit_is_what_counts() -> None:
    # The bug of issue 10: "range 64 exceeds limit of 50" was read as a limit of 64.
    assert parse_hint("range 64 exceeds limit of 50") == (0, 49)
    assert parse_refusal("range 1000000 exceeds limit of 10000").limit == 10_000


def test_the_same_wordings_for_other_methods_are_not_log_refusals() -> None:
    assert not isinstance(
        classify_error("eth_call", {"code": -32602, "message": "range 5 exceeds limit of 4"}),
        RangeTooLarge,
    )


# Learning and planning ----------


def test_limits_are_learned_tightened_and_merged() -> None:
    flt = {
        "fromBlock": hex(0),
        "toBlock": hex(99_999),
        "address": [f"0x{i:040x}" for i in range(8)],
    }
    limits = LogLimits().learn(Refusal(RANGE, 10_000), flt)
    assert limits == LogLimits(max_span=10_000)
    # A looser limit later never loosens it; a tighter one tightens it.
    assert limits.learn(Refusal(RANGE, 50_000), flt) == limits
    assert limits.learn(Refusal(RANGE, 2_000), flt).max_span == 2_000
    # Unnamed limits come from the refused filter: half its span, a quarter of its addresses.
    assert LogLimits().learn(Refusal(RANGE), flt).max_span == 50_000
    assert LogLimits().learn(Refusal(ADDRESSES), flt).max_addresses == 2
    assert LogLimits().learn(Refusal(SIZE), flt) == LogLimits()
    results = LogLimits().learn(Refusal(RESULTS, 10_000), flt)
    assert results.target_logs() == 5_000 and LogLimits().target_logs() == 5_000
    assert LogLimits().learn(Refusal(RESULTS, 2_000), flt).target_logs() == 1_000
    assert LogLimits(max_span=5).merged(LogLimits(max_span=9, max_addresses=3)) == LogLimits(
        max_span=5, max_addresses=3
    )


def test_a_plan_covers_the_filter_exactly_within_the_limits() -> None:
    addresses = [f"0x{i:040x}" for i in range(7)]
    flt = {"fromBlock": hex(10), "toBlock": hex(34), "address": addresses, "topics": ["0xab"]}
    parts = plan(flt, LogLimits(max_span=10, max_addresses=3))
    assert len(parts) == 3 * 3
    covered = {
        (block, a)
        for p in parts
        for block in range(int(p["fromBlock"], 16), int(p["toBlock"], 16) + 1)
        for a in p["address"]
    }
    assert covered == {(b, a) for b in range(10, 35) for a in addresses}
    assert all((filter_span(p) or 0) <= 10 and len(filter_addresses(p) or ()) <= 3 for p in parts)
    assert all(p["topics"] == ["0xab"] for p in parts)
    # A block-hash filter (live) is only ever cut by addresses.
    live = {"blockHash": "0x" + "11" * 32, "address": addresses}
    assert [len(p["address"]) for p in plan(live, LogLimits(max_span=1, max_addresses=4))] == [4, 3]


# Convergence against simulated providers ----------


@dataclass
class Provider:
    """A node with `logs` (sorted by block) that refuses filters as `rule` says."""

    rule: Callable[[Provider, dict[str, Any], int, int], dict[str, Any] | None]
    logs: list[dict[str, Any]]
    blocks: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, Any], bool]] = field(default_factory=list)
    limits: LogLimits = field(default_factory=LogLimits)

    def __post_init__(self) -> None:
        self.blocks = [int(item["blockNumber"], 16) for item in self.logs]

    def matching(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        low = bisect.bisect_left(self.blocks, int(flt["fromBlock"], 16))
        high = bisect.bisect_right(self.blocks, int(flt["toBlock"], 16))
        wanted = set(flt.get("address") or ())
        return [x for x in self.logs[low:high] if not wanted or x["address"] in wanted]

    def send(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        found = self.matching(flt)
        error = self.rule(self, flt, filter_span(flt) or 1, len(found))
        self.requests.append((flt, error is not None))
        if error is not None:
            raise classify_error("eth_getLogs", error)
        return found

    def learn(self, exc: RangeTooLarge, flt: dict[str, Any]) -> None:
        assert isinstance(exc.refusal, Refusal)
        self.limits = self.limits.learn(exc.refusal, flt)

    def read(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        return read_logs(flt, self.send, lambda: self.limits, self.learn)


def chain_logs(blocks: int, every: int, per_block: int, addresses: int) -> list[dict[str, Any]]:
    """`per_block` logs in every `every`-th block, emitted by `addresses` contracts in turn."""
    out = []
    for b in range(0, blocks, every):
        for i in range(per_block):
            out.append(
                {
                    "blockNumber": hex(b),
                    "logIndex": hex(i),
                    "address": f"0x{(b + i) % addresses:040x}",
                }
            )
    return out


def _err(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def span_cap(cap: int, code: int, message: str) -> Callable[..., dict[str, Any] | None]:
    def rule(_p: Provider, _f: dict[str, Any], span: int, _n: int) -> dict[str, Any] | None:
        return _err(code, message.format(span=span, cap=cap)) if span > cap else None

    return rule


def result_cap(cap: int, code: int, message: str) -> Callable[..., dict[str, Any] | None]:
    def rule(_p: Provider, _f: dict[str, Any], _span: int, n: int) -> dict[str, Any] | None:
        return _err(code, message.format(cap=cap)) if n > cap else None

    return rule


def alchemy(p: Provider, flt: dict[str, Any], span: int, n: int) -> dict[str, Any] | None:
    if span <= 2_000 or n <= 10_000:
        return None
    # Its suggestion: from our start, as far as 10K logs reach.
    start = int(flt["fromBlock"], 16)
    last = int(p.matching(flt)[9_999]["blockNumber"], 16) - 1
    return _err(-32602, ALCHEMY_PAID.format(hex(start), hex(max(start, last))))


def alchemy_free(p: Provider, flt: dict[str, Any], span: int, n: int) -> dict[str, Any] | None:
    start = int(flt["fromBlock"], 16)
    return _err(-32600, ALCHEMY_FREE.format(hex(start), hex(start + 499))) if span > 500 else None


def reth_results(p: Provider, flt: dict[str, Any], span: int, n: int) -> dict[str, Any] | None:
    if n <= 20_000:
        return None
    # reth names a range that fits (or, per reth#23810, sometimes the very range asked).
    start = int(flt["fromBlock"], 16)
    end = int(p.matching(flt)[19_999]["blockNumber"], 16) - 1
    return _err(-32602, f"query exceeds max results 20000, retry with the range {start}-{end}")


def addresses_cap(cap: int) -> Callable[..., dict[str, Any] | None]:
    def rule(_p: Provider, flt: dict[str, Any], _span: int, _n: int) -> dict[str, Any] | None:
        if len(flt.get("address") or ()) > cap:
            return _err(-32000, "Please, specify less number of addresses")
        return None

    return rule


# (name, rule, the first filter's span, logs: (blocks, every, per block), addresses)
DENSE = (200_000, 4, 1)  # 50,000 logs: 1 every 4 blocks
SPARSE = (200_000, 50, 1)  # 4,000 logs
PROVIDERS: list[tuple[str, Callable[..., dict[str, Any] | None], int, tuple[int, int, int]]] = [
    (
        "infura range",
        span_cap(10_000, -32602, "range {span} exceeds limit of {cap}"),
        100_000,
        SPARSE,
    ),
    (
        "infura results",
        result_cap(10_000, -32005, "query returned more than {cap} results"),
        160_000,
        DENSE,
    ),
    ("alchemy", alchemy, 200_000, DENSE),
    ("alchemy free tier", alchemy_free, 8_000, SPARSE),
    (
        "quicknode",
        span_cap(10_000, -32614, "eth_getLogs is limited to a 10,000 range"),
        100_000,
        SPARSE,
    ),
    (
        "geth / publicnode",
        span_cap(5_000, -32000, "exceed maximum block range: {cap}"),
        100_000,
        SPARSE,
    ),
    ("reth range", span_cap(5_000, -32602, "query exceeds max block range {cap}"), 100_000, SPARSE),
    ("reth results", reth_results, 200_000, DENSE),
    (
        "reth-based L2",
        span_cap(
            5_000,
            -32000,
            "block range is larger than max block range, block range = {span}, "
            "max block range = {cap}",
        ),
        100_000,
        SPARSE,
    ),
    (
        "erigon range",
        span_cap(
            1_000, -32000, "query block range exceeds server limit, narrow your filter: {cap}"
        ),
        100_000,
        SPARSE,
    ),
    (
        "erigon results",
        result_cap(20_000, -32000, "query returns too many logs, narrow your filter: {cap}"),
        200_000,
        DENSE,
    ),
    (
        "arbitrum",
        result_cap(10_000, -32000, "logs matched by query exceeds limit of {cap}"),
        160_000,
        DENSE,
    ),
    ("ankr", span_cap(3_000, -32600, "block range is too wide"), 20_000, SPARSE),
    ("llamarpc", result_cap(10_000, -32000, "query exceeds max results {cap}"), 160_000, DENSE),
    ("base", span_cap(2_000, -32000, "block range too large"), 8_000, SPARSE),
    (
        "1rpc size",
        result_cap(12_000, -32000, "response size should not greater than 10000000 bytes"),
        160_000,
        DENSE,
    ),
]


@pytest.mark.parametrize(
    ("name", "rule", "span", "shape"), PROVIDERS, ids=[p[0] for p in PROVIDERS]
)
def test_each_provider_converges_within_three_tries_and_is_not_refused_again(
    name: str,
    rule: Callable[..., dict[str, Any] | None],
    span: int,
    shape: tuple[int, int, int],
) -> None:
    logs = chain_logs(*shape, addresses=4)
    provider = Provider(rule, logs)
    unlimited = Provider(lambda *_: None, logs)
    first = {
        "fromBlock": hex(0),
        "toBlock": hex(span - 1),
        "address": [f"0x{i:040x}" for i in range(4)],
    }
    assert provider.read(first) == unlimited.read(first), name
    assert provider.requests[0][1], "the provider refused the first filter"
    # The first answered request came within three tries.
    answered = [i for i, (_flt, refused) in enumerate(provider.requests) if not refused]
    assert answered and answered[0] < 3, provider.requests[:4]
    assert sum(refused for _f, refused in provider.requests) <= 3
    # The next range (as the source's next one) is planned within what was learned: a limit
    # the provider named is never hit again.
    before = len(provider.requests)
    nxt = {**first, "fromBlock": hex(span), "toBlock": hex(min(2 * span, shape[0]) - 1)}
    assert provider.read(nxt) == unlimited.read(nxt)
    refusals = [r for _f, r in provider.requests[before:] if r]
    if provider.limits.max_span is not None or rule in (alchemy, reth_results):
        assert refusals == [], name


def test_address_lists_over_an_unnamed_cap_are_split_and_merged_in_log_order() -> None:
    logs = chain_logs(2_000, 1, 3, addresses=120)
    provider = Provider(addresses_cap(25), logs)
    unlimited = Provider(lambda *_: None, logs)
    flt = {"fromBlock": hex(0), "toBlock": hex(999), "address": [f"0x{i:040x}" for i in range(120)]}
    got = provider.read(flt)
    assert got == unlimited.read(flt) and got == sorted(got, key=log_order)
    tries = [refused for _f, refused in provider.requests]
    assert tries[:3] == [True, True, False]  # 120 addresses, then 30, then 7
    assert provider.limits.max_addresses == 7
    before = len(provider.requests)
    provider.read({**flt, "fromBlock": hex(1_000), "toBlock": hex(1_999)})
    assert not any(r for _f, r in provider.requests[before:])


def test_a_refusal_that_cannot_be_cut_reaches_the_caller_after_bounded_tries() -> None:
    # One block over the result cap, one address: nothing left to cut.
    logs = chain_logs(10, 1, 50, addresses=1)
    provider = Provider(result_cap(10, -32005, "query returned more than {cap} results"), logs)
    with pytest.raises(RangeTooLarge) as raised:
        provider.read({"fromBlock": hex(0), "toBlock": hex(9), "address": ["0x" + "0" * 40]})
    assert len(provider.requests) <= 3
    # The part that cannot be cut is named: one block, one address (flows/rpc.py stops on it).
    uncut = raised.value.uncut
    assert (
        uncut is not None
        and filter_span(uncut) == 1
        and filter_addresses(uncut) == ["0x" + "0" * 40]
    )


INFURA_RESULTS = "query returned more than {cap} results"


def dense_block(
    blocks: int, block: int, heavy: dict[int, int], addresses: int
) -> list[dict[str, Any]]:
    """One log every 16 blocks, from the contracts in turn, and in `block` also `heavy[a]`
    logs of contract a."""
    out = []
    for b in range(blocks):
        emitters = [a for a, n in heavy.items() for _ in range(n)] if b == block else []
        for index, a in enumerate(emitters + ([b // 16 % addresses] if b % 16 == 0 else [])):
            out.append({"blockNumber": hex(b), "logIndex": hex(index), "address": f"0x{a:040x}"})
    return out


def capped(p: Provider, flt: dict[str, Any], span: int, n: int) -> dict[str, Any] | None:
    """The real caps: 1,000 addresses (publicnode's words), 10,000 results (Infura's)."""
    return addresses_cap(1_000)(p, flt, span, n) or result_cap(10_000, -32005, INFURA_RESULTS)(
        p, flt, span, n
    )


@pytest.mark.parametrize("span", [1, 16, 1_024, 65_536])
def test_a_block_over_the_result_cap_is_found_and_cut_by_its_addresses(span: int) -> None:
    # 10,500 logs in one block from two contracts that are neighbours in the list (as the
    # factory and the position manager are in the reader's), among 1,150 addresses: the range
    # is quartered down to the block, the block's addresses down to the two. Each cut is one
    # refusal; with three allowed per filter (as before) the read never succeeded, whatever
    # the range, and the source asked again forever.
    block = 70_000
    logs = dense_block(block + 8, block, {0: 3_500, 1: 7_000}, 1_150)
    provider, unlimited = Provider(capped, logs), Provider(lambda *_: None, logs)
    low = block - span // 2
    flt = {
        "fromBlock": hex(low),
        "toBlock": hex(low + span - 1),
        "address": [f"0x{i:040x}" for i in range(1_150)],
    }
    got = provider.read(flt)
    assert got == unlimited.read(flt) and got == sorted(got, key=log_order)
    refused = [f for f, r in provider.requests if r]
    # Addresses learned once (a quarter of 1,150), then only cuts holding the dense block.
    assert provider.limits == LogLimits(max_results=10_000, max_addresses=287)
    assert all(int(f["fromBlock"], 16) <= block <= int(f["toBlock"], 16) for f in refused[1:])
    quarterings = -(-(span - 1).bit_length() // 2)  # range: ceil(log4(span))
    assert len(refused) <= 1 + quarterings + 5, len(refused)  # addresses: 287 -> 1 in 5


def test_a_provider_that_refuses_every_part_is_given_up_on() -> None:
    # Refusing every range over one block (by time, nothing to learn): cut after cut would end
    # in a thousand one-block requests; the read gives up after MAX_REFUSALS refusals instead.
    def timeout(_p: Provider, _f: dict[str, Any], span: int, _n: int) -> dict[str, Any] | None:
        return _err(-32000, "query timeout exceeded") if span > 1 else None

    provider = Provider(timeout, chain_logs(1_000, 1, 2, addresses=8))
    flt = {"fromBlock": hex(0), "toBlock": hex(999), "address": [f"0x{i:040x}" for i in range(8)]}
    with pytest.raises(RangeTooLarge) as raised:
        provider.read(flt)
    assert sum(refused for _f, refused in provider.requests) == MAX_REFUSALS
    assert len(provider.requests) < 100 and raised.value.uncut is None
