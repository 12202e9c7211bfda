"""A chain config names any subset of the protocols; the flow follows only those.

Parsing (each protocol alone, every subset of a built-in's sections, none refused with a
sentence), what the reader watches and which wallets it discovers per subset, and the price
roots that remain without Uniswap: the config's feeds and USD-based comets (stale with a
reason when a feed cannot be read, never 0).
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import replace
from fractions import Fraction
from importlib import resources
from typing import Any

import pytest

from flows.chain_reader import ChainReader
from flows.market import MarketState, market_step
from flows.rpc import RpcClient
from protocols.compound_v3.plugin import CometPart, comet_anchors
from protocols.compound_v3.state import CometMarket
from protocols.erc20.events import TRANSFER
from protocols.prices import feed_anchor, feed_anchors, merged_roots
from schemas.chain import BlockBatch, BlockHeader
from schemas.chain_config import NO_PROTOCOL, ChainConfig
from schemas.errors import ConfigError
from schemas.positions import TokenPrice
from schemas.prices import SourceRead
from tests.unit.test_compound_state import (
    CHAIN,
    COMET,
    USD,
    USDC,
    WETH,
    WETH_FEED,
    worked_example,
)

PROTOCOLS = ("uniswap_v3", "aave_v3", "compound_v3")
FEED = "0x" + "fe" * 20
TOKEN = "0x" + "70" * 20


def ethereum() -> dict[str, Any]:
    text = (resources.files("schemas") / "chains" / "ethereum.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def without(raw: dict[str, Any], *sections: str) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in sections}


@pytest.mark.parametrize("kept", PROTOCOLS)
def test_each_protocol_alone_parses_and_round_trips(kept: str) -> None:
    raw = without(ethereum(), *(p for p in PROTOCOLS if p != kept))
    config = ChainConfig.from_dict(raw)
    assert config.protocols == (kept,)
    assert (config.uniswap_v3 is not None) == (kept == "uniswap_v3")
    assert (config.aave_v3 is not None) == (kept == "aave_v3")
    assert (config.compound_v3 is not None) == (kept == "compound_v3")
    text = config.to_toml()
    assert [f"[{p}]" in text for p in PROTOCOLS] == [p == kept for p in PROTOCOLS]
    assert ChainConfig.from_dict(tomllib.loads(text)) == config


def test_every_subset_of_the_sections_gives_those_protocols() -> None:
    full = ethereum()
    for n in (1, 2, 3):
        for kept in itertools.combinations(PROTOCOLS, n):
            config = ChainConfig.from_dict(without(full, *set(PROTOCOLS) - set(kept)))
            assert config.protocols == kept
            # Everything else of the config is the same whatever protocols it names.
            assert config.usd_tokens == ChainConfig.from_dict(full).usd_tokens
            assert config.rpc_http and config.start_block == full["start_block"]


def test_a_config_with_no_protocol_is_refused_with_a_sentence() -> None:
    bare = without(ethereum(), *PROTOCOLS)
    with pytest.raises(ConfigError, match=re.escape(NO_PROTOCOL)):
        ChainConfig.from_dict(bare)
    assert NO_PROTOCOL.startswith("chain config names no protocol: give at least one of")
    # A [compound_v3] without comets follows nothing either.
    with pytest.raises(ConfigError, match="names no protocol"):
        ChainConfig.from_dict({**bare, "compound_v3": {"comets": []}})
    # Made in code, too (a replace that drops every section).
    full = ChainConfig.from_dict(ethereum())
    with pytest.raises(ConfigError, match="names no protocol"):
        replace(full, uniswap_v3=None, aave_v3=None, compound_v3=None)


def test_feeds_alone_track_erc20_balances_and_round_trip() -> None:
    bare = without(ethereum(), *PROTOCOLS)
    bare["pricing"] = {**bare["pricing"], "feeds": {TOKEN: FEED}}
    bare["wallets"] = {"watch": ["0x" + "a1" * 20]}
    config = ChainConfig.from_dict(bare)
    assert config.protocols == () and config.feeds == ((TOKEN, FEED),)
    assert ChainConfig.from_dict(tomllib.loads(config.to_toml())) == config


def test_an_incomplete_section_still_names_what_is_missing() -> None:
    raw = ethereum()
    del raw["uniswap_v3"]["factory"]
    with pytest.raises(ConfigError, match="chain config is missing 'factory'"):
        ChainConfig.from_dict(raw)


@pytest.mark.parametrize("kept", PROTOCOLS)
def test_the_reader_watches_only_the_protocols_named(kept: str) -> None:
    config = ChainConfig.from_dict(without(ethereum(), *(p for p in PROTOCOLS if p != kept)))
    rpc = RpcClient("http://127.0.0.1:9")
    reader = ChainReader(rpc, config)
    full = ChainReader(rpc, ChainConfig.from_dict(ethereum()))
    uni, aave, comet = config.uniswap_v3, config.aave_v3, config.compound_v3
    if kept == "uniswap_v3":
        assert uni is not None
        assert reader.fixed == [uni.factory, uni.position_manager]
        assert reader.parents == {uni.factory: "factory"}
    elif kept == "aave_v3":
        assert aave is not None
        assert reader.fixed == [aave.pool, aave.pool_configurator, aave.oracle]
        assert reader.parents == {aave.pool_configurator: "configurator", aave.oracle: "oracle"}
    else:
        assert comet is not None
        assert reader.fixed == list(comet.comets) and reader.parents == {}
    assert set(reader.fixed) < set(full.fixed)
    # One reader per protocol named, none for the others.
    assert [r.name for r in reader.readers] == [kept]
    assert [r.name for r in full.readers] == ["aave_v3", "compound_v3", "uniswap_v3"]
    # Position owners are discovered from the position manager's Transfer only with Uniswap.
    assert (TRANSFER in reader.balances.wallet_topics) == (kept == "uniswap_v3")


def test_without_uniswap_an_nft_transfer_names_no_wallet() -> None:
    config = ChainConfig.from_dict(without(ethereum(), "uniswap_v3"))
    tracker = ChainReader(RpcClient("http://127.0.0.1:9"), config).balances
    mint = {
        "address": "0x" + "99" * 20,  # any contract's ERC-721 Transfer
        "blockNumber": "0x5",
        "topics": [
            TRANSFER,
            "0x" + "00" * 32,
            "0x" + "00" * 12 + "a1" * 20,
            "0x" + "00" * 31 + "01",
        ],
        "data": "0x",
    }
    assert tracker.discover_wallets([mint]) == {}


# Price roots -----------------------------------------------------------------------------


def read(answer: int | None, error: str = "") -> SourceRead:
    return SourceRead(FEED, "feed", answer, error)


def test_a_feed_prices_its_token_and_keeps_its_last_answer_stale_never_zero() -> None:
    first = feed_anchor(TOKEN, read(250_000_000), None, 10)
    assert first == (Fraction(5, 2), TokenPrice(TOKEN, 2.5, FEED, 0))
    # Never read well: no price at all (the token is unpriced), never a price of 0.
    assert feed_anchor(TOKEN, read(None, "reverted (boom)"), None, 11) is None
    assert feed_anchor(TOKEN, read(0), None, 11) is None
    broken = feed_anchor(TOKEN, read(None, "reverted (boom)"), first, 12)
    assert broken is not None
    assert broken[0] == Fraction(5, 2) and broken[1].usd == 2.5
    assert broken[1].stale == f"feed {FEED} unreadable: reverted (boom) since block 12"
    # Still so later: the same stale price (nothing new to store), not a later block.
    assert feed_anchor(TOKEN, read(None, "reverted (boom)"), broken, 13) == broken
    negative = feed_anchor(TOKEN, read(-1), first, 14)
    assert negative is not None and negative[1].stale == f"feed {FEED} answered -1 since block 14"
    # Recovered: fresh from that block.
    assert feed_anchor(TOKEN, read(300_000_000), broken, 15) == (
        Fraction(3),
        TokenPrice(TOKEN, 3.0, FEED, 0),
    )
    # A feed not read at a block keeps what it had.
    assert feed_anchors([(TOKEN, FEED)], {}, {TOKEN: first}, 16) == {TOKEN: first}


def test_a_compound_only_market_prices_from_its_usd_comet() -> None:
    state = MarketState(
        CHAIN, (USDC,), 2, parts={"compound_v3": CometPart(CometMarket(CHAIN, (COMET,)), (USDC,))}
    )
    weth_prices: list[float] = []
    for b in worked_example().batches:
        state, out = market_step(state, b)
        assert "compound_v3" in out.parts and "uniswap_v3" not in out.parts
        weth_prices += [p.usd for p in out.prices if p.token == WETH]
    assert weth_prices == [2_000.0, 1_700.0]
    assert state.prices[USDC] == TokenPrice(USDC, 1.0, "usd", 0)  # a USD token is its own root
    assert state.prices[WETH] == TokenPrice(WETH, 1_700.0, WETH_FEED, 0)
    comet = state.part("compound_v3").market
    roots = comet_anchors(comet.configs, comet.prices, (USDC,))
    assert roots[WETH][0] == Fraction(1_700 * USD, USD)
    # A comet whose base is no USD token prices in its base: no root.
    assert comet_anchors(comet.configs, comet.prices, ()) == {}
    # An Aave oracle price wins over a configured feed.
    aave = {WETH: (Fraction(1_690), TokenPrice(WETH, 1_690.0, "0xaave", 0))}
    feed = {WETH: (Fraction(1_650), TokenPrice(WETH, 1_650.0, FEED, 0))}
    assert merged_roots(aave, feed)[WETH][1].usd == 1_690.0
    assert merged_roots({}, feed)[WETH][1].usd == 1_650.0
    # The comet's price fills only what nothing else prices: a configured feed wins.
    state.feeds = ((WETH, FEED),)
    header = BlockHeader(CHAIN, 6, f"0x{6:064x}", f"0x{5:064x}", 6)
    batch = BlockBatch(header, [], 6, True)
    batch.price_reads = {FEED: read(165_000_000_000)}
    state, out = market_step(state, batch)
    assert [(p.token, p.usd, p.source) for p in out.prices] == [(WETH, 1_650.0, FEED)]


def test_the_usd_tokens_are_priced_from_the_first_block_with_logs_without_any_pool() -> None:
    state = MarketState(CHAIN, (USDC,), 2)
    got = []
    for number, logs in ((6, []), (7, worked_example().batches[0].logs), (8, [])):
        header = BlockHeader(CHAIN, number, f"0x{number:064x}", f"0x{number - 1:064x}", number)
        state, out = market_step(state, BlockBatch(header, logs, number, False))
        got.append(out.prices)
    # Not at an empty block (a backfill never sees those: both runs route at the same one),
    # then once, and not again while nothing moves.
    assert got == [[], [TokenPrice(USDC, 1.0, "usd", 0)], []]


def test_configured_feeds_price_a_market_without_protocols() -> None:
    state = MarketState(CHAIN, (), 2, feeds=((TOKEN, FEED),))
    answers = [(7, 200_000_000, ""), (8, None, "reverted (gone)"), (9, 210_000_000, "")]
    got: list[TokenPrice] = []
    for number, answer, error in answers:
        header = BlockHeader(CHAIN, number, f"0x{number:064x}", f"0x{number - 1:064x}", number)
        batch = BlockBatch(header, [], number, True)
        batch.price_reads = {FEED: read(answer, error)}
        state, out = market_step(state, batch)
        got += out.prices
    assert [(p.usd, p.stale) for p in got] == [
        (2.0, ""),
        (2.0, f"feed {FEED} unreadable: reverted (gone) since block 8"),
        (2.1, ""),
    ]
