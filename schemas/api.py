"""Response models of the HTTP API (they document /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
    # None where the token has no USD price (a Morpho market's loan token no route reaches)
    price_usd: float | None
    supplied_usd: float | None
    debt_usd: float | None
    liquidation_price: str | None = Field(
        description="The price of this collateral at which the health factor reaches 1"
    )
    liquidation_price_usd: float | None
    price_stale: str | None = Field(
        None, description="Why the price is not current (its source could not be read)"
    )


class AccountOut(BaseModel):
    """A lending account (Aave V3, Compound V3, Morpho Blue). A protocol's own fields beyond
    these pass through as its wire model has them (Morpho Blue's, schemas/morpho.py: morpho,
    market, lltv, oracle, irm, supply_shares, borrow_shares, max_borrow, rate_exact)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="chain_id:pool:owner (pool: the Aave pool or the comet)")
    protocol: str
    chain_id: int
    pool: str
    owner: str
    emode: int
    total_collateral_base: str = Field(description="As getUserAccountData: 8-decimal USD")
    total_debt_base: str
    collateral_usd: float | None
    debt_usd: float | None
    value_usd: float | None = Field(
        description="Collateral (and supply) minus debt; None without a USD price"
    )
    avg_ltv: int
    avg_liquidation_threshold: int
    health_factor: str = Field(description="Wad (1e18 = 1.0); 2^256-1 without debt")
    health_factor_float: float | None
    reserves: list[LendingReserveOut]
    stale: list[str] | None = Field(
        None,
        description="'SYMBOL: reason' for each held reserve whose oracle source could not be "
        "read; the figures then use its last good price. None: every price is current",
    )
    updated_block: int | None
    block_number: int
    block_hash: str
    block_time: str
    # Compound V3 only (None for Aave).
    base_principal: str | None = Field(
        None, description="Comet: the signed base principal (userBasic), as a decimal string"
    )
    is_liquidatable: bool | None = Field(
        None, description="Comet: isLiquidatable at the block (stored indices)"
    )
    absorbable: bool | None = Field(
        None, description="Comet: the same test after accrual to the block time (absorb's)"
    )


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
    chains: list[AsOfOut] = Field(
        default_factory=list,
        description="The block each chain is answered at (as_of is the first of them)",
    )
    total_usd: float = Field(
        description="Positions plus lending plus token balances, summed over the chains"
    )
    balances_usd: float = Field(description="The token balances' part of the total")
    positions: list[PositionOut]
    lending: list[AccountOut]
    balances: list[BalanceOut] = Field(description="ERC-20 balances (zeros omitted)")


class StressedAccountOut(BaseModel):
    """A lending account now and under the scenario, and how far it is from liquidation."""

    id: str
    protocol: str
    chain_id: int
    pool: str
    owner: str
    shocks_bps: dict[str, int] = Field(
        description="The move applied to each of its reserves' prices (basis points)"
    )
    now: AccountOut
    stressed: AccountOut = Field(
        description="Valued with the shocked oracle prices, interest accrued horizon further"
    )
    liquidatable: bool = Field(description="Health factor below 1 under the scenario")
    liquidation_drop_bps: int | None = Field(
        description="The smallest uniform drop of its collateral assets' prices (basis points, "
        "from the block's prices) at which it becomes liquidatable; 0: it already is; None: "
        "no debt, or not even at -99.99%"
    )
    time_to_liquidation_seconds: int | None = Field(
        description="With the block's prices held, seconds of interest until it becomes "
        "liquidatable; None: no debt, or not within 100 years"
    )


class StressedPositionOut(BaseModel):
    """An LP position now and with its pool moved to the shocked ratio of its tokens."""

    id: str
    protocol: str
    chain_id: int
    pool: str
    owner: str
    shocks_bps: dict[str, int] = Field(description="The move applied to each token (basis points)")
    pool_sqrt_price_x96: str | None = Field(
        description="The pool's sqrtPriceX96 at the shocked ratio: a swap with this "
        "sqrtPriceLimitX96 leaves the pool there"
    )
    pool_tick: int | None
    now: PositionOut
    stressed: PositionOut = Field(
        description="Amounts, range, value and IL at the shocked pool price and token prices; "
        "uncollected fees as at the block"
    )


class StressedBalanceOut(BaseModel):
    """A token balance now and with its token's USD price moved by the shock."""

    id: str
    protocol: str
    chain_id: int
    token: str
    owner: str
    shocks_bps: dict[str, int]
    now: BalanceOut
    stressed: BalanceOut


class MoveOut(BaseModel):
    asset: str
    symbol: str
    decimals: int
    amount: str | None = Field(
        description="The smallest amount (token units) that reaches the target; None: this "
        "move alone cannot"
    )
    amount_usd: float | None
    price: str = Field(
        description="The oracle price it was valued at (Aave: 8-decimal USD; Morpho Blue: the "
        "market oracle's, loan per collateral at 1e36, 1e36 for the loan token itself)"
    )
    enough: bool
    limit: str | None = Field(description="For a repayment: the debt, the most it can be")


class AccountAdviceOut(BaseModel):
    id: str
    protocol: str
    chain_id: int
    pool: str
    owner: str
    block_number: int
    valued_at: int = Field(description="The unix time the account is valued at")
    health_factor: str = Field(description="Wad, at valued_at")
    target: str
    below_target: bool
    repay: list[MoveOut]
    add_collateral: list[MoveOut]


class AdviceOut(BaseModel):
    address: str
    as_of: AsOfOut
    chains: list[AsOfOut]
    target: str = Field(description="Wad (1e18 = 1.0)")
    horizon_seconds: int
    not_advised: list[str] = Field(description="Protocols with no answers here yet")
    lending: list[AccountAdviceOut]
    positions: list[dict[str, Any]]


class StressOut(BaseModel):
    address: str
    as_of: AsOfOut
    chains: list[AsOfOut]
    shock: dict[str, int] = Field(
        description="Basis points by asset (lower-case symbol or address); '*': every other "
        "asset that is not a stablecoin"
    )
    horizon_seconds: int
    not_stressed: list[str] = Field(description="Protocols whose subjects are not stressed yet")
    value_usd: float = Field(
        description="Positions, lending and balances now (what /v1/portfolio's total_usd sums)"
    )
    stressed_value_usd: float = Field(description="The same under the scenario")
    liquidatable: int = Field(description="Accounts liquidatable under the scenario")
    positions: list[StressedPositionOut]
    lending: list[StressedAccountOut]
    balances: list[StressedBalanceOut]


class OhlcOut(BaseModel):
    open: float | None
    high: float | None
    low: float | None
    close: float | None


class WindowOut(BaseModel):
    id: str = Field(description="Position or lending account id")
    protocol: str
    chain_id: int
    owner: str
    window: str = Field(description="1m, 1h or 1d")
    start: str = Field(description="Window start (inclusive), ISO-8601 UTC")
    end: str = Field(description="Window end (exclusive), ISO-8601 UTC")
    value_usd: OhlcOut
    il_usd: OhlcOut = Field(description="Impermanent loss against holding (LP positions)")
    health_factor: OhlcOut = Field(description="Lending accounts; null without debt")
    fees_earned0: str | None = Field(description="LP fees earned in the window, raw token0")
    fees_earned1: str | None = Field(description="LP fees earned in the window, raw token1")
    fees_earned_usd: float | None = Field(description="At the window's closing prices")
    close_block: int = Field(description="The last block of the window: what was observed")
    close_block_hash: str


class WalletWindowOut(BaseModel):
    start: str
    end: str
    value_open_usd: float | None = Field(description="Sum over the wallet's subjects")
    value_close_usd: float | None
    subjects: int = Field(description="Positions and accounts the sum covers")


class WalletHistoryOut(BaseModel):
    address: str
    window: str
    windows: list[WalletWindowOut]
    truncated: bool


class HistoryOut(BaseModel):
    id: str
    window: str
    windows: list[WindowOut]
    truncated: bool = Field(description="More windows match; narrow from/to or raise limit")


class ChangeParts(BaseModel):
    price: float = Field(description="Market moves (for LPs, impermanent loss included)")
    interest: float = Field(description="Lending interest earned (+) or owed (-)")
    fees: float = Field(description="LP fees earned")
    actions: float = Field(description="The owner's own deposits, withdrawals, transfers")


class SubjectChangeOut(ChangeParts):
    id: str
    protocol: str
    value_from: float
    value_to: float
    change: float


class DiffOut(BaseModel):
    address: str
    from_: AsOfOut = Field(alias="from")
    to: AsOfOut
    value_from: float
    value_to: float
    change: float
    explained: ChangeParts = Field(description="Sums exactly to `change`")
    subjects: list[SubjectChangeOut]


class GroupOut(BaseModel):
    key: dict[str, str | int | None] = Field(description="The group's value per dimension")
    metrics: dict[str, float | int | None] = Field(description="Metric name -> value")


class AggregateOut(BaseModel):
    as_of: AsOfOut
    chains: list[AsOfOut] = Field(
        default_factory=list,
        description="The block each chain is answered at (as_of is the first of them)",
    )
    group_by: list[str]
    groups: list[GroupOut]


class PositionsPage(BaseModel):
    as_of: AsOfOut
    chains: list[AsOfOut] = Field(
        default_factory=list,
        description="The block each chain is answered at (as_of is the first of them)",
    )
    positions: list[PositionOut | AccountOut] = Field(
        description="LP positions (protocol uniswap_v3) and lending accounts (aave_v3)"
    )
    next_cursor: str | None = Field(description="Pass as cursor= for the next page")


class ChainStatusOut(BaseModel):
    chain_id: int
    name: str
    first_block: int | None = Field(None, description="The first indexed block")
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


class SqlIn(BaseModel):
    sql: str = Field(
        min_length=1,
        max_length=100_000,
        description="One read-only statement: SELECT, WITH … SELECT, DESCRIBE, SHOW or EXPLAIN",
        examples=["SELECT pool, symbol0, symbol1 FROM defimon.position_versions FINAL LIMIT 5"],
    )
    format: Literal["json", "csv", "arrow", "parquet"] = Field(
        "json",
        description="json (this model), csv (text/csv with a header), arrow "
        "(application/vnd.apache.arrow.stream) or parquet (application/vnd.apache.parquet)",
    )


class SqlColumnOut(BaseModel):
    name: str
    type: str = Field(description="The ClickHouse type, e.g. UInt256")


class SqlResultOut(BaseModel):
    columns: list[SqlColumnOut]
    rows: list[list[Any]] = Field(
        description="Row-major values; integers beyond 2^53 and decimals as strings, "
        "times as ISO-8601"
    )
    rows_read: int | None = Field(description="Rows ClickHouse read to answer, when reported")
    elapsed_ms: float
