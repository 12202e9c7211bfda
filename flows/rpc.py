"""A lean JSON-RPC client for the hot path (logs, headers, batched calls), over several endpoints.

web3.py formats every log into AttributeDicts, which costs about ten times what the bytes
cost to fetch (see shared/notes: ~2,600 logs/s against ~30,000 raw). Backfill speed is the
point of this client, so it speaks JSON-RPC directly over keep-alive HTTP connections with
orjson; web3.py is used where its help is worth it (the WebSocket head subscription).

Providers are flaky, so every request goes through one loop:

- **endpoints**: requests rotate round-robin over the endpoints that are not cooling down; an
  endpoint that fails is cooled down with exponential backoff and jitter (or for as long as its
  `Retry-After` says), and the others carry the load meanwhile;
- **rate**: each endpoint has a token bucket whose rate adapts AIMD-style (Ponder's limiter):
  it drops multiplicatively on every rate-limit answer and climbs additively with successes;
- **faults are classified explicitly** (`classify_error`): 429s, 5xx, timeouts, dropped
  connections, transient JSON-RPC errors (-32005 limit exceeded, -32603 internal error, "header
  not found", ...) and malformed answers are retried; deterministic errors (execution reverted,
  invalid params) are not, and `RangeTooLarge` reaches the caller with the provider's hint;
- **answers are validated per method at the edge** (`validate_result`): a log without its
  coordinates, a header without its hash, a batch answer missing an id are faults, so garbage
  never reaches the state;
- **a bounded budget** (attempts and seconds) per call: a dead provider surfaces as an
  `RpcTransportError` and the caller (the source) decides what to do.

Every retryable fault that exhausts the budget is an `RpcTransportError`: callers that take a
plain `RpcError` as a deterministic answer (a reverting `balanceOf`) must re-raise those.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
import structlog

from flows.log_limits import (
    RANGE,
    REFUSAL_WORDS,
    RESULTS,
    LogLimits,
    Refusal,
    filter_addresses,
    filter_span,
    parse_refusal,
    read_logs,
)
from ports.metrics import METRICS
from schemas.errors import (
    ArchiveRequired,
    ConfigError,
    LogsUnreadable,
    MalformedResponse,
    RangeTooLarge,
    RpcError,
    RpcRateLimited,
    RpcTimeout,
    RpcTransientError,
    RpcTransportError,
)

log = structlog.get_logger("defimon.rpc")

# Providers word their "range too large" refusals differently: flows/log_limits.py parses them.
# Error classification, in this order: deterministic, rate limit, range, transient.
# The EVM's own failures (geth, reth, anvil/revm wordings) are answers about the call.
_DETERMINISTIC_WORDS = re.compile(
    r"revert|evm error|invalid opcode|opcode not found|out of gas|oog\b|"
    r"stack (?:underflow|overflow)|invalid jump|write protection|insufficient funds|"
    r"method not found|does not exist/is not available|not supported|unsupported|"
    r"invalid argument",
    re.IGNORECASE,
)
_DETERMINISTIC_CODES = frozenset({3, -32600, -32601, -32602, -32700})
_RATE_WORDS = re.compile(
    r"rate.?limit|too many requests|request rate|exceeded (?:the )?(?:rate|quota|capacity|"
    r"compute units|throughput)|daily request count|compute units per second|capacity exceeded",
    re.IGNORECASE,
)
_RATE_CODES = frozenset({429, -32005, -32029})
# A pruned node's answers to a state read at an old block (geth, reth, erigon, Nethermind,
# OpenEthereum wordings): only an archive node can serve it, so it is never retried.
_ARCHIVE_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        ("missing_trie_node", r"missing trie node"),
        ("historical_state_unavailable", r"historical state (?:is )?(?:unavailable|not available)"),
        ("state_not_available", r"\bstate\b[^.]{0,80}?\bis not available"),
        ("pruned", r"\bpruned\b|state pruning"),
    )
)
# Reads of an account's or contract's state at a block (the ones a pruned node refuses).
STATE_METHODS = frozenset(
    {
        "eth_call",
        "eth_getBalance",
        "eth_getStorageAt",
        "eth_getCode",
        "eth_getProof",
        "eth_getTransactionCount",
        "eth_estimateGas",
    }
)
_TRANSIENT_WORDS = re.compile(
    r"header not found|unknown block|block not found|not (?:yet )?available|missing trie node|"
    r"timeout|timed out|busy|overload|try again|temporar|unavailable|internal error|"
    r"bad gateway|upstream|no backend|connection|syncing|server error",
    re.IGNORECASE,
)
_TRANSIENT_CODES = frozenset({-32603, -32002, -32004})

_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_LOG_FIELDS = (
    "blockNumber",
    "blockHash",
    "logIndex",
    "transactionHash",
    "transactionIndex",
    "address",
    "topics",
    "data",
)
_SECRET_SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,12}")  # kept in labels: v2, rpc, eth-mainnet


@dataclass(frozen=True, slots=True)
class RpcOptions:
    """How hard the client tries. Defaults follow Ponder (20 rps start there; a local node or
    a paid plan takes more, and the limiter only ever slows down on a provider's word)."""

    timeout: float = 30.0  # seconds per HTTP request
    rate_initial: float = 50.0  # requests per second per endpoint, at start
    rate_min: float = 1.0
    rate_max: float = 500.0
    rate_increase: float = 2.0  # requests per second gained per second of successes
    rate_decrease: float = 0.7  # the rate is multiplied by this on each rate-limit answer
    attempts: int = 8  # per call, over all endpoints
    budget_seconds: float = 60.0  # per call, waits included
    backoff_base: float = 0.1  # first cooldown of a failing endpoint, seconds
    backoff_cap: float = 10.0  # longest cooldown (a Retry-After may ask for more)

    @classmethod
    def from_settings(cls, settings: Any) -> RpcOptions:
        """From ports.settings.Settings (the `rpc_*` fields)."""
        return cls(
            timeout=settings.rpc_timeout_seconds,
            rate_initial=settings.rpc_rate_initial,
            rate_max=settings.rpc_rate_max,
            attempts=settings.rpc_attempts,
            budget_seconds=settings.rpc_budget_seconds,
        )


# Pure parts: Retry-After, hints, classification, validation, the limiter -------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_hint(message: str) -> tuple[int, int] | None:
    """The provider's suggested (from, to), or (0, limit-1) when it only states a maximum
    span (the limit it names, never the span that was asked for)."""
    refusal = parse_refusal(message)
    if refusal.hint is not None:
        return refusal.hint
    if refusal.kind == RANGE and refusal.limit is not None:
        return 0, refusal.limit - 1
    return None


def archive_kind(method: str, text: str) -> str | None:
    """The kind of "needs an archive node" answer this is, for a state read; else None."""
    if method not in STATE_METHODS:
        return None
    for kind, pattern in _ARCHIVE_WORDS:
        if pattern.search(text):
            return kind
    return None


def classify_error(method: str, error: object) -> RpcError:
    """The exception for a JSON-RPC error object: deterministic (RpcError), rate limit
    (RpcRateLimited), range refusal (RangeTooLarge, eth_getLogs only) or transient."""
    if isinstance(error, dict):
        message = str(error.get("message", error))
        code = error.get("code")
        data = error.get("data")
    else:
        message, code, data = str(error), None, None
    code = code if isinstance(code, int) else None
    text = f"{message} {data}" if data is not None else message
    where = f"{method}: {message}"
    archive = archive_kind(method, text)
    if archive is not None:
        return ArchiveRequired(
            f"{where} (the node has pruned this block's state: an archive node is needed)",
            kind=archive,
            code=code,
        )
    if _DETERMINISTIC_WORDS.search(text):
        return RpcError(where, code=code, data=data)
    if code == 429 or _RATE_WORDS.search(text):
        return RpcRateLimited(where, code=code)
    # Before the codes: Alchemy and Infura refuse ranges with -32602 (invalid params), Infura
    # result counts with -32005, QuickNode with -32614, Ankr with -32600.
    if method == "eth_getLogs" and REFUSAL_WORDS.search(text):
        refusal = parse_refusal(text)
        return RangeTooLarge(where, hint=parse_hint(text), refusal=refusal, code=code)
    if code in _DETERMINISTIC_CODES:
        return RpcError(where, code=code, data=data)
    if code in _RATE_CODES:
        return RpcRateLimited(where, code=code)
    if code in _TRANSIENT_CODES or _TRANSIENT_WORDS.search(text):
        return RpcTransientError(where, code=code, data=data)
    return RpcError(where, code=code, data=data)


def _quantity(method: str, result: Any) -> Any:
    if not isinstance(result, str) or not _QUANTITY.fullmatch(result):
        raise MalformedResponse(f"{method}: not a hex quantity: {str(result)[:80]}")
    return result


def _data(method: str, result: Any) -> Any:
    if not isinstance(result, str) or not _DATA.fullmatch(result):
        raise MalformedResponse(f"{method}: not hex data: {str(result)[:80]}")
    return result


def _block(method: str, params: Sequence[Any], result: Any) -> Any:
    if result is None:
        return None  # not there (yet): the caller decides
    try:
        ok = (
            isinstance(result, dict)
            and _QUANTITY.fullmatch(result["number"]) is not None
            and _HASH.fullmatch(result["hash"]) is not None
            and _HASH.fullmatch(result["parentHash"]) is not None
            and _QUANTITY.fullmatch(result["timestamp"]) is not None
        )
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise MalformedResponse(f"{method}: not a block header: {str(result)[:120]}")
    wanted = params[0] if params else None
    if method == "eth_getBlockByNumber" and isinstance(wanted, str) and _QUANTITY.fullmatch(wanted):
        if int(result["number"], 16) != int(wanted, 16):
            raise MalformedResponse(f"{method}({wanted}) answered block {result['number']}")
    elif (
        method == "eth_getBlockByHash"
        and isinstance(wanted, str)
        and result["hash"].lower() != wanted.lower()
    ):
        raise MalformedResponse(f"{method}({wanted}) answered block {result['hash']}")
    return result


def _lower_set(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset((value.lower(),))
    if isinstance(value, list | tuple):
        return frozenset(str(v).lower() for v in value)
    return None


def _logs(params: Sequence[Any], result: Any) -> Any:
    """Every log whole, and inside the filter (block range or hash, addresses, topics).

    A tight loop on purpose: this runs for every log of a backfill (~25k logs/s)."""
    if not isinstance(result, list):
        raise MalformedResponse(f"eth_getLogs answered a {type(result).__name__}, not a list")
    flt = params[0] if params and isinstance(params[0], dict) else {}
    low, high = 0, 1 << 64
    try:
        if isinstance(flt.get("fromBlock"), str) and _QUANTITY.fullmatch(flt["fromBlock"]):
            low = int(flt["fromBlock"], 16)
        if isinstance(flt.get("toBlock"), str) and _QUANTITY.fullmatch(flt["toBlock"]):
            high = int(flt["toBlock"], 16)
    except ValueError:
        pass
    block_hash = flt.get("blockHash")
    block_hash = block_hash.lower() if isinstance(block_hash, str) else None
    addresses = _lower_set(flt.get("address"))
    topic_sets = [_lower_set(t) for t in flt.get("topics") or ()]
    # Per log only what is cheap (fields there, numbers parse and lie in the range); the 32-byte
    # words and addresses repeat a lot (a block's hash, topic0, wallets), so each distinct one
    # is checked once per answer, after the loop. Data is checked for shape, not per character.
    words: set[str] = set()
    emitters: set[str] = set()
    by_position: list[set[str]] = [set() for _ in topic_sets]
    positions = [(i, seen) for i, seen in enumerate(by_position) if topic_sets[i] is not None]
    add_word, add_words, add_emitter = words.add, words.update, emitters.add
    for item in result:
        try:
            topics, data, address = item["topics"], item["data"], item["address"]
            if not (
                low <= int(item["blockNumber"], 16) <= high
                and int(item["logIndex"], 16) >= 0
                and int(item["transactionIndex"], 16) >= 0
                and len(address) == 42
                and data[:2] == "0x"
                and not len(data) & 1
                and topics.__class__ is list
            ):
                raise ValueError("a field out of shape or outside the filter")
            add_word(item["blockHash"])
            add_word(item["transactionHash"])
            add_words(topics)
            add_emitter(address)
            for i, seen in positions:
                seen.add(topics[i])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            missing = [f for f in _LOG_FIELDS if not isinstance(item, dict) or f not in item]
            raise MalformedResponse(
                f"eth_getLogs: malformed log ({exc}; missing {missing}): {str(item)[:160]}"
            ) from None
    bad: object = next((w for w in words if not _HASH.fullmatch(w)), None)
    if bad is None and block_hash is not None:
        hashes = {str(item["blockHash"]).lower() for item in result}
        bad = next(iter(hashes - {block_hash}), None)
    if bad is None and addresses is not None:
        bad = next((a for a in emitters if a.lower() not in addresses), None)
    for i, seen in positions:
        allowed = topic_sets[i]
        if bad is None and allowed is not None:
            bad = next((t for t in seen if t.lower() not in allowed), None)
    if bad is not None:
        raise MalformedResponse(f"eth_getLogs: a log out of shape or outside the filter: {bad!r}")
    return result


def validate_result(method: str, params: Sequence[Any], result: Any) -> Any:
    """The result, if it has the shape `method` answers with; MalformedResponse otherwise."""
    if method == "eth_getLogs":
        return _logs(params, result)
    if method in ("eth_blockNumber", "eth_chainId", "eth_getBalance", "eth_gasPrice"):
        return _quantity(method, result)
    if method in ("eth_getBlockByNumber", "eth_getBlockByHash"):
        return _block(method, params, result)
    if method in ("eth_call", "eth_getCode", "eth_getStorageAt"):
        return _data(method, result)
    return result


def result_of(method: str, params: Sequence[Any], body: Any, request_id: int) -> Any:
    """The validated result of one JSON-RPC answer, or the classified error."""
    if not isinstance(body, dict):
        raise MalformedResponse(f"{method}: answer is not a JSON-RPC object: {str(body)[:200]}")
    error = body.get("error")
    answered = body.get("id")
    if error is not None and answered is None:
        raise classify_error(method, error)  # some nodes cannot tell which request failed
    if answered != request_id:
        raise MalformedResponse(f"{method}: answer has id {answered!r}, asked {request_id}")
    if error is not None:
        raise classify_error(method, error)
    if "result" not in body:
        raise MalformedResponse(f"{method}: answer has neither result nor error")
    return validate_result(method, params, body["result"])


class AdaptiveRate:
    """A token bucket whose rate adapts AIMD-style: times `decrease` on a rate-limit answer,
    +`increase` requests/second per second of successes (each success adds increase/rate).
    The burst is one second's worth. Pure: the caller passes the clock."""

    def __init__(
        self,
        initial: float,
        minimum: float,
        maximum: float,
        increase: float,
        decrease: float,
        now: float,
    ) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.increase, self.decrease = increase, decrease
        self.rate = min(max(initial, minimum), maximum)
        self.tokens = self.rate
        self.updated = now

    def reserve(self, now: float) -> float:
        """Take one token; the seconds to wait before sending (0 if one was there)."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(max(self.rate, 1.0), self.tokens + elapsed * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def on_success(self) -> None:
        self.rate = min(self.maximum, self.rate + self.increase / self.rate)

    def on_rate_limited(self) -> None:
        self.rate = max(self.minimum, self.rate * self.decrease)
        self.tokens = min(self.tokens, 0.0)  # no burst right after a refusal


def backoff_seconds(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(cap, base * 2**(n-1))."""
    delay = min(cap, base * 2 ** max(0, failures - 1))
    return delay / 2 + rng.random() * delay / 2


def redact_url(url: str) -> str:
    """An endpoint URL fit for logs and metric labels: no user, password, query, nor path
    segments that could be API keys (providers put keys in the path: /v2/<key>)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    user = "***@" if parts.username or parts.password else ""
    segments = [
        s if _SECRET_SEGMENT.fullmatch(s) else "***" for s in parts.path.split("/") if s != ""
    ]
    path = "/" + "/".join(segments) if segments else ""
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{user}{host}{port}{path}{query}"


# The client ---------------------------------------------------------------------------------

PREFETCH_WORKERS = 8  # block-hash log reads in flight at once (live pipelining)
PREFETCH_KEPT = 256  # started reads kept for get_logs to take
_T = TypeVar("_T")
_R = TypeVar("_R")


def _filter_key(flt: dict[str, Any]) -> bytes:
    return orjson.dumps(flt, option=orjson.OPT_SORT_KEYS)


_archive_logged: set[str] = set()


def _archive_required(method: str, exc: ArchiveRequired) -> None:
    """Count an archive-only answer; say what it means once per kind (not once per call)."""
    METRICS.rpc_archive_required.labels(method, exc.kind).inc()
    if exc.kind in _archive_logged:
        return
    _archive_logged.add(exc.kind)
    log.error(
        "rpc.archive_node_required",
        kind=exc.kind,
        method=method,
        error=str(exc)[:300],
        note="the node has pruned historical state; reads that need it are dead-lettered. "
        "Use an archive node (or a provider's archive plan) to serve them.",
    )


def _reason(exc: RpcError) -> str:
    """The metric label of a failure."""
    if isinstance(exc, RpcRateLimited):
        return "rate_limited"
    if isinstance(exc, RpcTimeout):
        return "timeout"
    if isinstance(exc, MalformedResponse):
        return "malformed"
    if isinstance(exc, RpcTransientError):
        return "transient"
    if isinstance(exc, RangeTooLarge):
        return "range_too_large"
    if isinstance(exc, ArchiveRequired):
        return "archive_required"
    if isinstance(exc, RpcTransportError):
        if exc.code is not None:
            return "http_5xx" if exc.code >= 500 else "http_error"
        return "connection"
    return "error"


class _Endpoint:
    def __init__(self, url: str, options: RpcOptions, now: float) -> None:
        self.url = url
        self.label = redact_url(url)
        self.limiter = AdaptiveRate(
            options.rate_initial,
            options.rate_min,
            options.rate_max,
            options.rate_increase,
            options.rate_decrease,
            now,
        )
        self.failures = 0  # consecutive
        self.cool_until = 0.0
        self.verified = False  # its chain id checked
        self.disabled: str | None = None  # why it is never used again
        self.log_limits = LogLimits()  # learned from its eth_getLogs refusals, kept
        self.rate_gauge = METRICS.rpc_endpoint_rate.labels(self.label)
        self.rate_gauge.set(self.limiter.rate)


class RpcClient:
    """JSON-RPC over keep-alive HTTP to one or several endpoints of the same chain.

    Thread-safe. `chain_id`, if given, is checked on each endpoint before its first use: an
    endpoint serving another chain is never used. `stop`, if given, cuts retry waits short.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        timeout: float | None = None,
        options: RpcOptions | None = None,
        chain_id: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        url_list = [urls] if isinstance(urls, str) else list(dict.fromkeys(urls))
        if not url_list:
            raise ValueError("RpcClient needs at least one URL")
        options = options or RpcOptions()
        if timeout is not None:
            options = dataclasses.replace(options, timeout=timeout)
        self.options = options
        self.urls = tuple(url_list)
        self.url = url_list[0]
        self._expected_chain = chain_id
        self._stop = stop or threading.Event()
        now = time.monotonic()
        self._endpoints = [_Endpoint(u, options, now) for u in url_list]
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._id_lock = threading.Lock()
        self._next_id = 1
        self._rng = random.Random()
        self._http = httpx.Client(
            timeout=options.timeout,
            headers={"content-type": "application/json"},
            limits=httpx.Limits(max_keepalive_connections=8, max_connections=16),
        )
        # Live pipelining: block-hash log reads started ahead (prefetch_logs), taken by get_logs.
        self._prefetched: dict[bytes, Future[list[dict[str, Any]]]] = {}
        self._pool: ThreadPoolExecutor | None = None
        # (block, address) of a filter that cannot be cut -> the endpoints that refused it
        self._uncut_refusers: dict[tuple[str, str], set[str]] = {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    @property
    def endpoint_labels(self) -> tuple[str, ...]:
        return tuple(e.label for e in self._endpoints)

    def _take_ids(self, count: int) -> int:
        with self._id_lock:
            first = self._next_id
            self._next_id += count
            return first

    # Calls --------------------------------------------------------------------------------

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        request_id = self._take_ids(1)
        payload = orjson.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
        )
        return self._request(
            method, payload, lambda body: result_of(method, params, body, request_id)
        )

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several calls in one request; results in call order. Any error raises: a fault
        (retried first) as an RpcTransportError, a deterministic error as an RpcError."""
        out = self._batch(calls, each=False)
        return out

    def batch_each(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Like `batch`, but a call the node refuses (a revert, a pruned state) gives its
        RpcError in its place instead of failing the others. Some nodes fail a whole batch for
        one refused call: then the calls go one by one. Faults still raise (RpcTransportError):
        never an answer."""
        try:
            return self._batch(calls, each=True)
        except RpcTransportError:
            raise
        except ArchiveRequired as exc:
            # The whole batch's block is gone from this node (a header not found through the
            # whole retry budget): so is every call's state at it.
            return [exc] * len(calls)
        except RpcError:
            pass
        out: list[Any] = []
        for method, params in calls:
            try:
                out.append(self.call(method, params))
            except RpcTransportError:
                raise
            except RpcError as exc:
                out.append(exc)
        return out

    def _batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *, each: bool) -> list[Any]:
        if not calls:
            return []
        first = self._take_ids(len(calls))
        payload = orjson.dumps(
            [
                {"jsonrpc": "2.0", "id": first + i, "method": m, "params": list(p)}
                for i, (m, p) in enumerate(calls)
            ]
        )

        def results(body: Any) -> list[Any]:
            if not isinstance(body, list):
                if isinstance(body, dict) and body.get("error") is not None:
                    # Some nodes answer a whole batch with one error object.
                    raise classify_error("batch", body["error"])
                raise MalformedResponse(f"batch answered with a non-list: {str(body)[:200]}")
            by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
            out: list[Any] = []
            deterministic: RpcError | None = None
            for i, (method, params) in enumerate(calls):
                item = by_id.get(first + i)
                if item is None:
                    raise MalformedResponse(
                        f"batch answer lacks the result of {method} (id {first + i})"
                    )
                try:
                    out.append(result_of(method, params, item, first + i))
                except RpcTransportError:
                    raise  # a fault anywhere: the whole batch again
                except RpcError as exc:
                    deterministic = deterministic or exc
                    out.append(exc)
            for item in out:
                if isinstance(item, ArchiveRequired):
                    _archive_required("batch", item)
            if deterministic is not None and not each:
                raise deterministic
            return out

        label = calls[0][0] if len({m for m, _ in calls}) == 1 else "batch"
        result: list[Any] = self._request(f"batch:{label}", payload, results)
        return result

    # Typed helpers -------------------------------------------------------------------------

    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def get_logs(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        """Every log of `flt`, in log order. The filter is cut to fit the limits learned from
        the endpoints' refusals (block span, addresses per filter), a refused part is asked
        again within what its refusal taught (flows/log_limits.py), and a refusal that
        cannot be resolved in a few tries reaches the caller as RangeTooLarge. A block-hash
        filter started ahead with the same shape (`prefetch_logs`) is taken from there, and
        stays there for a block read again (a block's logs never change; the oldest go first):
        only a failed one is dropped, so asking again reads again."""
        if "blockHash" in flt:
            key = _filter_key(flt)
            with self._lock:
                ahead = self._prefetched.get(key)
            if ahead is not None:
                try:
                    return ahead.result()
                except BaseException:
                    with self._lock:
                        self._prefetched.pop(key, None)
                    raise  # as a direct read would
        return self._get_logs(flt)

    def ahead(self, read: Callable[[_R], _T], arg: _R) -> Future[_T]:
        """Start a read now on the read-ahead workers (several in flight), for its caller to
        take later: the price sources' reads of live blocks (flows/prices_reader.py)."""
        with self._lock:
            return self._submit(read, arg)

    def _submit(self, read: Callable[[_R], _T], arg: _R) -> Future[_T]:
        # (the lock is held)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PREFETCH_WORKERS, thread_name_prefix="rpc-prefetch")
        return self._pool.submit(read, arg)

    def prefetch_logs(self, filters: Sequence[dict[str, Any]]) -> None:
        """Start reading these block-hash filters now, several in flight, for `get_logs` to
        take when it is asked the same filter: live blocks are then read pipelined and applied
        in order. Only block-hash filters: a block's logs never change, so an answer read
        early is the answer (a reorg changes the hash, and the filter with it)."""
        with self._lock:
            for flt in filters:
                if "blockHash" not in flt:
                    continue
                key = _filter_key(flt)
                if key not in self._prefetched:
                    self._prefetched[key] = self._submit(self._get_logs, flt)
            # Reads kept beyond the cap (taken, or nobody took them: a reorg, a watched set that
            # changed) are dropped, oldest first.
            while len(self._prefetched) > PREFETCH_KEPT:
                self._prefetched.pop(next(iter(self._prefetched))).cancel()

    def _get_logs(self, flt: dict[str, Any]) -> list[dict[str, Any]]:

        def send(part: dict[str, Any]) -> list[dict[str, Any]]:
            result: list[dict[str, Any]] = self.call("eth_getLogs", [part])
            return result

        try:
            return read_logs(flt, send, self.log_limits, self._learn)
        except RangeTooLarge as exc:
            unreadable = self._unreadable(exc)
            if unreadable is not None:
                raise unreadable from exc
            raise

    def _unreadable(self, exc: RangeTooLarge) -> LogsUnreadable | None:
        """The error to stop on when a filter of one block and one address has been refused
        for its count by every usable endpoint: no filter is smaller, and a count does not
        change. A refusal for size or time may pass another time: it stays a RangeTooLarge
        (the caller backs off and reads again), as does one other endpoints may still serve."""
        part = exc.uncut
        refusal = exc.refusal if isinstance(exc.refusal, Refusal) else parse_refusal(str(exc))
        if part is None or refusal.kind != RESULTS or exc.endpoint is None:
            return None
        block = str(part.get("blockHash") or part.get("fromBlock"))
        address = part.get("address")
        if isinstance(address, list):
            address = address[0] if address else None
        contract = str(address) if address else "every contract"
        with self._lock:
            refusers = self._uncut_refusers.setdefault((block, contract), set())
            refusers.add(exc.endpoint)
            usable = {e.label for e in self._endpoints if e.disabled is None}
            if not usable <= refusers:
                return None
            endpoints = ", ".join(sorted(refusers))
        if block.startswith("0x") and len(block) < 66:
            block = str(int(block, 16))
        chain = f" of chain {self._expected_chain}" if self._expected_chain is not None else ""
        message = (
            f"eth_getLogs cannot read block {block}{chain}: {contract} alone logged more in it "
            f"than {endpoints} return in one answer ({exc}), and no filter is smaller than one "
            "block of one contract. The flow stops rather than go on without those logs: give "
            "the chain an endpoint without a result cap (a node of your own; Alchemy serves "
            "ranges of up to 2,000 blocks uncapped)"
        )
        log.error("rpc.logs_unreadable", block=block, address=contract, endpoints=endpoints)
        return LogsUnreadable(message)

    def log_limits(self) -> LogLimits:
        """The tightest learned limits over the usable endpoints (any may serve a request)."""
        limits = LogLimits()
        with self._lock:
            for endpoint in self._endpoints:
                if endpoint.disabled is None:
                    limits = limits.merged(endpoint.log_limits)
        return limits

    def _learn(self, exc: RangeTooLarge, flt: dict[str, Any]) -> None:
        refusal = exc.refusal if isinstance(exc.refusal, Refusal) else parse_refusal(str(exc))
        with self._lock:
            endpoint = next((e for e in self._endpoints if e.label == exc.endpoint), None)
            if endpoint is None:
                return
            before = endpoint.log_limits
            endpoint.log_limits = learned = before.learn(refusal, flt)
        if learned == before:
            return
        for name in ("max_span", "max_results", "max_addresses"):
            value = getattr(learned, name)
            if value is not None:
                METRICS.rpc_log_limit.labels(endpoint.label, name).set(value)
        log.warning(
            "rpc.log_limit_learned",
            endpoint=endpoint.label,
            refusal=refusal.kind,
            max_span=learned.max_span,
            max_results=learned.max_results,
            max_addresses=learned.max_addresses,
            refused_span=filter_span(flt),
            refused_addresses=len(filter_addresses(flt) or ()),
            error=str(exc)[:300],
        )

    # The retry loop --------------------------------------------------------------------------

    def _pick(self) -> tuple[_Endpoint, float]:
        """The next endpoint (round-robin among the healthiest that are not cooling down),
        and how long to wait for it (the earliest out of its cooldown when all are cooling)."""
        now = time.monotonic()
        with self._lock:
            usable = [e for e in self._endpoints if e.disabled is None]
            if not usable:
                # Every endpoint serves another chain: a configuration error, not a fault to retry.
                reasons = "; ".join(f"{e.label}: {e.disabled}" for e in self._endpoints)
                raise ConfigError(f"no usable RPC endpoint ({reasons})")
            start = next(self._turn)
            ordered = [usable[(start + i) % len(usable)] for i in range(len(usable))]
            ready = [e for e in ordered if e.cool_until <= now]
            if ready:
                # The healthiest ready one (fewest failures in a row); a failing endpoint is
                # still probed when its cooldown ends and nothing healthier is ready.
                chosen = min(ready, key=lambda e: e.failures)
            else:
                chosen = min(ordered, key=lambda e: e.cool_until)
            wait = max(0.0, chosen.cool_until - now)
            wait += chosen.limiter.reserve(now + wait)
            return chosen, wait

    def _request(self, method: str, payload: bytes, parse: Callable[[Any], Any]) -> Any:
        options = self.options
        deadline = time.monotonic() + options.budget_seconds
        last: RpcError | None = None
        attempt = 0
        for attempt in range(1, options.attempts + 1):
            endpoint, wait = self._pick()
            if wait > 0:
                if time.monotonic() + wait > deadline:
                    break
                if self._stop.wait(wait):
                    raise RpcTransportError(f"{method}: stopped while waiting to retry")
            if not endpoint.verified and self._expected_chain is not None:
                try:
                    self._verify(endpoint)
                except RpcError as exc:
                    if endpoint.disabled is not None:
                        continue  # another chain's endpoint: never again
                    last = exc
                    self._failed(endpoint, "eth_chainId", exc, attempt)
                    continue
            started = time.monotonic()
            try:
                value = parse(self._post(endpoint, payload))
            except RpcError as exc:
                elapsed = time.monotonic() - started
                METRICS.rpc_request_seconds.labels(endpoint.label, method).observe(elapsed)
                if not isinstance(exc, RpcTransportError):
                    # A deterministic answer (or a range refusal): the endpoint is fine.
                    METRICS.rpc_requests.labels(endpoint.label, method, _reason(exc)).inc()
                    self._succeeded(endpoint)
                    if isinstance(exc, RangeTooLarge):
                        exc.endpoint = endpoint.label  # whose limits it teaches
                    elif isinstance(exc, ArchiveRequired):
                        _archive_required(method, exc)
                    raise
                last = exc
                self._failed(endpoint, method, exc, attempt)
                if time.monotonic() >= deadline:
                    break
                continue
            METRICS.rpc_request_seconds.labels(endpoint.label, method).observe(
                time.monotonic() - started
            )
            METRICS.rpc_requests.labels(endpoint.label, method, "ok").inc()
            self._succeeded(endpoint)
            return value
        METRICS.rpc_gave_up.labels(method).inc()
        if (
            isinstance(last, RpcTransientError)
            and method.removeprefix("batch:") in STATE_METHODS
            and "header not found" in str(last).lower()
        ):
            # Through the whole budget, on every endpoint: the node does not have the block's
            # header, so neither its state (a pruned or a snapshot-synced node).
            archive = ArchiveRequired(
                f"{last} (gave up after {attempt} attempts: the node has no header for this "
                "block: an archive node is needed)",
                kind="header_not_found",
            )
            _archive_required(method, archive)
            raise archive from last
        log.error(
            "rpc.gave_up",
            method=method,
            attempts=attempt,
            endpoints=list(self.endpoint_labels),
            error=str(last),
        )
        if last is None:
            raise RpcTransportError(f"{method}: no endpoint could be tried within the budget")
        raise type(last)(f"{last} (gave up after {attempt} attempts)", code=last.code) from last

    def _verify(self, endpoint: _Endpoint) -> None:
        request_id = self._take_ids(1)
        payload = orjson.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": "eth_chainId", "params": []}
        )
        served = int(result_of("eth_chainId", (), self._post(endpoint, payload), request_id), 16)
        if served != self._expected_chain:
            endpoint.disabled = f"serves chain {served}, not {self._expected_chain}"
            log.error("rpc.endpoint_disabled", endpoint=endpoint.label, reason=endpoint.disabled)
            raise RpcError(f"{endpoint.label} {endpoint.disabled}")
        endpoint.verified = True

    def _post(self, endpoint: _Endpoint, payload: bytes) -> Any:
        try:
            response = self._http.post(endpoint.url, content=payload)
        except httpx.TimeoutException as exc:
            raise RpcTimeout(f"{endpoint.label}: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise RpcTransportError(f"{endpoint.label}: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status == 429:
            raise RpcRateLimited(
                f"{endpoint.label}: HTTP 429",
                code=429,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status != 200:
            # Some providers send a JSON-RPC error with a 4xx; that error is the answer.
            if 400 <= status < 500:
                try:
                    body = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    body = None
                if isinstance(body, dict | list) and body:
                    return body
            raise RpcTransportError(
                f"{endpoint.label}: HTTP {status}: {response.text[:200]}", code=status
            )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponse(f"{endpoint.label}: answer is not JSON: {exc}") from None

    def _succeeded(self, endpoint: _Endpoint) -> None:
        with self._lock:
            recovered = endpoint.failures > 0
            endpoint.failures = 0
            endpoint.limiter.on_success()
            rate = endpoint.limiter.rate
        endpoint.rate_gauge.set(rate)
        if recovered:
            log.info("rpc.endpoint_recovered", endpoint=endpoint.label)

    def _failed(self, endpoint: _Endpoint, method: str, exc: RpcError, attempt: int) -> None:
        reason = _reason(exc)
        METRICS.rpc_requests.labels(endpoint.label, method, reason).inc()
        METRICS.rpc_retries.labels(endpoint.label, reason).inc()
        now = time.monotonic()
        with self._lock:
            endpoint.failures += 1
            cooldown = backoff_seconds(
                endpoint.failures, self.options.backoff_base, self.options.backoff_cap, self._rng
            )
            if isinstance(exc, RpcRateLimited):
                endpoint.limiter.on_rate_limited()
                if exc.retry_after is not None:
                    cooldown = max(cooldown, exc.retry_after)
            endpoint.cool_until = max(endpoint.cool_until, now + cooldown)
            rate = endpoint.limiter.rate
        endpoint.rate_gauge.set(rate)
        log.warning(
            "rpc.retry",
            endpoint=endpoint.label,
            method=method,
            reason=reason,
            attempt=attempt,
            error=str(exc)[:300],
        )
        log.info(
            "rpc.endpoint_cooldown",
            endpoint=endpoint.label,
            seconds=round(cooldown, 3),
            failures=endpoint.failures,
            rate=round(rate, 2),
        )
