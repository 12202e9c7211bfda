"""The protocols defimon follows, in the order their parts run on each stage and their
outputs are written: the one list the flow, the store and the read side iterate. Adding a
protocol is one folder under protocols/ and one line here (CONTRIBUTING.md)."""

from __future__ import annotations

from protocols.aave_v3.plugin import PLUGIN as AAVE_V3
from protocols.aave_v3.read import READ_SIDE as AAVE_V3_READ
from protocols.compound_v3.plugin import PLUGIN as COMPOUND_V3
from protocols.compound_v3.read import READ_SIDE as COMPOUND_V3_READ
from protocols.erc20.plugin import PLUGIN as ERC20
from protocols.erc20.read import READ_SIDE as ERC20_READ
from protocols.read_side import ReadSide
from protocols.spec import Plugin
from protocols.uniswap_v3.plugin import PLUGIN as UNISWAP_V3
from protocols.uniswap_v3.read import READ_SIDE as UNISWAP_V3_READ

# Lending (Aave, Compound) before Uniswap: neither depends on the pools, and Aave's oracle
# answers are the roots prices are routed from. ERC-20 balances last: they are valued at the
# block's routed prices.
PLUGINS: tuple[Plugin, ...] = (AAVE_V3, COMPOUND_V3, UNISWAP_V3, ERC20)
PROTOCOLS: tuple[str, ...] = tuple(p.name for p in PLUGINS)

# The read side (protocols/read_side.py), in the API's output order: a portfolio's `lending`
# lists Aave accounts before Compound's, and a diff sums its subjects' values in this order
# (balances before comet accounts, as it did before the read side was split per protocol:
# a float sum in another order could differ in its last bit).
READ_SIDES: tuple[ReadSide, ...] = (
    UNISWAP_V3_READ,
    AAVE_V3_READ,
    ERC20_READ,
    COMPOUND_V3_READ,
)
