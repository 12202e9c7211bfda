"""The view calls the Morpho reader makes at a block, and the decoding of their answers (pure).

- the market oracle's `price()` (IOracle: loan-token units per collateral unit, scaled 1e36);
- the IRM's `borrowRateView(MarketParams, Market)` for the market as stored at the block: what
  `MorphoBalancesLib.expectedMarketBalances` calls to accrue interest to a later time, and what
  `_accrueInterest` would charge over the time that then elapses (for a rate that depends on
  time too, as the adaptive-curve IRM's, it is exact at the block it was read at).
"""

from __future__ import annotations

from protocols.abi import bounded, return_words, selector
from protocols.morpho_blue.events import MarketParams
from protocols.morpho_blue.math import MarketTotals

PRICE = selector("price()")
BORROW_RATE_VIEW = selector(
    "borrowRateView((address,address,address,address,uint256),"
    "(uint128,uint128,uint128,uint128,uint128,uint128))"
)


def _word(value: int) -> str:
    return f"{value:064x}"


def borrow_rate_view_data(params: MarketParams, totals: MarketTotals) -> str:
    words = [
        int(params.loan_token, 16),
        int(params.collateral_token, 16),
        int(params.oracle, 16),
        int(params.irm, 16),
        params.lltv,
        totals.total_supply_assets,
        totals.total_supply_shares,
        totals.total_borrow_assets,
        totals.total_borrow_shares,
        totals.last_update,
        totals.fee,
    ]
    return BORROW_RATE_VIEW + "".join(_word(w) for w in words)


def decode_uint(result: object, what: str) -> int:
    (value,) = return_words(result, 1)
    return bounded(value, 256, what)
