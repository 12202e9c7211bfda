"""The Comet fold against the documented worked example and Comet's own math.

Comet cannot run on the devnet (no package ships its bytecode), so the fold is fed what the
reader would put on the block batches: logs ABI-encoded from Comet's event signatures, and
end-of-block reads (`totalsBasic`, `userBasic`, `userCollateral`, `getPrice`) built with
`protocols/compound_v3/math.py`, whose results are checked against Comet's published test cases in
test_compound_math.py. The scenario is the worked example of the notes (woof-software/comet
docs/liquidation.md): 10 WETH at $2,000, liquidateCF 0.85, 15,000 USDC of debt → HF 1.133;
at $1,700 → 0.963; liquidation price $1,764.71; then absorb and buyCollateral.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_abi import encode
from eth_utils import keccak

from flows.market import MarketState, market_step
from flows.rows import COLUMNS, market_rows
from protocols.compound_v3 import events as ev
from protocols.compound_v3 import math as cm
from protocols.compound_v3.plugin import CometPart
from protocols.compound_v3.reader import silent_accrual
from protocols.compound_v3.state import CometMarket, CometOutput, rate_params, value_comet_account
from schemas.api import AccountOut
from schemas.chain import BlockBatch, BlockHeader, RawLog, TokenInfo
from schemas.comet import (
    MAX_UINT256,
    CometAccount,
    CometAssetInfo,
    CometConfig,
    CometReads,
    CometTotalsBasic,
    CometUserBasic,
)
from schemas.positions import BlockRef

CHAIN = 1
COMET = "0xc3d688b66703497daa19211eedff47f25384cdc3"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
USDC_FEED = "0x8fffffd4afb6115b954bd326cbe7b4ba576818f6"
WETH_FEED = "0x5f4ec3df9cbd43714fe2740f5e3616155c5b8419"
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
CAROL = "0x" + "ca" * 20
ZERO = "0x" + "00" * 20
IDX = cm.BASE_INDEX_SCALE
E18 = 10**18
USD = 10**8
TOKENS = {USDC: TokenInfo(USDC, "USDC", 6), WETH: TokenInfo(WETH, "WETH", 18)}

WETH_INFO = CometAssetInfo(
    offset=0,
    asset=WETH,
    price_feed=WETH_FEED,
    scale=E18,
    borrow_collateral_factor=80 * 10**16,
    liquidate_collateral_factor=85 * 10**16,
    liquidation_factor=93 * 10**16,
    supply_cap=100_000 * E18,
)


def config(rates: cm.InterestRateParams | None = None) -> CometConfig:
    """A USDC comet with WETH collateral; no interest unless rates are given."""
    r = rates or cm.InterestRateParams(0, 0, 0, 0, 0, 0, 0, 0)
    return CometConfig(
        comet=COMET,
        base_token=USDC,
        base_token_price_feed=USDC_FEED,
        base_scale=10**6,
        supply_kink=r.supply_kink,
        supply_per_second_interest_rate_base=r.supply_per_second_interest_rate_base,
        supply_per_second_interest_rate_slope_low=r.supply_per_second_interest_rate_slope_low,
        supply_per_second_interest_rate_slope_high=r.supply_per_second_interest_rate_slope_high,
        borrow_kink=r.borrow_kink,
        borrow_per_second_interest_rate_base=r.borrow_per_second_interest_rate_base,
        borrow_per_second_interest_rate_slope_low=r.borrow_per_second_interest_rate_slope_low,
        borrow_per_second_interest_rate_slope_high=r.borrow_per_second_interest_rate_slope_high,
        store_front_price_factor=60 * 10**16,
        base_borrow_min=100 * 10**6,
        assets=(WETH_INFO,),
    )


def totals(supply: int, borrow: int, at: int, si: int = IDX, bi: int = IDX) -> CometTotalsBasic:
    return CometTotalsBasic(si, bi, 0, 0, supply, borrow, at, 0)


def indexed(address: str) -> str:
    return "0x" + encode(["address"], [address]).hex()


def comet_log(
    number: int,
    index: int,
    signature: str,
    topics: list[str],
    types: list[str],
    values: list,
    tx: int = 0,
) -> RawLog:
    """A comet log; the block's logs share one transaction unless `tx` says otherwise."""
    t0 = "0x" + keccak(text=signature).hex()
    data = "0x" + encode(types, values).hex()
    return RawLog(
        CHAIN, number, f"0x{number:064x}", index, f"0x{number:062x}{tx:02x}", 0, COMET,
        (t0, *topics), data,
    )  # fmt: skip


def batch(number: int, logs: list[RawLog], reads: CometReads | None) -> BlockBatch:
    header = BlockHeader(CHAIN, number, f"0x{number:064x}", f"0x{number - 1:064x}", ts(number))
    b = BlockBatch(header, logs, number, True, dict(TOKENS))
    if reads is not None:
        b.reads["compound_v3"] = {COMET: reads}
    return b


def ts(number: int) -> int:
    return 1_700_000_000 + 12 * number


def ref(number: int) -> BlockRef:
    return BlockRef(CHAIN, number, f"0x{number:064x}", ts(number))


def prices(weth: int) -> dict[str, int]:
    return {USDC_FEED: USD, WETH_FEED: weth}


def weth(balance: int, price: int) -> cm.CometCollateral:
    return cm.CometCollateral(
        balance, price, E18, WETH_INFO.liquidate_collateral_factor,
        WETH_INFO.borrow_collateral_factor, WETH_INFO.liquidation_factor, WETH,
    )  # fmt: skip


@dataclass
class Scenario:
    """The worked example as block batches, and what Comet's math says about each."""

    batches: list[BlockBatch] = field(default_factory=list)
    absorb: cm.AbsorbResult | None = None
    bought: int = 0


def worked_example(rates: cm.InterestRateParams | None = None) -> Scenario:
    s = Scenario()
    ten = 10 * E18
    debt = 15_000 * 10**6
    # 1: Alice supplies 10 WETH of collateral.
    s.batches.append(
        batch(
            1,
            [
                comet_log(
                    1,
                    0,
                    "SupplyCollateral(address,address,address,uint256)",
                    [indexed(ALICE), indexed(ALICE), indexed(WETH)],
                    ["uint256"],
                    [ten],
                )
            ],
            CometReads(
                config=config(rates),
                totals=totals(0, 0, ts(1)),
                users={ALICE: CometUserBasic(0, 0, 0, 0b1)},
                collateral={(ALICE, WETH): ten},
                prices=prices(2_000 * USD),
            ),
        )
    )
    # 2: she borrows 15,000 USDC (withdraw of base beyond her supply).
    s.batches.append(
        batch(
            2,
            [
                comet_log(
                    2,
                    4,
                    "Withdraw(address,address,uint256)",
                    [indexed(ALICE), indexed(ALICE)],
                    ["uint256"],
                    [debt],
                )
            ],
            CometReads(
                totals=totals(0, debt, ts(2)),
                users={ALICE: CometUserBasic(-debt, 0, 0, 0b1)},
                prices=prices(2_000 * USD),
            ),
        )
    )
    # 3: no comet log; WETH falls to $1,700 (checkpoint read).
    s.batches.append(
        batch(3, [], CometReads(totals=totals(0, debt, ts(2)), prices=prices(1_700 * USD)))
    )
    # 4: Bob absorbs her: AbsorbCollateral per asset, then AbsorbDebt, then the Transfer of
    #    the base balance she is left with (Comet.absorbInternal's order).
    r = cm.absorb(-debt, IDX, IDX, USD, 10**6, [weth(ten, 1_700 * USD)])
    s.absorb = r
    s.batches.append(
        batch(
            4,
            [
                comet_log(
                    4,
                    1,
                    "AbsorbCollateral(address,address,address,uint256,uint256)",
                    [indexed(BOB), indexed(ALICE), indexed(WETH)],
                    ["uint256", "uint256"],
                    [r.collaterals[0].collateral_absorbed, r.collaterals[0].usd_value],
                ),
                comet_log(
                    4,
                    2,
                    "AbsorbDebt(address,address,uint256,uint256)",
                    [indexed(BOB), indexed(ALICE)],
                    ["uint256", "uint256"],
                    [r.base_paid_out, r.usd_value],
                ),
                comet_log(
                    4,
                    3,
                    "Transfer(address,address,uint256)",
                    [indexed(ZERO), indexed(ALICE)],
                    ["uint256"],
                    [cm.present_value(r.new_principal, IDX, IDX)],
                ),
            ],
            CometReads(
                totals=totals(r.supply_amount, debt - r.repay_amount, ts(4)),
                users={ALICE: CometUserBasic(r.new_principal, 0, 0, 0)},
                collateral={(ALICE, WETH): 0},
                prices=prices(1_700 * USD),
            ),
        )
    )
    # 5: Carol buys the seized WETH with 1,000 USDC at the store-front discount.
    s.bought = cm.quote_collateral(
        1_000 * 10**6,
        asset_price=1_700 * USD,
        base_price=USD,
        asset_scale=E18,
        base_scale=10**6,
        liquidation_factor=WETH_INFO.liquidation_factor,
        store_front_price_factor=config().store_front_price_factor,
    )
    s.batches.append(
        batch(
            5,
            [
                comet_log(
                    5,
                    0,
                    "BuyCollateral(address,address,uint256,uint256)",
                    [indexed(CAROL), indexed(WETH)],
                    ["uint256", "uint256"],
                    [1_000 * 10**6, s.bought],
                )
            ],
            CometReads(
                totals=totals(r.supply_amount, debt - r.repay_amount, ts(5)),
                prices=prices(1_700 * USD),
            ),
        )
    )
    return s


def run(batches: list[BlockBatch]) -> tuple[CometMarket, list[CometOutput]]:
    market = CometMarket(CHAIN, (COMET,))
    outs = [market.step(b, ref(b.header.number), TOKENS) for b in batches]
    return market, outs


def test_worked_example_health_factor_and_liquidation_price() -> None:
    _, outs = run(worked_example().batches)
    [supplied] = outs[0].updates
    assert supplied.value.health_factor == MAX_UINT256  # no debt
    assert supplied.value.collateral_value == 20_000 * USD
    assert supplied.config.assets[0].symbol == "WETH" and supplied.config.base_symbol == "USDC"

    [borrowed] = outs[1].updates
    v = borrowed.value
    assert v.borrowed == 15_000 * 10**6 and v.debt_value == 15_000 * USD
    assert v.health_factor == 1_133_333_333_333_333_333  # 17,000 / 15,000
    assert round(v.health_factor / E18, 3) == 1.133
    assert v.collaterals[0].liquidation_price == 176_470_588_236  # $1,764.70588236
    assert round(v.collaterals[0].liquidation_price / USD, 2) == 1764.71
    assert v.is_liquidatable is False and v.absorbable is False

    [dropped] = outs[2].updates
    d = dropped.value
    assert d.health_factor == 963_333_333_333_333_333  # 14,450 / 15,000
    assert round(d.health_factor / E18, 3) == 0.963
    assert d.is_liquidatable is True and d.absorbable is True
    # The same numbers from Comet's math directly.
    collateral = [weth(10 * E18, 1_700 * USD)]
    assert d.is_liquidatable == cm.is_liquidatable(
        -15_000 * 10**6, IDX, IDX, USD, 10**6, collateral, skip_zero_lcf=True
    )
    assert d.health_factor == cm.health_factor(-15_000 * 10**6, IDX, IDX, USD, 10**6, collateral)
    # The liquidation price is where the health factor crosses 1.
    at = d.collaterals[0].liquidation_price
    assert at == v.collaterals[0].liquidation_price
    assert at is not None
    assert cm.is_liquidatable(
        -15_000 * 10**6, IDX, IDX, USD, 10**6, [weth(10 * E18, at - 1)], skip_zero_lcf=True
    )
    assert not cm.is_liquidatable(
        -15_000 * 10**6, IDX, IDX, USD, 10**6, [weth(10 * E18, at)], skip_zero_lcf=True
    )


def test_versions_carry_the_event_and_the_end_of_block_state() -> None:
    s = worked_example()
    _, outs = run(s.batches)
    [v1] = outs[0].versions
    assert (v1.event, v1.asset, v1.amount, v1.account.collateral) == (
        "supply_collateral",
        WETH,
        10 * E18,
        {WETH: 10 * E18},
    )
    [v2] = outs[1].versions
    assert (v2.event, v2.asset, v2.account.principal) == ("withdraw", "", -15_000 * 10**6)
    assert outs[2].versions == []
    # Absorb: two versions (the zero-address Transfer mirrors the absorb, no third one).
    assert s.absorb is not None
    events = [(v.event, v.asset, v.amount, v.counterparty) for v in outs[3].versions]
    assert events == [
        ("absorb_collateral", WETH, 10 * E18, BOB),
        ("absorb_debt", "", s.absorb.base_paid_out, BOB),
    ]
    assert outs[3].versions[-1].account.principal == s.absorb.new_principal == 810 * 10**6
    assert outs[3].versions[-1].account.collateral == {}


def test_absorb_and_buy_collateral_are_recorded_as_liquidations() -> None:
    s = worked_example()
    _, outs = run(s.batches)
    assert s.absorb is not None
    recorded = [
        (x.kind, x.actor, x.borrower, x.asset, x.amount, x.value) for x in outs[3].liquidations
    ]
    assert recorded == [
        ("absorb_collateral", BOB, ALICE, WETH, 10 * E18, 17_000 * USD),
        ("absorb_debt", BOB, ALICE, "", 15_810 * 10**6, 15_810 * USD),
    ]
    [after] = outs[3].updates
    assert after.value.supplied == 810 * 10**6  # 0.93 x $17,000 - $15,000 left to her
    assert after.value.health_factor == MAX_UINT256 and after.value.is_liquidatable is False
    [sale] = outs[4].liquidations
    assert (sale.kind, sale.actor, sale.asset, sale.amount, sale.value) == (
        "buy_collateral",
        CAROL,
        WETH,
        1_000 * 10**6,
        s.bought,
    )
    # quoteCollateral: $1,700 less 0.6 x (1 - 0.93) = 4.2%, so 1,000 / 1,628.6 WETH.
    assert s.bought == USD * 1_000 * 10**6 * E18 // (162_860 * 10**6) // 10**6
    assert s.bought == 614_024_315_362_888_370  # ≈ 1,000 / 1,628.6 WETH


def test_interest_accrues_to_the_block_time_between_reads() -> None:
    rates = cm.InterestRateParams.from_per_year(
        supply_kink=8 * 10**17,
        supply_per_year_interest_rate_base=0,
        supply_per_year_interest_rate_slope_low=4 * 10**16,
        supply_per_year_interest_rate_slope_high=2 * E18,
        borrow_kink=8 * 10**17,
        borrow_per_year_interest_rate_base=1 * 10**16,
        borrow_per_year_interest_rate_slope_low=5 * 10**16,
        borrow_per_year_interest_rate_slope_high=3 * E18,
    )
    cfg = config(rates)
    stored = totals(20_000 * 10**6, 16_900 * 10**6, 1_000, IDX + 12_345, IDX + 67_890)
    borrower = CometAccount(CHAIN, COMET, ALICE, "a", -16_900 * 10**6, 0b1, {WETH: 10 * E18})
    year_later = 1_000 + cm.SECONDS_PER_YEAR
    value = value_comet_account(borrower, cfg, stored, prices(2_000 * USD), year_later)
    math_totals = cm.CometTotals(
        stored.base_supply_index,
        stored.base_borrow_index,
        stored.total_supply_base,
        stored.total_borrow_base,
        stored.last_accrual_time,
    )
    params = rate_params(cfg)
    assert params == rates
    assert value.borrowed == cm.borrow_balance_of(-16_900 * 10**6, math_totals, params, year_later)
    assert value.borrowed > 16_900 * 10**6 * (IDX + 67_890) // IDX
    # isLiquidatable reads the stored indices (as the view does at this block); absorb
    # accrues first, and after a year of interest the same account is under water.
    assert value.is_liquidatable is False
    assert value.absorbable is True
    assert value.health_factor < E18
    supplier = CometAccount(CHAIN, COMET, BOB, "b", 20_000 * 10**6)
    supplied = value_comet_account(supplier, cfg, stored, prices(2_000 * USD), year_later)
    assert supplied.supplied == cm.balance_of(20_000 * 10**6, math_totals, params, year_later)
    assert supplied.supplied > 20_000 * 10**6 and supplied.health_factor == MAX_UINT256


def test_events_without_their_reads_and_bad_logs_are_dead_letters() -> None:
    s = worked_example()
    supply = comet_log(
        6, 0, "Supply(address,address,uint256)", [indexed(BOB), indexed(BOB)], ["uint256"], [5]
    )
    bad = comet_log(6, 1, "Supply(address,address,uint256)", [indexed(BOB)], ["uint256"], [5])
    reads = CometReads(totals=totals(0, 0, ts(6)), errors=["userBasic(0xb0…): timeout"])
    _market, outs = run([*s.batches, batch(6, [supply, bad], reads)])
    dead = outs[-1].dead
    assert [(lg.log_index, why) for lg, why in dead] == [
        (0, f"no userBasic({BOB}) read at this block (read errors: userBasic(0xb0…): timeout)"),
        (1, "2 topics, expected 3"),
    ]
    assert outs[-1].versions == []


def test_market_step_hook_and_rows() -> None:
    state = MarketState(
        CHAIN, (), 2, parts={"compound_v3": CometPart(CometMarket(CHAIN, (COMET,)))}
    )
    s = worked_example()
    bad = comet_log(2, 9, "Mystery(uint256)", [], ["uint256"], [1])
    s.batches[1].logs.append(bad)
    stored: dict[str, int] = {}
    for b in s.batches:
        state, out = market_step(state, b)
        assert "compound_v3" in out.parts
        sink = market_rows(out)
        for table, rows in sink.rows.items():
            for row in rows:
                assert len(row) == len(COLUMNS[table]), table
            stored[table] = stored.get(table, 0) + len(rows)
        if b.header.number == 2:
            assert [(d.stage, d.log.log_index) for d in out.dead_letters] == [("compound_v3", 9)]
            assert "unknown topic" in out.dead_letters[0].reason
    assert stored["defimon.comet_configs"] == 1 and stored["defimon.comet_assets"] == 1
    assert stored["defimon.comet_account_versions"] == 4
    assert stored["defimon.comet_liquidations"] == 3
    assert stored["defimon.comet_totals"] == 4  # block 3's totals did not change
    assert stored["defimon.comet_prices"] == 3  # both feeds at 1, WETH again at 3


def test_comet_account_json_has_the_lending_shape() -> None:
    _, outs = run(worked_example().batches)
    data = outs[1].updates[0].json()
    assert data["protocol"] == "compound_v3" and data["pool"] == COMET
    assert data["owner"] == ALICE and data["id"] == f"{CHAIN}:{COMET}:{ALICE}"
    assert data["health_factor"] == "1133333333333333333"
    assert data["health_factor_float"] == 1_133_333_333_333_333_333 / E18
    assert data["base_principal"] == str(-15_000 * 10**6)
    assert data["avg_liquidation_threshold"] == 8500 and data["avg_ltv"] == 8000
    base, collateral = data["reserves"]
    assert (base["symbol"], base["debt"], base["collateral"]) == ("USDC", "15000000000", False)
    assert (collateral["symbol"], collateral["supplied"], collateral["collateral"]) == (
        "WETH",
        str(10 * E18),
        True,
    )
    assert collateral["liquidation_price"] == "176470588236"
    assert data["value_usd"] == 5_000.0  # $20,000 of WETH less $15,000 of debt
    # The HTTP response model carries every field, as the portfolio serves it.
    assert AccountOut.model_validate(data).model_dump() == data


def test_collateral_held_from_before_the_start_block_is_versioned_when_first_seen() -> None:
    # Dave supplied WETH before the flow's start block; his first event here is a base
    # supply, and the reader read all his collateral balances with it.
    dave = "0x" + "da" * 20
    supply = comet_log(
        1, 0, "Supply(address,address,uint256)", [indexed(dave), indexed(dave)], ["uint256"], [5]
    )
    reads = CometReads(
        config=config(),
        totals=totals(5, 0, ts(1)),
        users={dave: CometUserBasic(5, 0, 0, 0b1)},
        collateral={(dave, WETH): 3 * E18},
        prices=prices(2_000 * USD),
    )
    _, [out] = run([batch(1, [supply], reads)])
    assert [(v.event, v.asset, v.log_index, v.account.collateral) for v in out.versions] == [
        ("supply", "", 0, {WETH: 3 * E18}),
        ("collateral_read", WETH, 0, {WETH: 3 * E18}),
    ]
    [update] = out.updates
    assert update.value.collateral_value == 6_000 * USD


def test_the_comets_own_collateral_is_not_an_account() -> None:
    # Builds whose buyCollateral calls withdrawCollateral(address(this), recipient, ...).
    sale = comet_log(
        1, 0, "WithdrawCollateral(address,address,address,uint256)",
        [indexed(COMET), indexed(CAROL), indexed(WETH)], ["uint256"], [E18],
    )  # fmt: skip
    _, [out] = run([batch(1, [sale], CometReads(config=config(), totals=totals(0, 0, ts(1))))])
    assert out.versions == [] and out.dead == [] and out.updates == []


def base_supply(number: int, index: int, user: str, amount: int) -> list[RawLog]:
    """Supply of base and its ERC-20 mirror, as Comet.supplyBase emits them (adjacent)."""
    return [
        comet_log(number, index, "Supply(address,address,uint256)",
                  [indexed(user), indexed(user)], ["uint256"], [amount]),
        comet_log(number, index + 1, "Transfer(address,address,uint256)",
                  [indexed(ZERO), indexed(user)], ["uint256"], [amount]),
    ]  # fmt: skip


def test_a_base_transfer_between_accounts_is_exact_at_its_block() -> None:
    """Comet.transferBase emits only Transfer(src, 0) and Transfer(0, dst): both accounts
    change at that block (they were skipped as mirrors of a Supply before)."""
    e6 = 10**6
    b1 = batch(
        1,
        base_supply(1, 0, BOB, 1_000 * e6) + base_supply(1, 2, CAROL, 500 * e6),
        CometReads(
            config=config(),
            totals=totals(1_500 * e6, 0, ts(1)),
            users={
                BOB: CometUserBasic(1_000 * e6, 0, 0, 0),
                CAROL: CometUserBasic(500 * e6, 0, 0, 0),
            },
            prices=prices(2_000 * USD),
        ),
    )
    b2 = batch(
        2,
        [
            comet_log(
                2,
                5,
                "Transfer(address,address,uint256)",
                [indexed(BOB), indexed(ZERO)],
                ["uint256"],
                [300 * e6],
            ),
            comet_log(
                2,
                6,
                "Transfer(address,address,uint256)",
                [indexed(ZERO), indexed(CAROL)],
                ["uint256"],
                [300 * e6],
            ),
        ],
        CometReads(
            totals=totals(1_500 * e6, 0, ts(2)),
            users={
                BOB: CometUserBasic(700 * e6, 0, 0, 0),
                CAROL: CometUserBasic(800 * e6, 0, 0, 0),
            },
            prices=prices(2_000 * USD),
        ),
    )
    _market, outs = run([b1, b2])
    # The mirrors of the two Supply events make no version of their own.
    assert [(v.event, v.account.user) for v in outs[0].versions] == [
        ("supply", BOB),
        ("supply", CAROL),
    ]
    assert [(v.event, v.account.user, v.counterparty, v.amount) for v in outs[1].versions] == [
        ("transfer_out", BOB, CAROL, 300 * e6),
        ("transfer_in", CAROL, BOB, 300 * e6),
    ]
    served = {u.account.user: u.value.supplied for u in outs[1].updates}
    assert served == {BOB: 700 * e6, CAROL: 800 * e6}


def test_a_supply_then_a_transfer_in_one_transaction_keeps_the_transfer() -> None:
    """Only the Transfer right after its Supply is a mirror: a transfer later in the same
    transaction (a bulker's multicall) is a change of its own."""
    e6 = 10**6
    transfer = comet_log(
        1,
        2,
        "Transfer(address,address,uint256)",
        [indexed(BOB), indexed(ZERO)],
        ["uint256"],
        [40 * e6],
    )
    logs = [*base_supply(1, 0, BOB, 100 * e6), transfer]
    reads = CometReads(
        config=config(),
        totals=totals(60 * e6, 40 * e6, ts(1)),
        users={BOB: CometUserBasic(60 * e6, 0, 0, 0)},
        prices=prices(2_000 * USD),
    )
    _market, outs = run([batch(1, logs, reads)])
    assert [(v.event, v.counterparty) for v in outs[0].versions] == [
        ("supply", BOB),
        ("transfer_out", ZERO),  # its other leg moved only borrows: Comet emitted none
    ]


def test_a_price_drop_in_a_quiet_block_flips_is_liquidatable_at_that_block() -> None:
    """Block 3 has no comet log and is no checkpoint (a backfill block with a feed update):
    the prices read there still value Alice at that block."""
    s = worked_example()
    s.batches[2].checkpoint = False
    _market, outs = run(s.batches[:3])
    assert outs[1].updates[-1].value.is_liquidatable is False
    [update] = outs[2].updates
    assert update.block.number == 3 and update.account.user == ALICE
    assert update.value.is_liquidatable is True


def test_a_transfer_that_moves_only_borrows_is_caught_from_the_accrual() -> None:
    """Borrower to borrower, `transfer` emits nothing; only the comet's lastAccrualTime moves.
    The reader then re-reads every known account (`silent_accrual`), and the fold versions
    the accounts whose principal changed without an event."""
    s = worked_example()
    e6, debt = 10**6, 15_000 * 10**6
    carol = CometReads(
        totals=totals(0, 2 * debt, ts(3)),
        users={CAROL: CometUserBasic(-debt, 0, 0, 0b1)},
        collateral={(CAROL, WETH): 10 * E18},
        prices=prices(2_000 * USD),
    )
    open_carol = comet_log(
        3, 0, "Withdraw(address,address,uint256)", [indexed(CAROL), indexed(CAROL)],
        ["uint256"], [debt],
    )  # fmt: skip
    quiet = CometReads(
        totals=totals(0, 2 * debt, ts(4)),  # accrued at block 4, no event
        users={
            ALICE: CometUserBasic(-debt - 1_000 * e6, 0, 0, 0b1),
            CAROL: CometUserBasic(-debt + 1_000 * e6, 0, 0, 0b1),
        },
        prices=prices(2_000 * USD),
    )
    _market, outs = run([*s.batches[:2], batch(3, [open_carol], carol), batch(4, [], quiet)])
    assert [(v.event, v.account.user) for v in outs[3].versions] == [
        ("unlogged_transfer", ALICE),
        ("unlogged_transfer", CAROL),
    ]
    borrowed = {u.account.user: u.value.borrowed for u in outs[3].updates}
    assert borrowed == {ALICE: debt + 1_000 * e6, CAROL: debt - 1_000 * e6}


def test_silent_accrual_is_an_accrual_no_base_event_of_the_block_explains() -> None:
    supply = ev.BaseChanged("supply", ALICE, ALICE, 5)
    collateral = ev.CollateralChanged("supply_collateral", ALICE, ALICE, WETH, 5)
    assert not silent_accrual(100, 100, 112, [])  # no accrual
    assert not silent_accrual(100, 112, 112, [supply])  # this block's Supply accrued
    assert silent_accrual(100, 112, 112, [])  # accrued here, no event
    assert silent_accrual(100, 112, 112, [collateral])  # collateral moves do not accrue
    assert silent_accrual(100, 106, 112, [supply])  # accrued at a block never read
