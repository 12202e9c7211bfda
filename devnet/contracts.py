"""The npm artifacts (real, unmodified bytecode) and minimal ABI encoding for the devnet.

Calls are encoded from their canonical signatures with eth-abi rather than through web3.py
contract objects: it is several times faster, and MintableERC20's overloaded `mint` needs
an explicit signature anyway.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from eth_abi import decode, encode
from eth_utils import keccak

from devnet.anvil import NODE_MODULES

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
}


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x hex creation code

    def deploy_data(
        self, constructor_types: tuple[str, ...] = (), args: tuple[Any, ...] = ()
    ) -> str:
        """Creation code followed by the ABI-encoded constructor arguments."""
        return self.bytecode + encode(list(constructor_types), list(args)).hex()


@functools.cache
def load_artifact(name: str) -> Artifact:
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
    )


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
