"""Morpho Blue 1.0.0 on the devnet: the real contract compiled from npm's sources, one market.

npm `@morpho-org/morpho-blue` 1.0.0 ships Solidity only, no artifacts: Morpho.sol pins
`pragma solidity 0.8.19`, so it is compiled with npm `solc-0.8.19` (solc-js) through node, with
the settings of Morpho's own foundry.toml (via-IR, optimizer 999,999 runs, paris, no metadata
hash: the profile its mainnet bytecode was built with). The artifact is cached under
`node_modules/.cache/defimon/` (about 7 s to build once); nothing of Morpho is committed.

The market lends a MintableERC20 (the devnet's Aave mock tokens, 6 decimals by default, or any
token passed in) against another, with Morpho's own IrmMock (utilization% APR) and OracleMock.
Actions are `Tx` builders for `devnet.txs.mine_block`, so a test puts several in one block.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import orjson
from eth_abi import encode

from devnet.anvil import NODE_MODULES
from devnet.contracts import (
    ERC20_APPROVE,
    ERC20_MINT,
    MAX_UINT256,
    SOLC_CACHE,
    Artifact,
    Function,
    load_artifact,
)
from devnet.rpc import RpcClient
from devnet.txs import Tx, mine_block
from protocols.morpho_blue.events import MarketParams
from protocols.morpho_blue.state import market_id

log = logging.getLogger("defimon.devnet")

MORPHO_SOURCES = NODE_MODULES / "@morpho-org" / "morpho-blue" / "src"
SOLC_PACKAGE = "solc-0.8.19"
# Morpho's foundry.toml [profile.default]
MORPHO_SOLC_SETTINGS: dict[str, Any] = {
    "viaIR": True,
    "optimizer": {"enabled": True, "runs": 999_999},
    "evmVersion": "paris",
    "metadata": {"bytecodeHash": "none"},
}
# contract name -> its source unit
CONTRACTS = {
    "Morpho": "src/Morpho.sol",
    "IrmMock": "src/mocks/IrmMock.sol",
    "OracleMock": "src/mocks/OracleMock.sol",
    "FlashBorrowerMock": "src/mocks/FlashBorrowerMock.sol",
    # for its ABI: before solc 0.8.20 a contract's ABI leaves out the events of its libraries
    "EventsLib": "src/libraries/EventsLib.sol",
}
_SOLC_SCRIPT = f"""
const solc = require('{SOLC_PACKAGE}');
let input = '';
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {{
  const output = JSON.parse(solc.compile(input));
  output.solcVersion = solc.version();
  process.stdout.write(JSON.stringify(output));
}});
"""

LLTV = 86 * 10**16  # 86%, one of the LLTVs enabled on mainnet
LOAN_DECIMALS = 6
COLLATERAL_DECIMALS = 18
ORACLE_PRICE_SCALE = 10**36

_MP = "(address,address,address,address,uint256)"
MORPHO_ENABLE_IRM = Function("enableIrm(address)")
MORPHO_ENABLE_LLTV = Function("enableLltv(uint256)")
MORPHO_CREATE_MARKET = Function(f"createMarket({_MP})")
MORPHO_SET_FEE = Function(f"setFee({_MP},uint256)")
MORPHO_SET_FEE_RECIPIENT = Function("setFeeRecipient(address)")
MORPHO_SUPPLY = Function(f"supply({_MP},uint256,uint256,address,bytes)", ("uint256", "uint256"))
MORPHO_WITHDRAW = Function(
    f"withdraw({_MP},uint256,uint256,address,address)", ("uint256", "uint256")
)
MORPHO_BORROW = Function(f"borrow({_MP},uint256,uint256,address,address)", ("uint256", "uint256"))
MORPHO_REPAY = Function(f"repay({_MP},uint256,uint256,address,bytes)", ("uint256", "uint256"))
MORPHO_SUPPLY_COLLATERAL = Function(f"supplyCollateral({_MP},uint256,address,bytes)")
MORPHO_WITHDRAW_COLLATERAL = Function(f"withdrawCollateral({_MP},uint256,address,address)")
MORPHO_LIQUIDATE = Function(
    f"liquidate({_MP},address,uint256,uint256,bytes)", ("uint256", "uint256")
)
MORPHO_SET_AUTHORIZATION = Function("setAuthorization(address,bool)")
MORPHO_ACCRUE_INTEREST = Function(f"accrueInterest({_MP})")
# Market: totalSupplyAssets, totalSupplyShares, totalBorrowAssets, totalBorrowShares,
# lastUpdate, fee
MORPHO_MARKET = Function("market(bytes32)", ("uint128",) * 6)
# Position: supplyShares, borrowShares, collateral
MORPHO_POSITION = Function("position(bytes32,address)", ("uint256", "uint128", "uint128"))
MORPHO_FEE_RECIPIENT = Function("feeRecipient()", ("address",))
ORACLE_SET_PRICE = Function("setPrice(uint256)")
ORACLE_PRICE = Function("price()", ("uint256",))
FLASH_BORROWER_FLASH_LOAN = Function("flashLoan(address,uint256,bytes)")
IRM_BORROW_RATE_VIEW = Function(
    f"borrowRateView({_MP},(uint128,uint128,uint128,uint128,uint128,uint128))", ("uint256",)
)

_GAS_DEPLOY_MORPHO = 8_000_000
_GAS_DEPLOY_SMALL = 1_000_000
_GAS_DEPLOY_TOKEN = 2_000_000
_GAS_CALL = 600_000


def _sources() -> dict[str, str]:
    """Every Solidity file under the package's src/ (source unit names `src/...`)."""
    if not MORPHO_SOURCES.is_dir():
        raise FileNotFoundError(
            f"{MORPHO_SOURCES} is missing; install it with `npm ci --prefix devnet`"
        )
    return {
        "src/" + path.relative_to(MORPHO_SOURCES).as_posix(): path.read_text()
        for path in sorted(MORPHO_SOURCES.rglob("*.sol"))
    }


def _digest(sources: dict[str, str]) -> str:
    request = orjson.dumps(
        {
            "sources": sources,
            "settings": MORPHO_SOLC_SETTINGS,
            "solc": SOLC_PACKAGE,
            "contracts": CONTRACTS,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(request).hexdigest()


@functools.cache
def morpho_artifacts() -> dict[str, Artifact]:
    """Morpho, IrmMock and OracleMock, compiled once and cached by the sources' digest."""
    sources = _sources()
    cached = SOLC_CACHE / f"morpho-blue-{_digest(sources)[:16]}.json"
    if cached.is_file():
        raw = orjson.loads(cached.read_bytes())
    else:
        raw = _compile(sources)
        cached.parent.mkdir(parents=True, exist_ok=True)
        # every deploy() reads it now: processes that start together (tests, a demo) must
        # never see a half-written file, so it appears whole, by a rename
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        partial.write_bytes(orjson.dumps(raw))
        os.replace(partial, cached)
    return {name: Artifact(name, raw[name]["abi"], raw[name]["bytecode"]) for name in CONTRACTS}


def _compile(sources: dict[str, str]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is needed to compile Morpho Blue (npm solc 0.8.19)")
    selection = {unit: {name: ["abi", "evm.bytecode.object"]} for name, unit in CONTRACTS.items()}
    request = {
        "language": "Solidity",
        "sources": {unit: {"content": text} for unit, text in sources.items()},
        "settings": {**MORPHO_SOLC_SETTINGS, "outputSelection": selection},
    }
    log.info("compiling Morpho Blue with npm %s (via-IR, once)", SOLC_PACKAGE)
    done = subprocess.run(
        [node, "-e", _SOLC_SCRIPT],
        input=orjson.dumps(request),
        capture_output=True,
        cwd=NODE_MODULES.parent,  # so require() finds devnet/node_modules/solc-0.8.19
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"solc via node failed: {done.stderr.decode(errors='replace')[:500]}")
    output = orjson.loads(done.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError(f"Morpho Blue does not compile: {errors[0]['formattedMessage']}")
    compiled: dict[str, Any] = {"compiler": output["solcVersion"]}
    for name, unit in CONTRACTS.items():
        contract = output["contracts"][unit][name]
        compiled[name] = {
            "abi": contract["abi"],
            "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        }
    return compiled


@dataclass(frozen=True, slots=True)
class MorphoDeployment:
    morpho: str
    irm: str
    oracle: str
    params: MarketParams
    market_id: str
    owner: str
    start_block: int  # the block Morpho was deployed in

    @property
    def market_tuple(self) -> tuple[str, str, str, str, int]:
        p = self.params
        return (p.loan_token, p.collateral_token, p.oracle, p.irm, p.lltv)


def oracle_price(
    loan_per_collateral: int | Fraction, loan_decimals: int, collateral_decimals: int
) -> int:
    """OracleMock's price (1e36 scale, loan units per collateral unit, rounded down) for
    `loan_per_collateral` whole loan tokens per whole collateral token."""
    scaled = Fraction(loan_per_collateral) * ORACLE_PRICE_SCALE * 10**loan_decimals
    return int(scaled / 10**collateral_decimals)


def deploy_morpho(
    rpc: RpcClient,
    deployer: str,
    *,
    loan_token: str | None = None,
    collateral_token: str | None = None,
    lltv: int = LLTV,
    price: int = oracle_price(3_000, LOAN_DECIMALS, COLLATERAL_DECIMALS),
) -> MorphoDeployment:
    """Deploy Morpho (owned by `deployer`), IrmMock, OracleMock at `price`, enable the IRM and
    `lltv`, and create the market; without tokens, two MintableERC20s are deployed (6 and 18
    decimals). Four blocks; leaves automine on."""
    artifacts = morpho_artifacts()
    try:
        creations = [
            Tx(
                deployer,
                None,
                artifacts["Morpho"].deploy_data(("address",), (deployer,)),
                _GAS_DEPLOY_MORPHO,
            ),
            Tx(deployer, None, artifacts["IrmMock"].bytecode, _GAS_DEPLOY_SMALL),
            Tx(deployer, None, artifacts["OracleMock"].bytecode, _GAS_DEPLOY_SMALL),
        ]
        erc20 = load_artifact("MintableERC20")
        wanted = [
            (symbol, decimals)
            for symbol, decimals, given in (
                ("MLOAN", LOAN_DECIMALS, loan_token),
                ("MCOLL", COLLATERAL_DECIMALS, collateral_token),
            )
            if given is None
        ]
        creations += [
            Tx(
                deployer,
                None,
                erc20.deploy_data(("string", "string", "uint8"), (symbol, symbol, decimals)),
                _GAS_DEPLOY_TOKEN,
            )
            for symbol, decimals in wanted
        ]
        receipts = mine_block(rpc, creations)
        morpho, irm, oracle, *tokens = (r["contractAddress"].lower() for r in receipts)
        start_block = int(receipts[0]["blockNumber"], 16)
        made = iter(tokens)
        loan = loan_token.lower() if loan_token is not None else next(made)
        collateral = collateral_token.lower() if collateral_token is not None else next(made)
        params = MarketParams(loan, collateral, oracle, irm, lltv)
        mine_block(
            rpc,
            [
                Tx(deployer, morpho, MORPHO_ENABLE_IRM.encode(irm), _GAS_CALL),
                Tx(deployer, morpho, MORPHO_ENABLE_LLTV.encode(lltv), _GAS_CALL),
                Tx(deployer, oracle, ORACLE_SET_PRICE.encode(price), _GAS_CALL),
            ],
        )
        mine_block(
            rpc, [Tx(deployer, morpho, MORPHO_CREATE_MARKET.encode(tuple(params)), _GAS_CALL)]
        )
    finally:
        rpc.call("evm_setAutomine", [True])
    deployment = MorphoDeployment(
        morpho, irm, oracle, params, market_id(params), deployer, start_block
    )
    log.info("deployed Morpho Blue at %s, market %s", morpho, deployment.market_id)
    return deployment


class MorphoActions:
    """Transactions on the deployed market (Tx builders: several can share one block)."""

    def __init__(self, deployment: MorphoDeployment) -> None:
        self.d = deployment

    def _call(self, sender: str, data: str, to: str | None = None) -> Tx:
        return Tx(sender, to or self.d.morpho, data, _GAS_CALL)

    def fund(self, wallet: str, loan: int, collateral: int) -> list[Tx]:
        """Mint both tokens to `wallet` (the mocks let anyone mint) and approve Morpho."""
        p = self.d.params
        return [
            self._call(wallet, ERC20_MINT.encode(wallet, loan), p.loan_token),
            self._call(wallet, ERC20_MINT.encode(wallet, collateral), p.collateral_token),
            self._call(wallet, ERC20_APPROVE.encode(self.d.morpho, MAX_UINT256), p.loan_token),
            self._call(
                wallet, ERC20_APPROVE.encode(self.d.morpho, MAX_UINT256), p.collateral_token
            ),
        ]

    # `on_behalf` defaults to the sender; withdrawals and borrows pay `receiver` (default: the
    # sender). Acting for another account needs its authorization (setAuthorization).

    def supply(
        self, sender: str, assets: int = 0, shares: int = 0, on_behalf: str | None = None
    ) -> Tx:
        data = MORPHO_SUPPLY.encode(self.d.market_tuple, assets, shares, on_behalf or sender, b"")
        return self._call(sender, data)

    def withdraw(
        self,
        sender: str,
        assets: int = 0,
        shares: int = 0,
        on_behalf: str | None = None,
        receiver: str | None = None,
    ) -> Tx:
        data = MORPHO_WITHDRAW.encode(
            self.d.market_tuple, assets, shares, on_behalf or sender, receiver or sender
        )
        return self._call(sender, data)

    def supply_collateral(self, sender: str, assets: int, on_behalf: str | None = None) -> Tx:
        data = MORPHO_SUPPLY_COLLATERAL.encode(
            self.d.market_tuple, assets, on_behalf or sender, b""
        )
        return self._call(sender, data)

    def withdraw_collateral(
        self,
        sender: str,
        assets: int,
        on_behalf: str | None = None,
        receiver: str | None = None,
    ) -> Tx:
        data = MORPHO_WITHDRAW_COLLATERAL.encode(
            self.d.market_tuple, assets, on_behalf or sender, receiver or sender
        )
        return self._call(sender, data)

    def borrow(
        self,
        sender: str,
        assets: int = 0,
        shares: int = 0,
        on_behalf: str | None = None,
        receiver: str | None = None,
    ) -> Tx:
        data = MORPHO_BORROW.encode(
            self.d.market_tuple, assets, shares, on_behalf or sender, receiver or sender
        )
        return self._call(sender, data)

    def repay(
        self, sender: str, assets: int = 0, shares: int = 0, on_behalf: str | None = None
    ) -> Tx:
        data = MORPHO_REPAY.encode(self.d.market_tuple, assets, shares, on_behalf or sender, b"")
        return self._call(sender, data)

    def liquidate(
        self, sender: str, borrower: str, seized_assets: int = 0, repaid_shares: int = 0
    ) -> Tx:
        data = MORPHO_LIQUIDATE.encode(
            self.d.market_tuple, borrower, seized_assets, repaid_shares, b""
        )
        return self._call(sender, data)

    def set_authorization(self, sender: str, authorized: str, flag: bool = True) -> Tx:
        return self._call(sender, MORPHO_SET_AUTHORIZATION.encode(authorized, flag))

    def flash_loan(self, sender: str, flash_borrower: str, token: str, assets: int) -> Tx:
        """Through a FlashBorrowerMock (`deploy_flash_borrower`): it repays in its callback."""
        data = FLASH_BORROWER_FLASH_LOAN.encode(token, assets, encode(["address"], [token]))
        return self._call(sender, data, flash_borrower)

    def accrue_interest(self, sender: str) -> Tx:
        return self._call(sender, MORPHO_ACCRUE_INTEREST.encode(self.d.market_tuple))

    def set_fee(self, fee: int) -> Tx:
        return self._call(self.d.owner, MORPHO_SET_FEE.encode(self.d.market_tuple, fee))

    def set_fee_recipient(self, recipient: str) -> Tx:
        return self._call(self.d.owner, MORPHO_SET_FEE_RECIPIENT.encode(recipient))

    def set_price(self, price: int) -> Tx:
        return self._call(self.d.owner, ORACLE_SET_PRICE.encode(price), self.d.oracle)


def deploy_flash_borrower(rpc: RpcClient, deployment: MorphoDeployment, sender: str) -> str:
    """Morpho's FlashBorrowerMock for this Morpho (it approves the loan back in its callback)."""
    code = morpho_artifacts()["FlashBorrowerMock"].deploy_data(("address",), (deployment.morpho,))
    receipt = run_block(rpc, [Tx(sender, None, code, _GAS_DEPLOY_SMALL)])[0]
    return str(receipt["contractAddress"]).lower()


def run_block(rpc: RpcClient, txs: Sequence[Tx]) -> list[dict[str, Any]]:
    """Mine `txs` in one block (each must succeed); automine back on afterwards."""
    try:
        return mine_block(rpc, txs)
    finally:
        rpc.call("evm_setAutomine", [True])


def advance_time(rpc: RpcClient, seconds: int) -> None:
    """Let `seconds` pass and mine an empty block at that time."""
    rpc.call("evm_increaseTime", [seconds])
    rpc.call("evm_mine", [])
