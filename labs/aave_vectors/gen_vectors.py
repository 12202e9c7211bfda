"""Make the Aave math vectors in tests/vectors/ from the contracts' own code, on anvil.

For Aave v3.0.2 (npm @aave/core-v3 1.19.3, in devnet/node_modules) and the newest release of
aave-dao/aave-v3-origin (BUSL, GitHub only: never committed), this compiles our harnesses
(Harness302.sol, Harness37.sol beside this file) against the real library sources, deploys
them on an anvil from devnet/node_modules, and asks them:
- `MathHarness.batch`: WadRayMath, PercentageMath, MathUtils, TokenMath and ReserveLogic's
  normalized income/debt on random and edge operands (a revert is recorded as null);
- `AccountHarness.run`: GenericLogic.calculateUserAccountData over random reserves (prices,
  decimals, indexes, rates, ages, scaled balances, LT/LTV incl. 0, collateral and borrowing
  bits, gaps in the reserve list), eMode categories (3.0.2: asset category field and price
  source; 3.7: collateral/borrowable/LTV-zero bitmaps, isolated categories, reserves with LT 0
  that are collateral only inside an eMode) and calculateAvailableBorrows;
- `TokenHarness.run`: ScaledBalanceTokenBase's own _mintScaled/_burnScaled; each case keeps
  the Mint/Burn event's (value, balanceIncrease, index) and the scaled balance before and
  after, read from the token's storage.

Needs, outside the repo (a "lab" directory, default /work/labs/aave-math):
- <lab>/v37/src: `src/` of aave-dao/aave-v3-origin at the commit named by --commit
  (`git -C <fetched repo> archive <commit> src | tar -x -C <lab>/v37`);
- <lab>/v302/contracts: a copy of devnet/node_modules/@aave/core-v3/contracts;
- <lab>/package.json with npm `solc@0.8.27`, `solc10@npm:solc@0.8.10` (v3.0.2 was compiled
  with 0.8.10) and `@openzeppelin/contracts@5.1.0` installed, and `node` on PATH.
compile.js (beside this file) is copied into the lab and run there.

Run from the repo root (about a minute):
    PYTHONPATH=. .venv/bin/python labs/aave_vectors/gen_vectors.py --lab /work/labs/aave-math
It writes tests/vectors/aave_v3_0_2_{math,accounts,tokens}.json and aave_v3_7_*.json, and
smaller sets for the releases in between that chains still run (3.3, 3.5, 3.6: their `src/`
extracted the same way to <lab>/v33, v35, v36 from the tags v3.3.0, v3.5.0, v3.6.0; 3.3 is
compiled with `solc22@npm:solc@0.8.22`, the compiler it pins).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak

from devnet.anvil import Anvil
from devnet.rpc import RpcClient
from devnet.txs import wait_receipts
from protocols.aave_v3.math import RESERVE_CONFIGURATION_LAYOUT

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MAX = (1 << 256) - 1
WAD, RAY, HALF_WAD, HALF_RAY = 10**18, 10**27, 10**18 // 2, 10**27 // 2
YEAR = 365 * 24 * 3600

# Operation numbers of MathHarness.f; names are what the vector files and tests use.
OPS_302 = {
    "wadMul": 0, "wadDiv": 1, "rayMul": 2, "rayDiv": 3, "rayToWad": 4, "wadToRay": 5,
    "percentMul": 6, "percentDiv": 7, "compoundedInterest": 17, "linearInterest": 18,
    "normalizedIncome": 26, "normalizedDebt": 27,
}  # fmt: skip
OPS_37 = {
    **OPS_302,
    "rayMulFloor": 8, "rayMulCeil": 9, "rayDivFloor": 10, "rayDivCeil": 11,
    "percentMulFloor": 12, "percentMulCeil": 13, "percentDivFloor": 14, "percentDivCeil": 15,
    "mulDivCeil": 16, "aTokenMintScaled": 19, "aTokenBurnScaled": 20,
    "aTokenTransferScaled": 21, "aTokenBalance": 22, "vTokenMintScaled": 23,
    "vTokenBurnScaled": 24, "vTokenBalance": 25,
}  # fmt: skip

# The harness structs (AccountHarness.Reserve, .Category, TokenHarness.Op).
RESERVE_T = "(uint256,uint128,uint128,uint128,uint128,uint40,uint256,uint256,uint256,uint256,bool)"
CATEGORY_T = "(uint8,uint16,uint16,uint16,uint128,uint128,uint128,bool,address,uint256)"
OP_T = "(uint120,uint128,uint256,uint256,bool,bool)"
MINT = "0x" + keccak(text="Mint(address,address,uint256,uint256,uint256)").hex()
BURN = "0x" + keccak(text="Burn(address,address,uint256,uint256,uint256)").hex()
CASE = "0x" + keccak(text="TokenCase(uint256,uint256,uint256)").hex()


# ---------------------------------------------------------------------------------------------
# Compile and deploy
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One Aave release to make vectors for."""

    stem: str  # tests/vectors/<stem>_{math,accounts,tokens}.json
    version: tuple[int, int, int]
    root: str  # lab subdirectory holding the release's sources
    harness: str  # our harness file beside this script
    solc: str  # npm module name of the compiler the release pins
    evm: str
    source: str  # what was compiled, for the vector files
    math_per_op: int
    accounts: int
    tokens: int  # 0: no token harness (before 3.5 the token base is v3.0.2's, vectored there)

    @property
    def label(self) -> str:
        return ".".join(map(str, self.version))


NEWEST_COMMIT = "fd1fbd9150426ca8ace9cee45b4acf912ae84f5b"
ORIGIN = "aave-dao/aave-v3-origin"
TARGETS = (
    Target("aave_v3_0_2", (3, 0, 2), "v302", "Harness302.sol", "solc10", "london",
           "npm @aave/core-v3 1.19.3, solc 0.8.10 (optimizer 200, london)", 260, 520, 1000),
    Target("aave_v3_3", (3, 3, 0), "v33", "Harness37.sol", "solc22", "shanghai",
           f"{ORIGIN}@v3.3.0 (5431379f), solc 0.8.22 (optimizer 200, shanghai)", 40, 250, 0),
    Target("aave_v3_5", (3, 5, 0), "v35", "Harness37.sol", "solc", "shanghai",
           f"{ORIGIN}@v3.5.0 (6138e1fd), solc 0.8.27 (optimizer 200, shanghai)", 12, 250, 300),
    Target("aave_v3_6", (3, 6, 0), "v36", "Harness37.sol", "solc", "shanghai",
           f"{ORIGIN}@v3.6.0 (5a230ec8), solc 0.8.27 (optimizer 200, shanghai)", 12, 250, 300),
    Target("aave_v3_7", (3, 7, 0), "v37", "Harness37.sol", "solc", "shanghai",
           f"{ORIGIN}@{NEWEST_COMMIT}, solc 0.8.27 (optimizer 200, shanghai)", 110, 520, 1000),
)  # fmt: skip


def _release(text: str) -> tuple[int, int, int]:
    major, minor = text.split(".")
    return int(major), int(minor), 0


def preprocess(source: str, version: tuple[int, int, int]) -> str:
    """The harness for `version`: drop `// @since X` lines and `// @since X {` ... `// } @since
    X` blocks when version < X; uncomment `//@<X ` lines when version < X."""
    out: list[str] = []
    skipping: str | None = None
    for line in source.split("\n"):
        stripped = line.strip()
        if skipping is not None:
            if stripped == f"// }} @since {skipping}":
                skipping = None
            continue
        block = re.fullmatch(r"// @since (\d+\.\d+) \{", stripped)
        if block and version < _release(block.group(1)):
            skipping = block.group(1)
            continue
        since = re.search(r"// @since (\d+\.\d+)$", stripped)
        if since and version < _release(since.group(1)):
            continue
        until = re.match(r"(\s*)//@<(\d+\.\d+) (.*)$", line)
        if until and version < _release(until.group(2)):
            out.append(until.group(1) + until.group(3))
        else:
            out.append(line)
    return "\n".join(out)


def compile_harness(lab: Path, target: Target) -> dict[str, dict[str, Any]]:
    root = lab / target.root
    shutil.copy(HERE / "compile.js", lab / "compile.js")
    (root / "harness").mkdir(exist_ok=True)
    source = preprocess((HERE / target.harness).read_text(), target.version)
    (root / "harness" / target.harness).write_text(source)
    out = lab / f"build-{target.stem}"
    subprocess.run(
        ["node", str(lab / "compile.js"), str(out), ".", f"harness/{target.harness}"],
        cwd=root,
        check=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "SOLC": target.solc, "EVM": target.evm},
    )
    names = ["MathHarness", "AccountHarness"] + (
        ["TokenHarness", "PoolStub"] if target.tokens else []
    )
    return {name: json.loads((out / f"{name}.json").read_text()) for name in names}


class Chain:
    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc
        self.sender = rpc.call("eth_accounts")[0]

    def send(self, data: str, to: str | None = None) -> dict[str, Any]:
        tx = {"from": self.sender, "data": data, "gas": hex(29_000_000)}
        if to is not None:
            tx["to"] = to
        receipt = wait_receipts(self.rpc, [self.rpc.call("eth_sendTransaction", [tx])])[0]
        if int(receipt["status"], 16) != 1:
            raise RuntimeError(f"transaction reverted: {receipt}")
        return receipt

    def deploy(self, artifact: dict[str, Any], args: bytes = b"") -> str:
        address: str = self.send(artifact["bytecode"] + args.hex())["contractAddress"]
        return address

    def call(self, to: str, signature: str, types: list[str], values: list[Any]) -> bytes:
        data = function_signature_to_4byte_selector(signature) + encode(types, values)
        tx = {"to": to, "data": "0x" + data.hex(), "gas": hex(29_000_000)}
        return bytes.fromhex(self.rpc.call("eth_call", [tx, "latest"])[2:])


# ---------------------------------------------------------------------------------------------
# Operands
# ---------------------------------------------------------------------------------------------


def rand_bits(rng: random.Random) -> int:
    return rng.getrandbits(rng.randint(0, 256))


EDGES = [0, 1, 2, 3, HALF_WAD, WAD, HALF_RAY, RAY, 10**4, 5_000, MAX, MAX - 1, MAX // 2, 1 << 128]


def operand(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(EDGES)
    if roll < 0.55:
        return rand_bits(rng)
    return rng.randint(0, 10 ** rng.randint(1, 40))


def mul_boundary(rng: random.Random, half: int) -> tuple[int, int]:
    # a right at the overflow guard of a*b + half (or of a*b when half is 0)
    b = rng.randint(1, 10 ** rng.randint(1, 40))
    return min(MAX, max(0, (MAX - half) // b + rng.randint(-1, 1))), b


def div_boundary(rng: random.Random, factor: int, half_of_b: bool) -> tuple[int, int]:
    b = rng.randint(1, 10 ** rng.randint(1, 40))
    limit = (MAX - (b // 2 if half_of_b else 0)) // factor
    return min(MAX, max(0, limit + rng.randint(-1, 1))), b


def math_operands(rng: random.Random, name: str) -> tuple[int, int, int]:
    roll = rng.random()
    half = {"wadMul": HALF_WAD, "rayMul": HALF_RAY, "percentMul": 5_000}.get(name)
    if name in ("wadMul", "rayMul", "percentMul") and roll < 0.2:
        a, b = mul_boundary(rng, half or 0)
        return a, b, 0
    floor_ceil_muls = ("rayMulFloor", "rayMulCeil", "percentMulFloor", "percentMulCeil")
    if name in (*floor_ceil_muls, "mulDivCeil") and roll < 0.2:
        a, b = mul_boundary(rng, 0)
        return a, b, rng.randint(1, 10**30)
    if name in ("wadDiv", "rayDiv", "percentDiv") and roll < 0.2:
        factor = {"wadDiv": WAD, "rayDiv": RAY, "percentDiv": 10**4}[name]
        a, b = div_boundary(rng, factor, True)
        return a, b, 0
    if name in ("rayDivFloor", "rayDivCeil", "percentDivFloor", "percentDivCeil") and roll < 0.2:
        factor = RAY if name.startswith("ray") else 10**4
        a, b = div_boundary(rng, factor, False)
        return a, b, 0
    if name == "compoundedInterest":
        rate = rng.choice(
            [rng.randint(0, 3 * RAY), rng.randint(0, RAY // 5), operand(rng), rng.choice(EDGES)]
        )
        last = rng.randint(0, (1 << 40) - 1)
        dt = rng.choice([0, 1, 2, 3, 12, 3600, 86400, YEAR, 10 * YEAR, rng.randint(0, 1 << 33)])
        now = last + dt if rng.random() < 0.95 else max(0, last - rng.randint(1, 1000))
        return rate, last, now
    if name == "linearInterest":
        rate = rng.choice([rng.randint(0, 3 * RAY), operand(rng)])
        return rate, rng.choice([0, 1, 12, 86400, YEAR, rng.randint(0, 10**9)]), 0
    if name in ("normalizedIncome", "normalizedDebt"):
        index = rng.choice([RAY, rng.randint(RAY, 3 * RAY), rng.getrandbits(rng.randint(1, 128))])
        rate = rng.choice([0, rng.randint(0, RAY), rng.getrandbits(rng.randint(1, 128))])
        age = rng.choice([0, 1, 12, 86400, YEAR, rng.randint(0, 10**9)])
        return index, rate, age
    if name.startswith(("aToken", "vToken")) and roll < 0.6:
        amount = rng.randint(0, 10 ** rng.randint(0, 36))
        index = rng.randint(RAY, 3 * RAY)
        return amount, index, 0
    return operand(rng), operand(rng), operand(rng)


def math_cases(
    chain: Chain, harness: str, ops: dict[str, int], per_op: int, seed: int
) -> list[list[Any]]:
    rng = random.Random(seed)
    cases = [(name, *math_operands(rng, name)) for name in ops for _ in range(per_op)]
    out: list[list[Any]] = []
    for start in range(0, len(cases), 200):
        chunk = cases[start : start + 200]
        reply = chain.call(
            harness,
            "batch(uint8[],uint256[],uint256[],uint256[])",
            ["uint8[]", "uint256[]", "uint256[]", "uint256[]"],
            [[ops[c[0]] for c in chunk], [c[1] for c in chunk], [c[2] for c in chunk],
             [c[3] for c in chunk]],
        )  # fmt: skip
        oks, results = decode(["bool[]", "uint256[]"], reply)
        for (name, a, b, c), ok, result in zip(chunk, oks, results, strict=True):
            out.append([name, a, b, c, result if ok else None])
    return out


# ---------------------------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------------------------


def configuration(**fields: int) -> int:
    data = 0
    for name, value in fields.items():
        start, width = RESERVE_CONFIGURATION_LAYOUT[name]
        assert 0 <= value < 1 << width, (name, value)
        data |= value << start
    return data


# Compact rows in the vector files (the harness takes the fuller structs built from them).
RESERVE_FIELDS = (
    "ltv,liquidationThreshold,decimals,eModeCategory,liquidityIndex,liquidityRate,"
    "variableBorrowIndex,variableBorrowRate,age,scaledSupply,scaledVariableDebt,stableDebt,"
    "price,listed"
)
CATEGORY_FIELDS = (
    "id,ltv,liquidationThreshold,collateralBitmap,borrowableBitmap,ltvzeroBitmap,isolated,"
    "hasPriceSource,priceSourcePrice"
)


def random_account(rng: random.Random, bitmaps: bool) -> dict[str, Any]:
    n = rng.choice([1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 8, 12])
    reserves = []
    user_config = 0
    for i in range(n):
        decimals = rng.choice([6, 8, 18, 18, 2, 0, rng.randint(0, 30)])
        unit = 10**decimals
        lt = rng.choice([0, 0, rng.randint(1, 9_500), 8_000, 8_500, 9_300])
        ltv = rng.choice([0, rng.randint(0, lt), lt * 9 // 10]) if lt else rng.choice([0, 0, 50])
        reserves.append(
            [
                ltv,
                lt,
                decimals,
                rng.choice([0, 0, 1, 2, 3]),
                rng.choice([RAY, rng.randint(RAY, 3 * RAY)]),
                rng.choice([0, rng.randint(0, RAY // 5)]),
                rng.choice([RAY, rng.randint(RAY, 3 * RAY)]),
                rng.choice([0, rng.randint(0, RAY // 2), rng.randint(0, 3 * RAY)]),
                rng.choice([0, 0, 1, 12, 3600, 86400, YEAR, rng.randint(0, 3 * YEAR)]),
                rng.choice([0, rng.randint(0, unit * 10 ** rng.randint(0, 9))]),
                rng.choice([0, rng.randint(0, unit * 10 ** rng.randint(0, 8))]),
                0 if bitmaps or rng.random() < 0.7 else rng.randint(0, unit * 10**6),
                rng.choice([0, rng.randint(1, 10**6), rng.randint(10**6, 10**13), 10**8]),
                int(rng.random() > 0.03),
            ]
        )
        if rng.random() < 0.65:
            user_config |= 1 << (2 * i + 1)
        if rng.random() < 0.45:
            user_config |= 1 << (2 * i)
    categories = []
    for cat in (1, 2, 3):
        ltv = rng.randint(0, 9_700)
        lt = rng.randint(ltv, 9_800) if rng.random() < 0.9 else rng.randint(0, 9_800)
        collateral = ltvzero = borrowable = isolated = has_source = source_price = 0
        if bitmaps:
            collateral = sum(1 << i for i in range(n) if rng.random() < 0.5)
            borrowable = sum(1 << i for i in range(n) if rng.random() < 0.5)
            ltvzero = sum(1 << i for i in range(n) if (collateral >> i) & 1 and rng.random() < 0.2)
            isolated = int(rng.random() < 0.3)
        elif rng.random() < 0.3:
            has_source = 1
            source_price = rng.choice([0, rng.randint(1, 10**12)])
        row = [cat, ltv, lt, collateral, borrowable, ltvzero, isolated, has_source, source_price]
        categories.append(row)
    user_emode = rng.choice([0, 0, 1, 2, 3])
    if bitmaps and rng.random() < 0.25:
        # Collateral only inside an eMode (3.6+; before, it must count for nothing): reserve
        # LT and LTV 0, in the user's category's collateral bitmap, collateral flag on.
        user_emode = rng.choice([1, 2, 3])
        i = rng.randrange(n)
        reserves[i][0] = reserves[i][1] = 0
        reserves[i][13] = 1
        categories[user_emode - 1][3] |= 1 << i
        user_config |= 1 << (2 * i + 1)
        if reserves[i][9] == 0:
            reserves[i][9] = rng.randint(1, 10**24)
    return {
        "reserves": reserves,
        "categories": categories,
        "userConfig": user_config,
        "userEMode": user_emode,
    }


def harness_reserve(row: list[int]) -> tuple[Any, ...]:
    ltv, lt, decimals, category, *rest = row
    config = configuration(
        ltv=ltv,
        liquidation_threshold=lt,
        liquidation_bonus=10_500,
        decimals=decimals,
        active=1,
        emode_category=category,
    )
    return (config, *rest[:-1], bool(rest[-1]))


def harness_category(row: list[int]) -> tuple[Any, ...]:
    cat, ltv, lt, collateral, borrowable, ltvzero, isolated, has_source, source_price = row
    source = "0x" + f"{0xE000 + cat:040x}" if has_source else "0x" + "0" * 40
    return (
        cat,
        ltv,
        lt,
        10_100,
        collateral,
        borrowable,
        ltvzero,
        bool(isolated),
        source,
        source_price,
    )


def account_cases(
    chain: Chain, harness: str, count: int, seed: int, bitmaps: bool
) -> list[list[Any]]:
    rng = random.Random(seed)
    out: list[list[Any]] = []
    while len(out) < count:
        account = random_account(rng, bitmaps)
        reserve_rows = [harness_reserve(r) for r in account["reserves"]]
        category_rows = [harness_category(c) for c in account["categories"]]
        try:
            reply = chain.call(
                harness,
                f"run({RESERVE_T}[],{CATEGORY_T}[],uint256,uint8)",
                [f"{RESERVE_T}[]", f"{CATEGORY_T}[]", "uint256", "uint8"],
                [reserve_rows, category_rows, account["userConfig"], account["userEMode"]],
            )
        except Exception as exc:  # a revert (overflow in the contract): not a vector
            print("account skipped:", str(exc)[:120])
            continue
        values = decode(["uint256[6]", "uint256"], reply)[0]
        available = decode(
            ["uint256"],
            chain.call(
                harness,
                "availableBorrows(uint256,uint256,uint256)",
                ["uint256", "uint256", "uint256"],
                [values[0], values[1], values[2]],
            ),
        )[0]
        out.append(
            [
                account["reserves"],
                account["categories"],
                account["userConfig"],
                account["userEMode"],
                [*values, available],
            ]
        )
    return out


# ---------------------------------------------------------------------------------------------
# Mint / Burn events
# ---------------------------------------------------------------------------------------------


def token_ops(rng: random.Random, count: int, directional: bool) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    while len(ops) < count:
        previous_index = rng.choice([RAY, rng.randint(RAY, 2 * RAY)])
        index = previous_index + rng.choice([0, 1, rng.randint(0, RAY // 10), rng.randint(0, RAY)])
        scaled_before = rng.choice([0, 1, rng.randint(0, 10**6), rng.randint(0, 10**30)])
        burn = rng.random() < 0.5 and scaled_before > 0
        debt = rng.random() < 0.5
        if burn:
            scaled = rng.choice([1, scaled_before, rng.randint(1, scaled_before)])
            amount = max(1, scaled * index // RAY + rng.randint(-2, 0))
            # Keep the burn within the balance under this version's rounding.
            need = (
                (-(-amount * RAY // index) if not debt else amount * RAY // index)
                if directional
                else (amount * RAY + index // 2) // index
            )
            if not 1 <= need <= scaled_before:
                continue
        else:
            amount = rng.choice([1, rng.randint(1, 10**6), rng.randint(1, 10**30)])
            need = (
                (amount * RAY // index if not debt else -(-amount * RAY // index))
                if directional
                else (amount * RAY + index // 2) // index
            )
            if need < 1:
                continue
        ops.append((scaled_before, previous_index, index, amount, burn, debt))
    return ops


def token_cases(
    chain: Chain, token: str, count: int, seed: int, directional: bool
) -> list[list[Any]]:
    rng = random.Random(seed)
    ops = token_ops(rng, count, directional)
    out = []
    for start in range(0, len(ops), 100):
        chunk = ops[start : start + 100]
        data = function_signature_to_4byte_selector(f"run({OP_T}[])") + encode(
            [f"{OP_T}[]"], [chunk]
        )
        receipt = chain.send("0x" + data.hex(), token)
        event: tuple[bool, int, int, int] | None = None
        for log in receipt["logs"]:
            topic = log["topics"][0]
            if topic in (MINT, BURN):
                value, increase, index = decode(
                    ["uint256", "uint256", "uint256"], bytes.fromhex(log["data"][2:])
                )
                event = (topic == BURN, value, increase, index)
            elif topic == CASE:
                n = int(log["topics"][1], 16)  # numbered from 0 in each run()
                before, after = decode(["uint256", "uint256"], bytes.fromhex(log["data"][2:]))
                assert event is not None
                debt = chunk[n][5]
                burn, value, increase, index = event
                out.append([int(debt), int(burn), value, increase, index, before, after - before])
                event = None
    return out


# ---------------------------------------------------------------------------------------------


def generate(lab: Path, target: Target, seed: int, rpc: RpcClient) -> dict[str, Any]:
    bitmaps = target.version >= (3, 2, 0)
    directional = target.version >= (3, 5, 0)
    artifacts = compile_harness(lab, target)
    chain = Chain(rpc)
    math_harness = chain.deploy(artifacts["MathHarness"])
    account_harness = chain.deploy(artifacts["AccountHarness"])
    ops = OPS_37 if directional else OPS_302
    if target.version < (3, 7, 0):
        ops = {name: op for name, op in ops.items() if name != "percentDivFloor"}  # 3.7+
    started = time.monotonic()
    math = math_cases(chain, math_harness, ops, target.math_per_op, seed)
    accounts = account_cases(chain, account_harness, target.accounts, seed + 1, bitmaps)
    tokens: list[list[Any]] = []
    if target.tokens:
        pool = chain.deploy(artifacts["PoolStub"])
        token = chain.deploy(artifacts["TokenHarness"], encode(["address"], [pool]))
        tokens = token_cases(chain, token, target.tokens, seed + 2, directional)
    print(
        f"v{target.label}: {len(math)} math, {len(accounts)} accounts, {len(tokens)} token "
        f"events in {time.monotonic() - started:.1f} s"
    )
    header = {
        "version": target.label,
        "source": target.source,
        "generator": "labs/aave_vectors/gen_vectors.py",
    }
    files = {
        "math": {**header, "fields": "op,a,b,c,result (null: reverts)", "cases": math},
        "accounts": {
            **header,
            "fields": "reserves,categories,userConfig,userEMode,expected",
            "reserve_fields": RESERVE_FIELDS,
            "category_fields": CATEGORY_FIELDS,
            "expected_fields": (
                "totalCollateral,totalDebt,avgLtv,avgLT,healthFactor,zeroLtv,availableBorrows"
            ),
            "cases": accounts,
        },
    }
    if tokens:
        files["tokens"] = {
            **header,
            "fields": "debt,burnEvent,value,balanceIncrease,index,scaledBefore,scaledDelta",
            "cases": tokens,
        }
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", type=Path, default=Path("/work/labs/aave-math"))
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "vectors")
    parser.add_argument("--only", help="one file stem, e.g. aave_v3_5")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with Anvil(extra_args=["--gas-limit", "30000000"]) as node, RpcClient(node.rpc_url) as rpc:
        for target in TARGETS:
            if args.only and target.stem != args.only:
                continue
            for kind, vectors in generate(args.lab, target, args.seed, rpc).items():
                path = args.out / f"{target.stem}_{kind}.json"
                path.write_text(json.dumps(vectors, separators=(",", ":")) + "\n")
                print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
