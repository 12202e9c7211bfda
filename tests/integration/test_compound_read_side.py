"""Compound V3 accounts on the read side, beside real Uniswap positions and Aave accounts.

No package ships Comet's bytecode (README: Comet is checked on its own bytecode in a lab
outside the repo), so the comet here is not on the devnet. Everything else is: the devnet
runs Uniswap and Aave, the flow indexes them into chDB, and then a comet's blocks are folded
through the real market stage (`market_step`, Comet's state machine) on the same chain, at
the devnet's own block numbers, hashes and times, with the reads the reader would have made
(built with `protocols/compound_v3/math.py`, which matches Comet's bytecode vectors to the wei).
Its rows go into the same store through the sink's columns, and the API serves all three
protocols over HTTP: `/v1/positions` (filters, sorting, paging across protocols),
`/v1/aggregate`, and the diff, whose Comet parts must be exactly the contract math's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi import encode
from eth_utils import keccak

from defimon.runtime import Runtime
from devnet.lending import LendingSimulator
from flows.market import MarketState, market_step
from flows.rows import COLUMNS, market_rows
from ports.settings import Settings
from protocols.compound_v3 import math as cm
from protocols.compound_v3.plugin import CometPart
from protocols.compound_v3.state import CometMarket
from schemas.chain import BlockBatch, BlockHeader, RawLog, TokenInfo
from schemas.comet import CometAssetInfo, CometConfig, CometReads, CometTotalsBasic, CometUserBasic
from tests.conftest import Devnet
from tests.support import LiveServer, block_number, free_port, live_server

COMET = "0x" + "c0" * 20
USDC_FEED = "0x" + "f1" * 20
WETH_FEED = "0x" + "f2" * 20
ALICE = "0x" + "a1" * 20  # borrows against WETH
BOB = "0x" + "b0" * 20  # supplies the base
E18 = 10**18
USD = 10**8
IDX = cm.BASE_INDEX_SCALE
SUPPLY = 40_000 * 10**6
DEBT = 15_000 * 10**6
RATES = cm.InterestRateParams.from_per_year(
    supply_kink=8 * 10**17,
    supply_per_year_interest_rate_base=0,
    supply_per_year_interest_rate_slope_low=3 * 10**16,
    supply_per_year_interest_rate_slope_high=2 * E18,
    borrow_kink=8 * 10**17,
    borrow_per_year_interest_rate_base=2 * 10**16,
    borrow_per_year_interest_rate_slope_low=5 * 10**16,
    borrow_per_year_interest_rate_slope_high=3 * E18,
)


@dataclass
class Scene:
    server: LiveServer
    blocks: list[tuple[int, str, int]]  # the comet's blocks: number, hash, time
    carol: str  # a devnet wallet with Aave (and maybe Uniswap) subjects, and a comet account
    usdc: str
    weth: str
    aave_pool: str
    uniswap_pool: str

    def get(self, path: str, **params: Any) -> Any:
        response = self.server.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def positions(self, **params: Any) -> list[dict[str, Any]]:
        page = self.get("/v1/positions", limit=1000, **params)
        assert page["next_cursor"] is None
        return page["positions"]


def comet_config(usdc: str, weth: str) -> CometConfig:
    r = RATES
    return CometConfig(
        comet=COMET,
        base_token=usdc,
        base_token_price_feed=USDC_FEED,
        base_scale=10**6,
        supply_kink=r.supply_kink,
        supply_per_second_interest_rate_base=r.supply_per_second_interest_rate_base,
        supply_per_second_interest_rate_slope_low=r.supply_per_second_interest_rate_slope_low,
        supply_per_second_interest_rate_slope_high=r.supply_per_second_interest_rate_slope_high,
        borrow_kink=r.borrow_kink,
        borrow_per_second_interest_rate_base=r.borrow_per_second_interest_rate_base,
        borrow_per_second_interest_rate_slope_low=r.borrow_per_second_interest_rate_slope_low,
        borrow_per_second_interest_rate_slope_high=r.borrow_per_second_interest_rate_slope_high,
        store_front_price_factor=60 * 10**16,
        base_borrow_min=100 * 10**6,
        assets=(
            CometAssetInfo(0, weth, WETH_FEED, E18, 80 * 10**16, 85 * 10**16, 93 * 10**16, 10**30),
        ),
    )


def word(address: str) -> str:
    return "0x" + encode(["address"], [address]).hex()


def comet_log(
    chain: int,
    block: tuple[int, str, int],
    index: int,
    signature: str,
    topics: list[str],
    amount: int,
) -> RawLog:
    number, block_hash, _ = block
    return RawLog(
        chain,
        number,
        block_hash,
        index,
        "0x" + keccak(text=f"{number}:{index}").hex(),
        0,
        COMET,
        ("0x" + keccak(text=signature).hex(), *topics),
        "0x" + encode(["uint256"], [amount]).hex(),
    )


def fold_comet(
    server: LiveServer, chain: int, blocks: list[tuple[int, str, int]], scene: Scene
) -> None:
    """The comet's five blocks through the real market stage; its rows into the store.

    1: Alice supplies 10 WETH, Carol 2 WETH, Bob 40,000 USDC; 2: Alice borrows 15,000 USDC;
    3: nothing (time passes); 4: WETH falls from $2,000 to $1,700 (a read, no comet log);
    5: Alice repays 5,000 USDC.
    """
    cfg = comet_config(scene.usdc, scene.weth)
    b1, b2, _b3, b4, b5 = blocks
    prices_at = {2_000: {USDC_FEED: USD, WETH_FEED: 2_000 * USD}}
    prices_at[1_700] = {USDC_FEED: USD, WETH_FEED: 1_700 * USD}

    def totals(supply: int, borrow: int, at: int, si: int = IDX, bi: int = IDX) -> CometTotalsBasic:
        return CometTotalsBasic(si, bi, 0, 0, supply, borrow, at, 0)

    # Block 5: the indices accrued to its time, and Alice's principal after repaying 5,000.
    stored = cm.CometTotals(IDX, IDX, SUPPLY, DEBT, b2[2])
    si5, bi5 = stored.accrued_indices(RATES, b5[2])
    owed = cm.present_value_borrow(bi5, DEBT)
    left = cm.principal_value_borrow(bi5, owed - 5_000 * 10**6)
    supply_log = "SupplyCollateral(address,address,address,uint256)"
    reads_and_logs = [
        (
            b1,
            CometReads(
                config=cfg,
                totals=totals(SUPPLY, 0, b1[2]),
                users={
                    ALICE: CometUserBasic(0, 0, 0, 0b1),
                    scene.carol: CometUserBasic(0, 0, 0, 0b1),
                    BOB: CometUserBasic(SUPPLY, 0, 0, 0),
                },
                collateral={(ALICE, scene.weth): 10 * E18, (scene.carol, scene.weth): 2 * E18},
                prices=prices_at[2_000],
            ),
            [
                comet_log(
                    chain, b1, 0, supply_log, [word(ALICE), word(ALICE), word(scene.weth)], 10 * E18
                ),
                comet_log(
                    chain,
                    b1,
                    1,
                    supply_log,
                    [word(scene.carol), word(scene.carol), word(scene.weth)],
                    2 * E18,
                ),
                comet_log(
                    chain, b1, 2, "Supply(address,address,uint256)", [word(BOB), word(BOB)], SUPPLY
                ),
            ],
        ),
        (
            b2,
            CometReads(
                totals=totals(SUPPLY, DEBT, b2[2]),
                users={ALICE: CometUserBasic(-DEBT, 0, 0, 0b1)},
                prices=prices_at[2_000],
            ),
            [
                comet_log(
                    chain,
                    b2,
                    0,
                    "Withdraw(address,address,uint256)",
                    [word(ALICE), word(ALICE)],
                    DEBT,
                )
            ],
        ),
        (b4, CometReads(totals=totals(SUPPLY, DEBT, b2[2]), prices=prices_at[1_700]), []),
        (
            b5,
            CometReads(
                totals=totals(SUPPLY, left, b5[2], si5, bi5),
                users={ALICE: CometUserBasic(-left, 0, 0, 0b1)},
                prices=prices_at[1_700],
            ),
            [
                comet_log(
                    chain,
                    b5,
                    0,
                    "Supply(address,address,uint256)",
                    [word(ALICE), word(ALICE)],
                    5_000 * 10**6,
                )
            ],
        ),
    ]
    state = MarketState(
        chain, (), 2, parts={"compound_v3": CometPart(CometMarket(chain, (COMET,)))}
    )
    tokens = {
        scene.usdc: TokenInfo(scene.usdc, "USDC", 6),
        scene.weth: TokenInfo(scene.weth, "WETH", 18),
    }
    store = server.runtime.store
    previous = blocks[0][0] - 1
    for (number, block_hash, at), reads, logs in reads_and_logs:
        header = BlockHeader(chain, number, block_hash, f"0x{previous:064x}", at)
        batch = BlockBatch(header, logs, number, True, dict(tokens))
        batch.reads["compound_v3"] = {COMET: reads}
        state, out = market_step(state, batch)
        assert "compound_v3" in out.parts and not out.parts["compound_v3"].dead, out.parts[
            "compound_v3"
        ]
        for table, rows in market_rows(out).rows.items():
            if table.startswith("defimon.comet_") and rows:
                store.insert(table, COLUMNS[table], list(zip(*rows, strict=True)))
        previous = number


@pytest.fixture
def scene(devnet: Devnet, tmp_path: Path) -> Iterator[Scene]:
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=3)
    try:
        for _ in range(3):
            devnet.simulator.step()
        for _ in range(4):
            lending.tick()
            devnet.simulator.step()
    finally:
        lending.close()
    chain = devnet.deployment.chain_id
    endpoint = devnet.endpoint()
    with live_server(tmp_path, [endpoint]) as filling:
        filling.wait_processed(chain, block_number(devnet.rpc_url))
    server = LiveServer(
        Runtime(Settings(data_dir=tmp_path), [endpoint]), free_port(), start_flow=False
    )
    server.start()
    try:
        stored = server.runtime.store.rows(
            "SELECT number, hash, toUnixTimestamp(block_time) FROM defimon.blocks FINAL "
            "WHERE chain_id = {chain:UInt64} ORDER BY number",
            {"chain": chain},
        )
        # Five blocks with strictly increasing times, from the second half of the run.
        blocks: list[tuple[int, str, int]] = []
        for number, block_hash, at in stored[len(stored) // 2 :]:
            if not blocks or int(at) > blocks[-1][2]:
                blocks.append((int(number), block_hash, int(at)))
        assert len(blocks) >= 5, stored
        blocks = [blocks[0], blocks[1], blocks[2], blocks[3], blocks[-1]]
        aave = server.get("/v1/positions", protocol="aave_v3", limit=1000).json()["positions"]
        lp = server.get("/v1/positions", protocol="uniswap_v3", limit=1).json()["positions"]
        assert aave and lp
        tokens = devnet.deployment.tokens
        s = Scene(
            server,
            blocks,
            carol=aave[0]["owner"],
            usdc=tokens["USDC"].address,
            weth=tokens["WETH"].address,
            aave_pool=aave[0]["pool"],
            uniswap_pool=lp[0]["pool"],
        )
        fold_comet(server, chain, blocks, s)
        yield s
    finally:
        server.stop()


def walk(scene: Scene, sort: str, order: str) -> list[dict[str, Any]]:
    """Every page of /v1/positions, four at a time, following next_cursor."""
    walked: list[dict[str, Any]] = []
    extra: dict[str, str] = {}
    while True:
        page = scene.get("/v1/positions", sort=sort, order=order, limit=4, **extra)
        walked += page["positions"]
        if page["next_cursor"] is None:
            return walked
        extra = {"cursor": page["next_cursor"]}


def ids(subjects: list[dict[str, Any]]) -> set[str]:
    return {s["id"] for s in subjects}


def test_comet_accounts_are_listed_filtered_sorted_and_aggregated(scene: Scene) -> None:
    chain = scene.server.runtime.endpoints[0].config.chain_id
    comet_ids = {f"{chain}:{COMET}:{u}" for u in (ALICE, BOB, scene.carol)}
    everything = scene.positions()
    assert {p["protocol"] for p in everything} == {"uniswap_v3", "aave_v3", "compound_v3"}
    compound = scene.positions(protocol="compound_v3")
    assert ids(compound) == comet_ids
    assert comet_ids <= ids(everything)
    # The same JSON the portfolio serves for each account.
    for account in compound:
        lending = scene.get(f"/v1/portfolio/{account['owner']}")["lending"]
        assert account in lending
        assert account["pool"] == COMET and account["chain_id"] == chain
    alice = next(a for a in compound if a["owner"] == ALICE)
    # 15,000 borrowed, 5,000 repaid, and the interest since (a few hours at a few percent).
    assert alice["debt_usd"] == pytest.approx(10_000, abs=5) and alice["is_liquidatable"] is False
    assert 1 < alice["health_factor_float"] < 2
    assert alice["reserves"][1]["asset"] == scene.weth and alice["reserves"][1]["collateral"]

    # Filters select and exclude them.
    assert not ids(scene.positions(protocol="aave_v3")) & comet_ids
    assert ids(scene.positions(protocol=["aave_v3", "compound_v3"])) >= comet_ids
    assert ids(scene.positions(pool=COMET)) == comet_ids
    aave_pool = scene.positions(pool=scene.aave_pool)
    assert aave_pool and {p["protocol"] for p in aave_pool} == {"aave_v3"}
    assert {p["protocol"] for p in scene.positions(pool=scene.uniswap_pool)} == {"uniswap_v3"}
    carol = scene.positions(owner=scene.carol)
    assert {p["protocol"] for p in carol} >= {"aave_v3", "compound_v3"}
    assert all(p["owner"] == scene.carol for p in carol)
    # WETH is Alice's and Carol's collateral; USDC is the base of all three.
    assert ids(scene.positions(protocol="compound_v3", token=scene.weth)) == comet_ids - {
        f"{chain}:{COMET}:{BOB}"
    }
    assert ids(scene.positions(protocol="compound_v3", token=scene.usdc)) == comet_ids
    hf = alice["health_factor_float"]
    assert ids(scene.positions(protocol="compound_v3", max_health_factor=str(hf))) == {alice["id"]}
    assert alice["id"] not in ids(scene.positions(min_health_factor=str(hf + 1e-9)))
    assert ids(scene.positions(protocol="compound_v3", min_debt_usd="1")) == {alice["id"]}
    bob = next(a for a in compound if a["owner"] == BOB)
    assert bob["id"] in ids(scene.positions(min_value_usd=str(bob["value_usd"])))
    assert bob["id"] not in ids(scene.positions(max_value_usd=str(bob["value_usd"] - 0.01)))

    # Sorting and paging walk all three protocols in order.
    for sort, order in (("value_usd", "desc"), ("health_factor", "asc"), ("debt_usd", "desc")):
        walked = walk(scene, sort, order)
        assert sorted(ids(walked)) == sorted(ids(everything)) and len(walked) == len(everything)
        listed = scene.get("/v1/positions", sort=sort, order=order, limit=1000)["positions"]
        assert [p["id"] for p in walked] == [p["id"] for p in listed]
    by_hf = scene.get("/v1/positions", sort="health_factor", order="asc", limit=1000)["positions"]
    finite = [p["health_factor_float"] for p in by_hf if p.get("health_factor_float") is not None]
    assert finite == sorted(finite) and hf in finite

    # Aggregates count and sum them with the same figures.
    groups = scene.get(
        "/v1/aggregate", group_by="protocol", metrics="count,sum(value_usd),sum(debt_usd)"
    )["groups"]
    by_protocol = {g["key"]["protocol"]: g["metrics"] for g in groups}
    assert set(by_protocol) == {"uniswap_v3", "aave_v3", "compound_v3"}
    assert by_protocol["compound_v3"]["count"] == 3
    assert by_protocol["compound_v3"]["sum(value_usd)"] == pytest.approx(
        sum(a["value_usd"] for a in compound), rel=1e-12
    )
    assert by_protocol["compound_v3"]["sum(debt_usd)"] == pytest.approx(alice["debt_usd"])
    assert sum(m["count"] for m in by_protocol.values()) == len(everything)
    pooled = scene.get("/v1/aggregate", pool=COMET, group_by="owner", metrics="count")["groups"]
    assert {g["key"]["owner"] for g in pooled} == {ALICE, BOB, scene.carol}

    # Time travel: before the borrow Alice had no debt; before the comet, nothing.
    b1, b2 = scene.blocks[0][0], scene.blocks[1][0]
    at1 = {p["owner"]: p for p in scene.positions(protocol="compound_v3", at=str(b1))}
    assert set(at1) == {ALICE, BOB, scene.carol} and at1[ALICE]["debt_usd"] == 0.0
    assert at1[ALICE]["value_usd"] == 20_000.0 and at1[BOB]["value_usd"] == 40_000.0
    assert scene.positions(protocol="compound_v3", at=str(b1 - 1)) == []
    at2 = {p["owner"]: p for p in scene.positions(protocol="compound_v3", at=str(b2))}
    assert at2[ALICE]["value_usd"] == 5_000.0


def diff(scene: Scene, owner: str, start: int, end: int) -> dict[str, Any]:
    out: dict[str, Any] = scene.get(
        f"/v1/portfolio/{owner}/diff", **{"from": str(start), "to": str(end)}
    )
    assert sum(out["explained"].values()) == pytest.approx(out["change"], abs=1e-6)
    for at, key in ((start, "value_from"), (end, "value_to")):
        total = scene.get(f"/v1/portfolio/{owner}", at=str(at))["total_usd"]
        assert out[key] == pytest.approx(total, abs=1e-6)
    return out


def comet_part(out: dict[str, Any], owner: str) -> dict[str, Any]:
    [part] = [s for s in out["subjects"] if s["protocol"] == "compound_v3"]
    assert part["id"].endswith(owner)
    assert part["price"] + part["interest"] + part["actions"] == pytest.approx(part["change"])
    return part


def test_the_diff_splits_a_comet_accounts_change(scene: Scene) -> None:
    (n1, _, t1), (n2, _, t2), (n3, _, t3), (n4, _, t4), (n5, _, _) = scene.blocks
    stored = cm.CometTotals(IDX, IDX, SUPPLY, DEBT, t2)

    def debt_usd8(at: int) -> int:
        return cm.borrow_balance_of(-DEBT, stored, RATES, at) * USD // 10**6

    # Only time passed: Alice's debt and Bob's supply accrued, to the contract's unit.
    quiet = diff(scene, ALICE, n2, n3)
    part = comet_part(quiet, ALICE)
    assert part["interest"] == -(debt_usd8(t3) - debt_usd8(t2)) / USD < 0
    assert (part["price"], part["actions"]) == (0.0, 0.0)
    supplied = cm.balance_of(SUPPLY, stored, RATES, t3) - cm.balance_of(SUPPLY, stored, RATES, t2)
    bob = comet_part(diff(scene, BOB, n2, n3), BOB)
    assert bob["interest"] == supplied * USD // 10**6 / USD > 0
    assert (bob["price"], bob["actions"]) == (0.0, 0.0)

    # The price moved (and a little time): 10 WETH x -$300, exactly; interest as above.
    moved = comet_part(diff(scene, ALICE, n3, n4), ALICE)
    assert moved["price"] == -3_000.0
    assert moved["interest"] == -(debt_usd8(t4) - debt_usd8(t3)) / USD
    assert moved["actions"] == 0.0
    carol = diff(scene, scene.carol, n3, n4)
    assert comet_part(carol, scene.carol)["price"] == -600.0  # her 2 WETH
    assert {s["protocol"] for s in carol["subjects"]} >= {"aave_v3", "compound_v3"}

    # Over the whole scenario: her collateral's repricing is the market's; she had no debt
    # at the start, so no interest either (the counterfactual is her state then): the
    # borrow, the repayment and the interest on a debt she took on are hers.
    whole = comet_part(diff(scene, ALICE, n1, n5), ALICE)
    assert whole["value_from"] == 20_000.0
    assert (whole["price"], whole["interest"]) == (-3_000.0, 0.0)
    assert whole["actions"] == pytest.approx(-10_000.0, abs=5)  # -15,000 then +5,000
    # Opening an account is wholly an action.
    opened = comet_part(diff(scene, BOB, n1 - 1, n2), BOB)
    assert opened["value_from"] == 0.0 and opened["actions"] == opened["value_to"]
    assert opened["interest"] == 0.0 and t1 < t2


def test_a_health_factor_backtest_replays_comet_accounts(scene: Scene) -> None:
    """Comet accounts carry a health factor as Aave's do: a backtest of a health rule (which the
    live engine evaluates on every lending account) replays them too."""
    chain = scene.server.runtime.endpoints[0].config.chain_id
    alice = f"{chain}:{COMET}:{ALICE}"
    created = httpx.post(
        f"{scene.server.url}/v1/alerts/rules",
        json={
            "name": "comet health",
            "kind": "health_factor_below",
            "threshold": 2,
            "filter": {"owner": ALICE},
        },
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    first, last = scene.blocks[0][0], scene.blocks[-1][0]
    replay = httpx.post(
        f"{scene.server.url}/v1/alerts/rules/{rule['id']}/backtest",
        params={"from": str(first), "to": str(last)},
        timeout=300,
    )
    assert replay.status_code == 200, replay.text
    fired = {a["subject_id"] for a in replay.json()["fired"]}
    assert alice in fired  # health between 1 and 2: below the threshold


def test_stress_moves_the_comets_feeds_and_finds_alices_edges_exactly(scene: Scene) -> None:
    """At block 2 Alice owes 15,000 USDC against 10 WETH at $2,000 (liquidate CF 0.85).
    Under WETH -20% the comet would count 10 x 1,600 x 0.85 = 13,600 < 15,000: liquidatable.
    The drop found must be the first basis point at which Comet.isLiquidatable (the math
    module, exact to Comet's bytecode vectors) turns true, scanned here one by one; USDC, a
    stablecoin, stays under `*`."""
    n2 = scene.blocks[1][0]
    body = scene.get(f"/v1/portfolio/{ALICE}/stress", at=str(n2), shock="WETH:-20%")
    assert "compound_v3" not in body["not_stressed"]
    (alice,) = [a for a in body["lending"] if a["protocol"] == "compound_v3"]
    assert alice["shocks_bps"] == {scene.weth: -2_000}
    assert not alice["now"]["is_liquidatable"] and alice["stressed"]["is_liquidatable"]
    assert alice["liquidatable"]
    (weth_row,) = [r for r in alice["stressed"]["reserves"] if r["asset"] == scene.weth]
    assert int(weth_row["price"]) == 1_600 * USD

    def liquidatable(drop_bps: int) -> bool:
        weth = cm.CometCollateral(
            10 * E18, 2_000 * USD * (10_000 - drop_bps) // 10_000, E18, 85 * 10**16
        )
        return cm.is_liquidatable(-DEBT, IDX, IDX, USD, 10**6, [weth], skip_zero_lcf=True)

    edge = next(d for d in range(10_000) if liquidatable(d))
    assert alice["liquidation_drop_bps"] == edge and not liquidatable(edge - 1)
    # Prices held, the borrow rate takes it there in time (its debt grows, WETH does not).
    assert alice["time_to_liquidation_seconds"] is not None
    assert alice["time_to_liquidation_seconds"] > 0

    market_wide = scene.get(f"/v1/portfolio/{ALICE}/stress", at=str(n2), shock="*:-5%")
    (alice,) = [a for a in market_wide["lending"] if a["protocol"] == "compound_v3"]
    assert alice["shocks_bps"] == {scene.weth: -500}, "the stablecoin base moved under *"
