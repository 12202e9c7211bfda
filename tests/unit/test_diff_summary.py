"""The diff's totals (api.diff.summarize): its parts sum to its change at any wallet size."""

from __future__ import annotations

import random

from api.diff import Change, summarize


def test_a_wallet_worth_billions_has_parts_summing_to_its_change() -> None:
    # Token balances of a devnet deployer: a billion dollars each, moved by price and transfers.
    rng = random.Random(5)
    worst = 0.0
    for _ in range(200):
        changes = []
        for i in range(6):
            v0 = rng.uniform(5e8, 2e9)
            price = rng.uniform(-2e8, 2e8)
            v1 = v0 + price + rng.uniform(-5e5, 5e5)
            changes.append(Change(f"s{i}", "erc20", v0, v1, price=price, actions=v1 - v0 - price))
        total = summarize(changes)
        worst = max(worst, abs(sum(total["explained"].values()) - total["change"]))
    assert worst < 1e-6
