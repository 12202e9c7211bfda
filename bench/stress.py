"""Stress: the compute of `/v1/portfolio/{wallet}/stress` on synthetic but well-formed state,
in one thread (the reads are the portfolio's: bench.api_latency).

- `stress_market_seconds`: every account of a 10,000-account Aave V3 market (WETH collateral,
  USDC debt, health factors spread 1.05-3) valued under one shock (`*:-20%`), as the stressed
  part of each answer is (target <= 1 s); `stress_market_edges_seconds`: the same accounts'
  liquidation drop and time to liquidation (the bisections), for a tenth of them, scaled.
- `stress_wallet_latency`: one wallet's whole answer (25 Aave accounts in 25 pools and 25
  Uniswap V3 positions: stressed values, both edges of every account) per request, p50/p99.
"""

from __future__ import annotations

import argparse
import time
from random import Random

from bench.common import emit, percentile
from protocols.aave_v3.read import AaveMarketView
from protocols.aave_v3.stress import stress_account, stressed_value
from protocols.uniswap_v3.math import get_sqrt_ratio_at_tick
from protocols.uniswap_v3.stress import stress_position
from schemas.lending import (
    AaveAccount,
    AccountReserveState,
    OraclePrice,
    ReserveInfo,
    ReserveRates,
)
from schemas.positions import BlockRef, PoolSnapshot, TokenPrice, UniswapPosition
from schemas.stress import Scenario, parse_shock

CHAIN = 1
RAY = 10**27
NOW = 1_760_000_000
WETH, USDC = "0x" + "e1" * 20, "0x" + "c1" * 20
USDC_PRICE, WETH_PRICE = 10**8, 3_000 * 10**8


def market(pool: str) -> AaveMarketView:
    reserves = {
        WETH: ReserveInfo(WETH, "0xa1", "0xs1", "0xv1", "WETH", 18, 8_000, 8_250, 10_500, 0, 0),
        USDC: ReserveInfo(USDC, "0xa2", "0xs2", "0xv2", "USDC", 6, 7_700, 8_000, 10_450, 0, 1),
    }
    rates = {
        WETH: ReserveRates(
            WETH, 2 * RAY // 100, 0, 3 * RAY // 100, RAY + RAY // 50, RAY + RAY // 30, NOW - 600
        ),
        USDC: ReserveRates(
            USDC, 4 * RAY // 100, 0, 6 * RAY // 100, RAY + RAY // 20, RAY + RAY // 15, NOW - 600
        ),
    }
    prices = {
        WETH: OraclePrice(WETH, WETH_PRICE, 1, NOW - 60, "0xf1", 100),
        USDC: OraclePrice(USDC, USDC_PRICE, 1, NOW - 60, "0xf2", 100),
    }
    return AaveMarketView(BlockRef(CHAIN, 100, "0xb", NOW), reserves, rates, {}, prices)


def accounts(pool: str, count: int, rng: Random) -> list[AaveAccount]:
    out = []
    for i in range(count):
        weth = rng.randint(1, 50) * 10**18
        # debt for a health factor between 1.05 and 3 at $3,000 and LT 82.5 %
        debt_usd = weth * 3_000 * 825 // 1000 // 10**18 / rng.uniform(1.05, 3.0)
        user = f"0x{i:040x}"
        out.append(
            AaveAccount(
                CHAIN,
                pool,
                user,
                f"{CHAIN}:{pool}:{user}",
                0,
                {
                    WETH: AccountReserveState(WETH, scaled_supply=weth, collateral=True),
                    USDC: AccountReserveState(USDC, scaled_variable_debt=int(debt_usd * 10**6)),
                },
            )
        )
    return out


def positions(count: int, rng: Random) -> list[tuple[UniswapPosition, PoolSnapshot]]:
    out = []
    for i in range(count):
        tick = -200_000 + rng.randint(-2_000, 2_000)
        pos = UniswapPosition(
            CHAIN,
            f"{CHAIN}:npm:{i}",
            "0xnpm",
            i,
            f"0xpool{i % 5}",
            USDC,
            WETH,
            "USDC",
            "WETH",
            6,
            18,
            500,
            "0xwallet",
            tick - 600,
            tick + 600,
            10**18,
            10**9,
            10**18,
        )
        out.append((pos, PoolSnapshot(pos.pool, get_sqrt_ratio_at_tick(tick), tick, 10**20)))
    return out


def run(accounts_n: int, requests: int) -> None:
    rng = Random(7)
    scenario = Scenario(parse_shock("*:-20%"), frozenset({USDC}))
    view = market("0xpool")
    held = accounts("0xpool", accounts_n, rng)
    started = time.perf_counter()
    liquidatable = 0
    for account in held:
        _, value = stressed_value(account, view, scenario)
        liquidatable += value.health_factor < 10**18
    elapsed = time.perf_counter() - started
    emit(
        "stress_market_seconds",
        round(elapsed, 3),
        "s",
        accounts=accounts_n,
        shock="*:-20%",
        liquidatable=liquidatable,
        target_seconds=1.0,
    )

    sample = held[: max(1, accounts_n // 10)]
    started = time.perf_counter()
    for account in sample:
        stress_account(account, view, scenario, 100)
    per_account = (time.perf_counter() - started) / len(sample)
    emit(
        "stress_market_edges_seconds",
        round(per_account * accounts_n, 2),
        "s",
        accounts=accounts_n,
        measured=len(sample),
        per_account_ms=round(per_account * 1e3, 3),
    )

    wallet_accounts = [(market(f"0xpool{i}"), accounts(f"0xpool{i}", 1, rng)[0]) for i in range(25)]
    lp = positions(25, rng)
    price0, price1 = TokenPrice(USDC, 1.0, "usd", 0), TokenPrice(WETH, 3_000.0, "feed", 0)
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        for view_i, account in wallet_accounts:
            stress_account(account, view_i, scenario, 100)
        for pos, pool in lp:
            stress_position(pos, pool, price0, price1, (0, 0), scenario)
        latencies.append((time.perf_counter() - started) * 1e3)
    emit(
        "stress_wallet_latency",
        round(percentile(latencies, 50), 2),
        "ms",
        p99_ms=round(percentile(latencies, 99), 2),
        subjects=50,
        requests=requests,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    run(args.accounts, args.requests)


if __name__ == "__main__":
    main()
