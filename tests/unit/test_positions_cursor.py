"""`/v1/positions` cursors (api.queries): every sort key a page can end on comes back."""

from __future__ import annotations

import math

import pytest

from api.queries import _decode_cursor, _encode_cursor, _sort_key
from schemas.errors import InvalidInput

NO_DEBT = {"id": "1:0xc0:0xb0", "health_factor_float": None}  # an infinite health factor
BORROWER = {"id": "1:0xc0:0xa1", "health_factor_float": 1.25}
LP = {"id": "1:0x23:7"}  # no health factor at all


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("subject", [NO_DEBT, BORROWER, LP])
def test_a_cursor_gives_back_its_sort_key(subject: dict[str, object], descending: bool) -> None:
    key = _sort_key(subject, "health_factor", descending)
    cursor = _encode_cursor(key, "health_factor", descending)
    assert _decode_cursor(cursor, "health_factor", descending) == key


def test_an_infinite_health_factor_sorts_after_every_finite_one() -> None:
    keys = [_sort_key(s, "health_factor", False) for s in (NO_DEBT, BORROWER, LP)]
    assert sorted(keys) == [keys[1], keys[0], keys[2]]
    assert keys[0][1] == math.inf
    after = _decode_cursor(_encode_cursor(keys[0], "health_factor", False), "health_factor", False)
    assert [k for k in keys if k > after] == [keys[2]]


def test_a_cursor_for_another_sort_is_refused() -> None:
    cursor = _encode_cursor(_sort_key(NO_DEBT, "health_factor", True), "health_factor", True)
    with pytest.raises(InvalidInput, match="another sort"):
        _decode_cursor(cursor, "health_factor", False)
    with pytest.raises(InvalidInput, match="not a next_cursor"):
        _decode_cursor("bm90IGpzb24", "health_factor", True)
