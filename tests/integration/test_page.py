"""The live page in a real headless Chromium: a swap on the chain updates a row in place.

Real anvil with the real Uniswap V3 bytecode, the real flow and server, the page's own
EventSource and fetch; Chromium is the system's (`chromium`), driven by Playwright.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from devnet.lending import LendingSimulator
from devnet.morpho_simulator import MorphoSimulator
from tests.conftest import Devnet
from tests.support import LiveServer, block_number, live_server, rpc

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    # The machine's network is closed: no background connections to Google services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 20_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    # `make test` installs Debian's chromium; without it this test must fail, never skip.
    assert chromium is not None, "no chromium on PATH: run `make test` (it installs chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def server(devnet: Devnet, tmp_path: Path) -> Iterator[LiveServer]:
    for _ in range(10):
        devnet.simulator.step()
    with live_server(tmp_path / "data", [devnet.endpoint()]) as live:
        live.wait_processed(devnet.deployment.chain_id, block_number(devnet.rpc_url))
        yield live


def units(raw: str, decimals: int) -> str:
    """The page's exact amount format: whole units with separators, 6 decimals, truncated."""
    whole, fraction = divmod(int(raw), 10**decimals)
    return f"{whole:,}" + ("." + str(fraction).zfill(decimals)[:6] if decimals else "")


def exact(raw: str, decimals: int) -> str:
    """The token table's amount format: every digit, trailing zeros dropped."""
    whole, fraction = divmod(int(raw), 10**decimals)
    digits = str(fraction).zfill(decimals).rstrip("0") if decimals else ""
    return f"{whole:,}" + ("." + digits if digits else "")


def amounts_text(p: dict[str, Any]) -> str:
    return (
        f"{units(p['amount0'], p['token0']['decimals'])} {p['token0']['symbol']}\n"
        f"{units(p['amount1'], p['token1']['decimals'])} {p['token1']['symbol']}"
    )


def cell(page: Page, position_id: str, name: str) -> str:
    return page.inner_text(f'#rows tr[data-id="{position_id}"] td.{name}').strip()


def test_a_swap_updates_the_row_live_without_a_reload(
    devnet: Devnet, server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    pool = next(
        p for p in devnet.deployment.pools if devnet.deployment.pool_label(p) == "WETH/USDC 0.05%"
    )
    listed = server.get("/v1/positions", pool=pool.address, limit=1000).json()["positions"]
    target = next((p for p in listed if p["in_range"] and int(p["liquidity"]) > 0), None)
    assert target is not None, "the seeded market has no in-range position in WETH/USDC"
    wallet, pid = target["owner"], target["id"]
    before = server.get(f"/v1/portfolio/{wallet}").json()
    head = before["as_of"]["block_number"]

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    failed: list[str] = []  # HTTP errors, but for the favicon the page does not have
    page.on(
        "response",
        lambda r: (
            failed.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    loads: list[int] = []
    page.on("load", lambda _: loads.append(1))

    page.goto(server.url, wait_until="load")
    page.fill("#wallet", wallet.upper().replace("0X", "0x"))  # the page normalises the case
    page.click("#load")
    row = f'#rows tr[data-id="{pid}"]'
    page.wait_for_selector(row, timeout=WAIT_MS)
    page.wait_for_selector("#dot.live", timeout=WAIT_MS)  # the stream is connected

    ids = page.eval_on_selector_all("#rows tr[data-id]", "rows => rows.map(r => r.dataset.id)")
    assert sorted(ids) == sorted(p["id"] for p in before["positions"]), "rows != the portfolio"
    assert cell(page, pid, "block") == str(head)
    assert cell(page, pid, "amounts") == amounts_text(target)
    assert page.inner_text("#asof") == str(head)
    tokens = page.eval_on_selector_all(
        "#token-rows tr[data-token]",
        "rows => rows.map(r => [r.dataset.token, r.querySelector('td.amount').textContent])",
    )
    held = [[b["token"], exact(b["amount"], b["decimals"])] for b in before["balances"]]
    assert held and sorted(tokens) == sorted(held), "the token table != the portfolio"
    first_value, first_amounts = cell(page, pid, "value"), cell(page, pid, "amounts")
    page.evaluate("window.__marker = 1")
    navigations_before, loads_before = list(navigations), len(loads)

    block = devnet.simulator.swap(pool)
    assert block > head
    try:
        page.wait_for_function(
            """([sel, block]) => {
                const td = document.querySelector(sel + " td.block");
                return td !== null && td.textContent.trim() === String(block);
            }""",
            arg=[row, block],
            timeout=WAIT_MS,
        )
    except PlaywrightTimeoutError:
        page.screenshot(path=str(tmp_path / "stale.png"), full_page=True)
        shown = page.eval_on_selector_all(
            "#rows tr[data-id]", "rows => rows.map(r => [r.dataset.id, r.innerText])"
        )
        raise AssertionError(
            f"row {pid} still not at block {block} after {WAIT_MS} ms; rows {shown}; "
            f"errors {errors}; screenshot {tmp_path / 'stale.png'}"
        ) from None

    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert navigations == navigations_before, f"navigated: {navigations[len(navigations_before) :]}"
    assert len(loads) == loads_before, "the document loaded again"
    server.wait_processed(devnet.deployment.chain_id, block)
    after = {
        p["id"]: p for p in server.get(f"/v1/portfolio/{wallet}", at=str(block)).json()["positions"]
    }
    assert cell(page, pid, "amounts") == amounts_text(after[pid]), "the row != time travel"
    assert cell(page, pid, "amounts") != first_amounts, "the swap did not change the amounts"
    assert cell(page, pid, "value") != first_value, "the swap did not change the value"
    assert "in range" in cell(page, pid, "range") or "out of range" in cell(page, pid, "range")
    page.wait_for_function(
        "(block) => document.getElementById('asof').textContent === String(block)",
        arg=block,
        timeout=WAIT_MS,
    )
    assert page.evaluate("location.search") == f"?wallet={wallet}"
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert errors == [], f"the page logged errors: {errors}"
    assert failed == [], f"requests failed: {failed}"


def test_switching_wallets_shows_only_the_last_one_and_bad_input_is_explained(
    devnet: Devnet, server: LiveServer, browser: Browser
) -> None:
    by_owner: dict[str, list[str]] = {}
    for p in server.get("/v1/positions", limit=1000).json()["positions"]:
        by_owner.setdefault(p["owner"], []).append(p["id"])
    first, last = sorted(by_owner, key=lambda w: (-len(by_owner[w]), w))[:2]
    page = browser.new_page()
    page.goto(server.url, wait_until="load")

    page.fill("#wallet", "0x1234")
    page.click("#load")
    page.wait_for_function("document.getElementById('error').textContent !== ''", timeout=5_000)
    assert "not an address" in page.inner_text("#error")

    # A second wallet chosen before the first one's snapshot arrived: the first one's answer
    # must not leak into the second one's table.
    page.evaluate("([a, b]) => { watch(a); watch(b); }", [first, last])
    page.wait_for_function(
        "(n) => document.querySelectorAll('#rows tr[data-id]').length >= n",
        arg=len(by_owner[last]),
        timeout=WAIT_MS,
    )
    page.wait_for_timeout(1_000)  # the first wallet's answer, if it were applied late
    shown = page.eval_on_selector_all("#rows tr[data-id]", "rows => rows.map(r => r.dataset.id)")
    assert sorted(shown) == sorted(by_owner[last]), f"rows of {first} leaked into {last}'s table"
    assert page.inner_text("#error") == ""


def test_time_slider_value_chart_and_a_live_alert(
    devnet: Devnet, server: LiveServer, browser: Browser
) -> None:
    pool = next(
        p for p in devnet.deployment.pools if devnet.deployment.pool_label(p) == "WETH/USDC 0.05%"
    )
    listed = server.get("/v1/positions", pool=pool.address, limit=1000).json()["positions"]
    target = next(p for p in listed if p["in_range"] and int(p["liquidity"]) > 0)
    wallet = target["owner"]
    # Let chain time pass between swaps so that 1-minute windows close: the chart's points.
    for _ in range(3):
        rpc(devnet.rpc_url, "evm_increaseTime", [75])
        devnet.simulator.swap(pool)
    head = block_number(devnet.rpc_url)
    server.wait_processed(devnet.deployment.chain_id, head)
    history = server.get(f"/v1/portfolio/{wallet}/history", window="1m").json()["windows"]
    assert len(history) >= 2, "closed windows for the chart"

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/?wallet={wallet}", wait_until="load")
    page.wait_for_selector("#dot.live", timeout=WAIT_MS)
    page.wait_for_function(
        "(n) => Number(document.getElementById('line').dataset.count) >= n",
        arg=len(history),
        timeout=WAIT_MS,
    )
    assert page.get_attribute("#line", "points"), "the chart draws a line"

    # The slider: a past block shows the portfolio as time travel answers it, stream paused.
    past = head - 4
    page.wait_for_function("!document.getElementById('slider').disabled", timeout=WAIT_MS)
    page.evaluate(
        "(b) => { const s = document.getElementById('slider'); s.value = b;"
        " s.dispatchEvent(new Event('input')); }",
        past,
    )
    page.wait_for_function(
        "(b) => document.getElementById('asof').textContent === String(b)",
        arg=past,
        timeout=WAIT_MS,
    )
    assert page.inner_text("#travel-label") == f"as of block {past}"
    at_past = server.get(f"/v1/portfolio/{wallet}", at=str(past)).json()
    shown = page.eval_on_selector_all("#rows tr[data-id]", "rows => rows.map(r => r.dataset.id)")
    assert sorted(shown) == sorted(p["id"] for p in at_past["positions"])
    page.click("#live")
    page.wait_for_selector("#dot.live", timeout=WAIT_MS)
    assert page.inner_text("#travel-label") == "live"

    # An alert rule on this wallet's positions fires on the next swap and shows up live.
    rule = httpx.post(
        f"{server.url}/v1/alerts/rules",
        json={
            "name": "any IL",
            "kind": "il_above",
            "measure": "usd",
            "threshold": 1e-9,
            "filter": {"owner": wallet},
        },
        timeout=30,
    )
    assert rule.status_code in (200, 201), rule.text
    devnet.simulator.swap(pool)
    page.wait_for_selector("#alerts li", timeout=WAIT_MS)
    assert "any IL" in page.inner_text("#alerts")
    assert errors == [], f"the page logged errors: {errors}"


def test_a_morpho_account_shows_its_health_and_its_alert_live(
    devnet: Devnet, tmp_path: Path, browser: Browser
) -> None:
    # The page names no protocol: a Morpho Blue account (added through the plug-in seam only)
    # gets its own card, with the health the API serves, and a health alert on it shows live.
    morpho = MorphoSimulator(devnet.rpc_url, devnet.deployment, seed=13)
    try:
        for _ in range(3):
            morpho.tick(seconds=600)
        chain_id = devnet.deployment.chain_id
        with live_server(tmp_path / "data", [devnet.endpoint()]) as server:
            server.wait_processed(chain_id, block_number(devnet.rpc_url))
            listed = server.get("/v1/positions", protocol="morpho_blue", limit=1000).json()
            borrowing = [a for a in listed["positions"] if a["health_factor_float"] is not None]
            assert borrowing, listed
            wallet = borrowing[0]["owner"]
            account = next(
                a
                for a in server.get(f"/v1/portfolio/{wallet}").json()["lending"]
                if a["protocol"] == "morpho_blue"
            )

            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server.url}/?wallet={wallet}", wait_until="load")
            page.wait_for_selector("#dot.live", timeout=WAIT_MS)
            card = f'.account[data-id="{account["id"]}"]'
            page.wait_for_selector(card, timeout=WAIT_MS)
            assert "Morpho Blue health factor" in page.inner_text(card)
            assert page.inner_text(f"{card} .hf") == f"{account['health_factor_float']:.4f}"

            rule = httpx.post(
                f"{server.url}/v1/alerts/rules",
                json={
                    "name": "Morpho health",
                    "kind": "health_factor_below",
                    "threshold": account["health_factor_float"] * 10,
                    "filter": {"owner": wallet, "protocol": "morpho_blue"},
                },
                timeout=30,
            )
            assert rule.status_code in (200, 201), rule.text
            # Interest accrues and the oracle follows the devnet: the account is revalued.
            morpho.tick(seconds=600)
            page.wait_for_selector("#alerts li", timeout=WAIT_MS)
            assert "Morpho health" in page.inner_text("#alerts")
            assert errors == [], f"the page logged errors: {errors}"
    finally:
        morpho.close()


def test_the_stress_slider_moves_the_health_factor_across_the_threshold(
    devnet: Devnet, tmp_path: Path, browser: Browser
) -> None:
    """The market-wide stress slider, driven from the keyboard, revalues a lending account
    through /stress: its health factor under the shock changes, crosses 1 and is marked
    liquidatable; the first liquidation is marked on the slider."""
    lending = LendingSimulator(devnet.rpc_url, devnet.deployment, seed=11)
    try:
        for _ in range(3):
            lending.tick()
    finally:
        lending.close()
    chain_id = devnet.deployment.chain_id
    with live_server(tmp_path / "data", [devnet.endpoint()]) as server:
        server.wait_processed(chain_id, block_number(devnet.rpc_url))
        found = None
        for wallet in lending.accounts():
            body = server.get(f"/v1/portfolio/{wallet}/stress", shock="*:-90%").json()
            for account in body["lending"]:
                if account["liquidatable"] and not account["now"]["is_liquidatable"]:
                    found = (wallet, account)
        assert found is not None, "no account a -90% market-wide move makes liquidatable"
        wallet, account = found
        row = f'#stress-rows tr[data-id="{account["id"]}"]'

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}/?wallet={wallet}", wait_until="load")
        page.wait_for_selector(row, timeout=WAIT_MS)
        now = f"{account['now']['health_factor_float']:.4f}"
        assert page.inner_text(f"{row} td.hf-cell").strip() == now, "no shock: HF as now"
        assert page.is_visible("#stress-mark"), "the first liquidation is not marked"

        page.focus("#stress-all")
        page.keyboard.press("Home")  # the slider's minimum: -90 %
        page.wait_for_function(
            "(row) => (document.querySelector(row + ' td.hf-cell') || {}).textContent"
            "?.includes('liquidatable')",
            arg=row,
            timeout=WAIT_MS,
        )
        shown = page.inner_text(f"{row} td.hf-cell").strip()
        stressed = account["stressed"]["health_factor_float"]
        assert shown == f"{stressed:.4f} · liquidatable", shown
        assert stressed < 1 <= account["now"]["health_factor_float"]
        assert page.inner_text("#stress-all-v") == "-90%"
        assert "*" in page.inner_text("#stress-note")

        # What to do: a target above its health factor, typed in; the exact amounts shown.
        target = f"{account['now']['health_factor_float'] + 0.25:.4f}"
        advice = server.get(f"/v1/portfolio/{wallet}/advice", target=target).json()
        (answer,) = [a for a in advice["lending"] if a["id"] == account["id"]]
        repay = next(m for m in answer["repay"] if m["enough"])
        page.fill("#target", target)
        item = f'#advice li.below[data-id="{account["id"]}"]'
        page.wait_for_function(
            "([item, target]) => (document.querySelector(item) || {}).textContent"
            "?.includes('below ' + target)",
            arg=[item, target],
            timeout=WAIT_MS,
        )
        assert f"repay {exact(repay['amount'], repay['decimals'])} {repay['symbol']}" in (
            page.inner_text(item)
        )
        assert errors == [], f"the page logged errors: {errors}"
