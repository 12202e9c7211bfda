"""A configured comet in the running flow, against a real node (anvil).

No package ships Comet's bytecode, so no real comet can run here. What can be checked for
real is the wiring and the faults: the comet address is given (anvil_setCode) a tiny
contract that emits whatever LOG3 it is sent and answers no view call (every eth_call the
reader makes there fails, as it would for a comet not deployed yet). Comet-shaped logs then
reach the flow; they land in the dead letters with the reason, nothing is invented for the
account, and the rest of the flow stays exact.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from eth_abi import encode

from flows.endpoint import ChainEndpoint
from protocols.compound_v3 import events as cev
from schemas.chain_config import CompoundV3Config
from tests.conftest import Devnet
from tests.integration.test_exactness import check_block
from tests.support import Npm, block_number, live_server, minted_token_ids, rpc

COMET = "0x" + "c0" * 20
# PUSH1 64 CALLDATALOAD PUSH1 32 CALLDATALOAD PUSH1 0 CALLDATALOAD PUSH1 96 CALLDATASIZE SUB
# DUP1 PUSH1 96 PUSH1 0 CALLDATACOPY PUSH1 0 LOG3 STOP: emits LOG3 with topics calldata[0:96]
# and data calldata[96:]. A 4-byte view call underflows the size and runs out of gas.
LOG3_EMITTER = "0x604035602035600035606036038060606000376000a300"


def emit3(devnet: Devnet, topics: list[str], data: bytes) -> None:
    sender = devnet.deployment.deployer
    calldata = "0x" + "".join(t[2:] for t in topics) + data.hex()
    tx = {"from": sender, "to": COMET, "data": calldata, "gas": hex(200_000)}
    tx_hash = rpc(devnet.rpc_url, "eth_sendTransaction", [tx])
    receipt = None
    while receipt is None:
        receipt = rpc(devnet.rpc_url, "eth_getTransactionReceipt", [tx_hash])
    assert receipt["status"] == "0x1" and len(receipt["logs"]) == 1


def word(address: str) -> str:
    return "0x" + encode(["address"], [address]).hex()


def test_comet_logs_without_comet_state_are_dead_letters_and_the_flow_goes_on(
    devnet: Devnet, tmp_path: Path
) -> None:
    for _ in range(10):
        devnet.simulator.step()
    config = replace(devnet.deployment.to_chain_config(), compound_v3=CompoundV3Config((COMET,)))
    endpoint = ChainEndpoint(config, devnet.rpc_url, devnet.anvil.ws_url)
    chain_id = config.chain_id
    alice = devnet.deployment.deployer.lower()
    rpc(devnet.rpc_url, "anvil_setCode", [COMET, LOG3_EMITTER])
    with live_server(tmp_path, [endpoint]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        emit3(devnet, [cev.SUPPLY, word(alice), word(alice)], encode(["uint256"], [10**6]))
        emit3(devnet, [cev.SUPPLY, word(alice), word(alice)], encode(["uint256"] * 2, [1, 2]))
        for _ in range(5):
            devnet.simulator.step()
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain_id, head)

        dead = server.runtime.store.dicts(
            "SELECT address, stage, reason FROM defimon.dead_letters FINAL "
            "WHERE stage = 'compound_v3' ORDER BY block_number"
        )
        assert [(d["address"], d["stage"]) for d in dead] == [(COMET, "compound_v3")] * 2
        assert "answered no reads" in dead[0]["reason"]
        assert "data is 64 bytes, expected 32" in dead[1]["reason"]
        versions = server.runtime.store.scalar(
            "SELECT count() FROM defimon.comet_account_versions FINAL"
        )
        assert versions == 0  # nothing invented without the comet's own state
        response = server.get(f"/v1/portfolio/{alice}")
        assert response.status_code == 200, response.text
        assert [a for a in response.json()["lending"] if a["protocol"] == "compound_v3"] == []
        # The flow went on, and exactly.
        npm = Npm(devnet.rpc_url, devnet.deployment.position_manager)
        top = max(minted_token_ids(devnet.rpc_url, npm.address))
        assert check_block(server, devnet, npm, head, top) > 0
