"""The local chain for the demo, the tests and the benchmarks.

anvil (from npm) runs the real Uniswap V3 bytecode (from npm); `deploy` sets up tokens,
pools and funded wallets, `MarketSimulator` trades and provides liquidity on it, and
`generate_history` mines a large history fast for the benchmarks.
"""

from devnet.anvil import Anvil, anvil_binary, free_port
from devnet.deploy import Deployment, Pool, Token, deploy
from devnet.history import generate_history
from devnet.main import run_devnet
from devnet.rpc import RpcClient
from devnet.simulator import MarketSimulator

__all__ = [
    "Anvil",
    "Deployment",
    "MarketSimulator",
    "Pool",
    "RpcClient",
    "Token",
    "anvil_binary",
    "deploy",
    "free_port",
    "generate_history",
    "run_devnet",
]
