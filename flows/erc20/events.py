"""Decode ERC-20 `Transfer` logs (pure).

ERC-721 shares the signature with a third indexed topic (the token id), so the topic count
tells them apart: an ERC-20 Transfer has exactly three topics and one data word.
"""

from __future__ import annotations

from typing import NamedTuple

from flows.abi import DecodeError, address, topic, topics, words
from schemas.chain import RawLog

__all__ = ["TRANSFER", "DecodeError", "Erc20Transfer", "decode_transfer"]

TRANSFER = topic("Transfer(address,address,uint256)")


class Erc20Transfer(NamedTuple):
    sender: str
    recipient: str
    amount: int


def decode_transfer(log: RawLog) -> Erc20Transfer:
    """The transfer in `log`; DecodeError (with the reason) if it is not a readable one."""
    if not log.topics or log.topics[0] != TRANSFER:
        raise DecodeError("not a Transfer(address,address,uint256) log")
    sender, recipient = topics(log, 3)
    (amount,) = words(log, 1)
    return Erc20Transfer(address(sender), address(recipient), amount)
