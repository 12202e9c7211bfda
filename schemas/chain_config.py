"""The chain config: which chain to follow and which protocol contracts to index.

It is a small TOML file::

    chain_id = 31337
    name = "devnet"            # optional
    start_block = 0            # optional: where a fresh backfill starts
    finality_depth = 64        # optional: blocks after which a block counts as confirmed

    [uniswap_v3]               # optional (any subset of the protocol sections; see below)
    factory = "0x..."
    position_manager = "0x..."

    [pricing]                  # optional
    usd_tokens = ["0x..."]     # tokens worth exactly 1 USD, the roots of price routing
    feeds = { "0xtoken" = "0xaggregator" }   # Chainlink-style USD feeds (8 decimals): price
                               # roots after the protocol oracles (flows/prices_reader.py)
    min_depth_usd = 10000      # pools shallower than this (USD within ±2% of their price)
                               # set no token's price; default 10000, 0 trusts every pool

    [aave_v3]                  # optional
    pool = "0x..."
    pool_configurator = "0x..."
    oracle = "0x..."           # AaveOracle; its AssetSourceUpdated events name the feeds
    version = "3.7"            # optional: pin the Aave release whose rules apply (one of
                               # schemas.lending.AAVE_VERSIONS); by default the Pool's
                               # POOL_REVISION() names it, read at the first block and at
                               # each upgrade of the Pool proxy
    price_reads = "on_change"  # optional: when sources are read with eth_call, "on_change"
                               # (where an input may have changed) or "every_block"
                               # (flows/prices_reader.py gives the RPC cost of each)

    [compound_v3]              # optional
    comets = ["0x..."]

    [morpho_blue]              # optional
    morpho = "0x..."           # the Morpho contract; its CreateMarket events name the markets

    [wallets]                  # optional
    watch = ["0x..."]          # wallets whose ERC-20 balances are tracked from the start, besides
                               # the position owners and Aave users the flow discovers itself

    [rpc]                      # optional: default endpoints when the command line names none
    http = ["https://..."]     # JSON-RPC over HTTPS, in order of preference
    ws = "wss://..."           # newHeads subscription (else HTTP polling)

A config names any subset of the protocols (`[uniswap_v3]`, `[aave_v3]`, `[compound_v3]`
with at least one comet, `[morpho_blue]`): the flow follows only those. One that names none is
refused, unless its `[pricing] feeds` name tokens: then it tracks the ERC-20 balances of those
tokens alone (for the `[wallets] watch` list and the wallets added at runtime), priced by the feeds.

Built-in configs for real chains ship in `schemas/chains/<name>.toml` (`builtin(name)`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError
from schemas.hexutil import normalize_address
from schemas.lending import AAVE_VERSIONS

# A Uniswap pool prices a token only if it holds at least this much (USD, both sides, within
# ±2% of its price; protocols/uniswap_v3/valuation.py route_prices): below it are dust and
# abandoned pools, whose price anyone can set for the cost of a swap.
DEFAULT_MIN_DEPTH_USD = 10_000


@dataclass(frozen=True, slots=True)
class UniswapV3Config:
    factory: str
    position_manager: str


@dataclass(frozen=True, slots=True)
class AaveV3Config:
    pool: str
    pool_configurator: str
    oracle: str
    version: str | None = None  # pinned release; None: read from the Pool's revision
    price_reads: str = "on_change"


@dataclass(frozen=True, slots=True)
class CompoundV3Config:
    comets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MorphoBlueConfig:
    morpho: str


@dataclass(frozen=True, slots=True)
class ChainConfig:
    chain_id: int
    uniswap_v3: UniswapV3Config | None = None
    name: str = ""
    start_block: int = 0
    finality_depth: int = 64
    usd_tokens: tuple[str, ...] = field(default_factory=tuple)
    # token -> Chainlink-style aggregator, for tokens whose feed no protocol oracle announces
    feeds: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # Uniswap pools shallower than this (USD within ±2% of their price) route no price.
    min_depth_usd: float = DEFAULT_MIN_DEPTH_USD
    aave_v3: AaveV3Config | None = None
    compound_v3: CompoundV3Config | None = None
    morpho_blue: MorphoBlueConfig | None = None
    watch_wallets: tuple[str, ...] = field(default_factory=tuple)
    # Default endpoints (public ones for the built-ins); the command line overrides them.
    rpc_http: tuple[str, ...] = field(default_factory=tuple)
    rpc_ws: str | None = None

    def __post_init__(self) -> None:
        # Every way a config is made (a file, a built-in, code) names something to follow.
        if not self.protocols and not self.feeds:
            raise ConfigError(NO_PROTOCOL)

    @property
    def label(self) -> str:
        return self.name or f"chain-{self.chain_id}"

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols this config follows, in a fixed order (a comet-less
        `[compound_v3]` follows nothing)."""
        named = (
            ("uniswap_v3", self.uniswap_v3 is not None),
            ("aave_v3", self.aave_v3 is not None),
            ("compound_v3", self.compound_v3 is not None and bool(self.compound_v3.comets)),
            ("morpho_blue", self.morpho_blue is not None),
        )
        return tuple(name for name, present in named if present)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ChainConfig:
        try:
            chain_id = int(raw["chain_id"])
            uniswap = None
            if "uniswap_v3" in raw:
                uni = raw["uniswap_v3"]
                uniswap = UniswapV3Config(
                    factory=normalize_address(uni["factory"]),
                    position_manager=normalize_address(uni["position_manager"]),
                )
        except KeyError as exc:
            raise ConfigError(f"chain config is missing {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"chain config is invalid: {exc}") from exc
        start_block = int(raw.get("start_block", 0))
        finality_depth = int(raw.get("finality_depth", 64))
        if chain_id <= 0 or start_block < 0 or finality_depth < 0:
            raise ConfigError(
                "chain_id must be positive, start_block and finality_depth not negative"
            )
        try:
            pricing = raw.get("pricing", {})
            usd = tuple(normalize_address(a) for a in pricing.get("usd_tokens", []))
            feeds = tuple(
                sorted(
                    (normalize_address(t), normalize_address(f))
                    for t, f in pricing.get("feeds", {}).items()
                )
            )
            min_depth_usd = _min_depth(pricing.get("min_depth_usd", DEFAULT_MIN_DEPTH_USD))
            aave = None
            if "aave_v3" in raw:
                a = raw["aave_v3"]
                price_reads = str(a.get("price_reads", "on_change"))
                if price_reads not in ("on_change", "every_block"):
                    raise ConfigError(
                        f"aave_v3.price_reads must be 'on_change' or 'every_block', "
                        f"not {price_reads!r}"
                    )
                aave = AaveV3Config(
                    pool=normalize_address(a["pool"]),
                    pool_configurator=normalize_address(a["pool_configurator"]),
                    oracle=normalize_address(a["oracle"]),
                    version=_aave_version(a.get("version")),
                    price_reads=price_reads,
                )
            compound = None
            if "compound_v3" in raw:
                comets = raw["compound_v3"].get("comets", [])
                compound = CompoundV3Config(tuple(normalize_address(c) for c in comets))
            morpho = None
            if "morpho_blue" in raw:
                morpho = MorphoBlueConfig(normalize_address(raw["morpho_blue"]["morpho"]))
            watch = tuple(
                sorted({normalize_address(w) for w in raw.get("wallets", {}).get("watch", [])})
            )
            rpc_http, rpc_ws = _rpc_table(raw.get("rpc", {}))
        except KeyError as exc:
            raise ConfigError(f"chain config is missing {exc.args[0]!r}") from exc
        except (AttributeError, TypeError, ValueError) as exc:
            raise ConfigError(f"chain config is invalid: {exc}") from exc
        return cls(
            chain_id=chain_id,
            uniswap_v3=uniswap,
            name=str(raw.get("name", "")),
            start_block=start_block,
            finality_depth=finality_depth,
            usd_tokens=usd,
            feeds=feeds,
            min_depth_usd=min_depth_usd,
            aave_v3=aave,
            compound_v3=compound,
            morpho_blue=morpho,
            watch_wallets=watch,
            rpc_http=rpc_http,
            rpc_ws=rpc_ws,
        )

    @classmethod
    def load(cls, path: str | Path) -> ChainConfig:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read chain config {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"chain config {path} is not valid TOML: {exc}") from exc
        return cls.from_dict(raw)

    @classmethod
    def builtin(cls, name: str) -> ChainConfig:
        """A built-in chain config by name (see `builtin_names()`)."""
        if name not in builtin_names():
            raise ConfigError(
                f"no built-in chain {name!r}; built-ins: {', '.join(builtin_names())} "
                "(or give a path to a TOML chain config)"
            )
        text = (_BUILTIN / f"{name}.toml").read_text(encoding="utf-8")
        return cls.from_dict(tomllib.loads(text))

    def to_toml(self) -> str:
        lines = [f"chain_id = {self.chain_id}"]
        if self.name:
            lines.append(f'name = "{self.name}"')
        lines.append(f"start_block = {self.start_block}")
        lines.append(f"finality_depth = {self.finality_depth}")
        if self.uniswap_v3 is not None:
            lines += [
                "",
                "[uniswap_v3]",
                f'factory = "{self.uniswap_v3.factory}"',
                f'position_manager = "{self.uniswap_v3.position_manager}"',
            ]
        custom_depth = self.min_depth_usd != DEFAULT_MIN_DEPTH_USD
        if self.usd_tokens or self.feeds or custom_depth:
            lines += ["", "[pricing]"]
            if self.usd_tokens:
                tokens = ", ".join(f'"{a}"' for a in self.usd_tokens)
                lines.append(f"usd_tokens = [{tokens}]")
            if self.feeds:
                pairs = ", ".join(f'"{t}" = "{f}"' for t, f in self.feeds)
                lines.append(f"feeds = {{ {pairs} }}")
            if custom_depth:
                lines.append(f"min_depth_usd = {self.min_depth_usd!r}")
        if self.aave_v3:
            a = self.aave_v3
            lines += [
                "",
                "[aave_v3]",
                f'pool = "{a.pool}"',
                f'pool_configurator = "{a.pool_configurator}"',
                f'oracle = "{a.oracle}"',
            ]
            if a.version is not None:
                lines.append(f'version = "{a.version}"')
            if a.price_reads != "on_change":
                lines.append(f'price_reads = "{a.price_reads}"')
        if self.compound_v3:
            comets = ", ".join(f'"{c}"' for c in self.compound_v3.comets)
            lines += ["", "[compound_v3]", f"comets = [{comets}]"]
        if self.morpho_blue:
            lines += ["", "[morpho_blue]", f'morpho = "{self.morpho_blue.morpho}"']
        if self.watch_wallets:
            watch = ", ".join(f'"{w}"' for w in self.watch_wallets)
            lines += ["", "[wallets]", f"watch = [{watch}]"]
        if self.rpc_http or self.rpc_ws:
            lines += ["", "[rpc]"]
            if self.rpc_http:
                urls = ", ".join(_toml_string(u) for u in self.rpc_http)
                lines.append(f"http = [{urls}]")
            if self.rpc_ws:
                lines.append(f"ws = {_toml_string(self.rpc_ws)}")
        return "\n".join(lines) + "\n"


_BUILTIN = resources.files("schemas") / "chains"
NO_PROTOCOL = (
    "chain config names no protocol: give at least one of [uniswap_v3], [aave_v3], "
    "[compound_v3] (with comets) or [morpho_blue], or [pricing] feeds to track ERC-20 "
    "balances alone"
)
_URL_SCHEMES = {"http": ("http://", "https://"), "ws": ("ws://", "wss://")}


def builtin_names() -> tuple[str, ...]:
    """The names of the built-in chain configs (schemas/chains/*.toml), sorted."""
    return tuple(
        sorted(
            entry.name.removesuffix(".toml")
            for entry in _BUILTIN.iterdir()
            if entry.name.endswith(".toml")
        )
    )


def _rpc_table(table: Any) -> tuple[tuple[str, ...], str | None]:
    """`[rpc] http = [...] (or one string), ws = "..."`: URLs checked for their scheme."""
    if not isinstance(table, dict):
        raise ConfigError("chain config [rpc] must be a table")
    http = table.get("http", [])
    urls = (http,) if isinstance(http, str) else tuple(http)
    for url in urls:
        _check_url(url, "http")
    ws = table.get("ws")
    if ws is not None:
        _check_url(ws, "ws")
    return urls, ws


def _check_url(url: object, kind: str) -> None:
    if not isinstance(url, str) or not url.startswith(_URL_SCHEMES[kind]):
        wanted = " or ".join(_URL_SCHEMES[kind])
        raise ConfigError(f"chain config [rpc] {kind} URL {url!r} does not start with {wanted}")


def _min_depth(value: object) -> float:
    """`[pricing] min_depth_usd`: a finite, non-negative number of US dollars."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"chain config [pricing] min_depth_usd must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"chain config [pricing] min_depth_usd must be finite and not negative, not {value!r}"
        )
    return value


def _toml_string(text: str) -> str:
    """A TOML basic string (URLs may hold quotes or backslashes in a query)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _aave_version(value: object) -> str | None:
    """`[aave_v3] version`: a release defimon knows the rules of ("3.0" means 3.0.2)."""
    if value is None:
        return None
    text = str(value).strip()
    if text.startswith("v"):
        text = text[1:]
    if text in ("3.0", "3.0.0", "3.0.1"):
        text = "3.0.2"
    if text.count(".") == 2 and text != "3.0.2":
        text = text.rsplit(".", 1)[0]  # a patch release follows its minor's rules
    if not isinstance(value, str) or text not in AAVE_VERSIONS:
        known = ", ".join(AAVE_VERSIONS)
        raise ConfigError(f"[aave_v3] version {value!r} is not a known Aave release ({known})")
    return text
