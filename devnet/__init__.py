"""The local chain for the demo, the tests and the benchmarks.

anvil (from npm) runs the real Uniswap V3, Aave V3 and Morpho Blue bytecode (from npm); `deploy`
sets up tokens, pools, the Aave market with its price feeds, a Morpho market, and funded
wallets. `MarketSimulator` trades and provides liquidity on Uniswap, `LendingSimulator`
supplies, borrows, moves prices and liquidates on Aave, `MorphoSimulator` lends, borrows and
liquidates on Morpho, `DevnetSimulator` / `simulate` run them all, and `generate_history` mines
a large history fast for the benchmarks.
"""

from devnet.aave import AaveDeployment, AaveReserve, deploy_aave
from devnet.anvil import Anvil, anvil_binary, free_port
from devnet.deploy import Deployment, Pool, Token, deploy
from devnet.history import generate_history
from devnet.lending import LendingSimulator
from devnet.main import DevnetSimulator, run_devnet, simulate
from devnet.morpho_simulator import MorphoSimulator
from devnet.rpc import RpcClient
from devnet.simulator import MarketSimulator

__all__ = [
    "AaveDeployment",
    "AaveReserve",
    "Anvil",
    "Deployment",
    "DevnetSimulator",
    "LendingSimulator",
    "MarketSimulator",
    "MorphoSimulator",
    "Pool",
    "RpcClient",
    "Token",
    "anvil_binary",
    "deploy",
    "deploy_aave",
    "free_port",
    "generate_history",
    "run_devnet",
    "simulate",
]
