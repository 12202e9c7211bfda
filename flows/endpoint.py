"""A chain to follow and the nodes to read it from. Apart from the source (flows/source.py) so
that what only describes the chains (the command line, the API) does not import Bytewax."""

from __future__ import annotations

from dataclasses import dataclass

from flows.rpc import RpcOptions
from schemas.chain_config import ChainConfig


@dataclass(frozen=True, slots=True)
class ChainEndpoint:
    config: ChainConfig
    rpc_url: str
    ws_url: str | None = None
    from_block: int | None = None  # overrides the config's start_block on a fresh start
    # Wallet watch mode (flows/watch.py) with these wallets to start with; None: the full
    # protocols from start_block. A fresh watch-mode start begins at the head.
    watch: tuple[str, ...] | None = None
    rpc_urls: tuple[str, ...] = ()  # more HTTP endpoints of the same chain, rotated with rpc_url
    rpc_options: RpcOptions | None = None  # rate limits, timeouts, retry budget

    @property
    def http_urls(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.rpc_url, *self.rpc_urls)))
