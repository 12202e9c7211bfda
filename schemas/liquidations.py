"""The wire format of an Aave liquidation, shared by the stream and alert backtests."""

from __future__ import annotations

from typing import Any

from schemas.positions import iso_time


def liquidation_json(
    *,
    account_id: str,
    chain_id: int,
    pool: str,
    block_number: int,
    block_hash: str,
    block_time: int,
    tx_hash: str,
    log_index: int,
    user: str,
    collateral_asset: str,
    debt_asset: str,
    debt_to_cover: int,
    liquidated_collateral: int,
    liquidator: str,
    receive_a_token: bool,
) -> dict[str, Any]:
    """`id` is the liquidated lending account's id; `reserves` names the two assets involved,
    so the filter grammar's `token` condition applies as it does to the account."""
    return {
        "id": account_id,
        "protocol": "aave_v3",
        "chain_id": chain_id,
        "pool": pool,
        "owner": user,
        "collateral_asset": collateral_asset,
        "debt_asset": debt_asset,
        "reserves": [{"asset": collateral_asset}, {"asset": debt_asset}],
        "debt_to_cover": str(debt_to_cover),
        "liquidated_collateral": str(liquidated_collateral),
        "liquidator": liquidator,
        "receive_a_token": receive_a_token,
        "tx_hash": tx_hash,
        "log_index": log_index,
        "block_number": block_number,
        "block_hash": block_hash,
        "block_time": iso_time(block_time),
    }
