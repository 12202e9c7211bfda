"""ERC-20 balances of tracked wallets equal the tokens' own `balanceOf`, to the wei.

Tracked: every wallet that owns a position NFT or uses Aave (the simulators' wallets), a
wallet on the config's watch list, and a wallet that already held tokens long before it
became tracked (live, by receiving a position NFT: its opening balance is read then).
Checked against `balanceOf` at the same block:
- live: every `balance` event the stream sent;
- time travel: through the API's query layer at every block (every tracked wallet, every
  token), and over HTTP with `?at=` for every fifth, where the portfolio's totals add up.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.queries import Queries
from devnet.contracts import ERC20_MINT, NPM_TRANSFER_FROM
from devnet.lending import LendingSimulator
from devnet.rpc import RpcClient
from devnet.txs import send_estimated
from flows.endpoint import ChainEndpoint
from protocols.aave_v3.events import BORROW, SUPPLY
from protocols.erc20.events import TRANSFER
from tests.conftest import Devnet
from tests.support import block_number, live_server, rpc, selector, stream_reader

WATCHED = "0x" + "5e" * 20  # on the config's watch list from the start
LATE = "0x" + "7a" * 20  # holds tokens long before it becomes tracked


def padded(address: str) -> str:
    return "0x" + address[2:].rjust(64, "0")


def balances_of(url: str, pairs: list[tuple[str, str]], block: int) -> dict[tuple[str, str], int]:
    """balanceOf(wallet) of each (wallet, token) at the block, in one JSON-RPC batch."""
    data = selector("balanceOf(address)")
    body = [
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "eth_call",
            "params": [{"to": token, "data": data + padded(wallet)[2:]}, hex(block)],
        }
        for i, (wallet, token) in enumerate(pairs)
    ]
    answers = {a["id"]: int(a["result"], 16) for a in httpx.post(url, json=body, timeout=30).json()}
    return {pair: answers[i] for i, pair in enumerate(pairs)}


def first_block_naming(url: str, address: str, topic0: str, wallet: str) -> int | None:
    logs = rpc(
        url,
        "eth_getLogs",
        [{"fromBlock": "0x0", "toBlock": "latest", "address": address,
          "topics": [topic0, None, padded(wallet)]}],
    )  # fmt: skip
    return min((int(lg["blockNumber"], 16) for lg in logs), default=None)


def tracked_since(devnet: Devnet, wallet: str) -> int | None:
    """The first block at which the wallet owned a position NFT or acted on Aave."""
    d = devnet.deployment
    assert d.aave is not None
    found = [
        first_block_naming(devnet.rpc_url, d.position_manager, TRANSFER, wallet),
        first_block_naming(devnet.rpc_url, d.aave.pool, SUPPLY, wallet),
        first_block_naming(devnet.rpc_url, d.aave.pool, BORROW, wallet),
    ]
    return min((b for b in found if b is not None), default=None)


def fund(client: RpcClient, devnet: Devnet, wallet: str, symbols: list[str], scale: int) -> int:
    block = 0
    for symbol in symbols:
        token = devnet.deployment.tokens[symbol]
        data = ERC20_MINT.encode(wallet, scale * 10**token.decimals)
        receipt = send_estimated(client, devnet.deployment.deployer, token.address, data, "fund")
        assert receipt is not None and receipt["status"] == "0x1"
        block = int(receipt["blockNumber"], 16)
    return block


def test_balances_equal_balance_of_live_and_at_every_block(devnet: Devnet, tmp_path: Path) -> None:
    d = devnet.deployment
    chain_id = d.chain_id
    client = RpcClient(devnet.rpc_url)
    lending = LendingSimulator(devnet.rpc_url, d, seed=11)
    fund(client, devnet, WATCHED, ["WETH", "USDC"], 3)
    late_funded = fund(client, devnet, LATE, ["WETH", "USDC"], 5)
    devnet.simulator.step()
    lending.tick()
    config = replace(d.to_chain_config(), watch_wallets=(WATCHED,))
    endpoint = ChainEndpoint(config, devnet.rpc_url, devnet.anvil.ws_url)
    with live_server(tmp_path, [endpoint]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        live: list[dict[str, Any]] = []
        stop = threading.Event()
        stream_reader(f"{server.url}/v1/stream", ("balance",), live, stop)
        try:
            devnet.simulator.step()
            lending.tick()
            fund(client, devnet, WATCHED, ["USDC"], 2)
            # LATE becomes tracked live by receiving a position NFT.
            token_id, owner = min(devnet.simulator.all_positions().items())
            receipt = send_estimated(
                client,
                owner,
                d.position_manager,
                NPM_TRANSFER_FROM.encode(owner, LATE, token_id),
                "give LATE a position",
            )
            assert receipt is not None and receipt["status"] == "0x1"
            late_since = int(receipt["blockNumber"], 16)
            fund(client, devnet, LATE, ["WETH", "DAI"], 1)
            devnet.simulator.step()
            head = block_number(devnet.rpc_url)
            server.wait_processed(chain_id, head)
        finally:
            stop.set()
        client.close()

        # Live: every balance event equals balanceOf at its block.
        assert len(live) > 20, "the stream should carry balance updates"
        assert {e["wallet"] for e in live} >= {LATE, WATCHED}
        for event in live:
            expected = balances_of(
                devnet.rpc_url, [(event["wallet"], event["token"])], event["block_number"]
            )
            assert int(event["amount"]) == sum(expected.values()), event
        # ... and what time travel says at that block, price and all.
        queries: Queries = server.app.state.queries
        revalued = 0
        for event in live:
            as_of = queries.resolve_at(chain_id, event["block_number"], head)
            at_block = {
                b["token"]: b for b in queries.portfolio_of("erc20", event["wallet"], as_of)
            }
            if event["amount"] == "0":
                assert event["token"] not in at_block
            else:
                # `confirmed` is the stream's: whether the block is final as it is sent.
                assert at_block[event["token"]] == {
                    k: v for k, v in event.items() if k != "confirmed"
                }
            revalued += event["updated_block"] < event["block_number"]
        assert revalued > 0, "a price move should revalue balances"
        (late_opening,) = [
            e for e in live if e["wallet"] == LATE and e["block_number"] == late_since
        ][:1]
        assert late_since > late_funded and int(late_opening["amount"]) > 0

        # Time travel: every tracked (wallet, token) at every block from its tracking on.
        first = {w: tracked_since(devnet, w) for w in d.wallets}
        since = {w: b for w, b in first.items() if b is not None}
        since[WATCHED] = d.start_block
        since[LATE] = late_since
        assert len(since) >= 5
        tokens = sorted(t.address for t in d.tokens.values())
        compared, nonzero = 0, 0
        for block in range(d.start_block, head + 1):
            wallets = sorted(w for w, b in since.items() if b <= block)
            if not wallets:
                continue
            as_of = queries.resolve_at(chain_id, block, head)
            expected = balances_of(devnet.rpc_url, [(w, t) for w in wallets for t in tokens], block)
            for wallet in wallets:
                served = queries.portfolio_of("erc20", wallet, as_of)
                amounts = {b["token"]: int(b["amount"]) for b in served}
                want = {t: expected[(wallet, t)] for t in tokens if expected[(wallet, t)]}
                assert amounts == want, f"{wallet} at block {block}"
                compared += len(tokens)
                nonzero += len(want)
                if block % 5 == 0 or block == head:
                    body = server.get(f"/v1/portfolio/{wallet}", at=str(block)).json()
                    assert body["balances"] == served
                    assert all(b["value_usd"] is not None for b in served)
                    assert body["balances_usd"] == pytest.approx(
                        sum(b["value_usd"] for b in served)
                    )
                    parts = sum(p["value_usd"] or 0.0 for p in body["positions"]) + sum(
                        a["value_usd"] for a in body["lending"]
                    )
                    assert body["total_usd"] == pytest.approx(parts + body["balances_usd"])
        assert compared > 1000 and nonzero > 200
        # Before LATE was tracked, the API knows nothing of its tokens.
        before = queries.resolve_at(chain_id, late_since - 1, head)
        assert queries.portfolio_of("erc20", LATE, before) == []
        dead = server.runtime.store.scalar(
            "SELECT count() FROM defimon.dead_letters FINAL WHERE stage = 'erc20'"
        )
        assert dead == 0
