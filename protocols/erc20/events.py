"""Decode ERC-20 `Transfer` logs (pure).

ERC-721 shares the signature with a third indexed topic (the token id), so the topic count
tells them apart: an ERC-20 Transfer has exactly three topics and one data word.
"""

from __future__ import annotations

from typing import NamedTuple

from protocols.abi import DecodeError, address, topic, topics, words
from schemas.chain import RawLog

__all__ = ["TRANSFER", "DecodeError", "Erc20Transfer", "decode_transfer"]

TRANSFER = topic("Transfer(address,address,uint256)")


class Erc20Transfer(NamedTuple):
    sender: str
    recipient: str
    amount: int


_PADDING = "0x" + "0" * 24  # an address topic: 12 zero bytes, then the 20 address bytes


def decode_transfer(log: RawLog) -> Erc20Transfer:
    """The transfer in `log`; DecodeError (with the reason) if it is not a readable one."""
    t, data = log.topics, log.data
    # Fast path, string slices only: a tracked wallet's every transfer comes through here.
    if (
        len(t) == 3
        and t[0] == TRANSFER
        and len(data) == 66
        and len(t[1]) == len(t[2]) == 66
        and t[1].startswith(_PADDING)
        and t[2].startswith(_PADDING)
    ):
        try:
            int(t[1], 16), int(t[2], 16)  # raises if not hex
            return Erc20Transfer("0x" + t[1][26:], "0x" + t[2][26:], int(data, 16))
        except ValueError:
            pass  # the generic path below says what is wrong
    if not t or t[0] != TRANSFER:
        raise DecodeError("not a Transfer(address,address,uint256) log")
    sender, recipient = topics(log, 3)
    (amount,) = words(log, 1)
    return Erc20Transfer(address(sender), address(recipient), amount)
