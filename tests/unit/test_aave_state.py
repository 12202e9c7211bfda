"""Aave state by version: reserve ids, eMode bitmaps, the Pool's revision, 3.5+ Mint/Burn
scaled deltas recovered in the shard, and collateral only inside an eMode (3.6+).

Logs are ABI-encoded with eth_abi from the events as aave-v3-origin declares them; the 3.5+
token events are built the way ScaledBalanceTokenBase._mintScaled/_burnScaled build them.
"""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from protocols.aave_v3 import math as am
from protocols.aave_v3.state import (
    AaveMarket,
    AaveShard,
    AaveShardInput,
    account_id,
    shard_step,
    value_account,
    version_of_revision,
)
from schemas.chain import RawLog
from schemas.lending import (
    AaveAccount,
    AccountReserveState,
    EModeInfo,
    OraclePrice,
    ReserveInfo,
    ReserveRates,
)
from schemas.positions import BlockRef

POOL = "0x" + "70" * 20
CONFIGURATOR = "0x" + "c0" * 20
ORACLE = "0x" + "0a" * 20
USER = "0x" + "0e" * 20
ZERO = "0x" + "00" * 20
RAY = 10**27
SHARDS = 4


def asset(n: int) -> str:
    return f"0x{n:040x}"


def t0(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def word(value: object, kind: str = "address") -> str:
    return "0x" + encode([kind], [value]).hex()


def make_log(
    address: str, signature: str, topics: list[str], types: list[str], values: list[object]
) -> RawLog:
    data = "0x" + encode(types, values).hex()
    return RawLog(1, 10, "0xbb", 0, "0xtx", 0, address, (t0(signature), *topics), data)


def initialized(n: int, stable: str | None = None) -> RawLog:
    return make_log(
        CONFIGURATOR,
        "ReserveInitialized(address,address,address,address,address)",
        [word(asset(n)), word(asset(1000 + n))],
        ["address", "address", "address"],
        [stable or asset(2000 + n), asset(3000 + n), asset(4000 + n)],
    )


def in_emode(n: int, category: int, enabled: bool, bitmap: str = "Collateral") -> RawLog:
    return make_log(
        CONFIGURATOR,
        f"Asset{bitmap}InEModeChanged(address,uint8,bool)",
        [word(asset(n))],
        ["uint8", "bool"],
        [category, enabled],
    )


def category_added(category: int, ltv: int, lt: int) -> RawLog:
    return make_log(
        CONFIGURATOR,
        "EModeCategoryAdded(uint8,uint256,uint256,uint256,address,string)",
        [word(category, "uint8")],
        ["uint256", "uint256", "uint256", "address", "string"],
        [ltv, lt, 10_100, ZERO, "label"],
    )


def market() -> AaveMarket:
    return AaveMarket(1, POOL, CONFIGURATOR, ORACLE, SHARDS)


def step(m: AaveMarket, logs: list[RawLog], revision: int | None = None) -> tuple:
    route: dict[int, AaveShardInput] = {}
    out = m.step(logs, BlockRef(1, 10, "0xbb", 1_000), {}, route, revision=revision)
    return out, route


def test_reserve_ids_follow_the_reserves_list() -> None:
    m = market()
    step(m, [initialized(1), initialized(2), initialized(3)])
    assert [m.reserves[asset(n)].reserve_id for n in (1, 2, 3)] == [0, 1, 2]
    # A dropped reserve frees its id; the next listing takes the first free one.
    dropped = make_log(CONFIGURATOR, "ReserveDropped(address)", [word(asset(2))], [], [])
    out, _ = step(m, [dropped, initialized(4), initialized(5)])
    assert not out.dead
    assert m.reserves[asset(4)].reserve_id == 1
    assert m.reserves[asset(5)].reserve_id == 3


def test_a_reserve_without_stable_debt_token_watches_no_zero_address() -> None:
    m = market()
    step(m, [initialized(1, stable=ZERO)])
    assert ZERO not in m.tokens
    assert m.role_of(asset(3001)) is not None  # its variable debt token is watched


def test_emode_bitmaps_by_reserve_id_reach_every_shard() -> None:
    m = market()
    step(m, [initialized(1), initialized(2), initialized(3)])
    out, route = step(
        m,
        [
            category_added(1, 9_000, 9_300),
            in_emode(2, 1, True),
            in_emode(3, 1, True),
            in_emode(3, 1, True, "Borrowable"),
            in_emode(3, 1, False),
        ],
    )
    assert not out.dead
    category = m.emode[1]
    assert (category.collateral_bitmap, category.borrowable_bitmap) == (0b010, 0b100)
    assert out.emode == [category]
    assert sorted(route) == list(range(SHARDS))
    assert all(item.emode[1] == category for item in route.values())
    # Reconfiguring the category keeps its bitmaps; 3.6 ltvzero and 3.7 isolation are kept.
    isolation = make_log(
        CONFIGURATOR,
        "EModeCategoryIsolationChanged(uint8,bool)",
        [word(1, "uint8")],
        ["bool"],
        [True],
    )
    step(m, [category_added(1, 9_100, 9_400), in_emode(2, 1, True, "Ltvzero"), isolation])
    assert m.emode[1] == EModeInfo(1, 9_100, 9_400, 10_100, ZERO, 0b010, 0b100, 0b010, True)


def test_the_pools_revision_sets_the_version_for_every_shard() -> None:
    m = market()
    out, route = step(m, [], revision=1)
    assert out.version == (1, "3.0.2")
    out, route = step(m, [], revision=11)
    assert out.version == (11, "3.7") and m.version == "3.7"
    assert {shard: item.version for shard, item in route.items()} == dict.fromkeys(
        range(SHARDS), "3.7"
    )
    out, route = step(m, [], revision=11)  # read again after a restart: nothing changes
    assert out.version is None and not route


def test_a_pinned_version_ignores_the_revision() -> None:
    m = market()
    m.pin("3.5")
    out, route = step(m, [], revision=11)
    assert out.version == (0, "3.5")
    assert all(item.version == "3.5" for item in route.values())
    out, _ = step(m, [], revision=11)
    assert out.version is None and m.version == "3.5"


def token_event(
    token: str, burn: bool, value: int, increase: int, index: int, log_index: int
) -> RawLog:
    signature = f"{'Burn' if burn else 'Mint'}(address,address,uint256,uint256,uint256)"
    log = make_log(
        token,
        signature,
        [word(USER), word(USER)],
        ["uint256", "uint256", "uint256"],
        [value, increase, index],
    )
    return log._replace(log_index=log_index)


def test_3_7_mint_and_burn_scaled_deltas_are_recovered_exactly_in_the_shard() -> None:
    """Values as _mintScaled/_burnScaled of 3.5+ emit them: differences of rounded balances
    (aToken: rayMulFloor; debt token: rayMulCeil), with the interest since the user's index."""
    m = market()
    step(m, [initialized(1)], revision=11)
    a_token, debt_token = asset(1001), asset(3001)
    shard = AaveShard()
    shard.version = "3.7"
    floor, ceil = am.ray_mul_floor, am.ray_mul_ceil
    # (token, balance function, burn, scaled delta, index); the user's index starts at the first
    cases = [
        (a_token, floor, False, 10**18 + 7, RAY + 3 * 10**24 + 11),
        (a_token, floor, False, 333_333_333_333, RAY + 5 * 10**24 + 1),
        (a_token, floor, True, 10**17 + 1, RAY + 9 * 10**24 + 7),
        (debt_token, ceil, False, 5 * 10**17 + 3, RAY + 2 * 10**24 + 9),
        (debt_token, ceil, True, 10**17 + 13, RAY + 8 * 10**24 + 5),
        (debt_token, ceil, False, 1, RAY + 8 * 10**24 + 6),
    ]
    scaled = {a_token: 0, debt_token: 0}
    last_index = {a_token: RAY, debt_token: RAY}
    logs = []
    for i, (token, balance, burn, delta, index) in enumerate(cases):
        before = scaled[token]
        after = before - delta if burn else before + delta
        previous = balance(before, last_index[token])
        increase = balance(before, index) - previous
        change = balance(after, index) - previous
        value = -change if burn else change
        logs.append(token_event(token, burn, value, increase, index, i))
        scaled[token], last_index[token] = after, index
    route: dict[int, AaveShardInput] = {}
    m.step(logs, BlockRef(1, 11, "0xcc", 1_010), {}, route)
    (item,) = [i for i in route.values() if i.events]
    shard_step(shard, item, BlockRef(1, 11, "0xcc", 1_010), checkpoint=False)
    held = shard.accounts[account_id(1, POOL, USER)].reserves[asset(1)]
    assert (held.scaled_supply, held.scaled_variable_debt) == (scaled[a_token], scaled[debt_token])


def test_collateral_only_inside_an_emode_counts_since_3_6() -> None:
    """A reserve with LT 0 whose bit is in the category's collateral bitmap is collateral for
    a user in that eMode (3.6+); before 3.6 a reserve with LT 0 never is."""
    lst, usdc = asset(1), asset(2)
    reserves = {
        lst: ReserveInfo(lst, "", "", "", "LST", 18, 0, 0, 0, 0, reserve_id=0),
        usdc: ReserveInfo(usdc, "", "", "", "USDC", 6, 7_500, 8_000, 10_500, 0, reserve_id=1),
    }
    rates = {a: ReserveRates(a, 0, 0, 0, RAY, RAY, 1_000) for a in reserves}
    prices = {
        lst: OraclePrice(lst, 3_000 * 10**8, 1, 1_000, "", 1),
        usdc: OraclePrice(usdc, 10**8, 1, 1_000, "", 1),
    }
    emode = {1: EModeInfo(1, 9_000, 9_300, 10_100, ZERO, collateral_bitmap=0b01)}
    account = AaveAccount(
        1,
        POOL,
        USER,
        "a",
        1,
        {
            lst: AccountReserveState(lst, scaled_supply=10**18, collateral=True),
            usdc: AccountReserveState(usdc, scaled_variable_debt=1_000 * 10**6),
        },
    )
    new = value_account(account, reserves, rates, prices, emode, 1_000, version="3.7")
    assert new.total_collateral_base == 3_000 * 10**8
    assert new.avg_liquidation_threshold == 9_300
    assert new.health_factor == 3_000 * 9_300 * 10**18 // (1_000 * 10_000)
    old = value_account(account, reserves, rates, prices, emode, 1_000, version="3.0.2")
    assert old.total_collateral_base == 0


@pytest.mark.parametrize(
    ("revision", "version"),
    [(1, "3.0.2"), (3, "3.0.2"), (4, "3.1"), (6, "3.2"), (7, "3.3"), (9, "3.5"), (11, "3.7")],
)
def test_pool_revisions(revision: int, version: str) -> None:
    assert version_of_revision(revision) == version


def test_an_unknown_revision() -> None:
    assert version_of_revision(12) == "3.7"  # newer than any known: the newest rules
    with pytest.raises(ValueError, match="revision 0"):
        version_of_revision(0)
