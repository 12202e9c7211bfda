"""Oracle price sources as the reader finds them, and what it reads from them (no I/O here).

The Aave oracle names one source per asset. What a source is decides how its answer is
followed (flows/prices_reader.py reads, protocols/aave_v3/state.py applies):

- ``proxy``: a Chainlink proxy (answers ``aggregator()``). It emits nothing; the aggregator
  behind it emits ``AnswerUpdated`` (OCR also ``NewTransmission``), and the proxy can be
  pointed at a new aggregator silently (a new phase), so ``aggregator()`` is re-read at
  checkpoints.
- ``feed``: a contract that emits ``AnswerUpdated`` itself (an aggregator named directly).
- ``polled``: anything else (Aave's CAPO and other adapters: ``latestAnswer()`` only, no
  price events): read with ``eth_call`` wherever one of its inputs may have changed.
- ``none``: the zero address; the oracle asks its fallback oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.positions import Immutable

KINDS = ("proxy", "feed", "polled", "none")
ZERO = "0x" + "0" * 40


@dataclass(frozen=True, slots=True)
class PriceSource(Immutable):
    """One source as classified when announced; kept in the source cursor across restarts."""

    address: str
    kind: str
    assets: tuple[str, ...]
    # Addresses whose logs may change a polled source's answer (its own, a CAPO adapter's
    # base feed and ratio provider, the aggregator behind a base feed that is a proxy).
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceRead(Immutable):
    """A source as read with eth_call at the end of one block."""

    source: str
    kind: str
    answer: int | None  # latestAnswer(); None: it could not be read (`error` says why)
    error: str = ""
    aggregator: str = ""  # a proxy's aggregator at this block
    # (asset, AaveOracle.getAssetPrice) when the source gave no positive answer: the oracle
    # then asks its fallback oracle; None: that reverted too.
    fallback: tuple[tuple[str, int | None], ...] = ()
