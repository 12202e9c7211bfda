"""Which wallets the source starts tracking, and the config's watch list."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from flows.chain_reader import ChainReader
from flows.rpc import RpcClient
from protocols.aave_v3.events import BORROW, SCALED_MINT, SUPPLY
from protocols.erc20.events import TRANSFER
from schemas.chain_config import AaveV3Config, ChainConfig, UniswapV3Config
from schemas.errors import ConfigError

NPM = "0x" + "11" * 20
POOL = "0x" + "22" * 20
A_TOKEN = "0x" + "33" * 20
ALICE, BOB, CAROL, DAVE = ("0x" + c * 20 for c in ("a1", "b2", "c3", "d4"))
ZERO = "0x" + "00" * 20
CONFIG = ChainConfig(
    chain_id=1,
    uniswap_v3=UniswapV3Config("0x" + "44" * 20, NPM),
    aave_v3=AaveV3Config(POOL, "0x" + "55" * 20, "0x" + "66" * 20),
    watch_wallets=(DAVE,),
)


def topic(address: str) -> str:
    return "0x" + address[2:].rjust(64, "0")


def item(address: str, block: int, *topics: str) -> dict[str, Any]:
    return {"address": address, "blockNumber": hex(block), "topics": list(topics), "data": "0x"}


def test_position_owners_and_aave_users_are_discovered_at_their_first_block() -> None:
    # The protocols' readers say which logs name a wallet (protocols/<name>/reader.py).
    tracker = ChainReader(RpcClient("http://127.0.0.1:9"), CONFIG, wallets=[CAROL]).balances
    raw = [
        item(NPM, 5, TRANSFER, topic(ZERO), topic(ALICE), "0x" + "0" * 63 + "1"),  # NFT mint
        item(NPM, 6, TRANSFER, topic(ALICE), topic(ZERO), "0x" + "0" * 63 + "1"),  # NFT burn
        item(A_TOKEN, 6, TRANSFER, topic(ZERO), topic(BOB)),  # an aToken's ERC-20 Transfer
        item(POOL, 7, SUPPLY, topic(A_TOKEN), topic(BOB), "0x" + "0" * 64),
        item(A_TOKEN, 4, SUPPLY, topic(A_TOKEN), topic(DAVE), "0x" + "0" * 64),  # not the Pool
        item(A_TOKEN, 8, SCALED_MINT, topic(BOB), topic(BOB)),
        item(POOL, 9, BORROW, topic(A_TOKEN), topic(CAROL), "0x" + "0" * 64),  # known already
        item(A_TOKEN, 3, SCALED_MINT, topic(ALICE), topic(ALICE)),
    ]
    assert tracker.discover_wallets(raw) == {ALICE: 3, BOB: 7}


def test_watch_list_is_optional_normalised_and_round_trips() -> None:
    base: dict[str, Any] = {
        "chain_id": 1,
        "uniswap_v3": {"factory": "0x" + "44" * 20, "position_manager": NPM},
    }
    assert ChainConfig.from_dict(base).watch_wallets == ()
    upper = "0x" + "AB" * 20
    config = ChainConfig.from_dict({**base, "wallets": {"watch": [upper, upper.lower(), ALICE]}})
    assert config.watch_wallets == (ALICE, upper.lower())
    assert ChainConfig.from_dict(tomllib.loads(config.to_toml())) == config
    with pytest.raises(ConfigError, match="not an address"):
        ChainConfig.from_dict({**base, "wallets": {"watch": ["0x1234"]}})
