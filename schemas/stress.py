"""A stress scenario (`GET /v1/portfolio/{wallet}/stress`): joint price shocks, and how far
ahead interest accrues. Pure: parsing, and the integer arithmetic every protocol's stress
uses, so a shocked price is the same integer whichever protocol values it.

Shocks are whole basis points (`WETH:-20%` is -2,000 bp; `-12.5%` is -1,250 bp; finer than a
basis point is refused, because an on-chain price moved by it would not be an integer
check). A shocked answer is `answer * (10,000 + bp) // 10,000`: what a feed set to the shocked
price would answer, rounded down like the contracts' own percentage math.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.errors import InvalidInput

BPS = 10_000
MIN_SHOCK_BPS = -9_999  # a price of zero is not a price: feeds refuse it, oracles fall back
MAX_SHOCK_BPS = 100_000  # +1,000 %
MAX_HORIZON_SECONDS = 100 * 365 * 86_400
# "Time to liquidation" looks this far ahead; beyond it the answer is "not within a century".
LIQUIDATION_SEARCH_SECONDS = MAX_HORIZON_SECONDS

_PERCENT = re.compile(r"^([+-]?)(\d{1,5})(?:\.(\d{1,2}))?%?$")
_DURATION = re.compile(r"^(\d{1,12})([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400}
ALL_RISK_ASSETS = "*"


def parse_bps(text: str) -> int:
    """ "-20%", "-12.5", "+5%" as basis points (InvalidInput otherwise)."""
    found = _PERCENT.match(text.strip())
    if found is None:
        raise InvalidInput(f"shock {text!r} is not a percentage like -20% or -12.5%")
    sign, whole, fraction = found.groups()
    bps = int(whole) * 100 + int((fraction or "0").ljust(2, "0"))
    bps = -bps if sign == "-" else bps
    if not MIN_SHOCK_BPS <= bps <= MAX_SHOCK_BPS:
        raise InvalidInput(f"shock {text!r} is outside -99.99% .. +1000%")
    return bps


def shocked(answer: int, bps: int) -> int:
    """An integer price moved by `bps` basis points, rounded down."""
    return answer * (BPS + bps) // BPS


@dataclass(frozen=True, slots=True)
class Shock:
    """Price moves by asset: `named` by lower-case symbol or address; `risk` for every asset
    that is not a stablecoin and not named (None: those stay)."""

    named: Mapping[str, int] = field(default_factory=dict)
    risk: int | None = None

    def bps(self, address: str, symbol: str, stable: bool) -> int:
        """The move of one asset: by its address, else its symbol, else `*` unless stable."""
        for key in (address.lower(), symbol.lower()):
            if key in self.named:
                return self.named[key]
        return 0 if stable or self.risk is None else self.risk

    def json(self) -> dict[str, int]:
        out = dict(sorted(self.named.items()))
        if self.risk is not None:
            out[ALL_RISK_ASSETS] = self.risk
        return out


def parse_shock(text: str | None) -> Shock:
    """`WETH:-20%,WBTC:-15%` or `*:-30%` (and both: a named asset wins over `*`)."""
    if text is None or not text.strip():
        return Shock()
    named: dict[str, int] = {}
    risk: int | None = None
    for part in text.split(","):
        asset, sep, move = part.strip().partition(":")
        asset = asset.strip().lower()
        if not sep or not asset:
            raise InvalidInput(f"shock {part.strip()!r} is not ASSET:PERCENT (e.g. WETH:-20%)")
        if asset in named or (asset == ALL_RISK_ASSETS and risk is not None):
            raise InvalidInput(f"shock names {asset!r} twice")
        if asset == ALL_RISK_ASSETS:
            risk = parse_bps(move)
        else:
            named[asset] = parse_bps(move)
    if len(named) > 100:
        raise InvalidInput("a shock names at most 100 assets")
    return Shock(named, risk)


_TARGET = re.compile(r"^\d{1,3}(?:\.\d{1,18})?$")
WAD = 10**18
DEFAULT_TARGET = "1.5"


def parse_target(text: str | None) -> int:
    """A target health factor ("1.5") as a wad, exactly (InvalidInput unless 1 < it <= 100)."""
    text = (text or DEFAULT_TARGET).strip()
    if _TARGET.match(text) is None:
        raise InvalidInput(f"target {text!r} is not a health factor like 1.5")
    whole, _, fraction = text.partition(".")
    wad = int(whole) * WAD + int(fraction.ljust(18, "0") or "0")
    if not WAD < wad <= 100 * WAD:
        raise InvalidInput(f"target {text!r} must be above 1 and at most 100")
    return wad


def parse_horizon(text: str | None) -> int:
    """Seconds ahead: "3600", "90s", "30m", "12h", "30d" (0 when absent)."""
    if text is None or not text.strip():
        return 0
    found = _DURATION.match(text.strip().lower())
    if found is None:
        raise InvalidInput(f"horizon {text!r} is not a duration like 3600, 12h or 30d")
    seconds = int(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    if seconds > MAX_HORIZON_SECONDS:
        raise InvalidInput("horizon is more than 100 years")
    return seconds


@dataclass(frozen=True, slots=True)
class Scenario:
    """What a stress read applies: the shock, the chain's stablecoins (addresses, lower-case:
    the config's `usd_tokens`), and how many seconds of interest accrue first."""

    shock: Shock
    stables: frozenset[str] = frozenset()
    horizon: int = 0

    def bps(self, address: str, symbol: str) -> int:
        return self.shock.bps(address, symbol, address.lower() in self.stables)


def _first_failing(fails: Callable[[int], bool], low: int, high: int) -> int:
    """Bisection between a `low` that does not fail and a `high` that does."""
    while high - low > 1:
        middle = (low + high) // 2
        if fails(middle):
            high = middle
        else:
            low = middle
    return high


def smallest_failing(fails: Callable[[int], bool], high: int) -> int | None:
    """The smallest x in [0, high] with fails(x), for a `fails` that stays true once true
    (a price drop in basis points, seconds of interest); None if fails(high) is false."""
    if fails(0):
        return 0
    if not fails(high):
        return None
    return _first_failing(fails, 0, high)


def time_to_failure(
    fails: Callable[[int], bool], limit: int = LIQUIDATION_SEARCH_SECONDS
) -> int | None:
    """The first second (from now) at which `fails`, searched by doubling from an hour, then
    halving between the last step that held and the first that failed: a few dozen
    valuations even for decades. None: not within `limit`."""
    if fails(0):
        return 0
    low, step = 0, 3_600
    while step < limit:
        if fails(step):
            return _first_failing(fails, low, step)
        low, step = step, step * 2
    return _first_failing(fails, low, limit) if fails(limit) else None


def liquidation_edges(
    liquidatable_at: Callable[[Mapping[str, int], int], bool],
    collateral: Iterable[str],
    has_debt: bool,
) -> tuple[int | None, int | None]:
    """An account's distance from liquidation, from `liquidatable_at(moves, seconds)` (its
    state with these assets' prices moved by basis points, `seconds` of interest later):
    the smallest uniform drop of its `collateral` assets' prices that makes it liquidatable
    (0: it is; None: not even at -99.99%), and the seconds of interest, prices held, until it
    is (None: not within a century). Both None without debt."""
    if not has_debt:
        return None, None
    assets = sorted(collateral)
    if assets:
        drop = smallest_failing(
            lambda bps: liquidatable_at(dict.fromkeys(assets, -bps), 0), BPS - 1
        )
    else:
        drop = 0 if liquidatable_at({}, 0) else None
    return drop, time_to_failure(lambda seconds: liquidatable_at({}, seconds))


def first_reaching(reaches: Callable[[int], bool], high: int) -> int | None:
    """The smallest amount in [1, high] that reaches a target, for a `reaches` that stays
    true once true (None: not even `high`)."""
    found = smallest_failing(reaches, high) if high >= 1 else None
    return found or None  # 0: already there, no move to make


def move_json(
    symbol: str,
    asset: str,
    decimals: int,
    price: int,
    amount: int | None,
    limit: int | None,
    usd: float | None,
) -> dict[str, Any]:
    """One what-to-do move: its exact amount (None: this move alone cannot reach the target),
    with the price it was valued at and, for a repayment, the most it can be."""
    return {
        "asset": asset,
        "symbol": symbol,
        "decimals": decimals,
        "amount": None if amount is None else str(amount),
        "amount_usd": usd,
        "price": str(price),
        "enough": amount is not None,
        "limit": None if limit is None else str(limit),
    }


def lending_stress_json(
    now: dict[str, Any],
    stressed: dict[str, Any],
    moves: Mapping[str, int],
    liquidatable: bool,
    drop_bps: int | None,
    seconds: int | None,
) -> dict[str, Any]:
    """A lending account's stress answer, any protocol: its account JSON now and under the
    scenario (they name it), the moves applied and its distance from liquidation."""
    return {
        **{key: now[key] for key in ("id", "protocol", "chain_id", "pool", "owner")},
        "shocks_bps": {asset: bps for asset, bps in sorted(moves.items()) if bps},
        "now": now,
        "stressed": stressed,
        "liquidatable": liquidatable,
        "liquidation_drop_bps": drop_bps,
        "time_to_liquidation_seconds": seconds,
    }
