"""The protocols defimon follows, in the order their parts run on each stage and their
outputs are written: the one list the flow, the store and the read side iterate. Adding a
protocol is one folder under protocols/ and one line here (CONTRIBUTING.md)."""

from __future__ import annotations

from protocols.aave_v3.plugin import PLUGIN as AAVE_V3
from protocols.compound_v3.plugin import PLUGIN as COMPOUND_V3
from protocols.erc20.plugin import PLUGIN as ERC20
from protocols.morpho_blue.plugin import PLUGIN as MORPHO_BLUE
from protocols.read_side import ReadSide, head_tables
from protocols.spec import Plugin
from protocols.uniswap_v3.plugin import PLUGIN as UNISWAP_V3

# Lending (Aave, Compound, Morpho) before Uniswap: neither depends on the pools, and Aave's oracle
# answers are the roots prices are routed from. ERC-20 balances last: they are valued at the
# block's routed prices. The API lists a portfolio's subjects in this order too (Aave's lending
# accounts before Compound's).
PLUGINS: tuple[Plugin, ...] = (AAVE_V3, COMPOUND_V3, MORPHO_BLUE, UNISWAP_V3, ERC20)
PROTOCOLS: tuple[str, ...] = tuple(p.name for p in PLUGINS)
# The read sides (protocols/read_side.py) the API iterates.
READ_SIDES: tuple[ReadSide, ...] = tuple(p.read for p in PLUGINS if p.read is not None)
# What a head answer reads (protocols/read_side.py `head_tables`): the head feed carries these
# tables' rows and the API's head view holds them.
HEAD_TABLES: frozenset[str] = head_tables(READ_SIDES)
