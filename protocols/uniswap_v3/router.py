"""Incremental price routing: `route_prices`' answer, recomputed only where a block changed it.

`route_prices` (valuation.py) is the reference and stays the definition: a breadth-first walk
out of the roots in which a token's level is its shortest route and, among the pools that reach
it from the level before, the deepest in USD wins (ties: lowest address). `PriceRouter` keeps
what that walk found (each token's level, exact price and report) and, given the pools that
changed and the roots as they now are, redoes the walk's decision only for the tokens whose
decision can differ. The answer is the same dict, exactly, every time (a property test replays
random changes against `route_prices` after every step).

Why re-deciding only "suspects" is exact, by induction on the level h: the walk decides a token
X at level h from (a) X's pools (their price and depth) and (b) which of X's neighbours are at
level h-1, with what exact price and staleness (`stale` travels along routes), given (c) that X
was not priced below h. If none of these differs from the last walk, X's decision at h is the
last walk's. So X must be re-decided at h only if
- one of X's pools changed and its other token P sits at level h-1 (seeded at P's old level + 1;
  if P's level moves, the next rule covers the new one);
- a neighbour's membership of level h-1, or its exact price or staleness there, changed (a token
  moving from level a to b changed at both a and b: its neighbours are re-decided at a+1 and
  b+1);
- X was priced below h before but is not now ("lost"): it is re-decided at every following
  level while some neighbour can still be at the level before.
Level changes (a pool crossing the depth threshold, initialised, new; a root added or removed)
are handled by the same rules, so no fallback to a full walk is needed for them. The full walk
runs only on the first route and if the USD tokens or the threshold change (config, i.e. a
restart), because then every decision's inputs changed.

State is plain data (dicts of str, int, Fraction and TokenPrice), picklable with the market
stage's state for undo and recovery, and the result does not depend on iteration order, so it
is the same on replay.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from protocols.journal import JournaledDict
from protocols.uniswap_v3.valuation import depth_usd, pool_rate, root_prices
from schemas.positions import TokenPrice

# What routing needs of a pool: (token0, token1, decimals0, decimals1, sqrt_price_x96, its
# `pool_depth` in base units); sqrt_price_x96 0 when uninitialised (or no state is known).
RoutePool = tuple[str, str, int, int, int, tuple[int, int]]


@dataclass(slots=True)
class PriceRouter:
    usd_tokens: tuple[str, ...] = ()
    min_depth_usd: Fraction = Fraction(0)
    built: bool = False
    pools: dict[str, RoutePool] = field(default_factory=JournaledDict)
    # token -> neighbour token -> the pools between them (sorted addresses)
    links: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    roots: dict[str, tuple[Fraction, TokenPrice]] = field(default_factory=dict)
    # The last walk: each priced token's level (hops), exact USD per whole token, report.
    level: dict[str, int] = field(default_factory=dict)
    exact: dict[str, Fraction] = field(default_factory=dict)
    prices: dict[str, TokenPrice] = field(default_factory=dict)
    members: dict[int, set[str]] = field(default_factory=dict)  # level -> its tokens
    # For the benchmark: full walks so far, and tokens re-decided by the last update (not
    # part of what the router knows: a replay that routed other blocks compares equal).
    full_walks: int = field(default=0, compare=False)
    decided: int = field(default=0, compare=False)

    def update(
        self,
        changed: Mapping[str, RoutePool],
        usd_tokens: Iterable[str],
        anchors: Mapping[str, tuple[Fraction, TokenPrice]] | None = None,
        min_depth_usd: Fraction | int | float = 0,
    ) -> dict[str, TokenPrice]:
        """The prices `route_prices` gives for every pool known so far with `changed` applied
        (new pools included), these USD tokens and anchors. The first call must pass every
        pool. Returns a new dict (the caller may add to it)."""
        usd = tuple(usd_tokens)
        threshold = Fraction(min_depth_usd)
        pending: dict[int, set[str]] = {}
        if not self.built or usd != self.usd_tokens or threshold != self.min_depth_usd:
            # Every decision's inputs changed: walk from nothing (every root is new).
            self.built, self.usd_tokens, self.min_depth_usd = True, usd, threshold
            self.roots, self.level, self.exact, self.prices = {}, {}, {}, {}
            self.members = {}
            self.full_walks += 1
        # Changed pools first, against the old levels.
        for address, entry in changed.items():
            known = self.pools.get(address)
            if known == entry:
                continue
            self.pools[address] = entry
            token0, token1 = entry[0], entry[1]
            if known is None and token0 != token1:
                insort(self.links.setdefault(token0, {}).setdefault(token1, []), address)
                insort(self.links.setdefault(token1, {}).setdefault(token0, []), address)
            for token, other in ((token0, token1), (token1, token0)):
                seen = self.level.get(other)
                if seen is not None:
                    pending.setdefault(seen + 1, set()).add(token)
        # Then the roots (level 0).
        lost: set[str] = set()
        roots = root_prices(usd, anchors)
        for token in set(roots) | set(self.roots):
            if roots.get(token) == self.roots.get(token):
                continue
            if token in roots:
                value, reported = roots[token]
                self._place(token, 0, value, reported, pending)
            else:
                self._lose(token, pending, lost)
        self.roots = roots

        self.decided = 0
        active: set[str] = set()
        hops = 1
        while pending or active:
            if not active:
                hops = max(hops, min(pending))
            suspects = pending.pop(hops, set()) | active
            self.decided += len(suspects)
            for token in suspects:
                self._decide(token, hops, threshold, pending, lost)
            # A lost token stays a suspect while a neighbour can still be at the level before;
            # a neighbour priced anew later makes it one again (rule 2).
            active = {
                t
                for t in suspects & lost
                if t not in self.level
                and any(self.level.get(n, -1) >= hops for n in self._neighbours(t))
            }
            hops += 1
        return dict(self.prices)

    def _neighbours(self, token: str) -> Iterable[str]:
        return self.links.get(token, {}).keys()

    def _changed(self, token: str, hops: int, pending: dict[int, set[str]]) -> None:
        """`token` changed at level `hops`: its neighbours are re-decided at the next."""
        pending.setdefault(hops + 1, set()).update(self._neighbours(token))

    def _place(
        self,
        token: str,
        hops: int,
        value: Fraction,
        price: TokenPrice,
        pending: dict[int, set[str]],
    ) -> None:
        was = self.level.get(token)
        if was != hops or self.exact[token] != value or self.prices[token].stale != price.stale:
            self._changed(token, hops, pending)
        if was is not None and was > hops:
            self._changed(token, was, pending)  # it left level `was` too
        if was is not None:
            self.members[was].discard(token)
        self.members.setdefault(hops, set()).add(token)
        self.level[token], self.exact[token], self.prices[token] = hops, value, price

    def _lose(self, token: str, pending: dict[int, set[str]], lost: set[str]) -> None:
        """`token` is no longer at the level it was decided at."""
        was = self.level.pop(token)
        del self.exact[token], self.prices[token]
        self.members[was].discard(token)
        self._changed(token, was, pending)
        lost.add(token)
        pending.setdefault(was + 1, set()).add(token)

    def _decide(
        self,
        token: str,
        hops: int,
        threshold: Fraction,
        pending: dict[int, set[str]],
        lost: set[str],
    ) -> None:
        """`route_prices`' decision for `token` at level `hops`, all lower levels decided."""
        was = self.level.get(token)
        if was is not None and was < hops:
            return  # priced nearer a root, unchanged
        # The pools to the level before, found from whichever side is smaller: a hub token's
        # pools or the few roots (level 1 is decided against the roots alone).
        mine = self.links.get(token, {})
        near = self.members.get(hops - 1, set())
        if len(near) < len(mine):
            candidates = [a for p in near if p in mine for a in mine[p]]
        else:
            candidates = [a for p, pools in mine.items() if p in near for a in pools]
        best: tuple[Fraction, str, int, str] | None = None
        for address in sorted(candidates):  # ties: the lowest address, as route_prices
            token0, token1, dec0, dec1, sqrt_price, amounts = self.pools[address]
            if sqrt_price == 0:
                continue
            # side: which of the pool's tokens is the priced one (0: token0)
            priced, side, decimals = (token1, 1, dec1) if token0 == token else (token0, 0, dec0)
            depth = depth_usd(amounts, sqrt_price, side, self.exact[priced] / 10**decimals)
            if depth < threshold:
                continue
            if best is None or depth > best[0]:
                best = (depth, address, side, priced)
        if best is not None:
            _depth, address, side, priced = best
            token0, token1, dec0, dec1, sqrt_price, _amounts = self.pools[address]
            rate = pool_rate(sqrt_price, dec0, dec1)  # token1 per token0, as route_prices
            value = self.exact[token1] * rate if side == 1 else self.exact[token0] / rate
            stale = self.prices[priced].stale
            self._place(
                token,
                hops,
                value,
                TokenPrice(token, float(value), address, hops, stale=stale),
                pending,
            )
        elif was == hops:
            self._lose(token, pending, lost)
