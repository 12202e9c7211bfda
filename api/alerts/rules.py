"""Alert rules and their evaluator (pure: no I/O, no wall clock).

A rule selects its subjects with the filter grammar (schemas/filters.py), so it sees exactly
what `/v1/positions` and `/v1/stream` select with the same filter, and evaluates each
subject's wire JSON (`position_json`, `account_json`) sample by sample:

    step(rule, state, sample) -> (state, fired)

Everything is driven by the samples' block times, never the wall clock, so replaying the same
samples from the store (a backtest) fires exactly where the live engine fired.

- Hysteresis: a subject starts armed; it fires when the condition holds while armed, then is
  disarmed until the metric crosses back past the level by the band (level + band for
  `health_factor_below`, level - band for the "above" kinds).
- Cooldown: no alert for the same subject within `cooldown_seconds` (block time) of the last
  one. A breach inside the cooldown leaves the subject armed, so it fires once the cooldown
  has passed if the condition still holds.

Levels are in the wire format's units: health factor as a number, `il_pct`, value change and
allocation weights as fractions (0.05 = 5%), `il_usd` in USD (a loss's magnitude).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from schemas.errors import InvalidInput
from schemas.filters import Filter, numeric_field
from schemas.hexutil import normalize_address

KINDS = (
    "health_factor_below",
    "il_above",
    "out_of_range",
    "value_change",
    "liquidation",
    "allocation_drift",
)
# Kinds evaluated per subject (position or account) on its own samples.
SUBJECT_KINDS = ("health_factor_below", "il_above", "out_of_range", "value_change")
MEASURES = ("pct", "usd")


@dataclass(frozen=True, slots=True)
class Delivery:
    webhook_url: str | None = None
    webhook_secret: str | None = None
    email: str | None = None
    stream: bool = True


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    kind: str
    filter: Filter
    threshold: float = 0.0
    hysteresis: float = 0.0
    cooldown_seconds: int = 0
    window_seconds: int = 0  # value_change: compare with the value this long ago
    measure: str = "pct"  # il_above: il_pct (fraction) or il_usd
    target_weights: tuple[tuple[str, float], ...] = ()  # allocation_drift: token -> weight
    # out_of_range: fire once the position has been out of range this long (block time)
    duration_seconds: int = 0
    delivery: Delivery = field(default_factory=Delivery)
    enabled: bool = True
    created_at: int = 0  # unix seconds, informative

    def params(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "hysteresis": self.hysteresis,
            "cooldown_seconds": self.cooldown_seconds,
            "window_seconds": self.window_seconds,
            "measure": self.measure,
            "target_weights": dict(self.target_weights),
            "duration_seconds": self.duration_seconds,
        }


def validate(rule: Rule) -> Rule:
    """The rule with its parameters checked and normalised; InvalidInput says what is wrong."""
    if rule.kind not in KINDS:
        raise InvalidInput(f"kind {rule.kind!r} is not one of {', '.join(KINDS)}")
    if not rule.name.strip():
        raise InvalidInput("name is empty")
    for name in ("threshold", "hysteresis"):
        if not math.isfinite(getattr(rule, name)):
            raise InvalidInput(f"{name} is not a finite number")
    if rule.hysteresis < 0:
        raise InvalidInput("hysteresis is a band width, not negative")
    if rule.cooldown_seconds < 0:
        raise InvalidInput("cooldown_seconds is negative")
    if rule.duration_seconds < 0:
        raise InvalidInput("duration_seconds is negative")
    if rule.duration_seconds and rule.kind != "out_of_range":
        raise InvalidInput("duration_seconds applies to out_of_range rules only")
    kind, level = rule.kind, rule.threshold
    if kind == "health_factor_below" and level <= 0:
        raise InvalidInput("threshold: a health factor level above 0 (e.g. 1.2)")
    if kind == "il_above":
        if rule.measure not in MEASURES:
            raise InvalidInput(f"measure {rule.measure!r} is not one of {', '.join(MEASURES)}")
        if level <= 0:
            raise InvalidInput("threshold: the IL magnitude above which to fire (> 0)")
    if kind == "value_change":
        if level <= 0:
            raise InvalidInput("threshold: the change as a fraction (0.1 = 10%), above 0")
        if rule.window_seconds <= 0:
            raise InvalidInput("window_seconds: the change is over this many seconds (> 0)")
    if kind == "liquidation" and rule.filter.numeric:
        raise InvalidInput(
            "a liquidation rule takes protocol, chain_id, owner and token conditions only"
        )
    weights = rule.target_weights
    if kind == "allocation_drift":
        if not 0 < level <= 1:
            raise InvalidInput("threshold: the largest weight deviation, a fraction in (0, 1]")
        if not weights:
            raise InvalidInput("target_weights: token address -> weight, at least one")
        normalized: dict[str, float] = {}
        for token, weight in weights:
            try:
                address = normalize_address(token)
            except InvalidInput:
                raise InvalidInput(f"target_weights: {token!r} is not a token address") from None
            if not math.isfinite(weight) or weight < 0:
                raise InvalidInput(f"target_weights: {token} has a weight that is not >= 0")
            normalized[address] = normalized.get(address, 0.0) + weight
        total = sum(normalized.values())
        if total <= 0:
            raise InvalidInput("target_weights add up to 0")
        # Weights are taken relative to their sum, so {A: 60, B: 40} is the same as 0.6/0.4.
        weights = tuple(sorted((t, w / total) for t, w in normalized.items()))
    elif weights:
        raise InvalidInput("target_weights apply to allocation_drift rules only")
    d = rule.delivery
    if d.webhook_url is not None and not d.webhook_url.startswith(("http://", "https://")):
        raise InvalidInput("delivery.webhook_url is not an http(s) URL")
    if d.webhook_url is not None and not d.webhook_secret:
        raise InvalidInput("delivery.webhook_secret is needed to sign webhook bodies")
    if d.email is not None and ("@" not in d.email or any(c in d.email for c in "\r\n ,")):
        raise InvalidInput("delivery.email is not one email address")
    return replace(rule, target_weights=weights)


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of one subject: its wire JSON as of a block."""

    subject_id: str
    chain_id: int
    block_number: int
    block_hash: str
    block_time: int  # unix seconds
    data: Mapping[str, Any]

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Sample:
        """From a subject's wire JSON (it carries its block)."""
        return cls(
            str(data["id"]),
            int(data["chain_id"]),
            int(data["block_number"]),
            str(data.get("block_hash") or ""),
            parse_time(data["block_time"]),
            data,
        )


@dataclass(frozen=True, slots=True)
class SubjectState:
    armed: bool = True
    last_fired: int | None = None  # block time of the last alert
    history: tuple[tuple[int, float], ...] = ()  # value_change: (block time, value_usd)
    out_since: int | None = None  # out_of_range: block time of the first sample out of range


@dataclass(frozen=True, slots=True)
class Fired:
    rule_id: str
    rule_name: str
    kind: str
    sample: Sample
    value: float
    threshold: float
    message: str

    @property
    def id(self) -> str:
        """Derived from what fired where, so a replay names the same alert."""
        s = self.sample
        key = f"{self.rule_id}|{s.subject_id}|{s.chain_id}|{s.block_number}|{s.block_hash}"
        key += f"|{s.data.get('log_index', '')}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def json(self) -> dict[str, Any]:
        """The alert as the stream, webhooks and `GET /v1/alerts` carry it."""
        s, d = self.sample, self.sample.data
        return {
            "id": self.id,
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "kind": self.kind,
            "subject_id": s.subject_id,
            "protocol": d.get("protocol"),
            "chain_id": s.chain_id,
            "owner": d.get("owner"),
            "block_number": s.block_number,
            "block_hash": s.block_hash,
            "block_time": iso_time(s.block_time),
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "subject": dict(d),
        }


def step(
    rule: Rule, state: SubjectState | None, sample: Sample
) -> tuple[SubjectState, list[Fired]]:
    """Evaluate one sample of one subject against the rule."""
    state = state or SubjectState()
    t = sample.block_time
    cooling = state.last_fired is not None and t - state.last_fired < rule.cooldown_seconds
    if rule.kind == "liquidation":
        # Every liquidation is an event of its own: no level to re-arm on, only the cooldown.
        if cooling:
            return state, []
        d = sample.data
        msg = (
            f"{d.get('owner')} was liquidated: {d.get('debt_to_cover')} of debt "
            f"{d.get('debt_asset')} repaid by {d.get('liquidator')}"
        )
        fired = Fired(rule.id, rule.name, rule.kind, sample, 1.0, 0.0, msg)
        return replace(state, last_fired=t), [fired]
    if rule.kind == "value_change":
        history, value = value_change(state.history, t, sample.data, rule.window_seconds)
        state = replace(state, history=history)
    elif rule.kind == "out_of_range":
        out_since, value = out_of_range_for(state.out_since, t, sample.data, rule.duration_seconds)
        state = replace(state, out_since=out_since)
    else:
        value = metric(rule, sample.data)
    if value is None:
        return state, []
    below = rule.kind == "health_factor_below"
    level = 0.5 if rule.kind == "out_of_range" else rule.threshold
    band = 0.0 if rule.kind == "out_of_range" else rule.hysteresis
    if not state.armed:
        rearmed = value >= level + band if below else value <= level - band
        return (replace(state, armed=True) if rearmed else state), []
    breach = value < level if below else value > level
    if not breach or cooling:
        return state, []
    fired = Fired(
        rule.id, rule.name, rule.kind, sample, value, level, message(rule, value, sample.data)
    )
    return replace(state, armed=False, last_fired=t), [fired]


def metric(rule: Rule, data: Mapping[str, Any]) -> float | None:
    """The figure a rule compares with its level; None: the subject has none (skip it)."""
    if rule.kind == "health_factor_below":
        return numeric_field(data, "health_factor")
    if rule.kind == "il_above":
        il = numeric_field(data, "il_pct" if rule.measure == "pct" else "il_usd")
        # IL is negative for a loss against holding; the level is the loss's size.
        return None if il is None else abs(il)
    if rule.kind == "out_of_range":
        in_range = data.get("in_range")
        return None if not isinstance(in_range, bool) else float(not in_range)
    if rule.kind == "allocation_drift":
        return drift(dict(rule.target_weights), data.get("weights") or {})[0]
    return None


def out_of_range_for(
    out_since: int | None, t: int, data: Mapping[str, Any], duration: int
) -> tuple[int | None, float | None]:
    """When the position went out of range (None: it is in range) and 1.0 once it has been out
    for `duration` seconds or more (0: at once), else 0.0. It went out at the first sample that
    saw it out: a subject is sampled when it changes, so a position in a pool that stays quiet
    is judged at its next change."""
    in_range = data.get("in_range")
    if not isinstance(in_range, bool):
        return out_since, None
    if in_range:
        return None, 0.0
    since = t if out_since is None else out_since
    return since, float(t - since >= duration)


def value_change(
    history: tuple[tuple[int, float], ...], t: int, data: Mapping[str, Any], window: int
) -> tuple[tuple[tuple[int, float], ...], float | None]:
    """The absolute change of value_usd against the value in effect `window` seconds ago.

    The value in effect at a time is the last sample at or before it, so the answer does not
    depend on how often the subject was sampled, only on the values it had. Without a sample
    that old (a subject younger than the window) there is nothing to compare with yet.
    """
    value = numeric_field(data, "value_usd")
    if value is None:
        return history, None
    kept = [h for h in history if h[0] < t] + [(t, value)]
    # Keep the newest sample at or before the window's start, and everything after it.
    start = t - window
    base_index = None
    for i, (when, _) in enumerate(kept):
        if when <= start:
            base_index = i
    if base_index is None:
        return tuple(kept), None
    kept = kept[base_index:]
    base = kept[0][1]
    if base == 0:
        return tuple(kept), None
    return tuple(kept), abs(value - base) / abs(base)


def message(rule: Rule, value: float, data: Mapping[str, Any]) -> str:
    k, level = rule.kind, rule.threshold
    if k == "health_factor_below":
        return f"health factor {value:.4f} fell below {level:g}"
    if k == "il_above":
        unit = "" if rule.measure == "usd" else " (fraction of holding)"
        return f"impermanent loss {value:.6g}{unit} exceeds {level:g}"
    if k == "out_of_range":
        if rule.duration_seconds:
            return f"position has been out of range for {rule.duration_seconds}s or more"
        return "position is out of range"
    if k == "value_change":
        return f"value changed {value:.2%} over {rule.window_seconds}s (level {level:.2%})"
    if k == "allocation_drift":
        token = drift(dict(rule.target_weights), data.get("weights") or {})[1]
        return f"allocation drifted {value:.2%} from target at {token} (level {level:.2%})"
    return k


# Allocation drift ---------------------------------------------------------------------------


def exposures(subject: Mapping[str, Any]) -> dict[str, float]:
    """A subject's USD exposure per token: an LP position's two amounts, a lending account's
    supplied minus borrowed per reserve. Tokens without a price are left out."""
    out: dict[str, float] = {}
    for side in ("0", "1"):
        token, amount, price = (
            subject.get(f"token{side}"),
            subject.get(f"amount{side}"),
            subject.get(f"price{side}_usd"),
        )
        if isinstance(token, Mapping) and amount is not None and price is not None:
            usd = int(amount) / 10 ** int(token.get("decimals") or 0) * float(price)
            address = str(token.get("address"))
            out[address] = out.get(address, 0.0) + usd
    for reserve in subject.get("reserves") or ():
        net = float(reserve.get("supplied_usd") or 0.0) - float(reserve.get("debt_usd") or 0.0)
        asset = str(reserve.get("asset"))
        out[asset] = out.get(asset, 0.0) + net
    return out


def wallet_weights(subjects: Iterable[Mapping[str, Any]]) -> dict[str, float] | None:
    """A wallet's portfolio weights by token (net exposure / net total); None if not positive."""
    totals: dict[str, float] = {}
    for s in subjects:
        for token, usd in exposures(s).items():
            totals[token] = totals.get(token, 0.0) + usd
    total = sum(totals.values())
    if not totals or total <= 0:
        return None
    return {t: usd / total for t, usd in sorted(totals.items())}


def drift(target: Mapping[str, float], weights: Mapping[str, float]) -> tuple[float, str]:
    """The largest absolute deviation of the weights from the target, and its token."""
    worst, token = 0.0, ""
    for t in sorted(set(target) | set(weights)):
        deviation = abs(weights.get(t, 0.0) - target.get(t, 0.0))
        if deviation > worst:
            worst, token = deviation, t
    return worst, token


def wallet_sample(
    chain_id: int, owner: str, subjects: Sequence[Mapping[str, Any]]
) -> Sample | None:
    """A wallet's allocation as one sample, at the newest block among its subjects."""
    weights = wallet_weights(subjects)
    if weights is None:
        return None
    newest = max(subjects, key=lambda s: int(s["block_number"]))
    data = {
        "id": f"{chain_id}:{owner}",
        "chain_id": chain_id,
        "owner": owner,
        "protocol": None,
        "weights": weights,
        "value_usd": sum(float(s.get("value_usd") or 0.0) for s in subjects),
        "subjects": sorted(str(s["id"]) for s in subjects),
        "block_number": int(newest["block_number"]),
        "block_hash": newest.get("block_hash") or "",
        "block_time": newest["block_time"],
    }
    return Sample.of(data)


# Times ---------------------------------------------------------------------------------------


def parse_time(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def iso_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
