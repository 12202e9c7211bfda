"""Small, fast helpers for the hex strings JSON-RPC speaks."""

from __future__ import annotations

import re

from schemas.errors import InvalidInput

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")


def is_address(value: str) -> bool:
    return bool(_ADDRESS.match(value))


def normalize_address(value: str) -> str:
    """Lower-case 0x address; raises InvalidInput with a clear message otherwise."""
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise InvalidInput(f"not an address (want 0x and 40 hex digits): {value!r}")
    return value.lower()


def normalize_hash(value: str) -> str:
    if not isinstance(value, str) or not _HASH.match(value):
        raise InvalidInput(f"not a 32-byte hash: {value!r}")
    return value.lower()


def to_int(value: str | int) -> int:
    """JSON-RPC quantity (0x-hex string) to int."""
    if isinstance(value, int):
        return value
    return int(value, 16)


def topic_to_address(topic: str) -> str:
    """An indexed address topic (32 bytes) to a 0x address."""
    return "0x" + topic[-40:].lower()


def decimal_uint(text: str) -> int | None:
    """A non-negative decimal integer written in ASCII digits, else None. (`str.isdigit`
    alone accepts digits like '²' that `int` refuses.)"""
    return int(text) if text.isascii() and text.isdigit() else None
