"""Comet view calls: their call data and the decoding of what they return (pure, no I/O).

The reader (protocols/compound_v3/reader.py) sends these with eth_call at a block; every decoder
checks the exact ABI shape and the Solidity type's range, and raises DecodeError with the
reason, so a wrong answer never becomes a wrong number. Shapes are Comet's
(compound-finance/comet `CometStorage.sol`, `CometCore.sol`, `CometMainInterface.sol`).
"""

from __future__ import annotations

from protocols.abi import DecodeError, return_words, selector
from protocols.abi import address as _address
from protocols.abi import bounded as _bounded
from protocols.abi import signed as _signed
from schemas.comet import CometAssetInfo, CometConfig, CometTotalsBasic, CometUserBasic

TOTALS_BASIC = selector("totalsBasic()")
USER_BASIC = selector("userBasic(address)")
USER_COLLATERAL = selector("userCollateral(address,address)")
GET_PRICE = selector("getPrice(address)")
NUM_ASSETS = selector("numAssets()")
GET_ASSET_INFO = selector("getAssetInfo(uint8)")

# Single-word immutables of the configuration, in CometConfig's field order.
CONFIG_WORDS: tuple[tuple[str, str], ...] = (
    ("base_token", "baseToken()"),
    ("base_token_price_feed", "baseTokenPriceFeed()"),
    ("base_scale", "baseScale()"),
    ("supply_kink", "supplyKink()"),
    ("supply_per_second_interest_rate_base", "supplyPerSecondInterestRateBase()"),
    ("supply_per_second_interest_rate_slope_low", "supplyPerSecondInterestRateSlopeLow()"),
    ("supply_per_second_interest_rate_slope_high", "supplyPerSecondInterestRateSlopeHigh()"),
    ("borrow_kink", "borrowKink()"),
    ("borrow_per_second_interest_rate_base", "borrowPerSecondInterestRateBase()"),
    ("borrow_per_second_interest_rate_slope_low", "borrowPerSecondInterestRateSlopeLow()"),
    ("borrow_per_second_interest_rate_slope_high", "borrowPerSecondInterestRateSlopeHigh()"),
    ("store_front_price_factor", "storeFrontPriceFactor()"),
    ("base_borrow_min", "baseBorrowMin()"),
)
CONFIG_SELECTORS = tuple(selector(sig) for _name, sig in CONFIG_WORDS)
_ADDRESS_FIELDS = {"base_token", "base_token_price_feed"}


def _word(value: int) -> str:
    return f"{value:064x}"


def _address_word(account: str) -> str:
    return _word(int(account, 16))


def user_basic_data(account: str) -> str:
    return USER_BASIC + _address_word(account)


def user_collateral_data(account: str, asset: str) -> str:
    return USER_COLLATERAL + _address_word(account) + _address_word(asset)


def get_price_data(feed: str) -> str:
    return GET_PRICE + _address_word(feed)


def asset_info_data(index: int) -> str:
    return GET_ASSET_INFO + _word(index)


def decode_totals_basic(result: object) -> CometTotalsBasic:
    si, bi, tsi, tbi, supply, borrow, last, flags = return_words(result, 8)
    return CometTotalsBasic(
        _bounded(si, 64, "baseSupplyIndex"),
        _bounded(bi, 64, "baseBorrowIndex"),
        _bounded(tsi, 64, "trackingSupplyIndex"),
        _bounded(tbi, 64, "trackingBorrowIndex"),
        _bounded(supply, 104, "totalSupplyBase"),
        _bounded(borrow, 104, "totalBorrowBase"),
        _bounded(last, 40, "lastAccrualTime"),
        _bounded(flags, 8, "pauseFlags"),
    )


def decode_user_basic(result: object) -> CometUserBasic:
    principal, tracking_index, tracking_accrued, assets_in, _reserved = return_words(result, 5)
    value = _signed(principal)
    if not -(1 << 103) <= value < (1 << 103):
        raise DecodeError("principal does not fit in int104")
    return CometUserBasic(
        value,
        _bounded(tracking_index, 64, "baseTrackingIndex"),
        _bounded(tracking_accrued, 64, "baseTrackingAccrued"),
        # uint16 in Comet, a wider bit set in CometWithExtendedAssetList: bound it by 24 bits.
        _bounded(assets_in, 24, "assetsIn"),
    )


def decode_user_collateral(result: object) -> int:
    balance, _reserved = return_words(result, 2)
    return _bounded(balance, 128, "collateral balance")


def decode_price(result: object) -> int:
    (price,) = return_words(result, 1)
    return price


def decode_num_assets(result: object) -> int:
    (n,) = return_words(result, 1)
    return _bounded(n, 8, "numAssets")


def decode_asset_info(result: object) -> CometAssetInfo:
    offset, asset, feed, scale, bcf, lcf, lf, cap = return_words(result, 8)
    return CometAssetInfo(
        _bounded(offset, 8, "offset"),
        _address(asset),
        _address(feed),
        _bounded(scale, 64, "scale"),
        _bounded(bcf, 64, "borrowCollateralFactor"),
        _bounded(lcf, 64, "liquidateCollateralFactor"),
        _bounded(lf, 64, "liquidationFactor"),
        _bounded(cap, 128, "supplyCap"),
    )


def decode_config(
    comet: str, words: list[object], assets: list[CometAssetInfo], base_symbol: str = "???"
) -> CometConfig:
    """The answers to CONFIG_SELECTORS (in order) and the asset infos, as one CometConfig."""
    if len(words) != len(CONFIG_WORDS):
        raise DecodeError(f"{len(words)} configuration answers, expected {len(CONFIG_WORDS)}")
    values: dict[str, object] = {}
    for (name, _sig), result in zip(CONFIG_WORDS, words, strict=True):
        (word,) = return_words(result, 1)
        values[name] = _address(word) if name in _ADDRESS_FIELDS else _bounded(word, 104, name)
    if values["base_scale"] == 0:
        raise DecodeError("baseScale is 0")
    for i, info in enumerate(assets):
        if info.offset != i or info.scale == 0:
            raise DecodeError(f"asset {i} has offset {info.offset} and scale {info.scale}")
    return CometConfig(
        comet=comet,
        assets=tuple(assets),
        base_symbol=base_symbol,
        **values,  # type: ignore[arg-type]
    )
