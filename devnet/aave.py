"""Deploy a minimal but real Aave V3 market (v3.0.2 bytecode from npm @aave/core-v3 1.19.3).

The steps follow Aave's own deploy scripts: addresses provider and ACL, the logic libraries
linked into Pool and PoolConfigurator (whose proxies the provider creates), one Chainlink-style
`PriceFeed` per asset registered with AaveOracle in its constructor (so the oracle emits
`AssetSourceUpdated` for each), the token implementations, two interest rate strategies, then
`initReserves` and the risk parameters. Transactions are batched into six blocks (the gas
limits of each block's transactions add up to less than anvil's 30M), as in `devnet.deploy`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from devnet.contracts import (
    AAVE_POOL_INITIALIZE,
    ACL_ADD_POOL_ADMIN,
    CONFIGURATOR_CONFIGURE_COLLATERAL,
    CONFIGURATOR_INIT_RESERVES,
    CONFIGURATOR_SET_ASSET_EMODE,
    CONFIGURATOR_SET_BORROWING,
    CONFIGURATOR_SET_EMODE_CATEGORY,
    CONFIGURATOR_SET_RESERVE_FACTOR,
    DATA_PROVIDER_RESERVE_TOKENS,
    ERC20_APPROVE,
    ERC20_MINT,
    MAX_UINT256,
    PROVIDER_GET_POOL,
    PROVIDER_GET_POOL_CONFIGURATOR,
    PROVIDER_SET_ACL_ADMIN,
    PROVIDER_SET_ACL_MANAGER,
    PROVIDER_SET_POOL_CONFIGURATOR_IMPL,
    PROVIDER_SET_POOL_DATA_PROVIDER,
    PROVIDER_SET_POOL_IMPL,
    PROVIDER_SET_PRICE_ORACLE,
    load_artifact,
)
from devnet.oracles import (
    DEFAULT_LAYOUT,
    FEED,
    LST_SYMBOL,
    PriceSource,
    check_layout,
    deploy_mainnet_sources,
    feed_answer,
)
from devnet.rpc import RpcClient
from devnet.txs import Tx, mine_block

if TYPE_CHECKING:
    from devnet.deploy import Token  # only a type here: devnet.deploy imports this module

log = logging.getLogger("defimon.devnet")

MARKET_ID = "defimon devnet"
BASE_CURRENCY_UNIT = 10**8  # USD with 8 decimals, like Aave's markets on mainnet
BASE_CURRENCY = "0x" + "00" * 20  # USD: no token
RAY = 10**27

# symbol -> (LTV, liquidation threshold, liquidation bonus) in basis points
COLLATERAL_PARAMS: dict[str, tuple[int, int, int]] = {
    "WETH": (8000, 8250, 10500),
    "WBTC": (7000, 7500, 10650),
    "USDC": (7700, 8000, 10450),
    "DAI": (7500, 8000, 10500),
    LST_SYMBOL: (7850, 8100, 10600),  # the mainnet layout's LST (Ethereum's wstETH, 2025)
}
# the reserves of each layout, in the order they are initialized
LAYOUT_RESERVES: dict[str, tuple[str, ...]] = {
    "feeds": ("WETH", "WBTC", "USDC", "DAI"),
    "mainnet": ("WETH", "WBTC", "USDC", "DAI", LST_SYMBOL),
}
RESERVE_FACTOR = 1000  # 10% of the interest goes to the treasury
EMODE_CATEGORY = 1
EMODE_PARAMS = (9700, 9750, 10100)  # LTV, liquidation threshold, bonus
EMODE_LABEL = "stablecoins"
EMODE_ASSETS = ("USDC", "DAI")
# DefaultReserveInterestRateStrategy's 9 ray parameters: optimalUsageRatio, baseVariableBorrowRate,
# variableRateSlope1, variableRateSlope2, stableRateSlope1, stableRateSlope2,
# baseStableRateOffset, stableRateExcessOffset, optimalStableToTotalDebtRatio
_VOLATILE_RATES = (0.45, 0.0, 0.04, 3.0, 0.07, 3.0, 0.02, 0.05, 0.2)
_STABLE_RATES = (0.90, 0.0, 0.04, 0.6, 0.005, 0.6, 0.01, 0.08, 0.2)
STABLE_SYMBOLS = frozenset({"USDC", "DAI"})
LENDING_FUNDING_USD = 10_000_000  # minted to every wallet per token, on top of devnet.deploy's

_LIBRARIES = (
    "SupplyLogic",
    "BorrowLogic",
    "LiquidationLogic",
    "EModeLogic",
    "BridgeLogic",
    "PoolLogic",
    "ConfiguratorLogic",
)
# explicit gas limits (no estimation in batches), about 1.2x what each uses
_GAS_DEPLOY: dict[str, int] = {
    "PoolAddressesProvider": 2_700_000,
    "SupplyLogic": 4_200_000,
    "BorrowLogic": 6_000_000,
    "LiquidationLogic": 4_300_000,
    "EModeLogic": 1_500_000,
    "BridgeLogic": 2_400_000,
    "PoolLogic": 2_600_000,
    "ConfiguratorLogic": 2_400_000,
    "FlashLoanLogic": 3_000_000,
    "ACLManager": 2_000_000,
    "Pool": 5_700_000,
    "PoolConfigurator": 6_300_000,
    "PriceFeed": 700_000,
    "AaveProtocolDataProvider": 3_300_000,
    "DefaultReserveInterestRateStrategy": 900_000,
    "AaveOracle": 1_500_000,
    "AToken": 3_800_000,
    "StableDebtToken": 3_200_000,
    "VariableDebtToken": 2_800_000,
}
_GAS_SET_IMPL = 1_500_000  # the provider deploys the proxy and initializes it
_GAS_INIT_RESERVES_EACH = 3_000_000  # three token proxies per reserve: ~2.3M
_GAS_CONFIG_CALL = 300_000
_GAS_SMALL_CALL = 200_000
_GAS_TOKEN_CALL = 100_000  # mint, approve


@dataclass(frozen=True, slots=True)
class AaveReserve:
    asset: str
    a_token: str
    stable_debt_token: str
    variable_debt_token: str
    decimals: int


@dataclass(frozen=True, slots=True)
class AaveDeployment:
    pool: str  # the proxy
    pool_configurator: str  # the proxy
    oracle: str  # AaveOracle
    addresses_provider: str
    data_provider: str  # AaveProtocolDataProvider
    acl_manager: str
    # symbol -> PriceFeed (Chainlink-compatible, 8 decimals, USD), for the reserves priced by one
    feeds: dict[str, str]
    reserves: dict[str, AaveReserve]  # by symbol
    # symbol -> what AaveOracle reads for it (every reserve; a PriceFeed is kind "feed")
    sources: dict[str, PriceSource] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AaveDeployment:
        fields = dict(raw)
        fields["reserves"] = {
            symbol: AaveReserve(**reserve) for symbol, reserve in raw["reserves"].items()
        }
        fields["feeds"] = dict(raw["feeds"])
        fields["sources"] = {
            symbol: PriceSource.from_dict(source)
            for symbol, source in raw.get("sources", {}).items()
        } or {symbol: PriceSource(FEED, feed) for symbol, feed in raw["feeds"].items()}
        return cls(**fields)

    def reserve_by_asset(self, asset: str) -> tuple[str, AaveReserve]:
        """(symbol, reserve) of an underlying asset address."""
        for symbol, reserve in self.reserves.items():
            if reserve.asset == asset:
                return symbol, reserve
        raise KeyError(asset)


def deploy_aave(
    rpc_url: str,
    tokens: Mapping[str, Token],
    deployer: str,
    wallets: Sequence[str],
    prices: Mapping[str, Fraction] | None = None,
    layout: str = DEFAULT_LAYOUT,
) -> AaveDeployment:
    """Deploy the market for `tokens` (LAYOUT_RESERVES[layout]) from `deployer` (~0.2 s).

    `prices` (USD per token) default to `devnet.deploy.ALL_TOKEN_SPECS`, the same prices the
    Uniswap pools start at. The layout says what prices each reserve (devnet.oracles). Every
    wallet gets LENDING_FUNDING_USD of each token and approves the Pool. Leaves automine on.
    """
    check_layout(layout)
    if prices is None:
        from devnet.deploy import ALL_TOKEN_SPECS  # deferred: devnet.deploy imports this module

        prices = {symbol: spec[1] for symbol, spec in ALL_TOKEN_SPECS.items()}
    symbols = LAYOUT_RESERVES[layout]
    missing = set(symbols) - set(tokens)
    if missing:
        raise ValueError(f"the Aave market needs the tokens {sorted(missing)}")
    started = time.perf_counter()
    with RpcClient(rpc_url) as rpc:
        try:
            aave = _deploy(
                rpc, tokens, deployer.lower(), [w.lower() for w in wallets], prices, layout
            )
        finally:
            rpc.call("evm_setAutomine", [True])
    log.info(
        "deployed Aave V3 with %d reserves in %.2f s (pool %s)",
        len(aave.reserves),
        time.perf_counter() - started,
        aave.pool,
    )
    return aave


def _deploy(
    rpc: RpcClient,
    tokens: Mapping[str, Token],
    deployer: str,
    wallets: list[str],
    prices: Mapping[str, Fraction],
    layout: str,
) -> AaveDeployment:
    symbols = list(LAYOUT_RESERVES[layout])
    # the mainnet layout's proxy and adapter first (their own blocks); PriceFeeds for the rest
    sources = deploy_mainnet_sources(rpc, deployer, prices) if layout == "mainnet" else {}
    feed_symbols = [symbol for symbol in symbols if symbol not in sources]

    def create(name: str, types: tuple[str, ...] = (), args: tuple[Any, ...] = ()) -> Tx:
        artifact = load_artifact(name)
        if artifact.libraries:
            artifact = artifact.linked(libraries)
        return Tx(deployer, None, artifact.deploy_data(types, args), _GAS_DEPLOY[name])

    def call(to: str, data: str, gas: int = _GAS_SMALL_CALL) -> Tx:
        return Tx(deployer, to, data, gas)

    def created(receipts: list[dict[str, Any]]) -> list[str]:
        return [str(r["contractAddress"]).lower() for r in receipts if r["contractAddress"]]

    # block 1: the provider and the libraries that link nothing themselves
    libraries: dict[str, str] = {}
    receipts = mine_block(
        rpc,
        [
            create("PoolAddressesProvider", ("string", "address"), (MARKET_ID, deployer)),
            *(create(name) for name in _LIBRARIES),
        ],
    )
    provider, *library_addresses = created(receipts)
    libraries.update(zip(_LIBRARIES, library_addresses, strict=True))

    # block 2: FlashLoanLogic (links BorrowLogic), the configurator implementation, the feeds,
    # and the ACL admin, which ACLManager's constructor reads from the provider
    volatile_rates = tuple(round(Fraction(x) * RAY) for x in _VOLATILE_RATES)
    stable_rates = tuple(round(Fraction(x) * RAY) for x in _STABLE_RATES)
    rate_types = ("address", *("uint256",) * 9)
    receipts = mine_block(
        rpc,
        [
            create("FlashLoanLogic"),
            create("PoolConfigurator"),
            *(
                create(
                    "PriceFeed",
                    ("string", "int256"),
                    (f"{symbol} / USD", feed_answer(prices[symbol])),
                )
                for symbol in feed_symbols
            ),
            create("AaveProtocolDataProvider", ("address",), (provider,)),
            create("DefaultReserveInterestRateStrategy", rate_types, (provider, *volatile_rates)),
            create("DefaultReserveInterestRateStrategy", rate_types, (provider, *stable_rates)),
            call(provider, PROVIDER_SET_ACL_ADMIN.encode(deployer)),
        ],
    )
    flash_loan_logic, configurator_impl, *feed_list, data_provider, volatile, stable = created(
        receipts
    )
    libraries["FlashLoanLogic"] = flash_loan_logic
    feeds = dict(zip(feed_symbols, feed_list, strict=True))
    sources.update((symbol, PriceSource(FEED, feed)) for symbol, feed in feeds.items())
    sources = {symbol: sources[symbol] for symbol in symbols}
    strategy = {symbol: stable if symbol in STABLE_SYMBOLS else volatile for symbol in symbols}

    # block 3: ACL, the pool implementation, the oracle (sources given to the constructor),
    # and the wallets' lending funds
    assets = [tokens[symbol].address for symbol in symbols]
    txs = [
        create("ACLManager", ("address",), (provider,)),
        create("Pool", ("address",), (provider,)),
        create(
            "AaveOracle",
            ("address", "address[]", "address[]", "address", "address", "uint256"),
            (
                provider,
                assets,
                [source.address for source in sources.values()],
                BASE_CURRENCY,
                BASE_CURRENCY,
                BASE_CURRENCY_UNIT,
            ),
        ),
    ]
    for wallet in wallets:
        for symbol in symbols:
            token = tokens[symbol]
            amount = int(LENDING_FUNDING_USD * 10**token.decimals / prices[symbol])
            # the mocks let anyone mint, so the deployer mints straight to the wallet
            txs.append(call(token.address, ERC20_MINT.encode(wallet, amount), _GAS_TOKEN_CALL))
    acl_manager, pool_impl, oracle = created(mine_block(rpc, txs))

    # block 4: wire the provider; setPoolImpl creates the Pool proxy, and the configurator's
    # proxy initializer reads the pool from the provider, so the order matters
    mine_block(
        rpc,
        [
            call(provider, PROVIDER_SET_ACL_MANAGER.encode(acl_manager)),
            call(acl_manager, ACL_ADD_POOL_ADMIN.encode(deployer)),
            # the implementation is initialized too, so nobody else can
            call(pool_impl, AAVE_POOL_INITIALIZE.encode(provider), _GAS_CONFIG_CALL),
            call(provider, PROVIDER_SET_POOL_IMPL.encode(pool_impl), _GAS_SET_IMPL),
            call(
                provider,
                PROVIDER_SET_POOL_CONFIGURATOR_IMPL.encode(configurator_impl),
                _GAS_SET_IMPL,
            ),
            call(provider, PROVIDER_SET_PRICE_ORACLE.encode(oracle)),
            call(provider, PROVIDER_SET_POOL_DATA_PROVIDER.encode(data_provider)),
        ],
    )
    pool_answer, configurator_answer = rpc.batch(
        ("eth_call", [{"to": provider, "data": fn.encode()}, "latest"])
        for fn in (PROVIDER_GET_POOL, PROVIDER_GET_POOL_CONFIGURATOR)
    )
    pool = PROVIDER_GET_POOL.decode(pool_answer)[0].lower()
    configurator = PROVIDER_GET_POOL_CONFIGURATOR.decode(configurator_answer)[0].lower()

    # block 5: token implementations (they take the Pool proxy) and the wallets' approvals
    txs = [
        create("AToken", ("address",), (pool,)),
        create("StableDebtToken", ("address",), (pool,)),
        create("VariableDebtToken", ("address",), (pool,)),
    ]
    txs += [
        Tx(wallet, tokens[symbol].address, ERC20_APPROVE.encode(pool, MAX_UINT256), _GAS_TOKEN_CALL)
        for wallet in wallets
        for symbol in symbols
    ]
    a_token_impl, stable_impl, variable_impl = created(mine_block(rpc, txs))

    # block 6: the reserves and their risk parameters
    inputs = [
        (
            a_token_impl,
            stable_impl,
            variable_impl,
            tokens[symbol].decimals,
            strategy[symbol],
            tokens[symbol].address,
            deployer,  # treasury: any address; it only receives the reserve factor's share
            BASE_CURRENCY,  # no incentives controller
            f"Aave devnet {symbol}",
            f"a{symbol}",
            f"Aave devnet variable debt {symbol}",
            f"variableDebt{symbol}",
            f"Aave devnet stable debt {symbol}",
            f"stableDebt{symbol}",
            b"",
        )
        for symbol in symbols
    ]
    ltv, threshold, bonus = EMODE_PARAMS
    txs = [
        call(
            configurator,
            CONFIGURATOR_INIT_RESERVES.encode(inputs),
            _GAS_INIT_RESERVES_EACH * len(inputs),
        ),
        # no price source of its own: the category uses the assets' oracle prices
        call(
            configurator,
            CONFIGURATOR_SET_EMODE_CATEGORY.encode(
                EMODE_CATEGORY, ltv, threshold, bonus, BASE_CURRENCY, EMODE_LABEL
            ),
            _GAS_CONFIG_CALL,
        ),
    ]
    for symbol in symbols:
        address = tokens[symbol].address
        txs += [
            call(
                configurator,
                CONFIGURATOR_CONFIGURE_COLLATERAL.encode(address, *COLLATERAL_PARAMS[symbol]),
                _GAS_CONFIG_CALL,
            ),
            call(configurator, CONFIGURATOR_SET_BORROWING.encode(address, True), _GAS_CONFIG_CALL),
            call(
                configurator,
                CONFIGURATOR_SET_RESERVE_FACTOR.encode(address, RESERVE_FACTOR),
                _GAS_CONFIG_CALL,
            ),
        ]
    # after the collateral parameters: the category's threshold must exceed the asset's
    txs += [
        call(
            configurator,
            CONFIGURATOR_SET_ASSET_EMODE.encode(tokens[symbol].address, EMODE_CATEGORY),
            _GAS_CONFIG_CALL,
        )
        for symbol in EMODE_ASSETS
    ]
    mine_block(rpc, txs)

    answers = rpc.batch(
        (
            "eth_call",
            [
                {"to": data_provider, "data": DATA_PROVIDER_RESERVE_TOKENS.encode(asset)},
                "latest",
            ],
        )
        for asset in assets
    )
    reserves = {}
    for symbol, answer in zip(symbols, answers, strict=True):
        a_token, stable_debt, variable_debt = DATA_PROVIDER_RESERVE_TOKENS.decode(answer)
        reserves[symbol] = AaveReserve(
            asset=tokens[symbol].address,
            a_token=a_token.lower(),
            stable_debt_token=stable_debt.lower(),
            variable_debt_token=variable_debt.lower(),
            decimals=tokens[symbol].decimals,
        )
    return AaveDeployment(
        pool=pool,
        pool_configurator=configurator,
        oracle=oracle,
        addresses_provider=provider,
        data_provider=data_provider,
        acl_manager=acl_manager,
        feeds=feeds,
        reserves=reserves,
        sources=sources,
    )
