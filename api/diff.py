"""Why a portfolio's value changed between two blocks (pure): price moves, interest, fees and
the owner's own actions, each in USD, summing exactly to the change.

Each protocol's read side splits its own subjects' changes (`ReadSide.changes`, in
protocols/<name>/read.py: LP positions, lending accounts, token balances); here they are
summed into the wallet's totals.
"""

from __future__ import annotations

import math
from typing import Any

from protocols.read_side import Change

__all__ = ["Change", "summarize"]


def summarize(changes: list[Change]) -> dict[str, Any]:
    """The wallet's totals. The values, `change` and each part are correctly rounded sums over the
    subjects (math.fsum): a wallet worth billions (a devnet deployer) has totals whose last
    bit is a microdollar, so the difference of the two rounded totals can miss the parts' sum
    by more than the parts' own rounding; summed per subject they agree."""
    total = {
        part: math.fsum(getattr(c, part) for c in changes)
        for part in ("price", "interest", "fees", "actions")
    }
    value_from = math.fsum(c.value_from for c in changes)
    value_to = math.fsum(c.value_to for c in changes)
    return {
        "value_from": value_from,
        "value_to": value_to,
        "change": math.fsum(c.value_to - c.value_from for c in changes),
        "explained": total,
        "subjects": [c.json() for c in sorted(changes, key=lambda c: c.id)],
    }
