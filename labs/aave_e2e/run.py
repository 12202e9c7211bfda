"""End-to-end lab: today's Aave (v3.7) deployed on anvil, followed by defimon, checked against
the Pool's own `getUserAccountData` for every account at every block.

Needs what the repo does not ship (aave-dao/aave-v3-origin is BUSL-1.1): the compiled artifacts
of the newest release, one `<Contract>.json` per contract in solc's standard-JSON shape (abi,
bytecode, linkReferences), as labs/aave_vectors produces them from the fetched sources
(PoolInstance, PoolConfiguratorInstance, PoolAddressesProvider, ACLManager, AaveOracle,
ATokenInstance, VariableDebtTokenInstance, DefaultReserveInterestRateStrategyV2, TestnetERC20
and the libraries BorrowLogic, FlashLoanLogic, LiquidationLogic, PoolLogic, SupplyLogic). The
price feeds are the devnet's own PriceFeed (emits AnswerUpdated). Run from the repo root:

    PYTHONPATH=. .venv/bin/python labs/aave_e2e/run.py --artifacts /path/to/out

What it does: deploys the market (WETH, WBTC, USDC and an LST that is collateral only inside
eMode 1, "ETH correlated", whose bitmaps hold WETH and the LST; eMode 2 holds WBTC), runs a
scenario (supplies, borrows, repays, withdraws, eMode switches, an aToken transfer, price
moves, time passing, a liquidation), part of it before defimon starts (backfill) and part while
it follows the head (live), then compares every account at every block from the first supply
to the head: through the query layer (what `?at=` serves) for every block, over HTTP with
`?at=` for every fifth, and every live `account` event of the stream. Prints the counts and
the first mismatches; exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from eth_abi import decode, encode

from api.queries import Queries
from devnet.anvil import Anvil
from devnet.contracts import MAX_UINT256, Artifact, Function, load_artifact
from devnet.rpc import RpcClient
from devnet.txs import Tx, TxFailed, mine_block
from flows.endpoint import ChainEndpoint
from schemas.chain_config import AaveV3Config, ChainConfig, UniswapV3Config
from tests.integration.test_aave_exactness import served
from tests.support import block_number, collect_events, live_server, selector

GAS = 15_000_000
ZERO = "0x" + "00" * 20
RAY = 10**27
USD = 10**8
LIBRARIES = ("BorrowLogic", "LiquidationLogic", "PoolLogic", "SupplyLogic")
# symbol: decimals, USD price, (ltv, liquidation threshold, bonus) outside eMode
RESERVES: dict[str, tuple[int, int, tuple[int, int, int]]] = {
    "WETH": (18, 3_000, (8_000, 8_250, 10_500)),
    "WBTC": (8, 60_000, (7_300, 7_800, 10_650)),
    "USDC": (6, 1, (7_500, 8_000, 10_500)),
    "LST": (18, 3_300, (0, 0, 0)),  # collateral only inside eMode 1 (3.6+)
}
BORROWABLE = ("WETH", "WBTC", "USDC")

F = Function
SET_ACL_ADMIN = F("setACLAdmin(address)")
SET_ACL_MANAGER = F("setACLManager(address)")
ADD_POOL_ADMIN = F("addPoolAdmin(address)")
SET_POOL_IMPL = F("setPoolImpl(address)")
SET_CONFIGURATOR_IMPL = F("setPoolConfiguratorImpl(address)")
SET_PRICE_ORACLE = F("setPriceOracle(address)")
GET_POOL = F("getPool()", ("address",))
GET_CONFIGURATOR = F("getPoolConfigurator()", ("address",))
INIT_RESERVES = F(
    "initReserves((address,address,address,string,string,string,string,bytes,bytes)[])"
)
CONFIGURE_COLLATERAL = F("configureReserveAsCollateral(address,uint256,uint256,uint256)")
SET_BORROWING = F("setReserveBorrowing(address,bool)")
SET_EMODE_CATEGORY = F("setEModeCategory(uint8,uint16,uint16,uint16,string,bool)")
COLLATERAL_IN_EMODE = F("setAssetCollateralInEMode(address,uint8,bool)")
BORROWABLE_IN_EMODE = F("setAssetBorrowableInEMode(address,uint8,bool)")
GET_RESERVE_DATA = F("getReserveData(address)", ("uint256",) * 15)
MINT = F("mint(address,uint256)")
APPROVE = F("approve(address,uint256)")
TRANSFER = F("transfer(address,uint256)")
SUPPLY = F("supply(address,uint256,address,uint16)")
BORROW = F("borrow(address,uint256,uint256,uint16,address)")
REPAY = F("repay(address,uint256,uint256,address)")
WITHDRAW = F("withdraw(address,uint256,address)")
SET_USER_EMODE = F("setUserEMode(uint8)")
LIQUIDATE = F("liquidationCall(address,address,address,uint256,bool)")
SET_ANSWER = F("setAnswer(int256)")
POOL_REVISION = F("POOL_REVISION()", ("uint256",))


def artifact(directory: Path, name: str) -> Artifact:
    raw = json.loads((directory / f"{name}.json").read_text())
    code = raw["bytecode"]
    code = code if code.startswith("0x") else "0x" + code
    return Artifact(name, raw["abi"], code, raw.get("linkReferences") or {})


class Lab:
    def __init__(self, rpc: RpcClient, out: Path) -> None:
        self.rpc = rpc
        self.out = out
        accounts = [a.lower() for a in rpc.call("eth_accounts", [])]
        self.deployer, self.users, self.liquidator = accounts[0], accounts[1:7], accounts[7]
        self.libraries: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.feeds: dict[str, str] = {}
        self.a_tokens: dict[str, str] = {}

    def create(self, name: str, types: tuple[str, ...] = (), args: tuple[Any, ...] = ()) -> Tx:
        found = load_artifact(name) if name == "PriceFeed" else artifact(self.out, name)
        if found.libraries:
            found = found.linked(self.libraries)
        return Tx(self.deployer, None, found.deploy_data(types, args), GAS)

    def block(self, txs: list[Tx]) -> list[str]:
        receipts = mine_block(self.rpc, txs)
        self.rpc.call("evm_setAutomine", [True])
        return [str(r["contractAddress"]).lower() for r in receipts if r["contractAddress"]]

    def call(self, to: str, fn: Function, *args: Any) -> tuple[Any, ...]:
        out = self.rpc.call("eth_call", [{"to": to, "data": fn.encode(*args)}, "latest"])
        return fn.decode(out)

    def deploy(self) -> tuple[str, str, str]:
        d = self.deployer
        (provider, *libs) = self.block(
            [
                self.create("PoolAddressesProvider", ("string", "address"), ("lab", d)),
                *(self.create(name) for name in LIBRARIES),
            ]
        )
        self.libraries.update(zip(LIBRARIES, libs, strict=True))
        symbols = list(RESERVES)
        created = self.block(
            [
                self.create("FlashLoanLogic"),
                Tx(d, provider, SET_ACL_ADMIN.encode(d), GAS),
                *(
                    self.create(
                        "TestnetERC20",
                        ("string", "string", "uint8", "address"),
                        (s, s, RESERVES[s][0], d),
                    )
                    for s in symbols
                ),
                *(
                    self.create(
                        "PriceFeed", ("string", "int256"), (f"{s}/USD", RESERVES[s][1] * USD)
                    )
                    for s in symbols
                ),
            ]
        )
        self.libraries["FlashLoanLogic"] = created[0]
        self.tokens = dict(zip(symbols, created[1:5], strict=True))
        self.feeds = dict(zip(symbols, created[5:9], strict=True))
        assets = [self.tokens[s] for s in symbols]
        acl, strategy, oracle, configurator_impl = self.block(
            [
                self.create("ACLManager", ("address",), (provider,)),
                self.create("DefaultReserveInterestRateStrategyV2", ("address",), (provider,)),
                self.create(
                    "AaveOracle",
                    ("address", "address[]", "address[]", "address", "address", "uint256"),
                    (
                        provider,
                        assets,
                        [self.feeds[s] for s in symbols],
                        "0x" + "00" * 20,
                        "0x" + "00" * 20,
                        USD,
                    ),
                ),
                self.create("PoolConfiguratorInstance"),
            ]
        )
        (pool_impl,) = self.block(
            [self.create("PoolInstance", ("address", "address"), (provider, strategy))]
        )
        self.block(
            [
                Tx(d, provider, SET_ACL_MANAGER.encode(acl), GAS),
                Tx(d, acl, ADD_POOL_ADMIN.encode(d), GAS),
                Tx(d, provider, SET_POOL_IMPL.encode(pool_impl), GAS),
                Tx(d, provider, SET_CONFIGURATOR_IMPL.encode(configurator_impl), GAS),
                Tx(d, provider, SET_PRICE_ORACLE.encode(oracle), GAS),
            ]
        )
        pool = self.call(provider, GET_POOL)[0].lower()
        configurator = self.call(provider, GET_CONFIGURATOR)[0].lower()
        a_impl, v_impl = self.block(
            [
                self.create("ATokenInstance", ("address",) * 3, (pool, ZERO, d)),
                self.create("VariableDebtTokenInstance", ("address",) * 2, (pool, ZERO)),
            ]
        )
        rate_data = encode(["(uint16,uint32,uint32,uint32)"], [(8_000, 0, 400, 6_000)])
        inputs = [
            (a_impl, v_impl, self.tokens[s], f"a{s}", f"a{s}", f"vd{s}", f"vd{s}", b"", rate_data)
            for s in symbols
        ]
        t = self.tokens

        def configure(fn: Function, *args: Any) -> Tx:
            return Tx(d, configurator, fn.encode(*args), GAS)

        txs = [configure(INIT_RESERVES, inputs)]
        for s in symbols:
            if RESERVES[s][2][1]:
                txs.append(configure(CONFIGURE_COLLATERAL, t[s], *RESERVES[s][2]))
            if s in BORROWABLE:
                txs.append(configure(SET_BORROWING, t[s], True))
        txs += [
            configure(SET_EMODE_CATEGORY, 1, 9_000, 9_300, 10_100, "ETH correlated", False),
            configure(COLLATERAL_IN_EMODE, t["WETH"], 1, True),
            configure(COLLATERAL_IN_EMODE, t["LST"], 1, True),
            configure(BORROWABLE_IN_EMODE, t["WETH"], 1, True),
            configure(SET_EMODE_CATEGORY, 2, 8_000, 8_500, 10_500, "BTC", False),
            configure(COLLATERAL_IN_EMODE, t["WBTC"], 2, True),
            configure(BORROWABLE_IN_EMODE, t["USDC"], 2, True),
        ]
        self.block(txs)
        # Funds and approvals for every user and the liquidator.
        txs = []
        for s in symbols:
            unit = 10 ** RESERVES[s][0]
            for user in [*self.users, self.liquidator]:
                funds = 10_000_000 * unit // RESERVES[s][1]
                txs.append(Tx(d, self.tokens[s], MINT.encode(user, funds), GAS))
                txs.append(Tx(user, self.tokens[s], APPROVE.encode(pool, MAX_UINT256), GAS))
        self.block(txs)
        for s in symbols:
            self.a_tokens[s] = _address(self.call(pool, GET_RESERVE_DATA, self.tokens[s])[8])
        self.pool = pool
        return pool, configurator, oracle

    # Scenario ---------------------------------------------------------------------------------

    def amount(self, symbol: str, usd: int) -> int:
        return usd * 10 ** RESERVES[symbol][0] // RESERVES[symbol][1]

    def act(self, user: str, fn: Function, *args: Any) -> None:
        self.block([Tx(user, self.pool, fn.encode(*args), GAS)])

    def supply(self, user: str, s: str, usd: int) -> None:
        self.act(user, SUPPLY, self.tokens[s], self.amount(s, usd), user, 0)

    def borrow(self, user: str, s: str, usd: int) -> None:
        self.act(user, BORROW, self.tokens[s], self.amount(s, usd), 2, 0, user)

    def price(self, s: str, usd: float) -> None:
        self.block([Tx(self.deployer, self.feeds[s], SET_ANSWER.encode(int(usd * USD)), GAS)])

    def wait(self, seconds: int) -> None:
        self.rpc.call("evm_increaseTime", [seconds])
        self.rpc.call("evm_mine", [])

    def rounds(self, count: int, rng: random.Random) -> None:
        """Random actions of the ordinary users (not the eMode LST account), price drift and
        time; an action the Pool refuses reverts and changes nothing."""
        actions = ("supply", "borrow", "repay", "withdraw", "emode")
        for _ in range(count):
            user = rng.choice([self.users[i] for i in (0, 2, 4, 5)])
            s = rng.choice(BORROWABLE)
            usd = rng.randrange(100, 5_000)
            action = rng.choice(actions)
            try:
                if action == "supply":
                    self.supply(user, s, usd)
                elif action == "borrow":
                    self.borrow(user, s, usd)
                elif action == "repay":
                    self.act(user, REPAY, self.tokens[s], self.amount(s, usd), 2, user)
                elif action == "withdraw":
                    self.act(user, WITHDRAW, self.tokens[s], self.amount(s, usd), user)
                else:
                    self.act(user, SET_USER_EMODE, rng.choice((0, 1, 2)))
            except TxFailed:
                self.rpc.call("evm_setAutomine", [True])
            drifted = rng.choice(("WETH", "WBTC"))
            self.price(drifted, RESERVES[drifted][1] * rng.uniform(0.97, 1.03))
            self.wait(rng.randrange(60, 86_400))

    def before(self) -> None:
        u = self.users
        self.supply(u[3], "USDC", 2_000_000)  # liquidity
        self.supply(u[3], "WETH", 1_000_000)
        self.supply(u[3], "WBTC", 1_000_000)
        self.supply(u[0], "WETH", 30_000)
        self.borrow(u[0], "USDC", 15_000)
        self.act(u[1], SET_USER_EMODE, 1)  # the LST counts only inside eMode 1
        self.supply(u[1], "LST", 33_000)
        self.borrow(u[1], "WETH", 18_000)
        self.supply(u[2], "WBTC", 60_000)
        self.borrow(u[2], "USDC", 30_000)
        self.wait(3 * 86_400)
        self.act(u[2], SET_USER_EMODE, 2)
        self.borrow(u[2], "USDC", 10_000)
        self.supply(u[4], "WETH", 9_000)
        self.borrow(u[4], "WBTC", 3_000)
        self.price("WETH", 3_100)
        self.wait(86_400)
        self.act(u[0], REPAY, self.tokens["USDC"], self.amount("USDC", 5_000), 2, u[0])
        self.act(u[0], WITHDRAW, self.tokens["WETH"], self.amount("WETH", 3_000), u[0])
        self.rounds(25, random.Random(7))

    def after(self) -> list[str]:
        u = self.users
        # An aToken transfer: BalanceTransfer plus the interest Mints of both sides (the
        # recipient holds some already, its collateral flag set by its own supply).
        self.supply(u[5], "WETH", 1_000)
        self.wait(3_600)
        moved = TRANSFER.encode(u[5], self.amount("WETH", 2_000))
        self.block([Tx(u[0], self.a_tokens["WETH"], moved, GAS)])
        self.borrow(u[5], "USDC", 500)
        self.rounds(25, random.Random(8))
        self.wait(2 * 86_400)
        self.act(u[4], REPAY, self.tokens["WBTC"], MAX_UINT256, 2, u[4])
        self.act(u[4], SET_USER_EMODE, 1)
        self.act(u[4], SET_USER_EMODE, 0)
        self.price("USDC", 1.01)
        self.price("LST", 1_900)  # the eMode account falls below 1
        self.wait(3_600)
        liquidated = []
        hf = account_data(self.rpc, self.pool, u[1], None)[2]
        if hf < 10**18:
            call = LIQUIDATE.encode(
                self.tokens["LST"], self.tokens["WETH"], u[1], MAX_UINT256, False
            )
            self.block([Tx(self.liquidator, self.pool, call, GAS)])
            liquidated.append(u[1])
        self.supply(u[1], "LST", 1_000)
        self.wait(600)
        return liquidated


def _address(word: int) -> str:
    return f"0x{word:040x}"


def account_data(rpc: RpcClient, pool: str, user: str, block: int | None) -> tuple[int, int, int]:
    data = selector("getUserAccountData(address)") + encode(["address"], [user]).hex()
    out = rpc.call(
        "eth_call", [{"to": pool, "data": data}, hex(block) if block is not None else "latest"]
    )
    collateral, debt, _available, _lt, _ltv, hf = decode(["uint256"] * 6, bytes.fromhex(out[2:]))
    return int(collateral), int(debt), int(hf)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    args = parser.parse_args()
    with Anvil() as anvil, RpcClient(anvil.rpc_url) as rpc, tempfile.TemporaryDirectory() as tmp:
        lab = Lab(rpc, args.artifacts)
        pool, configurator, oracle = lab.deploy()
        revision = lab.call(pool, POOL_REVISION)[0]
        first = block_number(anvil.rpc_url) + 1
        lab.before()
        config = ChainConfig(
            chain_id=anvil.chain_id,
            uniswap_v3=UniswapV3Config("0x" + "de" * 20, "0x" + "be" * 20),
            name="aave-lab",
            aave_v3=AaveV3Config(pool, configurator, oracle),
        )
        endpoint = ChainEndpoint(config, anvil.rpc_url, anvil.ws_url)
        mismatches: list[str] = []
        with live_server(Path(tmp), [endpoint]) as server:
            server.wait_processed(anvil.chain_id, block_number(anvil.rpc_url))
            live: list[dict[str, Any]] = []
            stop = threading.Event()
            reader = threading.Thread(
                target=collect_events,
                args=(f"{server.url}/v1/stream", ("account",), live, stop),
                daemon=True,
            )
            reader.start()
            try:
                liquidated = lab.after()
                head = block_number(anvil.rpc_url)
                server.wait_processed(anvil.chain_id, head)
            finally:
                stop.set()
            for account in live:
                expected = account_data(rpc, pool, account["owner"], account["block_number"])
                if served(account) != expected:
                    at = f"{account['owner']} at {account['block_number']}"
                    mismatches.append(f"live {at}: {served(account)} != {expected}")
            queries: Queries = server.app.state.queries
            checked = http_checked = 0
            for block in range(first, head + 1):
                as_of = queries.resolve_at(anvil.chain_id, block, head)
                for user in lab.users:
                    expected = account_data(rpc, pool, user, block)
                    accounts = queries.portfolio_of("aave_v3", user, as_of)
                    if block % 5 == 0:
                        over_http = server.get(f"/v1/portfolio/{user}", at=str(block)).json()
                        http_checked += 1
                        if over_http["lending"] != accounts:
                            mismatches.append(
                                f"http {user} at {block} differs from the query layer"
                            )
                    if not accounts:
                        if expected[:2] != (0, 0):
                            mismatches.append(f"{user} missing at block {block}: {expected}")
                        continue
                    checked += 1
                    if served(accounts[0]) != expected:
                        mismatches.append(f"{user} at {block}: {served(accounts[0])} != {expected}")
            store = server.runtime.store
            dead = store.rows(
                "SELECT reason, count() FROM defimon.dead_letters FINAL GROUP BY reason"
            )
            versions = store.rows(
                "SELECT block_number, revision, aave_version FROM defimon.aave_pool_versions FINAL"
            )
            emode = store.rows(
                "SELECT category, collateral_bitmap, borrowable_bitmap "
                "FROM defimon.aave_emode_categories FINAL "
                "ORDER BY category, block_number DESC LIMIT 1 BY category"
            )
        print(
            json.dumps(
                {
                    "pool_revision": revision,
                    "versions_stored": versions,
                    "emode_categories": emode,
                    "blocks": [first, head],
                    "accounts_checked_at_blocks": checked,
                    "http_checked": http_checked,
                    "live_events": len(live),
                    "liquidated": liquidated,
                    "dead_letters": dead,
                    "mismatches": len(mismatches),
                    "first_mismatches": mismatches[:10],
                },
                indent=1,
                default=str,
            )
        )
        return 1 if mismatches or dead else 0


if __name__ == "__main__":
    sys.exit(main())
