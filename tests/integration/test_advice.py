"""`/v1/portfolio/{wallet}/advice`: the repay and add-collateral amounts reach the target
health factor when applied on the real Aave V3 pool, and one unit less does not.

A seeded lending market on anvil; each indebted account is asked for a target a little above
its health factor. Each move is then made on a snapshot of the chain: the owner is minted the
amount, and the repayment or supply lands in a block whose timestamp is the head's plus the
`horizon` the API was asked for (so interest accrues exactly as it assumed); the pool's
`getUserAccountData` must then be at or above the target; with one unit less, below it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devnet.contracts import AAVE_REPAY, AAVE_SUPPLY, ERC20_MINT, INTEREST_RATE_VARIABLE
from devnet.lending import LendingSimulator
from devnet.morpho_simulator import MorphoSimulator
from tests.conftest import Devnet
from tests.integration.test_aave_exactness import account_data
from tests.integration.test_stress import slot0, timestamp
from tests.support import block_number, live_server, rpc

WAD = 10**18
HORIZON = 600


def send(devnet: Devnet, sender: str, to: str, data: str) -> int:
    tx = {"from": sender, "to": to, "data": data, "gas": hex(2_000_000)}
    tx_hash = rpc(devnet.rpc_url, "eth_sendTransaction", [tx])
    receipt = None
    while receipt is None:
        receipt = rpc(devnet.rpc_url, "eth_getTransactionReceipt", [tx_hash])
    assert receipt["status"] == "0x1", f"reverted: {data[:10]} to {to}"
    return int(receipt["blockNumber"], 16)


def health_after(devnet: Devnet, owner: str, kind: str, asset: str, amount: int, at: int) -> int:
    """The owner's health factor after the move lands at unix time `at` (then reverted)."""
    aave = devnet.deployment.aave
    assert aave is not None
    snapshot = rpc(devnet.rpc_url, "evm_snapshot", [])
    try:
        send(devnet, devnet.deployment.deployer, asset, ERC20_MINT.encode(owner, amount))
        rpc(devnet.rpc_url, "evm_setNextBlockTimestamp", [at])
        if kind == "repay":
            data = AAVE_REPAY.encode(asset, amount, INTEREST_RATE_VARIABLE, owner)
        else:
            data = AAVE_SUPPLY.encode(asset, amount, owner, 0)
        block = send(devnet, owner, aave.pool, data)
        assert timestamp(devnet.rpc_url, block) == at
        return account_data(devnet, owner, block)[2]
    finally:
        assert rpc(devnet.rpc_url, "evm_revert", [snapshot])


def test_repay_and_add_collateral_amounts_reach_the_target_and_one_unit_less_does_not(
    devnet: Devnet, tmp_path: Path
) -> None:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=11)
    try:
        for _ in range(3):
            lending.tick()
        users = [u for u in lending.accounts() if u != lending.liquidator]
    finally:
        lending.close()
    chain_id = devnet.deployment.chain_id
    head = block_number(devnet.rpc_url)
    head_time = timestamp(devnet.rpc_url, head)
    asked: list[tuple[str, int, dict[str, Any]]] = []
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, head)
        for user in users:
            (_, debt, hf) = account_data(devnet, user, head)
            if not debt:
                continue
            wanted = f"{hf / WAD + 0.25:.4f}"
            response = server.get(
                f"/v1/portfolio/{user}/advice", at=str(head), target=wanted, horizon=str(HORIZON)
            )
            assert response.status_code == 200, response.text
            body = response.json()
            (account,) = body["lending"]
            assert account["below_target"] and account["valued_at"] == head_time + HORIZON
            assert account["repay"] and account["add_collateral"]
            asked.append((user, int(body["target"]), account))
        bad = server.get(f"/v1/portfolio/{users[0]}/advice", target="0.9")
        assert bad.status_code == 400 and "above 1" in bad.json()["detail"]
        assert server.get(f"/v1/portfolio/{users[0]}/advice", target="x").status_code == 400
    assert len(asked) >= 3, "too few indebted accounts"

    checked = 0
    for user, target, account in asked[:4]:
        for kind, moves in (("repay", account["repay"]), ("supply", account["add_collateral"])):
            for move in moves:
                if not move["enough"]:
                    continue
                amount = int(move["amount"])
                at = head_time + HORIZON
                reached = health_after(devnet, user, kind, move["asset"], amount, at)
                assert reached >= target, f"{user}: {kind} {amount} {move['symbol']}: {reached}"
                short = health_after(devnet, user, kind, move["asset"], amount - 1, at)
                assert short < target, f"{user}: {kind} {amount - 1} {move['symbol']} reached it"
                checked += 1
    assert checked >= 4, checked


def pool_tick(devnet: Devnet, pool: str, block: int) -> int | None:
    """The pool's tick after `block` (None before the pool existed)."""
    if rpc(devnet.rpc_url, "eth_getCode", [pool, hex(block)]) in ("0x", None):
        return None
    return slot0(devnet, pool, block)[1]


def test_lp_advice_grid_range_and_time_in_range_match_the_chain(
    devnet: Devnet, tmp_path: Path
) -> None:
    """Each position's advice: the grid's unmoved point is its portfolio value; its range
    statement matches the pool's tick; its seconds in range equal a walk over every block's
    slot0 and timestamp on the node."""
    simulator = devnet.simulator
    for _ in range(12):
        simulator.step()
    chain_id = devnet.deployment.chain_id
    owners = sorted(set(simulator.all_positions().values()))
    head = block_number(devnet.rpc_url)
    found: list[dict[str, Any]] = []
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, head)
        for owner in owners:
            body = server.get(f"/v1/portfolio/{owner}/advice", at=str(head)).json()
            assert "uniswap_v3" not in body["not_advised"]
            portfolio = server.get(f"/v1/portfolio/{owner}", at=str(head)).json()
            values = {p["id"]: p for p in portfolio["positions"]}
            assert {a["id"] for a in body["positions"]} == set(values)
            for advice in body["positions"]:
                held = values[advice["id"]]
                (unmoved,) = [g for g in advice["grid"] if g["move_bps"] == 0]
                assert unmoved["value_usd"] == held["value_usd"]
                assert (unmoved["amount0"], unmoved["amount1"]) == (
                    held["amount0"],
                    held["amount1"],
                )
                assert advice["in_range"] == held["in_range"] == unmoved["in_range"]
                earning = "In range and earning" in advice["statement"]
                assert earning == held["in_range"], advice["statement"]
                found.append(
                    {**advice, "tick_lower": held["tick_lower"], "tick_upper": held["tick_upper"]}
                )
    assert len(found) >= 5
    assert any(not a["in_range"] for a in found), "no position out of range to state it"

    times = [timestamp(devnet.rpc_url, b) for b in range(head + 1)]
    ticks: dict[str, list[int | None]] = {}
    for advice in found:
        pool = advice["pool"]
        if pool not in ticks:
            ticks[pool] = [pool_tick(devnet, pool, b) for b in range(head + 1)]
        start, end = advice["lookback"]["start"], advice["lookback"]["end"]
        assert end == times[head]
        inside = 0
        for b in range(1, head + 1):
            until = times[b + 1] if b < head else end
            since, until = max(times[b], start), min(until, end)
            tick = ticks[pool][b]
            if until > since and tick is not None:
                inside += (
                    until - since if advice["tick_lower"] <= tick < advice["tick_upper"] else 0
                )
        assert advice["seconds_in_range"] == inside, advice["id"]


def morpho_health_after(
    devnet: Devnet, morpho: MorphoSimulator, owner: str, kind: str, amount: int, at: int
) -> int:
    """The Morpho account's health (wad; max if no debt) after the move lands at `at`."""
    actions = morpho.actions
    snapshot = rpc(devnet.rpc_url, "evm_snapshot", [])
    try:
        loan, collateral = (amount, 0) if kind == "repay" else (0, amount)
        for tx in actions.fund(owner, loan, collateral):
            send(devnet, tx.sender, str(tx.to), tx.data)
        rpc(devnet.rpc_url, "evm_setNextBlockTimestamp", [at])
        move = (
            actions.repay(owner, assets=amount)
            if kind == "repay"
            else actions.supply_collateral(owner, amount)
        )
        send(devnet, move.sender, str(move.to), move.data)
        view = morpho.views([owner])[owner]
        assert view.timestamp == at
        return (1 << 256) - 1 if view.health is None else view.health
    finally:
        assert rpc(devnet.rpc_url, "evm_revert", [snapshot])


def test_morpho_repay_and_collateral_amounts_reach_the_target_and_one_unit_less_does_not(
    devnet: Devnet, tmp_path: Path
) -> None:
    morpho = MorphoSimulator(devnet.rpc_url, devnet.deployment, seed=13)
    try:
        for _ in range(3):
            morpho.tick(3_600)
        borrowers = [u for u, v in morpho.views(morpho.accounts()).items() if v.health is not None]
        assert len(borrowers) >= 2, "too few Morpho borrowers"
        chain_id = devnet.deployment.chain_id
        head = block_number(devnet.rpc_url)
        head_time = timestamp(devnet.rpc_url, head)
        at = head_time + HORIZON
        asked = []
        with live_server(tmp_path, [devnet.endpoint()]) as server:
            server.wait_processed(chain_id, head)
            for user in borrowers:
                health = morpho.views([user])[user].health
                assert health is not None
                wanted = f"{health / WAD + 0.25:.4f}"
                body = server.get(
                    f"/v1/portfolio/{user}/advice",
                    at=str(head),
                    target=wanted,
                    horizon=str(HORIZON),
                ).json()
                (account,) = [a for a in body["lending"] if a["protocol"] == "morpho_blue"]
                assert account["below_target"] and account["valued_at"] == at
                asked.append((user, int(body["target"]), account))
        checked = 0
        for user, target, account in asked[:3]:
            for kind, moves in (("repay", account["repay"]), ("add", account["add_collateral"])):
                (move,) = moves
                assert move["enough"], (user, kind)
                amount = int(move["amount"])
                reached = morpho_health_after(devnet, morpho, user, kind, amount, at)
                assert reached >= target, f"{user}: {kind} {amount}: {reached} < {target}"
                short = morpho_health_after(devnet, morpho, user, kind, amount - 1, at)
                assert short < target, f"{user}: {kind} {amount - 1} reached {target}"
                checked += 1
        assert checked >= 4
    finally:
        morpho.close()
