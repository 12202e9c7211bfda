"""Cross-check protocols.aave_v3.math against a real Aave v3.7 Pool on anvil (a lab run).

Deploys the newest Aave (the artifacts compiled into <lab>/out by the aave-math lab: see
<lab>/out/README.txt) as its own deployment procedures do: addresses provider, ACL, the
Pool (linked libraries) and PoolConfigurator behind their proxies, AaveOracle over mock
feeds, token implementations; lists reserves of 6, 8 and 18 decimals with eMode categories
(one isolated, one holding a reserve whose own LT is 0: collateral only inside the eMode).
Then random users supply, borrow, repay, withdraw, change eMode, transfer aTokens and get
liquidated while time and prices move; after every step each user's
`Pool.getUserAccountData` must equal `account_data(..., version=V3_7)` fed only from chain
state (`getReserveData`, `scaledBalanceOf`, `getUserConfiguration`, `getUserEMode`, the eMode
bitmaps, `getAssetPrice`), and the scaled balances rebuilt from the tokens' Mint/Burn/
BalanceTransfer events with `scaled_delta_from_event` must equal `scaledBalanceOf`.

Run from the repo root:
    PYTHONPATH=. .venv/bin/python labs/aave_vectors/pool_check.py --lab /work/labs/aave-math
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak

from devnet.anvil import Anvil
from devnet.rpc import RpcClient
from devnet.txs import wait_receipts
from protocols.aave_v3 import math as m

MAX = (1 << 256) - 1
ZERO = "0x" + "0" * 40


def _type(item: dict[str, Any]) -> str:
    kind: str = item["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_type(c) for c in item["components"]) + ")" + kind[5:]
    return kind


class Contract:
    def __init__(self, chain: Chain, artifact: dict[str, Any], address: str) -> None:
        self.chain, self.address = chain, address
        # by (name, argument count): TestnetERC20 overloads mint
        self.functions = {
            (f["name"], len(f["inputs"])): f for f in artifact["abi"] if f["type"] == "function"
        }

    def _data(self, name: str, args: tuple[Any, ...]) -> tuple[str, list[str]]:
        f = self.functions[(name, len(args))]
        types = [_type(i) for i in f["inputs"]]
        selector = function_signature_to_4byte_selector(f"{name}({','.join(types)})")
        return "0x" + (selector + encode(types, list(args))).hex(), [_type(o) for o in f["outputs"]]

    def call(self, name: str, *args: Any) -> Any:
        data, outputs = self._data(name, args)
        reply = self.chain.rpc.call("eth_call", [{"to": self.address, "data": data}, "latest"])
        values = decode(outputs, bytes.fromhex(reply[2:]))
        return values[0] if len(values) == 1 else values

    def send(self, name: str, *args: Any, sender: str | None = None) -> dict[str, Any]:
        data, _ = self._data(name, args)
        return self.chain.send(data, self.address, sender)


class Chain:
    def __init__(self, rpc: RpcClient, out: Path) -> None:
        self.rpc, self.out = rpc, out
        self.accounts: list[str] = rpc.call("eth_accounts")
        self.admin = self.accounts[0]

    def artifact(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / f"{name}.json").read_text())
        return data

    def send(self, data: str, to: str | None, sender: str | None = None) -> dict[str, Any]:
        tx = {"from": sender or self.admin, "data": data, "gas": hex(29_000_000)}
        if to is not None:
            tx["to"] = to
        receipt = wait_receipts(self.rpc, [self.rpc.call("eth_sendTransaction", [tx])])[0]
        if int(receipt["status"], 16) != 1:
            raise RuntimeError(f"reverted: {data[:10]} to {to}")
        return receipt

    def deploy(
        self, name: str, types: list[str] | None = None, args: list[Any] | None = None,
        links: dict[str, str] | None = None,
    ) -> Contract:  # fmt: skip
        artifact = self.artifact(name)
        code = artifact["bytecode"][2:]
        for source in artifact["linkReferences"].values():
            for library, places in source.items():
                for place in places:
                    start = place["start"] * 2
                    address = (links or {})[library][2:].lower()
                    code = code[:start] + address + code[start + 40 :]
        data = "0x" + code + (encode(types, args or []).hex() if types else "")
        return Contract(self, artifact, self.send(data, None)["contractAddress"])

    def at(self, name: str, address: str) -> Contract:
        return Contract(self, self.artifact(name), address)


def deploy_market(chain: Chain, rng: random.Random) -> dict[str, Any]:
    admin = chain.admin
    provider = chain.deploy("PoolAddressesProvider", ["string", "address"], ["lab", admin])
    provider.send("setACLAdmin", admin)
    acl = chain.deploy("ACLManager", ["address"], [provider.address])
    provider.send("setACLManager", acl.address)
    acl.send("addPoolAdmin", admin)
    strategy = chain.deploy("DefaultReserveInterestRateStrategyV2", ["address"], [provider.address])
    libs: dict[str, str] = {}
    for name in ("BorrowLogic", "LiquidationLogic", "PoolLogic", "SupplyLogic"):
        libs[name] = chain.deploy(name).address
    libs["FlashLoanLogic"] = chain.deploy("FlashLoanLogic", links=libs).address
    pool_impl = chain.deploy(
        "PoolInstance", ["address", "address"], [provider.address, strategy.address], libs
    )
    provider.send("setPoolImpl", pool_impl.address)
    pool = chain.at("PoolInstance", provider.call("getPool"))
    configurator_impl = chain.deploy("PoolConfiguratorInstance")
    provider.send("setPoolConfiguratorImpl", configurator_impl.address)
    configurator = chain.at("PoolConfiguratorInstance", provider.call("getPoolConfigurator"))

    tokens, feeds = [], []
    for symbol, decimals, price in (
        ("USDC", 6, 10**8), ("WBTC", 8, 60_000 * 10**8), ("WETH", 18, 3_000 * 10**8),
        ("WSTETH", 18, 3_500 * 10**8), ("DAI", 18, 10**8),
    ):  # fmt: skip
        tokens.append(
            chain.deploy(
                "TestnetERC20", ["string", "string", "uint8", "address"],
                [symbol, symbol, decimals, admin],
            )
        )  # fmt: skip
        feeds.append(chain.deploy("MockAggregator", ["int256"], [price]))
    oracle = chain.deploy(
        "AaveOracle",
        ["address", "address[]", "address[]", "address", "address", "uint256"],
        [provider.address, [t.address for t in tokens], [f.address for f in feeds], ZERO, ZERO,
         10**8],
    )  # fmt: skip
    provider.send("setPriceOracle", oracle.address)
    a_impl = chain.deploy(
        "ATokenInstance", ["address", "address", "address"], [pool.address, ZERO, admin]
    )
    v_impl = chain.deploy("VariableDebtTokenInstance", ["address", "address"], [pool.address, ZERO])
    rate = encode(["(uint16,uint32,uint32,uint32)"], [(8_000, 0, 400, 6_000)])
    configurator.send(
        "initReserves",
        [(a_impl.address, v_impl.address, t.address, "a", "a", "v", "v", b"", rate)
         for t in tokens],
    )  # fmt: skip
    # (ltv, lt, bonus) per reserve; WSTETH has LT 0: collateral only inside eMode 1.
    for token, (ltv, lt) in zip(
        tokens,
        [(7_500, 7_800), (7_000, 7_500), (8_000, 8_250), (0, 0), (6_300, 7_700)],
        strict=True,
    ):
        if lt:
            configurator.send("configureReserveAsCollateral", token.address, ltv, lt, 10_500)
        configurator.send("setReserveBorrowing", token.address, True)
    usdc, _wbtc, weth, wsteth, dai = (t.address for t in tokens)
    configurator.send("setEModeCategory", 1, 9_300, 9_500, 10_100, "ETH", False)
    for asset in (weth, wsteth):
        configurator.send("setAssetCollateralInEMode", asset, 1, True)
        configurator.send("setAssetBorrowableInEMode", asset, 1, True)
    configurator.send("setEModeCategory", 2, 9_000, 9_300, 10_200, "stables", True)
    for asset in (usdc, dai):
        configurator.send("setAssetCollateralInEMode", asset, 2, True)
        configurator.send("setAssetBorrowableInEMode", asset, 2, True)
    configurator.send("setAssetLtvzeroInEMode", dai, 2, True)
    return {"pool": pool, "oracle": oracle, "tokens": tokens, "feeds": feeds,
            "configurator": configurator}  # fmt: skip


def account_from_chain(chain: Chain, market: dict[str, Any], user: str) -> m.AccountData:
    pool, oracle = market["pool"], market["oracle"]
    block = chain.rpc.call("eth_getBlockByNumber", ["latest", False])
    now = int(block["timestamp"], 16)
    user_config = pool.call("getUserConfiguration", user)[0]
    user_emode = pool.call("getUserEMode", user)
    rows = []
    for token in market["tokens"]:
        reserve = pool.call("getReserveData", token.address)
        (config,), l_index, l_rate, v_index, v_rate, _s, last, rid, a_token, _st, v_token = reserve[
            :11
        ]
        collateral = m.is_using_as_collateral(user_config, rid)
        borrowing = m.is_borrowing(user_config, rid)
        if not (collateral or borrowing):
            continue
        params = m.decode_reserve_configuration(config)
        income = m.normalized_income(l_index, l_rate, last, now, m.V3_7)
        debt_index = m.normalized_variable_debt(v_index, v_rate, last, now, m.V3_7)
        scaled_a = chain.at("ATokenInstance", a_token).call("scaledBalanceOf", user)
        scaled_v = chain.at("VariableDebtTokenInstance", v_token).call("scaledBalanceOf", user)
        rows.append(
            m.AccountReserve(
                asset=token.address,
                decimals=params.decimals,
                price=oracle.call("getAssetPrice", token.address),
                collateral_enabled=collateral,
                ltv=params.ltv,
                liquidation_threshold=params.liquidation_threshold,
                emode_category=0,
                a_token_balance=m.a_token_balance(scaled_a, income, m.V3_7),
                debt=m.variable_debt_balance(scaled_v, debt_index, m.V3_7),
                reserve_id=rid,
                borrowing=borrowing,
            )
        )
    categories = {}
    if user_emode:
        ltv, lt, bonus = pool.call("getEModeCategoryCollateralConfig", user_emode)
        categories[user_emode] = m.EModeCategory(
            ltv=ltv,
            liquidation_threshold=lt,
            liquidation_bonus=bonus,
            collateral_bitmap=pool.call("getEModeCategoryCollateralBitmap", user_emode),
            borrowable_bitmap=pool.call("getEModeCategoryBorrowableBitmap", user_emode),
            ltvzero_bitmap=pool.call("getEModeCategoryLtvzeroBitmap", user_emode),
            isolated=pool.call("getIsEModeCategoryIsolated", user_emode),
        )
    return m.account_data(rows, user_emode=user_emode, emode_categories=categories, version=m.V3_7)


MINT = "0x" + keccak(text="Mint(address,address,uint256,uint256,uint256)").hex()
BURN = "0x" + keccak(text="Burn(address,address,uint256,uint256,uint256)").hex()
BALANCE_TRANSFER = "0x" + keccak(text="BalanceTransfer(address,address,uint256,uint256)").hex()


def follow_events(
    receipt: dict[str, Any], debt_tokens: set[str], a_tokens: set[str], scaled: dict[Any, int]
) -> int:
    """Apply a receipt's token events to `scaled` (token, user) -> scaled balance."""
    count = 0
    for log in receipt["logs"]:
        token, topic = log["address"].lower(), log["topics"][0]
        if token not in debt_tokens and token not in a_tokens:
            continue
        data = bytes.fromhex(log["data"][2:])
        if topic in (MINT, BURN):
            user = "0x" + log["topics"][2 if topic == MINT else 1][-40:]
            value, increase, index = decode(["uint256", "uint256", "uint256"], data)
            key = (token, user)
            scaled[key] = scaled.get(key, 0) + m.scaled_delta_from_event(
                burn=topic == BURN, value=value, balance_increase=increase, index=index,
                previous_scaled=scaled.get(key, 0), debt=token in debt_tokens, version=m.V3_7,
            )  # fmt: skip
            count += 1
        elif topic == BALANCE_TRANSFER:
            sender = "0x" + log["topics"][1][-40:]
            recipient = "0x" + log["topics"][2][-40:]
            amount, _index = decode(["uint256", "uint256"], data)
            scaled[(token, sender)] = scaled.get((token, sender), 0) - amount
            scaled[(token, recipient)] = scaled.get((token, recipient), 0) + amount
            count += 1
    return count


ACTIONS = (
    "supply", "supply", "borrow", "borrow", "repay", "withdraw", "emode", "transfer", "warp",
    "price", "liquidate", "liquidate",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", type=Path, default=Path("/work/labs/aave-math"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    with Anvil(extra_args=["--gas-limit", "30000000"]) as node, RpcClient(node.rpc_url) as rpc:
        chain = Chain(rpc, args.lab / "out")
        market = deploy_market(chain, rng)
        pool, tokens = market["pool"], market["tokens"]
        print(f"market deployed in {time.monotonic() - started:.1f} s, revision",
              pool.call("POOL_REVISION"))  # fmt: skip
        users = chain.accounts[1:9]
        a_tokens, debt_tokens = set(), set()
        for token in tokens:
            reserve = pool.call("getReserveData", token.address)
            a_tokens.add(reserve[8].lower())
            debt_tokens.add(reserve[10].lower())
        for user in users:
            for token in tokens:
                decimals = token.call("decimals")
                token.send("mint", user, 10**9 * 10**decimals)
                token.send("approve", pool.address, MAX, sender=user)
        scaled: dict[Any, int] = {}
        checks = events = skipped = 0
        kinds: dict[str, int] = {}
        for step in range(args.steps):
            user = rng.choice(users)
            token = rng.choice(tokens)
            unit = 10 ** token.call("decimals")
            price = market["oracle"].call("getAssetPrice", token.address)
            amount = max(1, rng.randint(1, 10**6) * unit * 10**8 // max(price, 1) // 100)
            action = rng.choice(ACTIONS)
            try:
                if action == "supply":
                    receipt = pool.send("supply", token.address, amount, user, 0, sender=user)
                elif action == "borrow":
                    # Up to 99% of what the user may borrow, so prices can push it under 1.
                    room = pool.call("getUserAccountData", user)[2]
                    amount = room * unit // max(price, 1) * rng.randint(50, 99) // 100
                    receipt = pool.send("borrow", token.address, amount, 2, 0, user, sender=user)
                elif action == "repay":
                    receipt = pool.send(
                        "repay", token.address, rng.choice([amount, MAX]), 2, user, sender=user
                    )
                elif action == "withdraw":
                    receipt = pool.send(
                        "withdraw", token.address, rng.choice([amount, MAX]), user, sender=user
                    )
                elif action == "emode":
                    receipt = pool.send("setUserEMode", rng.choice([0, 1, 2]), sender=user)
                elif action == "transfer":
                    a_token = chain.at(
                        "ATokenInstance", pool.call("getReserveData", token.address)[8]
                    )
                    receipt = a_token.send("transfer", rng.choice(users), amount // 2, sender=user)
                elif action == "warp":
                    rpc.call("evm_increaseTime", [rng.choice([1, 12, 3600, 86400, 30 * 86400])])
                    rpc.call("evm_mine", [])
                    receipt = {"logs": []}
                elif action == "price":
                    new = price * rng.randint(60, 125) // 100
                    feed = chain.deploy("MockAggregator", ["int256"], [new])
                    receipt = market["oracle"].send(
                        "setAssetSources", [token.address], [feed.address]
                    )
                else:
                    underwater = [u for u in users if pool.call("getUserAccountData", u)[5] < m.WAD]
                    if not underwater:
                        raise RuntimeError("nobody to liquidate")
                    victim = rng.choice(underwater)
                    config = pool.call("getUserConfiguration", victim)[0]
                    # Reserve ids follow the listing order of `tokens`.
                    held = [t for i, t in enumerate(tokens) if m.is_using_as_collateral(config, i)]
                    owed = [t for i, t in enumerate(tokens) if m.is_borrowing(config, i)]
                    receipt = pool.send(
                        "liquidationCall", rng.choice(held).address, rng.choice(owed).address,
                        victim, rng.choice([MAX, amount]), rng.random() < 0.3, sender=user,
                    )  # fmt: skip
            except RuntimeError:
                skipped += 1  # the protocol refused (health factor, caps, nothing to repay...)
                continue
            kinds[action] = kinds.get(action, 0) + 1
            events += follow_events(receipt, debt_tokens, a_tokens, scaled)
            for who in users:
                expected = pool.call("getUserAccountData", who)
                data = account_from_chain(chain, market, who)
                got = (data.total_collateral_base, data.total_debt_base,
                       data.available_borrows_base, data.avg_liquidation_threshold,
                       data.avg_ltv, data.health_factor)  # fmt: skip
                if tuple(expected) != got:
                    raise SystemExit(f"step {step} {action}: {who} chain {expected} != ours {got}")
                checks += 1
            for (token_address, who), value in scaled.items():
                on_chain = chain.at("ATokenInstance", token_address).call("scaledBalanceOf", who)
                if on_chain != value:
                    raise SystemExit(f"step {step} {action}: scaled {token_address} {who} "
                                     f"{on_chain} != ours {value}")  # fmt: skip
        elapsed = time.monotonic() - started
        print(
            f"{args.steps} steps ({skipped} refused by the protocol, done: {kinds}): "
            f"{checks} getUserAccountData equal, {events} token events followed, "
            f"{len(scaled)} scaled balances equal, in {elapsed:.1f} s"
        )


if __name__ == "__main__":
    main()
