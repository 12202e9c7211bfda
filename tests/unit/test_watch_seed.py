"""Wallet watch mode, the pure parts: a pool replica seeded at one block (knowing only some
positions) stays equal to one built from the pool's creation; the market seeds pools, NFTs,
Aave and Comet accounts from a WatchSeed and keeps other wallets out; the reader's helpers."""

from __future__ import annotations

from eth_abi.packed import encode_packed
from eth_utils import keccak

from flows.market import MarketState, market_step
from flows.shards import shard_step
from flows.watch import merge_seeds
from protocols.aave_v3.plugin import AavePart
from protocols.aave_v3.state import AaveMarket, AaveShardInput, apply_account_event
from protocols.compound_v3 import math as cm
from protocols.compound_v3.state import CometMarket
from protocols.uniswap_v3.fee_tracker import NpmFeeTracker
from protocols.uniswap_v3.math import get_sqrt_ratio_at_tick
from protocols.uniswap_v3.reader import bitmap_words, held_token_ids, pool_position_key
from protocols.uniswap_v3.replica import PoolReplica
from protocols.uniswap_v3.state import UniswapMarket, position_id
from schemas.chain import BlockBatch, BlockHeader, RawLog, TokenInfo
from schemas.comet import CometReads, CometUserBasic
from schemas.lending import AaveAccount, AccountReserveState, ReserveInfo, ReserveRates
from schemas.positions import BlockRef, UniswapPosition
from schemas.watch import (
    AaveSeed,
    PoolPositionSeed,
    PoolSeed,
    TickSeed,
    UniswapSeed,
    WatchSeed,
)
from tests.unit import test_compound_state as cs

E18 = 10**18
NPM = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
WALLET = "0x" + "11" * 20
STRANGER = "0x" + "22" * 20
POOL = "0x" + "33" * 20
TOKEN0, TOKEN1 = "0x" + "44" * 20, "0x" + "55" * 20


def full_pool() -> PoolReplica:
    pool = PoolReplica(fee=3000, tick_spacing=60)
    pool.initialize(get_sqrt_ratio_at_tick(0), 0)
    pool.mint(-600, 600, 10 * E18, owner=NPM)
    pool.mint(-1200, 1200, 20 * E18, owner=OTHER)
    pool.swap(True, E18)
    pool.swap(False, 2 * E18)
    return pool


def seeded_copy(pool: PoolReplica, keep: tuple[str, int, int]) -> PoolReplica:
    """What eth_call at this block gives watch mode: every tick, one position."""
    seeded = PoolReplica(
        pool.fee,
        pool.tick_spacing,
        pool.sqrt_price_x96,
        pool.tick,
        pool.liquidity,
        pool.fee_growth_global0_x128,
        pool.fee_growth_global1_x128,
        kept_keys=set(),
    )
    seeded.ticks, seeded.bitmap = dict(pool.ticks), dict(pool.bitmap)
    seeded.seed_position(keep, pool.position(*keep))
    return seeded


def test_a_seeded_replica_follows_other_owners_without_their_positions() -> None:
    full = full_pool()
    key = (NPM, -600, 600)
    seeded = seeded_copy(full, key)
    # Another owner burns, collects and mints; the watched range is poked and collected.
    for replica in (full, seeded):
        replica.burn(-1200, 1200, 5 * E18, owner=OTHER)
        replica.collect(OTHER, -1200, 1200, 1, 1)
        replica.swap(True, 3 * E18)
        replica.mint(-180, 240, 3 * E18, owner=OTHER)
        replica.swap(False, 5 * E18)
        replica.burn(-600, 600, 0, owner=NPM)  # the manager's poke before its collect
        replica.collect(NPM, -600, 600, 10, 10)
        replica.burn(-180, 240, 3 * E18, owner=OTHER)
    assert (seeded.sqrt_price_x96, seeded.tick, seeded.liquidity) == (
        full.sqrt_price_x96,
        full.tick,
        full.liquidity,
    )
    assert (seeded.fee_growth_global0_x128, seeded.fee_growth_global1_x128) == (
        full.fee_growth_global0_x128,
        full.fee_growth_global1_x128,
    )
    assert seeded.ticks == full.ticks and seeded.bitmap == full.bitmap
    assert seeded.position(*key) == full.position(*key)
    assert seeded.position(OTHER, -1200, 1200) != full.position(OTHER, -1200, 1200)
    assert seeded.fee_growth_inside(-600, 600) == full.fee_growth_inside(-600, 600)


def test_reader_helpers() -> None:
    def transfer(token_id: int, block: int, index: int) -> dict[str, object]:
        return {
            "topics": ["0x", "0x", "0x", f"0x{token_id:064x}"],
            "blockNumber": hex(block),
            "logIndex": hex(index),
        }

    received = [transfer(1, 10, 0), transfer(2, 10, 1), transfer(2, 30, 0), transfer(3, 5, 0)]
    sent = [transfer(2, 20, 0), transfer(3, 5, 1)]
    assert held_token_ids(received, sent) == {1, 2}  # 2 came back; 3 left in the same block
    for lower, upper in ((-600, 600), (-887220, 887220), (60, 120)):
        expected = keccak(encode_packed(["address", "int24", "int24"], [NPM, lower, upper]))
        assert pool_position_key(NPM, lower, upper) == "0x" + expected.hex()
    assert bitmap_words(60) == range(-58, 58)
    assert bitmap_words(1) == range(-3466, 3466)
    assert bitmap_words(10) == range(-347, 347)  # floor(-887272 / 10) >> 8 .. 886 // 256
    first = WatchSeed((WALLET,), parts={"uniswap_v3": [UniswapSeed()], "aave_v3": [AaveSeed()]})
    later = UniswapSeed(positions=())
    second = WatchSeed((), {TOKEN0: TokenInfo(TOKEN0, "A", 18)}, {"uniswap_v3": [later]})
    merged = merge_seeds(first, second)
    assert merged is not None and merged.wallets == (WALLET,) and TOKEN0 in merged.tokens
    # Each protocol's parts in the order read; the first seed's lists are left as they were.
    assert merged.parts == {"uniswap_v3": [UniswapSeed(), later], "aave_v3": [AaveSeed()]}
    assert first.parts["uniswap_v3"] == [UniswapSeed()]
    assert merge_seeds(None, second) is second


def header(number: int) -> BlockHeader:
    return BlockHeader(1, number, f"0x{number:064x}", f"0x{number - 1:064x}", 1000 + 12 * number)


def npm_log(number: int, topics: tuple[str, ...], data: str) -> RawLog:
    return RawLog(1, number, f"0x{number:064x}", 0, "0x" + "99" * 32, 0, NPM, topics, data)


def test_the_market_seeds_a_wallet_and_keeps_other_wallets_out() -> None:
    pool = full_pool()
    key = (NPM, -600, 600)
    a_token, debt = "0x" + "66" * 20, "0x" + "77" * 20
    aave_pool = "0x" + "88" * 20
    aave = AaveMarket(1, aave_pool, "0x" + "00" * 19 + "02", "0x" + "00" * 19 + "03", 4)
    uni = UniswapMarket(1, "0x" + "00" * 19 + "01", NPM, 4)
    state = MarketState(1, (TOKEN1,), 4, parts={"aave_v3": AavePart(aave), "uniswap_v3": uni})
    position = UniswapPosition(
        1,
        position_id(1, NPM, 7),
        NPM,
        7,
        POOL,
        TOKEN0,
        TOKEN1,
        "A",
        "B",
        18,
        18,
        3000,
        WALLET,
        -600,
        600,
        liquidity=10 * E18,
        deposited0=E18,
        deposited1=E18,
        fee_inside_last0=0,
        fee_inside_last1=0,
    )
    pool_position = pool.position(*key)
    uniswap = UniswapSeed(
        (
            PoolSeed(
                POOL,
                TOKEN0,
                TOKEN1,
                3000,
                60,
                True,
                pool.sqrt_price_x96,
                pool.tick,
                pool.liquidity,
                pool.fee_growth_global0_x128,
                pool.fee_growth_global1_x128,
                ticks=tuple(TickSeed(t, *info) for t, info in sorted(pool.ticks.items())),
                positions=(PoolPositionSeed(NPM, -600, 600, *pool_position),),
            ),
        ),
        (position,),
    )
    seed = WatchSeed(
        (WALLET,),
        {TOKEN0: TokenInfo(TOKEN0, "A", 18), TOKEN1: TokenInfo(TOKEN1, "B", 18)},
        {"uniswap_v3": [uniswap]},
    )
    seed.parts["aave_v3"] = [
        AaveSeed(
            reserves=(ReserveInfo(TOKEN0, a_token, "0x" + "78" * 20, debt, "A", 18, 8000, 8500),),
            rates=(ReserveRates(TOKEN0, 0, 0, 0, 10**27, 10**27, 1000),),
            accounts=(
                AaveAccount(
                    1,
                    aave_pool,
                    WALLET,
                    f"1:{aave_pool}:{WALLET}",
                    0,
                    {TOKEN0: AccountReserveState(TOKEN0, 5 * E18, 0, collateral=True)},
                ),
            ),
        )
    ]
    state, out = market_step(state, BlockBatch(header(100), [], 100, True, seeds=seed))
    uni_out = out.parts["uniswap_v3"]
    assert [p.address for p in uni_out.new_pools] == [POOL]
    assert uni.replicas[POOL].ticks == pool.ticks
    assert uni.replicas[POOL].position(*key) == pool_position
    assert uni.watched == {WALLET}
    assert uni_out.pool_snapshots and uni_out.pool_snapshots[0].fee_growth_global0_x128 == (
        pool.fee_growth_global0_x128
    )
    assert TOKEN1 in {p.token for p in out.prices}  # a USD token: the pool prices TOKEN0
    uni_items = [
        i.parts["uniswap_v3"] for i in out.shard_inputs.values() if "uniswap_v3" in i.parts
    ]
    events = [e for item in uni_items for e in item.events]
    assert [(e.kind, e.created) for e in events] == [("watch", position)]
    tracker = NpmFeeTracker(NPM)
    assert uni.fee_tracker is not None
    tracker.positions[7] = uni.fee_tracker.positions[7]
    fees = {pid: f for item in uni_items for pid, f in item.fees.items()}
    assert fees == {position.position_id: tracker.uncollected(pool, 7)}
    aave_items = [i.parts["aave_v3"] for i in out.shard_inputs.values() if "aave_v3" in i.parts]
    assert [a.account_id for item in aave_items for a in item.seeds] == [f"1:{aave_pool}:{WALLET}"]

    # The shard opens the position and the account as seeded, valued at this block.
    (item,) = [
        i
        for i in out.shard_inputs.values()
        if "uniswap_v3" in i.parts and i.parts["uniswap_v3"].events
    ]
    _, shard_out = shard_step(None, item)
    positions_out = shard_out.parts["uniswap_v3"]
    assert [v.event for v in positions_out.versions] == ["watch"]
    assert positions_out.updates and positions_out.updates[0].position == position

    # Next block: another wallet's NFT events and Aave events are not tracked, no dead letters.
    transfer = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
    stranger_nft = npm_log(
        101,
        (transfer, "0x" + "00" * 32, "0x" + STRANGER[2:].rjust(64, "0"), f"0x{8:064x}"),
        "0x",
    )
    increase = "0x" + keccak(text="IncreaseLiquidity(uint256,uint128,uint256,uint256)").hex()
    stranger_increase = npm_log(101, (increase, f"0x{9:064x}"), "0x" + "00" * 96)
    state, out = market_step(
        state, BlockBatch(header(101), [stranger_nft, stranger_increase], 101, True)
    )
    assert not out.dead_letters
    assert not [
        e
        for item in out.shard_inputs.values()
        for e in (item.parts["uniswap_v3"].events if "uniswap_v3" in item.parts else [])
    ]
    # An aToken Mint for the stranger is not routed; one for the wallet is.
    route: dict[int, AaveShardInput] = {}
    assert aave.users == {WALLET}
    mint = "0x" + keccak(text="Mint(address,address,uint256,uint256,uint256)").hex()

    def a_token_mint(user: str, index: int) -> RawLog:
        topics = (mint, "0x" + user[2:].rjust(64, "0"), "0x" + user[2:].rjust(64, "0"))
        data = "0x" + f"{E18:064x}" + f"{0:064x}" + f"{10**27:064x}"
        return RawLog(1, 102, "0x" + "02" * 32, index, "0x" + "98" * 32, 0, a_token, topics, data)

    logs = [a_token_mint(STRANGER, 0), a_token_mint(WALLET, 1)]
    aave.step(logs, BlockRef(1, 102, "0x" + "02" * 32, 1100), state.tokens, route)
    routed = [e for item in route.values() for e in item.events]
    # The market passes the Mint as emitted; the shard recovers the scaled delta.
    assert [(e.user, e.kind, e.value, e.index_ray) for e in routed] == [
        (WALLET, "supply_scaled", E18, 10**27)
    ]
    opened = apply_account_event(AaveAccount(1, "", WALLET, "", 0, {}), routed[0])
    assert opened.reserves[routed[0].asset].scaled_supply == E18


def test_a_seeded_comet_account_is_exact_from_the_seed_block_and_strangers_stay_out() -> None:
    """Watch mode seeds Comet: the comet's configuration, totals and prices and the wallet's
    userBasic and userCollateral at block B make its account exact at B (valued as the comet
    does: accrued, liquidatable) without the comet's history; from B+1 its events update it,
    and a stranger's events neither open an account nor need reads."""
    debt, ten = 15_000 * 10**6, 10 * E18
    si, bi = cm.BASE_INDEX_SCALE + 7 * 10**12, cm.BASE_INDEX_SCALE + 3 * 10**13
    principal = -cm.principal_value_borrow(bi, debt)
    reads = CometReads(
        config=cs.config(),
        totals=cs.totals(50_000 * 10**6, 40_000 * 10**6, cs.ts(100) - 600, si, bi),
        users={WALLET: CometUserBasic(principal, 0, 0, 0b1)},
        collateral={(WALLET, cs.WETH): ten},
        prices=cs.prices(1_700 * cs.USD),
    )
    market = CometMarket(cs.CHAIN, (cs.COMET,))
    seed = WatchSeed((WALLET,), dict(cs.TOKENS), {"compound_v3": [{cs.COMET: reads}]})
    b = cs.batch(100, [], None)
    b.seeds = seed
    out = market.step(b, cs.ref(100), cs.TOKENS)
    assert [(v.event, v.asset, v.account.principal) for v in out.versions] == [
        ("seed", "", principal),
        ("seed", cs.WETH, principal),
    ]
    [update] = out.updates
    assert update.block.number == 100 and update.account.user == WALLET
    # What the comet's own views answer at B: borrowBalanceOf accrued from the stored totals
    # to B's time, and isLiquidatable from the stored indices.
    totals = reads.totals
    assert totals is not None
    stored = cm.CometTotals(
        si, bi, totals.total_supply_base, totals.total_borrow_base, totals.last_accrual_time
    )
    params = cm.InterestRateParams(0, 0, 0, 0, 0, 0, 0, 0)
    assert update.value.borrowed == cm.borrow_balance_of(principal, stored, params, cs.ts(100))
    assert update.value.is_liquidatable == cm.is_liquidatable(
        principal, si, bi, cs.USD, 10**6, [cs.weth(ten, 1_700 * cs.USD)], skip_zero_lcf=True
    )
    assert update.value.is_liquidatable is True
    assert market.users == {WALLET}

    # B+1: a stranger supplies (no read was made for it: watch mode reads watched wallets
    # only); the wallet repays part of its debt.
    supply = cs.comet_log(
        101, 0, "Supply(address,address,uint256)",
        [cs.indexed(STRANGER), cs.indexed(STRANGER)], ["uint256"], [10**6],
    )  # fmt: skip
    repay = cs.comet_log(
        101, 1, "Supply(address,address,uint256)",
        [cs.indexed(WALLET), cs.indexed(WALLET)], ["uint256"], [5_000 * 10**6], tx=1,
    )  # fmt: skip
    after = principal + cm.principal_value_borrow(bi, 5_000 * 10**6)
    reads2 = CometReads(
        totals=cs.totals(50_000 * 10**6, 35_000 * 10**6, cs.ts(101), si, bi),
        users={WALLET: CometUserBasic(after, 0, 0, 0b1)},
        prices=cs.prices(1_700 * cs.USD),
    )
    out2 = market.step(cs.batch(101, [supply, repay], reads2), cs.ref(101), cs.TOKENS)
    assert out2.dead == []
    assert [(v.event, v.account.user) for v in out2.versions] == [("supply", WALLET)]
    [update2] = out2.updates
    assert update2.account.principal == after and update2.account.collateral == {cs.WETH: ten}
