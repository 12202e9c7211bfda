"""What providers refuse in `eth_getLogs`, and how a filter is cut to fit (pure, no I/O).

Providers and clients refuse a filter for one of four reasons, each worded their own way
(the literal texts are in tests/unit/test_log_limits.py, with their sources):

- **range**: too many blocks (Infura "range 1000000 exceeds limit of 10000", QuickNode
  "eth_getLogs is limited to a 10,000 range", geth/publicnode "exceed maximum block range:
  5000", reth "query exceeds max block range 5000", erigon "query block range exceeds server
  limit, narrow your filter: 1000", ...). The limit is the number the provider names as its
  limit, never the span we asked for (Infura names both);
- **results**: too many logs (Infura/geth "query returned more than 10000 results", reth
  "query exceeds max results 20000, retry with the range A-B", erigon "query returns too many
  logs", Arbitrum "logs matched by query exceeds limit of 10000", Alchemy "a cap of 10K logs");
- **size**: a response too large in bytes or too slow, with no number to learn;
- **addresses**: too many addresses (or parameters) in one filter (publicnode "Please, specify
  less number of addresses", Infura's 5,000 parameters).

A refusal teaches a limit (`LogLimits.learn`), which the RPC client keeps per endpoint: every
later filter is planned within it (`plan`), so a refused shape is never sent again. A refusal
that teaches nothing new cuts the refused filter (`shrink`: the provider's suggested range,
else a half or a quarter, else fewer addresses). `read_logs` runs that loop with a bounded
number of refusals per read, and merges the parts in log order.

A dense spot costs one refusal per cut down to it: a block with more logs than the cap is
found by quartering the range, then, alone, cut by its addresses, a quarter at a time, until
each part fits. A filter of one block and one address that is still refused cannot be cut:
it reaches the caller marked `uncut` (flows/rpc.py stops on it when every endpoint refused).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from schemas.errors import RangeTooLarge

# Ranges aim below this many logs per request: half the common 10,000-log caps (Alchemy,
# Infura), so a density that doubles from one range to the next still fits.
TARGET_LOGS = 5_000
# Refusals tolerated in one read (a filter and all its cuts) before the refusal reaches the
# caller. Each cut towards a dense spot is refused once: from the widest range (100,000
# blocks) to the block, 9 quarterings; from 1,000 addresses to the one, 5; plus the refusals
# that teach the limits. A provider that refuses every part is given up on after as many.
MAX_REFUSALS = 16

RANGE, RESULTS, SIZE, ADDRESSES = "range", "results", "size", "addresses"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One parsed refusal: which limit, the limit if the provider named it, its hint."""

    kind: str  # RANGE | RESULTS | SIZE | ADDRESSES
    limit: int | None = None  # blocks, logs or addresses, as the provider stated it
    hint: tuple[int, int] | None = None  # a (from, to) the provider says would work


def _number(text: str, thousands: str = "") -> int:
    value = int(re.sub(r"[,._\s]", "", text))
    return value * 1000 if thousands.lower() == "k" else value


_N = r"(\d[\d,._]*)"
_HEX_HINT = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")
_DEC_HINT = re.compile(r"retry with the range (\d+)\s*-\s*(\d+)", re.IGNORECASE)

# (kind, pattern whose group 1 is the limit, or no group): the first that matches wins, so the
# specific wordings come before the ones that name the requested span or no number at all.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        # Alchemy (paid): any range up to a cap of 10K logs (its "2K block range" is the other
        # way to be served, not a limit).
        (RESULTS, r"cap of " + _N + r"\s*(k?)\s*logs"),
        # Alchemy (free tier): "up to a 500 block range".
        (RANGE, r"up to a " + _N + r"\s*(k?)\s*block range"),
        # Infura: "range 1000000 exceeds limit of 10000": the second number is the limit.
        (RANGE, r"range \d+ exceeds limit of " + _N),
        # Arbitrum (nitro): "logs matched by query exceeds limit of 10000".
        (RESULTS, r"logs matched by query exceeds limit of " + _N),
        # reth, llamarpc, Ankr: "query exceeds max results 20000, retry with the range A-B".
        (RESULTS, r"exceeds max results " + _N),
        # Infura, geth, zkEVM: "query returned more than 10000 results".
        (RESULTS, r"returned more than " + _N + r" results"),
        # erigon: "query returns too many logs, narrow your filter: 20000".
        (RESULTS, r"too many logs, narrow your filter: " + _N),
        (RESULTS, r"(?:too many|more than \d+) (?:logs|results)"),
        # erigon: "query block range exceeds server limit, narrow your filter: 1000".
        (RANGE, r"block range exceeds server limit, narrow your filter: " + _N),
        # reth: "query exceeds max block range 5000".
        (RANGE, r"exceeds max block range " + _N),
        # reth-based L2s: "block range is larger than max block range, block range = 5120,
        # max block range = 5000".
        (RANGE, r"max block range = " + _N),
        # geth (--rpc.rangelimit), publicnode: "exceed maximum block range: 5000".
        (RANGE, r"maximum block range:? " + _N),
        # QuickNode, 1RPC, Blast: "eth_getLogs is limited to a 10,000 range".
        (RANGE, r"limited to a " + _N + r"(?: block)? range"),
        # BlockPI: "limited to 1000 block(s)".
        (RANGE, r"limited to " + _N + r"(?: block)"),
        # Moonbeam/Frontier: "block range is too wide (maximum 1024)".
        (RANGE, r"block range is too wide \(maximum " + _N + r"\)"),
        # Avalanche: "requested too many blocks from A to B, maximum is set to 2048".
        (RANGE, r"maximum is set to " + _N),
        # thirdweb, Cloudflare, Coinbase, Blast (paid).
        (RANGE, r"maximum allowed number of requested blocks is " + _N),
        (RANGE, r"max range: " + _N),
        (RANGE, r"limit the query to at most " + _N + r" blocks"),
        (RANGE, r"allowed for your plan \(\d+ > " + _N + r"\)"),
        # Ankr: "block range is too wide" with no number: its documented range is 3,000.
        (RANGE, r"block range is too wide()"),
        # Too many addresses (publicnode) or parameters (Infura: 5,000 per request).
        (ADDRESSES, r"specify less number of addresses()"),
        (
            ADDRESSES,
            r"(?:max(?:imum)?|limit(?:ed)? (?:to|of)|at most) (?:of )?"
            + _N
            + r" (?:addresses|parameters)",
        ),
        (ADDRESSES, r"(?:too many|number of) (?:addresses|parameters)()"),
        # Response size or duration: nothing to learn, the filter is cut.
        (
            SIZE,
            r"response size|response too large|too large response|query timeout|"
            r"query duration|size limit|timed out|execution timeout",
        ),
        # Any other range wording (Optimism "Block range is too large", Base "block range too
        # large", Chainstack "Block range limit exceeded"): cut, and learn half the span.
        (RANGE, r"block range|range (?:is )?too (?:large|wide|big)|too many blocks|range limit"),
    )
)
_ANKR_RANGE = 3_000
# Words that make an eth_getLogs error a refusal of its filter (not a fault of the node).
REFUSAL_WORDS = re.compile(
    r"range|too many|more than|limit exceeded|exceeds? |response size|response too large|"
    r"query timeout|query duration|too large|too wide|addresses|parameters|max results|"
    r"narrow your filter",
    re.IGNORECASE,
)


def parse_refusal(message: str) -> Refusal:
    """What an `eth_getLogs` refusal says: its kind, its limit, its suggested range."""
    hint: tuple[int, int] | None = None
    found = _HEX_HINT.search(message)
    if found:
        hint = int(found.group(1), 16), int(found.group(2), 16)
    else:
        decimal = _DEC_HINT.search(message)
        if decimal:
            hint = int(decimal.group(1)), int(decimal.group(2))
    for kind, pattern in _PATTERNS:
        match = pattern.search(message)
        if match is None:
            continue
        limit: int | None = None
        if match.groups() and match.group(1):
            thousands = match.group(2) if pattern.groups >= 2 and match.group(2) else ""
            limit = _number(match.group(1), thousands)
        elif pattern.pattern.startswith("block range is too wide"):
            limit = _ANKR_RANGE
        return Refusal(kind, limit or None, hint)
    return Refusal(SIZE if hint is None else RANGE, None, hint)


# Limits -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogLimits:
    """What an endpoint was seen to refuse: filters are planned within these from then on."""

    max_span: int | None = None  # blocks per request
    max_results: int | None = None  # logs per answer
    max_addresses: int | None = None  # addresses per filter

    def learn(self, refusal: Refusal, flt: dict[str, Any]) -> LogLimits:
        """These limits, tightened by a refusal of `flt`. A limit the provider did not name
        is taken from the refused filter: half its span, or a quarter of its addresses (an
        unnamed address cap is often far below the list: publicnode's is a handful)."""
        span, addresses = filter_span(flt), filter_addresses(flt)
        if refusal.kind == RANGE:
            limit = refusal.limit
            if limit is None and span is not None and span > 1:
                limit = span // 2
            return replace(self, max_span=_tighter(self.max_span, limit))
        if refusal.kind == RESULTS:
            return replace(self, max_results=_tighter(self.max_results, refusal.limit))
        if refusal.kind == ADDRESSES:
            limit = refusal.limit
            if limit is None and addresses is not None and len(addresses) > 1:
                limit = max(1, len(addresses) // 4)
            return replace(self, max_addresses=_tighter(self.max_addresses, limit))
        return self

    def merged(self, other: LogLimits) -> LogLimits:
        """The tighter of two endpoints' limits (any of them may serve the next request)."""
        return LogLimits(
            _tighter(self.max_span, other.max_span),
            _tighter(self.max_results, other.max_results),
            _tighter(self.max_addresses, other.max_addresses),
        )

    def target_logs(self) -> int:
        """How many logs a backfill range should aim at under these limits."""
        if self.max_results is None:
            return TARGET_LOGS
        return max(1, min(TARGET_LOGS, self.max_results // 2))


def _tighter(current: int | None, new: int | None) -> int | None:
    if new is None or new < 1:
        return current
    return new if current is None else min(current, new)


def filter_span(flt: dict[str, Any]) -> int | None:
    """Blocks a filter covers, when it names both ends by number."""
    bounds = _bounds(flt)
    return None if bounds is None else bounds[1] - bounds[0] + 1


def filter_addresses(flt: dict[str, Any]) -> list[str] | None:
    address = flt.get("address")
    if isinstance(address, list):
        return address
    return None


def _bounds(flt: dict[str, Any]) -> tuple[int, int] | None:
    low, high = flt.get("fromBlock"), flt.get("toBlock")
    if not (isinstance(low, str) and isinstance(high, str)):
        return None
    try:
        start, end = int(low, 16), int(high, 16)
    except ValueError:
        return None
    return (start, end) if start <= end else None


# Planning and cutting -----------------------------------------------------------------------


def _by_span(flt: dict[str, Any], span: int) -> list[dict[str, Any]]:
    bounds = _bounds(flt)
    if bounds is None or bounds[1] - bounds[0] + 1 <= span:
        return [flt]
    start, end = bounds
    return [
        {**flt, "fromBlock": hex(low), "toBlock": hex(min(end, low + span - 1))}
        for low in range(start, end + 1, span)
    ]


def _by_addresses(flt: dict[str, Any], most: int) -> list[dict[str, Any]]:
    addresses = filter_addresses(flt)
    if addresses is None or len(addresses) <= most:
        return [flt]
    return [{**flt, "address": addresses[i : i + most]} for i in range(0, len(addresses), most)]


def plan(flt: dict[str, Any], limits: LogLimits) -> list[dict[str, Any]]:
    """`flt` cut into filters within the limits: block ranges of at most max_span blocks,
    address lists of at most max_addresses (every range with every address chunk)."""
    parts = [flt]
    if limits.max_addresses is not None:
        parts = [p for part in parts for p in _by_addresses(part, limits.max_addresses)]
    if limits.max_span is not None:
        parts = [p for part in parts for p in _by_span(part, limits.max_span)]
    return parts


def shrink(flt: dict[str, Any], refusal: Refusal) -> list[dict[str, Any]] | None:
    """A refused filter cut smaller, when its limits taught nothing new: by the provider's
    suggested range, else in halves (a range) or quarters (a count or size), else into
    quarters of its addresses. None when it cannot be cut (one block, one address)."""
    span, addresses = filter_span(flt), filter_addresses(flt)
    if refusal.kind != ADDRESSES and span is not None and span > 1:
        bounds = _bounds(flt)
        assert bounds is not None
        hint = refusal.hint
        if hint is not None and bounds[0] <= hint[0] <= hint[1] and hint[1] - hint[0] + 1 < span:
            # A suggestion that does not start where we did still tells the span that fits.
            return _by_span(flt, hint[1] - hint[0] + 1)
        parts = 2 if refusal.kind == RANGE else 4
        return _by_span(flt, max(1, -(-span // parts)))
    if addresses is not None and len(addresses) > 1:
        return _by_addresses(flt, -(-len(addresses) // 4))
    return None


def log_order(item: dict[str, Any]) -> tuple[int, int]:
    return int(str(item["blockNumber"]), 16), int(str(item["logIndex"]), 16)


def read_logs(
    flt: dict[str, Any],
    send: Callable[[dict[str, Any]], list[dict[str, Any]]],
    limits: Callable[[], LogLimits],
    learn: Callable[[RangeTooLarge, dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """Every log of `flt`, asked within the learned limits; a refused part teaches its limit
    and is asked again planned within it, or cut (`shrink`). The MAX_REFUSALS-th refusal of a
    read, or one of a part that cannot be cut (one block, one address: its RangeTooLarge
    carries it as `uncut`), reaches the caller. Parts are merged in log order (they are
    disjoint: ranges and address sets never overlap)."""
    logs: list[dict[str, Any]] = []
    sent = _read(flt, send, limits, learn, [0], logs)
    if sent > 1:
        logs.sort(key=log_order)
    return logs


def _read(
    flt: dict[str, Any],
    send: Callable[[dict[str, Any]], list[dict[str, Any]]],
    limits: Callable[[], LogLimits],
    learn: Callable[[RangeTooLarge, dict[str, Any]], None],
    refused: list[int],
    into: list[dict[str, Any]],
) -> int:
    """Reads `flt` into `into`; the number of answered requests. `refused` counts the read's
    refusals so far (shared by all its parts). After a refusal the parts not sent yet are
    planned again too: a limit learned on one part holds for its siblings."""
    sent = 0
    pending = plan(flt, limits())
    while pending:
        part = pending.pop(0)
        try:
            into += send(part)
            sent += 1
            continue
        except RangeTooLarge as exc:
            before = limits()
            learn(exc, part)
            refused[0] += 1
            if refused[0] >= MAX_REFUSALS:
                raise
            refusal = exc.refusal if isinstance(exc.refusal, Refusal) else parse_refusal(str(exc))
            now = limits()
            if now != before:
                pending = [p for q in pending for p in plan(q, now)]
            if now != before and len(plan(part, now)) > 1:
                smaller: list[dict[str, Any]] | None = [part]  # planned within the new limit
            else:
                smaller = shrink(part, refusal)
            if not smaller:
                exc.uncut = part
                raise
        for piece in smaller:
            sent += _read(piece, send, limits, learn, refused, into)
    return sent
