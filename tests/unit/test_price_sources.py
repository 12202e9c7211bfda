"""Oracle price sources, the pure parts: what the market makes of the sources as read (a
proxy's new aggregator followed, the fallback oracle, an unreadable source stale with its last
good answer, then recovered), the read plan, stale accounts and routes, OCR's NewTransmission,
and the config key."""

from __future__ import annotations

from fractions import Fraction

import pytest
from eth_abi import encode
from eth_utils import keccak

from flows.prices_reader import BlockLogs, read_plan
from protocols.aave_v3 import events as ev
from protocols.aave_v3.state import AaveMarket, AaveShardInput, oracle_price, value_account
from protocols.uniswap_v3.valuation import route_prices
from schemas.chain import RawLog
from schemas.chain_config import ChainConfig
from schemas.errors import ConfigError
from schemas.lending import (
    AaveAccount,
    AccountReserveState,
    OraclePrice,
    ReserveInfo,
    ReserveRates,
)
from schemas.positions import BlockRef, PoolSnapshot, TokenPrice
from schemas.prices import ZERO, SourceRead

POOL, CONFIGURATOR, ORACLE = ("0x" + c * 40 for c in "123")
WETH, USDC = "0x" + "a1" * 20, "0x" + "a2" * 20
PROXY, AGG_1, AGG_2, ADAPTER = ("0x" + c * 40 for c in "4567")
RAY = 10**27


def block(n: int) -> BlockRef:
    return BlockRef(1, n, f"0x{n:064x}", 1_700_000_000 + 12 * n)


def raw_log(n: int, address: str, topics: tuple[str, ...], data: str, index: int = 0) -> RawLog:
    return RawLog(1, n, f"0x{n:064x}", index, "0x" + "00" * 32, 0, address, topics, data)


def topic_word(value: int) -> str:
    return "0x" + f"{value % (1 << 256):064x}"


def source_updated(n: int, asset: str, source: str) -> RawLog:
    return raw_log(
        n,
        ORACLE,
        (ev.ASSET_SOURCE_UPDATED, "0x" + "00" * 12 + asset[2:], "0x" + "00" * 12 + source[2:]),
        "0x",
    )


def answer_updated(n: int, emitter: str, answer: int, round_id: int) -> RawLog:
    return raw_log(
        n,
        emitter,
        (ev.ANSWER_UPDATED, topic_word(answer), topic_word(round_id)),
        "0x" + f"{n:064x}",
    )


def market() -> AaveMarket:
    return AaveMarket(1, POOL, CONFIGURATOR, ORACLE, 2)


def test_a_proxy_is_followed_through_its_aggregator_across_a_new_phase() -> None:
    m = market()
    route: dict[int, AaveShardInput] = {}
    m.step([source_updated(10, WETH, PROXY)], block(10), {}, route)
    out = m.read_prices(
        {PROXY: SourceRead(PROXY, "proxy", 2000 * 10**8, "", AGG_1)}, block(10), route
    )
    assert [(p.asset, p.answer, p.feed, p.stale) for p in out.prices] == [
        (WETH, 2000 * 10**8, PROXY, "")
    ]
    # The aggregator's AnswerUpdated carries the proxy's answer; the proxy itself emits nothing.
    out = m.step([answer_updated(11, AGG_1, 2100 * 10**8, 7)], block(11), {}, route)
    assert [(p.answer, p.round_id, p.feed) for p in out.prices] == [(2100 * 10**8, 7, PROXY)]
    # The proxy now points at AGG_2 (silent): found by the read, the price follows it and
    # AGG_2's logs move the price from then on, AGG_1's no longer do.
    out = m.read_prices(
        {PROXY: SourceRead(PROXY, "proxy", 1990 * 10**8, "", AGG_2)}, block(12), route
    )
    assert [p.answer for p in out.prices] == [1990 * 10**8]
    assert m.step([answer_updated(13, AGG_1, 1, 8)], block(13), {}, route).prices == []
    out = m.step([answer_updated(14, AGG_2, 1980 * 10**8, 2)], block(14), {}, route)
    assert [p.answer for p in out.prices] == [1980 * 10**8]
    # The same read again changes nothing (no row, no revaluation).
    read = SourceRead(PROXY, "proxy", 1980 * 10**8, "", AGG_2)
    assert m.read_prices({PROXY: read}, block(15), route).prices == []


def test_an_unreadable_source_is_stale_with_its_last_good_answer_then_recovers() -> None:
    m = market()
    route: dict[int, AaveShardInput] = {}
    m.step([source_updated(10, USDC, ADAPTER)], block(10), {}, route)
    m.read_prices({ADAPTER: SourceRead(ADAPTER, "polled", 100_010_000)}, block(10), route)
    broken = SourceRead(ADAPTER, "polled", None, "reverted (execution reverted)")
    out = m.read_prices({ADAPTER: broken}, block(20), route)
    (price,) = out.prices
    assert price.answer == 100_010_000  # never 0
    assert price.stale == (
        f"source {ADAPTER} unreadable: reverted (execution reverted) since block 20"
    )
    # Still broken a block later: the same stale price, nothing new to store.
    assert m.read_prices({ADAPTER: broken}, block(21), route).prices == []
    out = m.read_prices({ADAPTER: SourceRead(ADAPTER, "polled", 99_990_000)}, block(22), route)
    assert [(p.answer, p.stale) for p in out.prices] == [(99_990_000, "")]


def test_a_source_never_read_is_stale_at_zero_and_no_uniswap_root() -> None:
    price = oracle_price(WETH, SourceRead(ADAPTER, "polled", None, "no answer"), None, 5)
    assert (
        price.answer == 0 and price.stale == f"source {ADAPTER} unreadable: no answer since block 5"
    )


def test_the_fallback_oracle_answers_when_the_source_gives_no_positive_answer() -> None:
    zero = SourceRead(ADAPTER, "polled", 0, fallback=((WETH, 1500 * 10**8),))
    assert oracle_price(WETH, zero, None, 9).answer == 1500 * 10**8
    none = SourceRead(ZERO, "none", None, fallback=((WETH, 1400 * 10**8),))
    price = oracle_price(WETH, none, None, 9)
    assert (price.answer, price.stale) == (1400 * 10**8, "")
    neither = SourceRead(ADAPTER, "polled", -5, fallback=((WETH, None),))
    last = OraclePrice(WETH, 1600 * 10**8, 0, 0, ADAPTER, 8)
    price = oracle_price(WETH, neither, last, 9)
    assert price.answer == 1600 * 10**8
    assert price.stale.endswith("answered -5 and the fallback oracle has no price since block 9")


def test_a_stale_price_marks_the_account_and_only_for_what_it_holds() -> None:
    reserves = {
        WETH: ReserveInfo(
            WETH, "0x" + "b1" * 20, "0x" + "b2" * 20, "0x" + "b3" * 20, "WETH", 18, 8000, 8250
        ),
        USDC: ReserveInfo(
            USDC, "0x" + "c1" * 20, "0x" + "c2" * 20, "0x" + "c3" * 20, "USDC", 6, 8000, 8500
        ),
    }
    rates = {a: ReserveRates(a, 0, 0, 0, RAY, RAY, 0) for a in reserves}
    account = AaveAccount(
        1,
        POOL,
        "0x" + "99" * 20,
        "id",
        0,
        {WETH: AccountReserveState(WETH, scaled_supply=10**18, collateral=True)},
    )
    good = {
        WETH: OraclePrice(WETH, 2000 * 10**8, 0, 0, PROXY, 1),
        USDC: OraclePrice(USDC, 10**8, 0, 0, ADAPTER, 1, stale="source x unreadable"),
    }
    value = value_account(account, reserves, rates, good, {}, 1_700_000_000)
    assert value.stale == () and value.total_collateral_base == 2000 * 10**8
    stale = dict(good)
    stale[WETH] = OraclePrice(
        WETH, 2000 * 10**8, 0, 0, PROXY, 2, stale="source p unreadable at block 2"
    )
    value = value_account(account, reserves, rates, stale, {}, 1_700_000_000)
    assert value.stale == ("WETH: source p unreadable at block 2",)
    assert value.total_collateral_base == 2000 * 10**8  # the last good price, not 0
    assert value.reserves[0].stale == "source p unreadable at block 2"


def test_routes_from_a_stale_root_are_stale_too() -> None:
    token = "0x" + "d1" * 20
    pool = "0x" + "e1" * 20
    root = TokenPrice(WETH, 2000.0, PROXY, 0, None, "source p unreadable at block 2")
    prices = route_prices(
        {pool: (WETH, token, 18, 18)},
        {pool: PoolSnapshot(pool, 2**96, 0, 10**18)},
        (),
        {WETH: (Fraction(2000), root)},
    )
    assert prices[token].usd == 2000.0
    assert prices[token].stale == "source p unreadable at block 2"


def test_the_read_plan_on_change() -> None:
    t0 = 1_700_000_000 - 1_700_000_000 % 60
    blocks = [
        BlockLogs(1, t0 + 1, frozenset({POOL})),
        BlockLogs(2, t0 + 2, frozenset({AGG_1})),  # a followed aggregator's answer
        BlockLogs(3, t0 + 3, frozenset()),  # announced only
        BlockLogs(4, t0 + 30, frozenset({POOL})),
        BlockLogs(5, t0 + 61, frozenset({POOL})),  # first block of a new minute
        BlockLogs(6, t0 + 62, frozenset({ADAPTER})),  # an adapter's own log
    ]
    announced = {3: {ADAPTER}}
    points = read_plan(blocks, announced, {AGG_1, ADAPTER}, live=False, last_timestamp=t0)
    assert points == [2, 3, 5, 6]
    # The range's last block always: a change inside a range is found within it.
    blocks.append(BlockLogs(7, t0 + 63, frozenset()))
    points = read_plan(blocks, announced, {AGG_1, ADAPTER}, live=False, last_timestamp=t0, end=7)
    assert points == [2, 3, 5, 6, 7]
    # Live: every block, also one without a log (a silent aggregator swap shows at once).
    points = read_plan(blocks, announced, {AGG_1, ADAPTER}, live=True, last_timestamp=t0)
    assert points == [1, 2, 3, 4, 5, 6, 7]


def test_new_transmission_carries_the_answer() -> None:
    ocr2 = raw_log(
        5,
        AGG_1,
        (ev.NEW_TRANSMISSION_OCR2, topic_word(42)),
        "0x"
        + encode(
            ["int192", "address", "uint32", "int192[]", "bytes", "int192", "bytes32", "uint40"],
            [-3, AGG_2, 1_700_000_123, [1, 2], b"\x01\x02", 7, b"\x00" * 32, 9],
        ).hex(),
    )
    assert ev.decode(ev.AaveRole.FEED, ocr2) == ev.AnswerUpdated(-3, 42, 1_700_000_123)
    assert (
        "0x"
        + keccak(
            text="NewTransmission(uint32,int192,address,uint32,int192[],bytes,int192,bytes32,uint40)"
        ).hex()
        == ev.NEW_TRANSMISSION_OCR2
    )
    # Any other log of an aggregator is not a dead letter: it says nothing about the answer.
    other = raw_log(5, AGG_1, ("0x" + "ee" * 32,), "0x")
    assert ev.decode(ev.AaveRole.FEED, other) is None


def test_the_price_reads_config_key() -> None:
    base = {
        "chain_id": 1,
        "uniswap_v3": {"factory": POOL, "position_manager": CONFIGURATOR},
        "aave_v3": {"pool": POOL, "pool_configurator": CONFIGURATOR, "oracle": ORACLE},
    }
    config = ChainConfig.from_dict(base)
    assert config.aave_v3 is not None and config.aave_v3.price_reads == "on_change"
    base["aave_v3"] = {**base["aave_v3"], "price_reads": "every_block"}  # type: ignore[dict-item]
    config = ChainConfig.from_dict(base)
    assert config.aave_v3 is not None and config.aave_v3.price_reads == "every_block"
    base["aave_v3"] = {**base["aave_v3"], "price_reads": "sometimes"}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="price_reads must be"):
        ChainConfig.from_dict(base)
