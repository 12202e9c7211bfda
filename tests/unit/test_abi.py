"""Reading ABI words (protocols/abi.py): what eth_abi encodes reads back through words/topics and
the typed helpers; known topic0 and selector values; malformed logs fail with their reason."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_abi import encode

from protocols.abi import (
    DecodeError,
    address,
    bounded,
    int24,
    selector,
    signed,
    topic,
    topics,
    words,
)
from schemas.chain import RawLog

TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
HOLDER = "0x" + "5a" * 20


def log(data: bytes | str, *indexed: str) -> RawLog:
    hexdata = data if isinstance(data, str) else "0x" + data.hex()
    return RawLog(
        1, 10, "0x" + "bb" * 32, 0, "0x" + "cc" * 32, 0, HOLDER, (TRANSFER, *indexed), hexdata
    )


def word(kind: str, value: object) -> str:
    return "0x" + encode([kind], [value]).hex()


def test_known_topics_and_selectors() -> None:
    assert topic("Transfer(address,address,uint256)") == TRANSFER
    assert topic("Approval(address,address,uint256)") == (
        "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
    )
    assert selector("transfer(address,uint256)") == "0xa9059cbb"
    assert selector("balanceOf(address)") == "0x70a08231"
    assert selector("decimals()") == "0x313ce567"


def test_words_round_trip_signed_and_unsigned_values() -> None:
    values = [2**256 - 1, -(2**255), -1, 12345, -8388608, 8388607]
    data = encode(["uint256", "int256", "int256", "uint128", "int24", "int24"], values)
    got = words(log(data), 6)
    assert got[0] == 2**256 - 1
    assert [signed(w) for w in got[1:3]] == [-(2**255), -1]
    assert bounded(got[3], 128, "amount") == 12345
    assert [int24(w, "tick") for w in got[4:]] == [-8388608, 8388607]


def test_addresses_and_indexed_topics_round_trip() -> None:
    to = "0x" + "7b" * 20
    lg = log(encode(["uint256"], [5]), word("address", HOLDER), word("address", to))
    sender, recipient = topics(lg, 3)
    assert (address(sender), address(recipient)) == (HOLDER, to)
    # A negative int24 topic (a tick) is sign-extended to 32 bytes, as Solidity indexes it.
    (tick,) = topics(log("0x", word("int24", -600)), 2)
    assert int24(tick, "tickLower") == -600


def test_dynamic_tails_read_the_head_words_only() -> None:
    data = encode(["uint256", "string"], [7, "hello"])
    assert words(log(data), 2, at_least=True) == [7, 64]  # the value, then the tail's offset
    assert words(log(data), 1, at_least=True) == [7]
    with pytest.raises(DecodeError, match=r"data is 128 bytes, expected 32"):
        words(log(data), 1)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: words(log("0x" + "00" * 31), 1), "data is 31 bytes, expected 32"),
        (lambda: words(log("00" * 32), 1), "data is 31 bytes, expected 32"),
        (lambda: words(log("0x" + "zz" * 32), 1), "data is not hex"),
        (lambda: words(log("0x"), 1, at_least=True), "data is 0 bytes, expected 32"),
        (lambda: topics(log("0x", "0x01"), 3), "2 topics, expected 3"),
        (lambda: topics(log("0x", "0xnothex"), 2), "topic is not hex"),
        (lambda: address(1 << 160), "address word has high bits set"),
        (lambda: bounded(1 << 128, 128, "liquidity"), "liquidity does not fit in 128 bits"),
        (lambda: int24(1 << 23, "tick"), "tick does not fit in int24"),
        (lambda: int24(2**256 - 2**23 - 1, "tick"), "tick does not fit in int24"),
    ],
)
def test_malformed_words_are_decode_errors_with_a_reason(
    call: Callable[[], object], reason: str
) -> None:
    with pytest.raises(DecodeError) as failed:
        call()
    assert str(failed.value).startswith(reason)
