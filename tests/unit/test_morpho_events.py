"""Morpho Blue log decoding: one real log of each of the 17 events (captured from the contract
by tests/integration/test_morpho_contract.py, with its fields decoded there by eth_abi from
the compiled ABI), and the malformed logs a decoder must refuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocols.morpho_blue import events as ev
from schemas.chain import RawLog

MORPHO = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
LOGS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "morpho_blue_logs.json").read_text()
)["logs"]
BY_NAME = {vector["name"]: vector for vector in LOGS}


def raw(topics: list[str] | tuple[str, ...], data: str) -> RawLog:
    return RawLog(31337, 10, "0xbb", 0, "0xtx", 0, MORPHO, tuple(topics), data)


def flat(value: Any) -> Any:
    if isinstance(value, tuple):
        return [flat(v) for v in value]
    return value


def test_the_vectors_hold_every_event() -> None:
    assert set(BY_NAME) == set(ev.SIGNATURES)
    assert {v["topics"][0] for v in LOGS} == set(ev.TOPICS.values())


@pytest.mark.parametrize("vector", LOGS, ids=lambda v: v["name"])
def test_a_real_log_decodes_to_its_abi_fields(vector: dict[str, Any]) -> None:
    event = ev.decode(raw(vector["topics"], vector["data"]))
    assert type(event).__name__ == vector["name"]
    assert flat(tuple(event)) == vector["fields"]


def test_fields_land_in_their_names() -> None:
    """The layouts mix topics and data differently: spot-check the names, not only order."""
    withdraw = ev.decode(raw(BY_NAME["Withdraw"]["topics"], BY_NAME["Withdraw"]["data"]))
    assert isinstance(withdraw, ev.Withdraw)
    # caller is a data word, on_behalf and receiver are topics
    assert withdraw.caller == "0x" + BY_NAME["Withdraw"]["data"][26:66]
    assert withdraw.on_behalf == "0x" + BY_NAME["Withdraw"]["topics"][2][26:]
    assert withdraw.receiver == "0x" + BY_NAME["Withdraw"]["topics"][3][26:]
    assert withdraw.receiver != withdraw.on_behalf
    liquidate = ev.decode(raw(BY_NAME["Liquidate"]["topics"], BY_NAME["Liquidate"]["data"]))
    assert isinstance(liquidate, ev.Liquidate)
    assert liquidate.bad_debt_assets > 0 and liquidate.seized_assets == 11 * 10**18
    create = ev.decode(raw(BY_NAME["CreateMarket"]["topics"], BY_NAME["CreateMarket"]["data"]))
    assert isinstance(create, ev.CreateMarket)
    assert create.params.lltv == 86 * 10**16
    authorization = BY_NAME["SetAuthorization"]
    assert ev.decode(raw(authorization["topics"], authorization["data"])) == ev.SetAuthorization(
        *authorization["fields"]
    )


def test_malformed_logs_are_refused() -> None:
    supply = BY_NAME["Supply"]
    with pytest.raises(ev.DecodeError, match="no topics"):
        ev.decode(raw((), "0x"))
    with pytest.raises(ev.DecodeError, match="unknown topic"):
        ev.decode(raw(("0x" + "ab" * 32,), "0x"))
    with pytest.raises(ev.DecodeError, match="topics, expected 4"):
        ev.decode(raw(supply["topics"][:3], supply["data"]))
    with pytest.raises(ev.DecodeError, match="expected 64"):
        ev.decode(raw(supply["topics"], supply["data"][:-64]))
    high = [*supply["topics"][:2], "0x" + "ff" * 32, *supply["topics"][3:]]
    with pytest.raises(ev.DecodeError, match="high bits"):
        ev.decode(raw(high, supply["data"]))
    authorization = BY_NAME["SetAuthorization"]
    with pytest.raises(ev.DecodeError, match="bool"):
        ev.decode(raw(authorization["topics"], "0x" + "0" * 63 + "2"))
    owner = BY_NAME["SetOwner"]
    with pytest.raises(ev.DecodeError, match="expected 0"):
        ev.decode(raw(owner["topics"], "0x" + "0" * 64))


def test_topics_are_the_canonical_signatures() -> None:
    assert ev.SIGNATURES["CreateMarket"] == (
        "CreateMarket(bytes32,(address,address,address,address,uint256))"
    )
    # a well-known topic: Morpho Blue's Supply on mainnet
    assert ev.TOPICS["Supply"] == (
        "0xedf8870433c83823eb071d3df1caa8d008f12f6440918c20d75a3602cda30fe0"
    )
