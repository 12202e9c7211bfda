"""Routing by value on the devnet: a thin pool with huge raw liquidity does not set a price.

Real anvil, real Uniswap V3 bytecode, the real flow with the devnet's own chain config (its
default `min_depth_usd`). The devnet runs without Aave here, so WETH has no oracle price and
is routed through pools only. Next to the seeded WETH/USDC pools (about $1M near the price) we
open a WETH/DAI 1% pool at a wrong price, 30 DAI per WETH, with about $100 in one tick spacing
around it: far more raw in-range liquidity `L` than the USDC pools (18 decimals on both sides,
and concentrated), so the old rule, the most `L` wins, took WETH's price from it.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from devnet.anvil import Anvil
from devnet.contracts import (
    DEADLINE,
    FACTORY_CREATE_POOL,
    FACTORY_GET_POOL,
    NPM_MINT,
    POOL_INITIALIZE,
    POOL_LIQUIDITY,
    POOL_SLOT0,
    Function,
)
from devnet.deploy import deploy
from devnet.rpc import RpcClient
from devnet.simulator import MarketSimulator
from devnet.txs import Tx, mine_block
from devnet.univ3math import sqrt_price_x96_from_price
from flows.endpoint import ChainEndpoint
from protocols.uniswap_v3.math import get_tick_at_sqrt_ratio
from protocols.uniswap_v3.valuation import pool_rate
from tests.support import block_number, live_server

THIN_FEE, THIN_SPACING = 10_000, 200
GAS = 1_000_000


def read(rpc: RpcClient, to: str, fn: Function, *args: Any) -> tuple[Any, ...]:
    """An eth_call at the latest block, decoded."""
    return fn.decode(rpc.call("eth_call", [{"to": to, "data": fn.encode(*args)}, "latest"]))


def test_a_thin_pool_with_huge_liquidity_does_not_price_weth(tmp_path: Path) -> None:
    anvil = Anvil().start()
    try:
        deployment = deploy(anvil.rpc_url, aave=False)
        simulator = MarketSimulator(anvil.rpc_url, deployment)
        for _ in range(3):
            simulator.step()
        simulator.close()
        dai, weth = deployment.tokens["DAI"].address, deployment.tokens["WETH"].address
        usdc = deployment.tokens["USDC"].address
        token0, token1 = sorted((dai, weth))
        # 30 DAI per WETH, as token1 per token0
        price = Fraction(30) if token0 == weth else Fraction(1, 30)
        sqrt_price = sqrt_price_x96_from_price(price, 18, 18)
        tick = get_tick_at_sqrt_ratio(sqrt_price) // THIN_SPACING * THIN_SPACING
        wallet = deployment.wallets[0]
        desired = {dai: 50 * 10**18, weth: 50 * 10**18 // 30}  # ~$100 at the pool's price
        with RpcClient(anvil.rpc_url) as rpc:
            pair = (token0, token1, THIN_FEE)
            mine_block(
                rpc,
                [
                    Tx(
                        deployment.deployer,
                        deployment.factory,
                        FACTORY_CREATE_POOL.encode(*pair),
                        7_000_000,
                    )
                ],
            )
            thin = read(rpc, deployment.factory, FACTORY_GET_POOL, *pair)[0].lower()
            mine_block(
                rpc, [Tx(deployment.deployer, thin, POOL_INITIALIZE.encode(sqrt_price), GAS)]
            )
            params = (
                token0,
                token1,
                THIN_FEE,
                tick,
                tick + THIN_SPACING,
                desired[token0],
                desired[token1],
                0,
                0,
                wallet,
                DEADLINE,
            )
            mine_block(rpc, [Tx(wallet, deployment.position_manager, NPM_MINT.encode(params), GAS)])
            rpc.call("evm_setAutomine", [True])

            usdc_pools = [
                p.address for p in deployment.pools if {p.token0, p.token1} == {weth, usdc}
            ]
            thin_liquidity = read(rpc, thin, POOL_LIQUIDITY)[0]
            # What the old rule compared: the thin pool has the most raw in-range liquidity.
            assert all(thin_liquidity > read(rpc, p, POOL_LIQUIDITY)[0] for p in usdc_pools)

        config = deployment.to_chain_config()
        assert config.min_depth_usd == 10_000
        with live_server(tmp_path, [ChainEndpoint(config, anvil.rpc_url, None)]) as server:
            head = block_number(anvil.rpc_url)
            server.wait_processed(deployment.chain_id, head)
            rows = server.runtime.store.rows(
                "SELECT source, price_usd, block_number FROM defimon.token_prices FINAL "
                "WHERE token = {token:String} ORDER BY block_number DESC LIMIT 1",
                {"token": weth},
            )
            assert rows, "WETH has a USD price"
            source, price_usd, _block = rows[0]
            assert source in usdc_pools, f"WETH priced by {source}, not a USDC pool"
            with RpcClient(anvil.rpc_url) as rpc:
                sqrt_now = read(rpc, source, POOL_SLOT0)[0]
            # USD per WETH from the chosen pool's own price at the head (USDC is $1 exactly).
            weth_is_token0 = weth < usdc
            rate = pool_rate(sqrt_now, 18 if weth_is_token0 else 6, 6 if weth_is_token0 else 18)
            expected = rate if weth_is_token0 else 1 / rate
            assert price_usd == pytest.approx(float(expected), rel=1e-12)
            assert price_usd > 1_000  # nowhere near the thin pool's 30
            # The devnet's own pools pass the default threshold: every token is priced, WBTC
            # through the WBTC/WETH pool.
            latest = dict(
                server.runtime.store.rows(
                    "SELECT token, argMax(source, block_number) FROM defimon.token_prices "
                    "FINAL GROUP BY token"
                )
            )
            # Every token of a devnet pool (the mainnet layout's LST has none).
            assert set(latest) == {t for p in deployment.pools for t in (p.token0, p.token1)}
            wbtc = deployment.tokens["WBTC"].address
            assert latest[wbtc] == next(
                p.address for p in deployment.pools if {p.token0, p.token1} == {wbtc, weth}
            )
            # The thin pool is followed (its state is stored); it just prices nothing.
            stored = server.runtime.store.rows(
                "SELECT count() FROM defimon.pool_states FINAL WHERE pool = {pool:String}",
                {"pool": thin},
            )
            assert stored[0][0] >= 1
    finally:
        anvil.stop()
