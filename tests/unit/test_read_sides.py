"""Protocols' read sides on a real chDB store seeded with a few rows: the JSON they answer
for the portfolio and /v1/positions, and their part of the diff, computed here by hand.

ERC-20: balances at a block, priced at the block's routed prices. Uniswap V3: a withdrawn
position whose value is what a collect would pay, a transferred one and a burned one. (The
Compound V3 read side goes through the flow's own rows in
tests/integration/test_compound_store.py; Aave's against the real contracts in
tests/integration/test_aave_exactness.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api.queries import Queries
from ports.store import Store
from protocols.erc20.read import READ_SIDE as ERC20
from protocols.read_side import AsOf, Change, latest_rows
from protocols.uniswap_v3.read import READ_SIDE as UNISWAP_V3
from tests.unit.store_seed import migrated_store, seed

CHAIN = 1
WALLET = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
AAA = "0x" + "a1" * 20  # 18 decimals, priced
BBB = "0x" + "b2" * 20  # 6 decimals, priced
NOMETA = "0x" + "e3" * 20  # its metadata could not be read; never priced
ZERO = "0x" + "f4" * 20  # held once, then sent away
NPM = "0x" + "c0" * 20
POOL = "0x" + "90" * 20
E18 = 10**18


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


BLOCKS = {10: 1000, 11: 1012, 13: 1036}


def as_of(number: int) -> AsOf:
    return AsOf(CHAIN, number, f"0x{number:02x}", BLOCKS[number])


def position(token_id: int, block: int, owner: str, **fields: Any) -> dict[str, Any]:
    """A version of a position fully withdrawn (3 AAA and 2 BBB owed to its owner)."""
    return {
        "chain_id": CHAIN,
        "position_id": f"{CHAIN}:{NPM}:{token_id}",
        "protocol": "uniswap_v3",
        "block_number": block,
        "log_index": 0,
        "block_hash": f"0x{block:02x}",
        "owner": owner,
        "position_manager": NPM,
        "token_id": token_id,
        "pool": POOL,
        "token0": AAA,
        "token1": BBB,
        "symbol0": "AAA",
        "symbol1": "BBB",
        "decimals0": 18,
        "decimals1": 6,
        "fee": 3000,
        "tick_lower": -60,
        "tick_upper": 60,
        "liquidity": 0,
        "deposited0": 3 * E18,
        "deposited1": 2 * 10**6,
        "withdrawn0": 3 * E18,
        "withdrawn1": 2 * 10**6,
        "collected0": 0,
        "collected1": 0,
        "burned": 0,
        "fee_inside_last0": 0,
        "fee_inside_last1": 0,
        "tokens_owed0": 3 * E18,
        "tokens_owed1": 2 * 10**6,
        **fields,
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path: Path = tmp_path_factory.mktemp("read_sides")
    with migrated_store(path) as s:
        seed(
            s,
            "blocks",
            [
                {"chain_id": CHAIN, "number": n, "hash": f"0x{n:02x}", "block_time": at(t)}
                for n, t in BLOCKS.items()
            ],
        )
        seed(
            s,
            "tokens",
            [
                {"chain_id": CHAIN, "address": AAA, "symbol": "AAA", "decimals": 18},
                {"chain_id": CHAIN, "address": BBB, "symbol": "BBB", "decimals": 6},
            ],
        )
        seed(
            s,
            "token_prices",
            [
                {"chain_id": CHAIN, "token": token, "block_number": block, "price_usd": usd}
                | {"source": source, "hops": hops}
                for token, block, usd, source, hops in (
                    (AAA, 10, 2.0, "feed", 0),
                    (AAA, 13, 3.0, POOL, 1),
                    (BBB, 10, 1.0, "usd", 0),
                )
            ],
        )
        seed(
            s,
            "token_balances",
            [
                {"chain_id": CHAIN, "wallet": WALLET, "token": token, "block_number": block}
                | {"balance": balance}
                for token, block, balance in (
                    (AAA, 10, 5 * E18),
                    (AAA, 13, 2 * E18),
                    (NOMETA, 10, 7),
                    (ZERO, 10, 4 * 10**6),
                    (ZERO, 11, 0),
                )
            ],
        )
        seed(
            s,
            "pool_states",
            [
                {
                    "chain_id": CHAIN,
                    "pool": POOL,
                    "block_number": 10,
                    "sqrt_price_x96": 2**96,
                    "tick": 0,
                    "liquidity": 10**20,
                    "fee_growth_global0_x128": 0,
                    "fee_growth_global1_x128": 0,
                }
            ],
        )
        # The manager's position in the pool (all three NFTs' range): what the pool owes it
        # bounds what a collect pays each NFT.
        seed(
            s,
            "pool_positions",
            [
                {
                    "chain_id": CHAIN,
                    "pool": POOL,
                    "owner": NPM,
                    "tick_lower": -60,
                    "tick_upper": 60,
                    "block_number": 10,
                    "liquidity": 0,
                    "fee_inside_last0": 0,
                    "fee_inside_last1": 0,
                    "tokens_owed0": 9 * E18,
                    "tokens_owed1": 6 * 10**6,
                }
            ],
        )
        seed(
            s,
            "position_versions",
            [
                position(1, 10, WALLET),
                position(2, 10, WALLET),
                position(2, 13, OTHER),  # sent to another wallet
                position(3, 10, WALLET),
                # Collected and burned.
                position(3, 11, WALLET, burned=1, tokens_owed0=0, tokens_owed1=0)
                | {"collected0": 3 * E18, "collected1": 2 * 10**6},
            ],
        )
        yield s


@pytest.fixture(scope="module")
def queries(store: Store) -> Queries:
    return Queries(store)


def balance(token: str, amount: int, updated: int, block: int, **fields: Any) -> dict[str, Any]:
    return {
        "chain_id": CHAIN,
        "wallet": WALLET,
        "token": token,
        "amount": str(amount),
        "updated_block": updated,
        "block_number": block,
        "block_hash": f"0x{block:02x}",
        "block_time": at(BLOCKS[block]).isoformat().replace("+00:00", "Z"),
        **fields,
    }


def test_balances_are_the_latest_at_the_block_priced_then(queries: Queries) -> None:
    aaa = {"symbol": "AAA", "decimals": 18, "price_source": "feed", "price_block": 10}
    unknown = {"symbol": "???", "decimals": 18, "price_usd": None, "value_usd": None}
    unpriced = unknown | {"price_source": None, "price_block": None}
    # Zero balances are not listed; a token without metadata has the ERC-20 defaults.
    assert ERC20.portfolio(queries.ctx, WALLET, as_of(11)) == [
        balance(AAA, 5 * E18, 10, 11, price_usd=2.0, value_usd=10.0, **aaa),
        balance(NOMETA, 7, 10, 11, **unpriced),
    ]
    assert ERC20.portfolio(queries.ctx, WALLET, as_of(13))[0] == balance(
        AAA,
        2 * E18,
        13,
        13,
        price_usd=3.0,
        value_usd=6.0,
        **aaa | {"price_source": POOL, "price_block": 13},
    )
    assert ERC20.portfolio(queries.ctx, OTHER, as_of(13)) == []
    assert ERC20.subjects(queries.ctx, as_of(13), None, None, None) == []


def test_a_balances_change_is_its_repricing_and_the_owners_transfers(queries: Queries) -> None:
    assert ERC20.changes(queries.ctx, WALLET, as_of(11), as_of(13)) == [
        # 5 AAA repriced from 2 to 3 USD: +5; 3 AAA sent away at 3 USD: -9.
        Change(f"{CHAIN}:{WALLET}:{AAA}", "erc20", 10.0, 6.0, price=5.0, actions=-9.0),
        Change(f"{CHAIN}:{WALLET}:{NOMETA}", "erc20", 0.0, 0.0),
    ]
    # Held at the start only: all of it went out.
    [gone] = [c for c in ERC20.changes(queries.ctx, WALLET, as_of(10), as_of(11)) if ZERO in c.id]
    assert gone == Change(f"{CHAIN}:{WALLET}:{ZERO}", "erc20", 0.0, 0.0)


def lp(token_id: int, owner: str, block: int, updated: int) -> dict[str, Any]:
    """Position 1 or 2 as served: no principal left, 3 AAA and 2 BBB owed by a collect."""
    aaa_usd = 2.0 if block < 13 else 3.0
    return {
        "id": f"{CHAIN}:{NPM}:{token_id}",
        "protocol": "uniswap_v3",
        "chain_id": CHAIN,
        "position_manager": NPM,
        "token_id": str(token_id),
        "owner": owner,
        "pool": POOL,
        "fee": 3000,
        "token0": {"address": AAA, "symbol": "AAA", "decimals": 18},
        "token1": {"address": BBB, "symbol": "BBB", "decimals": 6},
        "tick_lower": -60,
        "tick_upper": 60,
        "tick": 0,
        "liquidity": "0",
        "amount0": "0",
        "amount1": "0",
        "in_range": False,  # no liquidity left
        "deposited0": str(3 * E18),
        "deposited1": "2000000",
        "withdrawn0": str(3 * E18),
        "withdrawn1": "2000000",
        "collected0": "0",
        "collected1": "0",
        "burned": False,
        "price0_usd": aaa_usd,
        "price1_usd": 1.0,
        "value_usd": 3 * aaa_usd + 2.0,
        "hodl_usd": 0.0,
        "il_usd": 0.0,
        "il_pct": None,
        "uncollected0": str(3 * E18),
        "uncollected1": "2000000",
        "uncollected_usd": 3 * aaa_usd + 2.0,
        "updated_block": updated,
        "block_number": block,
        "block_hash": f"0x{block:02x}",
        "block_time": at(BLOCKS[block]).isoformat().replace("+00:00", "Z"),
    }


def test_a_wallets_positions_are_those_it_holds_unburned(queries: Queries) -> None:
    ctx = queries.ctx
    assert UNISWAP_V3.portfolio(ctx, WALLET, as_of(11)) == [
        lp(1, WALLET, 11, 10),
        lp(2, WALLET, 11, 10),
    ]
    assert UNISWAP_V3.portfolio(ctx, WALLET, as_of(13)) == [lp(1, WALLET, 13, 10)]
    assert UNISWAP_V3.portfolio(ctx, OTHER, as_of(13)) == [lp(2, OTHER, 13, 13)]


def test_positions_are_selected_by_owner_token_and_pool(queries: Queries) -> None:
    ctx, now = queries.ctx, as_of(13)

    def ids(owners: Any = None, tokens: Any = None, pools: Any = None) -> list[str]:
        return [p["id"] for p in UNISWAP_V3.subjects(ctx, now, owners, tokens, pools)]

    both = [f"{CHAIN}:{NPM}:1", f"{CHAIN}:{NPM}:2"]
    assert ids() == both
    assert ids(owners=[OTHER]) == both[1:]
    assert ids(owners=[WALLET]) == both[:1]  # position 2 was sent away
    assert ids(tokens=[BBB]) == both
    assert ids(tokens=[NOMETA]) == []
    assert ids(pools=[POOL], tokens=[AAA]) == both
    assert ids(pools=["0x" + "91" * 20]) == []
    assert UNISWAP_V3.subject_exists(ctx, CHAIN, both[0])
    assert UNISWAP_V3.subject_exists(ctx, CHAIN, f"{CHAIN}:{NPM}:3")  # burned, still known
    assert not UNISWAP_V3.subject_exists(ctx, CHAIN, f"{CHAIN}:{NPM}:4")
    assert not UNISWAP_V3.subject_exists(ctx, 2, both[0])


def test_a_positions_change_is_price_fees_and_actions(queries: Queries) -> None:
    assert UNISWAP_V3.changes(queries.ctx, WALLET, as_of(11), as_of(13)) == [
        # Nothing left but what a collect pays: 3 AAA from 2 to 3 USD is the price's doing.
        Change(f"{CHAIN}:{NPM}:1", "uniswap_v3", 8.0, 11.0, price=3.0),
        # Sent to another wallet: wholly the owner's doing.
        Change(f"{CHAIN}:{NPM}:2", "uniswap_v3", 8.0, 0.0, actions=-8.0),
        # Burned before the span, still the wallet's: listed, worth nothing at either end.
        Change(f"{CHAIN}:{NPM}:3", "uniswap_v3", 0.0, 0.0),
    ]
    # Burned in between: collecting the 3 AAA and 2 BBB owed is taking them out.
    [burned] = [
        c
        for c in UNISWAP_V3.changes(queries.ctx, WALLET, as_of(10), as_of(11))
        if c.id.endswith(":3")
    ]
    assert burned == Change(f"{CHAIN}:{NPM}:3", "uniswap_v3", 8.0, 0.0, actions=-8.0)


def test_the_portfolio_puts_each_read_sides_part_in_its_list(queries: Queries) -> None:
    body = queries.portfolio(WALLET, as_of(13))
    assert [p["id"] for p in body["positions"]] == [f"{CHAIN}:{NPM}:1"]
    assert body["lending"] == []
    assert [b["token"] for b in body["balances"]] == [AAA, NOMETA]
    assert (body["total_usd"], body["balances_usd"]) == (11.0 + 6.0, 6.0)
    diff = queries.diff(WALLET, as_of(11), as_of(13))
    assert (diff["value_from"], diff["value_to"]) == (8.0 + 8.0 + 10.0, 11.0 + 6.0)
    assert diff["explained"] == {"price": 3.0 + 5.0, "interest": 0.0, "fees": 0.0, "actions": -17.0}


def test_latest_rows_is_the_temporal_read_with_every_value_bound() -> None:
    sql = latest_rows(
        "pool_ticks", "pool, tick", "pool, tick", " AND pool IN {pools:Array(String)}"
    )
    assert sql == (
        "SELECT pool, tick FROM (SELECT * FROM defimon.pool_ticks WHERE chain_id = {chain:UInt64} "
        "AND pool IN {pools:Array(String)} AND block_number <= {block:UInt64} "
        "ORDER BY pool, tick, block_number, block_hash, version DESC "
        "LIMIT 1 BY pool, tick, block_number, block_hash) "
        "WHERE is_deleted = 0 ORDER BY pool, tick, block_number DESC LIMIT 1 BY pool, tick"
    )
    versions = latest_rows("morpho_positions", "account_id", "account_id", log_index=True)
    assert versions.endswith(
        "ORDER BY account_id, block_number DESC, log_index DESC LIMIT 1 BY account_id"
    )


def _final_form(where: str) -> str:
    """latest_rows as it read before: FINAL, then the newest row per key."""
    return (
        "SELECT account_id, asset, block_number, log_index, block_hash, scaled_supply "
        "FROM defimon.account_versions FINAL WHERE chain_id = {chain:UInt64}"
        + where
        + " AND block_number <= {block:UInt64} "
        "ORDER BY account_id, asset, block_number DESC, log_index DESC "
        "LIMIT 1 BY account_id, asset"
    )


def test_latest_rows_returns_what_final_returns(store: Store) -> None:
    """Many versions per key, several in one block (log order decides), reorg retractions (a
    newer version with is_deleted = 1) and blocks rewritten under a new hash after them."""
    store.command(
        "INSERT INTO defimon.account_versions (chain_id, account_id, protocol, pool, owner, "
        "asset, block_number, log_index, block_hash, block_time, tx_hash, event, "
        "scaled_supply, version, is_deleted) "
        "SELECT 999, concat('a', toString(modulo(number, 40))), 'aave_v3', 'p', "
        "concat('o', toString(modulo(number, 8))), toString(modulo(number, 3)), "
        "intDiv(number, 40) + 1, toUInt32(modulo(cityHash64(number), 4)), "
        "concat('h', toString(intDiv(number, 40) + 1)), now64(3), '', 'Supply', number, "
        "number, 0 FROM numbers(4000)"
    )
    staged = "CREATE TABLE defimon.staged AS defimon.account_versions ENGINE = Memory"
    store.command(staged)
    # Retract every seventh row; rewrite a third of those under another hash (the reorg's
    # new chain), and bring back later, under their own hash with a newer version, some that
    # were not (a block is live under one hash at a time).
    store.command(
        "INSERT INTO defimon.staged SELECT * REPLACE (version + 100000 AS version, "
        "toUInt8(1) AS is_deleted) FROM defimon.account_versions "
        "WHERE modulo(scaled_supply, 7) = 0"
    )
    store.command(
        "INSERT INTO defimon.staged SELECT * REPLACE (version + 200000 AS version, "
        "concat(block_hash, 'b') AS block_hash) FROM defimon.account_versions "
        "WHERE modulo(scaled_supply, 21) = 0"
    )
    store.command(
        "INSERT INTO defimon.staged SELECT * REPLACE (version + 300000 AS version) "
        "FROM defimon.account_versions WHERE modulo(scaled_supply, 35) = 0 "
        "AND modulo(scaled_supply, 3) != 0"
    )
    store.command("INSERT INTO defimon.account_versions SELECT * FROM defimon.staged")
    columns = "account_id, asset, block_number, log_index, block_hash, scaled_supply"
    by = "account_id, asset"
    compared = 0
    for where, extra in (("", {}), (" AND owner = {owner:String}", {"owner": "o3"})):
        for block in (1, 7, 33, 50, 77, 100, 1000):
            params = {"chain": 999, "block": block, **extra}
            old = sorted(store.rows(_final_form(where), params))
            new = sorted(
                store.rows(
                    latest_rows("account_versions", columns, by, where, log_index=True), params
                )
            )
            assert new == old
            compared += len(old)
    store.command("DROP TABLE defimon.staged")
    assert compared > 500
