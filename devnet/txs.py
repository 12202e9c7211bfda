"""Sending transactions from anvil's unlocked accounts, in bulk.

`eth_sendTransaction` lets anvil sign with its dev keys, so nothing is signed in Python.
Bulk sends switch automine off, give every transaction an explicit nonce and gas limit
(no per-transaction gas estimation, and a batch that anvil handles concurrently still
lands in order) and mine them with one `evm_mine`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from devnet.rpc import RpcClient, RpcError, RpcTransportError

log = logging.getLogger("defimon.devnet")

RECEIPT_TIMEOUT = 30.0
GAS_MARGIN = 1.25  # over eth_estimateGas: state can change between the estimate and the block
# Calldata (hex characters) sent in one JSON-RPC batch: anvil refuses bodies over 2 MB.
BATCH_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Tx:
    sender: str
    to: str | None  # None deploys a contract
    data: str
    gas: int


class TxFailed(RpcError):
    """A transaction that had to succeed reverted or was not mined."""


def tx_params(tx: Tx, nonce: int) -> dict[str, str]:
    params = {"from": tx.sender, "data": tx.data, "gas": hex(tx.gas), "nonce": hex(nonce)}
    if tx.to is not None:
        params["to"] = tx.to
    return params


def pending_nonces(rpc: RpcClient, senders: Sequence[str]) -> dict[str, int]:
    unique = list(dict.fromkeys(senders))
    counts = rpc.batch(("eth_getTransactionCount", [sender, "pending"]) for sender in unique)
    return {sender: int(count, 16) for sender, count in zip(unique, counts, strict=True)}


def mine_block(rpc: RpcClient, txs: Sequence[Tx], *, check: bool = True) -> list[dict[str, Any]]:
    """Send `txs` (in order per sender) and mine them in one block; returns their receipts.

    Leaves automine off; the caller switches it back on when it is done.
    With `check`, a reverted transaction raises TxFailed naming it.
    """
    rpc.call("evm_setAutomine", [False])
    nonces = pending_nonces(rpc, [tx.sender for tx in txs])
    hashes: list[str] = []
    calls: list[tuple[str, list[Any]]] = []
    size = 0
    for tx in txs:
        if calls and size + len(tx.data) > BATCH_BYTES:
            hashes += rpc.batch(calls)
            calls, size = [], 0
        calls.append(("eth_sendTransaction", [tx_params(tx, nonces[tx.sender])]))
        size += len(tx.data)
        nonces[tx.sender] += 1
    hashes += rpc.batch(calls)
    rpc.call("evm_mine", [])
    receipts = wait_receipts(rpc, hashes)
    if check:
        for index, receipt in enumerate(receipts):
            if receipt["status"] != "0x1":
                raise TxFailed(
                    f"transaction {index} of the block ({receipt['transactionHash']}) reverted"
                )
    return receipts


def wait_receipts(
    rpc: RpcClient, hashes: Sequence[str], timeout: float = RECEIPT_TIMEOUT
) -> list[dict[str, Any]]:
    """Receipts of `hashes`, polling until every one is mined."""
    receipts: list[dict[str, Any] | None] = [None] * len(hashes)
    deadline = time.monotonic() + timeout
    while True:
        missing = [index for index, receipt in enumerate(receipts) if receipt is None]
        if not missing:
            return [receipt for receipt in receipts if receipt is not None]
        found = rpc.batch(("eth_getTransactionReceipt", [hashes[index]]) for index in missing)
        for index, receipt in zip(missing, found, strict=True):
            receipts[index] = receipt
        if all(receipt is not None for receipt in found):
            continue
        if time.monotonic() > deadline:
            raise TxFailed(f"{len(missing)} transactions not mined after {timeout:g} s")
        time.sleep(0.002)


def send_estimated(
    rpc: RpcClient, sender: str, to: str, data: str, what: str, gas_margin: float = GAS_MARGIN
) -> dict[str, Any] | None:
    """One transaction, mined by automine; its receipt, or None (and a log line) if it would revert.

    Estimating first surfaces the revert reason instead of mining a failed transaction, and
    gives the gas limit. A transaction that still reverts when mined is logged; its receipt
    (status 0x0) is returned.
    """
    tx = {"from": sender, "to": to, "data": data}
    try:
        gas = int(rpc.call("eth_estimateGas", [tx]), 16)
    except RpcTransportError:
        raise
    except RpcError as exc:
        log.warning("%s skipped: %s", what, str(exc)[:200])
        return None
    tx["gas"] = hex(int(gas * gas_margin))
    receipt = wait_receipts(rpc, [rpc.call("eth_sendTransaction", [tx])])[0]
    if receipt["status"] != "0x1":
        log.warning("%s reverted in block %d", what, int(receipt["blockNumber"], 16))
    return receipt
