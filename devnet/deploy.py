"""Deploy tokens, the real Uniswap V3 (factory, pools, NPM, router), Aave V3 and Morpho Blue on a
devnet."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Any

import orjson

from devnet.aave import AaveDeployment, deploy_aave
from devnet.contracts import (
    ERC20_APPROVE,
    ERC20_MINT,
    FACTORY_CREATE_POOL,
    FACTORY_ENABLE_FEE_AMOUNT,
    FACTORY_FEE_AMOUNT_TICK_SPACING,
    FACTORY_GET_POOL,
    MAX_UINT256,
    POOL_INITIALIZE,
    load_artifact,
)
from devnet.morpho import LLTV, MorphoDeployment, deploy_morpho, oracle_price
from devnet.oracles import DEFAULT_LAYOUT, LST_BASE, LST_RATIO, LST_SYMBOL, check_layout
from devnet.rpc import RpcClient
from devnet.txs import Tx, mine_block
from devnet.univ3math import sqrt_price_x96_from_price
from protocols.morpho_blue.events import MarketParams
from schemas.chain_config import (
    DEFAULT_MIN_DEPTH_USD,
    AaveV3Config,
    ChainConfig,
    MorphoBlueConfig,
    UniswapV3Config,
)

log = logging.getLogger("defimon.devnet")

# NPM only calls its token descriptor from tokenURI, which nothing here uses
TOKEN_DESCRIPTOR = "0x000000000000000000000000000000000000dead"

# symbol -> (decimals, reference price in USD); WBTC = 20 WETH. The Uniswap pools and the
# Aave price feeds both start at these prices.
TOKEN_SPECS: dict[str, tuple[int, Fraction]] = {
    "USDC": (6, Fraction(1)),
    "DAI": (18, Fraction(1)),
    "WBTC": (8, Fraction(60_000)),
    "WETH": (18, Fraction(3_000)),
}
# the tokens of the mainnet layout only: an LST (its price follows WETH x its ratio)
LAYOUT_TOKEN_SPECS: dict[str, dict[str, tuple[int, Fraction]]] = {
    "feeds": {},
    "mainnet": {LST_SYMBOL: (18, TOKEN_SPECS[LST_BASE][1] * LST_RATIO)},
}
# every token any layout deploys: reference prices for the simulators
ALL_TOKEN_SPECS: dict[str, tuple[int, Fraction]] = {
    **TOKEN_SPECS,
    **{symbol: spec for specs in LAYOUT_TOKEN_SPECS.values() for symbol, spec in specs.items()},
}
USD_STABLECOINS = ("USDC", "DAI")
# (base, quote, fee): pools start at the reference price ratio base/quote
POOL_SPECS: tuple[tuple[str, str, int], ...] = (
    ("WETH", "USDC", 500),
    ("WETH", "USDC", 3000),
    ("WBTC", "WETH", 3000),
    ("DAI", "USDC", 100),
)
WALLET_FUNDING_USD = 10**9  # of every token, per wallet
# the Morpho Blue market: lends this token against that one, at devnet.morpho.LLTV (86%)
MORPHO_LOAN = "USDC"
MORPHO_COLLATERAL = "WETH"

# gas limits are explicit so bulk sends skip estimation; about 1.5x what the calls use
_GAS_DEPLOY_TOKEN = 2_000_000
_GAS_DEPLOY_FACTORY = 7_000_000
_GAS_DEPLOY_NPM = 8_000_000
_GAS_DEPLOY_ROUTER = 5_000_000
_GAS_CREATE_POOL = 7_000_000
_GAS_SMALL_CALL = 200_000


@dataclass(frozen=True, slots=True)
class Token:
    symbol: str
    address: str
    decimals: int


@dataclass(frozen=True, slots=True)
class Pool:
    address: str
    token0: str
    token1: str
    fee: int
    tick_spacing: int


@dataclass(frozen=True, slots=True)
class Deployment:
    chain_id: int
    rpc_url: str
    factory: str
    position_manager: str
    swap_router: str
    weth: str
    tokens: dict[str, Token]  # by symbol
    pools: list[Pool]
    wallets: list[str]
    deployer: str
    start_block: int
    aave: AaveDeployment | None = None  # None: deployed with aave=False
    layout: str = DEFAULT_LAYOUT  # devnet.oracles.LAYOUTS: what prices the Aave reserves
    morpho: MorphoDeployment | None = None  # None: deployed with morpho=False

    def token_by_address(self, address: str) -> Token:
        for token in self.tokens.values():
            if token.address == address:
                return token
        raise KeyError(address)

    def pool_label(self, pool: Pool) -> str:
        """E.g. 'WETH/USDC 0.05%' (token0/token1)."""
        symbol0 = self.token_by_address(pool.token0).symbol
        symbol1 = self.token_by_address(pool.token1).symbol
        return f"{symbol0}/{symbol1} {pool.fee / 10_000:g}%"

    def to_chain_config(self, name: str = "devnet") -> ChainConfig:
        return ChainConfig(
            chain_id=self.chain_id,
            uniswap_v3=UniswapV3Config(
                factory=self.factory, position_manager=self.position_manager
            ),
            name=name,
            start_block=self.start_block,
            usd_tokens=tuple(
                self.tokens[symbol].address for symbol in USD_STABLECOINS if symbol in self.tokens
            ),
            # The real chains' threshold: the simulator's base positions ($1M to $3M over the
            # price walk's band) keep every devnet pool well above it within ±2% of its price
            # (tests/integration/test_routing.py).
            min_depth_usd=DEFAULT_MIN_DEPTH_USD,
            aave_v3=AaveV3Config(
                pool=self.aave.pool,
                pool_configurator=self.aave.pool_configurator,
                oracle=self.aave.oracle,
            )
            if self.aave is not None
            else None,
            morpho_blue=MorphoBlueConfig(self.morpho.morpho) if self.morpho is not None else None,
        )

    def to_json(self) -> str:
        raw = asdict(self)
        if self.morpho is not None:
            # asdict keeps MarketParams a NamedTuple, which orjson does not serialize
            raw["morpho"]["params"] = self.morpho.params._asdict()
        return orjson.dumps(raw, option=orjson.OPT_INDENT_2).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> Deployment:
        raw: dict[str, Any] = orjson.loads(text)
        raw["tokens"] = {symbol: Token(**token) for symbol, token in raw["tokens"].items()}
        raw["pools"] = [Pool(**pool) for pool in raw["pools"]]
        if raw.get("aave") is not None:
            raw["aave"] = AaveDeployment.from_dict(raw["aave"])
        if raw.get("morpho") is not None:
            morpho = dict(raw["morpho"])
            morpho["params"] = MarketParams(**morpho["params"])
            raw["morpho"] = MorphoDeployment(**morpho)
        return cls(**raw)


def deploy(
    rpc_url: str, *, aave: bool = True, layout: str = DEFAULT_LAYOUT, morpho: bool = True
) -> Deployment:
    """Deploy everything from anvil account 0 and fund accounts 1..N-1.

    Uniswap V3 takes ~0.1 s, then (with `aave`) the Aave V3 market ~0.2 s more. `layout`
    (devnet.oracles) says what prices the Aave reserves: "feeds", a PriceFeed each, or
    "mainnet", WETH behind a Chainlink proxy and an LST (wstETH) behind a CAPO-shaped adapter.
    Then (with `morpho`) Morpho Blue and one market, USDC lent against WETH (~0.1 s; compiling
    Morpho takes ~7 s more the first time, then it is cached). Morpho comes last, so the
    Uniswap and Aave blocks are the same with or without it.
    """
    check_layout(layout)
    started = time.perf_counter()
    with RpcClient(rpc_url) as rpc:
        accounts = [account.lower() for account in rpc.call("eth_accounts")]
        if len(accounts) < 2:
            raise RuntimeError(
                "the devnet needs at least two unlocked accounts (a deployer and a wallet)"
            )
        deployer, wallets = accounts[0], accounts[1:]
        chain_id = int(rpc.call("eth_chainId"), 16)
        try:
            deployment = _deploy(rpc, rpc_url, chain_id, deployer, wallets, layout)
        finally:
            rpc.call("evm_setAutomine", [True])
    log.info(
        "deployed Uniswap V3 with %d pools and %d tokens in %.2f s (factory %s, start block %d)",
        len(deployment.pools),
        len(deployment.tokens),
        time.perf_counter() - started,
        deployment.factory,
        deployment.start_block,
    )
    if aave:
        prices = {symbol: spec[1] for symbol, spec in ALL_TOKEN_SPECS.items()}
        market = deploy_aave(rpc_url, deployment.tokens, deployer, wallets, prices, layout)
        deployment = replace(deployment, aave=market)
    if morpho:
        with RpcClient(rpc_url) as rpc:
            deployment = replace(deployment, morpho=_deploy_morpho(rpc, deployment))
    return deployment


def _deploy_morpho(rpc: RpcClient, deployment: Deployment) -> MorphoDeployment:
    """Morpho Blue with a USDC/WETH market at the devnet's reference WETH price (the price the
    pools and the Aave feeds start at); every wallet approves Morpho for both tokens.

    Four blocks."""
    loan = deployment.tokens[MORPHO_LOAN]
    collateral = deployment.tokens[MORPHO_COLLATERAL]
    price = ALL_TOKEN_SPECS[MORPHO_COLLATERAL][1] / ALL_TOKEN_SPECS[MORPHO_LOAN][1]
    try:
        market = deploy_morpho(
            rpc,
            deployment.deployer,
            loan_token=loan.address,
            collateral_token=collateral.address,
            lltv=LLTV,
            price=oracle_price(price, loan.decimals, collateral.decimals),
        )
        # the wallets already hold both tokens (block 4 and the Aave funding)
        mine_block(
            rpc,
            [
                Tx(
                    wallet,
                    token.address,
                    ERC20_APPROVE.encode(market.morpho, MAX_UINT256),
                    _GAS_SMALL_CALL // 2,
                )
                for wallet in deployment.wallets
                for token in (loan, collateral)
            ],
        )
    finally:
        rpc.call("evm_setAutomine", [True])
    return market


def _deploy(
    rpc: RpcClient, rpc_url: str, chain_id: int, deployer: str, wallets: list[str], layout: str
) -> Deployment:
    erc20 = load_artifact("MintableERC20")
    weth9 = load_artifact("WETH9Mocked")
    specs = {**TOKEN_SPECS, **LAYOUT_TOKEN_SPECS[layout]}
    symbols = list(specs)

    # block 1: factory and tokens (the blocks stay under anvil's 30M gas limit)
    token_txs = [
        Tx(deployer, None, weth9.deploy_data(), _GAS_DEPLOY_TOKEN)
        if symbol == "WETH"
        else Tx(
            deployer,
            None,
            erc20.deploy_data(("string", "string", "uint8"), (symbol, symbol, specs[symbol][0])),
            _GAS_DEPLOY_TOKEN,
        )
        for symbol in symbols
    ]
    factory_tx = Tx(deployer, None, load_artifact("UniswapV3Factory").bytecode, _GAS_DEPLOY_FACTORY)
    receipts = mine_block(rpc, [factory_tx, *token_txs])
    factory = receipts[0]["contractAddress"].lower()
    start_block = int(receipts[0]["blockNumber"], 16)
    tokens = {
        symbol: Token(symbol, receipt["contractAddress"].lower(), specs[symbol][0])
        for symbol, receipt in zip(symbols, receipts[1:], strict=True)
    }
    weth = tokens["WETH"].address

    # block 2: periphery, and the 0.01% fee tier (not enabled by the factory constructor)
    npm_data = load_artifact("NonfungiblePositionManager").deploy_data(
        ("address", "address", "address"), (factory, weth, TOKEN_DESCRIPTOR)
    )
    router_data = load_artifact("SwapRouter").deploy_data(("address", "address"), (factory, weth))
    receipts = mine_block(
        rpc,
        [
            Tx(deployer, None, npm_data, _GAS_DEPLOY_NPM),
            Tx(deployer, None, router_data, _GAS_DEPLOY_ROUTER),
            Tx(deployer, factory, FACTORY_ENABLE_FEE_AMOUNT.encode(100, 1), _GAS_SMALL_CALL),
        ],
    )
    position_manager = receipts[0]["contractAddress"].lower()
    swap_router = receipts[1]["contractAddress"].lower()

    # block 3: pools
    pairs = []
    for base, quote, fee in POOL_SPECS:
        address0, address1 = sorted((tokens[base].address, tokens[quote].address))
        pairs.append((address0, address1, fee))
    mine_block(
        rpc,
        [
            Tx(deployer, factory, FACTORY_CREATE_POOL.encode(*pair), _GAS_CREATE_POOL)
            for pair in pairs
        ],
    )
    calls = [
        ("eth_call", [{"to": factory, "data": FACTORY_GET_POOL.encode(*pair)}, "latest"])
        for pair in pairs
    ]
    calls += [
        (
            "eth_call",
            [{"to": factory, "data": FACTORY_FEE_AMOUNT_TICK_SPACING.encode(fee)}, "latest"],
        )
        for _, _, fee in pairs
    ]
    answers = rpc.batch(calls)
    pools = [
        Pool(
            address=FACTORY_GET_POOL.decode(answers[index])[0].lower(),
            token0=address0,
            token1=address1,
            fee=fee,
            tick_spacing=FACTORY_FEE_AMOUNT_TICK_SPACING.decode(answers[len(pairs) + index])[0],
        )
        for index, (address0, address1, fee) in enumerate(pairs)
    ]

    # block 4: initial prices and wallet funding
    by_address = {token.address: token for token in tokens.values()}
    txs = []
    for pool in pools:
        token0, token1 = by_address[pool.token0], by_address[pool.token1]
        price = TOKEN_SPECS[token0.symbol][1] / TOKEN_SPECS[token1.symbol][1]  # token1 per token0
        sqrt_price = sqrt_price_x96_from_price(price, token0.decimals, token1.decimals)
        txs.append(Tx(deployer, pool.address, POOL_INITIALIZE.encode(sqrt_price), _GAS_SMALL_CALL))
    for wallet in wallets:
        for token in tokens.values():
            amount = WALLET_FUNDING_USD * 10**token.decimals // specs[token.symbol][1]
            # the mocks let anyone mint, so the deployer mints straight to the wallet
            txs.append(
                Tx(deployer, token.address, ERC20_MINT.encode(wallet, int(amount)), _GAS_SMALL_CALL)
            )
    mine_block(rpc, txs)

    # block 5: allowances for the periphery
    mine_block(
        rpc,
        [
            Tx(
                wallet,
                token.address,
                ERC20_APPROVE.encode(spender, MAX_UINT256),
                _GAS_SMALL_CALL // 2,
            )
            for wallet in wallets
            for token in tokens.values()
            for spender in (position_manager, swap_router)
        ],
    )
    return Deployment(
        chain_id=chain_id,
        rpc_url=rpc_url,
        factory=factory,
        position_manager=position_manager,
        swap_router=swap_router,
        weth=weth,
        tokens=tokens,
        pools=pools,
        wallets=wallets,
        deployer=deployer,
        start_block=start_block,
        layout=layout,
    )
