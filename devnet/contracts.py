"""The npm artifacts (real, unmodified bytecode) and minimal ABI encoding for the devnet.

Calls are encoded from their canonical signatures with eth-abi rather than through web3.py
contract objects: it is several times faster, and MintableERC20's overloaded `mint` needs
an explicit signature anyway.

Our own contracts (`contracts/*.sol`: PriceFeed, PriceCapAdapter, RatioProvider) ship compiled
next to their sources (`contracts/<name>.json`, from npm solc 0.8.20). If a source no longer
matches its committed artifact, it is compiled with that solc through node and cached under
`node_modules/.cache/defimon/`; `write_local_artifacts()` rewrites the committed artifact.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from eth_abi import decode, encode
from eth_utils import keccak

from devnet.anvil import NODE_MODULES

log = logging.getLogger("defimon.devnet")

_AAVE = Path("@aave/core-v3/artifacts/contracts")

ARTIFACTS: dict[str, Path] = {
    "UniswapV3Factory": Path(
        "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json"
    ),
    "UniswapV3Pool": Path(
        "@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json"
    ),
    "NonfungiblePositionManager": Path(
        "@uniswap/v3-periphery/artifacts/contracts/NonfungiblePositionManager.sol/NonfungiblePositionManager.json"
    ),
    "SwapRouter": Path("@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json"),
    "MintableERC20": Path(
        "@aave/core-v3/artifacts/contracts/mocks/tokens/MintableERC20.sol/MintableERC20.json"
    ),
    "WETH9Mocked": Path(
        "@aave/core-v3/artifacts/contracts/mocks/tokens/WETH9Mocked.sol/WETH9Mocked.json"
    ),
    # Chainlink's v0.6 data feed contracts as deployed on mainnet (npm @chainlink/abi 0.1.4):
    # the proxy Aave's oracle names, and the Flux-style aggregator behind it
    "EACAggregatorProxy": Path("@chainlink/abi/v0.6/EACAggregatorProxy.json"),
    "AccessControlledAggregator": Path("@chainlink/abi/v0.6/AccessControlledAggregator.json"),
    # Aave V3 (v3.0.2 code in @aave/core-v3 1.19.3), Hardhat artifacts: <dir>/<name>.sol/<name>.json
    **{
        name: _AAVE / directory / f"{name}.sol" / f"{name}.json"
        for directory, names in (
            ("protocol/configuration", ("PoolAddressesProvider", "ACLManager")),
            ("protocol/pool", ("Pool", "PoolConfigurator", "DefaultReserveInterestRateStrategy")),
            ("protocol/tokenization", ("AToken", "StableDebtToken", "VariableDebtToken")),
            ("misc", ("AaveOracle", "AaveProtocolDataProvider")),
            (
                "protocol/libraries/logic",
                (
                    "SupplyLogic",
                    "BorrowLogic",
                    "LiquidationLogic",
                    "EModeLogic",
                    "BridgeLogic",
                    "PoolLogic",
                    "ConfiguratorLogic",
                    "FlashLoanLogic",
                ),
            ),
        )
        for name in names
    },
}

# our own contracts: name -> Solidity source under devnet/contracts/
LOCAL_CONTRACTS_DIR = Path(__file__).parent / "contracts"
LOCAL_SOURCES: dict[str, str] = {
    "PriceFeed": "PriceFeed.sol",
    "PriceCapAdapter": "PriceCapAdapter.sol",
    "RatioProvider": "RatioProvider.sol",
}
SOLC_CACHE = NODE_MODULES / ".cache" / "defimon"
# paris: no PUSH0, so the bytecode also runs on nodes configured for older forks
SOLC_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "paris",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}
# reads standard JSON from stdin, writes solc's standard JSON output; run with cwd=devnet
_SOLC_SCRIPT = """
const solc = require('solc');
let input = '';
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  const output = JSON.parse(solc.compile(input));
  output.solcVersion = solc.version();
  process.stdout.write(JSON.stringify(output));
});
"""


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x hex creation code
    # Hardhat's linkReferences: source file -> library name -> [{"start", "length"}] (bytes)
    link_references: dict[str, dict[str, list[dict[str, int]]]] = field(default_factory=dict)

    @property
    def libraries(self) -> list[str]:
        """The names of the libraries this bytecode must be linked with."""
        return sorted({name for libs in self.link_references.values() for name in libs})

    def linked(self, libraries: dict[str, str]) -> Artifact:
        """A copy whose library placeholders hold the given addresses (name -> address)."""
        # placeholders like __$<34 hex chars>$__ are not hex, so patch the hex text
        code = list(self.bytecode.removeprefix("0x"))
        for libs in self.link_references.values():
            for name, places in libs.items():
                address = libraries[name].lower().removeprefix("0x")
                for place in places:
                    start, length = 2 * place["start"], 2 * place["length"]
                    if length != len(address):
                        raise ValueError(f"{self.name}: a link to {name} is {length} hex long")
                    code[start : start + length] = address
        return Artifact(self.name, self.abi, "0x" + "".join(code))

    def deploy_data(
        self, constructor_types: tuple[str, ...] = (), args: tuple[Any, ...] = ()
    ) -> str:
        """Creation code followed by the ABI-encoded constructor arguments."""
        if self.link_references and "__" in self.bytecode:
            # an unlinked placeholder is not hex: the node would reject the code anyway
            raise ValueError(f"{self.name} needs its libraries linked: {self.libraries}")
        return self.bytecode + encode(list(constructor_types), list(args)).hex()


@functools.cache
def load_artifact(name: str) -> Artifact:
    if name in LOCAL_SOURCES:
        return _local_artifact(name)
    path = NODE_MODULES / ARTIFACTS[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"artifact {path} is missing; install it with `make devnet/node_modules` "
            "(or `npm ci --prefix devnet`)"
        )
    raw = orjson.loads(path.read_bytes())
    bytecode = raw["bytecode"]
    return Artifact(
        name=name,
        abi=raw["abi"],
        bytecode=bytecode if bytecode.startswith("0x") else "0x" + bytecode,
        link_references=raw.get("linkReferences") or {},
    )


def _source_digest(name: str) -> str:
    source = (LOCAL_CONTRACTS_DIR / LOCAL_SOURCES[name]).read_bytes()
    settings = orjson.dumps(SOLC_SETTINGS, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(source + b"\0" + settings).hexdigest()


def _local_artifact(name: str) -> Artifact:
    """The committed artifact if it was built from the current source, else a fresh build."""
    digest = _source_digest(name)
    committed = LOCAL_CONTRACTS_DIR / f"{name}.json"
    cached = SOLC_CACHE / f"{name}-{digest[:16]}.json"
    for path in (committed, cached):
        if path.is_file():
            raw = orjson.loads(path.read_bytes())
            if raw.get("sourceDigest") == digest:
                return Artifact(name, raw["abi"], raw["bytecode"])
    log.warning("%s is stale or missing; compiling %s with npm solc", committed, name)
    raw = compile_local(name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2))
    return Artifact(name, raw["abi"], raw["bytecode"])


def compile_local(name: str) -> dict[str, Any]:
    """Compile devnet/contracts/<source> with npm solc (about 1.5 s); the artifact as a dict."""
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is needed to compile the devnet's Solidity (npm solc)")
    source_name = LOCAL_SOURCES[name]
    request = {
        "language": "Solidity",
        "sources": {source_name: {"content": (LOCAL_CONTRACTS_DIR / source_name).read_text()}},
        "settings": SOLC_SETTINGS,
    }
    done = subprocess.run(
        [node, "-e", _SOLC_SCRIPT],
        input=orjson.dumps(request),
        capture_output=True,
        cwd=NODE_MODULES.parent,  # so require('solc') finds devnet/node_modules/solc
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"solc via node failed: {done.stderr.decode(errors='replace')[:500]}")
    output = orjson.loads(done.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError(f"{source_name} does not compile: {errors[0]['formattedMessage']}")
    contract = output["contracts"][source_name][name]
    return {
        "contractName": name,
        "sourceName": source_name,
        "compiler": output["solcVersion"],
        "settings": SOLC_SETTINGS,
        "sourceDigest": _source_digest(name),
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
    }


def _split_types(inner: str) -> list[str]:
    """Split a parameter list at top-level commas: 'a,(b,c),d' -> ['a', '(b,c)', 'd']."""
    types, depth, start = [], 0, 0
    for index, char in enumerate(inner):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            types.append(inner[start:index])
            start = index + 1
    if inner:
        types.append(inner[start:])
    return types


@dataclass(frozen=True, slots=True)
class Function:
    """A contract function known by its canonical signature, e.g. `mint(address,uint256)`."""

    signature: str
    returns: tuple[str, ...] = ()

    @property
    def input_types(self) -> list[str]:
        return _split_types(self.signature[self.signature.index("(") + 1 : -1])

    @property
    def selector(self) -> str:
        return "0x" + keccak(text=self.signature)[:4].hex()

    def encode(self, *args: Any) -> str:
        return self.selector + encode(self.input_types, list(args)).hex()

    def decode(self, data: str) -> tuple[Any, ...]:
        return tuple(decode(list(self.returns), bytes.fromhex(data.removeprefix("0x"))))


def event_topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


MAX_UINT256 = 2**256 - 1
MAX_UINT128 = 2**128 - 1
DEADLINE = 2**40  # far beyond any devnet timestamp

# ERC-20
ERC20_MINT = Function("mint(address,uint256)", ("bool",))
ERC20_APPROVE = Function("approve(address,uint256)", ("bool",))
ERC20_BALANCE_OF = Function("balanceOf(address)", ("uint256",))

# UniswapV3Factory / UniswapV3Pool
FACTORY_CREATE_POOL = Function("createPool(address,address,uint24)", ("address",))
FACTORY_GET_POOL = Function("getPool(address,address,uint24)", ("address",))
FACTORY_ENABLE_FEE_AMOUNT = Function("enableFeeAmount(uint24,int24)")
FACTORY_FEE_AMOUNT_TICK_SPACING = Function("feeAmountTickSpacing(uint24)", ("int24",))
POOL_INITIALIZE = Function("initialize(uint160)")
POOL_SLOT0 = Function(
    "slot0()", ("uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool")
)
POOL_LIQUIDITY = Function("liquidity()", ("uint128",))

# NonfungiblePositionManager
# MintParams: token0, token1, fee, tickLower, tickUpper, amount0Desired, amount1Desired,
#             amount0Min, amount1Min, recipient, deadline
NPM_MINT = Function(
    "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))",
    ("uint256", "uint128", "uint256", "uint256"),
)
# IncreaseLiquidityParams: tokenId, amount0Desired, amount1Desired, amount0Min, amount1Min, deadline
NPM_INCREASE_LIQUIDITY = Function(
    "increaseLiquidity((uint256,uint256,uint256,uint256,uint256,uint256))"
)
# DecreaseLiquidityParams: tokenId, liquidity, amount0Min, amount1Min, deadline
NPM_DECREASE_LIQUIDITY = Function("decreaseLiquidity((uint256,uint128,uint256,uint256,uint256))")
# CollectParams: tokenId, recipient, amount0Max, amount1Max
NPM_COLLECT = Function("collect((uint256,address,uint128,uint128))")
NPM_BURN = Function("burn(uint256)")
NPM_SAFE_TRANSFER_FROM = Function("safeTransferFrom(address,address,uint256)")
NPM_TRANSFER_FROM = Function("transferFrom(address,address,uint256)")
NPM_OWNER_OF = Function("ownerOf(uint256)", ("address",))
NPM_POSITIONS = Function(
    "positions(uint256)",
    (
        "uint96", "address", "address", "address", "uint24", "int24", "int24",
        "uint128", "uint256", "uint256", "uint128", "uint128",
    ),
)  # fmt: skip

# SwapRouter
# ExactInputSingleParams: tokenIn, tokenOut, fee, recipient, deadline, amountIn,
#                         amountOutMinimum, sqrtPriceLimitX96
ROUTER_EXACT_INPUT_SINGLE = Function(
    "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
    ("uint256",),
)

# events
TRANSFER_TOPIC = event_topic("Transfer(address,address,uint256)")
INCREASE_LIQUIDITY_TOPIC = event_topic("IncreaseLiquidity(uint256,uint128,uint256,uint256)")
DECREASE_LIQUIDITY_TOPIC = event_topic("DecreaseLiquidity(uint256,uint128,uint256,uint256)")
COLLECT_TOPIC = event_topic("Collect(uint256,address,uint256,uint256)")
SWAP_TOPIC = event_topic("Swap(address,address,int256,int256,uint160,uint128,int24)")
ZERO_TOPIC = "0x" + "00" * 32
ERC20_TRANSFER = Function("transfer(address,uint256)", ("bool",))

# Aave V3 (v3.0.2): PoolAddressesProvider, ACLManager
PROVIDER_SET_ACL_ADMIN = Function("setACLAdmin(address)")
PROVIDER_SET_ACL_MANAGER = Function("setACLManager(address)")
PROVIDER_SET_POOL_IMPL = Function("setPoolImpl(address)")
PROVIDER_SET_POOL_CONFIGURATOR_IMPL = Function("setPoolConfiguratorImpl(address)")
PROVIDER_SET_PRICE_ORACLE = Function("setPriceOracle(address)")
PROVIDER_SET_POOL_DATA_PROVIDER = Function("setPoolDataProvider(address)")
PROVIDER_GET_POOL = Function("getPool()", ("address",))
PROVIDER_GET_POOL_CONFIGURATOR = Function("getPoolConfigurator()", ("address",))
ACL_ADD_POOL_ADMIN = Function("addPoolAdmin(address)")

# Aave V3 PoolConfigurator. InitReserveInput (15 fields in v3.0.2): aTokenImpl,
# stableDebtTokenImpl, variableDebtTokenImpl, underlyingAssetDecimals, interestRateStrategy,
# underlyingAsset, treasury, incentivesController, aTokenName, aTokenSymbol,
# variableDebtTokenName, variableDebtTokenSymbol, stableDebtTokenName, stableDebtTokenSymbol,
# params
CONFIGURATOR_INIT_RESERVES = Function(
    "initReserves((address,address,address,uint8,address,address,address,address,"
    "string,string,string,string,string,string,bytes)[])"
)
CONFIGURATOR_CONFIGURE_COLLATERAL = Function(
    "configureReserveAsCollateral(address,uint256,uint256,uint256)"
)
CONFIGURATOR_SET_BORROWING = Function("setReserveBorrowing(address,bool)")
CONFIGURATOR_SET_RESERVE_FACTOR = Function("setReserveFactor(address,uint256)")
CONFIGURATOR_SET_EMODE_CATEGORY = Function(
    "setEModeCategory(uint8,uint16,uint16,uint16,address,string)"
)
CONFIGURATOR_SET_ASSET_EMODE = Function("setAssetEModeCategory(address,uint8)")

# Aave V3 Pool
AAVE_POOL_INITIALIZE = Function("initialize(address)")
AAVE_SUPPLY = Function("supply(address,uint256,address,uint16)")
AAVE_BORROW = Function("borrow(address,uint256,uint256,uint16,address)")
AAVE_REPAY = Function("repay(address,uint256,uint256,address)", ("uint256",))
AAVE_WITHDRAW = Function("withdraw(address,uint256,address)", ("uint256",))
AAVE_SET_USE_AS_COLLATERAL = Function("setUserUseReserveAsCollateral(address,bool)")
AAVE_SET_USER_EMODE = Function("setUserEMode(uint8)")
AAVE_LIQUIDATION_CALL = Function("liquidationCall(address,address,address,uint256,bool)")
AAVE_GET_USER_EMODE = Function("getUserEMode(address)", ("uint256",))
# totalCollateralBase, totalDebtBase, availableBorrowsBase (base currency: USD, 8 decimals),
# currentLiquidationThreshold, ltv (bps), healthFactor (wad)
AAVE_GET_USER_ACCOUNT_DATA = Function(
    "getUserAccountData(address)",
    ("uint256", "uint256", "uint256", "uint256", "uint256", "uint256"),
)
INTEREST_RATE_VARIABLE = 2

# Aave V3 AaveProtocolDataProvider, AaveOracle
DATA_PROVIDER_RESERVE_TOKENS = Function(
    "getReserveTokensAddresses(address)", ("address", "address", "address")
)
# currentATokenBalance, currentStableDebt, currentVariableDebt, principalStableDebt,
# scaledVariableDebt, stableBorrowRate, liquidityRate, stableRateLastUpdated,
# usageAsCollateralEnabled
DATA_PROVIDER_USER_RESERVE = Function(
    "getUserReserveData(address,address)",
    ("uint256", "uint256", "uint256", "uint256", "uint256", "uint256", "uint256", "uint40", "bool"),
)
ORACLE_GET_ASSET_PRICE = Function("getAssetPrice(address)", ("uint256",))
ORACLE_GET_SOURCE = Function("getSourceOfAsset(address)", ("address",))
ORACLE_GET_ASSETS_PRICES = Function("getAssetsPrices(address[])", ("uint256[]",))

# PriceFeed (devnet/contracts/PriceFeed.sol), Chainlink-compatible
FEED_SET_ANSWER = Function("setAnswer(int256)")
FEED_LATEST_ANSWER = Function("latestAnswer()", ("int256",))
FEED_LATEST_ROUND_DATA = Function(
    "latestRoundData()", ("uint80", "int256", "uint256", "uint256", "uint80")
)

# Chainlink EACAggregatorProxy (v0.6): it emits nothing, not even when its aggregator changes
PROXY_AGGREGATOR = Function("aggregator()", ("address",))
PROXY_PHASE_ID = Function("phaseId()", ("uint16",))
PROXY_PHASE_AGGREGATORS = Function("phaseAggregators(uint16)", ("address",))
PROXY_PROPOSE_AGGREGATOR = Function("proposeAggregator(address)")
PROXY_CONFIRM_AGGREGATOR = Function("confirmAggregator(address)")
# Chainlink AccessControlledAggregator (Flux): oracles submit rounds; a round with enough
# submissions (1 here) is answered and emits AnswerUpdated
AGGREGATOR_CHANGE_ORACLES = Function(
    "changeOracles(address[],address[],address[],uint32,uint32,uint32)"
)
AGGREGATOR_SUBMIT = Function("submit(uint256,int256)")
AGGREGATOR_ADD_ACCESS = Function("addAccess(address)")
AGGREGATOR_LATEST_ROUND = Function("latestRound()", ("uint256",))

# our CAPO-shaped PriceCapAdapter and its RatioProvider (devnet/contracts/)
ADAPTER_SET_PRICE_CAP = Function("setPriceCap(int256)")
ADAPTER_GET_PRICE_CAP = Function("getPriceCap()", ("int256",))
ADAPTER_GET_RATIO = Function("getRatio()", ("int256",))
ADAPTER_IS_CAPPED = Function("isCapped()", ("bool",))
ADAPTER_BASE_AGGREGATOR = Function("BASE_TO_USD_AGGREGATOR()", ("address",))
ADAPTER_RATIO_PROVIDER = Function("RATIO_PROVIDER()", ("address",))
RATIO_SET_RATE = Function("setRate(uint256)")
RATIO_GET_RATE = Function("getRate()", ("uint256",))

# Aave and Chainlink events
RESERVE_INITIALIZED_TOPIC = event_topic(
    "ReserveInitialized(address,address,address,address,address)"
)
SUPPLY_TOPIC = event_topic("Supply(address,address,address,uint256,uint16)")
BORROW_TOPIC = event_topic("Borrow(address,address,address,uint256,uint8,uint256,uint16)")
REPAY_TOPIC = event_topic("Repay(address,address,address,uint256,bool)")
WITHDRAW_TOPIC = event_topic("Withdraw(address,address,address,uint256)")
LIQUIDATION_CALL_TOPIC = event_topic(
    "LiquidationCall(address,address,address,uint256,uint256,address,bool)"
)
USER_EMODE_SET_TOPIC = event_topic("UserEModeSet(address,uint8)")
COLLATERAL_ENABLED_TOPIC = event_topic("ReserveUsedAsCollateralEnabled(address,address)")
COLLATERAL_DISABLED_TOPIC = event_topic("ReserveUsedAsCollateralDisabled(address,address)")
BALANCE_TRANSFER_TOPIC = event_topic("BalanceTransfer(address,address,uint256,uint256)")
ASSET_SOURCE_UPDATED_TOPIC = event_topic("AssetSourceUpdated(address,address)")
ANSWER_UPDATED_TOPIC = event_topic("AnswerUpdated(int256,uint256,uint256)")
NEW_ROUND_TOPIC = event_topic("NewRound(uint256,address,uint256)")
PRICE_CAP_UPDATED_TOPIC = event_topic("PriceCapUpdated(int256)")
RATE_UPDATED_TOPIC = event_topic("RateUpdated(uint256,uint256,uint256)")


def write_local_artifacts() -> None:
    """Recompile our Solidity and rewrite the committed artifacts under devnet/contracts/.

    Run `.venv/bin/python -c 'from devnet.contracts import write_local_artifacts as w; w()'`
    after editing a .sol file.
    """
    for name in LOCAL_SOURCES:
        path = LOCAL_CONTRACTS_DIR / f"{name}.json"
        path.write_bytes(orjson.dumps(compile_local(name), option=orjson.OPT_INDENT_2) + b"\n")
        print(f"wrote {path}")
