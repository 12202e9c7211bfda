"""Response models of the HTTP API (they document /openapi.json)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong, in words")


class TokenRef(BaseModel):
    address: str
    symbol: str
    decimals: int


class PositionOut(BaseModel):
    id: str = Field(description="chain_id:position_manager:token_id")
    protocol: str
    chain_id: int
    position_manager: str
    token_id: str
    owner: str
    pool: str
    fee: int = Field(description="Pool fee in hundredths of a basis point (500 = 0.05%)")
    token0: TokenRef
    token1: TokenRef
    tick_lower: int
    tick_upper: int
    tick: int = Field(description="The pool's current tick")
    liquidity: str = Field(description="Raw on-chain integer, as a decimal string")
    amount0: str = Field(description="Raw token0 amount the position holds, as a decimal string")
    amount1: str = Field(description="Raw token1 amount the position holds, as a decimal string")
    in_range: bool
    deposited0: str
    deposited1: str
    withdrawn0: str
    withdrawn1: str
    collected0: str
    collected1: str
    burned: bool
    price0_usd: float | None
    price1_usd: float | None
    value_usd: float | None
    hodl_usd: float | None = Field(description="Value of holding the net deposits instead")
    il_usd: float | None = Field(description="value_usd - hodl_usd, fees excluded")
    il_pct: float | None = Field(description="il_usd / hodl_usd")
    uncollected0: str | None = Field(
        description="What collect(max, max) pays now in token0: fees plus withdrawn principal"
    )
    uncollected1: str | None
    uncollected_usd: float | None
    updated_block: int | None = Field(description="Block of the position's last own event")
    block_number: int = Field(description="The block these numbers are as of")
    block_hash: str
    block_time: str


class AsOfOut(BaseModel):
    chain_id: int
    block_number: int
    block_hash: str | None
    block_time: str | None


class LendingReserveOut(BaseModel):
    asset: str
    symbol: str
    decimals: int
    supplied: str = Field(description="Underlying units, accrued to the block")
    debt: str = Field(description="Variable plus stable debt, accrued to the block")
    collateral: bool
    price: str = Field(description="Oracle price, base currency with 8 decimals")
    price_usd: float
    supplied_usd: float
    debt_usd: float
    liquidation_price: str | None = Field(
        description="The price of this collateral at which the health factor reaches 1"
    )
    liquidation_price_usd: float | None


class AccountOut(BaseModel):
    id: str = Field(description="chain_id:pool:owner")
    protocol: str
    chain_id: int
    pool: str
    owner: str
    emode: int
    total_collateral_base: str = Field(description="As getUserAccountData: 8-decimal USD")
    total_debt_base: str
    collateral_usd: float
    debt_usd: float
    value_usd: float = Field(description="Collateral minus debt")
    avg_ltv: int
    avg_liquidation_threshold: int
    health_factor: str = Field(description="Wad (1e18 = 1.0); 2^256-1 without debt")
    health_factor_float: float | None
    reserves: list[LendingReserveOut]
    updated_block: int | None
    block_number: int
    block_hash: str
    block_time: str


class BalanceOut(BaseModel):
    chain_id: int
    wallet: str
    token: str = Field(description="The ERC-20's address")
    symbol: str
    decimals: int
    amount: str = Field(description="Raw balanceOf, as a decimal string")
    price_usd: float | None = Field(description="USD per whole token at the block")
    value_usd: float | None
    price_source: str | None = Field(description="A feed, the pool of the last hop, or usd")
    price_block: int | None = Field(description="The block the price was set at")
    updated_block: int | None = Field(description="The block the balance last changed at")
    block_number: int = Field(description="The block these numbers are as of")
    block_hash: str
    block_time: str


class PortfolioOut(BaseModel):
    address: str
    as_of: AsOfOut
    total_usd: float = Field(description="Positions plus lending plus token balances")
    balances_usd: float = Field(description="The token balances' part of the total")
    positions: list[PositionOut]
    lending: list[AccountOut]
    balances: list[BalanceOut] = Field(description="ERC-20 balances (zeros omitted)")


class PositionsPage(BaseModel):
    as_of: AsOfOut
    positions: list[PositionOut]
    next_cursor: str | None = Field(description="Pass as cursor= for the next page")


class ChainStatusOut(BaseModel):
    chain_id: int
    name: str
    head: int | None
    processed: int | None
    lag_blocks: int | None
    live: bool


class HealthOut(BaseModel):
    status: str
    flow_running: bool
    error: str | None = None


class ReadyOut(BaseModel):
    ready: bool
    chains: list[ChainStatusOut]


class MetaOut(BaseModel):
    version: str
    store: str
    chains: list[ChainStatusOut]
    suggested_wallets: list[str]
