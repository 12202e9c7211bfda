"""The market stage's orchestration (flows/market.py): the parts a chain config names, and a
restored stage refusing a config whose protocols changed."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from flows.market import STATE_FORMAT, check_protocols, market_state, market_step
from protocols.registry import PLUGINS
from schemas.chain import BlockBatch, BlockHeader
from schemas.chain_config import ChainConfig, CompoundV3Config
from schemas.errors import ConfigError


def test_the_stage_runs_a_part_for_each_protocol_the_config_names_in_registry_order() -> None:
    eth = ChainConfig.builtin("ethereum")
    state = market_state(eth, 4)
    registry_order = [p.name for p in PLUGINS]
    assert list(state.parts) == [n for n in registry_order if n in state.parts]
    assert {"aave_v3", "compound_v3", "uniswap_v3", "erc20"} <= set(state.parts)
    lending_only = replace(eth, uniswap_v3=None, compound_v3=None)
    assert set(market_state(lending_only, 4).parts) == {"aave_v3", "erc20"}


def test_a_restored_stage_refuses_a_config_whose_protocols_changed() -> None:
    eth = ChainConfig.builtin("ethereum")
    state = market_state(replace(eth, compound_v3=None), 4)
    check_protocols(state, replace(eth, compound_v3=None))  # the same set: runs on
    with pytest.raises(ConfigError, match="holds a flow of aave_v3, erc20, uniswap_v3, but the"):
        check_protocols(state, replace(eth, compound_v3=CompoundV3Config(("0x" + "c0" * 20,))))


def test_a_restored_stage_saved_in_another_state_format_is_refused() -> None:
    eth = ChainConfig.builtin("ethereum")
    state = pickle.loads(pickle.dumps(market_state(eth, 4)))
    check_protocols(state, eth)  # this version's own state: runs on
    # A slots dataclass pickles its field values in order: a state saved before the format
    # field existed comes back without it (and with every later-added field misplaced).
    older = pickle.loads(pickle.dumps(market_state(eth, 4)))
    del older.state_format
    with pytest.raises(ConfigError, match=r"state format 1; this one reads \d+\); delete"):
        check_protocols(older, eth)
    older.state_format = STATE_FORMAT + 1
    with pytest.raises(ConfigError, match="recovery directory holds flow state saved by another"):
        check_protocols(older, eth)


def test_an_empty_backfill_block_changes_nothing() -> None:
    config = ChainConfig(
        chain_id=1, usd_tokens=("0x" + "0a" * 20,), feeds=(("0x" + "0b" * 20, "0x" + "0c" * 20),)
    )
    state = market_state(config, 2)
    header = BlockHeader(1, 5, "0x" + "05" * 32, "0x" + "04" * 32, 50)
    state, out = market_step(state, BlockBatch(header, [], 5, False, checkpoint=False))
    assert out.prices == [] and out.parts == {} and out.shard_inputs == {}
    assert state.last_block == 5 and not state.routed
