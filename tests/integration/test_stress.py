"""`/v1/portfolio/{wallet}/stress` equals the real Aave V3 pool and Morpho Blue market at
the shocked prices.

Seeded Aave and Morpho markets on anvil; the API answers every account's stress at the head
block for several shocks; then, per shock, the chain is snapshotted, every moved reserve's
oracle source is set to the shocked price (a feed to its answer, an adapter capped at it) and
the Morpho market's oracle to its shocked price in blocks whose timestamps end exactly
`HORIZON` seconds after the head, and `getUserAccountData` of every Aave account, and every
Morpho account's position, borrowed assets, collateral value, max borrow, health and
liquidatability (with interest accrued in that last block) must equal the stressed ones to
the wei; then reverted. The uniform collateral drop and the time to liquidation are checked on
both sides: at the answer the account is liquidatable, one basis point (one second) short of
it it is not.
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode, encode

from devnet.lending import LendingSimulator
from devnet.morpho_simulator import MorphoSimulator
from tests.conftest import Devnet
from tests.integration.test_aave_exactness import account_data
from tests.support import Npm, block_number, eth_call, live_server, rpc, selector

WAD = 10**18
HORIZON = 600  # seconds: room for the blocks that set the prices, and interest to accrue
# Shocks by symbol, "*" for every reserve that is not a stablecoin (whole basis points).
SHOCKS: list[tuple[str, dict[str, int]]] = [
    ("WETH:-20%", {"weth": -2_000}),
    ("*:-30%", {"*": -3_000}),
    ("WBTC:-15%,WETH:+12.5%", {"wbtc": -1_500, "weth": 1_250}),
    ("*:-45.55%,USDC:-1%", {"*": -4_555, "usdc": -100}),
]


def timestamp(url: str, block: int) -> int:
    return int(rpc(url, "eth_getBlockByNumber", [hex(block), False])["timestamp"], 16)


def asset_price(devnet: Devnet, asset: str, block: int) -> int:
    assert devnet.deployment.aave is not None
    out = eth_call(
        devnet.rpc_url,
        devnet.deployment.aave.oracle,
        selector("getAssetPrice(address)") + encode(["address"], [asset]).hex(),
        block,
    )
    assert out is not None
    return int(decode(["uint256"], bytes.fromhex(out[2:]))[0])


def reserve_asset(devnet: Devnet, symbol: str) -> str:
    assert devnet.deployment.aave is not None
    return devnet.deployment.aave.reserves[symbol].asset


def move(answer: int, bps: int) -> int:
    return answer * (10_000 + bps) // 10_000


def set_prices(
    devnet: Devnet,
    lending: LendingSimulator,
    targets: dict[str, int],
    end: int | None,
    morpho: tuple[MorphoSimulator, int] | None = None,
) -> int:
    """Set each symbol's oracle price (bases before adapters) in blocks right after the head;
    then, with `end`, one more block with that timestamp, which sets the Morpho oracle's
    price (and accrues the market's interest) when `morpho` names one. The last block."""
    url = devnet.rpc_url
    # An adapter over a moved base would move with it; the shock names assets, so it is held.
    derived = {s for s, source in lending.sources.items() if source.base_symbol is not None}
    head = block_number(url)
    for symbol in derived - set(targets):
        if lending.sources[symbol].base_symbol in targets:
            targets = {**targets, symbol: asset_price(devnet, reserve_asset(devnet, symbol), head)}
    # The first block right after the head; anvil's clock runs on from there.
    rpc(url, "evm_setNextBlockTimestamp", [timestamp(url, head) + 1])
    for symbol in sorted(targets, key=lambda s: (s in derived, s)):
        assert lending.set_price(symbol, targets[symbol]) is not None, symbol
    if end is not None:
        assert timestamp(url, block_number(url)) < end, "too many blocks for the horizon"
        rpc(url, "evm_setNextBlockTimestamp", [end])
        if morpho is None or not morpho[0].set_price(morpho[1]):
            rpc(url, "evm_mine", [])
    return block_number(url)


def test_stress_equals_the_pool_at_the_shocked_prices_and_the_edges_are_exact(
    devnet: Devnet, tmp_path: Any
) -> None:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=11)
    morpho = MorphoSimulator(devnet.rpc_url, devnet.deployment, seed=13)
    for _ in range(3):
        lending.tick()
        morpho.tick(3_600)
    aave = devnet.deployment.aave
    assert aave is not None
    chain_id = devnet.deployment.chain_id
    stables = {a.lower() for a in devnet.deployment.to_chain_config().usd_tokens}
    users = [u for u in lending.accounts() if u != lending.liquidator]
    borrowers = [u for u in morpho.accounts() if u != morpho.liquidator]
    morpho_price = morpho.price
    head = block_number(devnet.rpc_url)
    head_time = timestamp(devnet.rpc_url, head)
    answers: dict[str, dict[str, dict[str, Any]]] = {}
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, head)
        for text, _ in SHOCKS:
            answers[text] = {}
            for user in sorted({*users, *borrowers}):
                response = server.get(
                    f"/v1/portfolio/{user}/stress", at=str(head), shock=text, horizon=str(HORIZON)
                )
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["horizon_seconds"] == HORIZON
                assert not {"aave_v3", "morpho_blue"} & set(body["not_stressed"])
                for account in body["lending"]:
                    answers[text][f"{account['protocol']}:{user}"] = account
        bad = server.get(f"/v1/portfolio/{users[0]}/stress", shock="WETH:-0.001%")
        assert bad.status_code == 400 and "percentage" in bad.json()["detail"]
        bad = server.get(f"/v1/portfolio/{users[0]}/stress", shock="WETH:-100%")
        assert bad.status_code == 400 and "outside" in bad.json()["detail"]

    prices = {s: asset_price(devnet, r.asset, head) for s, r in aave.reserves.items()}
    checked = liquidatable = morpho_checked = 0
    for text, shock in SHOCKS:
        targets = {}
        for symbol, reserve in aave.reserves.items():
            named = shock.get(symbol.lower())
            if named is None and reserve.asset.lower() not in stables:
                named = shock.get("*")
            if named:
                targets[symbol] = move(prices[symbol], named)
        weth, usdc = shock.get("weth", shock.get("*", 0)), shock.get("usdc", 0)
        moved_morpho = morpho_price * (10_000 + weth) // (10_000 + usdc)
        snapshot = rpc(devnet.rpc_url, "evm_snapshot", [])
        try:
            block = set_prices(
                devnet, lending, targets, head_time + HORIZON, (morpho, moved_morpho)
            )
            assert timestamp(devnet.rpc_url, block) == head_time + HORIZON
            for symbol, reserve in aave.reserves.items():
                assert asset_price(devnet, reserve.asset, block) == targets.get(
                    symbol, prices[symbol]
                ), f"{text}: {symbol}'s oracle price was not set as the shock says"
            views = morpho.views(borrowers)
            for user in borrowers:
                account = answers[text][f"morpho_blue:{user}"]
                view, stressed = views[user], account["stressed"]
                assert view.timestamp == head_time + HORIZON and view.price == moved_morpho
                morpho_served = (
                    int(stressed["supply_shares"]),
                    int(stressed["borrow_shares"]),
                    int(stressed["reserves"][1]["supplied"]),
                    int(stressed["total_debt_base"]),
                    int(stressed["total_collateral_base"]),
                    int(stressed["max_borrow"]),
                    int(stressed["health_factor"]),
                    stressed["is_liquidatable"],
                )
                health = (1 << 256) - 1 if view.health is None else view.health
                assert morpho_served == (
                    view.supply_shares,
                    view.borrow_shares,
                    view.collateral,
                    view.borrow_assets,
                    view.collateral_value,
                    view.max_borrow,
                    health,
                    view.liquidatable,
                ), f"{text}: Morpho {user}"
                assert account["liquidatable"] == view.liquidatable
                morpho_checked += 1
                liquidatable += account["liquidatable"]
            for user in users:
                account = answers[text][f"aave_v3:{user}"]
                stressed = account["stressed"]
                served = (
                    int(stressed["total_collateral_base"]),
                    int(stressed["total_debt_base"]),
                    int(stressed["health_factor"]),
                )
                assert served == account_data(devnet, user, block), f"{text}: {user}"
                assert account["liquidatable"] == (served[1] > 0 and served[2] < WAD)
                for reserve_out in stressed["reserves"]:
                    symbol = reserve_out["symbol"]
                    assert int(reserve_out["price"]) == targets.get(symbol, prices[symbol])
                checked += 1
                liquidatable += account["liquidatable"]
        finally:
            assert rpc(devnet.rpc_url, "evm_revert", [snapshot])
            assert morpho.reload_price() == morpho_price
    assert checked == len(SHOCKS) * len(users) and len(users) >= 4
    assert morpho_checked == len(SHOCKS) * len(borrowers) and borrowers
    assert liquidatable > 0, "no shock of the scenario makes an account liquidatable"

    # The edges, from the first shock's answers (the same for every shock: block prices).
    by_symbol = {r.asset: s for s, r in aave.reserves.items()}
    edges = ttl_edges = 0
    for user in users:
        account = answers[SHOCKS[0][0]][f"aave_v3:{user}"]
        drop = account["liquidation_drop_bps"]
        if drop is None or drop == 0:
            continue
        collateral = [
            by_symbol[r["asset"]]
            for r in account["now"]["reserves"]
            if r["collateral"] and int(r["supplied"]) > 0
        ]
        for bps, below in ((-drop, True), (-(drop - 1), False)):
            snapshot = rpc(devnet.rpc_url, "evm_snapshot", [])
            try:
                targets = {s: move(prices[s], bps) for s in collateral}
                block = set_prices(devnet, lending, targets, None)
                _, debt, hf = account_data(devnet, user, block)
                assert debt > 0 and (hf < WAD) == below, (
                    f"{user}: a {-bps} bp drop of {collateral} gives health factor {hf}"
                )
            finally:
                assert rpc(devnet.rpc_url, "evm_revert", [snapshot])
        edges += 1
        seconds = account["time_to_liquidation_seconds"]
        if seconds is None or seconds < 2:
            continue
        for after, below in ((seconds, True), (seconds - 1, False)):
            snapshot = rpc(devnet.rpc_url, "evm_snapshot", [])
            try:
                rpc(devnet.rpc_url, "evm_setNextBlockTimestamp", [head_time + after])
                rpc(devnet.rpc_url, "evm_mine", [])
                _, _, hf = account_data(devnet, user, block_number(devnet.rpc_url))
                assert (hf < WAD) == below, f"{user}: {after} s after the head, hf {hf}"
            finally:
                assert rpc(devnet.rpc_url, "evm_revert", [snapshot])
        ttl_edges += 1
    assert edges >= 2, "too few indebted accounts to check the liquidation drop"
    assert ttl_edges >= 1, "no account with a finite time to liquidation"

    morpho_edges = 0
    for user in borrowers:
        account = answers[SHOCKS[0][0]][f"morpho_blue:{user}"]
        drop = account["liquidation_drop_bps"]
        if not drop:
            continue
        for bps, below in ((drop, True), (drop - 1, False)):
            snapshot = rpc(devnet.rpc_url, "evm_snapshot", [])
            try:
                assert morpho.set_price(morpho_price * (10_000 - bps) // 10_000)
                assert morpho.views([user])[user].liquidatable == below, f"{user} at -{bps} bp"
            finally:
                assert rpc(devnet.rpc_url, "evm_revert", [snapshot])
                assert morpho.reload_price() == morpho_price
        morpho_edges += 1
    assert morpho_edges >= 1, "no Morpho borrower to check the liquidation drop"


# Pool moves (token0's shock over token1's): named, market-wide, and one a stablecoin takes.
LP_SHOCKS: list[tuple[str, dict[str, int]]] = [
    ("WETH:-20%", {"weth": -2_000}),
    ("*:-30%,WBTC:+10%", {"*": -3_000, "wbtc": 1_000}),
    ("USDC:+2%,WETH:-7.5%", {"usdc": 200, "weth": -750}),
]


def slot0(devnet: Devnet, pool: str, block: int) -> tuple[int, int]:
    out = eth_call(devnet.rpc_url, pool, selector("slot0()"), block)
    assert out is not None
    sqrt_price, tick = decode(["uint160", "int24"], bytes.fromhex(out[2:130]))
    return int(sqrt_price), int(tick)


def test_lp_stress_equals_the_position_manager_after_swaps_to_the_shocked_price(
    devnet: Devnet, tmp_path: Any
) -> None:
    """Every pool a wallet's positions are in is swapped to the sqrtPriceX96 /stress gave it
    (the swap's price limit); each position's amounts must then equal what the position
    manager's decreaseLiquidity of all its liquidity returns, to the wei, and its range."""
    simulator = devnet.simulator
    for _ in range(8):
        simulator.step()
    chain_id = devnet.deployment.chain_id
    owners = sorted(set(simulator.all_positions().values()))
    head = block_number(devnet.rpc_url)
    answers: dict[str, list[dict[str, Any]]] = {}
    balances = 0
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, head)
        for text, _ in LP_SHOCKS:
            answers[text] = []
            for owner in owners:
                response = server.get(f"/v1/portfolio/{owner}/stress", at=str(head), shock=text)
                assert response.status_code == 200, response.text
                body = response.json()
                assert "uniswap_v3" not in body["not_stressed"]
                answers[text] += body["positions"]
                # "now" is the portfolio at that block, whatever the shock
                portfolio = server.get(f"/v1/portfolio/{owner}", at=str(head)).json()
                assert abs(body["value_usd"] - portfolio["total_usd"]) <= 1e-9 * max(
                    1.0, abs(portfolio["total_usd"])
                )
                assert [p["now"] for p in body["positions"]] == portfolio["positions"]
                assert [b["now"] for b in body["balances"]] == portfolio["balances"]
                balances += len(body["balances"])

    pools = {p.address: p for p in devnet.deployment.pools}
    npm = Npm(devnet.rpc_url, devnet.deployment.position_manager)
    swapper = devnet.deployment.wallets[0]
    stables = {a.lower() for a in devnet.deployment.to_chain_config().usd_tokens}
    symbols = {t.address.lower(): s.lower() for s, t in devnet.deployment.tokens.items()}

    def bps(shock: dict[str, int], token: str) -> int:
        named = shock.get(symbols[token.lower()])
        if named is None:
            named = 0 if token.lower() in stables else shock.get("*", 0)
        return named

    checked = moved_out = 0
    for text, shock in LP_SHOCKS:
        targets: dict[str, tuple[int, int]] = {}
        for item in answers[text]:
            target = (int(item["pool_sqrt_price_x96"]), item["pool_tick"])
            assert targets.setdefault(item["pool"], target) == target, "one pool, two prices"
        for pool, (sqrt_price, _) in targets.items():
            # token1 per token0 moves by token0's shock over token1's (to float precision)
            before = slot0(devnet, pool, head)[0]
            ratio = (10_000 + bps(shock, pools[pool].token0)) / (
                10_000 + bps(shock, pools[pool].token1)
            )
            assert abs((sqrt_price / before) ** 2 / ratio - 1) < 1e-9, f"{text}: {pool}"
        snapshot = rpc(devnet.rpc_url, "evm_snapshot", [])
        try:
            for pool, (sqrt_price, _) in sorted(targets.items()):
                simulator.swap_to(pools[pool], sqrt_price, swapper)
            block = block_number(devnet.rpc_url)
            for pool, target in targets.items():
                assert slot0(devnet, pool, block) == target, f"{text}: {pool} not at the price"
            for item in answers[text]:
                stressed = item["stressed"]
                token_id, liquidity = int(stressed["token_id"]), int(stressed["liquidity"])
                if liquidity == 0:
                    continue
                amounts = npm.decrease_all(token_id, liquidity, item["owner"], block)
                assert amounts == (int(stressed["amount0"]), int(stressed["amount1"])), (
                    f"{text}: #{token_id}"
                )
                lower, upper = stressed["tick_lower"], stressed["tick_upper"]
                assert stressed["in_range"] == (lower <= item["pool_tick"] < upper)
                checked += 1
                moved_out += item["now"]["in_range"] and not stressed["in_range"]
        finally:
            assert rpc(devnet.rpc_url, "evm_revert", [snapshot])
    assert checked >= 10, checked
    assert moved_out > 0, "no shock moves a position out of its range"
    assert balances > 0, "no token balance was stressed"
