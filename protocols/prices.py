"""USD price roots besides the Aave oracle (pure): configured feeds and USD-based comets.

Token prices are routed outward from roots (protocols/uniswap_v3/valuation.py `route_prices`):
the config's `usd_tokens` (1 USD each) and tokens with an on-chain price, which win over any
pool route. Without Uniswap there are no pools to route through, so the roots are the prices:
what the chain's protocols and the config name is all there is. In order of precedence (the
first that prices a token wins):

1. the Aave oracle (`AaveOracle.getAssetPrice`, protocols/aave_v3/state.py);
2. the config's `[pricing] feeds` (Chainlink-style, 8 decimals), read like the oracle's
   sources (flows/prices_reader.py: classified, followed, read at read points);
3. the `usd_tokens` at 1, and the pools' routes from all of these (with Uniswap);
4. a comet whose base token is one of `usd_tokens`: its `getPrice(feed)` for the base and
   each collateral asset (8 decimals, USD: such a comet's feeds are USD feeds; a comet on
   another base, such as cWETHv3, prices in its base and is no USD root). Last, so a config
   with Uniswap prices every token as it did before; it fills what nothing else prices.

A token none of them reaches stays unpriced (no price, so no value), never 0; a configured
feed that cannot be read keeps its last good answer, marked stale with the reason and the
block it began, as the oracle's sources do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from fractions import Fraction

from schemas.positions import TokenPrice
from schemas.prices import SourceRead

Anchor = tuple[Fraction, TokenPrice]  # exact USD per whole token, and how to report it
FEED_UNIT = 10**8  # Chainlink USD feeds answer with 8 decimals


def feed_anchor(token: str, read: SourceRead, previous: Anchor | None, block: int) -> Anchor | None:
    """A configured feed's price as read at the end of `block`: its `latestAnswer()` if
    positive; else the last good answer marked stale with the reason (None if it never gave
    one: the token is unpriced, never 0)."""
    if read.answer is not None and read.answer > 0:
        usd = Fraction(read.answer, FEED_UNIT)
        return usd, TokenPrice(token, float(usd), read.source, 0)
    if read.answer is None:
        why = f"feed {read.source} unreadable: {read.error or 'reverted'}"
    else:
        why = f"feed {read.source} answered {read.answer}"
    if previous is None:
        return None
    if previous[1].stale.startswith(why + " since block "):
        return previous  # still so: nothing new
    return previous[0], replace(previous[1], stale=f"{why} since block {block}")


def feed_anchors(
    feeds: Iterable[tuple[str, str]],
    reads: Mapping[str, SourceRead],
    known: Mapping[str, Anchor],
    block: int,
) -> dict[str, Anchor]:
    """Every configured feed's anchor after this block's reads (`feeds`: (token, feed)); a
    feed not read at this block keeps what it had."""
    out: dict[str, Anchor] = {}
    for token, feed in feeds:
        read = reads.get(feed)
        previous = known.get(token)
        found = previous if read is None else feed_anchor(token, read, previous, block)
        if found is not None:
            out[token] = found
    return out


def merged_roots(*by_precedence: Mapping[str, Anchor]) -> dict[str, Anchor]:
    """The anchors of several roots, the first mapping that prices a token winning."""
    out: dict[str, Anchor] = {}
    for anchors in reversed(by_precedence):
        out.update(anchors)
    return out


def rooted_prices(usd_tokens: Iterable[str], roots: Mapping[str, Anchor]) -> dict[str, TokenPrice]:
    """Prices without any pool to route through: the USD tokens at 1 and the roots as they
    report themselves (the roots win), as `route_prices` gives with no pools."""
    out = {t: TokenPrice(t, 1.0, "usd", 0) for t in usd_tokens}
    for token, (_usd, reported) in roots.items():
        out[token] = reported
    return out
