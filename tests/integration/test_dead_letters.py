"""Malformed logs from a watched address go to the dead letters with a reason; the flow goes on.

The logs are real: for a few blocks a watched pool's code is replaced (anvil_setCode) by a
tiny contract that emits whatever LOG1 it is sent, then the pool's code is put back.
"""

from __future__ import annotations

from pathlib import Path

from eth_utils import keccak

from protocols.uniswap_v3 import events
from tests.conftest import Devnet
from tests.integration.test_exactness import check_block
from tests.support import Npm, block_number, live_server, minted_token_ids, rpc

# PUSH1 32 CALLDATASIZE SUB DUP1 PUSH1 32 PUSH1 0 CALLDATACOPY PUSH1 0 CALLDATALOAD SWAP1
# PUSH1 0 LOG1 STOP: emits LOG1(topic = calldata[0:32], data = calldata[32:]).
LOG1_EMITTER = "0x60203603806020600037600035906000a100"


def emit(devnet: Devnet, at: str, topic: str, data: bytes) -> None:
    sender = devnet.deployment.deployer
    tx = {"from": sender, "to": at, "data": topic + data.hex(), "gas": hex(200_000)}
    tx_hash = rpc(devnet.rpc_url, "eth_sendTransaction", [tx])
    receipt = None
    while receipt is None:
        receipt = rpc(devnet.rpc_url, "eth_getTransactionReceipt", [tx_hash])
    assert receipt["status"] == "0x1" and len(receipt["logs"]) == 1


def test_malformed_logs_are_dead_lettered_and_the_flow_goes_on(
    devnet: Devnet, tmp_path: Path
) -> None:
    for _ in range(10):
        devnet.simulator.step()
    pool = devnet.deployment.pools[0].address
    chain_id = devnet.deployment.chain_id
    with live_server(tmp_path, [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        original = rpc(devnet.rpc_url, "eth_getCode", [pool, "latest"])
        rpc(devnet.rpc_url, "anvil_setCode", [pool, LOG1_EMITTER])
        try:
            unknown = "0x" + keccak(text="NotAUniswapEvent(uint256)").hex()
            emit(devnet, pool, unknown, (7).to_bytes(32, "big"))
            emit(devnet, pool, events.INITIALIZE, (1).to_bytes(32, "big"))  # 32 of 64 bytes
        finally:
            rpc(devnet.rpc_url, "anvil_setCode", [pool, original])
        for _ in range(5):
            devnet.simulator.step()
        head = block_number(devnet.rpc_url)
        server.wait_processed(chain_id, head)

        dead = server.runtime.store.dicts(
            "SELECT address, topics, reason FROM defimon.dead_letters FINAL ORDER BY block_number"
        )
        assert [(d["address"], d["topics"][0]) for d in dead] == [
            (pool, unknown),
            (pool, events.INITIALIZE),
        ]
        assert "unknown topic" in dead[0]["reason"]
        assert "32 bytes, expected 64" in dead[1]["reason"]
        # The flow went on, and exactly: positions still equal the chain's own answers.
        npm = Npm(devnet.rpc_url, devnet.deployment.position_manager)
        assert (
            check_block(
                server, devnet, npm, head, max(minted_token_ids(devnet.rpc_url, npm.address))
            )
            > 0
        )
