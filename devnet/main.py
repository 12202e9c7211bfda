"""`defimon devnet`: anvil + the Uniswap V3 deployment + the market simulator, until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from devnet.anvil import Anvil
from devnet.deploy import Deployment, deploy
from devnet.simulator import MarketSimulator

log = logging.getLogger("defimon.devnet")


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
) -> None:
    """Start anvil, deploy, write the config, simulate a market until `stop` is set or Ctrl-C."""
    stop = stop if stop is not None else threading.Event()
    with Anvil(port=port) as anvil:
        deployment = deploy(anvil.rpc_url)
        if write_config is not None:
            write_config.parent.mkdir(parents=True, exist_ok=True)
            write_config.write_text(deployment.to_chain_config().to_toml())
            deployment_json_path(write_config).write_text(deployment.to_json())
            log.info("chain config written to %s", write_config)
        if on_ready is not None:
            on_ready(anvil, deployment)
        simulator = MarketSimulator(anvil.rpc_url, deployment, seed=seed)
        log.info(
            "devnet ready on %s (ws %s); simulating a market every %g s",
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
