"""The protocols' readers (protocols/<name>/reader.py) behind the chain reader: what each
parent announces, which logs name a wallet, and that the reader side of the flow names no
protocol (it only iterates the registry's readers)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from flows.chain_reader import ChainReader, _moved, children_of
from flows.rpc import RpcClient
from protocols.aave_v3.events import ASSET_SOURCE_UPDATED, RESERVE_INITIALIZED, SCALED_MINT
from protocols.registry import PROTOCOLS
from protocols.spec import Child
from protocols.uniswap_v3.events import POOL_CREATED, TRANSFER
from schemas.chain_config import AaveV3Config, ChainConfig, CompoundV3Config, UniswapV3Config

ROOT = Path(__file__).resolve().parents[2]
FACTORY, NPM = "0x" + "44" * 20, "0x" + "11" * 20
POOL, CONFIGURATOR, ORACLE = "0x" + "22" * 20, "0x" + "55" * 20, "0x" + "66" * 20
COMET = "0x" + "77" * 20
T0, T1, NEW_POOL = "0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20
A_TOKEN, STABLE, VARIABLE, FEED = ("0x" + c * 20 for c in ("d4", "e5", "f6", "07"))
CONFIG = ChainConfig(
    chain_id=1,
    uniswap_v3=UniswapV3Config(FACTORY, NPM),
    aave_v3=AaveV3Config(POOL, CONFIGURATOR, ORACLE),
    compound_v3=CompoundV3Config((COMET,)),
)


def word(address: str) -> str:
    return address[2:].rjust(64, "0")


def item(address: str, *topics: str, data: str = "0x", block: int = 9) -> dict[str, Any]:
    return {"address": address, "blockNumber": hex(block), "topics": list(topics), "data": data}


def test_each_reader_watches_its_contracts_and_says_what_its_parents_announce() -> None:
    reader = ChainReader(RpcClient("http://127.0.0.1:9"), CONFIG)
    assert set(reader.fixed) == {FACTORY, NPM, POOL, CONFIGURATOR, ORACLE, COMET}
    assert reader.parents == {FACTORY: "factory", CONFIGURATOR: "configurator", ORACLE: "oracle"}
    assert reader.prices.oracle == ORACLE  # the Aave reader configures the price service
    parents = reader._announcers
    created = item(
        FACTORY,
        POOL_CREATED,
        "0x" + word(T0),
        "0x" + word(T1),
        "0x" + f"{3000:064x}",
        data="0x" + f"{60:064x}" + word(NEW_POOL),
    )
    assert children_of(created, parents) == [Child(9, NEW_POOL, (T0, T1))]
    # A reserve listed since 3.2 has no stable debt token (0x0): not announced.
    listed = item(
        CONFIGURATOR,
        RESERVE_INITIALIZED,
        "0x" + word(T0),
        "0x" + word(A_TOKEN),
        data="0x" + word("0x" + "00" * 20) + word(VARIABLE) + word("0x" + "99" * 20),
    )
    assert children_of(listed, parents) == [Child(9, A_TOKEN, (T0,)), Child(9, VARIABLE, ())]
    source = item(ORACLE, ASSET_SOURCE_UPDATED, "0x" + word(T1), "0x" + word(FEED))
    assert children_of(source, parents) == [Child(9, FEED, (T1,), "feed")]
    # The same log from a contract that is no parent, or malformed, announces nothing.
    assert children_of({**created, "address": NPM}, parents) == []
    assert children_of({**created, "data": "0x" + f"{60:064x}"}, parents) == []
    assert children_of({**source, "blockNumber": "0xzz"}, parents) == []


def test_the_readers_say_which_logs_name_a_wallet() -> None:
    tracker = ChainReader(RpcClient("http://127.0.0.1:9"), CONFIG).balances
    wallet = "0x" + "ab" * 20
    nft = item(NPM, TRANSFER, "0x" + "00" * 32, "0x" + word(wallet), "0x" + f"{1:064x}")
    erc20 = item(T0, TRANSFER, "0x" + "00" * 32, "0x" + word(T1))  # 3 topics: not an NFT
    mint = item(A_TOKEN, SCALED_MINT, "0x" + word(T0), "0x" + word(T1), block=7)
    assert tracker.discover_wallets([nft, erc20]) == {wallet: 9}
    assert tracker.discover_wallets([mint]) == {T1: 7}


def test_the_reader_side_of_the_flow_names_no_protocol() -> None:
    for module in ("flows/chain_reader.py", "flows/balance_reader.py", "flows/watch.py"):
        tree = ast.parse((ROOT / module).read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        named = {m for m in imported for p in PROTOCOLS if m.startswith(f"protocols.{p}")}
        assert named == set(), module


def test_a_protocol_read_counts_as_moved_only_where_it_differs_from_the_latest() -> None:
    # Read at every live block (a Morpho market's oracle, a comet): an answer equal to the
    # block before's is right whichever block it came from, so a racy head read is not redone.
    market_a, market_b = "0x" + "aa" * 32, "0x" + "bb" * 32
    before = {market_a: (3000, 7), market_b: (1, 2)}
    assert not _moved({market_a: (3000, 7)}, before)
    assert _moved({market_a: (3001, 7)}, before)
    assert _moved({"0x" + "cc" * 32: (1, 1)}, before)  # a market not read before
    assert _moved({market_a: (3000, 7)}, None)  # nothing read before
    assert _moved(5, 5)  # a read that is not per key (a pool's revision): always
