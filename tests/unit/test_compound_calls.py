"""Comet's view calls: call data and return decoding against eth_abi-encoded bytes.

No package ships Comet's bytecode, so the reader cannot be run against a node with a comet
on it; what it sends and what it decodes are checked here against eth_abi with the exact
Solidity return types of compound-finance/comet (CometStorage.sol TotalsBasic, UserBasic,
UserCollateral; CometCore.sol AssetInfo).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from protocols.compound_v3 import calls as rd

COMET = "0xc3d688b66703497daa19211eedff47f25384cdc3"
ALICE = "0x" + "a1" * 20
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
FEED = "0x5f4ec3df9cbd43714fe2740f5e3616155c5b8419"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
USDC_FEED = "0x8fffffd4afb6115b954bd326cbe7b4ba576818f6"

TOTALS_TYPES = ["uint64", "uint64", "uint64", "uint64", "uint104", "uint104", "uint40", "uint8"]
USER_BASIC_TYPES = ["int104", "uint64", "uint64", "uint16", "uint8"]
ASSET_INFO_TYPES = [
    "uint8",
    "address",
    "address",
    "uint64",
    "uint64",
    "uint64",
    "uint64",
    "uint128",
]


def hexed(types: list[str], values: Sequence[object]) -> str:
    return "0x" + encode(types, values).hex()


def sel(signature: str) -> str:
    return "0x" + function_signature_to_4byte_selector(signature).hex()


def test_selectors_and_call_data_match_eth_abi() -> None:
    assert sel("totalsBasic()") == rd.TOTALS_BASIC
    assert sel("numAssets()") == rd.NUM_ASSETS
    assert (
        rd.user_basic_data(ALICE) == sel("userBasic(address)") + encode(["address"], [ALICE]).hex()
    )
    assert rd.user_collateral_data(ALICE, WETH) == sel("userCollateral(address,address)") + (
        encode(["address", "address"], [ALICE, WETH]).hex()
    )
    assert rd.get_price_data(FEED) == sel("getPrice(address)") + encode(["address"], [FEED]).hex()
    assert rd.asset_info_data(3) == sel("getAssetInfo(uint8)") + encode(["uint8"], [3]).hex()
    assert tuple(sel(sig) for _name, sig in rd.CONFIG_WORDS) == rd.CONFIG_SELECTORS


def test_totals_basic() -> None:
    values = [
        1_000_023_456_789_012,
        1_000_098_765_432_109,
        3 * 10**15,
        4 * 10**15,
        (1 << 104) - 1,
        123_456_789 * 10**6,
        1_700_000_000,
        5,
    ]
    totals = rd.decode_totals_basic(hexed(TOTALS_TYPES, values))
    assert (
        totals.base_supply_index,
        totals.base_borrow_index,
        totals.tracking_supply_index,
        totals.tracking_borrow_index,
        totals.total_supply_base,
        totals.total_borrow_base,
        totals.last_accrual_time,
        totals.pause_flags,
    ) == tuple(values)


@pytest.mark.parametrize(
    "principal", [-(1 << 103), -15_000 * 10**6, 0, 810 * 10**6, (1 << 103) - 1]
)
def test_user_basic_signed_principal(principal: int) -> None:
    basic = rd.decode_user_basic(hexed(USER_BASIC_TYPES, [principal, 7, 8, 0b101, 0]))
    assert (basic.principal, basic.base_tracking_index, basic.base_tracking_accrued) == (
        principal,
        7,
        8,
    )
    assert basic.assets_in == 0b101


def test_user_collateral_and_price() -> None:
    assert rd.decode_user_collateral(hexed(["uint128", "uint128"], [10 * 10**18, 0])) == 10**19
    assert rd.decode_price(hexed(["uint256"], [2_000 * 10**8])) == 2_000 * 10**8
    assert rd.decode_num_assets(hexed(["uint8"], [5])) == 5


def test_asset_info_and_config() -> None:
    info = rd.decode_asset_info(
        hexed(
            ASSET_INFO_TYPES,
            [0, WETH, FEED, 10**18, 825 * 10**15, 895 * 10**15, 950 * 10**15, 350_000 * 10**18],
        )
    )
    assert info.offset == 0
    assert (info.asset, info.price_feed, info.scale, info.decimals) == (WETH, FEED, 10**18, 18)
    assert (
        info.borrow_collateral_factor,
        info.liquidate_collateral_factor,
        info.liquidation_factor,
        info.supply_cap,
    ) == (825 * 10**15, 895 * 10**15, 950 * 10**15, 350_000 * 10**18)
    answers: dict[str, object] = {
        "base_token": USDC,
        "base_token_price_feed": USDC_FEED,
        "base_scale": 10**6,
        "supply_kink": 85 * 10**16,
        "supply_per_second_interest_rate_base": 0,
        "supply_per_second_interest_rate_slope_low": 1_712_328_767,
        "supply_per_second_interest_rate_slope_high": 114_155_251_141,
        "borrow_kink": 85 * 10**16,
        "borrow_per_second_interest_rate_base": 475_646_879,
        "borrow_per_second_interest_rate_slope_low": 1_585_489_599,
        "borrow_per_second_interest_rate_slope_high": 106_544_901_065,
        "store_front_price_factor": 6 * 10**17,
        "base_borrow_min": 100 * 10**6,
    }
    words: list[object] = [
        hexed(["address" if name.startswith("base_token") else "uint256"], [answers[name]])
        for name, _sig in rd.CONFIG_WORDS
    ]
    config = rd.decode_config(COMET, words, [info])
    for name, value in answers.items():
        assert getattr(config, name) == value
    assert config.assets == (info,)
    assert config.base_decimals == 6
    assert config.feeds() == (USDC_FEED, FEED)


@pytest.mark.parametrize(
    ("decoder", "result", "reason"),
    [
        (rd.decode_totals_basic, "0x", "returned 0 bytes, expected 256"),  # no code there
        (rd.decode_totals_basic, None, "not hex"),
        (rd.decode_user_basic, hexed(["int256"] * 5, [1 << 103, 0, 0, 0, 0]), "int104"),
        (
            rd.decode_user_basic,
            hexed(["uint256"] * 5, [0, 1 << 64, 0, 0, 0]),
            "baseTrackingIndex does not fit in 64 bits",
        ),
        (
            rd.decode_totals_basic,
            hexed(["uint256"] * 8, [0, 0, 0, 0, 1 << 104, 0, 0, 0]),
            "totalSupplyBase does not fit in 104 bits",
        ),
        (
            rd.decode_user_collateral,
            hexed(["uint256", "uint256"], [1 << 128, 0]),
            "collateral balance does not fit in 128 bits",
        ),
        (
            rd.decode_asset_info,
            hexed(["uint256"] * 8, [0, 1 << 160, 0, 1, 0, 0, 0, 0]),
            "address word has high bits set",
        ),
        (rd.decode_price, "0x" + "zz" * 32, "not hex"),
    ],
)
def test_wrong_answers_are_decode_errors(decoder: object, result: object, reason: str) -> None:
    assert callable(decoder)
    with pytest.raises(rd.DecodeError, match=reason):
        decoder(result)


def test_config_with_a_bad_asset_offset_is_rejected() -> None:
    info = rd.decode_asset_info(hexed(ASSET_INFO_TYPES, [1, WETH, FEED, 10**18, 0, 0, 0, 0]))
    words: list[object] = [hexed(["uint256"], [10**6])] * len(rd.CONFIG_WORDS)
    with pytest.raises(rd.DecodeError, match="asset 0 has offset 1"):
        rd.decode_config(COMET, words, [info])
