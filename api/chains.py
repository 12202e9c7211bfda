"""The chains this API answers for, and where each stands: what the routes ask of the chain
set (which chain a request means, how far it is processed, whether a block is final) without
a handle on the process that follows them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from flows.endpoint import ChainEndpoint
from ports.status import ChainProgress, FlowStatus
from schemas.errors import InvalidInput


class Chains:
    def __init__(self, endpoints: Sequence[ChainEndpoint], status: FlowStatus) -> None:
        self.endpoints = tuple(endpoints)
        # This process's flow's progress, or (defimon api) the flow process's, as the bus
        # reports it.
        self.status = status
        self._by_id = {e.config.chain_id: e for e in self.endpoints}

    @property
    def ids(self) -> list[int]:
        """Chain ids, in the order the chains were given."""
        return [e.config.chain_id for e in self.endpoints]

    def progress(self, chain_id: int) -> ChainProgress:
        return self.status.chain(chain_id)

    def processed(self, chain_id: int) -> int:
        """The newest block processed on the chain (-1: none yet)."""
        return self.status.chain(chain_id).processed

    def one(self, chain_id: int | None) -> int:
        """The chain a request means: the one given (checked), else the only one followed."""
        chains = self.ids
        if chain_id is None:
            if len(chains) == 1:
                return chains[0]
            raise InvalidInput(f"several chains are indexed ({chains}); pass chain_id")
        if chain_id not in self._by_id:
            raise InvalidInput(f"chain {chain_id} is not indexed here (indexed: {chains})")
        return chain_id

    def some(self, chain_ids: Iterable[int] | None) -> list[int]:
        """The chains a request covers: those asked for (each checked), else every chain
        followed, in chain-id order."""
        asked = sorted(set(chain_ids or ()))
        if not asked:
            return sorted(self._by_id)
        return [self.one(c) for c in asked]

    def confirmed(self, chain_id: int, block: int) -> bool:
        """Whether a block is at least the chain's finality depth below the head seen."""
        endpoint = self._by_id.get(chain_id)
        depth = endpoint.config.finality_depth if endpoint is not None else 0
        head = self.status.chain(chain_id).head
        return head >= 0 and block <= head - depth

    def stablecoins(self, chain_id: int) -> frozenset[str]:
        """The chain's tokens worth 1 USD (its config's usd_tokens), lower-case: what a
        market-wide stress shock leaves at their oracle price."""
        endpoint = self._by_id.get(chain_id)
        tokens = endpoint.config.usd_tokens if endpoint is not None else ()
        return frozenset(t.lower() for t in tokens)

    def watch_mode(self, chain_id: int) -> bool:
        """Whether the chain runs in wallet watch mode (else the full protocols)."""
        endpoint = self._by_id.get(chain_id)
        return endpoint is not None and endpoint.watch is not None
