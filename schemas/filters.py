"""One filter grammar for positions, aggregates, the stream and alert rules (pure).

A filter is evaluated on a subject's wire format (`position_json`, `account_json`, ...), the
same dictionaries the API returns and the stream sends, so a position matches through
`/v1/positions`, through `/v1/stream` and through an alert rule alike.

Grammar (query parameters; repeatable ones are OR within, every parameter is AND across):
- `protocol`, `chain_id`, `owner`, `pool`, `token`: repeatable exact matches; `pool` is an LP
  position's pool or a lending account's market (the Aave Pool, the comet); `token` matches
  a position holding that token (either side of an LP pair, any reserve of an account: for a
  Comet account its base token and its collateral);
- `min_X` / `max_X` (inclusive) for X in `value_usd`, `health_factor`, `il_usd`, `il_pct`,
  `debt_usd`: a subject without the field (an LP position has no health factor) does not
  match a bound on it; a lending account without debt has an infinite health factor;
- `in_range`: true or false (LP positions only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from schemas.errors import InvalidInput
from schemas.hexutil import decimal_uint, normalize_address

NUMERIC = ("value_usd", "health_factor", "il_usd", "il_pct", "debt_usd")
LIST_PARAMS = ("protocol", "chain_id", "owner", "pool", "token")


@dataclass(frozen=True, slots=True)
class Range:
    low: float | None = None
    high: float | None = None

    def holds(self, x: float | None) -> bool:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return False
        return (self.low is None or x >= self.low) and (self.high is None or x <= self.high)


@dataclass(frozen=True, slots=True)
class Filter:
    protocol: frozenset[str] = frozenset()
    chain_id: frozenset[int] = frozenset()
    owner: frozenset[str] = frozenset()
    pool: frozenset[str] = frozenset()
    token: frozenset[str] = frozenset()
    value_usd: Range | None = None
    health_factor: Range | None = None
    il_usd: Range | None = None
    il_pct: Range | None = None
    debt_usd: Range | None = None
    in_range: bool | None = None

    @property
    def numeric(self) -> bool:
        """Whether the filter needs valued subjects (not only their structure)."""
        return any(getattr(self, n) is not None for n in NUMERIC) or self.in_range is not None

    def matches(self, subject: Mapping[str, Any]) -> bool:
        if self.protocol and subject.get("protocol") not in self.protocol:
            return False
        if self.chain_id and subject.get("chain_id") not in self.chain_id:
            return False
        if self.owner and subject.get("owner") not in self.owner:
            return False
        if self.pool and subject.get("pool") not in self.pool:
            return False
        if self.token and not (self.token & set(tokens_of(subject))):
            return False
        for name in NUMERIC:
            bound: Range | None = getattr(self, name)
            if bound is not None and not bound.holds(numeric_field(subject, name)):
                return False
        return self.in_range is None or subject.get("in_range") is self.in_range

    def query(self) -> dict[str, list[str]]:
        """The filter as canonical query parameters (how alert rules store it)."""
        out: dict[str, list[str]] = {}
        for name in LIST_PARAMS:
            values = getattr(self, name)
            if values:
                out[name] = sorted(str(v) for v in values)
        for name in NUMERIC:
            bound = getattr(self, name)
            if bound is not None and bound.low is not None:
                out[f"min_{name}"] = [repr(bound.low)]
            if bound is not None and bound.high is not None:
                out[f"max_{name}"] = [repr(bound.high)]
        if self.in_range is not None:
            out["in_range"] = ["true" if self.in_range else "false"]
        return out

    @classmethod
    def parse(cls, params: Mapping[str, Iterable[str]], protocols: Sequence[str]) -> Filter:
        """From query parameters; unknown names and malformed values are InvalidInput.
        `protocols`: the names `protocol=` may take (protocols/registry.py PROTOCOLS)."""
        known = set(LIST_PARAMS) | {f"{m}_{n}" for m in ("min", "max") for n in NUMERIC}
        known.add("in_range")
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidInput(f"unknown filter {unknown[0]!r}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        named = _strings(params, "protocol")
        bad = sorted(named - set(protocols))
        if bad:
            raise InvalidInput(f"unknown protocol {bad[0]!r}; known: {', '.join(protocols)}")
        values["protocol"] = frozenset(named)
        chains = set()
        for text in _strings(params, "chain_id"):
            chain = decimal_uint(text)
            if chain is None or not 0 < chain < 2**63:
                raise InvalidInput(f"chain_id {text!r} is not a chain id")
            chains.add(chain)
        values["chain_id"] = frozenset(chains)
        for name in ("owner", "pool", "token"):
            values[name] = frozenset(_address(v, name) for v in _strings(params, name))
        for name in NUMERIC:
            low, high = _number(params, f"min_{name}"), _number(params, f"max_{name}")
            if low is not None and high is not None and low > high:
                raise InvalidInput(f"min_{name} is above max_{name}")
            values[name] = None if low is None and high is None else Range(low, high)
        in_range = _strings(params, "in_range")
        if len(in_range) > 1 or (in_range and not in_range <= {"true", "false"}):
            raise InvalidInput("in_range is true or false")
        values["in_range"] = None if not in_range else in_range == {"true"}
        return cls(**values)


FILTER_FIELDS = tuple(f.name for f in fields(Filter))


def tokens_of(subject: Mapping[str, Any]) -> list[str]:
    found = []
    for side in ("token0", "token1", "token"):
        token = subject.get(side)
        if isinstance(token, Mapping):
            found.append(token.get("address"))
        elif isinstance(token, str):
            found.append(token)
    for reserve in subject.get("reserves") or ():
        found.append(reserve.get("asset"))
    return [t for t in found if isinstance(t, str)]


def numeric_field(subject: Mapping[str, Any], name: str) -> float | None:
    if name == "health_factor":
        if "health_factor_float" not in subject:
            return None  # not a lending account
        hf = subject["health_factor_float"]
        return math.inf if hf is None else float(hf)
    value = subject.get(name)
    return float(value) if isinstance(value, int | float) else None


def _strings(params: Mapping[str, Iterable[str]], name: str) -> set[str]:
    raw = params.get(name) or ()
    if isinstance(raw, str):
        raw = (raw,)
    return {v.strip() for v in raw if v.strip()}


def _number(params: Mapping[str, Iterable[str]], name: str) -> float | None:
    raw = _strings(params, name)
    if not raw:
        return None
    if len(raw) > 1:
        raise InvalidInput(f"{name} is given more than once")
    (text,) = raw
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidInput(f"{name}={text!r} is not a finite number")
    return value


def _address(value: str, what: str) -> str:
    try:
        return normalize_address(value)
    except InvalidInput:
        raise InvalidInput(f"{what} {value!r} is not an address (0x and 40 hex digits)") from None
