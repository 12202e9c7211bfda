"""Compound V3 on its own bytecode: vectors for the unit tests, and defimon end to end.

Needs what the repository does not ship (Comet is BUSL-1.1 and lives only on GitHub):
  1. compound-finance/comet fetched and compiled into an artifacts file holding the ABI and
     creation bytecode of Comet, CometExt and FaucetToken: npm `solc` 0.8.15 (exact),
     `viaIR: true`, optimizer runs 1 and the `yulDetails.optimizerSteps` of the repo's
     hardhat.config.ts (Comet + CometExt compile in ~25-45 s). The lab that made the committed
     vectors compiled commit d5a30b0aaeff7755f1431e87f818990902237b03 (2026-05-29).
  2. this repository's devnet (anvil from npm, devnet/contracts/PriceFeed.json).

What it does, on a fresh anvil:
  - deploys a USDC-like comet shaped as deployments/mainnet/usdc/configuration.json (rates,
    store front factor, borrow min, target reserves; WETH, WBTC, COMP, UNI as collateral with
    their factors), each price from a devnet PriceFeed (emits AnswerUpdated, 8 decimals);
  - math cases through the comet itself: getSupplyRate / getBorrowRate at random utilisations
    (and around the kink), quoteCollateral at random prices and amounts;
  - a random scenario of accounts through the protocol's own logic (supply, supplyTo, borrow,
    repay, withdraw collateral, base `transfer`, collateral `transferAsset`, price moves and
    time jumps in blocks where the comet emits nothing, absorb, buyCollateral), and after every
    block each account's `userBasic`, `userCollateral`, `balanceOf`, `borrowBalanceOf`,
    `isLiquidatable`, `isBorrowCollateralized`, with the comet's `totalsBasic` and prices;
  - with --e2e: defimon (the flow and the API, in process) backfills the first part of the
    scenario and follows the rest live; every account at every block, as
    `GET /v1/portfolio/{wallet}?at=N` serves it, is compared with the comet's own views.

Run (from the repository root, PYTHONPATH=.):
  python labs/comet_vectors/comet_lab.py --artifacts /work/labs/comet/artifacts.json \
      --out tests/vectors/comet_v3.json --steps 400 --seed 7 [--e2e]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak

from devnet.anvil import Anvil
from devnet.rpc import RpcClient

E18 = 10**18
SECONDS_PER_YEAR = 31_536_000
CONFIG_TYPE = (
    "(address,address,address,address,address,uint64,uint64,uint64,uint64,uint64,uint64,uint64,"
    "uint64,uint64,uint64,uint64,uint64,uint104,uint104,uint104,"
    "(address,address,uint8,uint64,uint64,uint64,uint128)[])"
)
# deployments/mainnet/usdc/configuration.json (supply caps raised: the lab mints freely)
RATES = {
    "supplyKink": 0.8, "supplySlopeLow": 0.0325, "supplySlopeHigh": 0.4, "supplyBase": 0,
    "borrowKink": 0.8, "borrowSlopeLow": 0.035, "borrowSlopeHigh": 0.25, "borrowBase": 0.015,
}  # fmt: skip
ASSETS = [  # symbol, decimals, price (8 decimals), borrowCF, liquidateCF, liquidationFactor
    ("WETH", 18, 2_000 * 10**8, 0.825, 0.895, 0.95),
    ("WBTC", 8, 40_000 * 10**8, 0.70, 0.77, 0.95),
    ("COMP", 18, 50 * 10**8, 0.65, 0.70, 0.93),
    ("UNI", 18, 6 * 10**8, 0.75, 0.81, 0.93),
]


def sel(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()[:8]


def call_data(signature: str, types: list[str], args: list[Any]) -> str:
    return sel(signature) + encode(types, args).hex()


def factor(x: float) -> int:
    return round(x * 10**4) * 10**14  # the configs' factors have 4 decimals


@dataclass
class Lab:
    rpc: RpcClient
    accounts: list[str]
    artifacts: dict[str, Any]
    comet: str = ""
    base: str = ""
    base_feed: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # symbol -> address
    feeds: dict[str, str] = field(default_factory=dict)  # symbol -> feed
    decimals: dict[str, int] = field(default_factory=dict)
    start_block: int = 0

    # transactions -----------------------------------------------------------------------------
    def deploy(self, bytecode: str, ctor: str = "") -> str:
        tx = {"from": self.accounts[0], "data": bytecode + ctor, "gas": hex(29_000_000)}
        receipt = self.receipt(self.rpc.call("eth_sendTransaction", [tx]))
        assert receipt["status"] == "0x1", f"deployment failed: {receipt}"
        return str(receipt["contractAddress"]).lower()

    def receipt(self, tx_hash: str) -> dict[str, Any]:
        while True:
            found = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
            if found is not None:
                return dict(found)
            time.sleep(0.01)

    def send(self, sender: str, to: str, data: str) -> dict[str, Any] | None:
        """One transaction in its own block; None if it would revert (nothing is mined)."""
        tx = {"from": sender, "to": to, "data": data}
        try:
            gas = int(self.rpc.call("eth_estimateGas", [tx]), 16)
        except Exception:
            return None
        receipt = self.receipt(self.rpc.call("eth_sendTransaction", [{**tx, "gas": hex(gas * 2)}]))
        assert receipt["status"] == "0x1", receipt
        return receipt

    def view(self, to: str, data: str, block: int | str = "latest") -> str:
        tag = hex(block) if isinstance(block, int) else block
        return str(self.rpc.call("eth_call", [{"to": to, "data": data}, tag]))

    # set-up -----------------------------------------------------------------------------------
    def setup(self) -> None:
        faucet, feed_art = self.artifacts["FaucetToken"], price_feed_artifact()
        amount = 10**40

        def token(symbol: str, decimals: int) -> str:
            ctor = encode(
                ["uint256", "string", "uint8", "string"], [amount, symbol, decimals, symbol]
            )
            return self.deploy(faucet["bytecode"], ctor.hex())

        def feed(symbol: str, price: int) -> str:
            ctor = encode(["string", "int256"], [f"{symbol} / USD", price]).hex()
            return self.deploy(feed_art["bytecode"], ctor)

        self.base, self.base_feed = token("USDC", 6), feed("USDC", 10**8)
        self.decimals["USDC"] = 6
        for symbol, decimals, price, *_ in ASSETS:
            self.tokens[symbol], self.feeds[symbol] = token(symbol, decimals), feed(symbol, price)
            self.decimals[symbol] = decimals
        ext = self.deploy(
            self.artifacts["CometExt"]["bytecode"],
            encode(
                ["(bytes32,bytes32)"],
                [(b"Compound USDC".ljust(32, b"\0"), b"cUSDCv3".ljust(32, b"\0"))],
            ).hex(),
        )
        per_year = {k: int(v * E18) for k, v in RATES.items()}
        config = (
            self.accounts[0], self.accounts[0], self.base, self.base_feed, ext,
            per_year["supplyKink"], per_year["supplySlopeLow"], per_year["supplySlopeHigh"],
            per_year["supplyBase"], per_year["borrowKink"], per_year["borrowSlopeLow"],
            per_year["borrowSlopeHigh"], per_year["borrowBase"],
            factor(0.5), 10**15, 0, 0, 10**6 * 10**6, 100 * 10**6, 5_000_000 * 10**6,
            [
                (self.tokens[s], self.feeds[s], d, factor(b), factor(lcf), factor(lf), 10**30)
                for s, d, _p, b, lcf, lf in ASSETS
            ],
        )  # fmt: skip
        self.comet = self.deploy(
            self.artifacts["Comet"]["bytecode"], encode([CONFIG_TYPE], [config]).hex()
        )
        self.start_block = int(self.rpc.call("eth_blockNumber"), 16)
        assert self.send(self.accounts[0], self.comet, sel("initializeStorage()"))
        for who in self.accounts:
            for address in [self.base, *self.tokens.values()]:
                assert self.send(
                    who,
                    address,
                    call_data("allocateTo(address,uint256)", ["address", "uint256"], [who, 10**30]),
                )
                assert self.send(
                    who,
                    address,
                    call_data(
                        "approve(address,uint256)", ["address", "uint256"], [self.comet, 2**256 - 1]
                    ),
                )

    # views ------------------------------------------------------------------------------------
    def snapshot(self, block: int, users: list[str]) -> dict[str, Any]:
        """The comet's own answers at the end of `block`, in one JSON-RPC batch."""
        c = self.comet
        calls: list[tuple[str, str]] = [
            (c, sel("totalsBasic()")),
            *((c, call_data("getPrice(address)", ["address"], [f])) for f in self.all_feeds()),
        ]
        assets = [self.tokens[s] for s, *_ in ASSETS]
        for u in users:
            calls += [
                (c, call_data("userBasic(address)", ["address"], [u])),
                (c, call_data("balanceOf(address)", ["address"], [u])),
                (c, call_data("borrowBalanceOf(address)", ["address"], [u])),
                (c, call_data("isLiquidatable(address)", ["address"], [u])),
                (c, call_data("isBorrowCollateralized(address)", ["address"], [u])),
                *((c, call_data("collateralBalanceOf(address,address)", ["address", "address"], [u, a])) for a in assets),  # noqa: E501
            ]  # fmt: skip
        out = iter(
            self.rpc.batch([("eth_call", [{"to": t, "data": d}, hex(block)]) for t, d in calls])
        )
        header = self.rpc.call("eth_getBlockByNumber", [hex(block), False])
        totals = list(
            decode(
                ["uint64", "uint64", "uint64", "uint64", "uint104", "uint104", "uint40", "uint8"],
                bytes.fromhex(next(out)[2:]),
            )
        )
        prices = [int(next(out), 16) for _ in self.all_feeds()]
        accounts = {}
        for u in users:
            principal, _ti, _ta, assets_in, _r = decode(
                ["int104", "uint64", "uint64", "uint16", "uint8"], bytes.fromhex(next(out)[2:])
            )
            bal, borrow, liq, coll = (int(next(out), 16) for _ in range(4))
            collateral = [int(next(out), 16) for _ in assets]
            accounts[u] = [principal, assets_in, collateral, bal, borrow, bool(liq), bool(coll)]
        return {"block": block, "timestamp": int(header["timestamp"], 16), "totals": totals, "prices": prices, "accounts": accounts}  # fmt: skip  # noqa: E501

    def all_feeds(self) -> list[str]:
        return [self.base_feed, *(self.feeds[s] for s, *_ in ASSETS)]

    def config_json(self) -> dict[str, Any]:
        """The comet's configuration as its getters give it (what defimon reads)."""
        c = self.comet
        words = {
            name: int(self.view(c, sel(f"{name}()")), 16)
            for name in (
                "baseScale", "supplyKink", "supplyPerSecondInterestRateBase",
                "supplyPerSecondInterestRateSlopeLow", "supplyPerSecondInterestRateSlopeHigh",
                "borrowKink", "borrowPerSecondInterestRateBase",
                "borrowPerSecondInterestRateSlopeLow", "borrowPerSecondInterestRateSlopeHigh",
                "storeFrontPriceFactor", "baseBorrowMin",
            )
        }  # fmt: skip
        assets = []
        for i, (symbol, *_rest) in enumerate(ASSETS):
            info = decode(
                ["uint8", "address", "address", "uint64", "uint64", "uint64", "uint64", "uint128"],
                bytes.fromhex(self.view(c, call_data("getAssetInfo(uint8)", ["uint8"], [i]))[2:]),
            )
            assets.append([symbol, *[x if isinstance(x, int) else x.lower() for x in info]])
        return {
            "comet": c,
            "base": self.base,
            "base_feed": self.base_feed,
            "words": words,
            "assets": assets,
        }


def price_feed_artifact() -> dict[str, Any]:
    raw = json.loads(
        (Path(__file__).resolve().parents[2] / "devnet/contracts/PriceFeed.json").read_text()
    )
    return {"abi": raw["abi"], "bytecode": raw["bytecode"]}


# math cases -----------------------------------------------------------------------------------
def rate_cases(lab: Lab, rng: random.Random, count: int) -> list[list[int]]:
    kink = int(RATES["supplyKink"] * E18)
    utils = [0, kink - 1, kink, kink + 1, E18, 2 * E18]
    utils += [rng.randrange(0, 2 * E18) for _ in range(count)]
    utils += [kink + rng.randrange(-(10**12), 10**12) for _ in range(count // 10)]
    calls = []
    for u in utils:
        calls.append(
            (
                "eth_call",
                [
                    {
                        "to": lab.comet,
                        "data": call_data("getSupplyRate(uint256)", ["uint256"], [u]),
                    },
                    "latest",
                ],
            )
        )
        calls.append(
            (
                "eth_call",
                [
                    {
                        "to": lab.comet,
                        "data": call_data("getBorrowRate(uint256)", ["uint256"], [u]),
                    },
                    "latest",
                ],
            )
        )
    out = lab.rpc.batch(calls)
    return [[u, int(out[2 * i], 16), int(out[2 * i + 1], 16)] for i, u in enumerate(utils)]


def quote_cases(lab: Lab, rng: random.Random, count: int) -> list[list[int]]:
    """quoteCollateral(asset, baseAmount) at the current prices: [asset index, base amount,
    asset price, base price, quote]."""
    cases = []
    feeds = lab.all_feeds()
    prices = [
        int(lab.view(lab.comet, call_data("getPrice(address)", ["address"], [f])), 16)
        for f in feeds
    ]
    calls, keys = [], []
    for _ in range(count):
        i = rng.randrange(len(ASSETS))
        amount = rng.choice([rng.randrange(1, 10**6), rng.randrange(1, 10**15)])
        keys.append((i, amount))
        calls.append(
            (
                "eth_call",
                [
                    {
                        "to": lab.comet,
                        "data": call_data(
                            "quoteCollateral(address,uint256)",
                            ["address", "uint256"],
                            [lab.tokens[ASSETS[i][0]], amount],
                        ),
                    },
                    "latest",
                ],
            )
        )
    for (i, amount), quote in zip(keys, lab.rpc.batch(calls), strict=True):
        cases.append([i, amount, prices[i + 1], prices[0], int(quote, 16)])
    return cases


# the scenario ---------------------------------------------------------------------------------
@dataclass
class Scenario:
    lab: Lab
    rng: random.Random
    users: list[str]
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    absorbs: list[dict[str, Any]] = field(default_factory=list)
    quotes: list[list[int]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def head(self) -> int:
        return int(self.lab.rpc.call("eth_blockNumber"), 16)

    def record(self, block: int, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.snapshots.append({**self.lab.snapshot(block, self.users), "action": kind})

    def step(self) -> None:
        lab, rng = self.lab, self.rng
        c, who = lab.comet, rng.choice(self.users)
        other = rng.choice([u for u in self.users if u != who])
        symbol = rng.choice([s for s, *_ in ASSETS])
        asset = lab.tokens[symbol]
        unit = 10 ** lab.decimals[symbol]
        kind = rng.choices(
            ["supply_collateral", "supply_base", "supply_to", "borrow", "repay", "withdraw_collateral",  # noqa: E501
             "transfer_base", "transfer_all", "transfer_collateral", "price", "time", "absorb", "buy"],  # noqa: E501
            [12, 8, 4, 12, 5, 4, 10, 2, 5, 12, 6, 6, 3],
        )[0]  # fmt: skip
        receipt: dict[str, Any] | None = None
        if kind == "supply_collateral":
            amount = rng.randrange(1, 50 * unit)
            receipt = lab.send(
                who,
                c,
                call_data("supply(address,uint256)", ["address", "uint256"], [asset, amount]),
            )
        elif kind in ("supply_base", "repay"):
            amount = rng.randrange(1, 20_000 * 10**6) if kind == "supply_base" else 2**256 - 1
            receipt = lab.send(
                who,
                c,
                call_data("supply(address,uint256)", ["address", "uint256"], [lab.base, amount]),
            )
        elif kind == "supply_to":
            receipt = lab.send(
                who,
                c,
                call_data(
                    "supplyTo(address,address,uint256)",
                    ["address", "address", "uint256"],
                    [other, rng.choice([lab.base, asset]), rng.randrange(1, 5_000 * 10**6)],
                ),
            )
        elif kind == "borrow":
            receipt = self.try_amounts(
                who,
                "withdraw(address,uint256)",
                ["address", "uint256"],
                lambda a: [lab.base, a],
                200_000 * 10**6,
            )
        elif kind == "withdraw_collateral":
            receipt = self.try_amounts(
                who,
                "withdraw(address,uint256)",
                ["address", "uint256"],
                lambda a: [asset, a],
                50 * unit,
            )
        elif kind == "transfer_base":
            receipt = self.try_amounts(
                who,
                "transfer(address,uint256)",
                ["address", "uint256"],
                lambda a: [other, a],
                50_000 * 10**6,
            )
        elif kind == "transfer_all":
            receipt = lab.send(
                who,
                c,
                call_data("transfer(address,uint256)", ["address", "uint256"], [other, 2**256 - 1]),
            )
        elif kind == "transfer_collateral":
            receipt = self.try_amounts(
                who,
                "transferAsset(address,address,uint256)",
                ["address", "address", "uint256"],
                lambda a: [other, asset, a],
                50 * unit,
            )
        elif kind == "price":
            feed = rng.choice(lab.all_feeds()[1:])
            now = int(lab.view(c, call_data("getPrice(address)", ["address"], [feed])), 16)
            new = max(1, now * rng.randrange(70, 118) // 100)
            receipt = lab.send(
                lab.accounts[0], feed, call_data("setAnswer(int256)", ["int256"], [new])
            )
        elif kind == "time":
            lab.rpc.call("evm_increaseTime", [rng.choice([60, 3600, 86_400, 30 * 86_400])])
            lab.rpc.call("evm_mine", [])
            self.record(self.head(), kind)
            return
        elif kind == "absorb":
            block = self.head()
            liquidatable = [
                u
                for u in self.users
                if int(lab.view(c, call_data("isLiquidatable(address)", ["address"], [u])), 16)
            ]
            if not liquidatable:
                # Nobody to absorb: crash the price of a borrower's collateral (a quiet block).
                borrowers = [
                    u for u, a in lab.snapshot(block, self.users)["accounts"].items()
                    if a[0] < 0 and a[1]
                ]  # fmt: skip
                if borrowers:
                    state = lab.snapshot(block, [rng.choice(borrowers)])["accounts"]
                    (_p, assets_in, *_rest) = next(iter(state.values()))
                    held = [i for i in range(len(ASSETS)) if assets_in & (1 << i)]
                    feed = lab.feeds[ASSETS[rng.choice(held)][0]]
                    now = int(lab.view(c, call_data("getPrice(address)", ["address"], [feed])), 16)
                    receipt = lab.send(
                        lab.accounts[0],
                        feed,
                        call_data("setAnswer(int256)", ["int256"], [max(1, now * 55 // 100)]),
                    )
                    kind = "price"
            else:
                target = rng.choice(liquidatable)
                before = lab.snapshot(block, [target])
                receipt = lab.send(
                    who,
                    c,
                    call_data(
                        "absorb(address,address[])", ["address", "address[]"], [who, [target]]
                    ),
                )
                if receipt is not None:
                    after = lab.snapshot(int(receipt["blockNumber"], 16), [target])
                    self.absorbs.append({"before": before, "after": after, "user": target})
        elif kind == "buy":
            base_amount = rng.randrange(10**6, 10_000 * 10**6)
            quote = int(
                lab.view(
                    c,
                    call_data(
                        "quoteCollateral(address,uint256)",
                        ["address", "uint256"],
                        [asset, base_amount],
                    ),
                ),
                16,
            )
            receipt = lab.send(
                who,
                c,
                call_data(
                    "buyCollateral(address,uint256,uint256,address)",
                    ["address", "uint256", "uint256", "address"],
                    [asset, 0, base_amount, who],
                ),
            )
            if receipt is not None:
                self.quotes.append(
                    [ASSETS.index(next(a for a in ASSETS if a[0] == symbol)), base_amount, quote]
                )
        if receipt is not None:
            self.record(int(receipt["blockNumber"], 16), kind)

    def try_amounts(
        self, who: str, signature: str, types: list[str], args: Any, top: int
    ) -> dict[str, Any] | None:
        """The first of a few halving random amounts the comet accepts (so borrows come
        close to the account's capacity, and price drops make absorbable accounts)."""
        amount = self.rng.randrange(top // 2, top)
        for _ in range(10):
            found = self.lab.send(who, self.lab.comet, call_data(signature, types, args(amount)))
            if found is not None:
                return found
            amount = max(1, amount // 2)
        return None


# defimon end to end ---------------------------------------------------------------------------
def compare_served(
    server: Any, chain_id: int, lab: Lab, snaps: list[dict[str, Any]]
) -> tuple[int, list[str]]:
    """Every account at every recorded block, as the API serves it, against the comet: the
    accounts open at that block or the one before (an account never opened is served as
    nothing, and asking costs a request). Returns (account-blocks compared, mismatches)."""
    mismatches, compared = [], 0
    assets = [lab.tokens[s] for s, *_ in ASSETS]
    previous: dict[str, Any] = {}
    t0 = time.monotonic()
    for snap in snaps:
        for user, state in snap["accounts"].items():
            principal, _ai, collateral, bal, borrow, liq, _coll = state
            was = previous.get(user)
            previous[user] = state
            if not (principal or any(collateral) or (was and (was[0] or any(was[2])))):
                continue
            compared += 1
            reply = server.get(f"/v1/portfolio/{user}", at=snap["block"], chain_id=chain_id)
            where = f"block {snap['block']} ({snap['action']}) {user}"
            if reply.status_code != 200:
                mismatches.append(f"{where}: HTTP {reply.status_code} {reply.text[:200]}")
                continue
            found = [a for a in reply.json()["lending"] if a.get("protocol") == "compound_v3"]
            if not found:
                if principal or any(collateral):
                    mismatches.append(f"{where}: not served")
                continue
            a = found[0]
            rows = {r["asset"]: r for r in a["reserves"]}
            served = (
                int(rows[lab.base]["supplied"]),
                int(rows[lab.base]["debt"]),
                [int(rows[x]["supplied"]) if x in rows else 0 for x in assets],
                bool(a["is_liquidatable"]),
            )
            truth = (bal, borrow, collateral, liq)
            if served != truth:
                mismatches.append(f"{where}: served {served}, comet {truth}")
        if compared and snap is snaps[len(snaps) // 4]:
            print(f"  compared {compared} in {time.monotonic() - t0:.0f} s ...", flush=True)
    return compared, mismatches


def compact(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The snapshots kept in the vectors file: accounts holding something, at blocks where
    their own state changed, and all of them where only the time or a price moved (accrual,
    liquidation flags). Accounts with nothing answer zeros; repeating them bloats the file."""
    out: list[dict[str, Any]] = []
    last: dict[str, list[Any]] = {}
    for snap in snapshots:
        every = snap["action"] in ("time", "price", "absorb", "seed")
        kept = {}
        for user, state in snap["accounts"].items():
            if (state[0] or any(state[2])) and (every or last.get(user) != state[:3]):
                kept[user] = state
            last[user] = state[:3]
        out.append({**snap, "accounts": kept})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--e2e", action="store_true")
    ap.add_argument("--watch-steps", type=int, default=0, help="with --e2e: a watch-mode run too")
    opts = ap.parse_args()
    rng = random.Random(opts.seed)
    artifacts = json.loads(Path(opts.artifacts).read_text())
    with Anvil(accounts=opts.users + 2).start() as anvil, RpcClient(anvil.rpc_url) as rpc:
        accounts = [a.lower() for a in rpc.call("eth_accounts")]
        # Blocks 12 s apart, as on Ethereum: anvil's automine otherwise gives blocks of the
        # same second the same timestamp, and Comet accrues only when time moved.
        rpc.call("anvil_setBlockTimestampInterval", [12])
        lab = Lab(rpc, accounts, artifacts)
        t0 = time.monotonic()
        lab.setup()
        print(
            f"deployed comet {lab.comet} at block {lab.start_block} in {time.monotonic() - t0:.1f} s"  # noqa: E501
        )
        scenario = Scenario(lab, rng, accounts[1 : opts.users + 1])
        rates = rate_cases(lab, rng, 1000)
        quotes = quote_cases(lab, rng, 300)
        server_ctx = None
        live_from = None
        half = opts.steps // 2
        for i in range(opts.steps):
            if opts.e2e and i == half:
                server_ctx, server, chain_id = start_defimon(lab, anvil)
                live_from = scenario.head()
                server.wait_processed(chain_id, live_from, timeout=180)
                print(f"defimon backfilled to {live_from}; the rest of the scenario runs live")
            scenario.step()
            if i % 50 == 0:
                quotes += quote_cases(lab, rng, 100)
        print(f"scenario: {len(scenario.snapshots)} blocks, actions {scenario.counts}")
        vectors = {
            "source": "compound-finance/comet d5a30b0aaeff7755f1431e87f818990902237b03, solc 0.8.15 viaIR runs 1",  # noqa: E501
            "config": lab.config_json(),
            "feeds": lab.all_feeds(),
            "rates": rates,
            "quotes": quotes[:600],
            "buys": scenario.quotes,
            "absorbs": scenario.absorbs,
            "snapshots": compact(scenario.snapshots),
        }
        Path(opts.out).write_text(json.dumps(vectors, separators=(",", ":")))
        print(
            f"wrote {opts.out}: {len(rates)} rate cases, {len(quotes)} quotes, {len(scenario.absorbs)} absorbs, {sum(len(s['accounts']) for s in scenario.snapshots)} account states"  # noqa: E501
        )
        if server_ctx is not None:
            head = scenario.head()
            server.wait_processed(chain_id, head, timeout=180)
            checked, bad = compare_served(server, chain_id, lab, scenario.snapshots)
            server_ctx.__exit__(None, None, None)
            print(f"e2e: {checked} account-blocks compared ({live_from=}), {len(bad)} mismatches")
            for line in bad[:40]:
                print("  ", line)
            if opts.watch_steps:
                bad += watch_phase(lab, anvil, scenario, opts.watch_steps)
            if bad:
                sys.exit(1)


def watch_phase(lab: Lab, anvil: Anvil, scenario: Scenario, steps: int) -> list[str]:
    """defimon in watch mode for two wallets with open comet accounts, from the head: seeded
    there (userBasic, userCollateral, totals, configuration, prices), then followed live while
    the scenario goes on; the watched wallets compared at every block from the seed on."""
    last = scenario.snapshots[-1]["accounts"]
    borrowers = [u for u, a in last.items() if a[0] < 0]
    suppliers = [u for u, a in last.items() if a[0] > 0]
    wallets = borrowers[:1] + suppliers[:1]
    ctx, server, chain_id = start_defimon(lab, anvil, watch=tuple(wallets))
    seed_block = scenario.head()
    server.wait_processed(chain_id, seed_block, timeout=180)
    first = len(scenario.snapshots)
    scenario.snapshots.append({**lab.snapshot(seed_block, scenario.users), "action": "seed"})
    for _ in range(steps):
        scenario.step()
    server.wait_processed(chain_id, scenario.head(), timeout=180)
    snaps = [
        {**snap, "accounts": {u: a for u, a in snap["accounts"].items() if u in wallets}}
        for snap in scenario.snapshots[first:]
    ]
    checked, bad = compare_served(server, chain_id, lab, snaps)
    ctx.__exit__(None, None, None)
    print(
        f"watch mode ({wallets}, seeded at {seed_block}): {checked} account-blocks, {len(bad)} bad"
    )
    for line in bad[:20]:
        print("  ", line)
    return bad


def start_defimon(
    lab: Lab, anvil: Anvil, watch: tuple[str, ...] | None = None
) -> tuple[Any, Any, int]:
    from flows.endpoint import ChainEndpoint
    from schemas.chain_config import ChainConfig, CompoundV3Config
    from tests.support import live_server

    # A Compound-only chain config: no Uniswap, no Aave (any subset of the protocols runs).
    config = ChainConfig(
        chain_id=anvil.chain_id,
        name="comet-lab",
        start_block=lab.start_block,
        usd_tokens=(lab.base,),
        feeds=((lab.base, lab.base_feed), *((lab.tokens[s], lab.feeds[s]) for s, *_ in ASSETS)),
        compound_v3=CompoundV3Config((lab.comet,)),
    )
    endpoint = ChainEndpoint(config, anvil.rpc_url, anvil.ws_url, watch=watch)
    ctx = live_server(Path(tempfile.mkdtemp(prefix="comet-lab-")), [endpoint])
    server = ctx.__enter__()
    return ctx, server, anvil.chain_id


if __name__ == "__main__":
    main()
