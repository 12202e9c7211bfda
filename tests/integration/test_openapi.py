"""Property-based: requests generated from /openapi.json, sent over real HTTP to a live
server indexing a real devnet, get no 5xx and no response that breaks its own schema.

Every documented operation but the endless stream is exercised (the stream has its own
tests), and at least 1,000 requests are made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from devnet.anvil import Anvil
from devnet.deploy import deploy
from devnet.main import DevnetSimulator
from flows.endpoint import ChainEndpoint
from tests.support import LiveServer, block_number, live_server

EXAMPLES_PER_OPERATION = 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    anvil = Anvil().start()
    simulator: DevnetSimulator | None = None
    try:
        deployment = deploy(anvil.rpc_url)
        simulator = DevnetSimulator(anvil.rpc_url, deployment, seed=5)
        for _ in range(4):
            simulator.step()
        endpoint = ChainEndpoint(deployment.to_chain_config(), anvil.rpc_url, anvil.ws_url)
        with live_server(data_dir, [endpoint]) as running:
            running.wait_processed(deployment.chain_id, block_number(anvil.rpc_url))
            yield running
    finally:
        if simulator is not None:
            simulator.close()
        anvil.stop()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_generated_requests_get_no_5xx_and_match_their_schema(server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    made: list[str] = []
    operations = set()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err would raise here, as wanted
        if operation.path == "/v1/stream":  # endless by design; tested on its own
            continue
        operations.add(f"{operation.method.upper()} {operation.path}")
        # Valid requests and invalid ones: both must be answered without a 5xx.
        strategy = operation.as_strategy(
            generation_mode=GenerationMode.POSITIVE
        ) | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=strategy)
        def call(case: schemathesis.Case) -> None:
            made.append(f"{case.method} {case.path}")
            case.call_and_validate(checks=CHECKS, timeout=60)

        call()
    assert len(made) >= 1000, f"only {len(made)} generated requests"
    assert set(made) == operations, "every operation should be exercised"
