"""The chain config: which chain to follow and which protocol contracts to index.

It is a small TOML file::

    chain_id = 31337
    name = "devnet"            # optional
    start_block = 0            # optional: where a fresh backfill starts

    [uniswap_v3]
    factory = "0x..."
    position_manager = "0x..."

    [pricing]                  # optional
    usd_tokens = ["0x..."]     # tokens worth exactly 1 USD, the roots of price routing
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError
from schemas.hexutil import normalize_address


@dataclass(frozen=True, slots=True)
class UniswapV3Config:
    factory: str
    position_manager: str


@dataclass(frozen=True, slots=True)
class ChainConfig:
    chain_id: int
    uniswap_v3: UniswapV3Config
    name: str = ""
    start_block: int = 0
    usd_tokens: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return self.name or f"chain-{self.chain_id}"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ChainConfig:
        try:
            chain_id = int(raw["chain_id"])
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
        if chain_id <= 0 or start_block < 0:
            raise ConfigError("chain_id must be positive and start_block not negative")
        pricing = raw.get("pricing", {})
        usd = tuple(normalize_address(a) for a in pricing.get("usd_tokens", []))
        return cls(
            chain_id=chain_id,
            uniswap_v3=uniswap,
            name=str(raw.get("name", "")),
            start_block=start_block,
            usd_tokens=usd,
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

    def to_toml(self) -> str:
        lines = [f"chain_id = {self.chain_id}"]
        if self.name:
            lines.append(f'name = "{self.name}"')
        lines.append(f"start_block = {self.start_block}")
        lines += [
            "",
            "[uniswap_v3]",
            f'factory = "{self.uniswap_v3.factory}"',
            f'position_manager = "{self.uniswap_v3.position_manager}"',
        ]
        if self.usd_tokens:
            tokens = ", ".join(f'"{a}"' for a in self.usd_tokens)
            lines += ["", "[pricing]", f"usd_tokens = [{tokens}]"]
        return "\n".join(lines) + "\n"
