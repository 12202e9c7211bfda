"""Shared fixtures: a real anvil with the real Uniswap V3 bytecode and a seeded market."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devnet.anvil import Anvil
from devnet.deploy import Deployment, deploy
from devnet.oracles import DEFAULT_LAYOUT
from devnet.simulator import MarketSimulator
from flows.endpoint import ChainEndpoint


@dataclass
class Devnet:
    anvil: Anvil
    deployment: Deployment
    simulator: MarketSimulator

    @property
    def rpc_url(self) -> str:
        return self.anvil.rpc_url

    def endpoint(self, *, ws: bool = True) -> ChainEndpoint:
        return ChainEndpoint(
            self.deployment.to_chain_config(), self.anvil.rpc_url, self.anvil.ws_url if ws else None
        )


def start_devnet(seed: int = 7, steps: int = 0, layout: str = DEFAULT_LAYOUT) -> Devnet:
    anvil = Anvil().start()
    deployment = deploy(anvil.rpc_url, layout=layout)
    simulator = MarketSimulator(anvil.rpc_url, deployment, seed=seed)
    for _ in range(steps):
        simulator.step()
    return Devnet(anvil, deployment, simulator)


@pytest.fixture
def devnet() -> Iterator[Devnet]:
    net = start_devnet()
    try:
        yield net
    finally:
        net.anvil.stop()
