"""`defimon devnet`: anvil + the Uniswap V3, Aave V3 and Morpho Blue deployment + the simulators,
until stopped.

`DevnetSimulator` drives the markets from one thread (Uniswap `MarketSimulator.step()`, then,
when the deployment has Aave, `LendingSimulator.tick()`, then, when it has Morpho,
`MorphoSimulator.tick()`), so their transactions never race for the same wallets' nonces;
`simulate()` runs it until a stop event is set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from devnet.anvil import Anvil
from devnet.deploy import Deployment, deploy
from devnet.lending import SECONDS_PER_TICK, LendingSimulator
from devnet.loop import run_every
from devnet.morpho_simulator import MorphoSimulator
from devnet.oracles import DEFAULT_LAYOUT
from devnet.simulator import MarketSimulator

log = logging.getLogger("defimon.devnet")
LENDING_SEED_OFFSET = 4  # the default seeds: market 7, lending 11, Morpho 13
MORPHO_SEED_OFFSET = 6


class DevnetSimulator:
    """The Uniswap market and (if deployed) the Aave and Morpho markets, stepped together."""

    def __init__(
        self,
        rpc_url: str,
        deployment: Deployment,
        seed: int = 7,
        seconds_per_step: int = SECONDS_PER_TICK,
    ) -> None:
        self.market = MarketSimulator(rpc_url, deployment, seed=seed)
        self.lending = (
            LendingSimulator(rpc_url, deployment, seed=seed + LENDING_SEED_OFFSET)
            if deployment.aave is not None
            else None
        )
        self.morpho = (
            MorphoSimulator(rpc_url, deployment, seed=seed + MORPHO_SEED_OFFSET)
            if deployment.morpho is not None
            else None
        )
        self.seconds_per_step = seconds_per_step

    def close(self) -> None:
        self.market.close()
        if self.lending is not None:
            self.lending.close()
        if self.morpho is not None:
            self.morpho.close()

    def step(self) -> list[int]:
        """A Uniswap round, then a lending round (actions, price drift, sometimes a shock,
        `seconds_per_step` of chain time, liquidations), then a Morpho round (its oracle follows
        WETH, liquidations, actions); the blocks mined."""
        blocks = self.market.step()
        if self.lending is not None:
            blocks += self.lending.tick(self.seconds_per_step)
        if self.morpho is not None:
            # the lending round already moved the clock; without it, Morpho's round does
            blocks += self.morpho.tick(0 if self.lending is not None else self.seconds_per_step)
        return blocks

    def wallets(self) -> list[str]:
        """Wallets with a Uniswap position, an Aave account or a Morpho position, for showing
        in the demo."""
        wallets = set(self.market.all_positions().values())
        if self.lending is not None:
            wallets.update(self.lending.accounts())
        if self.morpho is not None:
            wallets.update(self.morpho.accounts())
        return sorted(wallets)

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """step() every `interval` s until `stop` is set; RPC errors are logged, not raised."""
        run_every(self.step, stop, interval, "simulators")


def simulate(
    rpc_url: str,
    deployment: Deployment,
    stop: threading.Event,
    interval: float = 0.5,
    seed: int = 7,
) -> None:
    """Run both markets (DevnetSimulator) until `stop` is set; blocks, so start it in a thread."""
    simulator = DevnetSimulator(rpc_url, deployment, seed=seed)
    try:
        simulator.run(stop, interval=interval)
    finally:
        simulator.close()


def deployment_json_path(write_config: Path) -> Path:
    """Where the deployment (wallets, tokens, pools) is written next to the chain config."""
    return write_config.with_name(write_config.name + ".json")


def run_devnet(
    port: int | None,
    write_config: Path | None,
    seed: int = 7,
    interval: float = 0.5,
    stop: threading.Event | None = None,
    on_ready: Callable[[Anvil, Deployment], None] | None = None,
    layout: str = DEFAULT_LAYOUT,
) -> None:
    """Start anvil, deploy (`layout`: devnet.oracles.LAYOUTS), write the config, simulate the
    markets until `stop` is set or Ctrl-C."""
    stop = stop if stop is not None else threading.Event()
    with Anvil(port=port) as anvil:
        deployment = deploy(anvil.rpc_url, layout=layout)
        if write_config is not None:
            write_config.parent.mkdir(parents=True, exist_ok=True)
            write_config.write_text(deployment.to_chain_config().to_toml())
            deployment_json_path(write_config).write_text(deployment.to_json())
            log.info("chain config written to %s", write_config)
        if on_ready is not None:
            on_ready(anvil, deployment)
        simulator = DevnetSimulator(anvil.rpc_url, deployment, seed=seed)
        log.info(
            "devnet ready on %s (ws %s); simulating the markets every %g s",
            anvil.rpc_url,
            anvil.ws_url,
            interval,
        )
        try:
            simulator.run(stop, interval=interval)
        except KeyboardInterrupt:
            log.info("interrupted")
        finally:
            stop.set()
            simulator.close()
