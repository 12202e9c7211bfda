"""The RPC client's pure parts: Retry-After, range hints, error classes, the AIMD limiter,
backoff, URL redaction and the per-method validation of answers."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest

from defimon.chains import endpoints_from_args
from defimon.cli import build_parser
from flows.rpc import (
    AdaptiveRate,
    RpcClient,
    backoff_seconds,
    classify_error,
    parse_hint,
    parse_retry_after,
    redact_url,
    result_of,
    validate_result,
)
from schemas.errors import (
    ArchiveRequired,
    ConfigError,
    LogsUnreadable,
    MalformedResponse,
    RangeTooLarge,
    RpcError,
    RpcRateLimited,
    RpcTransientError,
    RpcTransportError,
)

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
H = "0x" + "ab" * 32
H2 = "0x" + "cd" * 32
ADDRESS = "0x" + "12" * 20


def a_log(**changes: Any) -> dict[str, Any]:
    log: dict[str, Any] = {
        "address": ADDRESS,
        "topics": [H, H2],
        "data": "0x" + "00" * 32,
        "blockNumber": "0x10",
        "blockHash": H,
        "transactionHash": H2,
        "transactionIndex": "0x0",
        "logIndex": "0x2",
        "removed": False,
    }
    log.update(changes)
    return {k: v for k, v in log.items() if v is not None}


# Retry-After ----------


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert parse_retry_after("7", NOW) == 7.0
    assert parse_retry_after(" 0 ", NOW) == 0.0
    assert parse_retry_after("1.5", NOW) == 1.5
    later = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    assert later.endswith("GMT")
    assert parse_retry_after(later, NOW) == 30.0
    # A date in the past means now; junk and absence mean "not said".
    earlier = format_datetime(NOW - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, NOW) == 0.0
    assert parse_retry_after("-4", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after("", NOW) is None
    assert parse_retry_after(None, NOW) is None


# Range hints ----------


def test_provider_range_hints() -> None:
    alchemy = (
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block "
        "range and no limit on the response size, or you can request any block range with a cap "
        "of 10K logs in the response. Based on your parameters, this block range should work: "
        "[0x1e8480, 0x1e8b2f]"
    )
    assert parse_hint(alchemy) == (0x1E8480, 0x1E8B2F)
    assert parse_hint(
        "query returned more than 10000 results. Try with this block range [0x10, 0x20]."
    ) == (0x10, 0x20)
    assert parse_hint("maximum block range: 2000") == (0, 1999)
    assert parse_hint("eth_getLogs is limited to a 10,000 range") == (0, 9999)
    assert parse_hint("eth_getLogs is limited to 1000 block range") == (0, 999)
    assert parse_hint("response too large") is None


# Classification ----------


@pytest.mark.parametrize(
    ("method", "error", "kind"),
    [
        ("eth_call", {"code": 3, "message": "execution reverted", "data": "0x08c379a0"}, RpcError),
        ("eth_call", {"code": -32000, "message": "execution reverted"}, RpcError),
        ("eth_call", {"code": -32603, "message": "EVM error InvalidOperandOOG"}, RpcError),
        ("eth_call", {"code": -32000, "message": "invalid jump destination"}, RpcError),
        ("eth_call", {"code": -32000, "message": "out of gas"}, RpcError),
        ("eth_foo", {"code": -32601, "message": "the method eth_foo does not exist"}, RpcError),
        ("eth_call", {"code": -32602, "message": "invalid argument 0"}, RpcError),
        ("eth_call", {"code": -32005, "message": "limit exceeded"}, RpcRateLimited),
        ("eth_call", {"code": 429, "message": "Too Many Requests"}, RpcRateLimited),
        ("eth_getLogs", {"code": -32000, "message": "too many requests"}, RpcRateLimited),
        (
            "eth_call",
            {"code": -32000, "message": "Your app has exceeded its compute units per second"},
            RpcRateLimited,
        ),
        ("eth_call", {"code": -32603, "message": "internal error"}, RpcTransientError),
        ("eth_call", {"code": -32000, "message": "header not found"}, RpcTransientError),
        ("eth_getBalance", {"code": -32000, "message": "missing trie node abc"}, ArchiveRequired),
        ("eth_call", {"code": -32000, "message": "upstream request timeout"}, RpcTransientError),
        ("eth_call", {"code": -32603, "message": "google upstream error"}, RpcTransientError),
        (
            "eth_getLogs",
            {"code": -32005, "message": "query returned more than 10000 results"},
            RangeTooLarge,
        ),
        (
            "eth_getLogs",
            {"code": -32602, "message": "Log response size exceeded. ... should work: [0x1, 0x2]"},
            RangeTooLarge,
        ),
        ("eth_getLogs", {"code": -32000, "message": "block range too large"}, RangeTooLarge),
        ("eth_call", {"code": -32000, "message": "something nobody has seen"}, RpcError),
    ],
)
def test_errors_are_classified_explicitly(method: str, error: dict[str, Any], kind: type) -> None:
    exc = classify_error(method, error)
    assert type(exc) is kind, (error, exc)


def test_retryable_errors_are_transport_errors_and_deterministic_ones_are_not() -> None:
    # Callers read a plain RpcError as an answer ("this balanceOf reverts") and re-raise an
    # RpcTransportError: a transient error must never be taken as an answer.
    assert isinstance(
        classify_error("eth_call", {"code": -32603, "message": "x"}), RpcTransportError
    )
    assert isinstance(classify_error("eth_call", {"code": 429, "message": "x"}), RpcTransportError)
    reverted = classify_error("eth_call", {"code": 3, "message": "execution reverted"})
    assert not isinstance(reverted, RpcTransportError)
    refused = classify_error("eth_getLogs", {"code": -32602, "message": "range [0x1, 0x9]"})
    assert isinstance(refused, RangeTooLarge) and refused.hint == (1, 9)


# The limiter and backoff ----------


def test_token_bucket_paces_requests_at_its_rate() -> None:
    bucket = AdaptiveRate(10, 1, 100, increase=2, decrease=0.5, now=0.0)
    # A full second's burst goes at once, the next waits a tenth of a second each.
    assert [bucket.reserve(0.0) for _ in range(10)] == [0.0] * 10
    assert bucket.reserve(0.0) == pytest.approx(0.1)
    assert bucket.reserve(0.0) == pytest.approx(0.2)
    # Time refills it (never beyond the burst).
    assert bucket.reserve(10.0) == 0.0
    assert bucket.tokens == pytest.approx(9.0)


def test_rate_adapts_aimd() -> None:
    bucket = AdaptiveRate(20, 3, 500, increase=2, decrease=0.5, now=0.0)
    bucket.on_rate_limited()
    assert bucket.rate == 10
    bucket.on_rate_limited()
    bucket.on_rate_limited()
    bucket.on_rate_limited()
    assert bucket.rate == 3, "never below the minimum"
    # Additive increase: a second's worth of successes (rate of them) adds `increase`.
    bucket.rate = 10.0
    for _ in range(10):
        bucket.on_success()
    assert 11.8 < bucket.rate < 12.0  # about +2 (the steps shrink as the rate climbs)
    for _ in range(100_000):
        bucket.on_success()
    assert bucket.rate == 500, "never above the maximum"
    # Right after a refusal there is no burst left.
    bucket = AdaptiveRate(10, 1, 100, increase=1, decrease=0.5, now=0.0)
    bucket.on_rate_limited()
    assert bucket.reserve(0.0) > 0


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    for failures, full in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (10, 5.0), (60, 5.0)]:
        delays = [backoff_seconds(failures, 0.1, 5.0, rng) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays), failures
        assert len(set(delays)) > 1, "jittered"


# Redaction ----------


def test_endpoint_urls_lose_their_keys() -> None:
    assert redact_url("https://eth-mainnet.g.alchemy.com/v2/AbCdEf0123456789xyzXYZ") == (
        "https://eth-mainnet.g.alchemy.com/v2/***"
    )
    assert redact_url("https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef") == (
        "https://mainnet.infura.io/v3/***"
    )
    assert redact_url("https://user:secret@node.example:8545/rpc?apikey=k") == (
        "https://***@node.example:8545/rpc?***"
    )
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    for url in ("https://x.quiknode.pro/0123456789abcdef0123/", "https://a.b/rpc/" + "f" * 64):
        assert "0123456789" not in redact_url(url) and "ffff" not in redact_url(url)


# Validation ----------


def test_answers_are_checked_against_their_request() -> None:
    ok = {"jsonrpc": "2.0", "id": 5, "result": "0x10"}
    assert result_of("eth_blockNumber", (), ok, 5) == "0x10"
    with pytest.raises(MalformedResponse, match="id"):
        result_of("eth_blockNumber", (), ok, 6)
    with pytest.raises(MalformedResponse, match="neither"):
        result_of("eth_blockNumber", (), {"jsonrpc": "2.0", "id": 5}, 5)
    with pytest.raises(MalformedResponse):
        result_of("eth_blockNumber", (), ["not", "an", "object"], 5)
    with pytest.raises(RpcRateLimited):  # an error without an id is still that error
        result_of("eth_call", (), {"id": None, "error": {"code": 429, "message": "slow"}}, 5)
    with pytest.raises(RangeTooLarge):
        error = {"code": -32005, "message": "query returned more than 10000 results"}
        result_of("eth_getLogs", ({},), {"id": 5, "error": error}, 5)


@pytest.mark.parametrize("bad", ["16", "0x", "0xzz", 16, None, "0x" + "1" * 65])
def test_quantities_must_be_hex(bad: object) -> None:
    with pytest.raises(MalformedResponse):
        validate_result("eth_blockNumber", (), bad)
    with pytest.raises(MalformedResponse):
        validate_result("eth_chainId", (), bad)


def test_block_headers_must_be_whole_and_the_block_asked_for() -> None:
    header = {"number": "0x10", "hash": H, "parentHash": H2, "timestamp": "0x5"}
    assert validate_result("eth_getBlockByNumber", ("0x10", False), header) is header
    assert validate_result("eth_getBlockByNumber", ("0x11", False), None) is None  # not yet
    assert validate_result("eth_getBlockByHash", (H, False), header) is header
    for broken in (
        {**header, "hash": "0x12"},
        {k: v for k, v in header.items() if k != "hash"},
        {k: v for k, v in header.items() if k != "number"},
        {**header, "parentHash": None},
        {**header, "timestamp": "noon"},
        "0x10",
    ):
        with pytest.raises(MalformedResponse):
            validate_result("eth_getBlockByNumber", ("0x10", False), broken)
    with pytest.raises(MalformedResponse, match="answered block"):
        validate_result("eth_getBlockByNumber", ("0x11", False), header)
    with pytest.raises(MalformedResponse, match="answered block"):
        validate_result("eth_getBlockByHash", (H2, False), header)


def test_call_results_must_be_hex_data() -> None:
    assert validate_result("eth_call", (), "0x") == "0x"
    assert validate_result("eth_call", (), "0x" + "00" * 32) == "0x" + "00" * 32
    for bad in ("0x0", "12", None, {"x": 1}, "0xgg"):
        with pytest.raises(MalformedResponse):
            validate_result("eth_call", (), bad)


def test_logs_must_be_whole_and_inside_the_filter() -> None:
    flt = {"fromBlock": "0x10", "toBlock": "0x20", "address": [ADDRESS.upper().replace("0X", "0x")]}
    logs = [a_log(), a_log(logIndex="0x3")]
    assert validate_result("eth_getLogs", (flt,), logs) is logs
    assert validate_result("eth_getLogs", (flt,), []) == []
    broken_logs = [
        a_log(transactionHash=None),
        a_log(blockNumber=None),
        a_log(topics=None),
        a_log(data=None),
        a_log(blockHash=None),
        a_log(logIndex="three"),
        a_log(data="0x123"),
        a_log(topics=["0x12"]),
        a_log(topics="0x" + "00" * 32),
        a_log(blockHash="0x" + "zz" * 32),
        a_log(address="0x12"),
        a_log(blockNumber="0x21"),  # outside the range asked for
        a_log(address="0x" + "99" * 20),  # an address not asked for
        "not a log",
    ]
    for broken in broken_logs:
        with pytest.raises(MalformedResponse):
            validate_result("eth_getLogs", (flt,), [a_log(), broken])
    with pytest.raises(MalformedResponse, match="not a list"):
        validate_result("eth_getLogs", (flt,), {"logs": []})
    # By block hash: every log of that block; by topics: every log matching them.
    assert validate_result("eth_getLogs", ({"blockHash": H},), logs) is logs
    with pytest.raises(MalformedResponse):
        validate_result("eth_getLogs", ({"blockHash": H2},), logs)
    assert validate_result("eth_getLogs", ({"topics": [[H], None, None]},), logs) is logs
    assert validate_result("eth_getLogs", ({"topics": [None, H2]},), logs) is logs
    with pytest.raises(MalformedResponse):
        validate_result("eth_getLogs", ({"topics": [H2]},), logs)


# A block no endpoint can serve ----------


def logs_client(urls: list[str], logs: list[dict[str, Any]]) -> tuple[RpcClient, list[str]]:
    """An RpcClient over endpoints that answer eth_getLogs from `logs`, the "capped" ones
    refusing more than 10 results (Infura's words); the endpoints asked, in order."""
    client = RpcClient(urls)
    asked: list[str] = []

    def post(endpoint: Any, payload: bytes) -> Any:
        body = orjson.loads(payload)
        asked.append(endpoint.url)
        flt = body["params"][0]
        low, high = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        wanted = set(flt["address"])
        found = [x for x in logs if low <= int(x["blockNumber"], 16) <= high]
        found = [x for x in found if x["address"] in wanted]
        if "capped" in endpoint.url and len(found) > 10:
            error = {"code": -32005, "message": "query returned more than 10 results"}
            return {"jsonrpc": "2.0", "id": body["id"], "error": error}
        return {"jsonrpc": "2.0", "id": body["id"], "result": found}

    client._post = post  # type: ignore[method-assign]
    return client, asked


def test_a_block_one_contract_filled_past_every_endpoints_cap_stops_with_a_clear_error() -> None:
    # Block 0x10: 11 logs of one contract. Nothing smaller than one block of one contract
    # can be asked, so an endpoint that caps answers at 10 can never serve it.
    logs = [a_log(blockNumber="0x10", logIndex=hex(i), transactionIndex=hex(i)) for i in range(11)]
    flt = {"fromBlock": "0x0", "toBlock": "0x20", "address": [ADDRESS, "0x" + "34" * 20]}
    both = ["http://capped-a", "http://capped-b"]
    client, asked = logs_client(both, logs)
    # The first endpoint's refusal leaves the other to try: the caller asks again.
    with pytest.raises(RangeTooLarge) as first:
        client.get_logs(flt)
    assert first.value.uncut == {"fromBlock": "0x10", "toBlock": "0x10", "address": [ADDRESS]}
    with pytest.raises(LogsUnreadable) as stopped:
        for _ in range(4):  # round robin: the other endpoint refuses it within a few reads
            with contextlib.suppress(RangeTooLarge):
                client.get_logs(flt)
    message = str(stopped.value)
    assert "block 16" in message and ADDRESS in message
    assert "capped-a" in message and "capped-b" in message and "without a result cap" in message
    assert set(asked) == set(both)
    # With an endpoint that serves it: read, whole.
    client, asked = logs_client(["http://capped-a", "http://whole"], logs)
    got: list[dict[str, Any]] = []
    for _ in range(4):
        with contextlib.suppress(RangeTooLarge):
            got = client.get_logs(flt)
            break
    assert got == logs


# Configuration ----------


def test_run_takes_several_rpc_endpoints() -> None:
    args = build_parser().parse_args(
        ["run", "--rpc", "http://a:8545", "--rpc", "http://b/v2/k, http://c", "--chain", "base"]
    )
    (endpoint,) = endpoints_from_args(args.chain, args.rpc, args.ws, args.from_block)
    assert endpoint.http_urls == ("http://a:8545", "http://b/v2/k", "http://c")
    (one,) = endpoints_from_args(["base"], ["http://a:8545", "http://a:8545"])
    assert one.http_urls == ("http://a:8545",)
    with pytest.raises(ConfigError):
        endpoints_from_args(["base"], ["base=http://a", "optimism=http://b"])
